//! The live pool: [`McSet`], a ring kept in step with a watched server
//! set, and its [`McSetBuilder`].
//!
//! Readers load the current routing table (`routing::Routing`) with one
//! atomic load (`arc-swap`) and never wait: the follower (`follow`) rebuilds
//! rings on a background task and swaps them in whole.

use std::sync::Arc;
#[cfg(feature = "client")]
use std::time::{Duration, SystemTime};

use serversets_core::{Member, Watcher};

use crate::follow::{self, Shared, SyncState};
use crate::metrics::{McMetrics, UNNAMED};
use crate::routing::ClientOptions;
use crate::{Error, NodeIdentity, Ring, RingBuilder, RingKind};
use serversets_core::balance::FollowTask;

/// Options for a [`McSet`]: ring kind and identifier rule, and with the
/// `client` feature the memcached timeouts.
///
/// ```
/// use serversets_mcset::{McSet, NodeIdentity, RingKind};
/// use serversets_fixedset::FixedSet;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let set = McSet::builder()
///     .kind(RingKind::GoMcset)
///     .identity(NodeIdentity::HostPort)
///     .build(FixedSet::new(["10.0.0.1:11211", "10.0.0.2:11211"])?)?;
/// assert_eq!(set.ring().kind(), RingKind::GoMcset);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct McSetBuilder {
    ring: RingBuilder,
    client: ClientOptions,
    /// The `set` label of the metrics (`None`: [`UNNAMED`]).
    metrics_set: Option<Arc<str>>,
    count_picks: bool,
}

impl McSetBuilder {
    /// The hashing scheme (default [`RingKind::Ketama`]); see the type's
    /// example.
    pub fn kind(mut self, kind: RingKind) -> Self {
        self.ring = self.ring.kind(kind);
        self
    }

    /// The ketama identifier rule (default [`NodeIdentity::Finagle`]); see
    /// the type's example.
    pub fn identity(mut self, identity: NodeIdentity) -> Self {
        self.ring = self.ring.identity(identity);
        self
    }

    /// The longest a request waits for a connection to its member's
    /// memcached to open (default 1 s), DNS included; then it fails with
    /// [`Error::ConnectTimeout`]. Requests to other members never wait for
    /// it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::builder()
    ///     .connect_timeout(Duration::from_millis(250))
    ///     .request_timeout(Duration::from_millis(100))
    ///     .build(FixedSet::new(["10.0.0.1:11211"])?)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "client")]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.client.connect_timeout = timeout;
        self
    }

    /// The longest a get, set or delete waits for its turn on the member's
    /// connection plus the exchange itself (default 1 s); then it fails with
    /// [`Error::RequestTimeout`] and the connection is closed. Time
    /// spent opening a connection counts against
    /// [`connect_timeout`](Self::connect_timeout) instead, so a request
    /// takes at most the sum of the two. See `connect_timeout` for an
    /// example.
    #[cfg(feature = "client")]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.client.request_timeout = timeout;
        self
    }

    /// Names the set in metrics: the `set` label of every `serversets_mc_*`
    /// metric (default `unnamed`). Give it the server set's path, as
    /// `serversets-core` labels its watches. See `docs/metrics.md`.
    ///
    /// ```
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::builder()
    ///     .metrics_set("/discovery/prod/memcache")
    ///     .build(FixedSet::new(["10.0.0.1:11211"])?)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn metrics_set(mut self, name: &str) -> Self {
        self.metrics_set = Some(Arc::from(name));
        self
    }

    /// Counts the keys routed to each ring node in
    /// `serversets_mc_picks_total{set,endpoint}` (default off). On, each
    /// pick adds to a counter registered when the ring was built (an atomic
    /// add on a line all pickers share); off, a pick does nothing for
    /// metrics and allocates nothing.
    ///
    /// ```
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::builder()
    ///     .count_picks(true)
    ///     .build(FixedSet::new(["10.0.0.1:11211"])?)?;
    /// set.pick("user:42")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn count_picks(mut self, on: bool) -> Self {
        self.count_picks = on;
        self
    }

    /// Builds the first ring from the watcher's current snapshot, then
    /// follows it on a Tokio task. Must be called inside a Tokio runtime.
    ///
    /// The McSet owns the watcher: dropping the McSet stops the task and
    /// drops the watcher with it.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a Tokio runtime.
    ///
    /// ```
    /// use serversets_mcset::{McSet, RingKind};
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::builder().kind(RingKind::Ketama).build(FixedSet::new(["10.0.0.1:11211"])?)?;
    /// assert_eq!(set.ring().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn build<W>(self, watcher: W) -> Result<McSet, Error>
    where
        W: Watcher + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let metrics = McMetrics::new(
            self.metrics_set.unwrap_or_else(|| Arc::from(UNNAMED)),
            self.count_picks,
        );
        let shared = Arc::new(Shared::new(watcher, self.ring, self.client, metrics));
        let task = follow::spawn(&runtime, &shared);
        Ok(McSet {
            shared,
            _task: task,
        })
    }
}

/// A memcache pool on a consistent-hash ring that follows a server set.
///
/// `McSet::new(watcher)` builds a ketama ring from the watcher's members
/// and rebuilds it on every change, on a background task; lookups are one
/// atomic load plus a binary search and never wait for a rebuild. Works over
/// any [`Watcher`]: a ZooKeeper watch, a `FixedSet`, your own.
///
/// The follower is core's shared one
/// ([`serversets_core::balance::Follower`]), with its one policy. It ends
/// when the source closes (the last ring stays in service,
/// [`state`](McSet::state) turns [`SyncState::SourceClosed`]) or when the
/// McSet is dropped. A panic in a rebuild is logged and the previous ring
/// kept; the next change is tried again. Should the task die (its runtime
/// shut down), `state` turns [`SyncState::Failed`] and each use of the
/// McSet catches up with the source itself, rebuilding the ring in the
/// caller when the source has changed.
///
/// ```
/// use serversets_mcset::McSet;
/// use serversets_fixedset::FixedSet;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let source = FixedSet::new(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"])?;
/// let set = McSet::new(source)?;
/// let member = set.pick("user:42")?;
/// println!("user:42 lives on {}", member.addr());
/// assert_eq!(set.each().count(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct McSet {
    shared: Arc<Shared>,
    /// Dropping it stops the follower task.
    _task: FollowTask,
}

impl McSet {
    /// A ketama McSet (Finagle identity) following `watcher`; see
    /// [`McSetBuilder::build`].
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a Tokio runtime.
    ///
    /// ```
    /// use serversets_mcset::{Error, McSet};
    /// use serversets_fixedset::FixedSet;
    ///
    /// // No runtime here: refused with a typed error rather than a panic.
    /// let err = McSet::new(FixedSet::empty()).unwrap_err();
    /// assert!(matches!(err, Error::NoRuntime));
    /// ```
    pub fn new<W>(watcher: W) -> Result<McSet, Error>
    where
        W: Watcher + 'static,
    {
        McSetBuilder::default().build(watcher)
    }

    /// Options for a new McSet; see [`McSetBuilder`] for an example.
    pub fn builder() -> McSetBuilder {
        McSetBuilder::default()
    }

    /// The member `key` lives on.
    ///
    /// # Errors
    ///
    /// [`Error::NoMembers`] when the set is empty.
    ///
    /// ```
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::new(FixedSet::new(["10.0.1.1:11211"])?)?;
    /// assert_eq!(set.pick(b"k")?.addr().to_string(), "10.0.1.1:11211");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[inline]
    pub fn pick(&self, key: impl AsRef<[u8]>) -> Result<Member, Error> {
        self.shared.routing().pick(key.as_ref())
    }

    /// Every member in the current ring (sorted by ring identifier), as Go's
    /// `ServerSelector.Each` gave them: for fan-out work such as flushing.
    ///
    /// ```
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::new(FixedSet::new(["b:11211", "a:11211"])?)?;
    /// let hosts: Vec<String> = set.each().map(|m| m.host().to_string()).collect();
    /// assert_eq!(hosts, ["a", "b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn each(&self) -> Members {
        Members {
            ring: self.ring(),
            next: 0,
        }
    }

    /// The current ring: a consistent view for several lookups, or for
    /// [`Ring::locate`].
    ///
    /// ```
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::new(FixedSet::new(["10.0.1.1:11211"])?)?;
    /// let ring = set.ring();
    /// let at = ring.locate("k").expect("one server");
    /// assert_eq!(at.node.identifier(), "10.0.1.1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn ring(&self) -> Arc<Ring> {
        self.shared.routing().ring().clone()
    }

    /// Whether the set still follows its source; see [`SyncState`] for an
    /// example.
    pub fn state(&self) -> SyncState {
        self.shared.state()
    }

    /// Waits until the ring reflects source version `version` or later and
    /// returns that ring. Handy after changing a source you control.
    ///
    /// # Errors
    ///
    /// [`Error::NotFollowing`] if the follower ends first.
    ///
    /// ```
    /// use serversets_core::Watcher;
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let source = FixedSet::new(["a:11211"])?;
    /// let feed = source.feed();
    /// let set = McSet::new(feed.clone())?;
    /// source.set_addresses(["a:11211", "b:11211"])?;
    /// let ring = set.wait_for_version(feed.snapshot().version()).await?;
    /// assert_eq!(ring.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn wait_for_version(&self, version: u64) -> Result<Arc<Ring>, Error> {
        match self.shared.wait_for_version(version).await {
            Some(ring) => Ok(ring),
            None => Err(Error::NotFollowing {
                state: self.state(),
            }),
        }
    }

    /// Reads `key` from the member it lives on; `None` when it is not there.
    ///
    /// # Errors
    ///
    /// [`Error::NoMembers`] for an empty set; [`Error::ConnectTimeout`] or
    /// [`Error::RequestTimeout`] when the member's memcached does not accept
    /// or answer in time (see [`McSetBuilder`]); [`Error::Memcache`] for any
    /// other failure.
    ///
    /// ```no_run
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let set = McSet::new(FixedSet::new(["127.0.0.1:11211"])?)?;
    /// set.set("greeting", b"hello", None).await?;
    /// assert_eq!(set.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
    /// assert!(set.delete("greeting").await?);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "client")]
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, Error> {
        let key = key.as_ref();
        self.client(key)?.get(key).await
    }

    /// Stores `value` under `key` on the member it lives on, expiring after
    /// `ttl`.
    ///
    /// The TTL follows memcached's rules, so an item lives at least as long
    /// as asked (to memcached's one-second clock) and never by accident
    /// forever:
    ///
    /// * `None`: the item never expires (it may still be evicted).
    /// * `Some(Duration::ZERO)`: the item is expired at once. memcached
    ///   stores nothing readable, and any older value under the key is
    ///   replaced and so gone as well: a TTL computed as "time left" that
    ///   has run out does what it says.
    /// * Anything else is rounded up to whole seconds (500 ms lives 1 s,
    ///   1.2 s lives 2 s). Up to 30 days it is sent as a number of seconds;
    ///   beyond, memcached expects an absolute Unix time, which is sent
    ///   instead (now plus the TTL on this machine's clock, so the two
    ///   clocks should agree), clamped to the latest time memcached
    ///   accepts, in January 2038.
    ///
    /// # Errors
    ///
    /// As for [`get`](McSet::get).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let set = McSet::new(FixedSet::new(["127.0.0.1:11211"])?)?;
    /// set.set("session:1", b"{}", Some(Duration::from_secs(300))).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "client")]
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let key = key.as_ref();
        let client = self.client(key)?;
        client
            .set(key, value, crate::client::exptime(ttl, SystemTime::now()))
            .await
    }

    /// Deletes `key` from the member it lives on; `false` when it was not
    /// there.
    ///
    /// # Errors
    ///
    /// As for [`get`](McSet::get).
    ///
    /// ```no_run
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let set = McSet::new(FixedSet::new(["127.0.0.1:11211"])?)?;
    /// let existed = set.delete("maybe").await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "client")]
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = key.as_ref();
        self.client(key)?.delete(key).await
    }

    /// Number of memcached client handles currently held (one per ring
    /// node); handles of departed members go once their last request ends.
    /// A test hook: feature `test-util`.
    ///
    /// ```
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::new(FixedSet::new(["127.0.0.1:11211", "127.0.0.2:11211"])?)?;
    /// assert_eq!(set.client_count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[cfg(all(feature = "client", feature = "test-util"))]
    pub fn client_count(&self) -> usize {
        self.shared.routing().client_count()
    }

    /// The client of the member owning `key`.
    #[cfg(feature = "client")]
    fn client(&self, key: &[u8]) -> Result<Arc<crate::client::ServerClient>, Error> {
        self.shared.routing().client(key)
    }
}

impl std::fmt::Debug for McSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        f.debug_struct("McSet")
            .field("kind", &ring.kind())
            .field("version", &ring.version())
            .field("nodes", &ring.len())
            .field("state", &self.state())
            .finish()
    }
}

/// Iterator over the members of a ring; see [`McSet::each`] for an example.
/// Holds the ring it started with, so a concurrent rebuild does not disturb
/// it.
#[derive(Debug, Clone)]
pub struct Members {
    ring: Arc<Ring>,
    next: usize,
}

impl Iterator for Members {
    type Item = Member;

    fn next(&mut self) -> Option<Member> {
        let node = self.ring.nodes().get(self.next)?;
        self.next += 1;
        Some(node.member().clone())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.ring.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Members {}

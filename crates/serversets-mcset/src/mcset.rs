//! A ring kept in sync with a watched server set.
//!
//! Readers load the current routing table with one atomic load (`arc-swap`)
//! and never wait: rebuilds happen on a background task, off the read path,
//! on Tokio's blocking pool, and are swapped in whole.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
#[cfg(feature = "client")]
use std::time::Duration;

use arc_swap::ArcSwap;
use serversets_core::{Member, Snapshot, Subscription, Watcher};
use tokio::sync::watch;

use crate::{McSetError, NodeIdentity, Ring, RingBuilder, RingKind};

/// Timeouts for the memcached client (feature `client`); nothing without it.
#[cfg(feature = "client")]
use crate::client::ClientOptions;
#[cfg(not(feature = "client"))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ClientOptions;

/// What the routing table a reader loads holds: the ring and, with the
/// `client` feature, one memcached client per ring node.
pub(crate) struct Routing {
    pub(crate) ring: Arc<Ring>,
    #[cfg(feature = "client")]
    pub(crate) clients: Box<[Arc<crate::client::ServerClient>]>,
    /// `serversets_mc_picks_total` of each ring node, by node index, when
    /// [`McSetBuilder::count_picks`] is on; `None` (nothing to do per
    /// pick) otherwise.
    picks: Option<Box<[metrics::Counter]>>,
}

impl Routing {
    fn new(
        ring: Ring,
        _previous: Option<&Routing>,
        _options: &ClientOptions,
        metrics: &McMetrics,
    ) -> Routing {
        #[cfg(feature = "client")]
        let clients = crate::client::clients_for(&ring, _previous, *_options);
        let picks = metrics.count_picks.then(|| {
            ring.nodes()
                .iter()
                .map(|node| {
                    metrics::counter!(
                        "serversets_mc_picks_total",
                        "set" => metrics.name.to_string(),
                        "endpoint" => node.addr().to_string()
                    )
                })
                .collect()
        });
        metrics.nodes.set(ring.len() as f64);
        metrics.points.set(ring.point_count() as f64);
        Routing {
            ring: Arc::new(ring),
            #[cfg(feature = "client")]
            clients,
            picks,
        }
    }

    /// Counts a pick of node `index` (when picks are counted).
    #[inline]
    pub(crate) fn picked(&self, index: usize) {
        if let Some(counter) = self.picks.as_ref().and_then(|p| p.get(index)) {
            counter.increment(1);
        }
    }
}

/// The `set` label when none was given ([`McSetBuilder::metrics_set`]).
const UNNAMED: &str = "unnamed";

/// A McSet's metrics, labelled `set`; registered when it is built.
struct McMetrics {
    name: Arc<str>,
    count_picks: bool,
    /// `serversets_mc_rebuilds_total`: rings built and installed after a
    /// membership change.
    rebuilds: metrics::Counter,
    /// `serversets_mc_rebuild_failures_total`: rebuilds that failed (the
    /// previous ring stays).
    rebuild_failures: metrics::Counter,
    /// `serversets_mc_ring_nodes`: servers on the ring now.
    nodes: metrics::Gauge,
    /// `serversets_mc_ring_points`: points on the continuum now.
    points: metrics::Gauge,
}

impl McMetrics {
    fn new(name: Arc<str>, count_picks: bool) -> McMetrics {
        metrics::describe_counter!(
            "serversets_mc_rebuilds_total",
            "Memcache rings rebuilt and installed after a membership change"
        );
        metrics::describe_counter!(
            "serversets_mc_rebuild_failures_total",
            "Memcache ring rebuilds that failed (the previous ring stays in service)"
        );
        metrics::describe_gauge!("serversets_mc_ring_nodes", "Servers on the memcache ring");
        metrics::describe_gauge!(
            "serversets_mc_ring_points",
            "Points on the memcache ring's continuum"
        );
        if count_picks {
            metrics::describe_counter!(
                "serversets_mc_picks_total",
                "Keys routed to each memcache server (McSetBuilder::count_picks)"
            );
        }
        let set = name.to_string();
        McMetrics {
            rebuilds: metrics::counter!("serversets_mc_rebuilds_total", "set" => set.clone()),
            rebuild_failures: metrics::counter!("serversets_mc_rebuild_failures_total", "set" => set.clone()),
            nodes: metrics::gauge!("serversets_mc_ring_nodes", "set" => set.clone()),
            points: metrics::gauge!("serversets_mc_ring_points", "set" => set),
            name,
            count_picks,
        }
    }
}

/// Whether a [`McSet`] still follows its source.
///
/// ```
/// use serversets_mcset::{McSet, SyncState};
/// use serversets_fixedset::FixedSet;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let source = FixedSet::new(["127.0.0.1:11211"])?;
/// let feed = source.feed();
/// let set = McSet::new(feed)?;
/// assert_eq!(set.state(), SyncState::Following);
/// source.close();
/// let _ = set.wait_for_version(u64::MAX).await; // returns once the task has ended
/// assert_eq!(set.state(), SyncState::SourceClosed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// The ring follows every change of the source.
    Following,
    /// The source closed; the last ring is kept and served.
    SourceClosed,
    /// The task following the source stopped unexpectedly (it panicked or
    /// its runtime shut down); the last ring is kept and served. The text
    /// says why; the same was logged at error level.
    Failed(String),
}

#[derive(Debug, Clone)]
struct Progress {
    version: u64,
    state: SyncState,
}

struct Shared {
    routing: ArcSwap<Routing>,
    /// Timeouts given to the client handles of servers that join later.
    client: ClientOptions,
    progress: watch::Sender<Progress>,
    /// Set by `McSet::drop` before it aborts the task, so the task's exit
    /// guard can tell an orderly stop from a failure.
    dropping: AtomicBool,
    /// Metric handles; per-node pick counters live in [`Routing`].
    metrics: McMetrics,
}

impl Shared {
    fn set_state(&self, state: SyncState) {
        self.progress.send_modify(|p| p.state = state);
    }
}

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

    /// The longest a request waits for a connection to its server to open
    /// (default 1 s), DNS included; then it fails with
    /// [`McSetError::ConnectTimeout`]. Requests to other servers never wait
    /// for it.
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

    /// The longest a get, set or delete waits for its turn on the server's
    /// connection plus the exchange itself (default 1 s); then it fails with
    /// [`McSetError::RequestTimeout`] and the connection is closed. Time
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

    /// Counts the keys routed to each server in
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
    /// set.pick_server("user:42")?;
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
    pub fn build<W>(self, watcher: W) -> Result<McSet, McSetError>
    where
        W: Watcher + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| McSetError::NoRuntime)?;
        // Subscribe before reading, so a change in between is seen by the
        // task rather than lost.
        let subscription = watcher.subscribe();
        let first = watcher.snapshot();
        let ring = self
            .ring
            .version(first.version())
            .members(first.iter().cloned());
        let (progress, _) = watch::channel(Progress {
            version: ring.version(),
            state: SyncState::Following,
        });
        let metrics = McMetrics::new(
            self.metrics_set.unwrap_or_else(|| Arc::from(UNNAMED)),
            self.count_picks,
        );
        let shared = Arc::new(Shared {
            routing: ArcSwap::from_pointee(Routing::new(ring, None, &self.client, &metrics)),
            client: self.client,
            progress,
            dropping: AtomicBool::new(false),
            metrics,
        });
        // The guard is built here, not inside the task, so it also reports a
        // task that is dropped before it ever ran.
        let guard = ExitGuard {
            shared: shared.clone(),
        };
        let task = runtime.spawn(follow(guard, self.ring, Box::new(watcher), subscription));
        Ok(McSet {
            shared,
            task: task.abort_handle(),
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
/// The task ends when the source closes (the last ring stays in service,
/// [`state`](McSet::state) turns [`SyncState::SourceClosed`]) or when the
/// McSet is dropped. A panic in a rebuild is logged and the previous ring
/// kept; the next change is tried again.
///
/// ```
/// use serversets_mcset::McSet;
/// use serversets_fixedset::FixedSet;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let servers = FixedSet::new(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"])?;
/// let set = McSet::new(servers)?;
/// let server = set.pick_server("user:42")?;
/// println!("user:42 lives on {}", server.addr());
/// assert_eq!(set.each().count(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct McSet {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl McSet {
    /// A ketama McSet (Finagle identity) following `watcher`; see
    /// [`McSetBuilder::build`]. Fails with [`McSetError::NoRuntime`] outside
    /// a Tokio runtime.
    ///
    /// ```
    /// use serversets_mcset::{McSet, McSetError};
    /// use serversets_fixedset::FixedSet;
    ///
    /// // No runtime here: refused with a typed error rather than a panic.
    /// let err = McSet::new(FixedSet::empty()).unwrap_err();
    /// assert!(matches!(err, McSetError::NoRuntime));
    /// ```
    pub fn new<W>(watcher: W) -> Result<McSet, McSetError>
    where
        W: Watcher + 'static,
    {
        McSetBuilder::default().build(watcher)
    }

    /// Options for a new McSet; see [`McSetBuilder`] for an example.
    pub fn builder() -> McSetBuilder {
        McSetBuilder::default()
    }

    /// The server `key` lives on, or [`McSetError::NoServers`] when the set
    /// is empty.
    ///
    /// ```
    /// use serversets_mcset::McSet;
    /// use serversets_fixedset::FixedSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let set = McSet::new(FixedSet::new(["10.0.1.1:11211"])?)?;
    /// assert_eq!(set.pick_server(b"k")?.addr().to_string(), "10.0.1.1:11211");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[inline]
    pub fn pick_server(&self, key: impl AsRef<[u8]>) -> Result<Member, McSetError> {
        let routing = self.shared.routing.load();
        let Some(index) = routing.ring.pick_index(key.as_ref()) else {
            return Err(McSetError::NoServers);
        };
        routing.picked(index);
        match routing.ring.nodes().get(index) {
            Some(node) => Ok(node.member().clone()),
            None => Err(McSetError::NoServers),
        }
    }

    /// Every server in the current ring (sorted by ring identifier), as Go's
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
    pub fn each(&self) -> Servers {
        Servers {
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
        self.shared.routing.load().ring.clone()
    }

    /// Whether the set still follows its source; see [`SyncState`] for an
    /// example.
    pub fn state(&self) -> SyncState {
        self.shared.progress.borrow().state.clone()
    }

    /// Waits until the ring reflects source version `version` or later and
    /// returns that ring; fails with [`McSetError::NotFollowing`] if the task
    /// ends first. Handy after changing a source you control.
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
    pub async fn wait_for_version(&self, version: u64) -> Result<Arc<Ring>, McSetError> {
        let mut progress = self.shared.progress.subscribe();
        let reached = progress
            .wait_for(|p| p.version >= version || p.state != SyncState::Following)
            .await
            .map(|p| p.clone());
        match reached {
            Ok(p) if p.version >= version => Ok(self.ring()),
            Ok(p) => Err(McSetError::NotFollowing(format!("{:?}", p.state))),
            // The sender lives in `shared`, which `self` holds.
            Err(_) => Err(McSetError::NotFollowing("progress channel closed".into())),
        }
    }

    #[cfg(feature = "client")]
    pub(crate) fn routing(&self) -> arc_swap::Guard<Arc<Routing>> {
        self.shared.routing.load()
    }
}

impl Drop for McSet {
    fn drop(&mut self) {
        self.shared.dropping.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

impl std::fmt::Debug for McSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        f.debug_struct("McSet")
            .field("kind", &ring.kind())
            .field("version", &ring.version())
            .field("servers", &ring.len())
            .field("state", &self.state())
            .finish()
    }
}

/// Iterator over the servers of a ring; see [`McSet::each`] for an example.
/// Holds the ring it started with, so a concurrent rebuild does not disturb
/// it.
#[derive(Debug, Clone)]
pub struct Servers {
    ring: Arc<Ring>,
    next: usize,
}

impl Iterator for Servers {
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

impl ExactSizeIterator for Servers {}

/// Marks the state when the following task ends for any reason other than
/// an orderly one it recorded itself, so the end is never silent.
struct ExitGuard {
    shared: Arc<Shared>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if self.shared.dropping.load(Ordering::SeqCst) {
            return;
        }
        if self.shared.progress.borrow().state != SyncState::Following {
            return;
        }
        let why = if std::thread::panicking() {
            "the task following the source panicked"
        } else {
            "the task following the source was cancelled (runtime shut down?)"
        };
        tracing::error!("{why}; the memcache ring will no longer change");
        self.shared.set_state(SyncState::Failed(why.to_string()));
    }
}

async fn follow(
    guard: ExitGuard,
    options: RingBuilder,
    // Held so the source stays alive as long as the McSet follows it.
    _watcher: Box<dyn Watcher>,
    mut subscription: Subscription,
) {
    let shared = &guard.shared;
    loop {
        let Some(snapshot) = subscription.changed().await else {
            tracing::info!("memcache server set closed; keeping the last ring");
            shared.set_state(SyncState::SourceClosed);
            return;
        };
        if snapshot.version() <= shared.routing.load().ring.version() {
            continue;
        }
        match rebuild(options, snapshot).await {
            Ok(ring) => install(shared, ring),
            Err(err) if err.is_cancelled() => {
                // The blocking pool is shutting down: so is the runtime.
                shared.set_state(SyncState::Failed(
                    "the runtime shut down while rebuilding the ring".into(),
                ));
                return;
            }
            Err(err) => {
                shared.metrics.rebuild_failures.increment(1);
                tracing::error!(error = %err, "building the memcache ring failed; keeping the previous ring");
            }
        }
    }
}

async fn rebuild(options: RingBuilder, snapshot: Snapshot) -> Result<Ring, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        options
            .version(snapshot.version())
            .members(snapshot.iter().cloned())
    })
    .await
}

fn install(shared: &Shared, ring: Ring) {
    let version = ring.version();
    let servers = ring.len();
    let previous = shared.routing.load();
    let routing = Routing::new(ring, Some(&previous), &shared.client, &shared.metrics);
    drop(previous);
    shared.routing.store(Arc::new(routing));
    shared.metrics.rebuilds.increment(1);
    shared.progress.send_modify(|p| p.version = version);
    tracing::debug!(version, servers, "memcache ring rebuilt");
}

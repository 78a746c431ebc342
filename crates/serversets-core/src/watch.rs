//! Following a server set: a local cache of member data kept in step with
//! ZooKeeper at a cost per change that does not grow with the set.
//!
//! Member data is immutable (writers change a member by delete + create), so
//! each member is read once, when its name first appears. With ZooKeeper
//! 3.6+ a persistent recursive watch names each created and deleted member,
//! so a change costs one read at most; older servers get a children watch
//! (which re-lists every name per change). After every reconnect and every
//! new session the whole set is re-listed, because persistent watches can
//! miss events across a reconnect (ZOOKEEPER-4698). While ZooKeeper is
//! unreachable the last known members keep being served.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::error::{is_answer, Error, Result};
use crate::read::{self, Reader, Wanted};
use crate::session::{Generation, Health, Session};
use crate::supervise::spawn_supervised;
use crate::vector::{self, Vector};
use crate::{
    classify, Feed, Member, MemberFilter, Publisher, ServerSet, Snapshot, Subscription, Verdict,
    Watcher,
};

/// Members; Finagle's weight nodes; children named otherwise are listed in
/// `rejected()`, never read.
const MEMBER_PREFIX: &str = "member_";
const VECTOR_PREFIX: &str = "vector_";
const NOT_A_MEMBER: &str = "not a member_ node";
const DRAINED: &str = "drained: a vector_ node gives it weight -1.0";

/// Whether the watch reads this child's data.
fn is_read(name: &str) -> bool {
    name.starts_with(MEMBER_PREFIX) || name.starts_with(VECTOR_PREFIX)
}

/// How many read batches may be in flight at once.
const MAX_INFLIGHT_BATCHES: usize = 32;

/// How the watch learns about changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatchStrategy {
    /// A persistent recursive watch (ZooKeeper 3.6+), falling back to a
    /// children watch when the server does not support it. The default.
    #[default]
    Auto,
    /// Always a children watch, re-armed on every change (what older clients
    /// do; every change re-lists all names).
    Children,
}

/// Builds a [`Watch`]; see [`ServerSet::watch_builder`].
///
/// ```
/// use serversets_core::{Environment, ServerSet, Watcher};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let zk = testkit::ZkCluster::standalone()?; // a real ZooKeeper for this example
/// # let zookeepers = [zk.connect_string()];
/// let set = ServerSet::new(Environment::Production, "search", zookeepers)?;
/// let _in_shard_3 = set
///     .registration("10.0.0.1", 9000)
///     .additional_endpoint("http", "10.0.0.1", 8080)
///     .shard(3)
///     .register()
///     .await?;
/// let _elsewhere = set.registration("10.0.0.2", 9000).shard(4).register().await?;
///
/// // Members' "http" endpoints, shard 3 only.
/// let watch = set.watch_builder().endpoint("http").shard(3).start().await?;
/// let addrs: Vec<String> = watch.snapshot().iter().map(|m| m.addr().to_string()).collect();
/// assert_eq!(addrs, ["10.0.0.1:8080"]);
/// // Why the other one is not served:
/// assert!(watch.rejected().values().any(|why| why == "shard 4, not 3"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WatchBuilder {
    set: ServerSet,
    filter: MemberFilter,
    strategy: WatchStrategy,
    multi_read: bool,
}

impl WatchBuilder {
    pub(crate) fn new(set: ServerSet) -> Self {
        WatchBuilder {
            set,
            filter: MemberFilter::default(),
            strategy: WatchStrategy::Auto,
            multi_read: true,
        }
    }

    /// Serve each member's named additional endpoint instead of its service
    /// endpoint; members without it are skipped.
    pub fn endpoint(mut self, name: &str) -> Self {
        self.filter.endpoint = Some(name.to_string());
        self
    }

    /// Serve only members of this shard.
    pub fn shard(mut self, shard: i32) -> Self {
        self.filter.shard = Some(shard);
        self
    }

    /// How changes are followed (default [`WatchStrategy::Auto`]).
    pub fn strategy(mut self, strategy: WatchStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Whether members are read in bulk with ZooKeeper 3.6's multi-read
    /// (default true). Servers without it are detected and read one member
    /// at a time anyway; turn it off only for a proxy or server that
    /// mishandles multi-reads.
    ///
    /// ```
    /// use serversets_core::{Environment, ServerSet, Watcher};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let zk = testkit::ZkCluster::standalone()?; // a real ZooKeeper for this example
    /// # let zookeepers = [zk.connect_string()];
    /// let set = ServerSet::new(Environment::Staging, "search", zookeepers)?;
    /// let _a = set.register_endpoint("10.0.0.1", 9000, None).await?;
    /// let _b = set.register_endpoint("10.0.0.2", 9000, None).await?;
    ///
    /// let one_by_one = set.watch_builder().multi_read(false).start().await?;
    /// assert_eq!(one_by_one.snapshot().len(), 2);
    /// assert_eq!(one_by_one.stats().multi_reads, 0);
    /// assert_eq!(one_by_one.stats().single_reads, 2);
    /// # Ok(()) }
    /// ```
    pub fn multi_read(mut self, on: bool) -> Self {
        self.multi_read = on;
        self
    }

    /// Connects, reads the current members and starts following changes.
    /// Returns once the first read is done. A missing path is an empty set
    /// that fills in when the path appears; nothing is created.
    pub async fn start(self) -> Result<Watch> {
        let session = self.set.session()?;
        let started = std::time::Instant::now();
        session.first_generation().await?;
        let publisher = Publisher::new();
        let feed = publisher.feed();
        let (ready, mut ready_rx) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(());
        let ctx = Arc::new(Ctx {
            path: self.set.inner.path.clone(),
            filter: self.filter,
            session: session.clone(),
            publisher,
            cache: Mutex::new(HashMap::new()),
            vectors: Mutex::new(BTreeMap::new()),
            rejected: Mutex::new(BTreeMap::new()),
            malformed_total: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            reader: Reader::with_metrics(self.multi_read, &self.set.inner.path),
            metrics: WatchMetrics::new(&self.set.inner.path),
            ready,
            last_error: Mutex::new(None),
        });
        let c = ctx.clone();
        let strategy = self.strategy;
        spawn_supervised("serverset-watch", move || {
            run(c.clone(), stop_rx.clone(), strategy)
        });
        let watch = Watch {
            feed,
            ctx,
            _stop: stop,
        };
        // One budget for connecting and the first read together (with a
        // little room for the read when connecting took almost all of it).
        let budget = session.config().connect_timeout;
        let left = budget
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        let ready = tokio::time::timeout(left, ready_rx.wait_for(|r| *r))
            .await
            .map(|r| r.is_ok());
        match ready {
            Ok(true) => Ok(watch),
            _ => Err(Error::Connect {
                hosts: session.hosts().to_string(),
                timeout: budget,
                reason: watch
                    .ctx
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_else(|| "the first read did not finish".into()),
            }),
        }
    }
}

/// What the watch knows about one member child.
#[derive(Clone)]
enum Entry {
    /// Served, with its weight from the vector nodes.
    Served(Member),
    /// A good member a vector node drains (weight -1.0); kept so it is
    /// served again, without a read, once the vector goes.
    Drained(Member),
    Skipped,
}

struct Ctx {
    path: String,
    filter: MemberFilter,
    session: Session,
    publisher: Publisher,
    /// Every `member_` child read so far, by name.
    cache: Mutex<HashMap<String, Entry>>,
    /// Every `vector_` child read so far, by name (`None`: unusable).
    vectors: Mutex<BTreeMap<String, Option<Vector>>>,
    /// Children that are not served, with why (for `rejected()`).
    rejected: Mutex<BTreeMap<String, String>>,
    malformed_total: AtomicU64,
    resyncs: AtomicU64,
    reader: Arc<Reader>,
    ready: watch::Sender<bool>,
    last_error: Mutex<Option<String>>,
    /// Metric handles, registered once when the watch starts.
    metrics: WatchMetrics,
}

/// Why a child is in `rejected()`, as the `reason` label of
/// `serversets_watch_rejected`.
const REJECTION_REASONS: [&str; 6] = [
    "malformed",
    "not_served",
    "drained",
    "not_a_member",
    "unreadable",
    "invalid_vector",
];

/// The `reason` label (an index into [`REJECTION_REASONS`]) of a
/// `rejected()` entry.
fn rejection_reason(why: &str) -> usize {
    if why.starts_with("malformed: ") {
        0
    } else if why == DRAINED {
        2
    } else if why == NOT_A_MEMBER {
        3
    } else if why.starts_with("unreadable: ") {
        4
    } else if why.starts_with("invalid vector: ") {
        5
    } else {
        1
    }
}

/// A watch's metrics, labelled `set` with its path. Registered once per
/// watch, so an update is an atomic store or add.
struct WatchMetrics {
    /// `serversets_watch_members`: members served now.
    members: metrics::Gauge,
    /// `serversets_watch_rejected{reason}`: children present but not
    /// served, by [`REJECTION_REASONS`].
    rejected: [metrics::Gauge; 6],
    /// `serversets_watch_resyncs_total`: full re-reads.
    resyncs: metrics::Counter,
    /// `serversets_watch_malformed_total`: malformed members read.
    malformed: metrics::Counter,
    /// `serversets_watch_propagation_seconds`: from a notification to the
    /// snapshot that includes it.
    propagation: metrics::Histogram,
    /// `serversets_watch_reads_per_change`: ZooKeeper read requests one
    /// published change took.
    reads_per_change: metrics::Histogram,
}

/// A change under way: when its first notification arrived, and the read
/// requests sent before it.
struct Change {
    at: std::time::Instant,
    reads: u64,
}

impl WatchMetrics {
    fn new(path: &str) -> WatchMetrics {
        metrics::describe_gauge!("serversets_watch_members", "Members a watch serves now");
        metrics::describe_gauge!(
            "serversets_watch_rejected",
            "Children of a watched set present but not served, by reason"
        );
        metrics::describe_counter!(
            "serversets_watch_resyncs_total",
            "Full re-reads of a watched set (start, reconnects, new sessions)"
        );
        metrics::describe_counter!(
            "serversets_watch_malformed_total",
            "Malformed members read by a watch"
        );
        metrics::describe_histogram!(
            "serversets_watch_propagation_seconds",
            metrics::Unit::Seconds,
            "From a ZooKeeper notification to the watch's snapshot that includes it"
        );
        metrics::describe_histogram!(
            "serversets_watch_reads_per_change",
            "ZooKeeper read requests one published change of a watch took"
        );
        let set = path.to_string();
        let rejected = REJECTION_REASONS.map(|reason| {
            metrics::gauge!("serversets_watch_rejected", "set" => set.clone(), "reason" => reason)
        });
        WatchMetrics {
            members: metrics::gauge!("serversets_watch_members", "set" => set.clone()),
            rejected,
            resyncs: metrics::counter!("serversets_watch_resyncs_total", "set" => set.clone()),
            malformed: metrics::counter!("serversets_watch_malformed_total", "set" => set.clone()),
            propagation: metrics::histogram!("serversets_watch_propagation_seconds", "set" => set.clone()),
            reads_per_change: metrics::histogram!("serversets_watch_reads_per_change", "set" => set),
        }
    }

    /// A change starts with this notification.
    fn change(reader: &Reader) -> Change {
        Change {
            at: std::time::Instant::now(),
            reads: reader.requests(),
        }
    }

    /// `change` is published: its time and reads, and the gauges.
    fn published(&self, ctx: &Ctx, change: Change) {
        self.propagation.record(change.at.elapsed().as_secs_f64());
        let reads = ctx.reader.requests().saturating_sub(change.reads);
        self.reads_per_change.record(reads as f64);
        self.refresh(ctx);
    }

    /// Sets the gauges from the snapshot and `rejected()`.
    fn refresh(&self, ctx: &Ctx) {
        self.members.set(ctx.publisher.snapshot().len() as f64);
        let mut counts = [0usize; 6];
        for why in lock(&ctx.rejected).values() {
            counts[rejection_reason(why)] += 1;
        }
        for (gauge, n) in self.rejected.iter().zip(counts) {
            gauge.set(n as f64);
        }
    }
}

/// Counters describing a watch, for metrics and troubleshooting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchStats {
    /// Members served now.
    pub served: usize,
    /// Children present now but not served (malformed, not ALIVE, filtered
    /// out, or not a `member_` node).
    pub rejected: usize,
    /// Malformed members seen since the watch started.
    pub malformed_total: u64,
    /// Full re-reads done (start, reconnects, new sessions).
    pub resyncs: u64,
    /// Single member reads sent.
    pub single_reads: u64,
    /// Multi-read requests sent (each reads a batch of members).
    pub multi_reads: u64,
}

/// A live view of a server set in ZooKeeper; implements [`Watcher`].
///
/// Dropping it stops following the set (its [`Feed`]s then report closed).
///
/// ```
/// use serversets_core::{Environment, Health, ServerSet, Watcher};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let zk = testkit::ZkCluster::standalone()?; // a real ZooKeeper for this example
/// # let zookeepers = [zk.connect_string()];
/// let set = ServerSet::new(Environment::Staging, "service_name", zookeepers)?;
/// let watch = set.watch().await?;
/// assert!(watch.snapshot().is_empty());
/// let mut changes = watch.subscribe();
///
/// let _endpoint = set.register_endpoint("10.0.0.3", 31781, None).await?;
/// while let Some(snapshot) = changes.changed().await {
///     assert_eq!(watch.health(), Health::Connected);
///     if snapshot.len() == 1 {
///         break; // the member arrived
///     }
/// }
/// assert_eq!(watch.stats().served, 1);
/// # Ok(()) }
/// ```
pub struct Watch {
    feed: Feed,
    ctx: Arc<Ctx>,
    _stop: watch::Sender<()>,
}

impl Watch {
    /// The members now (same as [`Watcher::snapshot`]).
    pub fn endpoints(&self) -> Snapshot {
        self.feed.snapshot()
    }

    /// The set's path.
    pub fn path(&self) -> &str {
        &self.ctx.path
    }

    /// The ZooKeeper connection's health. The members are kept whatever it is.
    pub fn health(&self) -> Health {
        self.ctx.session.health()
    }

    /// A receiver that changes with the connection's health.
    pub fn health_changes(&self) -> watch::Receiver<Health> {
        self.ctx.session.health_changes()
    }

    /// Children that are present but not served, with the reason, by name:
    /// malformed or filtered-out members, members a `vector_` node drains
    /// (weight -1.0), unusable vector nodes and children that are neither.
    pub fn rejected(&self) -> BTreeMap<String, String> {
        self.ctx
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> WatchStats {
        WatchStats {
            served: self.feed.snapshot().len(),
            rejected: self
                .ctx
                .rejected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
            malformed_total: self.ctx.malformed_total.load(Ordering::Relaxed),
            resyncs: self.ctx.resyncs.load(Ordering::Relaxed),
            single_reads: self.ctx.reader.single_reads.load(Ordering::Relaxed),
            multi_reads: self.ctx.reader.multi_reads.load(Ordering::Relaxed),
        }
    }

    /// A cloneable read handle that reports closed once this watch is dropped.
    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }
}

impl Watcher for Watch {
    fn snapshot(&self) -> Snapshot {
        self.feed.snapshot()
    }

    fn subscribe(&self) -> Subscription {
        self.feed.subscribe()
    }

    fn is_closed(&self) -> bool {
        self.feed.is_closed()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.ctx.publisher.close();
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("path", &self.ctx.path)
            .field("members", &self.feed.snapshot().len())
            .field("health", &self.health())
            .finish()
    }
}

/// Why a follow loop returned.
enum Exit {
    /// The watch was dropped.
    Stop,
    /// Start over on the current (or next) session.
    Again,
    /// The server does not support persistent watches.
    Unsupported,
}

async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<()>, mut strategy: WatchStrategy) {
    let mut generations = ctx.session.generations();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
    loop {
        let generation = generations.borrow_and_update().clone();
        let Some(generation) = generation else {
            tokio::select! {
                _ = stop.changed() => return,
                _ = generations.changed() => continue,
            }
        };
        let outcome = match strategy {
            WatchStrategy::Auto => {
                follow_recursive(&ctx, &generation, &mut generations, &mut stop).await
            }
            WatchStrategy::Children => {
                follow_children(&ctx, &generation, &mut generations, &mut stop).await
            }
        };
        match outcome {
            Ok(Exit::Stop) => return,
            Ok(Exit::Again) => backoff.reset(),
            Ok(Exit::Unsupported) => {
                tracing::info!(path = %ctx.path, "ZooKeeper has no persistent watches (before 3.6); using a children watch");
                strategy = WatchStrategy::Children;
            }
            Err(e) => {
                *ctx.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                let delay = backoff.next_delay();
                tracing::warn!(path = %ctx.path, error = %e, retry_in = ?delay, "watch interrupted; keeping the last known members");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = generations.changed() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Follows the set with a persistent recursive watch until the session
/// changes, the watch is dropped or an operation fails. Whatever was learned
/// is published on every way out.
async fn follow_recursive(
    ctx: &Ctx,
    generation: &Generation,
    generations: &mut watch::Receiver<Option<Arc<Generation>>>,
    stop: &mut watch::Receiver<()>,
) -> std::result::Result<Exit, zk::Error> {
    let watcher = match generation
        .client
        .watch(&ctx.path, zk::AddWatchMode::PersistentRecursive)
        .await
    {
        Ok(w) => w,
        Err(zk::Error::Unimplemented) => return Ok(Exit::Unsupported),
        Err(e) => return Err(e),
    };
    resync(ctx, generation).await?;
    let mut batch = Changes::default();
    let outcome = follow_events(ctx, generation, generations, stop, watcher, &mut batch).await;
    flush(ctx, &mut batch);
    outcome
}

/// Changes learned but not yet published.
#[derive(Default)]
struct Changes {
    added: Vec<Member>,
    removed: Vec<Member>,
}

async fn follow_events(
    ctx: &Ctx,
    generation: &Generation,
    generations: &mut watch::Receiver<Option<Arc<Generation>>>,
    stop: &mut watch::Receiver<()>,
    mut watcher: zk::PersistentWatcher,
    batch: &mut Changes,
) -> std::result::Result<Exit, zk::Error> {
    let prefix = format!("{}/", ctx.path);
    let mut reads: FuturesUnordered<read::Batch> = FuturesUnordered::new();
    // The newest read asked for each name; an older answer is ignored.
    let mut pending: HashMap<String, u64> = HashMap::new();
    // Vector nodes asked for and not answered yet. Changes wait for them:
    // a vector replaced in one transaction (create + delete) must not
    // publish the members unweighted in between.
    let mut vectors_pending: HashSet<String> = HashSet::new();
    let mut next_read = 0u64;
    // Names whose events have arrived; read together once no more events
    // are ready, so a burst of new members costs a few multi-reads.
    let mut wanted: Vec<Wanted> = Vec::new();
    // The change under way, for the propagation and reads metrics.
    let mut change: Option<Change> = None;
    loop {
        let dirty = !batch.added.is_empty() || !batch.removed.is_empty();
        if !dirty && wanted.is_empty() && reads.is_empty() && change.take().is_some() {
            // Settled without a new snapshot (a child not served, say).
            ctx.metrics.refresh(ctx);
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(Exit::Stop),
            _ = generations.changed() => return Ok(Exit::Again),
            event = watcher.changed() => {
                match event.event_type {
                    zk::EventType::Session => match event.session_state {
                        zk::SessionState::Disconnected => {}
                        // Events may have been lost while disconnected
                        // (ZOOKEEPER-4698), and zookeeper-client 0.11 does not
                        // restore persistent watches on reconnect: add the
                        // watch again, then re-read. Terminal states end the
                        // watcher, which must not be polled again.
                        _ => return Ok(Exit::Again),
                    },
                    zk::EventType::NodeCreated | zk::EventType::NodeDataChanged => {
                        change.get_or_insert_with(|| WatchMetrics::change(&ctx.reader));
                        if event.path == ctx.path {
                            flush(ctx, batch);
                            pending.clear();
                            vectors_pending.clear();
                            wanted.clear();
                            reads = FuturesUnordered::new();
                            resync(ctx, generation).await?;
                        } else if let Some(name) = child_name(&event.path, &prefix) {
                            if !is_read(name) {
                                lock(&ctx.rejected).insert(name.to_string(), NOT_A_MEMBER.into());
                                continue;
                            }
                            if !known(ctx, name) || event.event_type == zk::EventType::NodeDataChanged {
                                next_read += 1;
                                pending.insert(name.to_string(), next_read);
                                if name.starts_with(VECTOR_PREFIX) {
                                    vectors_pending.insert(name.to_string());
                                }
                                wanted.push((name.to_string(), next_read));
                            }
                        }
                    }
                    zk::EventType::NodeDeleted => {
                        change.get_or_insert_with(|| WatchMetrics::change(&ctx.reader));
                        if event.path == ctx.path {
                            pending.clear();
                            vectors_pending.clear();
                            for name in known_names(ctx) {
                                forget(ctx, &name, batch);
                            }
                            lock(&ctx.rejected).clear();
                        } else if let Some(name) = child_name(&event.path, &prefix) {
                            pending.remove(name);
                            vectors_pending.remove(name);
                            forget(ctx, name, batch);
                        }
                    }
                    zk::EventType::NodeChildrenChanged => {}
                }
            }
            Some(got) = reads.next(), if !reads.is_empty() => {
                for (name, seq, result) in got {
                    if pending.get(&name) == Some(&seq) {
                        pending.remove(&name);
                        vectors_pending.remove(&name);
                        take_read(ctx, &name, result, batch)?;
                    }
                }
            }
            _ = std::future::ready(()), if !wanted.is_empty() => {
                for names in ctx.reader.plan(&ctx.path, std::mem::take(&mut wanted)) {
                    reads.push(ctx.reader.read(&generation.client, &ctx.path, names));
                }
            }
            _ = std::future::ready(()), if dirty && vectors_pending.is_empty() => {
                flush(ctx, batch);
                if let Some(change) = change.take() {
                    ctx.metrics.published(ctx, change);
                }
            }
        }
    }
}

/// Applies one member read. Only a definite answer about the node is
/// recorded: its data, `NoNode` (gone: forget it) or `NoAuth` (reported as
/// unreadable and left out of the cache, so the next resync asks again).
/// Any other error leaves the name unread and is returned: its outcome is
/// unknown (a reset or stall fails every read in flight), so the follow loop
/// restarts and the resync that follows reads the name again.
fn take_read(
    ctx: &Ctx,
    name: &str,
    result: std::result::Result<Vec<u8>, zk::Error>,
    batch: &mut Changes,
) -> std::result::Result<(), zk::Error> {
    match result {
        Ok(data) if name.starts_with(VECTOR_PREFIX) => learn_vector(ctx, name, &data, batch),
        Ok(data) => learn(ctx, name, &data, batch),
        Err(zk::Error::NoNode) => forget(ctx, name, batch),
        Err(e @ zk::Error::NoAuth) => {
            tracing::warn!(path = %ctx.path, child = name, error = %e, "cannot read child; skipping it until the next resync");
            forget(ctx, name, batch);
            lock(&ctx.rejected).insert(name.to_string(), format!("unreadable: {e}"));
        }
        Err(e) => {
            if is_answer(&e) {
                tracing::warn!(path = %ctx.path, member = name, error = %e, "unexpected answer reading a member; re-reading the set");
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Follows the set with a children watch (and an exists watch while the
/// path is missing), re-armed on every change.
async fn follow_children(
    ctx: &Ctx,
    generation: &Generation,
    generations: &mut watch::Receiver<Option<Arc<Generation>>>,
    stop: &mut watch::Receiver<()>,
) -> std::result::Result<Exit, zk::Error> {
    ctx.resyncs.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.resyncs.increment(1);
    loop {
        let watcher = match generation.client.get_and_watch_children(&ctx.path).await {
            Ok((children, _, watcher)) => {
                apply_children(ctx, generation, children).await?;
                watcher
            }
            Err(zk::Error::NoNode) => {
                match generation.client.check_and_watch_stat(&ctx.path).await? {
                    (Some(_), _) => continue,
                    (None, watcher) => {
                        apply_children(ctx, generation, Vec::new()).await?;
                        watcher
                    }
                }
            }
            Err(e) => return Err(e),
        };
        ctx.ready.send_replace(true);
        tokio::select! {
            _ = stop.changed() => return Ok(Exit::Stop),
            _ = generations.changed() => return Ok(Exit::Again),
            event = watcher.changed() => {
                if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
                    return Ok(Exit::Again);
                }
            }
        }
    }
}

/// Lists the children and brings the cache and snapshot in line.
async fn resync(ctx: &Ctx, generation: &Generation) -> std::result::Result<(), zk::Error> {
    ctx.resyncs.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.resyncs.increment(1);
    let children = match generation.client.list_children(&ctx.path).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(e) => return Err(e),
    };
    apply_children(ctx, generation, children).await?;
    ctx.ready.send_replace(true);
    Ok(())
}

/// Given the full list of children: forget the ones that are gone, read the
/// new ones (pipelined), publish once from the cache.
#[tracing::instrument(name = "watch_resync", level = "info", skip_all, fields(
    set = %ctx.path,
    generation = generation.number,
    session = format_args!("{:#x}", generation.session_id),
    children = children.len(),
))]
async fn apply_children(
    ctx: &Ctx,
    generation: &Generation,
    children: Vec<String>,
) -> std::result::Result<(), zk::Error> {
    // The snapshot is rebuilt from the cache at the end, so the batch only
    // keeps the cache's bookkeeping.
    let mut batch = Changes::default();
    let present: HashSet<&str> = children.iter().map(String::as_str).collect();
    for name in known_names(ctx) {
        if !present.contains(name.as_str()) {
            forget(ctx, &name, &mut batch);
        }
    }
    {
        let mut rejected = lock(&ctx.rejected);
        rejected.retain(|k, _| present.contains(k.as_str()));
        for name in children.iter().filter(|n| !is_read(n)) {
            rejected.insert(name.clone(), NOT_A_MEMBER.into());
        }
    }
    // Vectors first: members read after them are weighed once, not twice.
    let mut new: Vec<String> = children
        .into_iter()
        .filter(|n| is_read(n) && !known(ctx, n))
        .collect();
    new.sort_by_key(|n| !n.starts_with(VECTOR_PREFIX));
    let wanted: Vec<Wanted> = new.into_iter().map(|name| (name, 0)).collect();
    let mut batches = ctx.reader.plan(&ctx.path, wanted).into_iter();
    let mut reads: FuturesUnordered<read::Batch> = FuturesUnordered::new();
    let outcome = 'read: loop {
        while reads.len() < MAX_INFLIGHT_BATCHES {
            match batches.next() {
                Some(names) => reads.push(ctx.reader.read(&generation.client, &ctx.path, names)),
                None => break,
            }
        }
        let Some(got) = reads.next().await else {
            break Ok(());
        };
        // Keep what was read on a failure; the rest is read next time.
        for (name, _, result) in got {
            if let Err(e) = take_read(ctx, &name, result, &mut batch) {
                break 'read Err(e);
            }
        }
    };
    republish(ctx);
    outcome
}

/// Publishes exactly the served members of the cache: after a full re-read
/// the snapshot is rebuilt from the cache, so it can never drift from it.
fn republish(ctx: &Ctx) {
    let served: Vec<Member> = lock(&ctx.cache)
        .values()
        .filter_map(|e| match e {
            Entry::Served(m) => Some(m.clone()),
            Entry::Drained(_) | Entry::Skipped => None,
        })
        .collect();
    ctx.publisher.publish(served);
    ctx.metrics.refresh(ctx);
}

/// The name of a direct child of the set (member or not), from an event path.
fn child_name<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let name = path.strip_prefix(prefix)?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Whether this child was read already (members and vectors are immutable).
fn known(ctx: &Ctx, name: &str) -> bool {
    if name.starts_with(VECTOR_PREFIX) {
        lock(&ctx.vectors).contains_key(name)
    } else {
        lock(&ctx.cache).contains_key(name)
    }
}

/// Every child read so far.
fn known_names(ctx: &Ctx) -> Vec<String> {
    let mut names: Vec<String> = lock(&ctx.cache).keys().cloned().collect();
    names.extend(lock(&ctx.vectors).keys().cloned());
    names
}

/// A member as the vectors make it: weighed, or drained.
fn weigh(vectors: &BTreeMap<String, Option<Vector>>, member: Member) -> Entry {
    match vector::weight_of(&member, vectors.values().flatten()) {
        None => Entry::Drained(member),
        Some(w) if w == member.weight() => Entry::Served(member),
        Some(w) => Entry::Served(member.with_weight(w)),
    }
}

/// Decodes one member's data into the cache and the pending change.
fn learn(ctx: &Ctx, name: &str, data: &[u8], batch: &mut Changes) {
    let reading = classify(name, data, &ctx.filter);
    for problem in &reading.dropped {
        tracing::warn!(path = %ctx.path, member = name, problem = %problem, "ignoring part of a member");
    }
    let entry = match reading.verdict {
        Verdict::Member(member) => {
            let entry = weigh(&lock(&ctx.vectors), member);
            if matches!(entry, Entry::Drained(_)) {
                lock(&ctx.rejected).insert(name.to_string(), DRAINED.into());
            } else {
                lock(&ctx.rejected).remove(name);
            }
            entry
        }
        Verdict::NotServed { reason, .. } => {
            tracing::debug!(path = %ctx.path, member = name, reason = %reason, "member not served");
            lock(&ctx.rejected).insert(name.to_string(), reason);
            Entry::Skipped
        }
        Verdict::Malformed(e) => {
            ctx.malformed_total.fetch_add(1, Ordering::Relaxed);
            ctx.metrics.malformed.increment(1);
            tracing::warn!(path = %ctx.path, member = name, error = %e, "skipping malformed member");
            lock(&ctx.rejected).insert(name.to_string(), format!("malformed: {e}"));
            Entry::Skipped
        }
        Verdict::Ignored(why) => {
            lock(&ctx.rejected).insert(name.to_string(), why);
            Entry::Skipped
        }
    };
    if let Some(Entry::Served(old)) = lock(&ctx.cache).insert(name.to_string(), entry.clone()) {
        batch.removed.push(old);
    }
    if let Entry::Served(m) = entry {
        batch.added.push(m);
    }
}

/// Decodes one vector node and re-weighs the members. An unusable node is
/// reported and changes nothing.
fn learn_vector(ctx: &Ctx, name: &str, data: &[u8], batch: &mut Changes) {
    let vector = match vector::decode(data) {
        Ok(v) => {
            for note in &v.notes {
                tracing::warn!(path = %ctx.path, vector = name, note = %note, "part of a vector node");
            }
            lock(&ctx.rejected).remove(name);
            Some(v)
        }
        Err(e) => {
            tracing::warn!(path = %ctx.path, vector = name, error = %e, "skipping unusable vector node");
            lock(&ctx.rejected).insert(name.to_string(), format!("invalid vector: {e}"));
            None
        }
    };
    let usable = vector.is_some();
    let had = lock(&ctx.vectors).insert(name.to_string(), vector);
    if usable || matches!(had, Some(Some(_))) {
        reweigh(ctx, batch);
    }
}

/// Applies the current vectors to every member read: weights change in
/// place, drained members leave the snapshot and undrained ones return.
fn reweigh(ctx: &Ctx, batch: &mut Changes) {
    let vectors = lock(&ctx.vectors);
    let mut cache = lock(&ctx.cache);
    let mut rejected = lock(&ctx.rejected);
    for (name, entry) in cache.iter_mut() {
        let (member, was_served) = match entry {
            Entry::Served(m) => (m.clone(), true),
            Entry::Drained(m) => (m.clone(), false),
            Entry::Skipped => continue,
        };
        let now = weigh(&vectors, member.clone());
        match (&now, was_served) {
            (Entry::Served(m), true) if *m == member => continue,
            (Entry::Drained(_), false) => continue,
            (Entry::Served(m), _) => {
                rejected.remove(name);
                batch.added.push(m.clone());
            }
            (Entry::Drained(_), true) => {
                rejected.insert(name.clone(), DRAINED.into());
                batch.removed.push(member);
            }
            (Entry::Skipped, _) => {}
        }
        *entry = now;
    }
}

/// Drops a child that is gone (or unreadable): a member leaves the
/// snapshot, a vector's weights are undone.
fn forget(ctx: &Ctx, name: &str, batch: &mut Changes) {
    lock(&ctx.rejected).remove(name);
    if let Some(Entry::Served(old)) = lock(&ctx.cache).remove(name) {
        batch.removed.push(old);
    }
    let had = lock(&ctx.vectors).remove(name);
    if matches!(had, Some(Some(_))) {
        reweigh(ctx, batch);
    }
}

fn flush(ctx: &Ctx, batch: &mut Changes) {
    let Changes { added, removed } = batch;
    if added.is_empty() && removed.is_empty() {
        return;
    }
    // Within one batch a member may be added, then replaced or removed: add
    // only what the cache still serves.
    let add: Vec<Member> = {
        let cache = lock(&ctx.cache);
        std::mem::take(added)
            .into_iter()
            .filter(|m| matches!(cache.get(m.id().as_str()), Some(Entry::Served(c)) if c == m))
            .collect()
    };
    ctx.publisher.apply(add, std::mem::take(removed));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

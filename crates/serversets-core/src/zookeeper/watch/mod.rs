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
//!
//! The module's parts: [`builder`] starts a watch, [`strategy`] follows the
//! set in ZooKeeper, [`cache`] turns what is read into snapshots, and
//! [`metrics`] reports on it; this file holds the [`Watch`] handle and the
//! state its tasks share.

mod builder;
mod cache;
mod metrics;
mod strategy;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use zookeeper_client as zk;

pub use self::builder::{WatchBuilder, WatchStrategy};
use self::cache::Entry;
use self::metrics::WatchMetrics;
use crate::contract::classify::MemberFilter;
use crate::contract::snapshot::Snapshot;
use crate::contract::vector::Vector;
use crate::contract::watcher::{Feed, Publisher, Subscription, Watcher};
use crate::zookeeper::read::Reader;
use crate::zookeeper::session::{Health, Session};

pub(super) struct Ctx {
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
    /// The error that last interrupted following the set, for
    /// [`Error::Connect`](crate::Error::Connect) when the first read fails.
    last_error: Mutex<Option<zk::Error>>,
    /// Metric handles, registered once when the watch starts.
    metrics: WatchMetrics,
}

/// Counters describing a watch, for metrics and troubleshooting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchStats {
    /// Members served now.
    pub served: usize,
    /// Children present now but not served (malformed, not ALIVE, filtered
    /// out, or not a `member_` znode).
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
/// let _registration = set.register_endpoint("10.0.0.3", 31781, None).await?;
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
    pub fn members(&self) -> Snapshot {
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
    /// malformed or filtered-out members, members a `vector_` znode drains
    /// (weight -1.0), unusable vector znodes and children that are neither.
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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

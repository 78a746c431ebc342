//! Starting a watch: the options ([`WatchBuilder`], [`WatchStrategy`]) and
//! the first read, which `start` waits for so a new watch is never empty
//! only because it has not read yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::metrics::WatchMetrics;
use super::strategy::run;
use super::{Ctx, Watch};
use crate::contract::classify::MemberFilter;
use crate::contract::watcher::Publisher;
use crate::zookeeper::error::{Error, Result};
use crate::zookeeper::read::Reader;
use crate::zookeeper::serverset::ServerSet;
use crate::zookeeper::supervise::spawn_supervised;

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
    ///
    /// # Errors
    ///
    /// What [`Session::wait_connected`](crate::Session::wait_connected)
    /// returns when no session comes up, and [`Error::Connect`] when the
    /// first read does not finish within the connect timeout (`source()`
    /// is what interrupted it, such as `NoAuth` for a set we may not list).
    /// Nothing keeps running after an error.
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
            _ => {
                let source = watch
                    .ctx
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                Err(Error::Connect {
                    hosts: session.hosts().to_string(),
                    timeout: budget,
                    detail: source
                        .is_none()
                        .then(|| "the first read did not finish".to_string()),
                    source,
                })
            }
        }
    }
}

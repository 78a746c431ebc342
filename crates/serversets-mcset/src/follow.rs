//! The follower: the task that keeps a [`McSet`](crate::McSet)'s routing in
//! step with its source, and the state the two share.
//!
//! On each new snapshot it builds a ring on Tokio's blocking pool, off the
//! read path, and swaps in a new [`Routing`] whole. Readers never wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serversets_core::{Snapshot, Subscription, Watcher};
use tokio::sync::watch;

use crate::metrics::McMetrics;
use crate::routing::{ClientOptions, Routing};
use crate::{Ring, RingBuilder};

/// Whether a [`McSet`](crate::McSet) still follows its source.
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
/// assert_eq!(set.state().to_string(), "the source closed");
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

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncState::Following => f.write_str("following"),
            SyncState::SourceClosed => f.write_str("the source closed"),
            SyncState::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// The source version the routing reflects, and whether it still follows.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    pub(crate) version: u64,
    pub(crate) state: SyncState,
}

/// What a McSet and its follower share.
pub(crate) struct Shared {
    pub(crate) routing: ArcSwap<Routing>,
    /// Timeouts given to the client handles of members that join later.
    client: ClientOptions,
    pub(crate) progress: watch::Sender<Progress>,
    /// Set by `McSet::drop` before it aborts the task, so the task's exit
    /// guard can tell an orderly stop from a failure.
    pub(crate) dropping: AtomicBool,
    /// Metric handles; per-node pick counters live in [`Routing`].
    metrics: McMetrics,
}

impl Shared {
    /// The shared state of a McSet starting with `ring`.
    pub(crate) fn new(ring: Ring, client: ClientOptions, metrics: McMetrics) -> Shared {
        let (progress, _) = watch::channel(Progress {
            version: ring.version(),
            state: SyncState::Following,
        });
        Shared {
            routing: ArcSwap::from_pointee(Routing::new(ring, None, &client, &metrics)),
            client,
            progress,
            dropping: AtomicBool::new(false),
            metrics,
        }
    }

    fn set_state(&self, state: SyncState) {
        self.progress.send_modify(|p| p.state = state);
    }
}

/// Starts the follower on `runtime`: it rebuilds with `options` on every
/// change `subscription` reports, and holds `watcher` until it ends.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    shared: &Arc<Shared>,
    options: RingBuilder,
    watcher: Box<dyn Watcher>,
    subscription: Subscription,
) -> tokio::task::AbortHandle {
    // The guard is built here, not inside the task, so it also reports a
    // task that is dropped before it ever ran.
    let guard = ExitGuard {
        shared: shared.clone(),
    };
    runtime
        .spawn(follow(guard, options, watcher, subscription))
        .abort_handle()
}

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
        if snapshot.version() <= shared.routing.load().ring().version() {
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
            .build(snapshot.iter().cloned())
    })
    .await
}

fn install(shared: &Shared, ring: Ring) {
    let version = ring.version();
    let nodes = ring.len();
    let previous = shared.routing.load();
    let routing = Routing::new(ring, Some(&previous), &shared.client, &shared.metrics);
    drop(previous);
    shared.routing.store(Arc::new(routing));
    shared.metrics.rebuilds.increment(1);
    shared.progress.send_modify(|p| p.version = version);
    tracing::debug!(version, nodes, "memcache ring rebuilt");
}

//! Keeping a [`McSet`](crate::McSet)'s routing in step with its source, on
//! core's shared follower ([`serversets_core::balance::Follower`]), and the
//! state the McSet and its follower share.
//!
//! The follower task builds a ring for each new snapshot on Tokio's blocking
//! pool, off the read path, and swaps in a new [`Routing`] whole; readers
//! never wait. It ends as every balancer's follower does: when the source
//! closes (the last ring stays), when the McSet is dropped, or when it dies
//! (its runtime shut down), logged at error level. After a death each use of
//! the McSet catches up with the source itself
//! ([`Shared::routing`]): one atomic load while the task runs.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use arc_swap::{ArcSwap, Guard};
use serversets_core::balance::{FollowState, FollowTask, Follower};
use serversets_core::{Snapshot, Watcher};
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
    /// The task following the source stopped unexpectedly (its runtime shut
    /// down, or it panicked); the text says why, and the same was logged at
    /// error level. Each use of the McSet then catches up with the source
    /// itself, rebuilding the ring in the caller when the source has
    /// changed, so the ring never goes stale silently.
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

/// What a McSet and its follower share.
pub(crate) struct Shared {
    routing: ArcSwap<Routing>,
    /// Ring options, stamped with each snapshot's version.
    options: RingBuilder,
    /// Timeouts given to the client handles of members that join later.
    client: ClientOptions,
    follower: Follower,
    /// Source version of the ring installed last; `wait_for_version`
    /// waits on it.
    installed: watch::Sender<u64>,
    /// Metric handles; per-node pick counters live in [`Routing`].
    metrics: McMetrics,
}

impl Shared {
    /// The shared state of a McSet following `watcher`, with the first ring
    /// built from its current snapshot, in the caller.
    pub(crate) fn new(
        watcher: impl Watcher + 'static,
        options: RingBuilder,
        client: ClientOptions,
        metrics: McMetrics,
    ) -> Shared {
        let follower = Follower::new(watcher);
        let mut first = None;
        // Nothing is applied yet, so this always applies.
        follower.catch_up(|snapshot| first = Some(build(options, &snapshot)));
        let ring = first.unwrap_or_else(|| build(options, &follower.watcher().snapshot()));
        let (installed, _) = watch::channel(ring.version());
        Shared {
            routing: ArcSwap::from_pointee(Routing::new(ring, None, &client, &metrics)),
            options,
            client,
            follower,
            installed,
            metrics,
        }
    }

    /// The current routing, after catching up with the source when the
    /// follower task is not running (one atomic load while it is).
    #[inline]
    pub(crate) fn routing(&self) -> Guard<Arc<Routing>> {
        self.follower.catch_up(|snapshot| {
            let ring = build(self.options, &snapshot);
            self.install(ring);
        });
        self.routing.load()
    }

    /// Where the follower stands, in the McSet's terms.
    pub(crate) fn state(&self) -> SyncState {
        match self.follower.state() {
            // Idle only while the McSet is being dropped.
            FollowState::Idle | FollowState::Following => SyncState::Following,
            FollowState::SourceClosed => SyncState::SourceClosed,
            FollowState::Stopped(why) => SyncState::Failed(why),
        }
    }

    /// Waits until a ring of source version `version` or later is installed
    /// or the follower has ended, and returns the current ring when it is
    /// of that version.
    pub(crate) async fn wait_for_version(&self, version: u64) -> Option<Arc<Ring>> {
        let mut installed = self.installed.subscribe();
        let mut reached = pin!(installed.wait_for(|v| *v >= version));
        let mut ended = pin!(self
            .follower
            .wait_until(|s| { matches!(s, FollowState::SourceClosed | FollowState::Stopped(_)) }));
        std::future::poll_fn(|cx| {
            if reached.as_mut().poll(cx).is_ready() || ended.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        let ring = self.routing().ring().clone();
        (ring.version() >= version).then_some(ring)
    }

    fn install(&self, ring: Ring) {
        let version = ring.version();
        let nodes = ring.len();
        let previous = self.routing.load();
        let routing = Routing::new(ring, Some(&previous), &self.client, &self.metrics);
        drop(previous);
        self.routing.store(Arc::new(routing));
        self.metrics.rebuilds.increment(1);
        self.installed.send_replace(version);
        tracing::debug!(version, nodes, "memcache ring rebuilt");
    }

    /// Applies a snapshot from the follower task: the ring is built on the
    /// blocking pool, so the task's thread never stalls on a big ring.
    async fn apply(&self, snapshot: Snapshot) {
        let options = self.options;
        match tokio::task::spawn_blocking(move || build(options, &snapshot)).await {
            Ok(ring) => self.install(ring),
            // The blocking pool is shutting down, and so is the runtime: the
            // follower task goes with it and reports it.
            Err(err) if err.is_cancelled() => {}
            Err(err) => {
                self.metrics.rebuild_failures.increment(1);
                tracing::error!(error = %err, "building the memcache ring failed; keeping the previous ring");
            }
        }
    }
}

fn build(options: RingBuilder, snapshot: &Snapshot) -> Ring {
    options
        .version(snapshot.version())
        .build(snapshot.iter().cloned())
}

/// Starts the follower task on `runtime`; dropping the returned task stops
/// it. Core's follower counts as running from here, so a task that never
/// gets to run (its runtime shut down first) is reported too.
pub(crate) fn spawn(runtime: &tokio::runtime::Handle, shared: &Arc<Shared>) -> FollowTask {
    let task_shared = shared.clone();
    shared.follower.spawn(runtime, move |snapshot| {
        let shared = task_shared.clone();
        async move { shared.apply(snapshot).await }
    })
}

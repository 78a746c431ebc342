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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use arc_swap::{ArcSwap, Guard};
use serversets_core::balance::{FollowState, Follower};
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

/// Why a follower task that never ran is reported as failed.
const NEVER_RAN: &str =
    "the task following the source was cancelled before it ran (runtime shut down?)";

/// What `wait_for_version` waits on besides the follower's state.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Source version of the ring installed last.
    version: u64,
    /// The follower task was dropped before it first ran.
    never_ran: bool,
}

/// What a McSet and its follower share.
pub(crate) struct Shared {
    routing: ArcSwap<Routing>,
    /// Ring options, stamped with each snapshot's version.
    options: RingBuilder,
    /// Timeouts given to the client handles of members that join later.
    client: ClientOptions,
    follower: Follower,
    progress: watch::Sender<Progress>,
    /// Set by `McSet::drop` before it stops the task, so the never-ran
    /// guard can tell an orderly stop from a failure.
    dropping: AtomicBool,
    /// True from `spawn` until the task first runs (or is dropped before
    /// it does): the task will apply the newest snapshot when it starts, so
    /// uses need not catch up meanwhile.
    starting: AtomicBool,
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
        let (progress, _) = watch::channel(Progress {
            version: ring.version(),
            never_ran: false,
        });
        Shared {
            routing: ArcSwap::from_pointee(Routing::new(ring, None, &client, &metrics)),
            options,
            client,
            follower,
            progress,
            dropping: AtomicBool::new(false),
            starting: AtomicBool::new(false),
            metrics,
        }
    }

    /// The current routing, after catching up with the source when the
    /// follower task is not running (one atomic load while it is).
    #[inline]
    pub(crate) fn routing(&self) -> Guard<Arc<Routing>> {
        if !self.starting.load(Ordering::Acquire) {
            self.follower.catch_up(|snapshot| {
                let ring = build(self.options, &snapshot);
                self.install(ring);
            });
        }
        self.routing.load()
    }

    /// Where the follower stands, in the McSet's terms.
    pub(crate) fn state(&self) -> SyncState {
        match self.follower.state() {
            // Not started yet (it starts on its runtime's next turn), unless
            // it was dropped before it ever ran.
            FollowState::Idle if self.progress.borrow().never_ran => {
                SyncState::Failed(NEVER_RAN.to_string())
            }
            FollowState::Idle | FollowState::Following => SyncState::Following,
            FollowState::SourceClosed => SyncState::SourceClosed,
            FollowState::Stopped(why) => SyncState::Failed(why),
        }
    }

    /// Waits until a ring of source version `version` or later is installed
    /// or the follower has ended, and returns the current ring when it is
    /// of that version.
    pub(crate) async fn wait_for_version(&self, version: u64) -> Option<Arc<Ring>> {
        let mut progress = self.progress.subscribe();
        let mut reached = pin!(progress.wait_for(|p| p.version >= version || p.never_ran));
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

    /// Marks the McSet as being dropped: the follower's end is orderly.
    pub(crate) fn stop(&self) {
        self.dropping.store(true, Ordering::SeqCst);
        self.follower.stop();
    }

    fn install(&self, ring: Ring) {
        let version = ring.version();
        let nodes = ring.len();
        let previous = self.routing.load();
        let routing = Routing::new(ring, Some(&previous), &self.client, &self.metrics);
        drop(previous);
        self.routing.store(Arc::new(routing));
        self.metrics.rebuilds.increment(1);
        self.progress.send_modify(|p| p.version = version);
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

/// Starts the follower task on `runtime`. Stop it with [`Shared::stop`]
/// and an abort of the returned handle.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    shared: &Arc<Shared>,
) -> tokio::task::AbortHandle {
    // Built here, not inside the task, so a task dropped before it ever ran
    // is reported too (the follower's own guard lives inside its loop).
    shared.starting.store(true, Ordering::Release);
    let guard = NeverRan(Some(shared.clone()));
    runtime
        .spawn(async move {
            let Some(shared) = guard.ran() else { return };
            shared
                .follower
                .run(|snapshot| {
                    let shared = shared.clone();
                    async move { shared.apply(snapshot).await }
                })
                .await;
        })
        .abort_handle()
}

/// Reports a follower task dropped before it first ran, unless the McSet
/// is being dropped.
struct NeverRan(Option<Arc<Shared>>);

impl NeverRan {
    /// The task runs: nothing to report.
    fn ran(mut self) -> Option<Arc<Shared>> {
        let shared = self.0.take()?;
        // The follower's own state takes over from here; its `run` marks
        // itself running before it first awaits.
        shared.starting.store(false, Ordering::Release);
        Some(shared)
    }
}

impl Drop for NeverRan {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else { return };
        shared.starting.store(false, Ordering::Release);
        if shared.dropping.load(Ordering::SeqCst) {
            return;
        }
        tracing::error!("{NEVER_RAN}; the McSet now catches up with its source on each use");
        shared.progress.send_modify(|p| p.never_ran = true);
    }
}

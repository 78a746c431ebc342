//! The follower: a background task that applies membership changes as the
//! source publishes them.
//!
//! Requests would see a change anyway (each one checks the snapshot
//! version), but only when they come; without traffic a departed member's
//! pool, and its idle connections, would stay until the idle timeout. The
//! task holds the set weakly, so it never keeps a dropped set alive, and its
//! one policy for ending is here: a normal end (the set dropped, the source
//! closed) is final; any other (its runtime shut down, a panic) clears the
//! running flag so that the next request starts a new follower.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use hyper_util::client::legacy::connect::Connect;
use serversets_core::Subscription;
use tokio::sync::watch;

use crate::inner::{Inner, Wait};

/// The follower's state in the set: whether a task runs, and the channel
/// whose sender, dropped with the set, stops it.
pub(crate) struct Follower {
    running: AtomicBool,
    /// Never sends; dropped with the set, which ends the task.
    stop: watch::Sender<()>,
}

impl Follower {
    pub(crate) fn new() -> Follower {
        Follower {
            running: AtomicBool::new(false),
            stop: watch::channel(()).0,
        }
    }
}

impl<C> Inner<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// Starts the task that applies membership changes as they happen, so
    /// departed members' pools close without waiting for traffic. Needs a
    /// Tokio runtime; without one it is retried on the next request.
    pub(crate) fn ensure_follower(self: &Arc<Self>) {
        let follower = self.follower();
        if follower.running.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if follower.running.swap(true, Ordering::AcqRel) {
            return;
        }
        // The guard is an argument, not a local of `follow`, so that it also
        // acts when the task is dropped before its first poll.
        let guard = FollowerGuard {
            set: Arc::downgrade(self),
            armed: true,
        };
        let changes = self.watcher().subscribe();
        let stop = follower.stop.subscribe();
        runtime.spawn(follow(guard, changes, stop));
    }
}

/// Clears the set's running flag if the follower task ends any way other
/// than a normal return: its runtime shut down (the task is dropped at its
/// next await) or a rebuild panicked. The next request then starts a new
/// follower instead of the set silently going without one.
struct FollowerGuard<C> {
    set: Weak<Inner<C>>,
    armed: bool,
}

impl<C> FollowerGuard<C> {
    /// A normal end: the set is gone or the source closed, and nothing is
    /// left to follow, so no new follower should start.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<C> Drop for FollowerGuard<C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(inner) = self.set.upgrade() {
            tracing::warn!("membership follower stopped (runtime shut down or panic); the next request restarts it");
            inner.follower().running.store(false, Ordering::Release);
        }
    }
}

/// Applies membership changes until the set is dropped or the source
/// closes; `guard` holds the set weakly and reports any other end.
async fn follow<C>(
    guard: FollowerGuard<C>,
    mut changes: Subscription,
    mut stop: watch::Receiver<()>,
) where
    C: Connect + Clone + Send + Sync + 'static,
{
    let set = guard.set.clone();
    // Catch up with anything published before we subscribed.
    match set.upgrade() {
        Some(inner) => {
            changes.latest();
            inner.sync(Wait::Yes);
        }
        None => return guard.disarm(),
    }
    loop {
        tokio::select! {
            // The sender never sends; this resolves when the set is dropped.
            _ = stop.changed() => return guard.disarm(),
            next = changes.changed() => match next {
                Some(_) => match set.upgrade() {
                    Some(inner) => inner.sync(Wait::Yes),
                    None => return guard.disarm(),
                },
                None => {
                    tracing::info!("membership source closed; the set keeps its last members");
                    return guard.disarm();
                }
            },
        }
    }
}

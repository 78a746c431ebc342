//! Keeping a balancer in step with its source, with one policy for a
//! follower that stops.
//!
//! A balancer hands [`Follower`] the code that applies a snapshot (rebuild a
//! table, a ring, a pool's member list); the follower runs it once for the
//! source's current members and again for every newer snapshot. It ends in
//! one of three ways, shown by [`FollowState`]:
//!
//! - the source closes: the balancer keeps the last members, as a ZooKeeper
//!   watch keeps its members through an outage ([`FollowState::SourceClosed`]);
//! - its owner stops it, closing or dropping the balancer
//!   ([`FollowState::Idle`]);
//! - it dies: the balancer's apply code panicked, or the runtime it ran on
//!   shut down ([`FollowState::Stopped`], logged at error level with why).
//!
//! After a death nothing restarts the task, since the same snapshot would
//! likely kill it again. Instead the balancer calls
//! [`catch_up`](Follower::catch_up) on each use: while the task runs that is
//! one atomic load; once it has died it applies the source's newest
//! snapshot in the caller, so members never go stale silently.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::contract::member::{Member, MemberId};
use crate::contract::snapshot::Snapshot;
use crate::contract::watcher::Watcher;

/// Where a [`Follower`] stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowState {
    /// Not running: never started, or stopped by its owner.
    Idle,
    /// Applying every change of the source.
    Following,
    /// The source closed; the last members are kept.
    SourceClosed,
    /// The follower died (the text says why; it was logged at error level).
    /// The balancer catches up with its source on each use instead.
    Stopped(String),
}

/// Follows one source for one balancer; cheap to clone (the clones share
/// the state).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use serversets_core::balance::{FollowState, Follower};
/// use serversets_core::{HostPort, Member, Publisher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = Publisher::new();
/// source.publish([Member::from_addr("10.0.0.1:80".parse::<HostPort>()?)]);
///
/// // The balancer's state, and how a snapshot is applied to it.
/// let sizes = Arc::new(Mutex::new(Vec::new()));
/// let follower = Follower::new(source.feed());
/// // The first list at construction, in the caller...
/// follower.catch_up(|snapshot| sizes.lock().unwrap().push(snapshot.len()));
/// // ...then every change on a task.
/// let task = follower.spawn(&tokio::runtime::Handle::current(), {
///     let sizes = sizes.clone();
///     move |snapshot| {
///         sizes.lock().unwrap().push(snapshot.len());
///         std::future::ready(())
///     }
/// });
///
/// source.publish([]);
/// source.close();
/// follower.wait_until(|state| state == &FollowState::SourceClosed).await;
/// assert_eq!(*sizes.lock().unwrap(), [1, 0]);
/// drop(task);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Follower {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held so the source lives as long as anything follows it (dropping a
    /// ZooKeeper watch may end its background work).
    watcher: Arc<dyn Watcher>,
    state: Mutex<FollowState>,
    state_changed: tokio::sync::Notify,
    /// True while a task is in its loop; [`Follower::catch_up`] reads only
    /// this on the fast path.
    running: AtomicBool,
    /// The owner asked the task to stop: its end is orderly.
    stopping: AtomicBool,
    /// Version applied last, plus one (0: nothing applied yet).
    applied: AtomicU64,
    /// Held while a snapshot is applied, so the task and a catch-up never
    /// apply at once, and an older snapshot never lands after a newer one.
    applying: tokio::sync::Mutex<()>,
}

impl Follower {
    /// A follower of `watcher`; nothing runs until [`spawn`](Self::spawn),
    /// [`run`](Self::run) or [`catch_up`](Self::catch_up).
    pub fn new(watcher: impl Watcher + 'static) -> Follower {
        Follower::from_arc(Arc::new(watcher))
    }

    /// [`new`](Self::new) for a watcher already shared.
    pub fn from_arc(watcher: Arc<dyn Watcher>) -> Follower {
        Follower {
            inner: Arc::new(Inner {
                watcher,
                state: Mutex::new(FollowState::Idle),
                state_changed: tokio::sync::Notify::new(),
                running: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                applied: AtomicU64::new(0),
                applying: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The source.
    pub fn watcher(&self) -> &Arc<dyn Watcher> {
        &self.inner.watcher
    }

    /// Where the follower stands now.
    pub fn state(&self) -> FollowState {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The version of the snapshot applied last, if any.
    pub fn applied_version(&self) -> Option<u64> {
        self.inner.applied.load(Ordering::Acquire).checked_sub(1)
    }

    /// Runs [`run`](Self::run) on `runtime`. Dropping the returned task
    /// stops it (an orderly stop, [`FollowState::Idle`]). The follower counts
    /// as running from this call on, so a task that never gets to run (its
    /// runtime shut down first) is reported as [`FollowState::Stopped`] too.
    pub fn spawn<A, Fut>(&self, runtime: &Handle, apply: A) -> FollowTask
    where
        A: FnMut(Snapshot) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let guard = self.start();
        let follower = self.clone();
        let handle = runtime.spawn(async move { follower.follow(guard, apply).await });
        FollowTask {
            follower: self.clone(),
            handle,
        }
    }

    /// Applies the source's current members if newer than what was applied,
    /// then every newer snapshot, until the source closes. Cancelling this
    /// future is an orderly stop only after [`stop`](Self::stop); any other
    /// end (a panic in `apply`, the runtime going away) marks the follower
    /// [`FollowState::Stopped`] and logs why.
    pub async fn run<A, Fut>(&self, apply: A)
    where
        A: FnMut(Snapshot) -> Fut,
        Fut: Future<Output = ()>,
    {
        let guard = self.start();
        self.follow(guard, apply).await;
    }

    /// Marks the follower running; the guard reports how the run ends.
    fn start(&self) -> ExitGuard {
        self.inner.stopping.store(false, Ordering::Release);
        self.inner.running.store(true, Ordering::Release);
        self.set_state(FollowState::Following);
        ExitGuard {
            follower: self.clone(),
            finished: false,
        }
    }

    async fn follow<A, Fut>(&self, guard: ExitGuard, mut apply: A)
    where
        A: FnMut(Snapshot) -> Fut,
        Fut: Future<Output = ()>,
    {
        // Subscribe before reading, so a change between the two is not lost.
        let mut subscription = self.inner.watcher.subscribe();
        let mut next = Some(subscription.latest());
        while let Some(snapshot) = next {
            self.apply_if_newer(snapshot, &mut apply).await;
            next = subscription.changed().await;
        }
        tracing::info!("the source closed; the balancer keeps its last members");
        guard.finish(FollowState::SourceClosed);
    }

    /// Marks the end the owner is about to cause (cancelling [`run`] or
    /// dropping the [`FollowTask`]) as orderly.
    ///
    /// [`run`]: Self::run
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::Release);
    }

    /// Applies the source's newest snapshot in the caller when no follower
    /// task is running and the snapshot is newer than the last one applied.
    /// Returns true when it applied. Balancers call it on each use; while
    /// the task runs it costs one atomic load.
    ///
    /// ```
    /// use serversets_core::balance::Follower;
    /// use serversets_core::{HostPort, Member, Publisher};
    ///
    /// let source = Publisher::new();
    /// let follower = Follower::new(source.feed());
    /// let mut seen = Vec::new();
    /// assert!(follower.catch_up(|s| seen.push(s.len()))); // the first list
    /// assert!(!follower.catch_up(|s| seen.push(s.len()))); // nothing newer
    /// source.publish([Member::from_addr("10.0.0.1:80".parse::<HostPort>()?)]);
    /// assert!(follower.catch_up(|s| seen.push(s.len())));
    /// assert_eq!(seen, [0, 1]);
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn catch_up(&self, apply: impl FnOnce(Snapshot)) -> bool {
        if self.inner.running.load(Ordering::Acquire) {
            return false;
        }
        // Someone else is applying: they apply the newest, or the task does.
        let Ok(_applying) = self.inner.applying.try_lock() else {
            return false;
        };
        let snapshot = self.inner.watcher.snapshot();
        if !self.is_newer(&snapshot) {
            return false;
        }
        let version = snapshot.version();
        apply(snapshot);
        self.mark_applied(version);
        true
    }

    /// Waits until the state satisfies `pred` (for tests and for owners
    /// that must know the follower has started or ended).
    pub async fn wait_until(&self, mut pred: impl FnMut(&FollowState) -> bool) {
        loop {
            let notified = self.inner.state_changed.notified();
            if pred(&self.state()) {
                return;
            }
            notified.await;
        }
    }

    async fn apply_if_newer<A, Fut>(&self, snapshot: Snapshot, apply: &mut A)
    where
        A: FnMut(Snapshot) -> Fut,
        Fut: Future<Output = ()>,
    {
        let _applying = self.inner.applying.lock().await;
        if self.is_newer(&snapshot) {
            let version = snapshot.version();
            apply(snapshot).await;
            self.mark_applied(version);
        }
    }

    fn is_newer(&self, snapshot: &Snapshot) -> bool {
        self.applied_version()
            .is_none_or(|applied| snapshot.version() > applied)
    }

    fn mark_applied(&self, version: u64) {
        self.inner
            .applied
            .fetch_max(version.saturating_add(1), Ordering::AcqRel);
    }

    fn set_state(&self, state: FollowState) {
        *self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = state;
        self.inner.state_changed.notify_waiters();
    }
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("state", &self.state())
            .field("applied_version", &self.applied_version())
            .finish_non_exhaustive()
    }
}

/// Records how the follower's loop ended, so the end is never silent.
struct ExitGuard {
    follower: Follower,
    /// The loop ended by itself and recorded how.
    finished: bool,
}

impl ExitGuard {
    fn finish(mut self, state: FollowState) {
        self.follower.inner.running.store(false, Ordering::Release);
        self.follower.set_state(state);
        self.finished = true;
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let follower = &self.follower;
        follower.inner.running.store(false, Ordering::Release);
        if follower.inner.stopping.load(Ordering::Acquire) {
            follower.set_state(FollowState::Idle);
            return;
        }
        let why = if std::thread::panicking() {
            "the follower panicked applying a snapshot"
        } else {
            "the follower was cancelled (its runtime shut down?)"
        };
        tracing::error!("{why}; the balancer now catches up with its source on each use");
        follower.set_state(FollowState::Stopped(why.to_string()));
    }
}

/// A follower running on a runtime; dropping it stops the follower.
#[derive(Debug)]
pub struct FollowTask {
    follower: Follower,
    handle: JoinHandle<()>,
}

impl FollowTask {
    /// The follower this task runs.
    pub fn follower(&self) -> &Follower {
        &self.follower
    }
}

impl Drop for FollowTask {
    fn drop(&mut self) {
        self.follower.stop();
        self.handle.abort();
    }
}

/// What a keyed balancer (tower's `Discover`, say) must do to go from one
/// snapshot to the next, by member id. A member whose id stayed but whose
/// contents changed (a new weight) is only in `insert`: inserting under a
/// known id replaces it, which opens no gap where the member is missing.
///
/// ```
/// use serversets_core::balance::Changes;
/// use serversets_core::{HostPort, Member, Snapshot};
///
/// let m = |id: &str, port| Member::builder(id, HostPort::new("h", port).unwrap()).build();
/// let old = Snapshot::from_members(1, [m("a", 1), m("b", 2)]);
/// let new = Snapshot::from_members(2, [m("a", 1).with_weight(3.0), m("c", 3)]);
/// let changes = Changes::between(&new, &old);
/// let inserted: Vec<_> = changes.insert.iter().map(|m| m.id().as_str()).collect();
/// assert_eq!(inserted, ["a", "c"]);
/// assert_eq!(changes.remove.len(), 1);
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Changes {
    /// Members to insert (new ids) or replace (known ids, new contents).
    pub insert: Vec<Member>,
    /// Ids that left the set.
    pub remove: Vec<MemberId>,
}

impl Changes {
    /// The changes from `older` to `newer`, from [`Snapshot::diff`].
    pub fn between(newer: &Snapshot, older: &Snapshot) -> Changes {
        let diff = newer.diff(older);
        // `diff` lists a changed member in both `added` and `removed`; its id
        // is not going away, so it is an insert (a replacement) only.
        let kept: std::collections::HashSet<&MemberId> =
            diff.added.iter().map(Member::id).collect();
        let remove = diff
            .removed
            .iter()
            .filter(|m| !kept.contains(m.id()))
            .map(|m| m.id().clone())
            .collect();
        Changes {
            insert: diff.added,
            remove,
        }
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.insert.is_empty() && self.remove.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostPort, Publisher};
    use std::sync::Mutex as StdMutex;

    fn member(id: &str, port: u16) -> Member {
        Member::builder(id, HostPort::new("h", port).unwrap()).build()
    }

    fn recorder() -> (
        Arc<StdMutex<Vec<usize>>>,
        impl FnMut(Snapshot) -> std::future::Ready<()>,
    ) {
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let s = seen.clone();
        (seen, move |snap: Snapshot| {
            s.lock().unwrap().push(snap.len());
            std::future::ready(())
        })
    }

    /// Waits for the task to apply the source's first list.
    async fn first_applied(follower: &Follower) {
        while follower.applied_version().is_none() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn follows_every_change_until_the_source_closes() {
        let source = Publisher::new();
        source.publish([member("a", 1)]);
        let follower = Follower::new(source.feed());
        let (seen, apply) = recorder();
        let task = follower.spawn(&Handle::current(), apply);
        first_applied(&follower).await;
        source.publish([member("a", 1), member("b", 2)]);
        source.close();
        follower
            .wait_until(|s| *s == FollowState::SourceClosed)
            .await;
        assert_eq!(*seen.lock().unwrap(), [1, 2]);
        drop(task);
        assert_eq!(follower.state(), FollowState::SourceClosed);
    }

    #[tokio::test]
    async fn dropping_the_task_is_an_orderly_stop() {
        let source = Publisher::new();
        let follower = Follower::new(source.feed());
        let (_seen, apply) = recorder();
        let task = follower.spawn(&Handle::current(), apply);
        first_applied(&follower).await;
        drop(task);
        follower.wait_until(|s| *s == FollowState::Idle).await;
    }

    #[tokio::test]
    async fn a_panic_is_reported_and_catch_up_takes_over() {
        let source = Publisher::new();
        let follower = Follower::new(source.feed());
        let applied = Arc::new(StdMutex::new(Vec::new()));
        let a = applied.clone();
        let _task = follower.spawn(&Handle::current(), move |snap: Snapshot| {
            assert!(snap.len() < 2, "a balancer bug on big sets");
            a.lock().unwrap().push(snap.len());
            std::future::ready(())
        });
        first_applied(&follower).await;
        source.publish([member("a", 1), member("b", 2)]);
        follower
            .wait_until(|s| matches!(s, FollowState::Stopped(_)))
            .await;
        let FollowState::Stopped(why) = follower.state() else {
            unreachable!()
        };
        assert!(why.contains("panicked"), "{why}");
        // The balancer's next use applies the newest members itself.
        source.publish([member("c", 3)]);
        assert!(follower.catch_up(|snap| applied.lock().unwrap().push(snap.len())));
        assert!(!follower.catch_up(|_| unreachable!("nothing newer")));
        assert_eq!(*applied.lock().unwrap(), [0, 1]);
    }

    #[test]
    fn a_runtime_shutting_down_is_reported() {
        let source = Publisher::new();
        let follower = Follower::new(source.feed());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (_seen, apply) = recorder();
        let task = follower.spawn(runtime.handle(), apply);
        runtime.block_on(first_applied(&follower));
        drop(runtime);
        assert!(
            matches!(follower.state(), FollowState::Stopped(ref why) if why.contains("cancelled")),
            "{:?}",
            follower.state()
        );
        drop(task);
    }

    #[test]
    fn a_task_that_never_ran_is_reported_too() {
        let source = Publisher::new();
        let follower = Follower::new(source.feed());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (seen, apply) = recorder();
        let task = follower.spawn(runtime.handle(), apply);
        assert_eq!(follower.state(), FollowState::Following);
        drop(runtime); // before the task was ever polled
        assert!(
            matches!(follower.state(), FollowState::Stopped(ref why) if why.contains("cancelled")),
            "{:?}",
            follower.state()
        );
        assert!(seen.lock().unwrap().is_empty());
        assert!(follower.catch_up(|_| {}));
        drop(task);
    }

    #[tokio::test]
    async fn catch_up_does_nothing_while_the_task_runs() {
        let source = Publisher::new();
        let follower = Follower::new(source.feed());
        let (seen, apply) = recorder();
        let _task = follower.spawn(&Handle::current(), apply);
        first_applied(&follower).await;
        source.publish([member("a", 1)]);
        assert!(!follower.catch_up(|_| unreachable!("the task applies it")));
        // Let the task apply it.
        while follower.applied_version() != Some(source.snapshot().version()) {
            tokio::task::yield_now().await;
        }
        assert_eq!(*seen.lock().unwrap(), [0, 1]);
    }

    #[tokio::test]
    async fn an_older_snapshot_never_lands_after_a_newer_one() {
        let source = Publisher::new();
        let follower = Follower::new(source.feed());
        source.publish([member("a", 1), member("b", 2)]);
        // A catch-up applied version 1 (two members) first.
        assert!(follower.catch_up(|_| {}));
        let (seen, apply) = recorder();
        let _task = follower.spawn(&Handle::current(), apply);
        first_applied(&follower).await;
        source.publish([member("a", 1)]);
        while follower.applied_version() != Some(source.snapshot().version()) {
            tokio::task::yield_now().await;
        }
        // The task skipped the snapshot already applied.
        assert_eq!(*seen.lock().unwrap(), [1]);
    }

    #[test]
    fn a_changed_member_is_replaced_not_removed() {
        let old = Snapshot::from_members(1, [member("a", 1), member("b", 2)]);
        let new = Snapshot::from_members(2, [member("a", 1).with_weight(3.0), member("c", 3)]);
        let changes = Changes::between(&new, &old);
        let inserted: Vec<_> = changes.insert.iter().map(|m| m.id().as_str()).collect();
        assert_eq!(inserted, ["a", "c"]);
        assert_eq!(changes.remove, [MemberId::new("b")]);
        let same = Snapshot::from_members(3, [member("a", 1), member("b", 2)]);
        assert!(Changes::between(&same, &old).is_empty());
    }
}

//! The contract between a source of members (a ZooKeeper watch, a fixed list,
//! your own) and the balancers that consume it.
//!
//! Sources write through a [`Publisher`]; consumers read through the
//! [`Watcher`] trait. Reads are a single atomic load, so a balancer can take a
//! snapshot on every request; waiting for a change never misses the newest
//! state, though several quick changes may be seen as one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::contract::member::Member;
use crate::contract::snapshot::Snapshot;

/// A live view of a server set.
///
/// Implemented by [`Feed`] (and so by every source in this project: the
/// ZooKeeper `Watch`, `FixedSet`), and by references, `Arc`s and boxes of
/// watchers, so balancers can take `impl Watcher` by value.
///
/// ```
/// use serversets_core::{HostPort, Member, Publisher, Watcher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let publisher = Publisher::new();
/// let watcher = publisher.feed();
/// let mut changes = watcher.subscribe();
///
/// publisher.publish([Member::from_addr("10.0.0.1:80".parse::<HostPort>()?)]);
/// let snap = changes.changed().await.ok_or("closed")?;
/// assert_eq!(snap.len(), 1);
/// assert_eq!(watcher.snapshot().version(), snap.version());
///
/// publisher.close();
/// assert!(watcher.is_closed());
/// assert!(changes.changed().await.is_none());
/// # Ok(()) }
/// ```
pub trait Watcher: Send + Sync {
    /// The current members; cheap (an atomic load and a reference count).
    fn snapshot(&self) -> Snapshot;

    /// A subscription that wakes on every change after this call.
    fn subscribe(&self) -> Subscription;

    /// True once the source has stopped: no further change will come.
    fn is_closed(&self) -> bool;
}

/// Pointers to watchers are watchers, so balancers can take `impl Watcher`
/// by value and callers can pass `&watch`, `Arc<Watch>` or a box.
macro_rules! forward_watcher {
    ($($ptr:ty),*) => {$(
        impl<W: Watcher + ?Sized> Watcher for $ptr {
            fn snapshot(&self) -> Snapshot {
                (**self).snapshot()
            }
            fn subscribe(&self) -> Subscription {
                (**self).subscribe()
            }
            fn is_closed(&self) -> bool {
                (**self).is_closed()
            }
        }
    )*};
}

forward_watcher!(&W, Arc<W>, Box<W>);

struct Shared {
    current: ArcSwap<Snapshot>,
    /// Carries the latest version; used only to wake waiters.
    wake: watch::Sender<u64>,
    closed: AtomicBool,
    /// Serialises writers so versions are strictly increasing.
    write: Mutex<()>,
}

impl Shared {
    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.wake.send_modify(|_| {});
        }
    }
}

/// The write side of a source: publishes new member lists and closes.
///
/// Dropping the publisher closes the feed, so consumers learn when a source
/// goes away.
///
/// ```
/// use serversets_core::{HostPort, Member, Publisher, Watcher};
///
/// let publisher = Publisher::new();
/// let m = Member::from_addr("h:1".parse::<HostPort>()?);
/// assert!(publisher.publish([m.clone()]).is_some());
/// // Publishing the same members again is not a change.
/// assert!(publisher.publish([m]).is_none());
/// assert_eq!(publisher.feed().snapshot().version(), 1);
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// A new source holding the empty snapshot (version 0).
    pub fn new() -> Publisher {
        let (wake, _) = watch::channel(0);
        Publisher {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(Snapshot::empty()),
                wake,
                closed: AtomicBool::new(false),
                write: Mutex::new(()),
            }),
        }
    }

    /// Replaces the member list. Returns the new snapshot, or `None` when the
    /// members are the same as now (no version bump, no wake-up) or the
    /// publisher is closed.
    pub fn publish(&self, members: impl IntoIterator<Item = Member>) -> Option<Snapshot> {
        // The writer lock only guards the version counter; a poisoned lock
        // carries no broken invariant, so recover it.
        let _writer = self.shared.write.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.closed.load(Ordering::SeqCst) {
            return None;
        }
        let current = self.shared.current.load();
        let next = Snapshot::from_members(current.version() + 1, members);
        if next.same_members(&current) {
            return None;
        }
        let old = self.shared.current.swap(Arc::new(next.clone()));
        self.shared.wake.send_replace(next.version());
        drop(old);
        Some(next)
    }

    /// Applies a change to the current list: removes `remove` (matched by id
    /// and address) and adds or replaces `add`, keeping the order without a
    /// full sort. Cost is one copy of the list, so sources that learn about
    /// members one at a time (like the ZooKeeper watch) stay cheap per
    /// change. Returns the new snapshot, or `None` when nothing changed or
    /// the publisher is closed.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member, Publisher};
    ///
    /// let p = Publisher::new();
    /// let a = Member::from_addr("a:1".parse::<HostPort>()?);
    /// let b = Member::from_addr("b:1".parse::<HostPort>()?);
    /// p.publish([a.clone()]);
    /// let snap = p.apply([b], [a]).ok_or("no change")?;
    /// assert_eq!(snap.members()[0].id().as_str(), "b:1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply(
        &self,
        add: impl IntoIterator<Item = Member>,
        remove: impl IntoIterator<Item = Member>,
    ) -> Option<Snapshot> {
        let _writer = self.shared.write.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.closed.load(Ordering::SeqCst) {
            return None;
        }
        let current = self.shared.current.load();
        let mut members = current.members().to_vec();
        let mut changed = false;
        for gone in remove {
            if let Ok(i) = members.binary_search_by(|m| m.sort_key().cmp(&gone.sort_key())) {
                members.remove(i);
                changed = true;
            }
        }
        for new in add {
            match members.binary_search_by(|m| m.sort_key().cmp(&new.sort_key())) {
                Ok(i) => {
                    if members[i] != new {
                        members[i] = new;
                        changed = true;
                    }
                }
                Err(i) => {
                    members.insert(i, new);
                    changed = true;
                }
            }
        }
        if !changed {
            return None;
        }
        let next = Snapshot::from_sorted(current.version() + 1, members);
        drop(current);
        let old = self.shared.current.swap(Arc::new(next.clone()));
        self.shared.wake.send_replace(next.version());
        // Freeing a large old list costs one decrement per member: do it
        // after waking the readers, not before.
        drop(old);
        Some(next)
    }

    /// Closes the source; consumers see [`Watcher::is_closed`] and their
    /// subscriptions end. The last snapshot stays readable. Idempotent.
    pub fn close(&self) {
        self.shared.close();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.current.load().as_ref().clone()
    }

    /// A read handle for consumers.
    pub fn feed(&self) -> Feed {
        Feed {
            shared: self.shared.clone(),
        }
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("version", &self.shared.current.load().version())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The read side of a [`Publisher`]: a cloneable [`Watcher`].
#[derive(Clone)]
pub struct Feed {
    shared: Arc<Shared>,
}

impl Watcher for Feed {
    fn snapshot(&self) -> Snapshot {
        self.shared.current.load().as_ref().clone()
    }

    fn subscribe(&self) -> Subscription {
        let mut wake = self.shared.wake.subscribe();
        wake.mark_unchanged();
        let seen = self.shared.current.load().version();
        Subscription {
            shared: self.shared.clone(),
            wake,
            seen,
        }
    }

    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("version", &self.shared.current.load().version())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Waits for changes to a set; see [`Watcher::subscribe`].
pub struct Subscription {
    shared: Arc<Shared>,
    wake: watch::Receiver<u64>,
    seen: u64,
}

impl Subscription {
    /// Waits until the set is newer than the last snapshot this subscription
    /// returned (or than the state at subscribe time), and returns the newest
    /// snapshot. Changes that happen in quick succession may be coalesced into
    /// one. Returns `None` once the source is closed and its last list has
    /// been returned.
    ///
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn changed(&mut self) -> Option<Snapshot> {
        loop {
            // Mark first, then look: a publish after the look is sure to wake us.
            self.wake.borrow_and_update();
            // Read `closed` before the snapshot: a source publishes before it
            // closes, so a close seen here means its last list is visible
            // below and is handed out before the end is reported.
            let closed = self.shared.closed.load(Ordering::SeqCst);
            let current = self.shared.current.load();
            if current.version() > self.seen {
                self.seen = current.version();
                return Some(current.as_ref().clone());
            }
            if closed {
                return None;
            }
            if self.wake.changed().await.is_err() {
                // The sender lives in `shared`, which we hold; unreachable in
                // practice, but treat it as closed rather than spin.
                return None;
            }
        }
    }

    /// The newest snapshot, without waiting, marking it seen.
    pub fn latest(&mut self) -> Snapshot {
        let current = self.shared.current.load().as_ref().clone();
        self.seen = self.seen.max(current.version());
        current
    }

    /// True once the source is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("seen", &self.seen)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::address::HostPort;
    use std::time::Duration;

    fn member(addr: &str) -> Member {
        Member::from_addr(addr.parse::<HostPort>().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_wakes_on_publish() {
        let p = Publisher::new();
        let feed = p.feed();
        let mut sub = feed.subscribe();
        let waiter = tokio::spawn(async move { sub.changed().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.publish([member("a:1")]);
        let snap = waiter.await.unwrap().expect("open");
        assert_eq!(snap.len(), 1);
        assert_eq!(snap.version(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn quick_changes_coalesce_to_the_newest() {
        let p = Publisher::new();
        let mut sub = p.feed().subscribe();
        for i in 1..=50u16 {
            p.publish((1..=i).map(|port| member(&format!("h:{port}"))));
        }
        let snap = sub.changed().await.unwrap();
        assert_eq!(snap.len(), 50);
        assert_eq!(snap.version(), 50);
        // Nothing newer: a second wait must block.
        let pending = tokio::time::timeout(Duration::from_millis(50), sub.changed()).await;
        assert!(
            pending.is_err(),
            "no change pending, yet changed() returned"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn identical_publish_is_not_a_change() {
        let p = Publisher::new();
        let mut sub = p.feed().subscribe();
        p.publish([member("a:1"), member("b:1")]);
        assert_eq!(sub.changed().await.unwrap().version(), 1);
        assert!(p.publish([member("b:1"), member("a:1")]).is_none());
        let pending = tokio::time::timeout(Duration::from_millis(30), sub.changed()).await;
        assert!(pending.is_err());
    }

    #[tokio::test]
    async fn the_last_list_before_close_is_delivered_before_the_end() {
        let p = Publisher::new();
        let mut sub = p.feed().subscribe();
        p.publish([member("a:1"), member("b:1")]);
        p.close();
        let last = sub.changed().await.expect("the last list first");
        assert_eq!(last.len(), 2);
        assert!(sub.changed().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn close_ends_waiters_and_keeps_last_state() {
        let p = Publisher::new();
        let feed = p.feed();
        p.publish([member("a:1")]);
        let mut sub = feed.subscribe();
        let waiter = tokio::spawn(async move { sub.changed().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(p);
        assert!(waiter.await.unwrap().is_none());
        assert!(feed.is_closed());
        assert_eq!(feed.snapshot().len(), 1);
    }

    #[tokio::test]
    async fn many_concurrent_readers_all_reach_the_final_state() {
        let p = Arc::new(Publisher::new());
        let feed = p.feed();
        let mut readers = Vec::new();
        for _ in 0..8 {
            let mut sub = feed.subscribe();
            readers.push(tokio::spawn(async move {
                let mut last = 0;
                while let Some(s) = sub.changed().await {
                    assert!(s.version() > last, "versions only go up");
                    last = s.version();
                    if s.len() == 200 {
                        return last;
                    }
                }
                last
            }));
        }
        let writer = {
            let p = p.clone();
            tokio::spawn(async move {
                for i in 1..=200u16 {
                    p.publish((1..=i).map(|port| member(&format!("h:{port}"))));
                    tokio::task::yield_now().await;
                }
            })
        };
        writer.await.unwrap();
        for r in readers {
            assert_eq!(r.await.unwrap(), 200);
        }
    }
}

//! Following a Watcher by polling: the one place that turns snapshots into
//! the keyed inserts and removes ([`Changes`]) every part of this crate hands
//! to a balancer.
//!
//! Why not core's [`Follower`](serversets_core::balance::Follower): that one
//! *pushes* each snapshot into the balancer from a task it spawns (or from a
//! catch-up on each use, once that task has died). A tower `Discover` is
//! *pulled*: tower's `Balance` polls it on its own task when it places a
//! request, and a `Stream` may not spawn. So this is a thin poll-driven
//! adaptor over core's parts instead ([`Subscription`] for the wait,
//! [`Changes`] for the diff): it reads the newest snapshot only when polled,
//! so changes that came in between are coalesced into one diff, and there
//! is no task that could die apart from the balancer, hence no dead-follower
//! policy to apply: while the balancer is not polled it places no requests,
//! and on its next poll it gets everything newer at once. The tonic sync
//! task polls it too, inside the task it spawns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serversets_core::balance::Changes;
use serversets_core::{Snapshot, Subscription, Watcher};

/// The wait for the next snapshot. `Subscription::changed` borrows the
/// subscription, so the future owns it and hands it back with the result;
/// one small allocation per change, and changes are rare next to requests.
type NextChange = Pin<Box<dyn Future<Output = (Subscription, Option<Snapshot>)> + Send>>;

fn wait_for_change(mut subscription: Subscription) -> NextChange {
    Box::pin(async move {
        let next = subscription.changed().await;
        (subscription, next)
    })
}

/// Polls a Watcher for [`Changes`]: first everything in it at the first
/// poll, then each change after that. Ends (`None`) when the source closes,
/// after its last list; the balancer keeps what it was given, as a watch
/// keeps its members through an outage.
pub(crate) struct PollFollower {
    /// Kept only so the source lives as long as we follow it (dropping a
    /// ZooKeeper `Watch` may end its background task).
    _watcher: Arc<dyn Watcher>,
    /// The snapshot the balancer has been told about.
    applied: Snapshot,
    /// The snapshot taken at construction, handed out on the first poll.
    first: Option<Snapshot>,
    /// Waiting for the next change; `None` once the source has closed.
    next: Option<NextChange>,
}

impl PollFollower {
    pub fn new(watcher: Arc<dyn Watcher>) -> PollFollower {
        // Subscribe before reading, so a change between the two is not lost.
        let mut subscription = watcher.subscribe();
        let first = subscription.latest();
        PollFollower {
            _watcher: watcher,
            applied: Snapshot::empty(),
            first: Some(first),
            next: Some(wait_for_change(subscription)),
        }
    }

    /// The next non-empty set of changes; `Ready(None)` once the source has
    /// closed (and every time after).
    pub fn poll_changes(&mut self, cx: &mut Context<'_>) -> Poll<Option<Changes>> {
        if let Some(first) = self.first.take() {
            let changes = Changes::between(&first, &self.applied);
            self.applied = first;
            if !changes.is_empty() {
                return Poll::Ready(Some(changes));
            }
        }
        loop {
            let Some(next) = self.next.as_mut() else {
                return Poll::Ready(None);
            };
            let (subscription, snapshot) = match next.as_mut().poll(cx) {
                Poll::Ready(out) => out,
                Poll::Pending => return Poll::Pending,
            };
            let Some(snapshot) = snapshot else {
                self.next = None;
                return Poll::Ready(None);
            };
            self.next = Some(wait_for_change(subscription));
            let changes = Changes::between(&snapshot, &self.applied);
            self.applied = snapshot;
            if !changes.is_empty() {
                return Poll::Ready(Some(changes));
            }
        }
    }

    /// The next non-empty set of changes, or `None` once the source has
    /// closed.
    pub async fn changes(&mut self) -> Option<Changes> {
        std::future::poll_fn(|cx| self.poll_changes(cx)).await
    }

    /// Members in the snapshot last handed out.
    pub fn applied(&self) -> &Snapshot {
        &self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets_core::{HostPort, Member, MemberId, Publisher};

    fn member(id: &str, addr: &str) -> Member {
        Member::builder(id, addr.parse::<HostPort>().unwrap()).build()
    }

    #[tokio::test]
    async fn follows_from_the_first_list_to_the_close() {
        let publisher = Publisher::new();
        publisher.publish([member("a", "h:1")]);
        let mut follower = PollFollower::new(Arc::new(publisher.feed()));
        let first = follower.changes().await.unwrap();
        assert_eq!(first.insert.len(), 1);

        publisher.publish([member("b", "h:2")]);
        let second = follower.changes().await.unwrap();
        assert_eq!(second.insert[0].id().as_str(), "b");
        assert_eq!(second.remove, [MemberId::new("a")]);
        assert_eq!(follower.applied().len(), 1);

        publisher.close();
        assert!(follower.changes().await.is_none());
        // Fused: polling again is still the end, not a panic.
        assert!(follower.changes().await.is_none());
    }

    #[tokio::test]
    async fn changes_between_polls_are_coalesced_into_one_diff() {
        let publisher = Publisher::new();
        let mut follower = PollFollower::new(Arc::new(publisher.feed()));
        // Nothing in the set: the first poll has nothing to hand out.
        publisher.publish([member("a", "h:1")]);
        publisher.publish([member("b", "h:2")]);
        let changes = follower.changes().await.unwrap();
        let inserted: Vec<_> = changes.insert.iter().map(|m| m.id().as_str()).collect();
        assert_eq!(inserted, ["b"]);
        assert!(changes.remove.is_empty(), "a was never handed out");
    }
}

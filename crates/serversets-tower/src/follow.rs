//! Following a Watcher: the one place that turns snapshots into the keyed
//! inserts and removes every part of this crate hands to a balancer.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serversets_core::{Member, MemberId, Snapshot, Subscription, Watcher};

/// What a balancer must do to go from one snapshot to the next, by member
/// id. A member whose id stayed but whose contents changed (a new weight,
/// say) is only in `insert`: an insert under a key the balancer already
/// holds replaces that service, and tower's `ReadyCache` keeps the old one
/// serving until the new one is ready, so the change opens no gap.
#[derive(Debug, Default)]
pub(crate) struct Changes {
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
        let kept: HashSet<&MemberId> = diff.added.iter().map(Member::id).collect();
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
pub(crate) struct Follower {
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

impl Follower {
    pub fn new(watcher: Arc<dyn Watcher>) -> Follower {
        // Subscribe before reading, so a change between the two is not lost.
        let mut subscription = watcher.subscribe();
        let first = subscription.latest();
        Follower {
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

    /// Members in the snapshot last handed out.
    pub fn applied(&self) -> &Snapshot {
        &self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets_core::{HostPort, Publisher};

    fn member(id: &str, addr: &str) -> Member {
        Member::builder(id, addr.parse::<HostPort>().unwrap()).build()
    }

    #[test]
    fn a_changed_member_is_replaced_not_removed() {
        let old = Snapshot::from_members(1, [member("a", "h:1"), member("b", "h:2")]);
        let new =
            Snapshot::from_members(2, [member("a", "h:1").with_weight(3.0), member("c", "h:3")]);
        let changes = Changes::between(&new, &old);
        let inserted: Vec<_> = changes.insert.iter().map(|m| m.id().as_str()).collect();
        assert_eq!(inserted, ["a", "c"]);
        assert_eq!(changes.remove, [MemberId::new("b")]);
    }

    #[test]
    fn unchanged_members_are_not_inserted_again() {
        let old = Snapshot::from_members(1, [member("a", "h:1"), member("b", "h:2")]);
        let new = Snapshot::from_members(2, [member("a", "h:1"), member("b", "h:2")]);
        assert!(Changes::between(&new, &old).is_empty());
    }

    #[tokio::test]
    async fn follows_from_the_first_list_to_the_close() {
        let publisher = Publisher::new();
        publisher.publish([member("a", "h:1")]);
        let mut follower = Follower::new(Arc::new(publisher.feed()));
        let first = std::future::poll_fn(|cx| follower.poll_changes(cx))
            .await
            .unwrap();
        assert_eq!(first.insert.len(), 1);

        publisher.publish([member("b", "h:2")]);
        let second = std::future::poll_fn(|cx| follower.poll_changes(cx))
            .await
            .unwrap();
        assert_eq!(second.insert[0].id().as_str(), "b");
        assert_eq!(second.remove, [MemberId::new("a")]);
        assert_eq!(follower.applied().len(), 1);

        publisher.close();
        assert!(std::future::poll_fn(|cx| follower.poll_changes(cx))
            .await
            .is_none());
        // Fused: polling again is still the end, not a panic.
        assert!(std::future::poll_fn(|cx| follower.poll_changes(cx))
            .await
            .is_none());
    }
}

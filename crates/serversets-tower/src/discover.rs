//! [`WatcherDiscover`]: a tower `Discover` over any Watcher, building each
//! member's service with a plain function.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use serversets_core::{Member, MemberId, Watcher};
use tower::discover::Change;

use crate::follow::PollFollower;
use crate::member_count::MemberCount;

/// Builds the service for one member; implemented by every
/// `FnMut(&Member) -> S`.
///
/// Implement it on a type of your own when the builder needs a name (to
/// store a `WatcherDiscover` in a struct field, say).
///
/// ```
/// use serversets_core::{HostPort, Member};
/// use serversets_tower::MakeMember;
///
/// struct Addresses;
/// impl MakeMember for Addresses {
///     type Service = String;
///     fn make(&mut self, member: &Member) -> String {
///         member.addr().to_string()
///     }
/// }
///
/// let member = Member::from_addr("10.0.0.1:80".parse::<HostPort>()?);
/// assert_eq!(Addresses.make(&member), "10.0.0.1:80");
/// // A closure is a MakeMember too.
/// let mut by_closure = |m: &Member| m.port();
/// assert_eq!(by_closure.make(&member), 80);
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
pub trait MakeMember {
    /// The service built for each member.
    type Service;

    /// Builds the service for `member`. Called once per member id, and again
    /// when a member's contents change (the new service replaces the old).
    fn make(&mut self, member: &Member) -> Self::Service;
}

impl<F, S> MakeMember for F
where
    F: FnMut(&Member) -> S,
{
    type Service = S;

    fn make(&mut self, member: &Member) -> S {
        self(member)
    }
}

/// One change waiting to be handed to the balancer. Services are built only
/// when handed out, so nothing is built for a change the balancer never
/// polls for.
enum Pending {
    Insert(Member),
    Remove(MemberId),
}

/// A tower [`Discover`](tower::discover::Discover) over any
/// [`Watcher`]: a [`Stream`] of [`Change`]s keyed by [`MemberId`].
///
/// - The first poll inserts every member the watcher holds; after that each
///   change of the set becomes inserts and removes from
///   [`Snapshot::diff`](serversets_core::Snapshot::diff). Unchanged members
///   are never inserted again.
/// - Keys are member ids (for ZooKeeper the znode name), so a server that
///   registers again is a new key, and its old service is removed.
/// - A member whose contents changed under the same id (a new weight) is
///   inserted again under its key; tower's `Balance` keeps the old service
///   serving until the new one is ready.
/// - Inserts come before removes, so replacing every member never leaves
///   the balancer empty in between.
/// - The stream ends when the watcher closes; the balancer keeps the
///   services it has (a closed source is not an empty set).
///
/// The service for each member comes from a [`MakeMember`], usually a
/// closure; wrap it in [`MemberLoad`](crate::MemberLoad) for tower's p2c
/// [`Balance`](https://docs.rs/tower/0.5/tower/balance/p2c/struct.Balance.html), or use tower's own load
/// wrappers. Builders that connect asynchronously go through
/// [`MakeDiscover`](crate::MakeDiscover) instead.
///
/// Named additional endpoints and shards are chosen on the watch, as for the
/// other balancers (`WatchBuilder::endpoint`, a shard filter), so the
/// members seen here already carry the address to use.
///
/// ```
/// use std::convert::Infallible;
/// use serversets_core::Member;
/// use serversets_fixedset::FixedSet;
/// use serversets_tower::{MemberLoad, WatcherDiscover};
/// use tower::balance::p2c::Balance;
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let set = FixedSet::new(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"])?;
/// // Each member's service; a real one would be a client for its address.
/// let discover = WatcherDiscover::new(set, |member: &Member| {
///     let addr = member.addr().to_string();
///     let svc = service_fn(move |name: String| {
///         let addr = addr.clone();
///         async move { Ok::<_, Infallible>(format!("hello {name} from {addr}")) }
///     });
///     MemberLoad::new(svc, member)
/// });
/// let balance = Balance::new(discover);
/// let answer = balance.oneshot("you".to_string()).await?;
/// assert!(answer.starts_with("hello you from 10.0.0."));
/// # Ok(()) }
/// ```
pub struct WatcherDiscover<M: MakeMember> {
    /// Where the changes come from.
    follower: PollFollower,
    /// Builds a member's service when its insert is handed out.
    make: M,
    /// Changes of the last diff not handed out yet; the follower is polled
    /// again only once this is empty, so nothing in it goes stale.
    queue: VecDeque<Pending>,
    /// Keys the balancer holds: to tell a new insert from a replacement and
    /// to keep `members` exact.
    live: HashSet<MemberId>,
    /// `live.len()`, shared with fail-fast layers.
    members: MemberCount,
}

impl<M: MakeMember> WatcherDiscover<M> {
    /// Follows `watcher`, building each member's service with `make`.
    ///
    /// Pass the watcher by value, or an `Arc` or reference-counted handle
    /// to share it; it is kept alive for as long as the stream is.
    pub fn new(watcher: impl Watcher + 'static, make: M) -> WatcherDiscover<M> {
        let watcher: Arc<dyn Watcher> = Arc::new(watcher);
        WatcherDiscover {
            follower: PollFollower::new(watcher.clone()),
            make,
            queue: VecDeque::new(),
            live: HashSet::new(),
            members: MemberCount::new(watcher),
        }
    }

    /// The count of members this stream has handed out, for
    /// [`FailFast`](crate::FailFast).
    pub fn member_count(&self) -> MemberCount {
        self.members.clone()
    }
}

// Nothing in a `WatcherDiscover` is structurally pinned: the pending wait is
// boxed, and `make` is only ever used through `&mut`. So it can move freely,
// which tower's `Balance` requires (`D: Unpin`) whatever `M` is.
impl<M: MakeMember> Unpin for WatcherDiscover<M> {}

impl<M: MakeMember> Stream for WatcherDiscover<M> {
    type Item = Result<Change<MemberId, M::Service>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.queue.pop_front() {
                Some(Pending::Insert(member)) => {
                    let service = this.make.make(&member);
                    this.live.insert(member.id().clone());
                    this.members.set(this.live.len());
                    return Poll::Ready(Some(Ok(Change::Insert(member.id().clone(), service))));
                }
                Some(Pending::Remove(id)) => {
                    if this.live.remove(&id) {
                        this.members.set(this.live.len());
                        return Poll::Ready(Some(Ok(Change::Remove(id))));
                    }
                    continue;
                }
                None => {}
            }
            match this.follower.poll_changes(cx) {
                Poll::Ready(Some(changes)) => {
                    this.queue
                        .extend(changes.insert.into_iter().map(Pending::Insert));
                    this.queue
                        .extend(changes.remove.into_iter().map(Pending::Remove));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<M: MakeMember> fmt::Debug for WatcherDiscover<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatcherDiscover")
            .field("version", &self.follower.applied().version())
            .field("members", &self.live.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serversets_core::{HostPort, Publisher};

    fn member(id: &str, addr: &str) -> Member {
        Member::builder(id, addr.parse::<HostPort>().unwrap()).build()
    }

    fn describe(change: &Change<MemberId, String>) -> String {
        match change {
            Change::Insert(k, v) => format!("+{k}={v}"),
            Change::Remove(k) => format!("-{k}"),
        }
    }

    async fn take(
        d: &mut WatcherDiscover<impl MakeMember<Service = String>>,
        n: usize,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            let change = d.next().await.expect("open").expect("infallible");
            out.push(describe(&change));
        }
        out
    }

    #[tokio::test]
    async fn inserts_then_diffs_by_member_id() {
        let publisher = Publisher::new();
        publisher.publish([member("m1", "h:1"), member("m2", "h:2")]);
        let mut built = 0;
        let mut d = WatcherDiscover::new(publisher.feed(), move |m: &Member| {
            built += 1;
            format!("{}#{built}", m.addr())
        });
        let members = d.member_count();
        assert_eq!(take(&mut d, 2).await, ["+m1=h:1#1", "+m2=h:2#2"]);
        assert_eq!(members.len(), 2);

        // m2 re-registers as m3 on the same address; m1 gets a new weight.
        publisher.publish([member("m1", "h:1").with_weight(2.0), member("m3", "h:2")]);
        assert_eq!(take(&mut d, 3).await, ["+m1=h:1#3", "+m3=h:2#4", "-m2"]);
        assert_eq!(members.len(), 2);

        publisher.publish([]);
        assert_eq!(take(&mut d, 2).await, ["-m1", "-m3"]);
        assert!(members.is_empty());
    }

    #[tokio::test]
    async fn ends_when_the_source_closes_after_its_last_list() {
        let publisher = Publisher::new();
        let mut d = WatcherDiscover::new(publisher.feed(), |m: &Member| m.id().to_string());
        publisher.publish([member("a", "h:1")]);
        publisher.close();
        assert_eq!(take(&mut d, 1).await, ["+a=a"]);
        assert!(d.next().await.is_none());
        assert!(d.next().await.is_none());
        assert_eq!(
            d.member_count().len(),
            1,
            "a closed source keeps its members"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_source_yields_nothing_until_a_member_arrives() {
        let publisher = Publisher::new();
        let mut d = WatcherDiscover::new(publisher.feed(), |m: &Member| m.id().to_string());
        let idle = tokio::time::timeout(std::time::Duration::from_secs(5), d.next()).await;
        assert!(idle.is_err(), "no change, yet the stream yielded");
        publisher.publish([member("a", "h:1")]);
        assert_eq!(take(&mut d, 1).await, ["+a=a"]);
    }
}

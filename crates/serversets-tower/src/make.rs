//! [`MakeDiscover`]: a tower `Discover` over any Watcher whose services are
//! made asynchronously by a `MakeService` (a `Service<Member>`), such as one
//! that connects before handing a client out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::stream::FuturesUnordered;
use pin_project_lite::pin_project;
use serversets_core::{Member, MemberId, Watcher};
use tower::discover::Change;
use tower::Service;

use crate::follow::PollFollower;
use crate::member_count::MemberCount;

/// First wait before making a member's service again after a failure.
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between attempts for one member (the wait doubles up to it).
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(10);

pin_project! {
    /// One member's service being made, tagged with what it was made for.
    struct Making<F> {
        #[pin]
        future: F,
        member: Member,
        generation: u64,
        attempt: u32,
    }
}

/// What a finished make reports: the member it was for, the generation of
/// that member's contents, the attempt number and the outcome.
type Made<S, E> = (Member, u64, u32, Result<S, E>);

impl<F, S, E> Future for Making<F>
where
    F: Future<Output = Result<S, E>>,
{
    type Output = Made<S, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.future.poll(cx));
        Poll::Ready((
            this.member.clone(),
            *this.generation,
            *this.attempt,
            outcome,
        ))
    }
}

/// A failed make waiting out its back-off.
struct Retry {
    sleep: Pin<Box<tokio::time::Sleep>>,
    member: Option<Member>,
    generation: u64,
    attempt: u32,
}

impl Future for Retry {
    type Output = (Option<Member>, u64, u32);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        ready!(self.sleep.as_mut().poll(cx));
        let member = self.member.take();
        Poll::Ready((member, self.generation, self.attempt))
    }
}

/// A tower [`Discover`](tower::discover::Discover) over any
/// [`Watcher`] whose services come from a `MakeService`: any
/// `Service<Member, Response = S>`, called once per member.
///
/// It follows the watcher like [`WatcherDiscover`](crate::WatcherDiscover)
/// (keyed by [`MemberId`], inserts and removes from the snapshot diff), and:
///
/// - a removed member is handed out as a [`Change::Remove`] at once; an
///   inserted one when its service is made, so a slow connect never holds
///   up other members;
/// - a make still running when its member leaves (or changes again) is
///   dropped, so a service is never inserted for a member that is gone;
/// - a make that fails is logged and tried again while the member is in the
///   set, after 100 ms, doubling up to 10 s
///   ([`retry_backoff`](MakeDiscover::retry_backoff));
/// - the stream's error is the maker's `poll_ready` error: a maker that
///   cannot make anything any more ends discovery.
///
/// ```
/// use std::convert::Infallible;
/// use serversets_core::Member;
/// use serversets_fixedset::FixedSet;
/// use serversets_tower::{MakeDiscover, MemberLoad};
/// use tower::balance::p2c::Balance;
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let set = FixedSet::new(["10.0.0.1:80", "10.0.0.2:80"])?;
/// // Stands in for "connect, then hand out a client".
/// let connect = service_fn(|member: Member| async move {
///     let addr = member.addr().to_string();
///     let client = service_fn(move |()| {
///         let addr = addr.clone();
///         async move { Ok::<_, Infallible>(addr) }
///     });
///     Ok::<_, Infallible>(MemberLoad::new(client, &member))
/// });
/// let balance = Balance::new(MakeDiscover::new(set, connect));
/// let answered_by = balance.oneshot(()).await?;
/// assert!(answered_by.starts_with("10.0.0."));
/// # Ok(()) }
/// ```
pub struct MakeDiscover<M>
where
    M: Service<Member>,
{
    /// Where the changes come from; `None` once the source has closed.
    follower: Option<PollFollower>,
    /// Makes the services.
    make: M,
    /// Members that should be in the balancer, with the generation of the
    /// contents to make. A make or retry whose generation is not this one is
    /// stale and dropped.
    wanted: HashMap<MemberId, u64>,
    /// The next generation number handed out.
    next_generation: u64,
    /// Makes waiting for the maker to be ready, oldest first.
    to_make: VecDeque<(Member, u64, u32)>,
    /// Makes under way.
    making: FuturesUnordered<Making<M::Future>>,
    /// Failed makes waiting to be tried again.
    retrying: FuturesUnordered<Retry>,
    /// Changes ready to hand out.
    out: VecDeque<Change<MemberId, M::Response>>,
    /// Keys the balancer holds.
    live: HashSet<MemberId>,
    /// `live.len()`, shared with fail-fast layers.
    members: MemberCount,
    /// Back-off between attempts for one member: first wait, longest wait.
    retry: (Duration, Duration),
}

impl<M> MakeDiscover<M>
where
    M: Service<Member>,
{
    /// Follows `watcher`, making each member's service with `make`.
    pub fn new(watcher: impl Watcher + 'static, make: M) -> MakeDiscover<M> {
        let watcher: Arc<dyn Watcher> = Arc::new(watcher);
        MakeDiscover {
            follower: Some(PollFollower::new(watcher.clone())),
            make,
            wanted: HashMap::new(),
            next_generation: 0,
            to_make: VecDeque::new(),
            making: FuturesUnordered::new(),
            retrying: FuturesUnordered::new(),
            out: VecDeque::new(),
            live: HashSet::new(),
            members: MemberCount::new(watcher),
            retry: (DEFAULT_RETRY_MIN, DEFAULT_RETRY_MAX),
        }
    }

    /// Sets the back-off between attempts to make one member's service: the
    /// first wait, doubling up to `max` (defaults
    /// [`DEFAULT_RETRY_MIN`], [`DEFAULT_RETRY_MAX`]).
    ///
    /// A member whose connect is refused twice is inserted on the third
    /// attempt, after waiting the first wait and then twice that:
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use serversets_core::Member;
    /// use serversets_fixedset::FixedSet;
    /// use serversets_tower::{MakeDiscover, DEFAULT_RETRY_MIN};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let attempts = Arc::new(AtomicU32::new(0));
    /// let connect = tower::service_fn({
    ///     let attempts = attempts.clone();
    ///     move |member: Member| {
    ///         let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    ///         async move {
    ///             match attempt {
    ///                 0 | 1 => Err("connection refused"),
    ///                 _ => Ok(member.addr().to_string()),
    ///             }
    ///         }
    ///     }
    /// });
    /// let first = DEFAULT_RETRY_MIN / 2; // more eager than the default
    /// let mut discover = MakeDiscover::new(FixedSet::new(["10.0.0.1:80"])?, connect)
    ///     .retry_backoff(first, Duration::from_secs(5));
    ///
    /// let started = Instant::now();
    /// discover.next().await; // the insert, once a make succeeds
    /// assert_eq!(attempts.load(Ordering::SeqCst), 3);
    /// let waited = started.elapsed();
    /// assert!(waited >= first * 3 && waited < first * 4, "{waited:?}");
    /// # Ok(()) }
    /// ```
    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> MakeDiscover<M> {
        self.retry = (first, max.max(first));
        self
    }

    /// The count of members this stream has handed out, for
    /// [`FailFast`](crate::FailFast).
    pub fn member_count(&self) -> MemberCount {
        self.members.clone()
    }

    /// The wait before attempt `attempt + 1` (attempt 0 failed first).
    fn backoff(&self, attempt: u32) -> Duration {
        let (first, max) = self.retry;
        first
            .checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
            .unwrap_or(max)
            .min(max)
    }

    /// Takes in every change the watcher has for us now.
    fn follow(&mut self, cx: &mut Context<'_>) {
        while let Some(follower) = self.follower.as_mut() {
            let changes = match follower.poll_changes(cx) {
                Poll::Ready(Some(changes)) => changes,
                Poll::Ready(None) => {
                    self.follower = None;
                    return;
                }
                Poll::Pending => return,
            };
            for member in changes.insert {
                self.next_generation += 1;
                self.wanted
                    .insert(member.id().clone(), self.next_generation);
                self.to_make.push_back((member, self.next_generation, 0));
            }
            for id in changes.remove {
                self.wanted.remove(&id);
                if self.live.remove(&id) {
                    self.out.push_back(Change::Remove(id));
                }
            }
        }
    }

    fn is_wanted(&self, member: &Member, generation: u64) -> bool {
        self.wanted.get(member.id()) == Some(&generation)
    }
}

// Nothing in a `MakeDiscover` is structurally pinned (the futures are in
// `FuturesUnordered`s, which box them), so it can move freely.
impl<M> Unpin for MakeDiscover<M> where M: Service<Member> {}

impl<M> Stream for MakeDiscover<M>
where
    M: Service<Member>,
    M::Error: fmt::Display,
{
    type Item = Result<Change<MemberId, M::Response>, M::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Each pass may start futures (makes, retries) that must be polled
        // once to register for wake-ups, so go round until a pass does
        // nothing new.
        loop {
            this.follow(cx);
            let mut progress = false;

            // Retries whose back-off is over go back in line.
            while let Poll::Ready(Some((member, generation, attempt))) =
                Pin::new(&mut this.retrying).poll_next(cx)
            {
                if let Some(member) = member.filter(|m| this.is_wanted(m, generation)) {
                    this.to_make.push_back((member, generation, attempt));
                    progress = true;
                }
            }

            // Start every make the maker will take.
            while let Some((member, generation, _)) = this.to_make.front() {
                if !this.is_wanted(member, *generation) {
                    this.to_make.pop_front();
                    continue;
                }
                match this.make.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Pending => break,
                }
                let Some((member, generation, attempt)) = this.to_make.pop_front() else {
                    break;
                };
                let future = this.make.call(member.clone());
                this.making.push(Making {
                    future,
                    member,
                    generation,
                    attempt,
                });
                progress = true;
            }

            // Finished makes become inserts, or retries.
            while let Poll::Ready(Some((member, generation, attempt, outcome))) =
                Pin::new(&mut this.making).poll_next(cx)
            {
                if !this.is_wanted(&member, generation) {
                    continue;
                }
                match outcome {
                    Ok(service) => {
                        this.live.insert(member.id().clone());
                        this.out
                            .push_back(Change::Insert(member.id().clone(), service));
                    }
                    Err(error) => {
                        let wait = this.backoff(attempt);
                        tracing::warn!(
                            member = %member.id(),
                            addr = %member.addr(),
                            %error,
                            attempt = attempt + 1,
                            retry_in = ?wait,
                            "making the member's service failed; trying again",
                        );
                        this.retrying.push(Retry {
                            sleep: Box::pin(tokio::time::sleep(wait)),
                            member: Some(member),
                            generation,
                            attempt: attempt.saturating_add(1),
                        });
                        progress = true;
                    }
                }
            }

            if !progress || !this.out.is_empty() {
                break;
            }
        }

        this.members.set(this.live.len());
        if let Some(change) = this.out.pop_front() {
            return Poll::Ready(Some(Ok(change)));
        }
        let idle = this.to_make.is_empty() && this.making.is_empty() && this.retrying.is_empty();
        if this.follower.is_none() && idle {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl<M> fmt::Debug for MakeDiscover<M>
where
    M: Service<Member>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeDiscover")
            .field("members", &self.live.len())
            .field("wanted", &self.wanted.len())
            .field("making", &self.making.len())
            .field("retrying", &self.retrying.len())
            .field("source_closed", &self.follower.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serversets_core::{HostPort, Publisher};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio::sync::oneshot;

    fn member(id: &str) -> Member {
        Member::builder(id, "h:1".parse::<HostPort>().unwrap()).build()
    }

    fn describe<S: fmt::Debug>(change: &Change<MemberId, S>) -> String {
        match change {
            Change::Insert(k, v) => format!("+{k}={v:?}"),
            Change::Remove(k) => format!("-{k}"),
        }
    }

    /// Ends one make with its outcome.
    type Finish = oneshot::Sender<Result<String, String>>;

    /// A maker whose makes finish when the test says so.
    #[derive(Clone, Default)]
    struct Gate {
        pending: Arc<Mutex<HashMap<String, Finish>>>,
    }

    impl Gate {
        fn finish(&self, id: &str, outcome: Result<&str, &str>) {
            let tx = self
                .pending
                .lock()
                .unwrap()
                .remove(id)
                .expect("a make in flight");
            let _ = tx.send(outcome.map(str::to_string).map_err(str::to_string));
        }

        fn in_flight(&self) -> usize {
            self.pending.lock().unwrap().len()
        }
    }

    impl Service<Member> for Gate {
        type Response = String;
        type Error = String;
        type Future = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, member: Member) -> Self::Future {
            let (tx, rx) = oneshot::channel();
            self.pending
                .lock()
                .unwrap()
                .insert(member.id().to_string(), tx);
            Box::pin(async move { rx.await.unwrap_or_else(|_| Err("dropped".into())) })
        }
    }

    /// Polls once, without waiting.
    fn poll_once<M>(d: &mut MakeDiscover<M>) -> Poll<Option<String>>
    where
        M: Service<Member>,
        M::Error: fmt::Display + fmt::Debug,
        M::Response: fmt::Debug,
    {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        Pin::new(d)
            .poll_next(&mut cx)
            .map(|c| c.map(|c| describe(&c.expect("no maker error"))))
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_is_inserted_once_made_and_a_failed_make_is_retried() {
        let publisher = Publisher::new();
        publisher.publish([member("a")]);
        let gate = Gate::default();
        let mut d = MakeDiscover::new(publisher.feed(), gate.clone());
        assert!(poll_once(&mut d).is_pending());
        assert_eq!(gate.in_flight(), 1);

        gate.finish("a", Err("refused"));
        assert!(poll_once(&mut d).is_pending());
        assert_eq!(gate.in_flight(), 0, "not again before the back-off");
        tokio::time::sleep(DEFAULT_RETRY_MIN).await;
        assert!(poll_once(&mut d).is_pending());
        assert_eq!(gate.in_flight(), 1, "tried again after the back-off");

        gate.finish("a", Ok("client-a"));
        let change = d.next().await.expect("open").expect("no maker error");
        assert_eq!(describe(&change), "+a=\"client-a\"");
        assert_eq!(d.member_count().len(), 1);
    }

    #[tokio::test]
    async fn a_make_for_a_member_that_left_is_dropped() {
        let publisher = Publisher::new();
        publisher.publish([member("a"), member("b")]);
        let gate = Gate::default();
        let mut d = MakeDiscover::new(publisher.feed(), gate.clone());
        assert!(poll_once(&mut d).is_pending());
        gate.finish("b", Ok("client-b"));
        assert_eq!(
            poll_once(&mut d),
            Poll::Ready(Some("+b=\"client-b\"".into()))
        );

        // a leaves while its make runs, b leaves after being inserted.
        publisher.publish([]);
        assert_eq!(poll_once(&mut d), Poll::Ready(Some("-b".into())));
        gate.finish("a", Ok("client-a"));
        assert!(
            poll_once(&mut d).is_pending(),
            "a was inserted after it left"
        );
        assert!(d.member_count().is_empty());

        // Closed, with nothing left to make: the stream ends.
        publisher.close();
        assert_eq!(poll_once(&mut d), Poll::Ready(None));
    }

    #[tokio::test]
    async fn a_maker_that_fails_to_get_ready_ends_discovery_with_its_error() {
        let publisher = Publisher::new();
        publisher.publish([member("a")]);
        let broken = Broken(tower::service_fn(|_: Member| async {
            Ok::<(), String>(())
        }));
        let mut d = MakeDiscover::new(publisher.feed(), broken);
        let err = d
            .next()
            .await
            .expect("an item")
            .expect_err("the maker's error");
        assert_eq!(err, "maker is gone");
    }

    struct Broken<S>(S);

    impl<S: Service<Member, Error = String>> Service<Member> for Broken<S> {
        type Response = S::Response;
        type Error = String;
        type Future = S::Future;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Err("maker is gone".into()))
        }

        fn call(&mut self, member: Member) -> S::Future {
            self.0.call(member)
        }
    }
}

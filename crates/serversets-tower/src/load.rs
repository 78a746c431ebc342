//! [`MemberLoad`]: the load tower's p2c balancer compares, scaled by each
//! member's weight and raised after failures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use serversets_core::balance::{InFlight, InFlightGuard};
use serversets_core::Member;
use tokio::time::Instant;
use tower::load::Load;
use tower::Service;

/// How long a member that just failed a call reads as fully loaded, unless
/// it answers before then.
///
/// ```
/// use std::time::Duration;
/// use serversets_tower::{MemberLoad, DEFAULT_FAILURE_COOLDOWN};
/// use tower::load::Load;
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let refused = service_fn(|()| async { Err::<(), _>("connection refused") });
/// let mut svc = MemberLoad::with_weight(refused, 1.0);
/// assert!(svc.ready().await?.call(()).await.is_err());
/// assert_eq!(svc.load().value(), f64::INFINITY); // p2c takes the other member
/// tokio::time::sleep(DEFAULT_FAILURE_COOLDOWN).await;
/// assert_eq!(svc.load().value(), 1.0); // and then tries this one again
/// # Ok(()) }
/// ```
pub const DEFAULT_FAILURE_COOLDOWN: Duration = Duration::from_secs(1);

/// The load of one member as [`MemberLoad`] reports it: requests in flight
/// plus the one about to be sent, divided by the member's weight; infinite
/// for weight 0 and while the member is cooling down after a failure.
///
/// Lower is better; tower's p2c sends each request to the lower of two
/// members drawn at random.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Score(f64);

impl Score {
    /// The number compared.
    pub fn value(self) -> f64 {
        self.0
    }
}

/// State shared by a member's service and its requests in flight.
#[derive(Debug)]
struct Shared {
    /// Requests sent and not yet answered (or dropped): core's counter,
    /// released by a guard in each response future.
    in_flight: InFlight,
    /// When the failure cool-down ends, in nanoseconds after `epoch`; 0 when
    /// the member is not cooling down.
    failing_until: AtomicU64,
    /// The origin of `failing_until`, so it fits in an atomic. tokio's
    /// clock (the system's, unless a test paused it).
    epoch: Instant,
    /// How long a failure keeps the member at infinite load, in
    /// nanoseconds (0: never). Atomic so the builder method can change it
    /// in place, whatever futures are in flight.
    cooldown: AtomicU64,
}

impl AsRef<InFlight> for Shared {
    fn as_ref(&self) -> &InFlight {
        &self.in_flight
    }
}

impl Shared {
    fn now(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }

    fn failed(&self) {
        let cooldown = self.cooldown.load(Ordering::Relaxed);
        if cooldown == 0 {
            return;
        }
        let until = self.now().saturating_add(cooldown);
        // Never 0, which means "not cooling down".
        self.failing_until.store(until.max(1), Ordering::Relaxed);
    }

    fn answered(&self) {
        // Only write when needed: most answers find nothing to clear, and a
        // load is cheaper than a store to a shared line.
        if self.failing_until.load(Ordering::Relaxed) != 0 {
            self.failing_until.store(0, Ordering::Relaxed);
        }
    }

    fn cooling_down(&self) -> bool {
        let until = self.failing_until.load(Ordering::Relaxed);
        until != 0 && self.now() < until
    }
}

/// A member's service with the load tower's p2c
/// [`Balance`](https://docs.rs/tower/0.5/tower/balance/p2c/struct.Balance.html) uses to choose between two:
/// requests in flight, scaled by the member's weight, and raised for a
/// while after a failure.
///
/// - **In flight:** counted from `call` until its response future finishes
///   or is dropped (core's
///   [`InFlight`](serversets_core::balance::InFlight) guard in the future,
///   so a cancelled request never leaks a count). As with tower's
///   `PendingRequests` and its default `CompleteOnResponse`, a streaming
///   response counts until its head arrives.
/// - **Weight:** [`Member::weight`] (default 1.0, from Finagle `vector_`
///   weights for ZooKeeper members). The load is `(in flight + 1) / weight`:
///   the `+ 1` is the request being placed, so idle members still compare
///   by weight. Weight 0 reads as infinitely loaded: such a member is chosen
///   only when the other member drawn is as bad. This scales load, it does
///   not set exact shares: with p2c, a member of weight 2 among equals gets
///   more than the others but not exactly twice as much.
/// - **Failures:** a call whose future resolves to an error makes the
///   member read as infinitely loaded for a cool-down (default 1 s,
///   [`failure_cooldown`](MemberLoad::failure_cooldown)), or until one of its
///   calls succeeds. With two or more members, p2c then always draws a
///   healthy one, so a killed server costs one failed request per cool-down
///   instead of one in every few. For a tonic `Channel` an error is a
///   transport failure (refused, reset, timed out); gRPC statuses are
///   answers and do not count.
///
/// **A load penalty, not an ejection.** The other serversets balancers
/// eject a member by core's one rule
/// ([`PassiveHealth`](serversets_core::balance::PassiveHealth): 5 failures
/// in a row, out for 10 s, never the last member in service). This is not
/// that rule under another name, and does not use it, because it is only a
/// number p2c compares:
///
/// - it takes nothing out of rotation: p2c still picks a penalised member
///   whenever the other member drawn is no better (two failing members, or
///   a set of one), so there is no last member to protect and no view of
///   the other members is needed;
/// - so it can react to the *first* failure. That is what keeps retries off
///   a dead server: a request retried after a refused connect goes to
///   another member at once, where waiting for 5 failures in a row lets a
///   retry policy of a few attempts land every attempt on the dead server
///   (measured: requests with 3 attempts over 3 members, one killed, then
///   gave up now and then; with the penalty none does);
/// - and it is short and self-correcting: 1 s, ended by the next answer,
///   so a single transient error costs a second of lower preference, not
///   10 s of lost capacity.
///
/// tower's own `PendingRequests` and `PeakEwma` wrappers also work over this
/// crate's discover streams, but cannot be weighted: their metrics keep
/// their numbers private, so no wrapper can divide them.
///
/// ```
/// use std::convert::Infallible;
/// use serversets_core::{HostPort, Member};
/// use serversets_tower::MemberLoad;
/// use tower::load::Load;
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let heavy = Member::builder("m1", HostPort::new("10.0.0.1", 80)?).weight(2.0).build();
/// let svc = service_fn(|()| async { Ok::<_, Infallible>("ok") });
/// let mut svc = MemberLoad::new(svc, &heavy);
/// assert_eq!(svc.load().value(), 0.5); // (0 in flight + 1) / 2
///
/// let pending = svc.ready().await?.call(());
/// assert_eq!(svc.load().value(), 1.0); // (1 + 1) / 2
/// pending.await?;
/// assert_eq!(svc.load().value(), 0.5);
/// # Ok(()) }
/// ```
pub struct MemberLoad<S> {
    /// The member's service.
    inner: S,
    /// In flight and cool-down, shared with the response futures.
    shared: Arc<Shared>,
    /// The member's weight (finite, >= 0).
    weight: f64,
}

impl<S> MemberLoad<S> {
    /// Wraps `service`, weighted by `member`'s [`weight`](Member::weight).
    pub fn new(service: S, member: &Member) -> MemberLoad<S> {
        MemberLoad::with_weight(service, member.weight())
    }

    /// Wraps `service` with an explicit weight (negative or non-finite
    /// weights are read as 0).
    pub fn with_weight(service: S, weight: f64) -> MemberLoad<S> {
        MemberLoad {
            inner: service,
            shared: Arc::new(Shared {
                in_flight: InFlight::default(),
                failing_until: AtomicU64::new(0),
                epoch: Instant::now(),
                cooldown: AtomicU64::new(nanos(DEFAULT_FAILURE_COOLDOWN)),
            }),
            weight: if weight.is_finite() && weight >= 0.0 {
                weight
            } else {
                0.0
            },
        }
    }

    /// Sets how long a failure keeps the member at infinite load
    /// (default [`DEFAULT_FAILURE_COOLDOWN`]; zero turns it off).
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_tower::MemberLoad;
    /// use tower::load::Load;
    /// use tower::{service_fn, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let refused = service_fn(|()| async { Err::<(), _>("connection refused") });
    /// // Failures do not steer p2c away from this member.
    /// let mut svc = MemberLoad::with_weight(refused, 1.0).failure_cooldown(Duration::ZERO);
    /// assert!(svc.ready().await?.call(()).await.is_err());
    /// assert_eq!(svc.load().value(), 1.0);
    /// # Ok(()) }
    /// ```
    pub fn failure_cooldown(self, cooldown: Duration) -> MemberLoad<S> {
        self.shared
            .cooldown
            .store(nanos(cooldown), Ordering::Relaxed);
        self
    }

    /// The member's weight.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// Requests sent through this service and not finished.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.get()
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// A duration in nanoseconds, saturating (u64 nanoseconds last 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<S> Load for MemberLoad<S> {
    type Metric = Score;

    fn load(&self) -> Score {
        if self.weight == 0.0 || self.shared.cooling_down() {
            return Score(f64::INFINITY);
        }
        // usize -> f64 loses precision only past 2^53 requests in flight.
        let placing = self.shared.in_flight.get() as f64 + 1.0;
        Score(placing / self.weight)
    }
}

impl<S, Request> Service<Request> for MemberLoad<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = LoadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> LoadFuture<S::Future> {
        LoadFuture {
            guard: Some(InFlight::enter(self.shared.clone())),
            inner: self.inner.call(request),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for MemberLoad<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberLoad")
            .field("inner", &self.inner)
            .field("weight", &self.weight)
            .field("in_flight", &self.in_flight())
            .field("cooling_down", &self.shared.cooling_down())
            .finish()
    }
}

pin_project! {
    /// The response future of a [`MemberLoad`]: the inner future, counted
    /// in flight until it finishes or is dropped.
    #[derive(Debug)]
    pub struct LoadFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlightGuard<Arc<Shared>>>,
    }
}

impl<F, T, E> Future for LoadFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.inner.poll(cx));
        // Finished: no longer in flight, even if the future is kept.
        if let Some(guard) = this.guard.take() {
            match &outcome {
                Ok(_) => guard.owner().answered(),
                Err(_) => guard.owner().failed(),
            }
        }
        Poll::Ready(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, ServiceExt};

    #[tokio::test]
    async fn a_dropped_request_is_no_longer_in_flight() {
        let svc = service_fn(|()| std::future::pending::<Result<(), Infallible>>());
        let mut svc = MemberLoad::with_weight(svc, 1.0);
        let a = svc.ready().await.unwrap().call(());
        let b = svc.ready().await.unwrap().call(());
        assert_eq!(svc.in_flight(), 2);
        assert_eq!(svc.load(), Score(3.0));
        drop(a);
        drop(b);
        assert_eq!(svc.in_flight(), 0);
    }

    #[tokio::test]
    async fn weight_zero_and_bad_weights_are_never_preferred() {
        for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let svc = MemberLoad::with_weight((), w);
            assert_eq!(svc.weight(), 0.0);
            assert!(svc.load() > MemberLoad::with_weight((), 0.001).load());
        }
    }

    #[tokio::test]
    async fn a_failure_cools_the_member_down_until_it_answers() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let svc = service_fn(move |()| {
            let fail = f.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err("refused")
                } else {
                    Ok(())
                }
            }
        });
        let mut svc = MemberLoad::with_weight(svc, 1.0).failure_cooldown(Duration::from_secs(60));
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        assert_eq!(svc.load().value(), f64::INFINITY);
        fail.store(false, Ordering::SeqCst);
        svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(svc.load().value(), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cooldown_ends_by_itself() {
        let svc = service_fn(|()| async { Err::<(), _>("refused") });
        let mut svc = MemberLoad::with_weight(svc, 1.0).failure_cooldown(Duration::from_millis(20));
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        assert_eq!(svc.load().value(), f64::INFINITY);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(svc.load().value(), 1.0);
    }
}

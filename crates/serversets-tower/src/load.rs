//! [`MemberLoad`]: the load tower's p2c balancer compares, scaled by each
//! member's weight, with core's in-flight counter and its one ejection rule.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use serversets_core::balance::{
    Attempt, Clock, Ejection, HealthReport, InFlight, InFlightGuard, PassiveHealth,
};
use serversets_core::{HostPort, Member};
use tower::load::Load;
use tower::Service;

/// The load of one member as [`MemberLoad`] reports it: requests in flight
/// plus the one about to be sent, divided by the member's weight; infinite
/// for weight 0 and while the member is ejected.
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
    /// Requests sent and not yet answered (or dropped).
    in_flight: InFlight,
    /// Consecutive failures and ejection, by core's one rule.
    health: PassiveHealth,
    /// The clock ejections are timed by.
    clock: Clock,
    /// Where the member serves, for the ejection's log line.
    addr: HostPort,
}

impl AsRef<InFlight> for Shared {
    fn as_ref(&self) -> &InFlight {
        &self.in_flight
    }
}

impl Shared {
    fn is_ejected(&self) -> bool {
        !self.health.is_available(&mut self.clock.lazy_now())
    }
}

/// A member's service with the load tower's p2c
/// [`Balance`](https://docs.rs/tower/0.5/tower/balance/p2c/struct.Balance.html) uses to choose between two:
/// requests in flight, scaled by the member's weight, and infinite while
/// the member is ejected after consecutive failures.
///
/// - **In flight:** counted from `call` until its response future finishes
///   or is dropped (core's [`InFlight`] guard in the future, so a cancelled
///   request never leaks a count). As with tower's `PendingRequests` and its
///   default `CompleteOnResponse`, a streaming response counts until its
///   head arrives.
/// - **Weight:** [`Member::weight`] (default 1.0, from Finagle `vector_`
///   weights for ZooKeeper members). The load is `(in flight + 1) / weight`:
///   the `+ 1` is the request being placed, so idle members still compare
///   by weight. Weight 0 reads as infinitely loaded: such a member is chosen
///   only when the other member drawn is as bad. This scales load, it does
///   not set exact shares: with p2c, a member of weight 2 among equals gets
///   more than the others but not exactly twice as much.
/// - **Ejection:** core's one rule ([`PassiveHealth`]), with the defaults of
///   every serversets balancer: after
///   [`DEFAULT_EJECT_AFTER`](serversets_core::balance::DEFAULT_EJECT_AFTER)
///   (5) consecutive calls whose futures resolve to an error, the member is
///   ejected for
///   [`DEFAULT_EJECT_FOR`](serversets_core::balance::DEFAULT_EJECT_FOR)
///   (10 s) ([`eject_after`](MemberLoad::eject_after),
///   [`eject_for`](MemberLoad::eject_for)), logged at warn level. While
///   ejected it reads as infinitely loaded, so p2c, which draws two
///   distinct members, takes the other one. Once the cool-down is over live
///   traffic probes it: one more failure ejects it again, an answer to a
///   request sent since puts it back at once. So a killed server costs a
///   few failed requests, then one per cool-down. For a tonic `Channel` an
///   error is a transport failure (refused, reset, timed out); gRPC statuses
///   are answers and do not count.
///
/// Ejection here only ever raises a load, which is how core's rule that the
/// last member in service is never ejected holds: a `MemberLoad` sees its
/// own member only, but p2c still picks among ejected members when no other
/// is left (a set of one is always picked), so an ejection never leaves the
/// balancer with nothing to send to.
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
    /// In flight and health, shared with the response futures.
    shared: Arc<Shared>,
    /// The member's weight (finite, >= 0, as [`Member`] keeps it).
    weight: f64,
    /// When to eject the member, and for how long.
    ejection: Ejection,
}

impl<S> MemberLoad<S> {
    /// Wraps `member`'s `service`, weighted by its
    /// [`weight`](Member::weight).
    pub fn new(service: S, member: &Member) -> MemberLoad<S> {
        MemberLoad {
            inner: service,
            shared: Arc::new(Shared {
                in_flight: InFlight::default(),
                health: PassiveHealth::default(),
                clock: Clock::new(),
                addr: member.addr().clone(),
            }),
            weight: member.weight(),
            ejection: Ejection::default(),
        }
    }

    /// Ejects the member after `failures` consecutive failed calls (default
    /// [`DEFAULT_EJECT_AFTER`](serversets_core::balance::DEFAULT_EJECT_AFTER);
    /// 0 never ejects).
    ///
    /// ```
    /// use serversets_core::{HostPort, Member};
    /// use serversets_tower::MemberLoad;
    /// use tower::load::Load;
    /// use tower::{service_fn, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let member = Member::from_addr("10.0.0.1:80".parse::<HostPort>()?);
    /// let refused = service_fn(|()| async { Err::<(), _>("connection refused") });
    /// // Out of rotation at the second failure in a row, not the fifth.
    /// let mut svc = MemberLoad::new(refused, &member).eject_after(2);
    /// for _ in 0..2 {
    ///     assert!(svc.ready().await?.call(()).await.is_err());
    /// }
    /// assert!(svc.health().is_ejected());
    /// assert_eq!(svc.load().value(), f64::INFINITY);
    /// # Ok(()) }
    /// ```
    pub fn eject_after(mut self, failures: u32) -> MemberLoad<S> {
        self.ejection = self.ejection.with_after(failures);
        self
    }

    /// How long an ejected member reads as infinitely loaded before live
    /// traffic probes it again (default
    /// [`DEFAULT_EJECT_FOR`](serversets_core::balance::DEFAULT_EJECT_FOR)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_core::{HostPort, Member};
    /// use serversets_tower::MemberLoad;
    /// use tower::{service_fn, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let member = Member::from_addr("10.0.0.1:80".parse::<HostPort>()?);
    /// let refused = service_fn(|()| async { Err::<(), _>("connection refused") });
    /// let mut svc = MemberLoad::new(refused, &member)
    ///     .eject_after(1)
    ///     .eject_for(Duration::from_secs(60));
    /// assert!(svc.ready().await?.call(()).await.is_err());
    /// let ejected_for = svc.health().ejected_for.expect("ejected");
    /// assert!(ejected_for > Duration::from_secs(50) && ejected_for <= Duration::from_secs(60));
    /// # Ok(()) }
    /// ```
    pub fn eject_for(mut self, cooldown: Duration) -> MemberLoad<S> {
        self.ejection = self.ejection.with_cooldown(cooldown);
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

    /// The member's passive health now: consecutive failures, the rest of
    /// an ejection, how many ejections so far.
    pub fn health(&self) -> HealthReport {
        self.shared.health.report(&self.shared.clock)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Load for MemberLoad<S> {
    type Metric = Score;

    fn load(&self) -> Score {
        if self.weight == 0.0 || self.shared.is_ejected() {
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
            attempt: self.shared.health.attempt(),
            ejection: self.ejection,
            guard: Some(InFlight::enter(self.shared.clone())),
            inner: self.inner.call(request),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for MemberLoad<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberLoad")
            .field("inner", &self.inner)
            .field("addr", &self.shared.addr)
            .field("weight", &self.weight)
            .field("in_flight", &self.in_flight())
            .field("ejected", &self.shared.is_ejected())
            .finish()
    }
}

pin_project! {
    /// The response future of a [`MemberLoad`]: the inner future, counted
    /// in flight until it finishes or is dropped; its outcome goes to the
    /// member's passive health.
    #[derive(Debug)]
    pub struct LoadFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlightGuard<Arc<Shared>>>,
        attempt: Attempt,
        ejection: Ejection,
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
            let shared = guard.owner();
            match &outcome {
                Ok(_) => {
                    shared.health.record_answer(*this.attempt);
                }
                Err(_) => {
                    // p2c, not this member, keeps the last one in rotation
                    // (see `MemberLoad`): as far as this member knows,
                    // others are available.
                    shared.health.record_failure(
                        &shared.addr,
                        *this.ejection,
                        &shared.clock,
                        |_| true,
                    );
                }
            }
        }
        Poll::Ready(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets_core::balance::DEFAULT_EJECT_AFTER;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower::{service_fn, ServiceExt};

    fn member(weight: f64) -> Member {
        Member::from_addr("10.0.0.1:80".parse::<HostPort>().unwrap()).with_weight(weight)
    }

    /// A service that fails while `fail` is set.
    fn flaky(fail: &Arc<AtomicBool>) -> impl Service<(), Response = (), Error = &'static str> {
        let fail = fail.clone();
        service_fn(move |()| {
            let fail = fail.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err("refused")
                } else {
                    Ok(())
                }
            }
        })
    }

    #[tokio::test]
    async fn a_dropped_request_is_no_longer_in_flight() {
        let svc = service_fn(|()| std::future::pending::<Result<(), Infallible>>());
        let mut svc = MemberLoad::new(svc, &member(1.0));
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
            let svc = MemberLoad::new((), &member(w));
            assert_eq!(svc.weight(), 0.0);
            assert!(svc.load() > MemberLoad::new((), &member(0.001)).load());
        }
    }

    #[tokio::test]
    async fn consecutive_failures_eject_the_member_until_it_answers() {
        let fail = Arc::new(AtomicBool::new(true));
        let mut svc = MemberLoad::new(flaky(&fail), &member(1.0));
        for _ in 1..DEFAULT_EJECT_AFTER {
            assert!(svc.ready().await.unwrap().call(()).await.is_err());
            assert_eq!(svc.load().value(), 1.0, "ejected too early");
        }
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        assert_eq!(svc.load().value(), f64::INFINITY);
        assert_eq!(svc.health().ejections, 1);
        fail.store(false, Ordering::SeqCst);
        svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(svc.load().value(), 1.0);
        assert_eq!(svc.health().consecutive_failures, 0);
    }

    #[tokio::test]
    async fn an_answer_in_between_resets_the_count() {
        let fail = Arc::new(AtomicBool::new(true));
        let mut svc = MemberLoad::new(flaky(&fail), &member(1.0)).eject_after(2);
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        fail.store(false, Ordering::SeqCst);
        svc.ready().await.unwrap().call(()).await.unwrap();
        fail.store(true, Ordering::SeqCst);
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        assert_eq!(svc.load().value(), 1.0, "the failures were not consecutive");
    }

    // Real time: core's ejection clock is `std::time::Instant`, which
    // tokio's paused time does not move. Polled, not slept, so no fixed
    // wait decides the outcome.
    #[tokio::test]
    async fn the_ejection_ends_by_itself() {
        let fail = Arc::new(AtomicBool::new(true));
        let mut svc = MemberLoad::new(flaky(&fail), &member(1.0))
            .eject_after(1)
            .eject_for(Duration::from_millis(300));
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        assert_eq!(svc.health().ejections, 1);
        assert_eq!(svc.load().value(), f64::INFINITY);
        testkit::eventually(Duration::from_secs(10), "the cool-down to end", || async {
            svc.load().value() == 1.0
        })
        .await;
    }

    #[tokio::test]
    async fn eject_after_zero_never_ejects() {
        let fail = Arc::new(AtomicBool::new(true));
        let mut svc = MemberLoad::new(flaky(&fail), &member(1.0)).eject_after(0);
        for _ in 0..2 * DEFAULT_EJECT_AFTER {
            assert!(svc.ready().await.unwrap().call(()).await.is_err());
        }
        assert_eq!(svc.load().value(), 1.0);
        assert_eq!(svc.health().ejections, 0);
    }
}

//! [`FailFast`]: a request to a balancer with no members fails with
//! [`NoMembers`] after a bounded wait, instead of waiting forever.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{BoxError, Layer, Service};

use crate::error::{Error, NoMembers};
use crate::member_count::MemberCount;

/// How a [`NoMembers`] is reported: boxed as is, or wrapped (in a
/// `tonic::Status` with code `Unavailable`, see
/// `FailFastLayer::grpc_unavailable`, feature `tonic`).
type Report = fn(NoMembers) -> BoxError;

fn boxed(e: NoMembers) -> BoxError {
    Box::new(e)
}

/// Wraps services in [`FailFast`]; see there.
///
/// ```
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_tower::{FailFastLayer, WatcherDiscover};
///
/// let discover = WatcherDiscover::new(FixedSet::empty(), |m: &serversets_core::Member| {
///     serversets_tower::MemberLoad::new(tower::service_fn(|()| async { Ok::<_, std::io::Error>(()) }), m)
/// });
/// let layer = FailFastLayer::new(discover.member_count(), Duration::from_millis(500));
/// let service = tower::ServiceBuilder::new()
///     .layer(layer)
///     .service(tower::balance::p2c::Balance::new(discover));
/// # drop(service);
/// ```
#[derive(Clone)]
pub struct FailFastLayer {
    members: MemberCount,
    wait: Duration,
    report: Report,
}

impl FailFastLayer {
    /// Fails requests with [`NoMembers`] once `members` has been empty
    /// for `wait`.
    pub fn new(members: MemberCount, wait: Duration) -> FailFastLayer {
        FailFastLayer {
            members,
            wait,
            report: boxed,
        }
    }

    /// Reports [`NoMembers`] as a `tonic::Status` with code `Unavailable`
    /// (whose source is the `NoMembers`), so a generated tonic client
    /// returns that status and retry policies for `Unavailable` apply
    /// (feature `tonic`). Without it a tonic client sees code `Unknown`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_fixedset::FixedSet;
    /// use serversets_tower::{FailFastLayer, NoMembers, WatcherDiscover};
    /// use tower::balance::p2c::Balance;
    /// use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let discover = WatcherDiscover::new(FixedSet::empty(), |m: &serversets_core::Member| {
    ///     serversets_tower::MemberLoad::new(tower::service_fn(|()| async { Ok::<_, std::io::Error>(()) }), m)
    /// });
    /// let layer = FailFastLayer::new(discover.member_count(), Duration::ZERO).grpc_unavailable();
    /// let err = layer.layer(Balance::new(discover)).oneshot(()).await.unwrap_err();
    /// assert!(err.is_no_servers());
    /// let status = tonic::Status::from_error(Box::new(err));
    /// assert_eq!(status.code(), tonic::Code::Unavailable);
    /// assert!(NoMembers::find(&status).is_some());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tonic")]
    pub fn grpc_unavailable(mut self) -> FailFastLayer {
        self.report = crate::tonic::unavailable;
        self
    }
}

impl<S> Layer<S> for FailFastLayer {
    type Service = FailFast<S>;

    fn layer(&self, inner: S) -> FailFast<S> {
        FailFast {
            inner,
            members: self.members.clone(),
            wait: self.wait,
            report: self.report,
            timer: None,
        }
    }
}

impl fmt::Debug for FailFastLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailFastLayer")
            .field("members", &self.members.len())
            .field("wait", &self.wait)
            .finish()
    }
}

/// Fails requests with [`NoMembers`] when the balancer behind it has had no
/// member for a configurable wait.
///
/// tower's p2c `Balance` stays `Pending` forever when it holds no ready
/// service, and a tonic `Channel` (a buffer in front of such a balancer)
/// queues requests forever. `FailFast` looks at the [`MemberCount`] of
/// whatever feeds the balancer ([`WatcherDiscover::member_count`],
/// [`MakeDiscover::member_count`], the tonic helper's `ChannelSync`), in
/// both places a request can wait:
///
/// - **`poll_ready`**, for a balancer used directly: while the inner
///   service is not ready and there are no members, a timer runs; when it
///   fires with still no member, `poll_ready` returns the error. Put
///   `FailFast` *outside* any `Buffer`: a buffer's worker treats a
///   `poll_ready` error as fatal.
/// - **the response future**, for a buffered balancer or a tonic `Channel`
///   (ready at once, waiting inside): a request made while there are no
///   members fails after the wait if there are still none, and the queued
///   request is dropped (tower's and tonic's buffers skip requests whose
///   caller has gone). As soon as a member arrives the request just waits
///   for its answer.
///
/// A request placed while there were servers is not guarded: should the
/// last one leave before the balancer routes it (a window of microseconds),
/// it waits for a server as any request would. Bound requests with a
/// timeout as well (tower's `Timeout`, tonic's `Endpoint::timeout`).
///
/// While there are members it costs, per request, a look at
/// [`MemberCount::no_servers`] (an atomic load and a watcher snapshot) and no
/// timer. A wait of zero fails at once. Errors are an [`Error`]:
/// [`Error::is_no_servers`], or the inner service's error as its source.
/// The timer is tokio's, so it needs a runtime with time enabled.
///
/// [`WatcherDiscover::member_count`]: crate::WatcherDiscover::member_count
/// [`MakeDiscover::member_count`]: crate::MakeDiscover::member_count
///
/// ```
/// use std::time::Duration;
/// use serversets_core::Member;
/// use serversets_fixedset::FixedSet;
/// use serversets_tower::{FailFast, MemberLoad, NoMembers, WatcherDiscover};
/// use tower::balance::p2c::Balance;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let set = FixedSet::empty();
/// let discover = WatcherDiscover::new(set, |m: &Member| {
///     MemberLoad::new(tower::service_fn(|()| async { Ok::<_, std::io::Error>(()) }), m)
/// });
/// let members = discover.member_count();
/// let service = FailFast::new(Balance::new(discover), members, Duration::from_millis(100));
/// let err = service.oneshot(()).await.unwrap_err();
/// assert!(err.is_no_servers());
/// assert_eq!(err.no_servers().map(NoMembers::waited), Some(Duration::from_millis(100)));
/// # Ok(()) }
/// ```
pub struct FailFast<S> {
    /// The balancer (or anything in front of one).
    inner: S,
    /// How many members the balancer has.
    members: MemberCount,
    /// How long a request may wait for a first member.
    wait: Duration,
    /// Turns a `NoMembers` into the error returned.
    report: Report,
    /// Runs while `poll_ready` waits with no members.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> FailFast<S> {
    /// Wraps `inner`, failing requests once `members` has been empty for
    /// `wait`.
    pub fn new(inner: S, members: MemberCount, wait: Duration) -> FailFast<S> {
        FailFastLayer::new(members, wait).layer(inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The member count this layer looks at.
    pub fn member_count(&self) -> &MemberCount {
        &self.members
    }

    fn error(&self) -> Error {
        Error::reported_no_servers((self.report)(NoMembers::after(self.wait)))
    }
}

impl<S: Clone> Clone for FailFast<S> {
    fn clone(&self) -> Self {
        FailFast {
            inner: self.inner.clone(),
            members: self.members.clone(),
            wait: self.wait,
            report: self.report,
            // A clone has not been waiting.
            timer: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for FailFast<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailFast")
            .field("inner", &self.inner)
            .field("members", &self.members.len())
            .field("wait", &self.wait)
            .field("waiting", &self.timer.is_some())
            .finish()
    }
}

impl<S, Request> Service<Request> for FailFast<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = FailFastFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(ready) => {
                self.timer = None;
                Poll::Ready(ready.map_err(|e| Error::from_service(e.into())))
            }
            Poll::Pending if !self.members.no_servers() => {
                // Members exist and are getting ready: not ours to judge.
                self.timer = None;
                Poll::Pending
            }
            Poll::Pending if self.wait.is_zero() => Poll::Ready(Err(self.error())),
            Poll::Pending => {
                let wait = self.wait;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.timer = None;
                        Poll::Ready(Err(self.error()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn call(&mut self, request: Request) -> FailFastFuture<S::Future> {
        if !self.members.no_servers() {
            return FailFastFuture::new(State::Plain {
                inner: self.inner.call(request),
            });
        }
        if self.wait.is_zero() {
            // Not sent at all: nobody could answer it.
            return FailFastFuture::new(State::Failed {
                error: Some(self.error()),
            });
        }
        FailFastFuture::new(State::Guarded {
            inner: self.inner.call(request),
            timer: Box::pin(tokio::time::sleep(self.wait)),
            members: Some(self.members.clone()),
            error: Some(self.error()),
        })
    }
}

pin_project! {
    /// The response future of a [`FailFast`].
    pub struct FailFastFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = Projection]
    enum State<F> {
        // Sent while there were members: just the inner future.
        Plain {
            #[pin]
            inner: F,
        },
        // Sent while there were none: fails if there still are none when
        // the timer fires.
        Guarded {
            #[pin]
            inner: F,
            timer: Pin<Box<Sleep>>,
            // `None` once a member arrived: from then on, wait for the
            // answer however long it takes.
            members: Option<MemberCount>,
            error: Option<Error>,
        },
        // Failed before sending (a zero wait with no members).
        Failed {
            error: Option<Error>,
        },
    }
}

impl<F> FailFastFuture<F> {
    fn new(state: State<F>) -> FailFastFuture<F> {
        FailFastFuture { state }
    }
}

impl<F, T, E> Future for FailFastFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Projection::Plain { inner } => {
                inner.poll(cx).map_err(|e| Error::from_service(e.into()))
            }
            Projection::Guarded {
                inner,
                timer,
                members,
                error,
            } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map_err(|e| Error::from_service(e.into())));
                }
                if members.as_ref().is_some_and(|m| !m.no_servers()) {
                    *members = None;
                }
                if members.is_none() {
                    return Poll::Pending;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    // A member may have arrived since the look above.
                    Poll::Ready(()) if members.as_ref().is_some_and(|m| !m.no_servers()) => {
                        *members = None;
                        Poll::Pending
                    }
                    Poll::Ready(()) => Poll::Ready(Err(take_error(error))),
                }
            }
            Projection::Failed { error } => Poll::Ready(Err(take_error(error))),
        }
    }
}

/// The prepared error; polled again after completion, a plain one.
fn take_error(error: &mut Option<Error>) -> Error {
    error
        .take()
        .unwrap_or_else(|| Error::no_servers_after(Duration::ZERO))
}

impl<F> fmt::Debug for FailFastFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Plain { .. } => "plain",
            State::Guarded { .. } => "guarded",
            State::Failed { .. } => "failed",
        };
        f.debug_tuple("FailFastFuture").field(&state).finish()
    }
}

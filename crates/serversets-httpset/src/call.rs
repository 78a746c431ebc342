//! One request's life: pick a member, send, judge the outcome, retry.
//!
//! Written as a plain state machine rather than an `async fn` so the future
//! needs no allocation of its own and adds only one poll layer over
//! hyper-util's (measured: the boxed `async fn` cost ~10% more CPU per
//! request); every field is `Unpin`, so no unsafe pinning is needed.
//! The rare slow path (waiting for a first member) is an `async fn`, boxed
//! only when taken.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};

use serversets_core::balance::{self, InFlight, InFlightGuard};
use serversets_core::HostPort;

use crate::body::{BodySource, SendBody};
use crate::deadline::{Timer, WithDeadline};
use crate::inner::Inner;
use crate::metrics::Failure;
use crate::table::MemberSlot;
use crate::Error;

/// The future of a request sent through an [`HttpSet`](crate::HttpSet):
/// resolves to the response once its head has arrived. `Send` and `Unpin`,
/// so it can be spawned or stored freely.
///
/// ```
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{HttpSet, ResponseFuture};
///
/// fn assert_send_unpin<T: Send + Unpin>(_: &T) {}
/// let set = HttpSet::new(FixedSet::empty());
/// let future: ResponseFuture = set.request(http::Request::new(Empty::<Bytes>::new()));
/// assert_send_unpin(&future);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<C = HttpConnector> {
    state: State<C>,
    /// The overall request timeout, if any.
    timer: Timer,
}

// Boxing the running call was measured slower (an allocation per request)
// than carrying it inline; the failed state is rare and short-lived.
#[allow(clippy::large_enum_variant)]
enum State<C> {
    /// Failed before starting; the error is handed out on first poll.
    Failed(Option<Error>),
    Running(Call<C>),
}

/// Everything a request needs across attempts.
struct Call<C> {
    set: Arc<Inner<C>>,
    /// The caller's head, URI taken out (only its path is kept).
    head: Parts,
    path: PathAndQuery,
    body: BodySource,
    /// The body for the retry `judge` decided on, taken at the decision.
    retry_body: Option<SendBody>,
    idempotent: bool,
    attempts: u32,
    previous: Option<Arc<MemberSlot<C>>>,
    /// The latest member an attempt may have reached (sent, then timed
    /// out, failed or was answered with a retry status): once set, a final
    /// connect failure no longer means "nothing was sent".
    reached: Option<HostPort>,
    step: Step<C>,
}

type Waiting<C> = Pin<Box<dyn Future<Output = Result<Arc<MemberSlot<C>>, Error>> + Send>>;

enum Step<C> {
    Pick,
    Waiting(Waiting<C>),
    Sending(Attempt<C>),
    Finished,
}

/// One attempt in flight; counts as in flight on its member until
/// dropped (the guard holds the member).
struct Attempt<C> {
    member: InFlightGuard<Arc<MemberSlot<C>>>,
    /// The member's ejection epoch when the attempt was sent.
    epoch: balance::Attempt,
    fut: WithDeadline<hyper_util::client::legacy::ResponseFuture>,
    /// When it was sent, for `serversets_http_attempt_seconds`.
    sent: Instant,
    /// `http_attempt{set,endpoint,attempt,method}` at debug level (`endpoint`
    /// is the member's address: the published field name), entered
    /// while the attempt is polled (disabled, it costs a level check).
    span: tracing::Span,
}

/// What one attempt came to.
enum Outcome {
    Answered(Response<Incoming>),
    Failed(hyper_util::client::legacy::Error),
    TimedOut,
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl<C> ResponseFuture<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// Starts a request through `set`.
    pub(crate) fn new<B>(set: Arc<Inner<C>>, req: Request<B>) -> ResponseFuture<C>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let config = set.config();
        let timer = Timer::new(config.request_timeout.is_some());
        let (mut head, body) = req.into_parts();
        let idempotent = is_idempotent(&head.method);
        let record = (idempotent && config.retries > 0 && config.replay_limit > 0)
            .then_some(config.replay_limit);
        let body = BodySource::new(body, record);
        let path = std::mem::take(&mut head.uri)
            .into_parts()
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let call = Call {
            set,
            head,
            path,
            body,
            retry_body: None,
            idempotent,
            attempts: 0,
            previous: None,
            reached: None,
            step: Step::Pick,
        };
        ResponseFuture {
            state: State::Running(call),
            timer,
        }
    }
}

impl<C> ResponseFuture<C> {
    /// A future that fails at once.
    pub(crate) fn failed(error: Error) -> ResponseFuture<C> {
        ResponseFuture {
            state: State::Failed(Some(error)),
            timer: Timer::new(false),
        }
    }
}

impl<C> Future for ResponseFuture<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    type Output = Result<Response<Incoming>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let call = match &mut this.state {
            // A second poll after completion never resolves again.
            State::Failed(error) => {
                return error.take().map_or(Poll::Pending, |e| Poll::Ready(Err(e)))
            }
            State::Running(call) => call,
        };
        if let Poll::Ready(out) = call.poll(cx) {
            return Poll::Ready(out);
        }
        if let Step::Finished = call.step {
            return Poll::Pending; // polled again after completion
        }
        match call.set.config().request_timeout {
            Some(after) if this.timer.poll_expired(after, cx) => {
                // Dropping the attempt cancels it and releases its member.
                call.step = Step::Finished;
                let timeout = Err(Error::Timeout { addr: None, after });
                call.set.metrics().finished(&timeout);
                Poll::Ready(timeout)
            }
            _ => Poll::Pending,
        }
    }
}

impl<C> std::fmt::Debug for ResponseFuture<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        if let State::Running(call) = &self.state {
            d.field("path", &call.path)
                .field("attempts", &call.attempts);
        }
        d.finish_non_exhaustive()
    }
}

impl<C> Call<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Response<Incoming>, Error>> {
        loop {
            match &mut self.step {
                Step::Pick => {
                    self.set.ensure_follower();
                    match self.set.select_now(self.previous.as_ref()) {
                        Some(member) => {
                            if let Err(e) = self.start(member) {
                                return self.finish(Err(e));
                            }
                        }
                        None if self.set.config().wait_for_members.is_some() => {
                            let wait =
                                Inner::wait_for_member(self.set.clone(), self.previous.clone());
                            self.step = Step::Waiting(Box::pin(wait));
                        }
                        None => {
                            return self.finish(Err(Error::NoMembers {
                                waited: Duration::ZERO,
                            }))
                        }
                    }
                }
                Step::Waiting(wait) => {
                    let started = match ready!(wait.as_mut().poll(cx)) {
                        Ok(member) => self.start(member),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = started {
                        return self.finish(Err(e));
                    }
                }
                Step::Sending(attempt) => {
                    let limit = self.set.config().attempt_timeout.unwrap_or_default();
                    let polled = {
                        let _entered = attempt.span.enter();
                        attempt.fut.poll_within(limit, cx)
                    };
                    let outcome = match ready!(polled) {
                        Some(Ok(resp)) => Outcome::Answered(resp),
                        Some(Err(e)) => Outcome::Failed(e),
                        None => Outcome::TimedOut,
                    };
                    let Step::Sending(attempt) = std::mem::replace(&mut self.step, Step::Pick)
                    else {
                        // We matched Sending just above; nothing else can be here.
                        return Poll::Pending;
                    };
                    // The verdict's events (retries, ejections) belong to
                    // the attempt's span too.
                    let span = attempt.span.clone();
                    let judged = span.in_scope(|| self.judge(attempt, outcome));
                    if let Some(result) = judged {
                        return self.finish(result);
                    }
                }
                Step::Finished => return Poll::Pending,
            }
        }
    }

    fn finish(
        &mut self,
        result: Result<Response<Incoming>, Error>,
    ) -> Poll<Result<Response<Incoming>, Error>> {
        self.step = Step::Finished;
        self.set.metrics().finished(&result);
        Poll::Ready(result)
    }

    /// Sends the next attempt to `member`, with the body `judge` took for it
    /// (a retry) or a fresh one (the first attempt).
    fn start(&mut self, member: Arc<MemberSlot<C>>) -> Result<(), Error> {
        self.attempts += 1;
        // Only the first attempt comes here without a body: retries are
        // chosen only once `judge` holds theirs. The error is a safe answer
        // should that ever change.
        let body = match self.retry_body.take() {
            Some(body) => body,
            None => self.body.next().ok_or(Error::NoMembers {
                waited: Duration::ZERO,
            })?,
        };
        let config = self.set.config();
        let req =
            retarget(&self.head, &config.scheme, &member, &self.path, body).map_err(|source| {
                Error::InvalidUri {
                    uri: self.path.to_string(),
                    source,
                }
            })?;
        let span = tracing::debug_span!(
            "http_attempt",
            set = %self.set.metrics().name,
            endpoint = %member.addr,
            attempt = self.attempts,
            method = %self.head.method,
        );
        let epoch = member.health.attempt();
        member.metrics.attempts.increment(1);
        let fut = WithDeadline::new(member.client.request(req), config.attempt_timeout.is_some());
        self.step = Step::Sending(Attempt {
            member: InFlight::enter(member),
            epoch,
            fut,
            sent: Instant::now(),
            span,
        });
        Ok(())
    }

    /// Decides what an attempt's outcome means: `Some` to return it, `None`
    /// to retry (with `self.previous` set to the member to avoid, and
    /// `self.retry_body` holding the body for the retry).
    fn judge(
        &mut self,
        attempt: Attempt<C>,
        outcome: Outcome,
    ) -> Option<Result<Response<Incoming>, Error>> {
        let config = self.set.config();
        let member = attempt.member.owner();
        let more = self.attempts <= config.retries;
        let late_retries = self.idempotent && config.retry_idempotent;
        let n = self.attempts;
        // The body is taken for the retry here, at the decision, not when
        // the retry starts: from now on the abandoned attempt (whose body
        // hyper may still hold) can no longer take it.
        let body = &self.body;
        let slot = &mut self.retry_body;
        let mut retry_with_body = |wanted: bool| {
            wanted && {
                *slot = body.next();
                slot.is_some()
            }
        };
        match outcome {
            Outcome::Answered(resp) => {
                member.answered_over(resp.version());
                member
                    .metrics
                    .latency
                    .record(attempt.sent.elapsed().as_secs_f64());
                self.set.answered(member, attempt.epoch);
                let status = resp.status();
                if !retry_with_body(
                    self.idempotent && more && config.retry_statuses.contains(&status),
                ) {
                    return Some(Ok(resp));
                }
                tracing::debug!(member = %member.addr, %status, attempt = n, "retrying on status");
                self.reached = Some(member.addr.clone());
            }
            Outcome::TimedOut => {
                member.metrics.failed(Failure::Timeout);
                self.set.failed(member);
                if !retry_with_body(late_retries && more) {
                    return Some(Err(Error::Timeout {
                        addr: Some(member.addr.clone()),
                        after: config.attempt_timeout.unwrap_or_default(),
                    }));
                }
                tracing::debug!(member = %member.addr, attempt = n, "attempt timed out; retrying");
                self.reached = Some(member.addr.clone());
            }
            Outcome::Failed(e) if e.is_connect() => {
                member.metrics.failed(Failure::Connect);
                self.set.failed(member);
                if !retry_with_body(more) {
                    // The error covers the whole request, not only this
                    // attempt: an earlier one may have been seen.
                    return Some(Err(match self.reached.take() {
                        None => Error::Connect {
                            addr: member.addr.clone(),
                            attempts: n,
                            source: e,
                        },
                        Some(reached) => Error::ConnectAfterSent {
                            addr: member.addr.clone(),
                            attempts: n,
                            reached,
                            source: e,
                        },
                    }));
                }
                tracing::debug!(member = %member.addr, attempt = n, error = %e, "connect failed; retrying");
            }
            Outcome::Failed(e) => {
                member.metrics.failed(Failure::Request);
                if !retry_with_body(late_retries && more) {
                    return Some(Err(Error::Request {
                        addr: member.addr.clone(),
                        attempts: n,
                        source: e,
                    }));
                }
                tracing::debug!(member = %member.addr, attempt = n, error = %e, "request failed; retrying");
                self.reached = Some(member.addr.clone());
            }
        }
        member.metrics.retries.increment(1);
        self.previous = Some(member.clone());
        None
    }
}

/// Header names from which a request's map may be near `HeaderMap`'s size
/// limit (it cannot grow past 24,576 names); far above any real request.
const CROWDED_HEADERS: usize = 1 << 14;

/// A copy of the caller's head aimed at one member, with the member's
/// `Host` unless the caller set one or the member speaks HTTP/2 (see
/// [`MemberSlot::host_header`]).
fn retarget<C>(
    head: &Parts,
    scheme: &Scheme,
    member: &MemberSlot<C>,
    path: &PathAndQuery,
    body: SendBody,
) -> Result<Request<SendBody>, http::Error> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(scheme.clone());
    uri.authority = Some(member.authority.clone());
    uri.path_and_query = Some(path.clone());
    let mut head = head.clone();
    head.uri = Uri::from_parts(uri)?;
    // A map this crowded gets its `Host` here whatever the protocol: should
    // it be too full to take one more header, that is an error for this
    // request, where hyper-util's own insert would panic.
    let crowded = head.headers.keys_len() >= CROWDED_HEADERS;
    let host = member.host_header().or(crowded.then_some(&member.host));
    if let Some(host) = host {
        // `try_entry`: a header map already at its size limit is an error
        // for this request, not a panic.
        head.headers
            .try_entry(http::header::HOST)?
            .or_try_insert_with(|| host.clone())?;
    }
    Ok(Request::from_parts(head, body))
}

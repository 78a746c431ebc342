//! [`tower::Service`] for [`HttpSet`], so timeouts, rate limits, concurrency
//! limits and the like compose as layers.

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::Connect;

use crate::{Error, HttpSet, ResponseFuture};

/// Always ready: selection happens per call, over the set as it is then, and
/// back-pressure is left to layers such as `tower::limit`.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{Error, HttpSet};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let set = HttpSet::new(FixedSet::empty());
/// let svc = ServiceBuilder::new()
///     .timeout(Duration::from_secs(1))
///     .service(set);
/// let req = http::Request::get("/").body(Empty::<Bytes>::new()).unwrap();
/// let err = svc.oneshot(req).await.unwrap_err();
/// assert!(matches!(err.downcast_ref::<Error>(), Some(Error::NoMembers { .. })));
/// # });
/// ```
impl<C, B> tower::Service<Request<B>> for HttpSet<C>
where
    C: Connect + Clone + Send + Sync + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Incoming>;
    type Error = Error;
    type Future = ResponseFuture<C>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture<C> {
        self.request(req)
    }
}

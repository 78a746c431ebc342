//! The public handle, [`HttpSet`]: what a caller builds, clones and sends
//! requests through.
//!
//! It only holds the shared state (`inner`: the member table and the
//! choice of a member) and starts requests (`call`: one request's
//! attempts), so the API reads on its own.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Uri};
use http_body::Body;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use serversets_core::{HostPort, Watcher};

use crate::builder::{Config, HttpSetBuilder};
use crate::health::MemberHealth;
use crate::inner::Inner;
use crate::{Error, ResponseFuture};

/// An HTTP client over a live server set.
///
/// Each request's URI names only a path (and query); the set fills in the
/// scheme and the authority of the member it picks. A URI that does carry
/// an authority (a placeholder such as `http://my-service/`) has it replaced.
/// The `Host` header is left as the caller set it, and otherwise becomes the
/// member's `host:port` (just `host` on the scheme's default port). Over
/// HTTP/2 none is added: the member's authority goes as `:authority`, as
/// hyper-util sends it (RFC 9113, section 8.3.1).
///
/// Cloning is cheap and clones share everything: pools, health, rotation.
///
/// ```
/// use http_body_util::BodyExt;
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::HttpSet;
/// # use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let port = listener.local_addr()?.port();
/// # tokio::spawn(async move {
/// #     let (mut sock, _) = listener.accept().await.unwrap();
/// #     let mut buf = [0u8; 1024];
/// #     let _ = sock.read(&mut buf).await;
/// #     sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await.unwrap();
/// # });
/// // A server set of one member on loopback.
/// let set = HttpSet::new(FixedSet::new([format!("127.0.0.1:{port}")])?);
/// let response = set.get("/greeting").await?;
/// assert_eq!(response.status(), 200);
/// let body = response.into_body().collect().await?.to_bytes();
/// assert_eq!(body, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct HttpSet<C = HttpConnector> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for HttpSet<C> {
    fn clone(&self) -> Self {
        HttpSet {
            inner: self.inner.clone(),
        }
    }
}

impl<C> std::fmt::Debug for HttpSet<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.inner.installed();
        f.debug_struct("HttpSet")
            .field("version", &table.version)
            .field(
                "members",
                &table
                    .members
                    .iter()
                    .map(|m| m.addr.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("config", self.inner.config())
            .finish()
    }
}

impl HttpSet<HttpConnector> {
    /// A set with the default options (see [`HttpSetBuilder`]) over `watcher`.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::HttpSet;
    ///
    /// let set = HttpSet::new(FixedSet::new(["10.0.0.1:8080", "10.0.0.2:8080"])?);
    /// assert_eq!(set.health().len(), 2);
    /// # Ok::<(), serversets_fixedset::Error>(())
    /// ```
    pub fn new<W: Watcher + 'static>(watcher: W) -> HttpSet<HttpConnector> {
        let b = HttpSetBuilder::new();
        HttpSet::from_parts(b.config, b.connector, watcher)
    }

    /// A builder for a set with non-default options.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::HttpSet;
    ///
    /// let set = HttpSet::builder()
    ///     .request_timeout(Duration::from_secs(1))
    ///     .build(FixedSet::new(["10.0.0.1:8080"])?)?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> HttpSetBuilder<HttpConnector> {
        HttpSetBuilder::new()
    }
}

impl<C> HttpSet<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    pub(crate) fn from_parts<W: Watcher + 'static>(
        config: Config,
        connector: C,
        watcher: W,
    ) -> HttpSet<C> {
        let inner = Arc::new(Inner::new(config, connector, watcher));
        inner.ensure_follower();
        HttpSet { inner }
    }

    /// Sends `req` to the next member, retrying as configured; the future
    /// resolves to the response once its head has arrived.
    ///
    /// The body may be any [`http_body::Body`]; see the crate docs for when
    /// it is replayed on a retry.
    ///
    /// # Errors
    ///
    /// The future resolves to an [`Error`] when no response head arrived:
    /// [`Error::NoMembers`] when the set has no member (after
    /// [`wait_for_members`](HttpSetBuilder::wait_for_members), if set),
    /// [`Error::Connect`] when no attempt could connect,
    /// [`Error::ConnectAfterSent`] when only the last could not after an
    /// earlier one may have been seen, [`Error::Request`] when an attempt
    /// failed after connecting and could not be retried,
    /// [`Error::Timeout`] when an attempt or request timeout expired, and
    /// [`Error::InvalidUri`] when the request cannot be aimed at a member.
    /// An answer with any status, 5xx included, is a response, not an
    /// error.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::{Error, HttpSet};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on this port: every attempt is refused, and the
    /// // body is never sent, so a POST is retried too.
    /// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let set = HttpSet::builder().retries(2).build(FixedSet::new([format!("127.0.0.1:{port}")])?)?;
    /// let req = http::Request::post("/orders").body(Full::new(Bytes::from("{}")))?;
    /// match set.request(req).await {
    ///     Err(Error::Connect { attempts, .. }) => assert_eq!(attempts, 3),
    ///     other => panic!("expected a connect error, got {other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn request<B>(&self, req: Request<B>) -> ResponseFuture<C>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        ResponseFuture::new(self.inner.clone(), req)
    }

    /// Sends a `GET` for `path_and_query` (such as `"/users?id=7"`) with an
    /// empty body.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); a `path_and_query` that is not a
    /// valid URI resolves to [`Error::InvalidUri`] without any attempt.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::{Error, HttpSet};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let set = HttpSet::new(FixedSet::empty());
    /// assert!(matches!(set.get("/health").await, Err(Error::NoMembers { .. })));
    /// assert!(matches!(set.get("not a path").await, Err(Error::InvalidUri { .. })));
    /// # });
    /// ```
    pub fn get(&self, path_and_query: &str) -> ResponseFuture<C> {
        match Uri::try_from(path_and_query) {
            Ok(uri) => {
                let mut req = Request::new(Empty::<Bytes>::new());
                *req.uri_mut() = uri;
                self.request(req)
            }
            Err(e) => ResponseFuture::failed(Error::InvalidUri {
                uri: path_and_query.to_string(),
                source: e.into(),
            }),
        }
    }

    /// Passive-health state of every member in the current set, in the
    /// set's order.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::HttpSet;
    ///
    /// // Keep a handle on the source: share it through an Arc.
    /// let members = std::sync::Arc::new(FixedSet::new(["127.0.0.1:1", "127.0.0.1:2"])?);
    /// let set = HttpSet::new(members.clone());
    /// assert_eq!(set.health().len(), 2);
    /// members.set_addresses(["127.0.0.1:2"])?;
    /// let health = set.health();
    /// assert_eq!(health.len(), 1);
    /// assert_eq!(health[0].addr.port(), 2);
    /// # Ok::<(), serversets_fixedset::Error>(())
    /// ```
    pub fn health(&self) -> Vec<MemberHealth> {
        self.inner.health()
    }

    /// The address of the member the next request would go to, advancing
    /// the rotation as a request does (nothing is sent or counted as in
    /// flight). For traffic the set does not carry itself, such as a
    /// protocol upgrade on the same servers. `None` when the set is empty.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::HttpSet;
    ///
    /// let set = HttpSet::new(FixedSet::new(["127.0.0.1:1", "127.0.0.1:2"])?);
    /// let ports: Vec<u16> = (0..4).map(|_| set.next_addr().unwrap().port()).collect();
    /// assert_eq!(ports, [1, 2, 1, 2]);
    /// assert!(HttpSet::new(FixedSet::empty()).next_addr().is_none());
    /// # Ok::<(), serversets_fixedset::Error>(())
    /// ```
    pub fn next_addr(&self) -> Option<HostPort> {
        self.inner.select_now(None).map(|m| m.addr.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets_fixedset::FixedSet;

    #[test]
    fn requests_do_not_wait_for_a_rebuild_under_way() {
        let members = Arc::new(FixedSet::new(["127.0.0.1:1"]).unwrap());
        let set = HttpSet::new(members.clone()); // no runtime: no follower
        members.set_addresses(["127.0.0.1:2"]).unwrap();
        {
            // Another thread is rebuilding (here: this one holds the lock).
            let _rebuild = set.inner.rebuild_lock().lock().unwrap();
            // A blocking lock here would deadlock; the installed table is
            // used instead.
            assert_eq!(set.next_addr().unwrap().port(), 1);
        }
        // The next request installs the newest snapshot.
        assert_eq!(set.next_addr().unwrap().port(), 2);
        members.set_addresses(["127.0.0.1:3"]).unwrap();
        assert_eq!(set.health()[0].addr.port(), 3);
    }
}

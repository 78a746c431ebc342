//! The client itself: its shared state, membership following and endpoint
//! selection (the attempt loop is in `call`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use http::{Request, Uri};
use http_body::Body;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Builder as ClientBuilder;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serversets_core::{HostPort, Watcher};
use tokio::sync::watch;

use crate::builder::{Builder, Config};
use crate::health::{Clock, EndpointHealth, LazyNow};
use crate::metrics::SetMetrics;
use crate::select::pick;
use crate::table::{Endpoint, Table};
use crate::{Error, ResponseFuture};

/// An HTTP client over a live server set.
///
/// Each request's URI names only a path (and query); the set fills in the
/// scheme and the authority of the endpoint it picks. A URI that does carry
/// an authority (a placeholder such as `http://my-service/`) has it replaced.
/// The `Host` header is left as the caller set it, and otherwise becomes the
/// endpoint's `host:port` (just `host` on the scheme's default port). Over
/// HTTP/2 none is added: the endpoint's authority goes as `:authority`, as
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
/// // A server set of one endpoint on loopback.
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
        let table = self.inner.table.load();
        f.debug_struct("HttpSet")
            .field("version", &table.version)
            .field(
                "endpoints",
                &table
                    .endpoints
                    .iter()
                    .map(|e| e.addr.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("config", &self.inner.config)
            .finish()
    }
}

/// State shared by every clone of an [`HttpSet`] and its requests.
pub(crate) struct Inner<C> {
    watcher: Arc<dyn Watcher>,
    table: ArcSwap<Table<C>>,
    counter: AtomicUsize,
    clock: Clock,
    config: Config,
    connector: C,
    clients: ClientBuilder,
    /// Serialises table rebuilds (rare); reads never take it.
    rebuild: Mutex<()>,
    follower: AtomicBool,
    /// Dropped with the set, which stops the follower task.
    stop: watch::Sender<()>,
    /// The set's metric handles (each endpoint holds its own).
    metrics: SetMetrics,
}

impl HttpSet<HttpConnector> {
    /// A set with the default options (see [`Builder`]) over `watcher`.
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
        let b = Builder::new();
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
    pub fn builder() -> Builder<HttpConnector> {
        Builder::new()
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
        let mut clients = ClientBuilder::new(TokioExecutor::new());
        clients
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_endpoint);
        let watcher: Arc<dyn Watcher> = Arc::new(watcher);
        let metrics = SetMetrics::new(&config.metrics_set);
        let first = Table::follow(
            &Table::empty(),
            &watcher.snapshot(),
            &config.scheme,
            &clients,
            &connector,
            &metrics,
        );
        metrics.endpoints.set(first.endpoints.len() as f64);
        let (stop, _) = watch::channel(());
        let inner = Arc::new(Inner {
            watcher,
            table: ArcSwap::from_pointee(first),
            counter: AtomicUsize::new(0),
            clock: Clock::new(),
            config,
            connector,
            clients,
            rebuild: Mutex::new(()),
            follower: AtomicBool::new(false),
            stop,
            metrics,
        });
        inner.ensure_follower();
        HttpSet { inner }
    }

    /// Sends `req` to the next endpoint, retrying as configured; the future
    /// resolves to the response once its head has arrived.
    ///
    /// The body may be any [`http_body::Body`]; see the crate docs for when
    /// it is replayed on a retry.
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
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::{Error, HttpSet};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let set = HttpSet::new(FixedSet::empty());
    /// assert!(matches!(set.get("/health").await, Err(Error::NoServers { .. })));
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

    /// Passive-health state of every endpoint in the current set, in the
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
    pub fn health(&self) -> Vec<EndpointHealth> {
        let table = self.inner.current_exact();
        table
            .endpoints
            .iter()
            .map(|e| e.health.report(&e.id, &e.addr, &self.inner.clock))
            .collect()
    }

    /// The endpoint the next request would go to, advancing the rotation as
    /// a request does (nothing is sent or counted as outstanding). For
    /// traffic the set does not carry itself, such as a protocol upgrade on
    /// the same hosts. `None` when the set is empty.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_httpset::HttpSet;
    ///
    /// let set = HttpSet::new(FixedSet::new(["127.0.0.1:1", "127.0.0.1:2"])?);
    /// let ports: Vec<u16> = (0..4).map(|_| set.next_endpoint().unwrap().port()).collect();
    /// assert_eq!(ports, [1, 2, 1, 2]);
    /// assert!(HttpSet::new(FixedSet::empty()).next_endpoint().is_none());
    /// # Ok::<(), serversets_fixedset::Error>(())
    /// ```
    pub fn next_endpoint(&self) -> Option<HostPort> {
        self.inner.select_now(None).map(|e| e.addr.clone())
    }
}

impl<C> Inner<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &SetMetrics {
        &self.metrics
    }

    /// The table matching the watcher's newest snapshot: one snapshot load
    /// and one table load on the common path, a rebuild when they differ.
    ///
    /// Never blocks: when another thread (the follower, usually) is already
    /// rebuilding, the installed table is used rather than wait for it.
    fn current(&self) -> Guard<Arc<Table<C>>> {
        let table = self.table.load();
        if table.version == self.watcher.snapshot().version() {
            return table;
        }
        drop(table);
        self.sync(Wait::No);
        self.table.load()
    }

    /// Like [`current`](Self::current), but waits for a rebuild under way,
    /// so the table is as new as the snapshot read on entry.
    fn current_exact(&self) -> Guard<Arc<Table<C>>> {
        let table = self.table.load();
        if table.version == self.watcher.snapshot().version() {
            return table;
        }
        drop(table);
        self.sync(Wait::Yes);
        self.table.load()
    }

    /// Installs the table for the watcher's newest snapshot unless it is
    /// installed already. With `Wait::No`, gives up at once when another
    /// rebuild holds the lock.
    fn sync(&self, wait: Wait) {
        // The lock guards no data (the table is in the ArcSwap); a poisoned
        // lock is harmless.
        let _rebuild = match wait {
            Wait::Yes => self.rebuild.lock().unwrap_or_else(|p| p.into_inner()),
            Wait::No => match self.rebuild.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            },
        };
        // Read under the lock: whatever the caller saw may be stale by now,
        // and the newest snapshot is the one to install. Versions are
        // compared for equality, not order, so a source whose versions
        // restart (a new session, say) is still followed.
        let snap = self.watcher.snapshot();
        let old = self.table.load_full();
        if old.version == snap.version() {
            return;
        }
        let next = Table::follow(
            &old,
            &snap,
            &self.config.scheme,
            &self.clients,
            &self.connector,
            &self.metrics,
        );
        self.metrics.endpoints.set(next.endpoints.len() as f64);
        tracing::debug!(
            version = next.version,
            endpoints = next.endpoints.len(),
            "following membership change"
        );
        self.table.store(Arc::new(next));
    }

    /// Starts the task that applies membership changes as they happen, so
    /// departed endpoints' pools close without waiting for traffic. Needs a
    /// Tokio runtime; without one it is retried on the next request.
    pub(crate) fn ensure_follower(self: &Arc<Self>) {
        if self.follower.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.follower.swap(true, Ordering::AcqRel) {
            return;
        }
        // The guard is an argument, not a local of `follow`, so that it also
        // acts when the task is dropped before its first poll.
        let guard = FollowerGuard {
            set: Arc::downgrade(self),
            armed: true,
        };
        let changes = self.watcher.subscribe();
        let stop = self.stop.subscribe();
        runtime.spawn(follow(guard, changes, stop));
    }

    /// An endpoint for the next attempt from the current table, or `None`
    /// when the set is empty.
    ///
    /// The fast path never waits for a rebuild under way and uses the
    /// installed table, which is fine while that table has endpoints. When
    /// it has none but a newer snapshot exists, the rebuild is waited for
    /// instead (#12): the new members are published, and answering
    /// `NoServers` from the old table, or going to sleep on a change that
    /// already happened, would contradict them.
    pub(crate) fn select_now(&self, avoid: Option<&Arc<Endpoint<C>>>) -> Option<Arc<Endpoint<C>>> {
        let table = self.current();
        if let Some(ep) = self.select_from(&table, avoid) {
            return Some(ep);
        }
        drop(table);
        let table = self.current_exact();
        self.select_from(&table, avoid)
    }

    fn select_from(
        &self,
        table: &Table<C>,
        avoid: Option<&Arc<Endpoint<C>>>,
    ) -> Option<Arc<Endpoint<C>>> {
        let avoid = avoid.and_then(|a| table.endpoints.iter().position(|e| Arc::ptr_eq(e, a)));
        let mut now = LazyNow::new(&self.clock);
        pick(
            self.config.balance,
            &self.counter,
            &table.endpoints,
            |e| &e.health,
            &table.weights,
            avoid,
            &mut now,
        )
        .map(|i| table.endpoints[i].clone())
    }

    /// Waits up to the configured time for the set to offer an endpoint;
    /// the slow path of selection, boxed by the caller so the request
    /// future stays small.
    pub(crate) async fn wait_for_endpoint(
        self: Arc<Self>,
        avoid: Option<Arc<Endpoint<C>>>,
    ) -> Result<Arc<Endpoint<C>>, Error> {
        let avoid = avoid.as_ref();
        let Some(wait) = self.config.wait_for_servers else {
            return Err(Error::NoServers {
                waited: Duration::ZERO,
            });
        };
        let started = Instant::now();
        // Subscribe before looking, so a change in between still wakes us.
        let mut changes = self.watcher.subscribe();
        loop {
            if let Some(ep) = self.select_now(avoid) {
                return Ok(ep);
            }
            let left = wait.saturating_sub(started.elapsed());
            if self.watcher.is_closed() || left.is_zero() {
                return Err(Error::NoServers {
                    waited: started.elapsed(),
                });
            }
            match tokio::time::timeout(left, changes.changed()).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return self.select_now(avoid).ok_or(Error::NoServers {
                        waited: started.elapsed(),
                    });
                }
            }
        }
    }

    /// Records a connect failure or attempt timeout against `ep`.
    pub(crate) fn failed(&self, ep: &Endpoint<C>) {
        let table = self.table.load();
        let ejected = ep.health.on_failure(
            &ep.addr,
            self.config.eject,
            &self.clock,
            table.endpoints.iter().map(|e| &e.health),
        );
        if ejected {
            ep.metrics.ejections.increment(1);
        }
    }
}

/// Whether a table rebuild waits for one already under way.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Yes,
    No,
}

/// Clears the set's `follower` flag if the follower task ends any way other
/// than a normal return: its runtime shut down (the task is dropped at its
/// next await) or a rebuild panicked. The next request then starts a new
/// follower instead of the set silently going without one.
struct FollowerGuard<C> {
    set: Weak<Inner<C>>,
    armed: bool,
}

impl<C> FollowerGuard<C> {
    /// A normal end: the set is gone or the source closed, and nothing is
    /// left to follow, so no new follower should start.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<C> Drop for FollowerGuard<C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(inner) = self.set.upgrade() {
            tracing::warn!("membership follower stopped (runtime shut down or panic); the next request restarts it");
            inner.follower.store(false, Ordering::Release);
        }
    }
}

/// Applies membership changes until the set is dropped or the source
/// closes; `guard` holds the set weakly and reports any other end.
async fn follow<C>(
    guard: FollowerGuard<C>,
    mut changes: serversets_core::Subscription,
    mut stop: watch::Receiver<()>,
) where
    C: Connect + Clone + Send + Sync + 'static,
{
    let set = guard.set.clone();
    // Catch up with anything published before we subscribed.
    match set.upgrade() {
        Some(inner) => {
            changes.latest();
            inner.sync(Wait::Yes);
        }
        None => return guard.disarm(),
    }
    loop {
        tokio::select! {
            // The sender never sends; this resolves when the set is dropped.
            _ = stop.changed() => return guard.disarm(),
            next = changes.changed() => match next {
                Some(_) => match set.upgrade() {
                    Some(inner) => inner.sync(Wait::Yes),
                    None => return guard.disarm(),
                },
                None => {
                    tracing::info!("membership source closed; the set keeps its last endpoints");
                    return guard.disarm();
                }
            },
        }
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
            let _rebuild = set.inner.rebuild.lock().unwrap();
            // A blocking lock here would deadlock; the installed table is
            // used instead.
            assert_eq!(set.next_endpoint().unwrap().port(), 1);
        }
        // The next request installs the newest snapshot.
        assert_eq!(set.next_endpoint().unwrap().port(), 2);
        members.set_addresses(["127.0.0.1:3"]).unwrap();
        assert_eq!(set.health()[0].addr.port(), 3);
    }
}

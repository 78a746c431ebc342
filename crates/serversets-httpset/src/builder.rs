//! Options for an [`HttpSet`], with their defaults in one place.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http::StatusCode;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use serversets_core::balance::{self, Ejection};
use serversets_core::Watcher;

use crate::{Balance, BuildError, HttpSet};

/// Default bound on retries after the first attempt: a request makes at
/// most `DEFAULT_RETRIES + 1` attempts unless
/// [`retries`](HttpSetBuilder::retries) says otherwise.
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{Error, HttpSet, DEFAULT_RETRIES};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Nothing listens on this port: every attempt is refused.
/// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let set = HttpSet::new(FixedSet::new([format!("127.0.0.1:{port}")])?);
/// match set.get("/").await {
///     Err(Error::Connect { attempts, .. }) => assert_eq!(attempts, DEFAULT_RETRIES + 1),
///     other => panic!("expected a connect error, got {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub const DEFAULT_RETRIES: u32 = 2;
/// Default number of consecutive failures that ejects a member: 5, core's
/// [`DEFAULT_EJECT_AFTER`](serversets_core::balance::DEFAULT_EJECT_AFTER),
/// the default of every balancer in this workspace (and of Finagle's
/// failure accrual).
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{HttpSet, DEFAULT_EJECT_AFTER};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Two members, neither listening: without retries, each request is one
/// // failure of one member, taken in turn.
/// let dead = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
/// let set = HttpSet::builder().retries(0).build(FixedSet::new([dead(), dead()])?)?;
/// for _ in 0..2 * (DEFAULT_EJECT_AFTER - 1) {
///     assert!(set.get("/").await.is_err());
/// }
/// assert!(set.health().iter().all(|m| !m.is_ejected()));
/// // The next failure is the first member's fifth in a row.
/// assert!(set.get("/").await.is_err());
/// let health = set.health();
/// assert_eq!(health.iter().filter(|m| m.is_ejected()).count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub const DEFAULT_EJECT_AFTER: u32 = balance::DEFAULT_EJECT_AFTER;
/// Default time an ejected member stays out of rotation: 10 s, core's
/// [`DEFAULT_EJECT_FOR`](serversets_core::balance::DEFAULT_EJECT_FOR), the
/// default of every balancer in this workspace.
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{HttpSet, DEFAULT_EJECT_FOR};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dead = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
/// let set = HttpSet::builder()
///     .eject_after(1)
///     .retries(0)
///     .build(FixedSet::new([dead(), dead()])?)?;
/// assert!(set.get("/").await.is_err());
/// // One failure ejected the member it went to, for the default cool-down.
/// let ejected = set.health().into_iter().find(|m| m.is_ejected()).unwrap();
/// let left = ejected.ejected_for.unwrap();
/// assert!(left <= DEFAULT_EJECT_FOR && left > DEFAULT_EJECT_FOR / 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub const DEFAULT_EJECT_FOR: Duration = balance::DEFAULT_EJECT_FOR;
/// Default connect timeout of the built-in connector. A connector of your
/// own starts without one; give it the same bound like this:
///
/// ```
/// use hyper_util::client::legacy::connect::HttpConnector;
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{HttpSet, DEFAULT_CONNECT_TIMEOUT};
///
/// let mut tcp = HttpConnector::new();
/// tcp.set_nodelay(true);
/// tcp.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
/// let set = HttpSet::builder().connector(tcp).build(FixedSet::new(["127.0.0.1:8080"])?)?;
/// # drop(set);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default bound on the request body kept for replaying idempotent requests
/// (64 KiB). Raise it for larger bodies that should survive a retry:
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{HttpSet, DEFAULT_REPLAY_LIMIT};
///
/// // Uploads of up to 1 MiB are kept for a retry after they were sent.
/// let set = HttpSet::builder()
///     .replay_limit(16 * DEFAULT_REPLAY_LIMIT)
///     .build(FixedSet::new(["127.0.0.1:8080"])?)?;
/// # drop(set);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;
/// Default idle time after which a pooled connection is closed. Servers
/// that close idle connections sooner want a shorter one, so the set does
/// not pick a connection the server is closing:
///
/// ```
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{HttpSet, DEFAULT_POOL_IDLE_TIMEOUT};
///
/// // The servers close connections idle for 60 s.
/// let server_idle = Duration::from_secs(60);
/// let set = HttpSet::builder()
///     .pool_idle_timeout(DEFAULT_POOL_IDLE_TIMEOUT.min(server_idle / 2))
///     .build(FixedSet::new(["127.0.0.1:8080"])?)?;
/// # drop(set);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Everything [`HttpSetBuilder`] sets, except the connector.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) scheme: Scheme,
    pub(crate) balance: Balance,
    pub(crate) retries: u32,
    pub(crate) retry_idempotent: bool,
    pub(crate) retry_statuses: Vec<StatusCode>,
    pub(crate) replay_limit: usize,
    pub(crate) eject: Ejection,
    pub(crate) wait_for_members: Option<Duration>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) pool_idle_timeout: Option<Duration>,
    pub(crate) pool_max_idle_per_member: usize,
    /// The `set` label of the metrics and spans.
    pub(crate) metrics_set: Arc<str>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheme: Scheme::HTTP,
            balance: Balance::RoundRobin,
            retries: DEFAULT_RETRIES,
            retry_idempotent: true,
            retry_statuses: Vec::new(),
            replay_limit: DEFAULT_REPLAY_LIMIT,
            eject: Ejection::new(DEFAULT_EJECT_AFTER, DEFAULT_EJECT_FOR),
            wait_for_members: None,
            request_timeout: None,
            attempt_timeout: None,
            pool_idle_timeout: Some(DEFAULT_POOL_IDLE_TIMEOUT),
            pool_max_idle_per_member: usize::MAX,
            metrics_set: Arc::from(crate::metrics::UNNAMED),
        }
    }
}

/// Configures an [`HttpSet`]; start with [`HttpSet::builder`].
///
/// Defaults: plain `http`, round-robin, [`DEFAULT_RETRIES`] retries, retries
/// of idempotent requests on later failures enabled, no status retries,
/// ejection after [`DEFAULT_EJECT_AFTER`] consecutive failures for
/// [`DEFAULT_EJECT_FOR`], an empty set fails at once, no request or
/// attempt timeout, [`DEFAULT_CONNECT_TIMEOUT`] connect timeout, pooled
/// connections closed after [`DEFAULT_POOL_IDLE_TIMEOUT`] idle.
///
/// ```
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{Balance, HttpSet};
///
/// let set = HttpSet::builder()
///     .balance(Balance::LeastOutstanding)
///     .retries(3)
///     .retry_status(http::StatusCode::SERVICE_UNAVAILABLE)
///     .eject_after(3)
///     .eject_for(Duration::from_secs(5))
///     .attempt_timeout(Duration::from_millis(500))
///     .request_timeout(Duration::from_secs(2))
///     .connect_timeout(Duration::from_millis(200))
///     .wait_for_members(Duration::from_secs(1))
///     .build(FixedSet::new(["127.0.0.1:8080"])?)?;
/// # drop(set);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HttpSetBuilder<C = HttpConnector> {
    pub(crate) config: Config,
    pub(crate) connector: C,
    custom_connector: bool,
}

impl HttpSetBuilder<HttpConnector> {
    /// A builder with the defaults and hyper-util's plain TCP connector (with
    /// `TCP_NODELAY` on and [`DEFAULT_CONNECT_TIMEOUT`]).
    pub(crate) fn new() -> HttpSetBuilder<HttpConnector> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        HttpSetBuilder {
            config: Config::default(),
            connector,
            custom_connector: false,
        }
    }

    /// Connect timeout of the built-in connector. A connect that times out
    /// counts as a connect failure: retried on the next member, and towards
    /// ejection. (With your own [`connector`](HttpSetBuilder::connector), set it there.)
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().connect_timeout(Duration::from_millis(250)).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connector.set_connect_timeout(Some(timeout));
        self
    }

    /// The TCP connector, and the builder to hand another one to.
    #[cfg(feature = "rustls")]
    pub(crate) fn into_connector(self) -> (HttpConnector, HttpSetBuilder<()>) {
        (
            self.connector,
            HttpSetBuilder {
                config: self.config,
                connector: (),
                custom_connector: false,
            },
        )
    }
}

impl<C> HttpSetBuilder<C> {
    /// Uses another connector, for example a TLS one from `hyper-rustls` or
    /// `hyper-tls` for [`https`](HttpSetBuilder::https). Anything hyper-util's
    /// client accepts works; it is cloned into each member's pool.
    ///
    /// ```
    /// use hyper_util::client::legacy::connect::HttpConnector;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    ///
    /// // A stand-in for a TLS connector: it must accept https URIs.
    /// let mut tcp = HttpConnector::new();
    /// tcp.enforce_http(false);
    /// let set = HttpSet::builder().connector(tcp).https().build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connector<C2>(self, connector: C2) -> HttpSetBuilder<C2> {
        HttpSetBuilder {
            config: self.config,
            connector,
            custom_connector: true,
        }
    }

    /// Sends requests with the `https` scheme. The default connector speaks
    /// plain TCP only, so this needs a TLS [`connector`](HttpSetBuilder::connector);
    /// [`build`](HttpSetBuilder::build) refuses it otherwise. With the `rustls`
    /// feature, [`rustls`](HttpSetBuilder::rustls) sets both.
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::{BuildError, HttpSet};
    /// let err = HttpSet::builder().https().build(FixedSet::empty()).unwrap_err();
    /// assert_eq!(err, BuildError::HttpsNeedsConnector);
    /// ```
    pub fn https(mut self) -> Self {
        self.config.scheme = Scheme::HTTPS;
        self
    }

    /// How the next member is chosen (default [`Balance::RoundRobin`]).
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::{Balance, HttpSet};
    /// let set = HttpSet::builder().balance(Balance::LeastOutstanding).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn balance(mut self, balance: Balance) -> Self {
        self.config.balance = balance;
        self
    }

    /// At most this many further attempts after the first, each on another
    /// member when there is one (default [`DEFAULT_RETRIES`]; 0 disables
    /// retries). Retries are immediate, with no backoff: they go to a
    /// different member.
    ///
    /// A request that failed before reaching a server (connect refused,
    /// connect timeout, reset on connect) is retried whatever its method.
    /// Later failures are retried only as [`retry_idempotent`](HttpSetBuilder::retry_idempotent)
    /// and [`retry_status`](HttpSetBuilder::retry_status) allow. A body is never sent
    /// twice unless it can be replayed whole (see the crate docs).
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().retries(0).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = retries;
        self
    }

    /// Whether idempotent requests (GET, HEAD, OPTIONS, TRACE, PUT, DELETE)
    /// are retried after failures past the connect: the connection dropped
    /// mid-exchange, or an [`attempt_timeout`](HttpSetBuilder::attempt_timeout)
    /// expired (default true).
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().retry_idempotent(false).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retry_idempotent(mut self, enabled: bool) -> Self {
        self.config.retry_idempotent = enabled;
        self
    }

    /// Also retries idempotent requests answered with this status, for
    /// example `503 Service Unavailable` (none by default). The response is
    /// dropped; the last attempt's response is returned as it is.
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// use http::StatusCode;
    /// let set = HttpSet::builder()
    ///     .retry_status(StatusCode::SERVICE_UNAVAILABLE)
    ///     .retry_status(StatusCode::BAD_GATEWAY)
    ///     .build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retry_status(mut self, status: StatusCode) -> Self {
        if !self.config.retry_statuses.contains(&status) {
            self.config.retry_statuses.push(status);
        }
        self
    }

    /// The most request-body bytes kept to replay an idempotent request after
    /// its body was sent (default [`DEFAULT_REPLAY_LIMIT`]). Larger bodies
    /// stream as usual but are not retried once sent. 0 turns recording off.
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().replay_limit(1 << 20).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.config.replay_limit = bytes;
        self
    }

    /// Consecutive failures (connect failures and attempt timeouts; any
    /// response resets the count) after which a member is ejected (default
    /// [`DEFAULT_EJECT_AFTER`]; 0 never ejects). The last member in service
    /// is never ejected.
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().eject_after(0).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn eject_after(mut self, failures: u32) -> Self {
        self.config.eject = self.config.eject.with_after(failures);
        self
    }

    /// How long an ejected member stays out of rotation (default
    /// [`DEFAULT_EJECT_FOR`]). Afterwards live traffic tries it
    /// again: one answer re-admits it, one more failure ejects it again.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().eject_for(Duration::from_secs(30)).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn eject_for(mut self, cooldown: Duration) -> Self {
        self.config.eject = self.config.eject.with_cooldown(cooldown);
        self
    }

    /// When the set is empty, wait up to this long for a first member
    /// instead of failing at once with [`Error::NoMembers`](crate::Error::NoMembers).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().wait_for_members(Duration::from_secs(3)).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_members(mut self, wait: Duration) -> Self {
        self.config.wait_for_members = Some(wait);
        self
    }

    /// A deadline for the whole call (waiting for servers, every attempt,
    /// up to the response head); on expiry the call fails with
    /// [`Error::Timeout`](crate::Error::Timeout) with no address. Reading the
    /// response body is not covered. Equivalent to layering
    /// `tower::timeout::TimeoutLayer` over the set, without the boxed error.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().request_timeout(Duration::from_secs(2)).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = Some(timeout);
        self
    }

    /// A deadline for each attempt, up to the response head. An expired
    /// attempt counts as a failure of its member (so a server that accepts
    /// but never answers gets ejected) and, for idempotent requests, is
    /// retried on the next member.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().attempt_timeout(Duration::from_millis(300)).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = Some(timeout);
        self
    }

    /// How long a pooled connection may stay idle before it is closed
    /// (default [`DEFAULT_POOL_IDLE_TIMEOUT`]; `None` keeps them open).
    /// Connections to members that leave the set are closed when they
    /// leave, whatever this says.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().pool_idle_timeout(Duration::from_secs(30)).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.pool_idle_timeout = timeout.into();
        self
    }

    /// The most idle connections kept per member (default unbounded).
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().pool_max_idle_per_member(8).build(FixedSet::empty())?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool_max_idle_per_member(mut self, max: usize) -> Self {
        self.config.pool_max_idle_per_member = max;
        self
    }

    /// Names the set in metrics and spans: the `set` label of every
    /// `serversets_http_*` metric (default `unnamed`). Give it the server
    /// set's path, as `serversets-core` labels its watches, so one
    /// dashboard joins them. See `docs/metrics.md` for every metric.
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder()
    ///     .metrics_set("/discovery/prod/users")
    ///     .build(FixedSet::new(["127.0.0.1:8080"])?)?;
    /// # drop(set);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics_set(mut self, name: &str) -> Self {
        self.config.metrics_set = Arc::from(name);
        self
    }

    /// Builds the set over `watcher`. Inside a Tokio runtime this also starts
    /// the task that follows membership changes (otherwise the first request
    /// starts it); requests always see the watcher's newest snapshot either
    /// way.
    ///
    /// # Errors
    ///
    /// [`BuildError::HttpsNeedsConnector`] when [`https`](HttpSetBuilder::https)
    /// was chosen with the built-in plain-TCP connector.
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::builder().build(FixedSet::new(["127.0.0.1:80", "127.0.0.2:80"])?)?;
    /// assert_eq!(set.health().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build<W>(self, watcher: W) -> Result<HttpSet<C>, BuildError>
    where
        W: Watcher + 'static,
        C: Connect + Clone + Send + Sync + 'static,
    {
        if self.config.scheme == Scheme::HTTPS && !self.custom_connector {
            return Err(BuildError::HttpsNeedsConnector);
        }
        Ok(HttpSet::from_parts(self.config, self.connector, watcher))
    }
}

impl<C> std::fmt::Debug for HttpSetBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSetBuilder")
            .field("config", &self.config)
            .field("custom_connector", &self.custom_connector)
            .finish()
    }
}

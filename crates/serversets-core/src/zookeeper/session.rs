//! One ZooKeeper session, shared by every server set, registration and watch
//! that uses the same ensemble and credentials in a process.
//!
//! The session is supervised: a background task connects, follows the
//! connection state, and after an expiry opens a new session. Users of the
//! session never hold a ZooKeeper client for long; they follow
//! [`Generation`]s, and when a new one appears (a new session after expiry)
//! they redo their work on it: registrations re-create their members,
//! watches re-arm and re-read.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use crate::zookeeper::backoff::Backoff;
use crate::zookeeper::error::{Error, Result};
#[cfg(feature = "tls")]
use crate::zookeeper::security::ZkTls;
use crate::zookeeper::security::{diagnose, Finding};
use crate::zookeeper::supervise::spawn_supervised;

/// How long the first connection may take before the servers are probed
/// for a TLS or login problem (at most half the connect timeout).
const DIAGNOSE_AFTER: Duration = Duration::from_millis(1000);

/// How the process's connection to ZooKeeper is doing.
///
/// Watches keep serving their last known members in every state; this is for
/// reporting and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// No session yet: the first connection attempt is under way.
    Connecting,
    /// Connected with a live session.
    Connected,
    /// The connection dropped; the session may still be alive and the client
    /// is reconnecting. Members and watches are intact if it comes back in
    /// time.
    Disconnected,
    /// The session expired (or was closed by the server); a new one is being
    /// opened, after which registrations are re-created and watches re-read.
    Expired,
    /// ZooKeeper refused the credentials; retried with back-off.
    AuthFailed,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Connecting => "connecting",
            Health::Connected => "connected",
            Health::Disconnected => "disconnected",
            Health::Expired => "expired, recovering",
            Health::AuthFailed => "authentication failed",
        })
    }
}

/// Connection settings; two server sets with equal settings share a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionConfig {
    /// `host:port,host:port[/chroot]`.
    pub(crate) connect: String,
    pub(crate) session_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Digest credentials, `user:password`.
    pub(crate) digest: Option<String>,
    /// TLS to the servers' secure client port.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<ZkTls>,
    /// SASL DIGEST-MD5 `(user, password)`.
    #[cfg(feature = "sasl-digest-md5")]
    pub(crate) sasl: Option<(String, String)>,
}

impl SessionConfig {
    pub(crate) fn new(hosts: Vec<String>) -> Result<SessionConfig> {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if hosts.is_empty() {
            return Err(Error::NoZooKeeperHosts);
        }
        Ok(SessionConfig {
            connect: hosts.join(","),
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            digest: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "sasl-digest-md5")]
            sasl: None,
        })
    }

    /// Each server as `(host, port)` (IPv6 without brackets; 2181 when no
    /// port is given, as zookeeper-client reads it).
    pub(crate) fn host_ports(&self) -> Vec<(String, u16)> {
        self.hosts()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                let h = h.split_once("://").map_or(h, |(_, rest)| rest);
                let (host, port) = match h.strip_prefix('[') {
                    Some(rest) => match rest.split_once(']') {
                        Some((host, port)) => (host, port.strip_prefix(':')),
                        None => (rest, None),
                    },
                    None => match h.rsplit_once(':') {
                        Some((host, port)) => (host, Some(port)),
                        None => (h, None),
                    },
                };
                let port = port.and_then(|p| p.parse().ok()).unwrap_or(2181);
                (host.to_string(), port)
            })
            .collect()
    }

    /// True when the session authenticates: digest, SASL or a TLS client
    /// certificate (which ZooKeeper's x509 provider makes an identity).
    pub(crate) fn has_credentials(&self) -> bool {
        #[allow(unused_mut)]
        let mut any = self.digest.is_some();
        #[cfg(feature = "tls")]
        {
            any |= self.tls.as_ref().is_some_and(ZkTls::has_client_cert);
        }
        #[cfg(feature = "sasl-digest-md5")]
        {
            any |= self.sasl.is_some();
        }
        any
    }

    /// A zookeeper-client connector with these credentials and timeouts.
    fn connector(&self, tls: Option<&TlsHandle>) -> zk::Connector {
        let mut connector = zk::Client::connector()
            .with_session_timeout(self.session_timeout)
            .with_connection_timeout(self.session_timeout.min(Duration::from_secs(5)));
        if let Some(digest) = &self.digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        #[cfg(feature = "sasl-digest-md5")]
        if let Some((user, password)) = &self.sasl {
            connector =
                connector.with_sasl(zk::SaslOptions::digest_md5(user.clone(), password.clone()));
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            connector = connector.with_tls(tls.options());
        }
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        connector
    }

    /// Connects `connector` to the servers, over TLS when configured.
    async fn connect(
        &self,
        connector: zk::Connector,
    ) -> std::result::Result<zk::Client, zk::Error> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return connector.secure_connect(&self.connect).await;
        }
        connector.connect(&self.connect).await
    }

    /// True when the session connects with TLS.
    fn uses_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        false
    }

    /// The SASL user, for messages.
    fn sasl_user(&self) -> Option<&str> {
        #[cfg(feature = "sasl-digest-md5")]
        if let Some((user, _)) = &self.sasl {
            return Some(user);
        }
        None
    }

    /// The hosts, without the chroot, for messages.
    pub(crate) fn hosts(&self) -> &str {
        self.connect.split('/').next().unwrap_or(&self.connect)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn show_host(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The certificates a session's connections use, rotated in place.
#[cfg(feature = "tls")]
type TlsHandle = crate::zookeeper::security::TlsRuntime;
#[cfg(not(feature = "tls"))]
enum TlsHandle {}

/// One live ZooKeeper session: the client plus the facts callers need.
pub(crate) struct Generation {
    pub(crate) client: zk::Client,
    /// Increases with every new session.
    pub(crate) number: u64,
    pub(crate) session_id: i64,
}

struct Shared {
    cfg: SessionConfig,
    current: watch::Sender<Option<Arc<Generation>>>,
    health: watch::Sender<Health>,
    /// Member paths owned by registrations of this session, so adoption after
    /// a lost create never takes another registration's node.
    owned: Mutex<HashSet<String>>,
    alive: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Numbers sessions; kept here so a restarted supervisor never reuses one.
    generation: AtomicU64,
    /// A reason to connect that no retry can change (a refused SASL login,
    /// a TLS handshake every server refuses); cleared by a new session.
    problem: watch::Sender<Option<Error>>,
    /// The TLS certificates connections use (rotated from their files).
    tls: Option<TlsHandle>,
    /// Metric handles, registered once when the session starts.
    metrics: SessionMetrics,
}

impl Shared {
    /// Publishes the health, and the `serversets_session_state` gauges with it.
    fn set_health(&self, health: Health) {
        self.metrics.health(health);
        self.health.send_replace(health);
    }
}

/// The label value of a [`Health`] in `serversets_session_state{state}`.
fn health_label(health: Health) -> &'static str {
    match health {
        Health::Connecting => "connecting",
        Health::Connected => "connected",
        Health::Disconnected => "disconnected",
        Health::Expired => "expired",
        Health::AuthFailed => "auth_failed",
    }
}

/// A session's metrics, labelled `zk` with its hosts (without chroot).
/// Registered once per session, so an update is an atomic store or add.
struct SessionMetrics {
    /// `serversets_session_state{zk,state}`: 1 for the state now, 0 for
    /// the others.
    states: [(Health, metrics::Gauge); 5],
    /// `serversets_session_established_total`: sessions opened (the first,
    /// and a new one after each expiry).
    established: metrics::Counter,
    /// `serversets_session_reconnects_total`: connections restored to the
    /// same session after a disconnect.
    reconnects: metrics::Counter,
    /// `serversets_session_expiries_total`: sessions that expired (or that
    /// the server closed).
    expiries: metrics::Counter,
    /// `serversets_session_connect_failures_total`: attempts to open a
    /// session that failed.
    connect_failures: metrics::Counter,
}

impl SessionMetrics {
    fn new(hosts: &str) -> SessionMetrics {
        metrics::describe_gauge!(
            "serversets_session_state",
            "ZooKeeper session state: 1 for the current state, 0 for the others"
        );
        metrics::describe_counter!(
            "serversets_session_established_total",
            "ZooKeeper sessions opened (the first, and one after each expiry)"
        );
        metrics::describe_counter!(
            "serversets_session_reconnects_total",
            "Connections restored to the same ZooKeeper session after a disconnect"
        );
        metrics::describe_counter!(
            "serversets_session_expiries_total",
            "ZooKeeper sessions that expired or were closed by the server"
        );
        metrics::describe_counter!(
            "serversets_session_connect_failures_total",
            "Attempts to open a ZooKeeper session that failed"
        );
        let zk = hosts.to_string();
        let state = |h: Health| {
            let labels = [("zk", zk.clone()), ("state", health_label(h).to_string())];
            (h, metrics::gauge!("serversets_session_state", &labels))
        };
        let this = SessionMetrics {
            states: [
                state(Health::Connecting),
                state(Health::Connected),
                state(Health::Disconnected),
                state(Health::Expired),
                state(Health::AuthFailed),
            ],
            established: metrics::counter!("serversets_session_established_total", "zk" => zk.clone()),
            reconnects: metrics::counter!("serversets_session_reconnects_total", "zk" => zk.clone()),
            expiries: metrics::counter!("serversets_session_expiries_total", "zk" => zk.clone()),
            connect_failures: metrics::counter!("serversets_session_connect_failures_total", "zk" => zk),
        };
        this.health(Health::Connecting);
        this
    }

    fn health(&self, now: Health) {
        for (h, gauge) in &self.states {
            gauge.set(if *h == now { 1.0 } else { 0.0 });
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// Dropped with the last handle: the supervisor sees it and closes the
    /// session, which deletes every ephemeral member at once.
    _shutdown: watch::Sender<()>,
}

/// A supervised ZooKeeper session; cheap to clone.
///
/// Server sets create one on demand and share it with every other server set
/// that has the same ensemble and settings ([`ServerSet::new`] does this by
/// default). Build one explicitly to share it across differently-configured
/// server sets or to read its [`Health`].
///
/// ```
/// use serversets_core::{Environment, Health, ServerSet, Session};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let zk = testkit::ZkCluster::standalone()?; // a real ZooKeeper for this example
/// # let zookeepers = [zk.connect_string()];
/// let session = Session::builder(zookeepers.clone()).build()?;
/// let users = ServerSet::builder(Environment::Production, "users", zookeepers.clone())
///     .session(session.clone())
///     .build()?;
/// let orders = ServerSet::builder(Environment::Production, "orders", zookeepers)
///     .session(session.clone())
///     .build()?;
/// session.wait_connected().await?;
/// assert_eq!(session.health(), Health::Connected);
/// assert_eq!(users.session()?.session_id(), orders.session()?.session_id());
/// # Ok(()) }
/// ```
///
/// [`ServerSet::new`]: crate::ServerSet::new
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// Builds a [`Session`]; see [`Session::builder`].
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    cfg: Result<SessionConfig>,
}

impl SessionBuilder {
    /// The session timeout asked of ZooKeeper (default 10 s). Members vanish
    /// this long after a crashed process stops heart-beating; the server
    /// clamps it to its own minimum and maximum.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.session_timeout = timeout;
        }
        self
    }

    /// How long `watch()` and `register_endpoint()` wait for the first
    /// connection before failing (default 10 s). The session keeps trying
    /// in the background either way.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.connect_timeout = timeout;
        }
        self
    }

    /// Authenticates with ZooKeeper's digest scheme as `user:password`.
    pub fn digest_auth(mut self, user: &str, password: &str) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.digest = Some(format!("{user}:{password}"));
        }
        self
    }

    /// Connects with TLS to the servers' secure client port (every host of
    /// the connect string must be one), as [`ZkTls`](crate::ZkTls) says.
    ///
    /// A handshake that fails (wrong CA, expired certificate, a client
    /// certificate required or refused) makes `watch()` and
    /// `register_endpoint()` fail with [`Error::Tls`] after about a second,
    /// without waiting for the connect timeout.
    ///
    /// ```
    /// use serversets_core::{Error, Session, TlsProblem, ZkTls};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pki = testkit::TestPki::generate()?;
    /// # let zk = testkit::ZkCluster::start(testkit::ZkOptions {
    /// #     tls: Some(testkit::ZkTls::new(&pki)),
    /// #     ..Default::default()
    /// # })?;
    /// # let zookeepers = zk.secure_connect_string().unwrap_or_default();
    /// # let wrong_ca = std::fs::read(pki.other_ca_pem())?;
    /// let session = Session::builder([zookeepers]).tls(ZkTls::ca_pem(wrong_ca)?).build()?;
    /// match session.wait_connected().await {
    ///     Err(Error::Tls { problem: TlsProblem::UnknownIssuer, .. }) => {}
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: ZkTls) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.tls = Some(tls);
        }
        self
    }

    /// Logs in with SASL DIGEST-MD5 (a JAAS `DigestLoginModule` user on the
    /// server), next to or instead of [`digest_auth`](Self::digest_auth).
    /// Nodes created with creator ACLs then belong to `sasl:<user>`.
    ///
    /// A wrong user or password makes `watch()` and `register_endpoint()`
    /// fail at once with [`Error::SaslAuthFailed`].
    ///
    /// ```
    /// use serversets_core::{Error, Session};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let zk = testkit::ZkCluster::start(testkit::ZkOptions {
    /// #     sasl: Some(testkit::ZkSasl::user("app", "s3cret")),
    /// #     ..Default::default()
    /// # })?;
    /// # let zookeepers = [zk.connect_string()];
    /// let session = Session::builder(zookeepers.clone()).sasl_digest_md5("app", "s3cret").build()?;
    /// session.wait_connected().await?;
    ///
    /// let wrong = Session::builder(zookeepers).sasl_digest_md5("app", "guess").build()?;
    /// assert!(matches!(wrong.wait_connected().await, Err(Error::SaslAuthFailed { .. })));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sasl-digest-md5")]
    pub fn sasl_digest_md5(mut self, user: &str, password: &str) -> Self {
        if let Ok(cfg) = &mut self.cfg {
            cfg.sasl = Some((user.to_string(), password.to_string()));
        }
        self
    }

    pub(crate) fn config(self) -> Result<SessionConfig> {
        self.cfg
    }

    /// Connects a bare zookeeper-client [`Client`](zk::Client) with these
    /// servers and settings (TLS, SASL, digest), for tools that read nodes
    /// this crate does not serve. Not shared, not supervised: the client is
    /// the caller's. Retries until the connect timeout, and fails early as
    /// [`Session::wait_connected`] does.
    ///
    /// # Errors
    ///
    /// As [`Session::wait_connected`], plus [`Error::ZooKeeper`] with
    /// `AuthFailed` when the server refuses the credentials.
    ///
    /// ```
    /// use serversets_core::Session;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let zk = testkit::ZkCluster::standalone()?;
    /// let client = Session::builder([zk.connect_string()]).connect_client().await?;
    /// assert!(client.list_children("/").await?.contains(&"zookeeper".to_string()));
    /// # Ok(()) }
    /// ```
    pub async fn connect_client(self) -> Result<zk::Client> {
        let cfg = self.cfg?;
        #[cfg(feature = "tls")]
        let tls = match &cfg.tls {
            Some(tls) => Some(TlsHandle::new(tls)?),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls: Option<TlsHandle> = None;
        let started = tokio::time::Instant::now();
        let deadline = started + cfg.connect_timeout;
        // The last failure, shared with the attempts below.
        let last = Mutex::new(String::from("no answer"));
        let attempts = async {
            loop {
                let connector = cfg.connector(tls.as_ref()).with_fail_eagerly();
                match cfg.connect(connector).await {
                    Ok(client) => return Ok(client),
                    Err(zk::Error::AuthFailed) => {
                        return Err(match cfg.sasl_user() {
                            Some(user) => Error::SaslAuthFailed {
                                hosts: cfg.hosts().to_string(),
                                user: user.to_string(),
                            },
                            None => Error::zk("authenticate to", "/", zk::Error::AuthFailed),
                        })
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "ZooKeeper connection attempt failed");
                        *last.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let diagnosis = async {
            tokio::time::sleep_until(started + DIAGNOSE_AFTER.min(cfg.connect_timeout / 2)).await;
            diagnose(&cfg).await
        };
        tokio::pin!(attempts, diagnosis);
        let mut seen = None;
        loop {
            tokio::select! {
                r = &mut attempts => return r,
                f = &mut diagnosis, if seen.is_none() => match f {
                    Finding::Definite(e) => return Err(e),
                    Finding::Unsure(note) => seen = Some(note),
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let mut reason = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(note) = seen.filter(|n| !n.is_empty()) {
            reason = format!("{reason} ({note})");
        }
        Err(Error::Connect {
            hosts: cfg.hosts().to_string(),
            timeout: cfg.connect_timeout,
            reason,
        })
    }

    /// Starts the session's supervisor on the current tokio runtime. Returns
    /// at once; the first connection is made in the background.
    pub fn build(self) -> Result<Session> {
        Session::start(self.cfg?)
    }
}

impl Session {
    /// A builder for a session to these ZooKeeper servers (`host:port`; a
    /// chroot may follow the last one, as in `zk1:2181,zk2:2181/chroot`).
    pub fn builder<I, S>(zookeepers: I) -> SessionBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        SessionBuilder {
            cfg: SessionConfig::new(
                zookeepers
                    .into_iter()
                    .map(|s| s.as_ref().to_string())
                    .collect(),
            ),
        }
    }

    /// The live session with these settings, or a new one.
    pub(crate) fn shared(cfg: &SessionConfig) -> Result<Session> {
        static REGISTRY: Mutex<Vec<(SessionConfig, Weak<Inner>)>> = Mutex::new(Vec::new());
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        registry.retain(|(_, weak)| {
            weak.upgrade()
                .is_some_and(|inner| inner.shared.alive.load(Ordering::SeqCst))
        });
        if let Some(inner) = registry
            .iter()
            .find(|(c, _)| c == cfg)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(Session { inner });
        }
        let session = Session::start(cfg.clone())?;
        registry.push((cfg.clone(), Arc::downgrade(&session.inner)));
        Ok(session)
    }

    fn start(cfg: SessionConfig) -> Result<Session> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let (current, _) = watch::channel(None);
        let (health, _) = watch::channel(Health::Connecting);
        let metrics = SessionMetrics::new(cfg.hosts());
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        #[cfg(feature = "tls")]
        let tls = match &cfg.tls {
            Some(tls) => Some(TlsHandle::new(tls)?),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls = None;
        let shared = Arc::new(Shared {
            cfg,
            current,
            health,
            owned: Mutex::new(HashSet::new()),
            alive: AtomicBool::new(true),
            last_error: Mutex::new(None),
            generation: AtomicU64::new(0),
            problem: watch::channel(None).0,
            tls,
            metrics,
        });
        let s = shared.clone();
        #[cfg(feature = "tls")]
        if shared.tls.as_ref().is_some_and(|t| t.watches_files()) {
            let (s, stop) = (shared.clone(), shutdown_rx.clone());
            spawn_supervised("zookeeper-tls-reload", move || {
                reload_tls_files(s.clone(), stop.clone())
            });
        }
        spawn_supervised("zookeeper-session", move || {
            supervise(s.clone(), shutdown_rx.clone())
        });
        Ok(Session {
            inner: Arc::new(Inner {
                shared,
                _shutdown: shutdown_tx,
            }),
        })
    }

    /// The connection's health now.
    pub fn health(&self) -> Health {
        *self.inner.shared.health.borrow()
    }

    /// A receiver that changes with the health.
    pub fn health_changes(&self) -> watch::Receiver<Health> {
        self.inner.shared.health.subscribe()
    }

    /// The ZooKeeper session id, when connected.
    pub fn session_id(&self) -> Option<i64> {
        self.inner
            .shared
            .current
            .borrow()
            .as_ref()
            .map(|g| g.session_id)
    }

    /// The ZooKeeper hosts (without chroot), for messages.
    pub fn hosts(&self) -> &str {
        self.inner.shared.cfg.hosts()
    }

    pub(crate) fn config(&self) -> &SessionConfig {
        &self.inner.shared.cfg
    }

    /// Waits for a live session, up to the connect timeout.
    ///
    /// # Errors
    ///
    /// - [`Error::Tls`], [`Error::TlsRequired`], [`Error::SaslAuthFailed`]
    ///   as soon as the cause is known (about a second): these need a
    ///   change of settings, not a retry;
    /// - [`Error::Connect`] once the connect timeout has passed, with what
    ///   was seen (the session keeps trying in the background).
    pub async fn wait_connected(&self) -> Result<()> {
        self.first_generation().await.map(|_| ())
    }

    /// Reads the TLS PEM files again now (they are also checked every 30
    /// seconds) and returns whether any had changed. New connections use the
    /// new certificates; the current one is kept until it breaks, so
    /// rotation never interrupts a session.
    ///
    /// # Errors
    ///
    /// [`Error::TlsConfig`] if a changed file cannot be used; the previous
    /// certificates stay in use.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self) -> Result<bool> {
        match &self.inner.shared.tls {
            Some(tls) => tls.reload(),
            None => Ok(false),
        }
    }

    pub(crate) fn generations(&self) -> watch::Receiver<Option<Arc<Generation>>> {
        self.inner.shared.current.subscribe()
    }

    /// The current generation, waiting up to the connect timeout for one.
    ///
    /// A connection that is slow to come is diagnosed after
    /// [`DIAGNOSE_AFTER`]: a cause no retry can change fails at once.
    pub(crate) async fn first_generation(&self) -> Result<Arc<Generation>> {
        let shared = &self.inner.shared;
        let cfg = &shared.cfg;
        let mut rx = self.generations();
        let mut problems = shared.problem.subscribe();
        let started = tokio::time::Instant::now();
        let deadline = started + cfg.connect_timeout;
        let ready = async {
            tokio::select! {
                g = rx.wait_for(|g| g.is_some()) => match g {
                    Ok(g) => g.clone().ok_or(Error::Closed),
                    Err(_) => Err(Error::Closed),
                },
                p = problems.wait_for(|p| p.is_some()) => {
                    Err(p.ok().and_then(|p| p.clone()).unwrap_or(Error::Closed))
                }
            }
        };
        let diagnosis = async {
            tokio::time::sleep_until(started + DIAGNOSE_AFTER.min(cfg.connect_timeout / 2)).await;
            diagnose(cfg).await
        };
        tokio::pin!(ready, diagnosis);
        let mut seen = None;
        loop {
            tokio::select! {
                r = &mut ready => return r,
                f = &mut diagnosis, if seen.is_none() => match f {
                    Finding::Definite(e) => return Err(e),
                    Finding::Unsure(note) => seen = Some(note),
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let mut reason = shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "no answer".into());
        if let Some(note) = seen.filter(|n| !n.is_empty()) {
            reason = format!("{reason} ({note})");
        }
        Err(Error::Connect {
            hosts: cfg.hosts().to_string(),
            timeout: cfg.connect_timeout,
            reason,
        })
    }

    pub(crate) fn claim(&self, path: &str) -> bool {
        self.owned().insert(path.to_string())
    }

    pub(crate) fn release(&self, path: &str) {
        self.owned().remove(path);
    }

    pub(crate) fn is_claimed(&self, path: &str) -> bool {
        self.owned().contains(path)
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .shared
            .owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the current ZooKeeper session from the server side, as an expiry
    /// would: a second client attaches to the session and closes it. For
    /// fault-injection tests of the recovery path; the supervisor opens a
    /// new session as it would after a real expiry.
    #[doc(hidden)]
    pub async fn expire_for_testing(&self) -> Result<()> {
        let generation = self.first_generation().await?;
        let info = generation.client.session().clone();
        let cfg = &self.inner.shared.cfg;
        // Our own client may win the session back while the second one
        // attaches (both reconnect), and a loaded machine may be slow to
        // answer: keep trying for a while.
        let mut last = zk::Error::Timeout;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            let connector = cfg
                .connector(self.inner.shared.tls.as_ref())
                .with_session(info.clone())
                .with_connection_timeout(Duration::from_secs(1));
            let attempt = cfg.connect(connector).await;
            match attempt {
                Ok(thief) => {
                    // Dropping the only handle closes the session.
                    drop(thief);
                    return Ok(());
                }
                Err(zk::Error::SessionExpired) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(Error::zk("attach to the session", "/", last))
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("hosts", &self.hosts())
            .field("health", &self.health())
            .field(
                "session_id",
                &self.session_id().map(|id| format!("{id:#x}")),
            )
            .finish()
    }
}

/// Clears `alive` when the supervisor's future is dropped (the runtime shut
/// down), so the registry never hands out a session nobody drives.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
        self.0.current.send_replace(None);
    }
}

async fn supervise(shared: Arc<Shared>, mut shutdown: watch::Receiver<()>) {
    shared.alive.store(true, Ordering::SeqCst);
    let _guard = AliveGuard(shared.clone());
    let cfg = shared.cfg.clone();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let connector = cfg.connector(shared.tls.as_ref());
        let attempt = tokio::select! {
            _ = shutdown.changed() => return,
            r = cfg.connect(connector) => r,
        };
        let client = match attempt {
            Ok(client) => client,
            Err(e) => {
                let mut reason = e.to_string();
                shared.metrics.connect_failures.increment(1);
                if e == zk::Error::AuthFailed {
                    shared.set_health(Health::AuthFailed);
                    if let Some(user) = cfg.sasl_user() {
                        let refused = Error::SaslAuthFailed {
                            hosts: cfg.hosts().to_string(),
                            user: user.to_string(),
                        };
                        reason = refused.to_string();
                        shared.problem.send_replace(Some(refused));
                    }
                } else if cfg.uses_tls() {
                    // zookeeper-client says only "timeout": find out why.
                    // (Plain sessions skip this: it would only delay the
                    // next attempt during an outage.)
                    let finding = tokio::select! {
                        _ = shutdown.changed() => return,
                        f = diagnose(&cfg) => f,
                    };
                    match finding {
                        Finding::Definite(why) => {
                            reason = why.to_string();
                            shared.problem.send_replace(Some(why));
                        }
                        Finding::Unsure(note) if !note.is_empty() => {
                            reason = format!("{reason} ({note})");
                        }
                        Finding::Unsure(_) => {}
                    }
                }
                tracing::warn!(hosts = cfg.hosts(), error = %reason, "cannot open a ZooKeeper session; retrying");
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        let number = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let started = std::time::Instant::now();
        let session_id = client.session_id().0;
        tracing::info!(
            hosts = cfg.hosts(),
            session = format_args!("{session_id:#x}"),
            timeout_ms = client.session_timeout().as_millis() as u64,
            generation = number,
            "ZooKeeper session established"
        );
        let mut states = client.state_watcher();
        // The state may have moved on between connect() and now; the watcher
        // only reports later changes, so start from what it is.
        let mut pending = Some(states.peek_state()).filter(|s| {
            !matches!(
                s,
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly
            )
        });
        // Health first: whoever sees the new session also sees it connected.
        shared.metrics.established.increment(1);
        shared.set_health(Health::Connected);
        shared.problem.send_replace(None);
        shared.current.send_replace(Some(Arc::new(Generation {
            client,
            number,
            session_id,
        })));
        loop {
            let state = match pending.take() {
                Some(s) => s,
                None => tokio::select! {
                    _ = shutdown.changed() => {
                        shared.current.send_replace(None);
                        return;
                    }
                    s = states.changed() => s,
                },
            };
            match state {
                zk::SessionState::Disconnected => {
                    tracing::warn!(
                        hosts = cfg.hosts(),
                        "ZooKeeper connection lost; reconnecting, members kept"
                    );
                    shared.set_health(Health::Disconnected);
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    tracing::info!(hosts = cfg.hosts(), "ZooKeeper connection restored");
                    shared.metrics.reconnects.increment(1);
                    shared.set_health(Health::Connected);
                }
                zk::SessionState::Expired | zk::SessionState::Closed => {
                    tracing::warn!(
                        session = format_args!("{session_id:#x}"),
                        "ZooKeeper session expired; opening a new one and restoring members and watches"
                    );
                    shared.metrics.expiries.increment(1);
                    shared.set_health(Health::Expired);
                    break;
                }
                zk::SessionState::AuthFailed => {
                    tracing::error!(
                        hosts = cfg.hosts(),
                        "ZooKeeper authentication failed; retrying"
                    );
                    shared.set_health(Health::AuthFailed);
                    break;
                }
            }
        }
        shared.current.send_replace(None);
        // A session that ended at once (refused credentials, moved) must not
        // be reopened in a tight loop; one that lived a while starts afresh.
        if started.elapsed() > cfg.session_timeout {
            backoff.reset();
        } else {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }
}

/// Reads the TLS PEM files again whenever they change, so the next
/// connection uses rotated certificates. A stat of at most three files
/// every 30 seconds.
#[cfg(feature = "tls")]
async fn reload_tls_files(shared: Arc<Shared>, mut shutdown: watch::Receiver<()>) {
    let Some(tls) = &shared.tls else { return };
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        match tls.reload() {
            Ok(true) => tracing::info!(
                hosts = shared.cfg.hosts(),
                "ZooKeeper TLS certificates reloaded"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the ZooKeeper TLS certificates; keeping the previous ones")
            }
        }
    }
}

//! One ZooKeeper session, shared by every server set, registration and watch
//! that uses the same ensemble and credentials in a process.
//!
//! The session is supervised: a background task connects, follows the
//! connection state, and after an expiry opens a new session. Users of the
//! session never hold a ZooKeeper client for long; they follow
//! [`Generation`]s, and when a new one appears (a new session after expiry)
//! they redo their work on it: registrations re-create their members,
//! watches re-arm and re-read.
//!
//! [`SessionBuilder`] holds the settings ([`config`]), the supervisor task
//! ([`supervisor`]) owns the client, and [`metrics`] reports on it; this file
//! holds the [`Session`] handle and the state they share.

mod builder;
mod config;
mod metrics;
mod supervisor;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use crate::zookeeper::error::{Error, Result};
use crate::zookeeper::security::{diagnose, Finding};
use crate::zookeeper::supervise::spawn_supervised;

pub use self::builder::SessionBuilder;
use self::config::TlsHandle;
pub(crate) use self::config::{show_host, SessionConfig};
use self::metrics::SessionMetrics;
#[cfg(feature = "tls")]
use self::supervisor::reload_tls_files;
use self::supervisor::supervise;

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
    /// a lost create never takes another registration's znode.
    owned: Mutex<HashSet<String>>,
    alive: AtomicBool,
    /// The last error opening a session, for [`Error::Connect`].
    last_error: Mutex<Option<zk::Error>>,
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
        within_connect_timeout(cfg, ready, || {
            shared
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
        .await
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
    /// would: a second client attaches to the session and closes it. Returns
    /// once the supervisor holds a new session, as it does after a real
    /// expiry. For fault-injection tests of the recovery path.
    ///
    /// Behind the `test-util` feature: a hook for tests, not for services.
    ///
    /// # Errors
    ///
    /// What [`Session::wait_connected`] returns when there is no session to
    /// end, and [`Error::ZooKeeper`] when the session could not be ended and
    /// replaced within 60 seconds (the two clients fight over the session:
    /// an attach can take up to 1.4 times the session timeout).
    #[cfg(feature = "test-util")]
    pub async fn expire_for_testing(&self) -> Result<()> {
        let generation = self.first_generation().await?;
        let info = generation.client.session().clone();
        let old = generation.session_id;
        let cfg = &self.inner.shared.cfg;
        // Attaching makes the server drop our own connection; our client
        // reconnects at once and often wins the session back before the
        // second client's close reaches the server, and then the close is
        // lost with the second client's connection. So attach and close
        // again until an attach is refused as expired (a close got through),
        // then wait for the supervisor to hold its new session.
        let mut last = zk::Error::Timeout;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut ended = false;
        while !ended && tokio::time::Instant::now() < deadline {
            let connector = cfg
                .connector(self.inner.shared.tls.as_ref())
                .with_session(info.clone())
                .with_connection_timeout(Duration::from_secs(1));
            match cfg.connect(connector).await {
                Ok(thief) => {
                    // Dropping the only handle closes the session.
                    drop(thief);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(zk::Error::SessionExpired) => ended = true,
                Err(e) => last = e,
            }
        }
        while ended && tokio::time::Instant::now() < deadline {
            if self.session_id().is_some_and(|id| id != old) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::zk("end the session", "/", last))
    }
}

/// Waits for `attempt` up to the connect timeout. A connection slow to come
/// is diagnosed after [`DIAGNOSE_AFTER`] (at most half the timeout): a
/// cause no retry can change (a refused TLS handshake, a plain client at a
/// TLS port) fails at once. Past the timeout, [`Error::Connect`] carries
/// the last client error (`last`) and what the probes noted.
///
/// One wait serves both the supervised session (`first_generation`) and a
/// bare client (`SessionBuilder::connect_client`), so they fail alike.
async fn within_connect_timeout<T>(
    cfg: &SessionConfig,
    attempt: impl Future<Output = Result<T>>,
    last: impl FnOnce() -> Option<zk::Error>,
) -> Result<T> {
    let started = tokio::time::Instant::now();
    let deadline = started + cfg.connect_timeout;
    let diagnosis = async {
        tokio::time::sleep_until(started + DIAGNOSE_AFTER.min(cfg.connect_timeout / 2)).await;
        diagnose(cfg).await
    };
    tokio::pin!(attempt, diagnosis);
    let mut seen = None;
    loop {
        tokio::select! {
            r = &mut attempt => return r,
            f = &mut diagnosis, if seen.is_none() => match f {
                Finding::Definite(e) => return Err(e),
                Finding::Unsure(note) => seen = Some(note),
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let source = last();
    let detail = match seen.filter(|n| !n.is_empty()) {
        Some(note) => Some(note),
        None if source.is_none() => Some("no answer".to_string()),
        None => None,
    };
    Err(Error::Connect {
        hosts: cfg.hosts().to_string(),
        timeout: cfg.connect_timeout,
        detail,
        source,
    })
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

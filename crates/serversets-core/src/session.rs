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

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::supervise::spawn_supervised;

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
        })
    }

    /// The hosts, without the chroot, for messages.
    pub(crate) fn hosts(&self) -> &str {
        self.connect.split('/').next().unwrap_or(&self.connect)
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
    /// a lost create never takes another registration's node.
    owned: Mutex<HashSet<String>>,
    alive: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Numbers sessions; kept here so a restarted supervisor never reuses one.
    generation: AtomicU64,
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

    pub(crate) fn config(self) -> Result<SessionConfig> {
        self.cfg
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
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let shared = Arc::new(Shared {
            cfg,
            current,
            health,
            owned: Mutex::new(HashSet::new()),
            alive: AtomicBool::new(true),
            last_error: Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        let s = shared.clone();
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
    pub async fn wait_connected(&self) -> Result<()> {
        self.first_generation().await.map(|_| ())
    }

    pub(crate) fn generations(&self) -> watch::Receiver<Option<Arc<Generation>>> {
        self.inner.shared.current.subscribe()
    }

    /// The current generation, waiting up to the connect timeout for one.
    pub(crate) async fn first_generation(&self) -> Result<Arc<Generation>> {
        let cfg = &self.inner.shared.cfg;
        let mut rx = self.generations();
        let waited = tokio::time::timeout(cfg.connect_timeout, rx.wait_for(|g| g.is_some()))
            .await
            .map(|r| r.map(|g| g.clone()));
        match waited {
            Ok(Ok(g)) => g.ok_or(Error::Closed),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Connect {
                hosts: cfg.hosts().to_string(),
                timeout: cfg.connect_timeout,
                reason: self
                    .inner
                    .shared
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_else(|| "no answer".into()),
            }),
        }
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
            let attempt = zk::Client::connector()
                .with_session(info.clone())
                .with_session_timeout(cfg.session_timeout)
                .with_connection_timeout(Duration::from_secs(1))
                .connect(&cfg.connect)
                .await;
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
        let mut connector = zk::Client::connector()
            .with_session_timeout(cfg.session_timeout)
            .with_connection_timeout(cfg.session_timeout.min(Duration::from_secs(5)));
        if let Some(digest) = &cfg.digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        let attempt = tokio::select! {
            _ = shutdown.changed() => return,
            r = connector.connect(&cfg.connect) => r,
        };
        let client = match attempt {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(hosts = cfg.hosts(), error = %e, "cannot open a ZooKeeper session; retrying");
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                if e == zk::Error::AuthFailed {
                    shared.health.send_replace(Health::AuthFailed);
                }
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
        shared.health.send_replace(Health::Connected);
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
                    shared.health.send_replace(Health::Disconnected);
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    tracing::info!(hosts = cfg.hosts(), "ZooKeeper connection restored");
                    shared.health.send_replace(Health::Connected);
                }
                zk::SessionState::Expired | zk::SessionState::Closed => {
                    tracing::warn!(
                        session = format_args!("{session_id:#x}"),
                        "ZooKeeper session expired; opening a new one and restoring members and watches"
                    );
                    shared.health.send_replace(Health::Expired);
                    break;
                }
                zk::SessionState::AuthFailed => {
                    tracing::error!(
                        hosts = cfg.hosts(),
                        "ZooKeeper authentication failed; retrying"
                    );
                    shared.health.send_replace(Health::AuthFailed);
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

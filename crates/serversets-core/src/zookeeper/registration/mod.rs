//! Keeping one member registered: through disconnects, session expiry,
//! deletion by others and failing health checks, until it is closed.
//!
//! [`RegistrationBuilder`] checks the member and starts two tasks: the
//! health check ([`ping`]) and the control loop ([`control`]) that creates,
//! watches and removes the member. The [`Registration`] handle reads their
//! state and closes them.

mod control;
mod metrics;
mod ping;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use self::control::{keep_registered, Ledger, Problem};
use self::metrics::RegistrationMetrics;
use self::ping::run_ping;
pub use self::ping::Ping;
use crate::contract::address::HostPort;
use crate::contract::codec;
use crate::contract::member::Member;
use crate::zookeeper::error::{Error, Result};
use crate::zookeeper::serverset::ServerSet;
use crate::zookeeper::session::Session;
use crate::zookeeper::supervise::spawn_supervised;

/// Where a registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// Connecting to ZooKeeper or creating the member.
    Pending,
    /// The member exists at this path.
    Registered(String),
    /// The health check fails; the member is removed until it passes.
    Unhealthy(String),
    /// Closed: the member is removed and stays removed.
    Closed,
}

/// Builds a registration; see [`ServerSet::registration`].
///
/// ```
/// use std::time::Duration;
/// use serversets_core::{Environment, Ping, RegistrationState, ServerSet};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let zk = testkit::ZkCluster::standalone()?; // a real ZooKeeper for this example
/// # let zookeepers = [zk.connect_string()];
/// let set = ServerSet::new(Environment::Production, "search", zookeepers)?;
/// let registration = set
///     .registration("10.0.0.3", 31781)
///     .additional_endpoint("http", "10.0.0.3", 31782)
///     .shard(4)
///     .metadata("weight", "2")
///     .ping(Ping::new(|| async { Ok::<(), String>(()) }))
///     .ping_interval(Duration::from_millis(500))
///     .register()
///     .await?;
/// let path = registration.path().ok_or("not registered")?;
/// assert!(path.starts_with("/discovery/prod/search/member_"));
/// assert!(matches!(registration.state(), RegistrationState::Registered(_)));
///
/// registration.close().await?; // removed at once; closing again is fine
/// assert_eq!(registration.state(), RegistrationState::Closed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RegistrationBuilder {
    set: ServerSet,
    host: String,
    port: u16,
    additional: Vec<(String, String, u16)>,
    shard: Option<i32>,
    metadata: Vec<(String, String)>,
    ping: Option<Ping>,
    ping_interval: Duration,
    ping_timeout: Duration,
}

impl RegistrationBuilder {
    pub(crate) fn new(set: ServerSet, host: &str, port: u16) -> Self {
        RegistrationBuilder {
            set,
            host: host.to_string(),
            port,
            additional: Vec::new(),
            shard: None,
            metadata: Vec::new(),
            ping: None,
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(1),
        }
    }

    /// Adds a named additional endpoint (such as `http` or `admin`).
    pub fn additional_endpoint(mut self, name: &str, host: &str, port: u16) -> Self {
        self.additional
            .push((name.to_string(), host.to_string(), port));
        self
    }

    /// Sets the shard id.
    pub fn shard(mut self, shard: i32) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }

    /// Guards the registration with a health check.
    pub fn ping(mut self, ping: Ping) -> Self {
        self.ping = Some(ping);
        self
    }

    /// How often the health check runs (default 1 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// How long one health check may take before it counts as failed
    /// (default 1 s).
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// Validates, connects, and registers. Returns once the member exists (or
    /// the first health check has failed); the registration is then kept up
    /// in the background until [`Registration::close`] or drop.
    ///
    /// # Errors
    ///
    /// - [`Error::Address`] for an invalid host or port (the member's or an
    ///   additional endpoint's);
    /// - what [`Session::wait_connected`] returns when no session comes up;
    /// - [`Error::ZooKeeper`] at once when ZooKeeper refuses the member in a
    ///   way no retry changes (ACLs, credentials, a quota);
    /// - [`Error::Registration`] when the member is not registered within
    ///   the connect timeout plus the ping timeout.
    ///
    /// After an error nothing keeps running: the registration is dropped.
    pub async fn register(self) -> Result<Registration> {
        let mut member = Member::builder("member", HostPort::new(self.host.clone(), self.port)?);
        for (name, host, port) in &self.additional {
            member = member.additional_endpoint(name.clone(), HostPort::new(host.clone(), *port)?);
        }
        if let Some(shard) = self.shard {
            member = member.shard(shard);
        }
        for (k, v) in &self.metadata {
            member = member.metadata(k.clone(), v.clone());
        }
        let member = member.build();
        let session = self.set.session()?;
        let started = std::time::Instant::now();
        session.first_generation().await?;

        let (state, mut state_rx) = watch::channel(RegistrationState::Pending);
        let (close, _) = watch::channel(false);
        let (healthy_tx, healthy) = watch::channel(match self.ping {
            Some(_) => None,
            None => Some(true),
        });
        // Held by the context so `healthy.changed()` never fails (a dropped
        // sender would make that branch ready forever).
        let healthy_tx = Arc::new(healthy_tx);
        let ctx = Arc::new(Ctx {
            session,
            set_path: self.set.inner.path.clone(),
            acls: self.set.inner.acls.clone(),
            data: codec::encode(&member),
            addr: member.addr().to_string(),
            state,
            close,
            healthy,
            _healthy_tx: healthy_tx.clone(),
            refused: watch::channel(false).0,
            ledger: Mutex::new(Ledger::default()),
            metrics: RegistrationMetrics::new(&self.set.inner.path, &member.addr().to_string()),
        });
        if let Some(ping) = self.ping {
            let c = ctx.clone();
            let (interval, timeout) = (self.ping_interval, self.ping_timeout);
            spawn_supervised("serverset-ping", move || {
                run_ping(
                    c.clone(),
                    ping.clone(),
                    healthy_tx.clone(),
                    interval,
                    timeout,
                )
            });
        }
        let c = ctx.clone();
        spawn_supervised("serverset-registration", move || keep_registered(c.clone()));

        let registration = Registration { ctx };
        // One budget for connecting, the first health check and the create.
        let budget = registration.ctx.session.config().connect_timeout + self.ping_timeout;
        let left = budget
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        let mut refused = registration.ctx.refused.subscribe();
        let settled = tokio::time::timeout(left, async {
            tokio::select! {
                s = state_rx.wait_for(|s| !matches!(s, RegistrationState::Pending)) => {
                    s.map(|s| s.clone()).ok()
                }
                // ZooKeeper refused the member (credentials, ACLs, quota):
                // no retry within the budget can change that. Dropping the
                // handle below ends the registration and removes anything a
                // create may have made.
                _ = refused.wait_for(|r| *r) => None,
            }
        })
        .await;
        match settled {
            Ok(Some(RegistrationState::Registered(_) | RegistrationState::Unhealthy(_))) => {
                Ok(registration)
            }
            // Refused: the error that woke us is ZooKeeper's answer.
            Ok(_) => match registration.ctx.last_zk_error() {
                Some(source) => Err(Error::ZooKeeper {
                    op: "create a member in",
                    path: registration.ctx.set_path.clone(),
                    source,
                }),
                None => Err(Error::Registration {
                    within: budget,
                    source: None,
                }),
            },
            Err(_) => Err(Error::Registration {
                within: budget,
                source: registration.ctx.last_zk_error(),
            }),
        }
    }
}

struct Ctx {
    session: Session,
    set_path: String,
    acls: Vec<zk::Acl>,
    data: Vec<u8>,
    addr: String,
    state: watch::Sender<RegistrationState>,
    close: watch::Sender<bool>,
    /// `None` until the first health check finished.
    healthy: watch::Receiver<Option<bool>>,
    /// Keeps the health channel open for the registration's lifetime.
    _healthy_tx: Arc<watch::Sender<Option<bool>>>,
    /// Set when ZooKeeper refuses a create outright (see `is_refusal`), so
    /// `register()` can report it without waiting out its budget.
    refused: watch::Sender<bool>,
    /// What the registration knows about its znodes.
    ledger: Mutex<Ledger>,
    /// Metric handles, registered once when the registration starts.
    metrics: RegistrationMetrics,
}

impl Ctx {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_error(&self) -> Option<String> {
        self.ledger().last_error.as_ref().map(Problem::to_string)
    }

    /// The last ZooKeeper error met, if that is what went wrong last.
    fn last_zk_error(&self) -> Option<zk::Error> {
        match &self.ledger().last_error {
            Some(Problem::ZooKeeper(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// How long `close` waits: past the session timeout the server drops
    /// the member with the session anyway.
    fn close_budget(&self) -> Duration {
        self.session.config().session_timeout + Duration::from_secs(5)
    }

    fn set_state(&self, s: RegistrationState) {
        self.state.send_if_modified(|cur| {
            if *cur == s {
                false
            } else {
                self.metrics.moved(&s);
                *cur = s;
                true
            }
        });
    }
}

/// A registered member. Dropping it deregisters, like [`Registration::close`]
/// but without waiting.
pub struct Registration {
    ctx: Arc<Ctx>,
}

impl Registration {
    /// The member's znode path while it is registered.
    pub fn path(&self) -> Option<String> {
        match &*self.ctx.state.borrow() {
            RegistrationState::Registered(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Where the registration stands now.
    pub fn state(&self) -> RegistrationState {
        self.ctx.state.borrow().clone()
    }

    /// A receiver that changes with the state.
    pub fn state_changes(&self) -> watch::Receiver<RegistrationState> {
        self.ctx.state.subscribe()
    }

    /// The last error met while keeping the member registered (a refused
    /// create, a failing health check, a lost connection), or `None` since
    /// the member was last registered. For operators: the registration
    /// retries on its own whatever this says.
    ///
    /// ```
    /// use serversets_core::{Environment, Ping, ServerSet};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let zk = testkit::ZkCluster::standalone()?; // a real ZooKeeper for this example
    /// # let zookeepers = [zk.connect_string()];
    /// let set = ServerSet::new(Environment::Staging, "search", zookeepers)?;
    /// let registration = set
    ///     .registration("10.0.0.1", 9000)
    ///     .ping(Ping::new(|| async { Err::<(), _>("backend refuses connections") }))
    ///     .register()
    ///     .await?;
    /// let why = registration.last_error().unwrap_or_default();
    /// assert!(why.contains("backend refuses connections"), "{why}");
    /// # Ok(()) }
    /// ```
    pub fn last_error(&self) -> Option<String> {
        self.ctx.last_error()
    }

    /// The member's JSON as written to ZooKeeper.
    pub fn data(&self) -> &[u8] {
        &self.ctx.data
    }

    /// Removes the member now and stops re-registering it. Watchers see it go
    /// within one notification round trip. Closing twice is fine.
    ///
    /// If ZooKeeper is unreachable, this waits up to the session timeout plus
    /// a margin (after which the server drops the member with the session)
    /// and returns; the removal keeps being retried in the background.
    ///
    /// # Errors
    ///
    /// None today: a removal ZooKeeper has not confirmed in time is logged
    /// and retried, not reported (the server removes the member with its
    /// session anyway).
    pub async fn close(&self) -> Result<()> {
        self.ctx.close.send_replace(true);
        let mut rx = self.ctx.state.subscribe();
        let budget = self.ctx.close_budget();
        let closed = rx.wait_for(|s| *s == RegistrationState::Closed);
        if tokio::time::timeout(budget, closed).await.is_err() {
            tracing::warn!(addr = %self.ctx.addr, "member removal not confirmed yet; still retrying");
        }
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.ctx.close.send_replace(true);
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("addr", &self.ctx.addr)
            .field("state", &self.state())
            .finish()
    }
}

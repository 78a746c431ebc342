//! Keeping one member registered: through disconnects, session expiry,
//! deletion by others and failing health checks, until it is closed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::contract::address::HostPort;
use crate::contract::codec;
use crate::contract::member::Member;
use crate::zookeeper::backoff::Backoff;
use crate::zookeeper::error::{is_answer, is_refusal, Error, Result};
use crate::zookeeper::serverset::ServerSet;
use crate::zookeeper::session::{Generation, Session};
use crate::zookeeper::supervise::spawn_supervised;

type PingFuture = Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>>;

/// A health check guarding a registration: while it fails, the member is
/// removed from ZooKeeper; when it passes again, the member is re-created.
///
/// A check that panics, or that is still running at its timeout, has
/// failed. At most one check of a registration runs at a time: an async
/// check still running at its timeout is cancelled, and a blocking one
/// (which cannot be cancelled) is waited for before the next starts, so a
/// hung check never piles up threads.
///
/// ```
/// use serversets_core::Ping;
///
/// // An async check...
/// let http_ok = Ping::new(|| async { Ok::<(), std::io::Error>(()) });
/// // ...or a blocking one (run on tokio's blocking pool).
/// let file_ok = Ping::blocking(|| {
///     std::fs::metadata("/").map(|_| ())
/// });
/// # let _ = (http_ok, file_ok);
/// ```
#[derive(Clone)]
pub struct Ping {
    check: Arc<dyn Fn() -> PingFuture + Send + Sync>,
    /// Blocking checks run on a thread that a timeout cannot stop.
    cancellable: bool,
}

impl Ping {
    /// An async check; an `Err`, a panic or a run longer than the ping
    /// timeout is a failure.
    pub fn new<F, Fut, E>(f: F) -> Ping
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        Ping {
            check: Arc::new(move || {
                // Calling the closure can panic too, before any future exists.
                let fut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&f));
                Box::pin(async move {
                    let fut = fut.map_err(|p| format!("check panicked: {}", panic_text(&*p)))?;
                    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(p) => Err(format!("check panicked: {}", panic_text(&*p))),
                    }
                })
            }),
            cancellable: true,
        }
    }

    /// A blocking check, run on tokio's blocking thread pool. An `Err`, a
    /// panic or a run longer than the ping timeout is a failure; a run that
    /// outlasts its timeout is waited for before the next one starts.
    pub fn blocking<F, E>(f: F) -> Ping
    where
        F: Fn() -> std::result::Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        let f = Arc::new(f);
        Ping {
            check: Arc::new(move || {
                let f = f.clone();
                Box::pin(async move {
                    match tokio::task::spawn_blocking(move || f().map_err(|e| e.to_string())).await
                    {
                        Ok(r) => r,
                        Err(e) if e.is_panic() => {
                            Err(format!("check panicked: {}", panic_text(&*e.into_panic())))
                        }
                        Err(e) => Err(format!("check did not finish: {e}")),
                    }
                })
            }),
            cancellable: false,
        }
    }
}

/// Runs a registration's checks one at a time.
struct Checker {
    ping: Ping,
    timeout: Duration,
    /// A blocking check that outlived its timeout, still to be waited for.
    running: Option<PingFuture>,
}

impl Checker {
    /// One round: a new check, or more waiting for the one still running.
    async fn round(&mut self) -> std::result::Result<(), String> {
        let mut check = match self.running.take() {
            Some(running) => running,
            None => (self.ping.check)(),
        };
        match tokio::time::timeout(self.timeout, &mut check).await {
            Ok(r) => r,
            Err(_) => {
                if !self.ping.cancellable {
                    self.running = Some(check);
                    return Err(format!(
                        "still running after {:?} (a blocking check cannot be stopped; \
                         no new one starts until it returns)",
                        self.timeout
                    ));
                }
                Err(format!("no answer within {:?}", self.timeout))
            }
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string payload".into()
    }
}

impl fmt::Debug for Ping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ping")
    }
}

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
/// let endpoint = set
///     .registration("10.0.0.3", 31781)
///     .additional_endpoint("http", "10.0.0.3", 31782)
///     .shard(4)
///     .metadata("weight", "2")
///     .ping(Ping::new(|| async { Ok::<(), String>(()) }))
///     .ping_interval(Duration::from_millis(500))
///     .register()
///     .await?;
/// let path = endpoint.path().ok_or("not registered")?;
/// assert!(path.starts_with("/discovery/prod/search/member_"));
/// assert!(matches!(endpoint.state(), RegistrationState::Registered(_)));
///
/// endpoint.close().await?; // removed at once; closing again is fine
/// assert_eq!(endpoint.state(), RegistrationState::Closed);
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
            node: Mutex::new(Node::default()),
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

        let endpoint = Registration { ctx };
        // One budget for connecting, the first health check and the create.
        let connect_timeout = (endpoint.ctx.session.config().connect_timeout + self.ping_timeout)
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        let mut refused = endpoint.ctx.refused.subscribe();
        let settled = tokio::time::timeout(connect_timeout, async {
            tokio::select! {
                s = state_rx.wait_for(|s| !matches!(s, RegistrationState::Pending)) => {
                    s.map(|s| s.clone()).ok()
                }
                // ZooKeeper refused the member (credentials, ACLs, quota):
                // no retry within the budget can change that. Dropping the
                // endpoint below ends the registration and removes anything
                // a create may have made.
                _ = refused.wait_for(|r| *r) => None,
            }
        })
        .await;
        match settled {
            Ok(Some(RegistrationState::Registered(_) | RegistrationState::Unhealthy(_))) => {
                Ok(endpoint)
            }
            Ok(_) => Err(Error::Registration(
                endpoint
                    .ctx
                    .last_error()
                    .unwrap_or_else(|| "refused".into()),
            )),
            Err(_) => Err(Error::Registration(
                endpoint
                    .ctx
                    .last_error()
                    .unwrap_or_else(|| format!("not registered within {connect_timeout:?}")),
            )),
        }
    }
}

#[derive(Default)]
struct Node {
    /// The member this registration owns now.
    current: Option<Owned>,
    /// A create on this generation may have been applied without an answer;
    /// look for the node before creating another.
    uncertain: Option<u64>,
    /// Members of sessions this process gave up on (the client declares a
    /// session expired after a long disconnect, while the server may keep it
    /// until its own timeout): deleted from the next session so that a
    /// registration never shows twice.
    orphans: Vec<Owned>,
    last_error: Option<String>,
    ever_registered: bool,
}

/// A member node and the session that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    path: String,
    generation: u64,
    session_id: i64,
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
    node: Mutex<Node>,
    /// Metric handles, registered once when the registration starts.
    metrics: RegistrationMetrics,
}

/// The `state` label of `serversets_registrations`, by state.
const STATE_LABELS: [&str; 4] = ["pending", "registered", "unhealthy", "closed"];

fn state_index(state: &RegistrationState) -> usize {
    match state {
        RegistrationState::Pending => 0,
        RegistrationState::Registered(_) => 1,
        RegistrationState::Unhealthy(_) => 2,
        RegistrationState::Closed => 3,
    }
}

/// A registration's metrics, labelled `set` (its path) and `endpoint`
/// (the member's address). Registered once per registration, so an update
/// is an atomic add.
struct RegistrationMetrics {
    /// `serversets_registrations{state}`: registrations in each state; this
    /// one counts 1 in the state it is in, until it is dropped.
    states: [metrics::Gauge; 4],
    /// Index into `states` of the state counted now.
    current: std::sync::atomic::AtomicUsize,
    /// `serversets_registration_creates_total`: members created (or a lost
    /// create's node adopted).
    creates: metrics::Counter,
    /// `serversets_registration_reregistrations_total`: creates after the
    /// first (a new session, a deleted member, a passing check again).
    reregistrations: metrics::Counter,
    /// `serversets_registration_ping_seconds`: how long each health check
    /// took.
    ping: metrics::Histogram,
    /// `serversets_registration_ping_failures_total`: health checks that
    /// failed (error, panic or timeout).
    ping_failures: metrics::Counter,
}

impl RegistrationMetrics {
    fn new(set: &str, endpoint: &str) -> RegistrationMetrics {
        metrics::describe_gauge!(
            "serversets_registrations",
            "Registrations in each state: pending, registered, unhealthy, closed"
        );
        metrics::describe_counter!(
            "serversets_registration_creates_total",
            "Members a registration created (or adopted after a lost create)"
        );
        metrics::describe_counter!(
            "serversets_registration_reregistrations_total",
            "Members a registration created again after its first (new session, deletion, check passing again)"
        );
        metrics::describe_histogram!(
            "serversets_registration_ping_seconds",
            metrics::Unit::Seconds,
            "How long a registration's health check took"
        );
        metrics::describe_counter!(
            "serversets_registration_ping_failures_total",
            "Health checks of a registration that failed (error, panic or timeout)"
        );
        let labels = [("set", set.to_string()), ("endpoint", endpoint.to_string())];
        let states = STATE_LABELS.map(|state| {
            let mut with_state = labels.to_vec();
            with_state.push(("state", state.to_string()));
            metrics::gauge!("serversets_registrations", &with_state)
        });
        states[0].increment(1.0);
        RegistrationMetrics {
            states,
            current: std::sync::atomic::AtomicUsize::new(0),
            creates: metrics::counter!("serversets_registration_creates_total", &labels),
            reregistrations: metrics::counter!(
                "serversets_registration_reregistrations_total",
                &labels
            ),
            ping: metrics::histogram!("serversets_registration_ping_seconds", &labels),
            ping_failures: metrics::counter!(
                "serversets_registration_ping_failures_total",
                &labels
            ),
        }
    }

    /// Counts the registration in `to`'s state instead of the one before.
    fn moved(&self, to: &RegistrationState) {
        let to = state_index(to);
        let from = self.current.swap(to, std::sync::atomic::Ordering::Relaxed);
        if from != to {
            self.states[from].decrement(1.0);
            self.states[to].increment(1.0);
        }
    }
}

impl Drop for RegistrationMetrics {
    fn drop(&mut self) {
        let current = self.current.load(std::sync::atomic::Ordering::Relaxed);
        self.states[current].decrement(1.0);
    }
}

impl Ctx {
    fn node(&self) -> std::sync::MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_error(&self) -> Option<String> {
        self.node().last_error.clone()
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
    /// let endpoint = set
    ///     .registration("10.0.0.1", 9000)
    ///     .ping(Ping::new(|| async { Err::<(), _>("backend refuses connections") }))
    ///     .register()
    ///     .await?;
    /// let why = endpoint.last_error().unwrap_or_default();
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

#[tracing::instrument(name = "registration_ping", level = "info", skip_all, fields(
    set = %ctx.set_path,
    endpoint = %ctx.addr,
))]
async fn run_ping(
    ctx: Arc<Ctx>,
    ping: Ping,
    healthy: Arc<watch::Sender<Option<bool>>>,
    interval: Duration,
    timeout: Duration,
) {
    let mut close = ctx.close.subscribe();
    let mut checker = Checker {
        ping,
        timeout,
        running: None,
    };
    loop {
        if *close.borrow_and_update() {
            return;
        }
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = checker.round() => r,
            _ = close.changed() => return,
        };
        ctx.metrics.ping.record(started.elapsed().as_secs_f64());
        if result.is_err() {
            ctx.metrics.ping_failures.increment(1);
        }
        let ok = result.is_ok();
        let was = *healthy.borrow();
        if was != Some(ok) {
            match &result {
                Ok(()) => tracing::info!(addr = %ctx.addr, "health check passes; registering"),
                Err(e) => {
                    tracing::warn!(addr = %ctx.addr, error = %e, "health check fails; deregistering");
                    ctx.node().last_error = Some(format!("health check failed: {e}"));
                }
            }
            healthy.send_replace(Some(ok));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = close.changed() => {}
        }
    }
}

/// The registration's control loop: one pass per event, each pass bringing
/// ZooKeeper in line with what the registration wants. It ends only when the
/// handle is closed or dropped and the member is known to be gone; every
/// failure before that is retried with back-off.
#[tracing::instrument(name = "registration", level = "info", skip_all, fields(
    set = %ctx.set_path,
    endpoint = %ctx.addr,
))]
async fn keep_registered(ctx: Arc<Ctx>) {
    let mut generations = ctx.session.generations();
    let mut close = ctx.close.subscribe();
    let mut healthy = ctx.healthy.clone();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(30));
    loop {
        let closing = *close.borrow_and_update();
        let generation = generations.borrow_and_update().clone();
        let wanted = !closing && *healthy.borrow_and_update() == Some(true);
        retire_stale(&ctx, generation.as_deref(), closing);

        let Some(generation) = generation else {
            if closing && ctx.node().current.is_none() {
                ctx.set_state(RegistrationState::Closed);
                return;
            }
            tokio::select! {
                _ = generations.changed() => {}
                _ = close.changed() => {}
            }
            continue;
        };

        let outcome = if wanted {
            keep(
                &ctx,
                &generation,
                &mut backoff,
                &mut generations,
                &mut close,
                &mut healthy,
            )
            .await
        } else {
            match unwanted(&ctx, &generation, closing).await {
                Ok(Settled::Done) => {
                    ctx.set_state(RegistrationState::Closed);
                    return;
                }
                Ok(Settled::Gone) => {
                    let why = ctx
                        .last_error()
                        .unwrap_or_else(|| "health check pending".into());
                    if *healthy.borrow() == Some(false) {
                        ctx.set_state(RegistrationState::Unhealthy(why));
                    }
                    tokio::select! {
                        _ = generations.changed() => {}
                        _ = close.changed() => {}
                        _ = healthy.changed() => {}
                    }
                    continue;
                }
                Ok(Settled::Again) => Ok(()),
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(()) => backoff.reset(),
            Err(e) => {
                // The error first: whoever the refusal wakes reads it.
                ctx.node().last_error = Some(format!("{e}"));
                if is_refusal(&e) && !ctx.node().ever_registered {
                    ctx.refused.send_replace(true);
                }
                let delay = backoff.next_delay();
                tracing::warn!(path = %ctx.set_path, error = %e, retry_in = ?delay, "ZooKeeper operation failed; retrying");
                // Closing and health changes must not wait out the back-off.
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = generations.changed() => {}
                    _ = close.changed() => {}
                    _ = healthy.changed() => {}
                }
            }
        }
    }
}

/// A member belongs to the session that created it: once that session is
/// over (no session now, or a newer one), the member is gone with it, or
/// soon will be; it is no longer ours to report.
fn retire_stale(ctx: &Ctx, generation: Option<&Generation>, closing: bool) {
    let mut node = ctx.node();
    let stale = match (&node.current, generation) {
        (Some(owned), Some(gen)) => owned.generation != gen.number,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !stale {
        return;
    }
    if let Some(owned) = node.current.take() {
        ctx.session.release(&owned.path);
        node.orphans.push(owned);
    }
    drop(node);
    if !closing {
        ctx.set_state(RegistrationState::Pending);
    }
}

/// Deletes members left by earlier sessions that the server still keeps.
async fn remove_orphans(ctx: &Ctx, generation: &Generation) -> std::result::Result<(), zk::Error> {
    loop {
        let Some(orphan) = ctx.node().orphans.last().cloned() else {
            return Ok(());
        };
        if orphan.session_id != generation.session_id {
            match generation.client.check_stat(&orphan.path).await? {
                Some(stat) if stat.ephemeral_owner == orphan.session_id => {
                    match generation
                        .client
                        .delete(&orphan.path, Some(stat.version))
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(path = %orphan.path, "removed the member an earlier session left behind");
                        }
                        Err(zk::Error::NoNode | zk::Error::BadVersion) => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => {}
            }
        }
        ctx.node().orphans.retain(|o| *o != orphan);
    }
}

/// The member is wanted: create it, or watch the one there is until
/// something changes.
async fn keep(
    ctx: &Ctx,
    generation: &Generation,
    backoff: &mut Backoff,
    generations: &mut watch::Receiver<Option<Arc<Generation>>>,
    close: &mut watch::Receiver<bool>,
    healthy: &mut watch::Receiver<Option<bool>>,
) -> std::result::Result<(), zk::Error> {
    if ctx.node().current.is_none() {
        create(ctx, generation).await?;
    }
    // The member exists: remove what earlier sessions left (after the
    // create, so the endpoint is back in the set as soon as it can be),
    // then report it.
    remove_orphans(ctx, generation).await?;
    let Some(owned) = ctx.node().current.clone() else {
        return Ok(());
    };
    let path = owned.path;
    ctx.set_state(RegistrationState::Registered(path.clone()));
    match generation.client.check_and_watch_stat(&path).await? {
        (Some(stat), watcher) if stat.ephemeral_owner == generation.session_id => {
            backoff.reset();
            tokio::select! {
                event = watcher.changed() => {
                    if event.event_type == zk::EventType::NodeDeleted {
                        tracing::warn!(path = %path, "member deleted by someone else; re-creating it");
                        forget(ctx, &path);
                        ctx.set_state(RegistrationState::Pending);
                    }
                }
                _ = generations.changed() => {}
                _ = close.changed() => {}
                _ = healthy.changed() => {}
            }
        }
        _ => {
            tracing::warn!(path = %path, "member is gone; re-creating it");
            forget(ctx, &path);
            ctx.set_state(RegistrationState::Pending);
        }
    }
    Ok(())
}

/// How far removing an unwanted member got.
enum Settled {
    /// Closing, and the member is known to be gone: the registration ends.
    Done,
    /// Unhealthy, and the member is known to be gone: wait for a change.
    Gone,
    /// A step was made; look again.
    Again,
}

/// The member is not wanted (closing, or the check fails): remove it, and
/// any node a create whose answer was lost may have made.
async fn unwanted(
    ctx: &Ctx,
    generation: &Generation,
    closing: bool,
) -> std::result::Result<Settled, zk::Error> {
    remove_orphans(ctx, generation).await?;
    let current = ctx.node().current.clone();
    if let Some(owned) = current {
        remove(ctx, generation, &owned.path).await?;
        return Ok(Settled::Again);
    }
    if ctx.node().uncertain == Some(generation.number) {
        if let Some(path) = adopt(ctx, generation).await? {
            ctx.node().current = Some(Owned {
                path,
                generation: generation.number,
                session_id: generation.session_id,
            });
        }
        return Ok(Settled::Again);
    }
    Ok(if closing {
        Settled::Done
    } else {
        Settled::Gone
    })
}

fn forget(ctx: &Ctx, path: &str) {
    let mut node = ctx.node();
    if node.current.as_ref().is_some_and(|o| o.path == path) {
        node.current = None;
    }
    drop(node);
    ctx.session.release(path);
}

async fn remove(
    ctx: &Ctx,
    generation: &Generation,
    path: &str,
) -> std::result::Result<(), zk::Error> {
    match generation.client.delete(path, None).await {
        Ok(()) | Err(zk::Error::NoNode) => {
            tracing::info!(path, "member removed");
            forget(ctx, path);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[tracing::instrument(name = "register_create", level = "debug", skip_all, fields(
    generation = generation.number,
    session = format_args!("{:#x}", generation.session_id),
))]
async fn create(ctx: &Ctx, generation: &Generation) -> std::result::Result<(), zk::Error> {
    let client = &generation.client;
    let uncertain = ctx.node().uncertain == Some(generation.number);
    if uncertain {
        if let Some(path) = adopt(ctx, generation).await? {
            tracing::info!(path = %path, "found the member a lost create made; keeping it");
            return registered(ctx, generation, path);
        }
    }
    let prefix = format!("{}/member_", ctx.set_path);
    let acls = zk::Acls::new(&ctx.acls);
    let options = zk::CreateMode::EphemeralSequential.with_acls(acls);
    loop {
        ctx.node().uncertain = Some(generation.number);
        match client.create(&prefix, &ctx.data, &options).await {
            Ok((_, seq)) => return registered(ctx, generation, format!("{prefix}{seq}")),
            Err(zk::Error::NoNode) => {
                ctx.node().uncertain = None;
                let parents = zk::CreateMode::Persistent.with_acls(acls);
                client.mkdir(&ctx.set_path, &parents).await?;
            }
            Err(e) => {
                // Only ZooKeeper's own answer says the create was not
                // applied; after any other error a node may exist.
                if is_answer(&e) {
                    ctx.node().uncertain = None;
                }
                return Err(e);
            }
        }
    }
}

fn registered(
    ctx: &Ctx,
    generation: &Generation,
    path: String,
) -> std::result::Result<(), zk::Error> {
    ctx.session.claim(&path);
    {
        let mut node = ctx.node();
        node.current = Some(Owned {
            path: path.clone(),
            generation: generation.number,
            session_id: generation.session_id,
        });
        node.uncertain = None;
        node.last_error = None;
        if node.ever_registered {
            ctx.metrics.reregistrations.increment(1);
        }
        node.ever_registered = true;
    }
    ctx.metrics.creates.increment(1);
    tracing::info!(path = %path, addr = %ctx.addr, "member registered");
    Ok(())
}

/// After a create whose answer was lost: is there a member with our data,
/// owned by this session, that no other registration claims?
///
/// The list is read after a `sync`: the client may have reconnected to a
/// follower that has not applied the create yet, and a list from there
/// would miss the node and lead to a second one.
async fn adopt(
    ctx: &Ctx,
    generation: &Generation,
) -> std::result::Result<Option<String>, zk::Error> {
    match generation.client.sync(&ctx.set_path).await {
        Ok(()) | Err(zk::Error::NoNode) => {}
        Err(e) => return Err(e),
    }
    let children = match generation.client.list_children(&ctx.set_path).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    for name in children.iter().filter(|n| n.starts_with("member_")) {
        let path = format!("{}/{name}", ctx.set_path);
        if ctx.session.is_claimed(&path) {
            continue;
        }
        match generation.client.get_data(&path).await {
            // Claiming is the atomic step: two registrations with the same
            // data never adopt the same node.
            Ok((data, stat))
                if stat.ephemeral_owner == generation.session_id
                    && data == ctx.data
                    && ctx.session.claim(&path) =>
            {
                return Ok(Some(path));
            }
            Ok(_) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    ctx.node().uncertain = None;
    Ok(None)
}

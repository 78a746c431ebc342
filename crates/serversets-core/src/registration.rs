//! Keeping one member registered: through disconnects, session expiry,
//! deletion by others and failing health checks, until it is closed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::error::{is_transient, Error, Result};
use crate::session::{Generation, Session};
use crate::supervise::spawn_supervised;
use crate::{codec, HostPort, Member, ServerSet};

type PingFuture = Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>>;

/// A health check guarding a registration: while it fails, the member is
/// removed from ZooKeeper; when it passes again, the member is re-created.
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
pub struct Ping(Arc<dyn Fn() -> PingFuture + Send + Sync>);

impl Ping {
    /// An async check; an `Err` (or a run longer than the ping timeout) is a
    /// failure.
    pub fn new<F, Fut, E>(f: F) -> Ping
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        Ping(Arc::new(move || {
            let fut = f();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        }))
    }

    /// A blocking check, run on tokio's blocking thread pool.
    pub fn blocking<F, E>(f: F) -> Ping
    where
        F: Fn() -> std::result::Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        let f = Arc::new(f);
        Ping(Arc::new(move || {
            let f = f.clone();
            Box::pin(async move {
                match tokio::task::spawn_blocking(move || f().map_err(|e| e.to_string())).await {
                    Ok(r) => r,
                    Err(e) => Err(format!("ping panicked: {e}")),
                }
            })
        }))
    }

    async fn run(&self, timeout: Duration) -> std::result::Result<(), String> {
        match tokio::time::timeout(timeout, (self.0)()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
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
    /// in the background until [`Endpoint::close`] or drop.
    pub async fn register(self) -> Result<Endpoint> {
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
            node: Mutex::new(Node::default()),
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

        let endpoint = Endpoint { ctx };
        // One budget for connecting, the first health check and the create.
        let connect_timeout = (endpoint.ctx.session.config().connect_timeout + self.ping_timeout)
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        let settled = tokio::time::timeout(
            connect_timeout,
            state_rx.wait_for(|s| !matches!(s, RegistrationState::Pending)),
        )
        .await
        .map(|r| r.map(|s| s.clone()));
        match settled {
            Ok(Ok(RegistrationState::Closed)) => {
                let reason = endpoint.ctx.last_error().unwrap_or_else(|| "closed".into());
                Err(Error::Registration(reason))
            }
            Ok(_) => Ok(endpoint),
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
    /// The member path and the session generation that created it.
    current: Option<(String, u64)>,
    /// A create on this generation may have succeeded without an answer;
    /// look for the node before creating another.
    uncertain: Option<u64>,
    last_error: Option<String>,
    ever_registered: bool,
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
    node: Mutex<Node>,
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
                *cur = s;
                true
            }
        });
    }
}

/// A registered member. Dropping it deregisters, like [`Endpoint::close`]
/// but without waiting.
pub struct Endpoint {
    ctx: Arc<Ctx>,
}

impl Endpoint {
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

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.ctx.close.send_replace(true);
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.ctx.addr)
            .field("state", &self.state())
            .finish()
    }
}

async fn run_ping(
    ctx: Arc<Ctx>,
    ping: Ping,
    healthy: Arc<watch::Sender<Option<bool>>>,
    interval: Duration,
    timeout: Duration,
) {
    let mut close = ctx.close.subscribe();
    loop {
        if *close.borrow_and_update() {
            return;
        }
        let result = ping.run(timeout).await;
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
/// ZooKeeper in line with what the registration wants.
async fn keep_registered(ctx: Arc<Ctx>) {
    let mut generations = ctx.session.generations();
    let mut close = ctx.close.subscribe();
    let mut healthy = ctx.healthy.clone();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(30));
    loop {
        let closing = *close.borrow_and_update();
        let generation = generations.borrow_and_update().clone();
        let wanted = !closing && *healthy.borrow_and_update() == Some(true);

        // A member from an expired session is gone with it.
        {
            let mut node = ctx.node();
            let stale = match (&node.current, &generation) {
                (Some((_, g)), Some(gen)) => *g != gen.number,
                (Some(_), None) => false,
                (None, _) => false,
            };
            if stale {
                if let Some((path, _)) = node.current.take() {
                    ctx.session.release(&path);
                }
            }
        }

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

        let current = ctx.node().current.clone();
        let outcome: std::result::Result<(), zk::Error> = if !wanted {
            match current {
                Some((path, _)) => remove(&ctx, &generation, &path).await,
                None if ctx.node().uncertain == Some(generation.number) => {
                    // A lost create may have made a node: find it and
                    // remove it before reporting the member gone.
                    match adopt(&ctx, &generation).await {
                        Ok(Some(path)) => {
                            ctx.node().current = Some((path, generation.number));
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                None => {
                    if closing {
                        ctx.set_state(RegistrationState::Closed);
                        return;
                    }
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
            }
        } else {
            match current {
                None => create(&ctx, &generation).await,
                Some((path, _)) => match generation.client.check_and_watch_stat(&path).await {
                    Ok((Some(stat), watcher)) if stat.ephemeral_owner == generation.session_id => {
                        backoff.reset();
                        tokio::select! {
                            event = watcher.changed() => {
                                if event.event_type == zk::EventType::NodeDeleted {
                                    tracing::warn!(path = %path, "member deleted by someone else; re-creating it");
                                    forget(&ctx, &path);
                                }
                            }
                            _ = generations.changed() => {}
                            _ = close.changed() => {}
                            _ = healthy.changed() => {}
                        }
                        continue;
                    }
                    Ok(_) => {
                        tracing::warn!(path = %path, "member is gone; re-creating it");
                        forget(&ctx, &path);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            }
        };
        match outcome {
            Ok(()) => backoff.reset(),
            Err(e) => {
                let fatal_first = !is_transient(&e) && !ctx.node().ever_registered && !closing;
                ctx.node().last_error = Some(format!("{e}"));
                if fatal_first {
                    tracing::error!(path = %ctx.set_path, error = %e, "cannot register member");
                    ctx.set_state(RegistrationState::Closed);
                    return;
                }
                let delay = backoff.next_delay();
                tracing::warn!(path = %ctx.set_path, error = %e, retry_in = ?delay, "ZooKeeper operation failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = generations.changed() => {}
                }
            }
        }
    }
}

fn forget(ctx: &Ctx, path: &str) {
    let mut node = ctx.node();
    if node.current.as_ref().is_some_and(|(p, _)| p == path) {
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
                if e != zk::Error::ConnectionLoss && e != zk::Error::Timeout {
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
        node.current = Some((path.clone(), generation.number));
        node.uncertain = None;
        node.ever_registered = true;
        node.last_error = None;
    }
    tracing::info!(path = %path, addr = %ctx.addr, "member registered");
    ctx.set_state(RegistrationState::Registered(path));
    Ok(())
}

/// After a create whose answer was lost: is there a member with our data,
/// owned by this session, that no other registration claims?
async fn adopt(
    ctx: &Ctx,
    generation: &Generation,
) -> std::result::Result<Option<String>, zk::Error> {
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

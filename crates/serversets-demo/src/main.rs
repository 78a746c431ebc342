//! `cargo xtask demo`: a narrated walk-through a newcomer runs first.
//!
//! The demo is a list of [`Step`]s run in order against one [`Demo`] context.
//! A step narrates what it does and returns an error when something did not
//! behave as narrated; the remaining steps are then skipped, cleanup always
//! runs, and the command exits non-zero (so CI can run the demo too).
//!
//! To add a step: write `fn my_step(demo: &mut Demo) -> Result<()>` (or an
//! async one returning [`StepFuture`]), keep what later steps need in a field
//! of [`Demo`], and list it in [`steps`].

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serversets_core::{Environment, Ping, Registration, ServerSet, Snapshot, Watch, Watcher};
use serversets_fixedset::FixedSet;
use testkit::{four_letter_word, ZkCluster, ZkOptions};

use crate::proc::alive;
use crate::ui::{human, Ui};
use crate::zk::parse_mode;
use crate::{provision, Result};

/// The future an async step body returns; it may borrow the context.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// What a step runs.
pub enum Body {
    /// Blocking work (starting servers, plain checks).
    Sync(fn(&mut Demo) -> Result<()>),
    /// Async work, run on the demo's tokio runtime.
    Async(for<'a> fn(&'a mut Demo) -> StepFuture<'a>),
}

/// One narrated step of the demo.
pub struct Step {
    /// A short title, shown as `[3/7] title`.
    pub name: &'static str,
    /// The work.
    pub body: Body,
    /// An async step is failed when it takes longer than this (sync steps
    /// bound their own waits, e.g. testkit's ready timeout).
    pub timeout: Duration,
}

impl Step {
    pub fn sync(name: &'static str, body: fn(&mut Demo) -> Result<()>) -> Step {
        Step {
            name,
            body: Body::Sync(body),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn async_(name: &'static str, body: for<'a> fn(&'a mut Demo) -> StepFuture<'a>) -> Step {
        Step {
            name,
            body: Body::Async(body),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Everything the steps share: output, and the things they start.
pub struct Demo {
    ui: Ui,
    /// The demo's own ZooKeeper ensemble.
    pub zk: Option<ZkCluster>,
    /// Pids of the ZooKeeper servers, to prove they are gone at the end.
    pub zk_pids: Vec<u32>,
    /// The fixed set of the fixedset steps.
    pub fixed: Option<FixedSet>,
    /// The demo's HTTP backends.
    pub backends: Vec<Backend>,
    /// The server set the backends register in.
    pub set: Option<ServerSet>,
    /// The backends' registrations.
    pub endpoints: Vec<Registration>,
    /// A client's watch on the set.
    pub watch: Option<Watch>,
}

/// A tiny HTTP backend whose health the demo controls.
pub struct Backend {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// Its port.
    pub port: u16,
    /// What its health check reports.
    pub healthy: Arc<AtomicBool>,
    /// Requests it answered.
    pub served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Demo {
    fn new(ui: Ui) -> Demo {
        Demo {
            ui,
            zk: None,
            zk_pids: Vec::new(),
            fixed: None,
            backends: Vec::new(),
            set: None,
            endpoints: Vec::new(),
            watch: None,
        }
    }

    /// A line of narration under the current step.
    pub fn say(&self, text: &str) {
        println!("      {text}");
    }

    /// A line of narration showing something that was checked.
    pub fn ok(&self, text: &str) {
        println!("      {} {text}", self.ui.green("✓"));
    }

    /// Fails the step with `what` unless `cond` holds.
    pub fn check(&self, cond: bool, what: impl Into<String>) -> Result<()> {
        let what = what.into();
        if cond {
            self.ok(&what);
            Ok(())
        } else {
            Err(format!("expected: {what}").into())
        }
    }

    /// The running ensemble, or an error saying a previous step did not run.
    pub fn zk(&self) -> Result<&ZkCluster> {
        self.zk
            .as_ref()
            .ok_or_else(|| "ZooKeeper is not running (the start step did not run)".into())
    }

    fn fixed(&self) -> Result<&FixedSet> {
        self.fixed
            .as_ref()
            .ok_or_else(|| "no fixed set (the fixedset step did not run)".into())
    }

    fn members(&self, snap: &Snapshot) -> String {
        let list: Vec<String> = snap.iter().map(|m| m.addr().to_string()).collect();
        format!("[{}]", list.join(", "))
    }
}

/// The demo, in order.
pub fn steps() -> Vec<Step> {
    vec![
        Step::sync("Provision system packages", provision_step),
        Step::sync("Start a 3-node ZooKeeper ensemble", start_zk),
        Step::sync("Ask each ZooKeeper server its role", roles),
        Step::sync("A FixedSet: a server set without ZooKeeper", fixedset_show),
        Step::async_(
            "Change notification: replace the list, the watcher wakes",
            fixedset_change,
        ),
        Step::async_(
            "Closing: consumers learn the source is gone",
            fixedset_close,
        ),
        Step::async_(
            "Register three HTTP backends in ZooKeeper, each guarded by a health check",
            register_backends,
        ),
        Step::async_("A client watches the server set", watch_set),
        Step::async_(
            "Send 300 HTTP requests through httpset over the watched set",
            http_spread,
        ),
        Step::async_(
            "A backend fails its health check: it leaves the set, then comes back",
            health_flip,
        ),
        Step::async_(
            "Memcache keys on a ketama ring over three real memcached servers",
            memcache_keys,
        ),
        Step::async_(
            "Kill the ZooKeeper leader: registrations and the watch carry on",
            kill_leader,
        ),
        Step::async_(
            "Shut the backends down: each one deregisters at once",
            deregister,
        ),
    ]
}

pub fn run() -> Result<ExitCode> {
    let ui = Ui::stdout();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut demo = Demo::new(ui);
    let steps = steps();
    let n = steps.len() + 1;
    let started = Instant::now();
    println!(
        "{}",
        ui.bold("serversets demo: service discovery you can watch")
    );
    let mut failed: Option<(&str, String)> = None;
    for (i, step) in steps.iter().enumerate() {
        let title = format!("[{}/{n}] {}", i + 1, step.name);
        if failed.is_some() {
            println!("{} {}", ui.dim("skip"), ui.dim(&title));
            continue;
        }
        println!("{} {}", ui.cyan("==>"), ui.bold(&title));
        let t = Instant::now();
        let result = match step.body {
            Body::Sync(body) => body(&mut demo),
            Body::Async(body) => runtime.block_on(async {
                match tokio::time::timeout(step.timeout, body(&mut demo)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("did not finish within {}", human(step.timeout)).into()),
                }
            }),
        };
        match result {
            Ok(()) => println!("      {}", ui.dim(&format!("({})", human(t.elapsed())))),
            Err(e) => {
                println!("      {} {e}", ui.red("✗"));
                failed = Some((step.name, e.to_string()));
            }
        }
    }

    println!(
        "{} {}",
        ui.cyan("==>"),
        ui.bold(&format!("[{n}/{n}] Clean up"))
    );
    let t = Instant::now();
    let cleaned = cleanup(&mut demo);
    match &cleaned {
        Ok(()) => println!("      {}", ui.dim(&format!("({})", human(t.elapsed())))),
        Err(e) => println!("      {} {e}", ui.red("✗")),
    }
    drop(runtime);

    println!();
    match (failed, cleaned) {
        (None, Ok(())) => {
            println!(
                "{} every step behaved as narrated ({})",
                ui.green("demo passed:"),
                human(started.elapsed())
            );
            Ok(ExitCode::SUCCESS)
        }
        (Some((name, e)), _) => {
            println!("{} step \"{name}\": {e}", ui.red("demo failed:"));
            Ok(ExitCode::FAILURE)
        }
        (None, Err(e)) => {
            println!("{} clean-up: {e}", ui.red("demo failed:"));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn provision_step(demo: &mut Demo) -> Result<()> {
    demo.say("the demo runs real servers: ZooKeeper (Debian's package, on a JVM) and memcached");
    provision::ensure(&demo.ui, "      ")
}

fn start_zk(demo: &mut Demo) -> Result<()> {
    demo.say("three ZooKeeper JVMs on free loopback ports, each with its own data directory");
    let zk = ZkCluster::start(ZkOptions {
        servers: 3,
        ..ZkOptions::default()
    })?;
    demo.zk_pids = zk.pids().into_iter().flatten().collect();
    demo.say(&format!(
        "connect string: {}",
        demo.ui.bold(&zk.connect_string())
    ));
    demo.say(&format!("data and logs:  {}", zk.root().display()));
    let count = demo.zk_pids.len();
    demo.zk = Some(zk);
    demo.check(count == 3, format!("{count} of 3 servers running"))
}

fn roles(demo: &mut Demo) -> Result<()> {
    let zk = demo.zk()?;
    let mut modes = Vec::new();
    for i in 0..zk.len() {
        let addr = zk.server_address(i)?;
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("bad server address {addr}"))?;
        let mode = four_letter_word(port, "srvr")
            .ok()
            .and_then(|r| parse_mode(&r))
            .unwrap_or_else(|| "no answer".into());
        demo.say(&format!("server {i} at {addr}: {}", demo.ui.bold(&mode)));
        modes.push(mode);
    }
    let leaders = modes.iter().filter(|m| *m == "leader").count();
    let followers = modes.iter().filter(|m| *m == "follower").count();
    demo.check(
        leaders == 1 && followers == 2,
        format!("one leader and two followers (got {leaders} and {followers})"),
    )
}

fn fixedset_show(demo: &mut Demo) -> Result<()> {
    demo.say("FixedSet::new([...]) serves a static list through the same Watcher trait");
    demo.say("as a ZooKeeper watch, so every balancer runs without ZooKeeper too");
    let set = FixedSet::new(["10.0.0.2:8080", "10.0.0.1:8080", "10.0.0.3:8080"])?;
    let snap = set.snapshot();
    demo.say(&format!(
        "snapshot v{}: {}",
        snap.version(),
        demo.members(&snap)
    ));
    let sorted = snap
        .iter()
        .map(|m| m.addr().to_string())
        .collect::<Vec<_>>()
        == ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"];
    demo.check(sorted, "three members, sorted by address")?;
    match FixedSet::new(["10.0.0.1:8080", "10.0.0.4"]) {
        Err(e) => demo.ok(&format!("a bad entry is refused: {e}")),
        Ok(_) => return Err("\"10.0.0.4\" (no port) was accepted".into()),
    }
    demo.fixed = Some(set);
    Ok(())
}

fn fixedset_change(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let set = demo.fixed()?;
        let before = set.snapshot();
        let mut changes = set.subscribe();
        let waiter = tokio::spawn(async move {
            let next = changes.changed().await;
            (next, Instant::now())
        });
        // Let the subscriber park in changed() before the change is made.
        tokio::time::sleep(Duration::from_millis(50)).await;
        demo.say("a subscriber waits for the next change; now replace 10.0.0.2 by 10.0.0.4");
        let sent = Instant::now();
        set.set_addresses(["10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.4:8080"])?;
        let (next, woke) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .map_err(|_| "the subscriber was not woken within 5 s")??;
        let waited = woke.saturating_duration_since(sent);
        let next = next.ok_or("the subscription ended instead of waking")?;
        demo.say(&format!(
            "woken after {}: snapshot v{}: {}",
            human(waited),
            next.version(),
            demo.members(&next)
        ));
        let diff = next.diff(&before);
        let ids = |ms: &[serversets_core::Member]| {
            ms.iter().map(|m| m.id().to_string()).collect::<Vec<_>>()
        };
        demo.say(&format!(
            "diff: added {:?}, removed {:?}",
            ids(&diff.added),
            ids(&diff.removed)
        ));
        demo.check(
            ids(&diff.added) == ["10.0.0.4:8080"] && ids(&diff.removed) == ["10.0.0.2:8080"],
            "the diff names exactly the member that came and the one that left",
        )?;
        demo.check(
            next.version() > before.version(),
            "the version moved forward",
        )
    })
}

fn fixedset_close(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let set = demo.fixed()?;
        let mut changes = set.subscribe();
        set.close();
        let ended = tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .map_err(|_| "a waiting subscriber was not released by close")?;
        demo.check(
            ended.is_none(),
            "a waiting subscriber is released with None",
        )?;
        demo.check(set.is_closed(), "is_closed() is true")?;
        demo.check(
            set.set_addresses(["10.0.0.9:8080"]).is_err(),
            "a closed set refuses new lists",
        )?;
        demo.check(set.snapshot().len() == 3, "the last list stays readable")
    })
}

/// Starts a minimal HTTP/1.1 server that answers every request with its name.
async fn start_backend(name: usize) -> Result<Backend> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut have = 0;
                loop {
                    match conn.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let body = format!("backend {name}\n");
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                    if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
    Ok(Backend {
        addr: format!("127.0.0.1:{port}"),
        port,
        healthy: Arc::new(AtomicBool::new(true)),
        served,
        task,
    })
}

fn register_backends(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let connect = demo.zk()?.connect_string();
        let set = ServerSet::builder(Environment::Local, "demo-http", [connect.as_str()])
            .session_timeout(Duration::from_secs(4))
            .build()?;
        demo.say(&format!("server set {}", demo.ui.bold(set.path())));
        for i in 1..=3 {
            let backend = start_backend(i).await?;
            let healthy = backend.healthy.clone();
            let addr = backend.addr.clone();
            // The health check: the backend's own flag, and a TCP connect.
            let ping = Ping::new(move || {
                let healthy = healthy.load(Ordering::SeqCst);
                let addr = addr.clone();
                async move {
                    if !healthy {
                        return Err("reports unhealthy".to_string());
                    }
                    tokio::net::TcpStream::connect(&addr)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            });
            let endpoint = set
                .registration("127.0.0.1", backend.port)
                .additional_endpoint("http", "127.0.0.1", backend.port)
                .metadata("name", &format!("backend-{i}"))
                .ping(ping)
                .ping_interval(Duration::from_millis(100))
                .ping_timeout(Duration::from_millis(500))
                .register()
                .await?;
            let path = endpoint.path().ok_or("registered without a path")?;
            demo.say(&format!("backend {i} on {} -> {}", backend.addr, path));
            if i == 1 {
                demo.say(&format!(
                    "its data, as Finagle reads it: {}",
                    String::from_utf8_lossy(endpoint.data())
                ));
            }
            demo.backends.push(backend);
            demo.endpoints.push(endpoint);
        }
        let session = set.session()?;
        demo.say(&format!(
            "all three share one ZooKeeper session: {:#x}",
            session.session_id().unwrap_or_default()
        ));
        demo.set = Some(set);
        demo.check(demo.endpoints.len() == 3, "three members registered")
    })
}

fn watch_set(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let set = demo
            .set
            .as_ref()
            .ok_or("no server set (the register step did not run)")?;
        let t = Instant::now();
        let watch = set.watch().await?;
        let snap = watch.snapshot();
        demo.say(&format!(
            "watch() returned in {} with v{}: {}",
            human(t.elapsed()),
            snap.version(),
            demo.members(&snap)
        ));
        demo.say(&format!("connection health: {}", watch.health()));
        let want: Vec<String> = {
            let mut v: Vec<String> = demo.backends.iter().map(|b| b.addr.clone()).collect();
            v.sort();
            v
        };
        let got: Vec<String> = snap.iter().map(|m| m.addr().to_string()).collect();
        demo.watch = Some(watch);
        demo.check(got == want, "the watch holds exactly the three backends")
    })
}

fn http_spread(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let watch = demo
            .watch
            .as_ref()
            .ok_or("no watch (the watch step did not run)")?;
        // The client follows the same watch: any Watcher will do.
        let client = serversets_httpset::HttpSet::new(watch.feed());
        let before: Vec<usize> = demo
            .backends
            .iter()
            .map(|b| b.served.load(Ordering::Relaxed))
            .collect();
        let t = Instant::now();
        let total = 300;
        for _ in 0..total {
            let response = client.get("/").await?;
            if !response.status().is_success() {
                return Err(format!("a request failed with {}", response.status()).into());
            }
        }
        let took = t.elapsed();
        let counts: Vec<usize> = demo
            .backends
            .iter()
            .zip(&before)
            .map(|(b, was)| b.served.load(Ordering::Relaxed) - was)
            .collect();
        for (i, n) in counts.iter().enumerate() {
            let bar = "#".repeat(n / 5);
            demo.say(&format!("backend {}: {n:>4} {}", i + 1, demo.ui.cyan(&bar)));
        }
        demo.say(&format!(
            "{total} requests in {} ({} per request)",
            human(took),
            human(took / total as u32)
        ));
        demo.check(
            counts.iter().sum::<usize>() == total && counts.iter().all(|&n| n == total / 3),
            "round-robin: exactly a third to each backend",
        )
    })
}

/// Waits until the watch's members satisfy `pred`, returning how long it took.
async fn wait_members(
    watch: &Watch,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Result<(Snapshot, Duration)> {
    let t = Instant::now();
    let mut changes = watch.subscribe();
    let mut snap = watch.snapshot();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if pred(&snap) {
                return Some(snap);
            }
            snap = changes.changed().await?;
        }
    })
    .await
    .map_err(|_| format!("timed out waiting until {what}"))?;
    let snap = found.ok_or_else(|| format!("the watch closed while waiting until {what}"))?;
    Ok((snap, t.elapsed()))
}

fn memcache_keys(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let connect = demo.zk()?.connect_string();
        let set = ServerSet::builder(Environment::Local, "demo-memcache", [connect.as_str()])
            .session_timeout(Duration::from_secs(4))
            .build()?;
        let mut servers = Vec::new();
        let mut registrations = Vec::new();
        for _ in 0..3 {
            let mc = testkit::Memcached::start()?;
            registrations.push(set.register_endpoint("127.0.0.1", mc.port(), None).await?);
            servers.push(mc);
        }
        demo.say(&format!(
            "three memcached servers registered in {}",
            set.path()
        ));
        let watch = set.watch().await?;
        let version = watch.snapshot().version();
        let cache = serversets_mcset::McSet::new(watch.feed())?;
        cache.wait_for_version(version).await?;
        let keys = [
            "user:1",
            "user:2",
            "session:abc",
            "feed:42",
            "photo:7",
            "cart:9",
        ];
        let mut placed = 0;
        for key in keys {
            let server = cache.pick_server(key)?;
            cache
                .set(key, key.as_bytes(), Some(Duration::from_secs(60)))
                .await?;
            // Ask that server directly, over the memcache text protocol.
            let mut conn = tokio::net::TcpStream::connect(server.addr().to_string()).await?;
            conn.write_all(format!("get {key}\r\n").as_bytes()).await?;
            let mut line = String::new();
            BufReader::new(&mut conn).read_line(&mut line).await?;
            let found = line.starts_with("VALUE");
            placed += usize::from(found);
            demo.say(&format!(
                "{key:<12} -> {} {}",
                server.addr(),
                if found {
                    demo.ui.green("(stored there)")
                } else {
                    demo.ui.red("(missing!)")
                }
            ));
        }
        drop(cache);
        drop(watch);
        for r in &registrations {
            r.close().await?;
        }
        demo.check(
            placed == keys.len(),
            "every key was stored on the server the ring chose (same placement as Finagle and libmemcached)",
        )
    })
}

fn health_flip(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let watch = demo
            .watch
            .as_ref()
            .ok_or("no watch (the watch step did not run)")?;
        let sick = demo.backends.get(1).ok_or("no second backend")?;
        let addr = sick.addr.clone();
        demo.say(&format!(
            "backend 2 ({addr}) starts failing its health check"
        ));
        sick.healthy.store(false, Ordering::SeqCst);
        let (snap, took) = wait_members(watch, "backend 2 left", |s| {
            s.len() == 2 && s.iter().all(|m| m.addr().to_string() != addr)
        })
        .await?;
        demo.ok(&format!(
            "left the set after {}: {}",
            human(took),
            demo.members(&snap)
        ));
        demo.say("its health check passes again");
        sick.healthy.store(true, Ordering::SeqCst);
        let (snap, took) = wait_members(watch, "backend 2 is back", |s| {
            s.len() == 3 && s.iter().any(|m| m.addr().to_string() == addr)
        })
        .await?;
        demo.ok(&format!(
            "back after {} as a new member: {}",
            human(took),
            demo.members(&snap)
        ));
        Ok(())
    })
}

fn kill_leader(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let zk = demo.zk()?;
        let watch = demo
            .watch
            .as_ref()
            .ok_or("no watch (the watch step did not run)")?;
        let leader = zk.leader().ok_or("no ZooKeeper leader found")?;
        let mut health = watch.health_changes();
        demo.say(&format!("kill -9 the leader, server {leader}"));
        zk.kill(leader)?;
        let t = Instant::now();
        let mut lowest = watch.snapshot().len();
        let mut transitions = Vec::new();
        while t.elapsed() < Duration::from_secs(3) {
            lowest = lowest.min(watch.snapshot().len());
            if health.has_changed().unwrap_or(false) {
                transitions.push(health.borrow_and_update().to_string());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !transitions.is_empty() {
            demo.say(&format!(
                "connection health went: {}",
                transitions.join(" -> ")
            ));
        }
        demo.check(
            lowest == 3,
            format!("the watch served all 3 members throughout (lowest seen: {lowest})"),
        )?;
        let new_leader = zk.leader();
        demo.say(&format!(
            "new leader: {}",
            new_leader
                .map(|l| format!("server {l}"))
                .unwrap_or_else(|| "election in progress".into())
        ));
        // A change made now still reaches the watch.
        let sick = demo.backends.first().ok_or("no first backend")?;
        let addr = sick.addr.clone();
        sick.healthy.store(false, Ordering::SeqCst);
        let (_, took) = wait_members(watch, "backend 1 left after the leader change", |s| {
            s.iter().all(|m| m.addr().to_string() != addr)
        })
        .await?;
        demo.ok(&format!(
            "a change after the leader kill arrived in {}",
            human(took)
        ));
        sick.healthy.store(true, Ordering::SeqCst);
        wait_members(watch, "all three back", |s| s.len() == 3).await?;
        demo.ok("and all three members are registered again");
        demo.say(&format!(
            "restart server {leader}: it rejoins as a follower"
        ));
        zk.restart(leader)?;
        Ok(())
    })
}

fn deregister(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        for (i, b) in demo.backends.iter().enumerate() {
            demo.say(&format!(
                "backend {} answered {} HTTP requests",
                i + 1,
                b.served.load(Ordering::Relaxed)
            ));
        }
        let endpoints = std::mem::take(&mut demo.endpoints);
        let watch = demo
            .watch
            .as_ref()
            .ok_or("no watch (the watch step did not run)")?;
        let t = Instant::now();
        for endpoint in &endpoints {
            endpoint.close().await?;
        }
        let (_, _) = wait_members(watch, "the set is empty", |s| s.is_empty()).await?;
        demo.ok(&format!(
            "all three gone from every watcher in {} (no session timeout to wait for)",
            human(t.elapsed())
        ));
        Ok(())
    })
}

/// Stops everything the steps started and proves nothing is left behind.
fn cleanup(demo: &mut Demo) -> Result<()> {
    demo.fixed = None;
    demo.watch = None;
    demo.endpoints.clear();
    demo.set = None;
    demo.backends.clear();
    if let Some(zk) = demo.zk.take() {
        let root = zk.root().to_path_buf();
        for i in 0..zk.len() {
            zk.stop(i)?;
        }
        drop(zk);
        demo.say("stopped the ZooKeeper servers");
        demo.check(!root.exists(), "their data directory is removed")?;
    }
    let left: Vec<u32> = demo.zk_pids.iter().copied().filter(|&p| alive(p)).collect();
    if !left.is_empty() {
        return Err(format!("ZooKeeper processes still running: {left:?}").into());
    }
    if !demo.zk_pids.is_empty() {
        demo.ok(&format!(
            "none of the {} server processes is left behind",
            demo.zk_pids.len()
        ));
    }
    Ok(())
}

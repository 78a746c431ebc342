//! `cargo xtask bench tower` benchmarks for serversets-tower.
//!
//! - `tower.request` / `tower.request_direct`: microseconds per unary gRPC
//!   request (median, p99), 16 in flight, over 3 greeter servers, through
//!   this crate and through a tonic `Channel::balance_list` over the same
//!   three endpoints (the baseline). `path` says which of this crate's
//!   paths: `balance_channel` (tonic's balancer fed by `BalanceChannel`,
//!   behind `FailFast`) or `p2c` (tower's p2c over `WatcherDiscover`, a lazy
//!   tonic `Channel` per member in `MemberLoad`, a `Buffer`, `FailFast`).
//!   Each path is compared with the direct channel in rounds that alternate
//!   between the two, so drift hits both alike.
//! - `tower.wall_per_request` / `..._direct`: each round's wall time divided
//!   by its requests (inverse throughput), one sample per round.
//! - `tower.client_cpu_per_request` / `..._direct`: the client thread's CPU
//!   time per request, one sample per round: the client's whole cost (every
//!   client task runs on that one thread), and unlike wall time not moved
//!   by other work on the machine.
//! - `tower.discover_change`: from a member being added to the first
//!   request that reaches its server (the server's own clock), with
//!   requests flowing 4 at a time; it includes connecting to the new member.
//!   `source`: `fixedset` (published in memory) or `zookeeper` (from the
//!   call to `register_endpoint` on a real standalone ZooKeeper: the
//!   create, the watch's notification and read, then the balancer). For
//!   ZooKeeper, `tower.discover_change_registered` (until
//!   `register_endpoint` returned) and `tower.discover_change_watched`
//!   (until the watch held the member) say where the time goes.
//!
//! The servers share one thread and runtime, the client has another (one
//! core each on a 2-core machine, pinned when the OS allows, at a raised
//! priority when permitted; both best effort).

#[allow(clippy::all, clippy::pedantic)]
mod greeter {
    include!("../tests/support/greeter.rs");
}

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greeter::greeter_client::GreeterClient;
use greeter::greeter_server::{Greeter, GreeterServer};
use greeter::{HelloReply, HelloRequest};
use serde_json::json;
use serversets_core::{Environment, Member, Registration, ServerSet, Watch, Watcher};
use serversets_fixedset::FixedSet;
use serversets_tower::tonic::BalanceChannel;
use serversets_tower::{FailFastLayer, MemberLoad, WatcherDiscover};
use testkit::bench::{emit, micros, Record};
use testkit::ZkCluster;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceBuilder};

const CONCURRENCY: usize = 16;
const PER_TASK: usize = 50;
const ROUNDS: usize = 100;
const SERVERS: usize = 3;
const CHANGES: usize = 40;

/// Every client is boxed the same way, with a concrete error type (a tonic
/// client over a plain `BoxError` cannot be spawned: rustc's "`From` is not
/// general enough").
type Client = GreeterClient<
    BoxCloneService<http::Request<Body>, http::Response<Body>, serversets_tower::Error>,
>;

fn main() {
    // Best effort: fails harmlessly without the privilege.
    // SAFETY: plain syscalls on our own process, no pointers involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, -10);
    }
    let servers = start_servers(SERVERS + 1);
    pin_to_cpu(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        if testkit::bench::wanted("tower.request")
            || testkit::bench::wanted("tower.wall_per_request")
        {
            for path in [Path::BalanceChannel, Path::P2c] {
                request_bench(path, &servers.addrs[..SERVERS]).await;
            }
        }
        if testkit::bench::wanted("tower.discover_change") {
            for path in [Path::BalanceChannel, Path::P2c] {
                discover_change_bench(path, &servers, Source::fixed(&servers)).await;
                discover_change_bench(path, &servers, Source::zookeeper(&servers).await).await;
            }
        }
    });
}

/// Pins the calling thread to one CPU (best effort).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: `set` is a properly initialised cpu_set_t on our stack, and the
    // call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A greeter that answers at once and can report when it was first asked
/// after being armed.
struct Greet {
    name: String,
    armed: Arc<AtomicBool>,
    first: Arc<Mutex<Option<Instant>>>,
}

#[tonic::async_trait]
impl Greeter for Greet {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        if self.armed.swap(false, Ordering::SeqCst) {
            *self.first.lock().expect("first-hit lock") = Some(Instant::now());
        }
        Ok(Response::new(HelloReply {
            message: request.into_inner().name,
            server: self.name.clone(),
        }))
    }
}

struct Servers {
    addrs: Vec<SocketAddr>,
    /// For the last server: arm, then read the time of its first request.
    armed: Arc<AtomicBool>,
    first: Arc<Mutex<Option<Instant>>>,
}

/// `n` greeter servers on one thread and runtime of their own.
fn start_servers(n: usize) -> Servers {
    let armed = Arc::new(AtomicBool::new(false));
    let first = Arc::new(Mutex::new(None));
    let (tx, rx) = std::sync::mpsc::channel();
    let (armed2, first2) = (armed.clone(), first.clone());
    std::thread::spawn(move || {
        pin_to_cpu(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let mut addrs = Vec::new();
            for i in 0..n {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addrs.push(listener.local_addr().expect("addr"));
                let last = i == n - 1;
                let greet = Greet {
                    name: format!("s{i}"),
                    armed: if last { armed2.clone() } else { Arc::default() },
                    first: first2.clone(),
                };
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(GreeterServer::new(greet))
                        .serve_with_incoming(incoming),
                );
            }
            tx.send(addrs).expect("send addresses");
            std::future::pending::<()>().await;
        });
    });
    Servers {
        addrs: rx.recv().expect("server addresses"),
        armed,
        first,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    BalanceChannel,
    P2c,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::BalanceChannel => "balance_channel",
            Path::P2c => "p2c",
        }
    }
}

fn endpoint(addr: impl std::fmt::Display) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .tcp_nodelay(true)
}

/// A client over `set` through one of this crate's paths.
fn client(path: Path, set: Arc<dyn Watcher>) -> Client {
    match path {
        Path::BalanceChannel => {
            let (channel, sync) = BalanceChannel::new(set)
                .configure(|_, e| Ok::<_, tower::BoxError>(e.tcp_nodelay(true)))
                .build()
                .expect("runtime");
            let channel = sync.fail_fast(Duration::from_secs(5)).layer(channel);
            GreeterClient::new(BoxCloneService::new(channel))
        }
        Path::P2c => {
            let discover = WatcherDiscover::new(set, |m: &Member| {
                MemberLoad::new(endpoint(m.addr()).connect_lazy(), m)
            });
            let service = ServiceBuilder::new()
                .layer(FailFastLayer::new(
                    discover.member_count(),
                    Duration::from_secs(5),
                ))
                .service(Buffer::new(Balance::new(discover), 1024));
            GreeterClient::new(BoxCloneService::new(service))
        }
    }
}

/// tonic's own balanced channel over fixed endpoints: the baseline.
fn direct(addrs: &[SocketAddr]) -> Client {
    let channel: Channel = Channel::balance_list(addrs.iter().map(endpoint));
    let channel = ServiceBuilder::new()
        .map_err(|e: tonic::transport::Error| serversets_tower::Error::from_service(e.into()))
        .service(channel);
    GreeterClient::new(BoxCloneService::new(channel))
}

/// One round of `CONCURRENCY` tasks × `PER_TASK` requests; per-request
/// latencies (us) and the round's wall time.
async fn round(client: &Client) -> (Vec<f64>, Duration, Duration) {
    let started = Instant::now();
    let cpu = thread_cpu();
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                let t = Instant::now();
                client
                    .say_hello(HelloRequest {
                        name: "bench".into(),
                    })
                    .await
                    .expect("request");
                lat.push(micros(t.elapsed()));
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(CONCURRENCY * PER_TASK);
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    (all, started.elapsed(), thread_cpu().saturating_sub(cpu))
}

/// CPU time of the calling thread. The client runtime is single-threaded
/// and everything on the client side runs on it (the request tasks, tonic's
/// and tower's buffer workers, hyper's connection tasks), so a round's CPU
/// time is the client's cost, whatever else the machine is doing.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec on our stack; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

async fn request_bench(path: Path, addrs: &[SocketAddr]) {
    let set = Arc::new(FixedSet::new(addrs.iter().map(|a| a.to_string())).expect("addresses"));
    let ours = client(path, set);
    let direct = direct(addrs);
    // Warm up both (connections, buffers, the servers).
    for _ in 0..2 {
        round(&ours).await;
        round(&direct).await;
    }
    let (mut lat_ours, mut lat_direct) = (Vec::new(), Vec::new());
    let (mut wall_ours, mut wall_direct) = (Vec::new(), Vec::new());
    let (mut cpu_ours, mut cpu_direct) = (Vec::new(), Vec::new());
    let per_round = (CONCURRENCY * PER_TASK) as f64;
    for r in 0..ROUNDS {
        // Alternate which goes first so neither always runs warmer.
        for which in [r % 2, 1 - r % 2] {
            if which == 0 {
                let (lat, wall, cpu) = round(&ours).await;
                lat_ours.extend(lat);
                wall_ours.push(micros(wall) / per_round);
                cpu_ours.push(micros(cpu) / per_round);
            } else {
                let (lat, wall, cpu) = round(&direct).await;
                lat_direct.extend(lat);
                wall_direct.push(micros(wall) / per_round);
                cpu_direct.push(micros(cpu) / per_round);
            }
        }
    }
    let params = json!({
        "path": path.label(),
        "servers": addrs.len(),
        "concurrency": CONCURRENCY,
        "requests": ROUNDS * CONCURRENCY * PER_TASK,
    });
    let records = [
        Record::from_samples(
            "tower.request_direct",
            params.clone(),
            "us",
            &lat_direct,
            None,
        ),
        Record::from_samples(
            "tower.request",
            params.clone(),
            "us",
            &lat_ours,
            Some("tower.request_direct"),
        ),
        Record::from_samples(
            "tower.wall_per_request_direct",
            params.clone(),
            "us",
            &wall_direct,
            None,
        ),
        Record::from_samples(
            "tower.wall_per_request",
            params.clone(),
            "us",
            &wall_ours,
            Some("tower.wall_per_request_direct"),
        ),
        Record::from_samples(
            "tower.client_cpu_per_request_direct",
            params.clone(),
            "us",
            &cpu_direct,
            None,
        ),
        Record::from_samples(
            "tower.client_cpu_per_request",
            params,
            "us",
            &cpu_ours,
            Some("tower.client_cpu_per_request_direct"),
        ),
    ];
    for r in &records {
        if testkit::bench::wanted(&r.name) {
            emit(r);
        }
    }
    eprintln!(
        "tower {}: latency p50 {:.1} vs {:.1} us (ratio {:.3}), p99 {:.1} vs {:.1} us; throughput {:.0} vs {:.0} req/s (time ratio {:.3}); client CPU {:.2} vs {:.2} us/request (ratio {:.3})",
        path.label(),
        records[1].median,
        records[0].median,
        records[1].median / records[0].median,
        records[1].p99,
        records[0].p99,
        1e6 / records[3].median,
        1e6 / records[2].median,
        records[3].median / records[2].median,
        records[5].median,
        records[4].median,
        records[5].median / records[4].median,
    );
}

/// Where the member comes from in `tower.discover_change`.
enum Source {
    /// A FixedSet: the change is published in memory.
    Fixed {
        set: Arc<FixedSet>,
        old: Vec<String>,
        with_new: Vec<String>,
    },
    /// A real ZooKeeper: the member registers (a create) and the watch
    /// sees it (a notification and a read).
    ZooKeeper {
        set: ServerSet,
        watch: Arc<Watch>,
        new_port: u16,
        registration: Option<Registration>,
        _old: Vec<Registration>,
        _zk: Box<ZkCluster>,
    },
}

impl Source {
    fn fixed(servers: &Servers) -> Source {
        let all: Vec<String> = servers.addrs.iter().map(|a| a.to_string()).collect();
        let old = all[..SERVERS].to_vec();
        Source::Fixed {
            set: Arc::new(FixedSet::new(&old).expect("addresses")),
            old,
            with_new: all,
        }
    }

    async fn zookeeper(servers: &Servers) -> Source {
        let zk = ZkCluster::standalone().expect("zookeeper (see testkit for install hints)");
        let set = ServerSet::builder(Environment::Test, "tower-bench", [zk.connect_string()])
            .connect_timeout(Duration::from_secs(20))
            .build()
            .expect("server set");
        let mut old = Vec::new();
        for addr in &servers.addrs[..SERVERS] {
            old.push(
                set.register_endpoint("127.0.0.1", addr.port(), None)
                    .await
                    .expect("registered"),
            );
        }
        let watch = Arc::new(set.watch().await.expect("watch"));
        let mut changes = watch.subscribe();
        while watch.snapshot().len() < SERVERS {
            changes.changed().await.expect("watch open");
        }
        Source::ZooKeeper {
            set,
            watch,
            new_port: servers.addrs[SERVERS].port(),
            registration: None,
            _old: old,
            _zk: Box::new(zk),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Source::Fixed { .. } => "fixedset",
            Source::ZooKeeper { .. } => "zookeeper",
        }
    }

    fn watcher(&self) -> Arc<dyn Watcher> {
        match self {
            Source::Fixed { set, .. } => set.clone(),
            Source::ZooKeeper { watch, .. } => watch.clone(),
        }
    }

    async fn add(&mut self) {
        match self {
            Source::Fixed { set, with_new, .. } => {
                set.set_addresses(&*with_new).expect("addresses")
            }
            Source::ZooKeeper {
                set,
                new_port,
                registration,
                ..
            } => {
                *registration = Some(
                    set.register_endpoint("127.0.0.1", *new_port, None)
                        .await
                        .expect("registered"),
                );
            }
        }
    }

    /// Takes the new member out again, and waits until the set shows it.
    async fn remove(&mut self) {
        match self {
            Source::Fixed { set, old, .. } => set.set_addresses(&*old).expect("addresses"),
            Source::ZooKeeper {
                watch,
                registration,
                ..
            } => {
                if let Some(r) = registration.take() {
                    r.close().await.expect("deregistered");
                }
                let mut changes = watch.subscribe();
                while watch.snapshot().len() > SERVERS {
                    changes.changed().await.expect("watch open");
                }
            }
        }
    }
}

async fn discover_change_bench(path: Path, servers: &Servers, mut source: Source) {
    let client = client(path, source.watcher());
    round(&client).await;

    // Traffic flows all along, 4 requests at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let mut client = client.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client
                    .say_hello(HelloRequest {
                        name: "bench".into(),
                    })
                    .await
                    .expect("request");
            }
        }));
    }
    let watcher = source.watcher();
    let (mut samples, mut registered, mut watched) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CHANGES {
        *servers.first.lock().expect("first-hit lock") = None;
        servers.armed.store(true, Ordering::SeqCst);
        let added = Instant::now();
        source.add().await;
        registered.push(micros(added.elapsed()));
        let mut seen = None;
        let reached = loop {
            if seen.is_none() && watcher.snapshot().len() > SERVERS {
                seen = Some(added.elapsed());
            }
            if let Some(at) = *servers.first.lock().expect("first-hit lock") {
                break at;
            }
            assert!(
                added.elapsed() < Duration::from_secs(10),
                "the new member got no request"
            );
            tokio::task::yield_now().await;
        };
        samples.push(micros(reached.saturating_duration_since(added)));
        watched.push(micros(seen.unwrap_or_else(|| added.elapsed())));
        source.remove().await;
        // Let the removal reach the balancer before the next addition.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let params =
        json!({"path": path.label(), "source": source.label(), "servers": SERVERS, "in_flight": 4});
    let record = Record::from_samples(
        "tower.discover_change",
        params.clone(),
        "us",
        &samples,
        None,
    );
    emit(&record);
    if let Source::ZooKeeper { .. } = source {
        // Where the time goes: the create, then the watch.
        emit(&Record::from_samples(
            "tower.discover_change_registered",
            params.clone(),
            "us",
            &registered,
            None,
        ));
        emit(&Record::from_samples(
            "tower.discover_change_watched",
            params,
            "us",
            &watched,
            None,
        ));
    }
    eprintln!(
        "tower {} over {}: member added -> first request reaching it: p50 {:.0} us, p99 {:.0} us",
        path.label(),
        source.label(),
        record.median,
        record.p99
    );
}

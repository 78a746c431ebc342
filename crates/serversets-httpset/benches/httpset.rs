//! `cargo xtask bench` benchmarks for serversets-httpset.
//!
//! - `httpset.request` / `httpset.request_direct`: microseconds per request
//!   (median, p99) with 16 requests in flight against one local hyper
//!   backend, through HttpSet and through hyper-util's client sent straight
//!   to the backend. The backend runs on its own thread and runtime, the
//!   client on another (one core each on a 2-core machine); the two clients
//!   alternate in rounds so drift hits both alike.
//! - the same two over HTTPS (params `scheme: https`, `protocol: h2` or
//!   `http/1.1`): HttpSet with the connector `HttpSetBuilder::rustls` installs
//!   (hyper-rustls over the TCP connector, ALPN h2 + http/1.1) against
//!   hyper-util's client with a clone of that connector, to a hyper TLS
//!   backend (h1 and h2) whose certificate comes from a test CA made at
//!   start (`testkit::TestPki`, openssl).
//! - `httpset.request_recorded`: `httpset.request` (its baseline) through a
//!   second HttpSet built while a metrics recorder (the Prometheus one
//!   `serversets --metrics-addr` installs) was on, so its member records
//!   attempts and latency for real; the first set's handles are no-ops. Its
//!   rounds alternate with the other two.
//! - `httpset.wall_per_request` / `..._direct`: round wall time divided by
//!   requests (inverse throughput), one sample per round.
//! - `httpset.select`: nanoseconds to pick a member (and clone its
//!   address) with 10 and 1000 members (param `endpoints`, the name the
//!   records have always had), round-robin and least-outstanding.
//! - `httpset.select_weighted`: the same over members of unequal weights
//!   (1, 2, 3, 0.5 cycled), its baseline `httpset.select`; samples of the two
//!   alternate in one run.
//!
//! To keep other work on the machine from landing in the samples, the
//! process asks for a higher scheduling priority and pins the backend and
//! client threads to different cores, when the OS allows (both best effort).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;
use serversets_core::{HostPort, Member};
use serversets_fixedset::FixedSet;
use serversets_httpset::{Balance, HttpSet, DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_IDLE_TIMEOUT};
use testkit::bench::{emit, micros, time_per_call, Record};

use testkit::recorder;

const CONCURRENCY: usize = 16;
const PER_TASK: usize = 50;
const ROUNDS: usize = 60;

fn main() {
    // Best effort: fails harmlessly without the privilege.
    // SAFETY: plain syscalls on our own process, no pointers involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, -10);
    }
    if testkit::bench::wanted("httpset.request")
        || testkit::bench::wanted("httpset.wall_per_request")
    {
        request_bench();
        for protocol in ["h2", "http/1.1"] {
            https_request_bench(protocol);
        }
    }
    if testkit::bench::wanted("httpset.select") {
        select_bench();
    }
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

/// Serves each connection accepted on a fresh loopback listener with
/// `serve`, on a thread and current-thread runtime of its own pinned to
/// CPU 1 (the client runs on CPU 0); returns the listener's address.
fn start_server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        pin_to_cpu(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("backend runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream));
            }
        });
    });
    rx.recv().expect("backend address")
}

/// What every backend answers: 200 "ok".
async fn ok(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// A hyper HTTP/1.1 backend answering "ok" on its own thread and runtime.
fn start_backend() -> SocketAddr {
    start_server(|stream| async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(ok))
            .await;
    })
}

/// A client a round drives: each call sends one `GET /` with a prebuilt
/// URI (the set's names only the path) and yields the response.
trait Sender: Clone + Send + 'static {
    fn send(&self) -> impl std::future::Future<Output = Response<Incoming>> + Send;
}

/// Through an HttpSet, to the path `/`.
#[derive(Clone)]
struct ViaSet<C>(HttpSet<C>, Uri);

impl<C> Sender for ViaSet<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn send(&self) -> impl std::future::Future<Output = Response<Incoming>> + Send {
        let req = Request::get(self.1.clone())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let sent = self.0.request(req);
        async move { sent.await.expect("httpset request") }
    }
}

/// Through hyper-util's client, straight to `uri`.
#[derive(Clone)]
struct Direct<C>(Client<C, Empty<Bytes>>, Uri);

impl<C> Sender for Direct<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn send(&self) -> impl std::future::Future<Output = Response<Incoming>> + Send {
        let req = Request::get(self.1.clone())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let sent = self.0.request(req);
        async move { sent.await.expect("direct request") }
    }
}

/// Runs one round of `CONCURRENCY` tasks × `PER_TASK` requests; returns the
/// per-request latencies (us) and the round's wall time.
async fn round(send: impl Sender) -> (Vec<f64>, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                let t = Instant::now();
                let resp = send.send().await;
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(&body[..], b"ok");
                lat.push(micros(t.elapsed()));
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(CONCURRENCY * PER_TASK);
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    (all, started.elapsed())
}

fn request_bench() {
    let backend = start_backend();
    pin_to_cpu(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    // Installed (switched off) before any set exists.
    recorder::install();
    rt.block_on(async move {
        // HttpSet with its defaults.
        let set = HttpSet::new(FixedSet::new([backend.to_string()]).expect("member"));
        // The same, its metrics recorded (handles registered at build).
        let recorded = recorder::recorded(|| {
            HttpSet::builder()
                .metrics_set("/bench/httpset")
                .build(FixedSet::new([backend.to_string()]).expect("member"))
                .expect("set")
        });
        // hyper-util's client with the same connector and pool settings.
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        let direct: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(DEFAULT_POOL_IDLE_TIMEOUT)
            .build(tcp);
        let uri: Uri = format!("http://{backend}/").parse().expect("uri");
        let via_set = ViaSet(set, Uri::from_static("/"));
        let via_recorded = ViaSet(recorded, Uri::from_static("/"));
        let via_direct = Direct(direct, uri);

        // Warm up both pools and the backend.
        round(via_set.clone()).await;
        round(via_recorded.clone()).await;
        round(via_direct.clone()).await;

        let (mut lat_set, mut lat_direct, mut lat_recorded) = (Vec::new(), Vec::new(), Vec::new());
        let (mut wall_set, mut wall_direct) = (Vec::new(), Vec::new());
        let per_round = (CONCURRENCY * PER_TASK) as f64;
        for r in 0..ROUNDS {
            // Rotate which goes first so none always runs warmer.
            for which in [r % 3, (r + 1) % 3, (r + 2) % 3] {
                if which == 0 {
                    let (lat, wall) = round(via_set.clone()).await;
                    lat_set.extend(lat);
                    wall_set.push(micros(wall) / per_round);
                } else if which == 2 {
                    let (lat, _) = round(via_recorded.clone()).await;
                    lat_recorded.extend(lat);
                } else {
                    let (lat, wall) = round(via_direct.clone()).await;
                    lat_direct.extend(lat);
                    wall_direct.push(micros(wall) / per_round);
                }
            }
        }
        let params = json!({"concurrency": CONCURRENCY, "backends": 1, "requests": ROUNDS * CONCURRENCY * PER_TASK});
        let records = [
            Record::from_samples("httpset.request_direct", params.clone(), "us", &lat_direct, None),
            Record::from_samples("httpset.request", params.clone(), "us", &lat_set, Some("httpset.request_direct")),
            Record::from_samples("httpset.wall_per_request_direct", params.clone(), "us", &wall_direct, None),
            Record::from_samples(
                "httpset.wall_per_request",
                params,
                "us",
                &wall_set,
                Some("httpset.wall_per_request_direct"),
            ),
        ];
        for r in &records {
            if testkit::bench::wanted(&r.name) {
                emit(r);
            }
        }
        let with_recorder = Record::from_samples(
            "httpset.request_recorded",
            json!({"concurrency": CONCURRENCY, "backends": 1, "requests": ROUNDS * CONCURRENCY * PER_TASK}),
            "us",
            &lat_recorded,
            Some("httpset.request"),
        );
        if testkit::bench::wanted(&with_recorder.name) {
            emit(&with_recorder);
        }
        let attempts = testkit::prometheus::Samples::parse(&recorder::render())
            .sum("serversets_http_attempts_total", &[("set", "/bench/httpset")]);
        eprintln!(
            "httpset: with a recorder / without: {:.3} (median), {attempts} attempts recorded",
            with_recorder.median / records[1].median
        );
        let ratio = |a: &Record, b: &Record| a.median / b.median;
        eprintln!(
            "httpset: latency median ratio {:.3}, p99 overhead {:.1} us; throughput ratio {:.3} ({:.0} vs {:.0} req/s)",
            ratio(&records[1], &records[0]),
            records[1].p99 - records[0].p99,
            ratio(&records[2], &records[3]),
            1e6 / records[3].median,
            1e6 / records[2].median,
        );
    });
}

/// Rounds of the HTTPS bench (each protocol).
const TLS_ROUNDS: usize = 30;

/// A hyper TLS backend (HTTP/1.1 and HTTP/2, ALPN offering `protocol`)
/// answering "ok" on its own thread and runtime.
fn start_tls_backend(pki: &testkit::TestPki, protocol: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(pki.server_cert())
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(pki.server_key()).expect("key");
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![protocol.as_bytes().to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    start_server(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), hyper::service::service_fn(ok))
                .await;
        }
    })
}

/// `httpset.request` over HTTPS, against hyper-util's client with the same
/// hyper-rustls connector, in alternating rounds.
fn https_request_bench(protocol: &str) {
    let pki = testkit::TestPki::generate().expect("test CA (needs openssl and keytool)");
    let backend = start_tls_backend(&pki, protocol);
    pin_to_cpu(0);
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(pki.ca_pem()).expect("ca") {
            roots.add(cert.expect("ca cert")).expect("root");
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // What `HttpSetBuilder::rustls` installs: hyper-rustls over the built-in TCP
    // connector, ALPN h2 and http/1.1.
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_all_versions()
        .wrap_connector(tcp);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let protocol = protocol.to_string();
    rt.block_on(async move {
        let set = HttpSet::builder()
            .connector(https.clone())
            .https()
            .build(FixedSet::new([backend.to_string()]).expect("member"))
            .expect("set");
        let direct: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(DEFAULT_POOL_IDLE_TIMEOUT)
            .build(https);
        let uri: Uri = format!("https://{backend}/").parse().expect("uri");
        let via_set = ViaSet(set, Uri::from_static("/"));
        let via_direct = Direct(direct, uri);
        round(via_set.clone()).await;
        round(via_direct.clone()).await;
        let (mut lat_set, mut lat_direct) = (Vec::new(), Vec::new());
        for r in 0..TLS_ROUNDS {
            for which in [r % 2, 1 - r % 2] {
                if which == 0 {
                    lat_set.extend(round(via_set.clone()).await.0);
                } else {
                    lat_direct.extend(round(via_direct.clone()).await.0);
                }
            }
        }
        let params = json!({
            "concurrency": CONCURRENCY, "backends": 1, "requests": TLS_ROUNDS * CONCURRENCY * PER_TASK,
            "scheme": "https", "protocol": protocol,
        });
        let direct = Record::from_samples("httpset.request_direct", params.clone(), "us", &lat_direct, None);
        let via = Record::from_samples("httpset.request", params, "us", &lat_set, Some("httpset.request_direct"));
        for r in [&direct, &via] {
            if testkit::bench::wanted(&r.name) {
                emit(r);
            }
        }
        eprintln!(
            "httpset over https ({protocol}): latency median ratio {:.3} ({:.1} vs {:.1} us), p99 {:.1} vs {:.1} us",
            via.median / direct.median,
            via.median,
            direct.median,
            via.p99,
            direct.p99,
        );
    });
}

/// Weights for the weighted select bench: four unequal values, cycled.
const WEIGHTS: [f64; 4] = [1.0, 2.0, 3.0, 0.5];

fn select_bench() {
    for members in [10u32, 1000] {
        for (balance, label) in [
            (Balance::RoundRobin, "round_robin"),
            (Balance::LeastOutstanding, "least_outstanding"),
        ] {
            let addrs: Vec<String> = (1..=members)
                .map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1))
                .collect();
            let plain = HttpSet::builder()
                .balance(balance)
                .build(FixedSet::new(&addrs).expect("members"))
                .expect("set");
            let weighted_members = addrs.iter().zip(WEIGHTS.iter().cycle()).map(|(a, &w)| {
                Member::from_addr(a.parse::<HostPort>().expect("address")).with_weight(w)
            });
            let weighted = HttpSet::builder()
                .balance(balance)
                .build(FixedSet::from_members(weighted_members))
                .expect("set");
            // Samples of the two alternate so drift hits both alike.
            let (mut unweighted, mut with_weights) = (Vec::new(), Vec::new());
            for _ in 0..10 {
                unweighted.extend(time_per_call(5, 100_000, || {
                    black_box(plain.next_addr());
                }));
                with_weights.extend(time_per_call(5, 100_000, || {
                    black_box(weighted.next_addr());
                }));
            }
            let params = json!({"endpoints": members, "balance": label});
            let base =
                Record::from_samples("httpset.select", params.clone(), "ns", &unweighted, None);
            let heavy = Record::from_samples(
                "httpset.select_weighted",
                params,
                "ns",
                &with_weights,
                Some("httpset.select"),
            );
            emit(&base);
            if testkit::bench::wanted(&heavy.name) {
                emit(&heavy);
            }
            eprintln!(
                "httpset.select_weighted / httpset.select, {members} members, {label}: {:.3}",
                heavy.median / base.median
            );
        }
    }
}

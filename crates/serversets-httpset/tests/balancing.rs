//! Spreading requests over real hyper servers, request re-targeting, empty
//! sets and the connector hook.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use serversets_core::{HostPort, Member};
use serversets_fixedset::FixedSet;
use serversets_httpset::{Balance, Error, HttpSet};
use support::{text, Mode, TestServer};
use tower::{Service, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_share_3000_requests_evenly() {
    let servers = [
        TestServer::start("a", Mode::Normal).await,
        TestServer::start("b", Mode::Normal).await,
        TestServer::start("c", Mode::Normal).await,
    ];
    let members = FixedSet::new(servers.iter().map(|s| s.addr())).unwrap();
    let set = HttpSet::new(members);

    // 16 in flight at a time, through the tower interface.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut svc = set.clone();
        tasks.push(tokio::spawn(async move {
            let mut names = Vec::new();
            for _ in 0..3000 / 16 + 1 {
                let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
                let ready = ServiceExt::<Request<Empty<Bytes>>>::ready(&mut svc)
                    .await
                    .unwrap();
                let resp = ready.call(req).await.expect("request");
                assert_eq!(resp.status(), 200);
                names.push(text(resp).await);
            }
            names
        }));
    }
    let mut names = Vec::new();
    for t in tasks {
        names.extend(t.await.unwrap());
    }
    names.truncate(3000);
    let total: usize = servers.iter().map(|s| s.hits()).sum();
    assert_eq!(total, 16 * (3000 / 16 + 1));
    for s in &servers {
        let share = s.hits() as f64 / total as f64;
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.05 / 3.0,
            "{} got {} of {total} ({share:.4}), not within 5% of a third",
            s.name,
            s.hits()
        );
    }
    // Responses came from the servers the counters say.
    for s in &servers {
        assert!(names.iter().filter(|n| **n == s.name).count() > 900);
    }
}

/// Real servers of weights 1, 2, 3 and 0 each get their weight's share of
/// 30,000 requests within ±5% of that share (relative: the weight-2 server
/// must serve 10,000 ± 500), and the weight-0 server none, with 16 requests
/// in flight (round-robin) and one at a time (least-outstanding, whose
/// draws alone then decide: in-flight counts are all equal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_servers_share_30000_requests_by_weight() {
    let weights = [1.0, 2.0, 3.0, 0.0];
    for balance in [Balance::RoundRobin, Balance::LeastOutstanding] {
        let mut servers = Vec::new();
        for name in ["w1", "w2", "w3", "w0"] {
            servers.push(TestServer::start(name, Mode::Normal).await);
        }
        let members = servers.iter().zip(weights).map(|(s, w)| {
            Member::builder(s.addr().as_str(), s.addr().parse::<HostPort>().unwrap())
                .weight(w)
                .build()
        });
        let set = HttpSet::builder()
            .balance(balance)
            .build(FixedSet::from_members(members))
            .unwrap();
        let (tasks, per_task) = match balance {
            Balance::RoundRobin => (16, 30_000 / 16),
            _ => (1, 30_000),
        };
        let mut running = Vec::new();
        for _ in 0..tasks {
            let set = set.clone();
            running.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    let resp = set.get("/").await.expect("request");
                    assert_eq!(resp.status(), 200);
                    text(resp).await;
                }
            }));
        }
        for t in running {
            t.await.unwrap();
        }
        let total: usize = servers.iter().map(|s| s.hits()).sum();
        assert_eq!(total, tasks * per_task);
        for (s, w) in servers.iter().zip(weights) {
            let want = total as f64 * w / 6.0;
            let got = s.hits() as f64;
            assert!(
                (got - want).abs() <= 0.05 * want,
                "{balance:?}: {} (weight {w}) served {got} of {total}, want {want:.0} ± 5%",
                s.name
            );
        }
    }
}

#[tokio::test]
async fn sequential_round_robin_is_exact() {
    let servers = [
        TestServer::start("a", Mode::Normal).await,
        TestServer::start("b", Mode::Normal).await,
        TestServer::start("c", Mode::Normal).await,
    ];
    let set = HttpSet::new(FixedSet::new(servers.iter().map(|s| s.addr())).unwrap());
    for _ in 0..300 {
        assert_eq!(set.get("/").await.unwrap().status(), 200);
    }
    let hits: Vec<usize> = servers.iter().map(|s| s.hits()).collect();
    assert_eq!(hits, [100, 100, 100]);
    // One connection each, reused (keep-alive pooling per member).
    let accepted: Vec<usize> = servers.iter().map(|s| s.accepted()).collect();
    assert_eq!(accepted, [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_sends_less_to_the_slow_server() {
    // The same path is slow on one server only: "/sleep/40" on the slow one,
    // and the fast one ignores the delay by answering a status at once.
    let slow = TestServer::start("slow", Mode::Normal).await;
    let fast = TestServer::start("fast", Mode::Status(200)).await;
    let set = HttpSet::builder()
        .balance(Balance::LeastOutstanding)
        .build(FixedSet::new([slow.addr(), fast.addr()]).unwrap())
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let set = set.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let resp = set.get("/sleep/40").await.unwrap();
                assert_eq!(resp.status(), 200);
                text(resp).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(slow.hits() + fast.hits(), 200);
    assert!(
        fast.hits() > 3 * slow.hits(),
        "least-outstanding should favour the fast server: fast {} slow {}",
        fast.hits(),
        slow.hits()
    );

    // Round-robin over the same pair splits evenly, for contrast.
    let before = (slow.hits(), fast.hits());
    let rr = HttpSet::new(FixedSet::new([slow.addr(), fast.addr()]).unwrap());
    for _ in 0..10 {
        text(rr.get("/sleep/1").await.unwrap()).await;
    }
    assert_eq!((slow.hits() - before.0, fast.hits() - before.1), (5, 5));
}

#[tokio::test]
async fn host_header_is_kept_when_set_and_defaults_to_the_member() {
    let server = TestServer::start("a", Mode::Normal).await;
    let set = HttpSet::new(FixedSet::new([server.addr()]).unwrap());

    // The first answer tells the set the member speaks HTTP/1.1; from
    // then on it adds the Host itself (hyper-util did before): the same
    // single value either way.
    for _ in 0..3 {
        let resp = set.get("/host").await.unwrap();
        assert_eq!(text(resp).await, server.addr());
    }

    let req = Request::get("/host")
        .header("host", "api.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        text(set.request(req).await.unwrap()).await,
        "api.example.com"
    );
}

#[tokio::test]
async fn a_header_map_too_full_for_a_host_is_an_error_not_a_panic() {
    // A live member not yet known to speak HTTP/1.1, whose Host hyper-util
    // would add (and panic on) if the set left it to hyper-util.
    let server = TestServer::start("a", Mode::Normal).await;
    let set = HttpSet::new(FixedSet::new([server.addr()]).unwrap());
    let mut req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    // As many names as a HeaderMap can hold: no room for a Host.
    for i in 0..24_576 {
        let name = http::HeaderName::try_from(format!("x-{i}")).unwrap();
        req.headers_mut()
            .try_insert(name, http::HeaderValue::from_static("1"))
            .unwrap();
    }
    assert!(req
        .headers_mut()
        .try_insert(http::header::HOST, http::HeaderValue::from_static("h"))
        .is_err());
    match set.request(req).await {
        Err(Error::InvalidUri { .. }) => {}
        other => panic!("expected InvalidUri, got {other:?}"),
    }
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn placeholder_authority_is_replaced_and_path_and_query_kept() {
    let server = TestServer::start("a", Mode::Normal).await;
    let set = HttpSet::new(FixedSet::new([server.addr()]).unwrap());

    let req = Request::get("http://my-service/uri?x=1&y=%20")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        text(set.request(req).await.unwrap()).await,
        "/uri?x=1&y=%20"
    );

    // A URI with no path at all asks for "/".
    let req = Request::get(Uri::from_static("http://placeholder"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(text(set.request(req).await.unwrap()).await, "a");

    // Request bodies of any type go through.
    let req = Request::post("/echo")
        .body(Full::new(Bytes::from("payload")))
        .unwrap();
    assert_eq!(text(set.request(req).await.unwrap()).await, "payload");
    assert_eq!(server.bodies(), [Bytes::from("payload")]);
}

#[tokio::test]
async fn empty_set_fails_at_once_or_waits_for_the_first_member() {
    let server = TestServer::start("a", Mode::Normal).await;

    let set = HttpSet::new(FixedSet::empty());
    match set.get("/").await {
        Err(Error::NoMembers { waited }) => assert_eq!(waited, Duration::ZERO),
        other => panic!("expected NoMembers, got {other:?}"),
    }
    assert!(set.next_addr().is_none());
    assert!(set.health().is_empty());

    // Waiting, and the first member arrives in time.
    let members = Arc::new(FixedSet::empty());
    let set = HttpSet::builder()
        .wait_for_members(Duration::from_secs(5))
        .build(members.clone())
        .unwrap();
    let publish = {
        let members = members.clone();
        let addr = server.addr();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            members.set_addresses([addr]).unwrap();
        })
    };
    let started = Instant::now();
    let resp = set.get("/").await.expect("served once the member arrived");
    assert_eq!(text(resp).await, "a");
    assert!(started.elapsed() >= Duration::from_millis(90));
    publish.await.unwrap();

    // Waiting, and nothing arrives: NoMembers after the wait.
    let set = HttpSet::builder()
        .wait_for_members(Duration::from_millis(100))
        .build(FixedSet::empty())
        .unwrap();
    match set.get("/").await {
        Err(Error::NoMembers { waited }) => assert!(waited >= Duration::from_millis(100)),
        other => panic!("expected NoMembers, got {other:?}"),
    }

    // A closed, empty source does not make callers wait out the deadline.
    let closed = FixedSet::empty();
    closed.close();
    let set = HttpSet::builder()
        .wait_for_members(Duration::from_secs(30))
        .build(closed)
        .unwrap();
    let started = Instant::now();
    assert!(matches!(set.get("/").await, Err(Error::NoMembers { .. })));
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Plain TCP that records the URIs it is asked to connect to: stands in for
/// a TLS connector, to show the scheme and authority reach the connector.
#[derive(Clone)]
struct Recording {
    tcp: HttpConnector,
    seen: Arc<Mutex<Vec<Uri>>>,
}

impl Service<Uri> for Recording {
    type Response = <HttpConnector as Service<Uri>>::Response;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.seen.lock().unwrap().push(uri.clone());
        Box::pin(self.tcp.call(uri))
    }
}

#[tokio::test]
async fn https_uses_the_given_connector() {
    let server = TestServer::start("a", Mode::Normal).await;
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let set = HttpSet::builder()
        .connector(Recording {
            tcp,
            seen: seen.clone(),
        })
        .https()
        .build(FixedSet::new([server.addr()]).unwrap())
        .unwrap();
    let resp = set.get("/").await.unwrap();
    assert_eq!(text(resp).await, "a");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].scheme_str(), Some("https"));
    assert_eq!(seen[0].authority().unwrap().as_str(), server.addr());
}

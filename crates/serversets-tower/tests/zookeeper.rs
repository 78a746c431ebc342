//! The whole path for real: tonic greeter servers register in a real
//! ZooKeeper through serversets-core, and clients follow a core `watch()`
//! through both paths of this crate: tower's p2c over `WatcherDiscover`, and
//! tonic's `balance_channel` through `BalanceChannel`.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serversets_core::{Environment, Member, Registration, ServerSet, Watch, Watcher};
use serversets_tower::tonic::BalanceChannel;
use serversets_tower::{Endpoints, FailFastLayer, MemberLoad, NoServers, WatcherDiscover};
use support::greeter::greeter_client::GreeterClient;
use support::{assert_even, eventually, hello, hello_service, tally, RetryUnavailable, TestServer};
use testkit::ZkCluster;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tonic::Code;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceBuilder, ServiceExt};

type Client = GreeterClient<
    BoxCloneService<http::Request<Body>, http::Response<Body>, serversets_tower::Error>,
>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    /// tower's p2c over WatcherDiscover, a lazy tonic Channel per member.
    Discover,
    /// tonic's balance_channel, fed by BalanceChannel.
    Channel,
}

const WAIT: Duration = Duration::from_millis(500);

fn client(path: Path, watch: Arc<Watch>) -> (Client, Endpoints) {
    match path {
        Path::Discover => {
            let discover = WatcherDiscover::new(watch, |member: &Member| {
                let endpoint =
                    Endpoint::from_shared(format!("http://{}", member.addr())).expect("uri");
                MemberLoad::new(endpoint.connect_lazy(), member)
            });
            let endpoints = discover.endpoints();
            let service = ServiceBuilder::new()
                .layer(FailFastLayer::new(endpoints.clone(), WAIT).grpc_unavailable())
                .service(Buffer::new(Balance::new(discover), 1024));
            (GreeterClient::new(BoxCloneService::new(service)), endpoints)
        }
        Path::Channel => {
            let (channel, sync) = BalanceChannel::new(watch).build().expect("runtime");
            let channel = sync.fail_fast(WAIT).layer(channel);
            (
                GreeterClient::new(BoxCloneService::new(channel)),
                sync.endpoints(),
            )
        }
    }
}

async fn send(client: &Client, n: usize, concurrency: usize) {
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let mut client = client.clone();
        let count = n / concurrency + usize::from(t < n % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                client.say_hello(hello("you")).await.expect("answered");
            }
        }));
    }
    for t in tasks {
        t.await.expect("request task");
    }
}

async fn register(set: &ServerSet, server: &TestServer) -> Registration {
    set.register_endpoint("127.0.0.1", server.port(), None)
        .await
        .expect("registered")
}

/// The watch holds `n` members and (for the channel, which is fed by a task
/// of its own) they have been handed to the balancer. A discover stream is
/// polled by the balancer on the next request, which applies the change
/// before it picks a member.
async fn propagated(path: Path, watch: &Watch, endpoints: &Endpoints, n: usize) {
    let done = eventually(Duration::from_secs(20), || {
        watch.snapshot().len() == n && (path == Path::Discover || endpoints.len() == n)
    })
    .await;
    assert!(
        done,
        "{path:?}: {n} members not propagated: watch {}, endpoints {}",
        watch.snapshot().len(),
        endpoints.len()
    );
}

async fn follows_zookeeper(path: Path) {
    let zk = ZkCluster::standalone().expect("zookeeper (see testkit for install hints)");
    let zookeepers = ServerSet::builder(
        Environment::Test,
        &format!("tower-{path:?}"),
        [zk.connect_string()],
    )
    .connect_timeout(Duration::from_secs(20))
    .build()
    .unwrap();
    let mut servers = vec![
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let mut registered = Vec::new();
    for s in &servers {
        registered.push(register(&zookeepers, s).await);
    }
    let watch = Arc::new(zookeepers.watch().await.unwrap());
    let (client, endpoints) = client(path, watch.clone());
    propagated(path, &watch, &endpoints, 3).await;

    // Requests spread over every member.
    send(&client, 900, 8).await;
    assert_even(&tally(&servers), 0.12);

    // b deregisters: once the change has propagated, it gets no request.
    registered.remove(1).close().await.unwrap();
    propagated(path, &watch, &endpoints, 2).await;
    let b_hits = servers[1].hits();
    send(&client, 300, 4).await;
    assert_eq!(
        servers[1].hits(),
        b_hits,
        "{path:?}: b deregistered, yet answered"
    );

    // d registers later and gets its share.
    let d = TestServer::start("d");
    registered.push(register(&zookeepers, &d).await);
    propagated(path, &watch, &endpoints, 3).await;
    let live = |servers: &[TestServer], d: &TestServer| {
        [tally(&servers[..1]), tally(&servers[2..]), tally([d])].concat()
    };
    let before = live(&servers, &d);
    send(&client, 900, 8).await;
    let delta: Vec<_> = live(&servers, &d)
        .into_iter()
        .zip(before)
        .map(|((n, a), (_, b))| (n, a - b))
        .collect();
    assert_even(&delta, 0.12);

    // c crashes without deregistering (its node stays until its session
    // would expire): failures are retried by the example policy.
    servers[2].kill();
    let c_hits = servers[2].hits();
    let mut failed = 0;
    let mut retried = 0;
    for _ in 0..300 {
        let policy = RetryUnavailable::new(4);
        let log = policy.log.clone();
        match tower::retry::Retry::new(policy, hello_service(client.clone()))
            .oneshot(hello("you"))
            .await
        {
            Ok(reply) => assert_ne!(reply.server, "c"),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert_eq!(log.gave_up.load(Ordering::SeqCst), 1);
                failed += 1;
            }
        }
        retried += log.retried.load(Ordering::SeqCst);
    }
    assert_eq!(servers[2].hits(), c_hits);
    assert!(retried >= 1, "{path:?}: c was never tried");
    match path {
        // MemberLoad cools c down after each failure: about one retry a
        // second, and none gives up.
        Path::Discover => assert!(
            failed == 0 && retried <= 20,
            "{failed} failed, {retried} retried"
        ),
        // tonic's balancer keeps picking c about one time in three; a
        // request fails only if all 4 attempts do (1 in 81).
        Path::Channel => assert!(
            failed <= 20 && retried >= 50,
            "{failed} failed, {retried} retried"
        ),
    }

    // Everybody leaves: requests fail fast with NoServers.
    for r in registered.drain(..) {
        r.close().await.unwrap();
    }
    propagated(path, &watch, &endpoints, 0).await;
    let status = client.clone().say_hello(hello("you")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(NoServers::find(&status).map(NoServers::waited), Some(WAIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_p2c_follows_servers_registered_in_zookeeper() {
    follows_zookeeper(Path::Discover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_channel_follows_servers_registered_in_zookeeper() {
    follows_zookeeper(Path::Channel).await;
}

//! The whole path for real: tonic greeter servers register in a real
//! ZooKeeper through serversets-core, and clients follow a core `watch()`
//! through both paths of this crate: tower's p2c over `WatcherDiscover`, and
//! tonic's `balance_channel` through `BalanceChannel`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serversets_core::{Environment, Registration, ServerSet, Watch, Watcher};
use serversets_tower::tonic::BalanceChannel;
use serversets_tower::{FailFastLayer, MemberCount, NoMembers, WatcherDiscover};
use support::{
    assert_even, boxed, hello, member_channel, p2c, send, since, tally, BoxedClient as Client,
    TestServer,
};
use testkit::ZkCluster;
use tonic::Code;
use tower::Layer;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    /// tower's p2c over WatcherDiscover, a lazy tonic Channel per member.
    Discover,
    /// tonic's balance_channel, fed by BalanceChannel.
    Channel,
}

const WAIT: Duration = Duration::from_millis(500);

fn client(path: Path, watch: Arc<Watch>) -> (Client, MemberCount) {
    match path {
        Path::Discover => {
            let discover = WatcherDiscover::new(watch, member_channel);
            let members = discover.member_count();
            let fail_fast = FailFastLayer::new(members.clone(), WAIT).grpc_unavailable();
            (p2c(discover, fail_fast), members)
        }
        Path::Channel => {
            let (channel, sync) = BalanceChannel::new(watch).build().expect("runtime");
            let channel = sync.fail_fast(WAIT).layer(channel);
            (boxed(channel), sync.member_count())
        }
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
async fn propagated(path: Path, watch: &Watch, members: &MemberCount, n: usize) {
    testkit::eventually(
        Duration::from_secs(20),
        &format!("{path:?}: {n} members to propagate to the watch and the balancer"),
        || async { watch.snapshot().len() == n && (path == Path::Discover || members.len() == n) },
    )
    .await;
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
    let mut servers = TestServer::start_all(["a", "b", "c"]);
    let mut registered = Vec::new();
    for s in &servers {
        registered.push(register(&zookeepers, s).await);
    }
    let watch = Arc::new(zookeepers.watch().await.unwrap());
    let (client, members) = client(path, watch.clone());
    propagated(path, &watch, &members, 3).await;

    // Requests spread over every member.
    send(&client, 900, 8).await;
    assert_even(&tally(&servers), 0.12);

    // b deregisters: once the change has propagated, it gets no request.
    registered.remove(1).close().await.unwrap();
    propagated(path, &watch, &members, 2).await;
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
    propagated(path, &watch, &members, 3).await;
    let live = |servers: &[TestServer], d: &TestServer| {
        [tally(&servers[..1]), tally(&servers[2..]), tally([d])].concat()
    };
    let before = live(&servers, &d);
    send(&client, 900, 8).await;
    assert_even(&since(&before, live(&servers, &d)), 0.12);

    // c crashes without deregistering (its node stays until its session
    // would expire): failures are retried by the example policy.
    servers[2].kill();
    let c_hits = servers[2].hits();
    let support::RetriedAround { retried, failed } =
        support::retry_around(&client, "c", 4, 300).await;
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

    // Everybody leaves: requests fail fast with NoMembers.
    for r in registered.drain(..) {
        r.close().await.unwrap();
    }
    propagated(path, &watch, &members, 0).await;
    let status = client.clone().say_hello(hello("you")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(NoMembers::find(&status).map(NoMembers::waited), Some(WAIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_p2c_follows_servers_registered_in_zookeeper() {
    follows_zookeeper(Path::Discover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_channel_follows_servers_registered_in_zookeeper() {
    follows_zookeeper(Path::Channel).await;
}

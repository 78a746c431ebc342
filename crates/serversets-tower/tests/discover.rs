//! The tower path over a FixedSet: `WatcherDiscover` (and `MakeDiscover`)
//! feeding tower's p2c `Balance`, one lazily connecting tonic `Channel` per
//! member, real tonic greeter servers on loopback.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serversets_core::{HostPort, Member, Watcher};
use serversets_fixedset::FixedSet;
use serversets_tower::{
    FailFast, FailFastLayer, MakeDiscover, MemberCount, MemberLoad, NoMembers, WatcherDiscover,
};
use support::{
    addrs, assert_even, hello, hello_service, member_channel, member_endpoint, p2c, send, since,
    tally, BoxedClient, RetryUnavailable, TestServer,
};
use tonic::body::Body;
use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};
use tower::ServiceExt;

/// A greeter client over p2c, failing fast after `wait` with no members.
fn balanced<D>(discover: D, members: MemberCount, wait: Duration) -> BoxedClient
where
    D: tower::discover::Discover + Unpin + Send + 'static,
    D::Key: std::hash::Hash + Clone + Send,
    D::Error: Into<tower::BoxError>,
    D::Service: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + tower::load::Load
        + Send,
    <D::Service as tower::Service<http::Request<Body>>>::Error: Into<tower::BoxError>,
    <D::Service as tower::Service<http::Request<Body>>>::Future: Send,
    <D::Service as tower::load::Load>::Metric: std::fmt::Debug,
{
    p2c(discover, FailFastLayer::new(members, wait))
}

fn client_over(set: impl Watcher + 'static) -> (BoxedClient, MemberCount) {
    let discover = WatcherDiscover::new(set, member_channel);
    let members = discover.member_count();
    (
        balanced(discover, members.clone(), Duration::from_secs(2)),
        members,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_every_member() {
    let servers = TestServer::start_all(["a", "b", "c"]);
    let set = FixedSet::new(addrs(&servers)).unwrap();
    let (client, members) = client_over(set);
    send(&client, 900, 8).await;
    assert_eq!(members.len(), 3);
    assert_even(&tally(&servers), 0.12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_gets_no_new_requests() {
    let servers = TestServer::start_all(["a", "b", "c"]);
    // The FixedSet is shared with the discover through an Arc, so the test
    // can change it.
    let set = Arc::new(FixedSet::new(addrs(&servers)).unwrap());
    let (client, members) = client_over(set.clone());
    send(&client, 300, 4).await;
    assert!(servers[1].hits() > 0);

    set.set_addresses([servers[0].addr(), servers[2].addr()])
        .unwrap();
    // The removal is applied before the next request picks a member.
    let b_before = servers[1].hits();
    send(&client, 300, 4).await;
    assert_eq!(servers[1].hits(), b_before, "b was removed, yet answered");
    assert_eq!(members.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_later_gets_traffic() {
    let servers = TestServer::start_all(["a", "b", "c"]);
    let set = Arc::new(FixedSet::new(addrs(&servers[..2])).unwrap());
    let (client, members) = client_over(set.clone());
    send(&client, 100, 4).await;
    assert_eq!(servers[2].hits(), 0);

    set.set_addresses(addrs(&servers)).unwrap();
    let before = tally(&servers);
    send(&client, 900, 8).await;
    assert_eq!(members.len(), 3);
    assert_even(&since(&before, tally(&servers)), 0.12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_failures_are_retried_on_the_others() {
    let mut servers = TestServer::start_all(["a", "b", "c"]);
    let set = FixedSet::new(addrs(&servers)).unwrap();
    let (client, _) = client_over(set);
    send(&client, 90, 3).await;

    // b crashes and stays in the set (its registration would linger until
    // its ZooKeeper session expires).
    servers[1].kill();
    let before = tally(&servers);
    let seen = support::retry_around(&client, "b", 3, 300).await;
    let after = tally(&servers);
    assert_eq!(after[1], before[1], "the killed server answered");
    assert_eq!(
        seen.failed, 0,
        "a request was not retried onto a live server"
    );
    // MemberLoad reads b as fully loaded for a second after each failure,
    // so p2c (which draws two distinct members) picks a live one: b costs
    // about one failed attempt per cool-down, each retried once.
    let retried = seen.retried;
    assert!(retried >= 1, "b was never tried: the test proves nothing");
    assert!(retried <= 20, "{retried} retries for 300 requests");

    // An answer that is an error is not retried.
    let policy = RetryUnavailable::new(3);
    let log = policy.log.clone();
    let status = tower::retry::Retry::new(policy, hello_service(client.clone()))
        .oneshot(hello("invalid"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(log.retried.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_members_fail_fast_with_no_servers() {
    let set = Arc::new(FixedSet::empty());
    let discover = WatcherDiscover::new(set.clone(), member_channel);
    let members = discover.member_count();
    let mut client = balanced(discover, members.clone(), Duration::from_millis(300));
    let a = TestServer::start("a");
    support::fails_fast_until_a_member_arrives(&client, Duration::from_millis(300), &set, &a).await;

    // Emptied again: fails fast again.
    set.set_addresses(Vec::<String>::new()).unwrap();
    // The removal reaches the balancer with the next request.
    let status = client.say_hello(hello("you")).await.unwrap_err();
    assert!(NoMembers::find(&status).is_some(), "{status:?}");
    assert!(members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_also_works_without_a_buffer() {
    let discover = WatcherDiscover::new(FixedSet::empty(), member_channel);
    let members = discover.member_count();
    let service = FailFast::new(Balance::new(discover), members, Duration::from_millis(100));
    let started = Instant::now();
    let err = service
        .oneshot(http::Request::new(Body::empty()))
        .await
        .unwrap_err();
    assert!(err.is_no_servers(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_scale_load() {
    let servers = TestServer::start_all(["a", "b", "heavy"]);
    let member = |s: &TestServer, w: f64| {
        Member::builder(
            s.name.as_str(),
            HostPort::new("127.0.0.1", s.port()).unwrap(),
        )
        .weight(w)
        .build()
    };
    let set = FixedSet::from_members([
        member(&servers[0], 1.0),
        member(&servers[1], 1.0),
        member(&servers[2], 4.0),
    ]);
    let (client, _) = client_over(set);
    send(&client, 1200, 12).await;
    let counts = tally(&servers);
    let (a, b, heavy) = (counts[0].1, counts[1].1, counts[2].1);
    assert!(heavy > a + b / 2 && heavy > b + a / 2, "{counts:?}");

    // Weight 0: no traffic while others have some.
    let set = FixedSet::from_members([member(&servers[0], 1.0), member(&servers[1], 0.0)]);
    let b_before = servers[1].hits();
    let (client, _) = client_over(set);
    send(&client, 200, 4).await;
    assert_eq!(servers[1].hits(), b_before, "weight 0 got traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn towers_own_load_wrappers_work_too() {
    let servers = TestServer::start_all(["a", "b", "c"]);
    let plain = |m: &Member| member_endpoint(m).connect_lazy();

    let set = FixedSet::new(addrs(&servers)).unwrap();
    let discover = WatcherDiscover::new(set, plain);
    let members = discover.member_count();
    let discover = PendingRequestsDiscover::new(discover, CompleteOnResponse::default());
    send(&balanced(discover, members, Duration::from_secs(1)), 600, 8).await;
    assert_even(&tally(&servers), 0.15);

    let before = tally(&servers);
    let set = FixedSet::new(addrs(&servers)).unwrap();
    let discover = WatcherDiscover::new(set, plain);
    let members = discover.member_count();
    let discover = PeakEwmaDiscover::new(
        discover,
        Duration::from_millis(1),
        Duration::from_secs(1),
        CompleteOnResponse::default(),
    );
    send(&balanced(discover, members, Duration::from_secs(1)), 600, 8).await;
    let after = tally(&servers);
    for ((name, a), (_, b)) in after.iter().zip(&before) {
        assert!(a > b, "{name} got nothing under PeakEwma");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_discover_inserts_a_member_once_it_connects() {
    let a = TestServer::start("a");
    let port = testkit::free_port();
    let set = FixedSet::new([a.addr(), format!("127.0.0.1:{port}")]).unwrap();
    // Connect first, then hand out the client: a member that refuses stays
    // out (and is tried again) instead of failing requests.
    let connect = tower::service_fn(|member: Member| async move {
        let channel = member_endpoint(&member).connect().await?;
        Ok::<_, tonic::transport::Error>(MemberLoad::new(channel, &member))
    });
    let discover = MakeDiscover::new(set, connect)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let members = discover.member_count();
    let client = balanced(discover, members.clone(), Duration::from_secs(2));
    send(&client, 100, 4).await;
    assert_eq!(
        a.hits(),
        100,
        "every request reached the one member that is up"
    );
    assert_eq!(members.len(), 1);

    // The member starts listening: a retry connects it, and it gets traffic.
    let late = TestServer::start_on("late", port);
    testkit::eventually(
        Duration::from_secs(10),
        "the member to be inserted once it accepted connections",
        || {
            let mut client = client.clone();
            let late = &late;
            async move {
                client.say_hello(hello("you")).await.expect("answered");
                late.hits() > 0
            }
        },
    )
    .await;
    assert_eq!(members.len(), 2);
}

//! The tower path over a FixedSet: `WatcherDiscover` (and `MakeDiscover`)
//! feeding tower's p2c `Balance`, one lazily connecting tonic `Channel` per
//! member, real tonic greeter servers on loopback.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serversets_core::{HostPort, Member, Watcher};
use serversets_fixedset::FixedSet;
use serversets_tower::{
    Endpoints, FailFast, FailFastLayer, MakeDiscover, MemberLoad, NoServers, WatcherDiscover,
};
use support::greeter::greeter_client::GreeterClient;
use support::{assert_even, hello, hello_service, tally, RetryUnavailable, TestServer};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Discover;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

type Http = BoxCloneService<http::Request<Body>, http::Response<Body>, serversets_tower::Error>;

fn endpoint(member: &Member) -> Endpoint {
    Endpoint::from_shared(format!("http://{}", member.addr())).expect("uri")
}

/// One lazily connecting channel per member, weighted, failing over.
fn member_channel(member: &Member) -> MemberLoad<Channel> {
    MemberLoad::new(endpoint(member).connect_lazy(), member)
}

/// A greeter client over p2c: buffered so clones share one balancer, and
/// failing fast after `wait` with no endpoints.
fn balanced<D>(discover: D, endpoints: Endpoints, wait: Duration) -> GreeterClient<Http>
where
    D: Discover + Unpin + Send + 'static,
    D::Key: std::hash::Hash + Clone + Send,
    D::Error: Into<BoxError>,
    D::Service: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + tower::load::Load
        + Send,
    <D::Service as tower::Service<http::Request<Body>>>::Error: Into<BoxError>,
    <D::Service as tower::Service<http::Request<Body>>>::Future: Send,
    <D::Service as tower::load::Load>::Metric: std::fmt::Debug,
{
    let service = ServiceBuilder::new()
        .layer(FailFastLayer::new(endpoints, wait))
        .service(Buffer::new(Balance::new(discover), 1024));
    GreeterClient::new(BoxCloneService::new(service))
}

fn client_over(set: impl Watcher + 'static) -> (GreeterClient<Http>, Endpoints) {
    let discover = WatcherDiscover::new(set, member_channel);
    let endpoints = discover.endpoints();
    (
        balanced(discover, endpoints.clone(), Duration::from_secs(2)),
        endpoints,
    )
}

/// `n` requests, `concurrency` at a time; panics on any failure.
async fn send(client: &GreeterClient<Http>, n: usize, concurrency: usize) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_every_member() {
    let servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let set = FixedSet::new(servers.iter().map(TestServer::endpoint)).unwrap();
    let (client, endpoints) = client_over(set);
    send(&client, 900, 8).await;
    assert_eq!(endpoints.len(), 3);
    assert_even(&tally(&servers), 0.12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_gets_no_new_requests() {
    let servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    // The FixedSet is shared with the discover through an Arc, so the test
    // can change it.
    let set = std::sync::Arc::new(FixedSet::new(servers.iter().map(TestServer::endpoint)).unwrap());
    let discover = WatcherDiscover::new(set.clone(), member_channel);
    let endpoints = discover.endpoints();
    let client = balanced(discover, endpoints.clone(), Duration::from_secs(2));
    send(&client, 300, 4).await;
    assert!(servers[1].hits() > 0);

    set.set_addresses([servers[0].endpoint(), servers[2].endpoint()])
        .unwrap();
    // The removal is applied before the next request picks a member.
    let b_before = servers[1].hits();
    send(&client, 300, 4).await;
    assert_eq!(servers[1].hits(), b_before, "b was removed, yet answered");
    assert_eq!(endpoints.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_later_gets_traffic() {
    let servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let set =
        std::sync::Arc::new(FixedSet::new([servers[0].endpoint(), servers[1].endpoint()]).unwrap());
    let discover = WatcherDiscover::new(set.clone(), member_channel);
    let endpoints = discover.endpoints();
    let client = balanced(discover, endpoints.clone(), Duration::from_secs(2));
    send(&client, 100, 4).await;
    assert_eq!(servers[2].hits(), 0);

    set.set_addresses(servers.iter().map(TestServer::endpoint))
        .unwrap();
    let before = tally(&servers);
    send(&client, 900, 8).await;
    let after = tally(&servers);
    let delta: Vec<_> = after
        .iter()
        .zip(&before)
        .map(|((n, a), (_, b))| (n.clone(), a - b))
        .collect();
    assert_eq!(endpoints.len(), 3);
    assert_even(&delta, 0.12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_failures_are_retried_on_the_others() {
    let mut servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let set = FixedSet::new(servers.iter().map(TestServer::endpoint)).unwrap();
    let (client, _) = client_over(set);
    send(&client, 90, 3).await;

    // b crashes and stays in the set (its registration would linger until
    // its ZooKeeper session expires).
    servers[1].kill();
    let policy = RetryUnavailable::new(3);
    let log = policy.log.clone();
    let service = tower::retry::Retry::new(policy, hello_service(client.clone()));
    let before = tally(&servers);
    for _ in 0..300 {
        let reply = service
            .clone()
            .oneshot(hello("you"))
            .await
            .expect("retried onto a live server");
        assert_ne!(reply.server, "b");
    }
    let after = tally(&servers);
    assert_eq!(after[1], before[1], "the killed server answered");
    // MemberLoad reads b as fully loaded for a second after each failure,
    // so p2c (which draws two distinct members) picks a live one: b costs
    // about one failed attempt per cool-down, each retried once.
    let retried = log.retried.load(Ordering::SeqCst);
    assert!(retried >= 1, "b was never tried: the test proves nothing");
    assert!(retried <= 20, "{retried} retries for 300 requests");
    assert_eq!(log.gave_up.load(Ordering::SeqCst), 0);

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
async fn zero_endpoints_fail_fast_with_no_servers() {
    let set = std::sync::Arc::new(FixedSet::empty());
    let discover = WatcherDiscover::new(set.clone(), member_channel);
    let endpoints = discover.endpoints();
    let mut client = balanced(discover, endpoints.clone(), Duration::from_millis(300));

    let started = Instant::now();
    let status = client.say_hello(hello("you")).await.unwrap_err();
    let took = started.elapsed();
    let no_servers =
        NoServers::find(&status).unwrap_or_else(|| panic!("not NoServers: {status:?}"));
    assert_eq!(no_servers.waited(), Duration::from_millis(300));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // A member arriving within the wait answers the waiting request.
    let a = TestServer::start("a");
    let waiting = {
        let mut client = client.clone();
        tokio::spawn(async move { client.say_hello(hello("you")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    set.set_addresses([a.endpoint()]).unwrap();
    let reply = waiting
        .await
        .unwrap()
        .expect("answered once a member arrived");
    assert_eq!(reply.into_inner().server, "a");

    // Emptied again: fails fast again.
    set.set_addresses(Vec::<String>::new()).unwrap();
    // The removal reaches the balancer with the next request.
    let status = client.say_hello(hello("you")).await.unwrap_err();
    assert!(NoServers::find(&status).is_some(), "{status:?}");
    assert!(endpoints.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_also_works_without_a_buffer() {
    let discover = WatcherDiscover::new(FixedSet::empty(), member_channel);
    let endpoints = discover.endpoints();
    let service = FailFast::new(
        Balance::new(discover),
        endpoints,
        Duration::from_millis(100),
    );
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
    let servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("heavy"),
    ];
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
    let servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let plain = |m: &Member| endpoint(m).connect_lazy();

    let set = FixedSet::new(servers.iter().map(TestServer::endpoint)).unwrap();
    let discover = WatcherDiscover::new(set, plain);
    let endpoints = discover.endpoints();
    let discover = PendingRequestsDiscover::new(discover, CompleteOnResponse::default());
    send(
        &balanced(discover, endpoints, Duration::from_secs(1)),
        600,
        8,
    )
    .await;
    assert_even(&tally(&servers), 0.15);

    let before = tally(&servers);
    let set = FixedSet::new(servers.iter().map(TestServer::endpoint)).unwrap();
    let discover = WatcherDiscover::new(set, plain);
    let endpoints = discover.endpoints();
    let discover = PeakEwmaDiscover::new(
        discover,
        Duration::from_millis(1),
        Duration::from_secs(1),
        CompleteOnResponse::default(),
    );
    send(
        &balanced(discover, endpoints, Duration::from_secs(1)),
        600,
        8,
    )
    .await;
    let after = tally(&servers);
    for ((name, a), (_, b)) in after.iter().zip(&before) {
        assert!(a > b, "{name} got nothing under PeakEwma");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_discover_inserts_a_member_once_it_connects() {
    let a = TestServer::start("a");
    let port = support::free_port();
    let set = FixedSet::new([a.endpoint(), format!("127.0.0.1:{port}")]).unwrap();
    // Connect first, then hand out the client: a member that refuses stays
    // out (and is tried again) instead of failing requests.
    let connect = tower::service_fn(|member: Member| async move {
        let channel = endpoint(&member).connect().await?;
        Ok::<_, tonic::transport::Error>(MemberLoad::new(channel, &member))
    });
    let discover = MakeDiscover::new(set, connect)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let endpoints = discover.endpoints();
    let client = balanced(discover, endpoints.clone(), Duration::from_secs(2));
    send(&client, 100, 4).await;
    assert_eq!(
        a.hits(),
        100,
        "every request reached the one member that is up"
    );
    assert_eq!(endpoints.len(), 1);

    // The member starts listening: a retry connects it, and it gets traffic.
    let late = TestServer::start_on("late", port);
    let mut client = client.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while late.hits() == 0 {
        assert!(
            Instant::now() < deadline,
            "the member was not inserted once it accepted connections"
        );
        client.say_hello(hello("you")).await.expect("answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(endpoints.len(), 2);
}

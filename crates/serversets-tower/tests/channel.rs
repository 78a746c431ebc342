//! The tonic path over a FixedSet: `BalanceChannel` keeping
//! `Channel::balance_channel` in step with the set, real tonic greeter
//! servers on loopback.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serversets_core::{HostPort, Member, Publisher};
use serversets_fixedset::FixedSet;
use serversets_tower::tonic::{BalanceChannel, ChannelSync, Stopped};
use serversets_tower::{FailFast, NoServers};
use support::greeter::greeter_client::GreeterClient;
use support::{assert_even, eventually, hello, hello_service, tally, RetryUnavailable, TestServer};
use tonic::transport::Channel;
use tonic::Code;
use tower::{Layer, ServiceExt};

type Client = GreeterClient<FailFast<Channel>>;

fn client_over(set: Arc<FixedSet>, wait: Duration) -> (Client, ChannelSync) {
    let (channel, sync) = BalanceChannel::new(set).build().expect("in a runtime");
    let channel = sync.fail_fast(wait).layer(channel);
    (GreeterClient::new(channel), sync)
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

fn endpoints_of<'a>(servers: impl IntoIterator<Item = &'a TestServer>) -> Vec<String> {
    servers.into_iter().map(TestServer::endpoint).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_every_member() {
    let servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let set = Arc::new(FixedSet::new(endpoints_of(&servers)).unwrap());
    let (client, sync) = client_over(set, Duration::from_secs(2));
    send(&client, 900, 8).await;
    assert_eq!(sync.endpoints().len(), 3);
    assert_even(&tally(&servers), 0.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_gets_no_new_requests() {
    let servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let set = Arc::new(FixedSet::new(endpoints_of(&servers)).unwrap());
    let (client, sync) = client_over(set.clone(), Duration::from_secs(2));
    send(&client, 300, 4).await;
    assert!(servers[1].hits() > 0);

    set.set_addresses([servers[0].endpoint(), servers[2].endpoint()])
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || sync.endpoints().len() == 2).await);
    let b_before = servers[1].hits();
    send(&client, 300, 4).await;
    assert_eq!(servers[1].hits(), b_before, "b was removed, yet answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_later_gets_traffic() {
    let servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let set = Arc::new(FixedSet::new(endpoints_of(&servers[..2])).unwrap());
    let (client, sync) = client_over(set.clone(), Duration::from_secs(2));
    send(&client, 100, 4).await;
    assert_eq!(servers[2].hits(), 0);

    set.set_addresses(endpoints_of(&servers)).unwrap();
    assert!(eventually(Duration::from_secs(5), || sync.endpoints().len() == 3).await);
    let before = tally(&servers);
    send(&client, 900, 8).await;
    let delta: Vec<_> = tally(&servers)
        .into_iter()
        .zip(before)
        .map(|((name, after), (_, before))| (name, after - before))
        .collect();
    assert_even(&delta, 0.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_failures_follow_the_retry_policy() {
    let mut servers = [
        TestServer::start("a"),
        TestServer::start("b"),
        TestServer::start("c"),
    ];
    let set = Arc::new(FixedSet::new(endpoints_of(&servers)).unwrap());
    let (client, _sync) = client_over(set, Duration::from_secs(2));
    send(&client, 90, 3).await;
    servers[1].kill();

    // tonic's balancer does not steer around a failing endpoint (it
    // reconnects on the next pick, and its loads are all 0), so about one
    // attempt in three lands on the dead server. With 4 attempts a request
    // fails only if all 4 do: 1 in 81.
    const ATTEMPTS: usize = 4;
    const REQUESTS: usize = 300;
    let mut retried = 0;
    let mut failed = 0;
    for _ in 0..REQUESTS {
        let policy = RetryUnavailable::new(ATTEMPTS);
        let log = policy.log.clone();
        match tower::retry::Retry::new(policy, hello_service(client.clone()))
            .oneshot(hello("you"))
            .await
        {
            Ok(reply) => {
                assert_ne!(reply.server, "b");
                assert_eq!(log.gave_up.load(Ordering::SeqCst), 0);
            }
            Err(status) => {
                // The policy's verdict: only after every attempt failed
                // with Unavailable.
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert_eq!(log.retried.load(Ordering::SeqCst), ATTEMPTS - 1);
                assert_eq!(log.gave_up.load(Ordering::SeqCst), 1);
                failed += 1;
            }
        }
        retried += log.retried.load(Ordering::SeqCst);
    }
    // Expected: about 150 retries (a third of about 450 attempts) and 3.7
    // failures; the bounds are far out in the tails.
    assert!((60..=300).contains(&retried), "{retried} retries");
    assert!(failed <= 20, "{failed} of {REQUESTS} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_endpoints_fail_fast_as_unavailable() {
    let set = Arc::new(FixedSet::empty());
    let (mut client, sync) = client_over(set.clone(), Duration::from_millis(300));

    let started = Instant::now();
    let status = client.say_hello(hello("you")).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let no_servers =
        NoServers::find(&status).unwrap_or_else(|| panic!("no NoServers in {status:?}"));
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

    // Emptied again: fails fast again, once the removal is on its way to
    // tonic's balancer (before that, a request may still reach `a`).
    set.set_addresses(Vec::<String>::new()).unwrap();
    assert!(
        sync.endpoints().no_servers(),
        "an empty set is seen at once"
    );
    assert!(eventually(Duration::from_secs(5), || sync.endpoints().is_empty()).await);
    let status = client.say_hello(hello("you")).await.unwrap_err();
    assert!(NoServers::find(&status).is_some(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_configures_each_endpoint_and_can_leave_members_out() {
    let servers = [TestServer::start("a"), TestServer::start("b")];
    let member = |s: &TestServer, draining: bool| {
        let m = Member::builder(
            s.name.as_str(),
            HostPort::new("127.0.0.1", s.port()).unwrap(),
        );
        if draining {
            m.metadata("draining", "yes")
        } else {
            m
        }
        .build()
    };
    let publisher = Publisher::new();
    publisher.publish([member(&servers[0], false), member(&servers[1], true)]);
    let (channel, sync) = BalanceChannel::new(publisher.feed())
        .configure(|member, endpoint| {
            if member.metadata().contains_key("draining") {
                return Err(format!("{} is draining", member.id()));
            }
            Ok(endpoint.timeout(Duration::from_secs(5)))
        })
        .build()
        .unwrap();
    let client = GreeterClient::new(sync.fail_fast(Duration::from_secs(2)).layer(channel));
    assert!(eventually(Duration::from_secs(5), || sync.endpoints().len() == 1).await);
    let rejected = sync.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].member().id().as_str(), "b");
    assert_eq!(rejected[0].error().to_string(), "b is draining");
    send(&client, 50, 2).await;
    assert_eq!((servers[0].hits(), servers[1].hits()), (50, 0));

    // b stops draining (same id, new contents): it comes in; a starts: out.
    publisher.publish([member(&servers[0], true), member(&servers[1], false)]);
    assert!(
        eventually(Duration::from_secs(5), || sync
            .rejected()
            .first()
            .is_some_and(|r| r.member().id().as_str() == "a"))
        .await
    );
    assert_eq!(sync.endpoints().len(), 1);
    send(&client, 50, 2).await;
    assert_eq!((servers[0].hits(), servers[1].hits()), (50, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hook_leaves_the_member_out_and_the_sync_running() {
    let a = TestServer::start("a");
    let publisher = Publisher::new();
    publisher.publish([Member::from_addr(a.endpoint().parse().unwrap())]);
    let (_channel, sync) = BalanceChannel::new(publisher.feed())
        .configure(|member, endpoint| {
            if member.metadata().is_empty() {
                panic!("boom");
            }
            Ok::<_, std::convert::Infallible>(endpoint)
        })
        .build()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || !sync.rejected().is_empty()).await);
    assert!(!sync.is_finished());
    let fine = Member::builder("a2", a.endpoint().parse::<HostPort>().unwrap())
        .metadata("k", "v")
        .build();
    publisher.publish([fine]);
    assert!(eventually(Duration::from_secs(5), || sync.endpoints().len() == 1).await);
    assert!(sync.rejected().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_stops_when_the_watcher_closes_and_the_channel_keeps_its_endpoints() {
    let a = TestServer::start("a");
    let publisher = Publisher::new();
    publisher.publish([Member::from_addr(a.endpoint().parse().unwrap())]);
    let (channel, sync) = BalanceChannel::new(publisher.feed()).build().unwrap();
    let mut client = GreeterClient::new(sync.fail_fast(Duration::from_secs(2)).layer(channel));
    client.say_hello(hello("you")).await.unwrap();
    publisher.close();
    let endpoints = sync.endpoints();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), sync.stopped()).await,
        Ok(Stopped::WatcherClosed)
    );
    assert_eq!(endpoints.len(), 1);
    client
        .say_hello(hello("you"))
        .await
        .expect("the last endpoints still serve");
    assert_eq!(a.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_stops_when_the_channel_is_dropped() {
    let set = Arc::new(FixedSet::new(["127.0.0.1:1"]).unwrap());
    let (channel, sync) = BalanceChannel::new(set.clone()).build().unwrap();
    let clone = channel.clone();
    drop(channel);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sync.is_finished(), "a clone still holds the channel");
    drop(clone);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), sync.stopped()).await,
        Ok(Stopped::ChannelDropped)
    );
    // The set is not closed by any of this.
    set.set_addresses(["127.0.0.1:2"]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_the_sync() {
    let (_channel, sync) = BalanceChannel::new(FixedSet::empty()).build().unwrap();
    sync.stop();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), sync.stopped()).await,
        Ok(Stopped::Aborted)
    );
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    let err = BalanceChannel::new(FixedSet::empty()).build().unwrap_err();
    assert_eq!(err, serversets_tower::tonic::BuildError::NoRuntime);
}

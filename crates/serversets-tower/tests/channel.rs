//! The tonic path over a FixedSet: `BalanceChannel` keeping
//! `Channel::balance_channel` in step with the set, real tonic greeter
//! servers on loopback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serversets_core::{HostPort, Member, Publisher};
use serversets_fixedset::FixedSet;
use serversets_tower::tonic::{BalanceChannel, ChannelSync, Stopped};
use serversets_tower::NoMembers;
use support::greeter::greeter_client::GreeterClient;
use support::{addrs, assert_even, boxed, hello, send, since, tally, BoxedClient, TestServer};
use testkit::eventually;
use tonic::Code;
use tower::Layer;

fn client_over(set: Arc<FixedSet>, wait: Duration) -> (BoxedClient, ChannelSync) {
    let (channel, sync) = BalanceChannel::new(set).build().expect("in a runtime");
    (boxed(sync.fail_fast(wait).layer(channel)), sync)
}

/// Waits until the channel has been given `n` members.
async fn members_reach(sync: &ChannelSync, n: usize) {
    eventually(
        Duration::from_secs(5),
        &format!("the channel to hold {n} members"),
        || async { sync.member_count().len() == n },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_every_member() {
    let servers = TestServer::start_all(["a", "b", "c"]);
    let set = Arc::new(FixedSet::new(addrs(&servers)).unwrap());
    let (client, sync) = client_over(set, Duration::from_secs(2));
    send(&client, 900, 8).await;
    assert_eq!(sync.member_count().len(), 3);
    assert_even(&tally(&servers), 0.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_gets_no_new_requests() {
    let servers = TestServer::start_all(["a", "b", "c"]);
    let set = Arc::new(FixedSet::new(addrs(&servers)).unwrap());
    let (client, sync) = client_over(set.clone(), Duration::from_secs(2));
    send(&client, 300, 4).await;
    assert!(servers[1].hits() > 0);

    set.set_addresses([servers[0].addr(), servers[2].addr()])
        .unwrap();
    members_reach(&sync, 2).await;
    let b_before = servers[1].hits();
    send(&client, 300, 4).await;
    assert_eq!(servers[1].hits(), b_before, "b was removed, yet answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_later_gets_traffic() {
    let servers = TestServer::start_all(["a", "b", "c"]);
    let set = Arc::new(FixedSet::new(addrs(&servers[..2])).unwrap());
    let (client, sync) = client_over(set.clone(), Duration::from_secs(2));
    send(&client, 100, 4).await;
    assert_eq!(servers[2].hits(), 0);

    set.set_addresses(addrs(&servers)).unwrap();
    members_reach(&sync, 3).await;
    let before = tally(&servers);
    send(&client, 900, 8).await;
    assert_even(&since(&before, tally(&servers)), 0.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_failures_follow_the_retry_policy() {
    let mut servers = TestServer::start_all(["a", "b", "c"]);
    let set = Arc::new(FixedSet::new(addrs(&servers)).unwrap());
    let (client, _sync) = client_over(set, Duration::from_secs(2));
    send(&client, 90, 3).await;
    servers[1].kill();

    // tonic's balancer does not steer around a failing endpoint (it
    // reconnects on the next pick, and its loads are all 0), so about one
    // attempt in three lands on the dead server. With 4 attempts a request
    // fails only if all 4 do: 1 in 81.
    const ATTEMPTS: usize = 4;
    const REQUESTS: usize = 300;
    let support::RetriedAround { retried, failed } =
        support::retry_around(&client, "b", ATTEMPTS, REQUESTS).await;
    // Expected: about 150 retries (a third of about 450 attempts) and 3.7
    // failures; the bounds are far out in the tails.
    assert!((60..=300).contains(&retried), "{retried} retries");
    assert!(failed <= 20, "{failed} of {REQUESTS} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_members_fail_fast_as_unavailable() {
    let set = Arc::new(FixedSet::empty());
    let (mut client, sync) = client_over(set.clone(), Duration::from_millis(300));
    let a = TestServer::start("a");
    let status =
        support::fails_fast_until_a_member_arrives(&client, Duration::from_millis(300), &set, &a)
            .await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // Emptied again: fails fast again, once the removal is on its way to
    // tonic's balancer (before that, a request may still reach `a`).
    set.set_addresses(Vec::<String>::new()).unwrap();
    assert!(
        sync.member_count().no_servers(),
        "an empty set is seen at once"
    );
    members_reach(&sync, 0).await;
    let status = client.say_hello(hello("you")).await.unwrap_err();
    assert!(NoMembers::find(&status).is_some(), "{status:?}");
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
    let client = boxed(sync.fail_fast(Duration::from_secs(2)).layer(channel));
    members_reach(&sync, 1).await;
    let rejected = sync.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].member().id().as_str(), "b");
    assert_eq!(rejected[0].error().to_string(), "b is draining");
    send(&client, 50, 2).await;
    assert_eq!((servers[0].hits(), servers[1].hits()), (50, 0));

    // b stops draining (same id, new contents): it comes in; a starts: out.
    publisher.publish([member(&servers[0], true), member(&servers[1], false)]);
    eventually(Duration::from_secs(5), "a to be rejected", || async {
        sync.rejected()
            .first()
            .is_some_and(|r| r.member().id().as_str() == "a")
    })
    .await;
    assert_eq!(sync.member_count().len(), 1);
    send(&client, 50, 2).await;
    assert_eq!((servers[0].hits(), servers[1].hits()), (50, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hook_leaves_the_member_out_and_the_sync_running() {
    let a = TestServer::start("a");
    let publisher = Publisher::new();
    publisher.publish([Member::from_addr(a.addr().parse().unwrap())]);
    let (_channel, sync) = BalanceChannel::new(publisher.feed())
        .configure(|member, endpoint| {
            if member.metadata().is_empty() {
                panic!("boom");
            }
            Ok::<_, std::convert::Infallible>(endpoint)
        })
        .build()
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the member to be rejected",
        || async { !sync.rejected().is_empty() },
    )
    .await;
    assert!(!sync.is_finished());
    let fine = Member::builder("a2", a.addr().parse::<HostPort>().unwrap())
        .metadata("k", "v")
        .build();
    publisher.publish([fine]);
    members_reach(&sync, 1).await;
    assert!(sync.rejected().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_stops_when_the_watcher_closes_and_the_channel_keeps_its_endpoints() {
    let a = TestServer::start("a");
    let publisher = Publisher::new();
    publisher.publish([Member::from_addr(a.addr().parse().unwrap())]);
    let (channel, sync) = BalanceChannel::new(publisher.feed()).build().unwrap();
    let mut client = GreeterClient::new(sync.fail_fast(Duration::from_secs(2)).layer(channel));
    client.say_hello(hello("you")).await.unwrap();
    publisher.close();
    let members = sync.member_count();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), sync.stopped()).await,
        Ok(Stopped::WatcherClosed)
    );
    assert_eq!(members.len(), 1);
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

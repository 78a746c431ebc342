//! ZooKeeper faults against real servers: session expiry, a full outage
//! longer than the session timeout, a killed leader, a paused server.
//! After each: exactly one member per live registration, watches that kept
//! their last set throughout and converge to the truth.

mod support;

use std::time::{Duration, Instant};

use serversets_core::{Health, RegistrationState, Watcher};
use support::*;
use testkit::eventually;
use testkit::ZkCluster;

const T: Duration = Duration::from_secs(30);
const SESSION: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_recreates_members_once_and_rearms_watches() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "expiry", SESSION);
    let a = register_local(&set, 1001).await;
    let b = register_local(&set, 1002).await;
    let watch = set.watch().await.unwrap();
    wait_for(&watch, T, "two members", |s| s.len() == 2).await;
    let session = set.session().unwrap();
    let old_id = session.session_id().unwrap();
    let (old_a, old_b) = (a.path().unwrap(), b.path().unwrap());

    session.expire_for_testing().await.unwrap();
    // Health passes through Expired, but may be Connected again before this
    // task looks (a watch channel keeps only the newest value): the new
    // session id is what proves the expiry.
    eventually(T, "new session", || async {
        session.session_id().is_some_and(|id| id != old_id)
    })
    .await;
    eventually(T, "both re-registered", || async {
        a.path().is_some_and(|p| p != old_a) && b.path().is_some_and(|p| p != old_b)
    })
    .await;
    let raw = raw(&zk.connect_string()).await;
    let members = members_in_zk(&raw, set.path()).await;
    assert_eq!(
        members.len(),
        2,
        "exactly one member per registration: {members:?}"
    );
    wait_for(&watch, T, "watch shows the new members", |s| {
        let ids: Vec<&str> = s.iter().map(|m| m.id().as_str()).collect();
        ids.len() == 2 && members.iter().all(|m| ids.contains(&m.as_str()))
    })
    .await;
    assert_eq!(watch.health(), Health::Connected);

    // The watch is re-armed: later changes still arrive.
    let c = register_local(&set, 1003).await;
    wait_for(&watch, T, "change after expiry", |s| s.len() == 3).await;
    drop(c);
    wait_for(&watch, T, "removal after expiry", |s| s.len() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outage_keeps_last_set_then_converges() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "outage", SESSION);
    let mine = register_local(&set, 2001).await;
    let raw_writer = raw(&zk.connect_string()).await;
    let other = put(
        &raw_writer,
        &format!("{}/member_", set.path()),
        br#"{"serviceEndpoint":{"host":"10.9.9.9","port":1},"additionalEndpoints":{},"status":"ALIVE"}"#,
        serversets_core::zookeeper_client::CreateMode::PersistentSequential,
    )
    .await;
    let watch = set.watch().await.unwrap();
    wait_for(&watch, T, "two members", |s| s.len() == 2).await;
    let before = watch.snapshot();
    drop(raw_writer);

    zk.stop(0).unwrap();
    let outage = Instant::now();
    let mut saw_outage = false;
    while outage.elapsed() < SESSION * 3 {
        let snap = watch.snapshot();
        assert!(
            snap.same_members(&before),
            "the set must not change during an outage: {snap:?}"
        );
        saw_outage |= watch.health() != Health::Connected;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_outage, "the outage must be reported");

    // Meanwhile the truth changes: the persistent member goes away.
    zk.restart(0).unwrap();
    let raw = raw(&zk.connect_string()).await;
    raw.delete(&other, None).await.unwrap();
    wait_for(&watch, T, "converges to the truth", |s| {
        addrs(s) == ["127.0.0.1:2001"]
    })
    .await;
    eventually(T, "registration is back", || async {
        matches!(mine.state(), RegistrationState::Registered(_))
    })
    .await;
    eventually(T, "exactly one member in ZooKeeper", || async {
        members_in_zk(&raw, set.path()).await.len() == 1
    })
    .await;
    tokio::time::sleep(SESSION).await;
    assert_eq!(
        members_in_zk(&raw, set.path()).await.len(),
        1,
        "no duplicate appears later"
    );
    assert_eq!(watch.health(), Health::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_leader_kill_loses_no_member() {
    init_tracing();
    let zk = ZkCluster::ensemble().unwrap();
    let set = set(&zk.connect_string(), "leader", SESSION);
    let eps: Vec<_> = futures::future::join_all(
        (0..5).map(|i| set.register_endpoint("127.0.0.1", 3000 + i, None)),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let watch = set.watch().await.unwrap();
    wait_for(&watch, T, "five members", |s| s.len() == 5).await;

    let leader = zk.leader().expect("leader");
    zk.kill(leader).unwrap();
    let start = Instant::now();
    while start.elapsed() < SESSION * 3 {
        assert_eq!(
            watch.snapshot().len(),
            5,
            "no member lost while the ensemble re-elects"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Writes work again, and the watch sees them.
    let extra = register_local(&set, 3999).await;
    wait_for(&watch, T, "new member after leader change", |s| {
        s.len() == 6
    })
    .await;
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    let raw = raw(&zk.server_address(survivor).unwrap()).await;
    eventually(T, "exactly six members", || async {
        members_in_zk(&raw, set.path()).await.len() == 6
    })
    .await;
    drop(extra);
    wait_for(&watch, T, "removal after leader change", |s| s.len() == 5).await;
    drop(eps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_the_connected_server_is_survived() {
    init_tracing();
    let zk = ZkCluster::ensemble().unwrap();
    let set = set(&zk.connect_string(), "pause", SESSION);
    let a = register_local(&set, 4001).await;
    let watch = set.watch().await.unwrap();
    wait_for(&watch, T, "member", |s| s.len() == 1).await;
    let sid = set.session().unwrap().session_id().unwrap();
    let connected = (0..3)
        .find(|&i| {
            four_letter(&zk, i, "cons")
                .map(|c| c.contains(&format!("sid=0x{sid:x}")))
                .unwrap_or(false)
        })
        .expect("our session is on some server");

    zk.pause(connected).unwrap();
    let start = Instant::now();
    while start.elapsed() < SESSION * 3 {
        // The member may be re-created under a new name if the session
        // expires meanwhile (both znodes can briefly coexist, which the watch
        // reports truthfully), but the endpoint never leaves the set.
        let snap = watch.snapshot();
        let mut seen = addrs(&snap);
        seen.dedup();
        assert_eq!(
            seen,
            ["127.0.0.1:4001"],
            "the set is kept through the partition"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Changes made through the healthy part of the ensemble arrive.
    let b = register_local(&set, 4002).await;
    wait_for(&watch, T, "new member during partition", |s| s.len() == 2).await;
    zk.resume(connected).unwrap();
    let other = (0..3).find(|&i| i != connected).unwrap();
    let raw = raw(&zk.server_address(other).unwrap()).await;
    eventually(T, "exactly two members", || async {
        members_in_zk(&raw, set.path()).await.len() == 2
    })
    .await;
    assert!(a.path().is_some() && b.path().is_some());
}

//! Registration and watching through a fault-injecting proxy in front of a
//! real ZooKeeper: connection resets, stalls and replies lost after the
//! server applied the request. These are the faults production networks
//! make; a stopped server only makes clean closes (see `faults.rs`).
//!
//! Every client under test connects through the proxies
//! (`connect_string()`); the truth is read past them
//! (`direct_connect_string()`).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serversets_core::zookeeper_client as zk;
use serversets_core::{Registration, Watcher};
use support::*;
use testkit::eventually;
use testkit::{zk_op, FaultProxy, ZkCluster, ZkOptions};

const T: Duration = Duration::from_secs(30);
/// Member reads: single, or in multi-read batches.
const READS: [i32; 2] = [zk_op::GET_DATA, zk_op::MULTI_READ];
const CREATES: [i32; 4] = [
    zk_op::CREATE,
    zk_op::CREATE2,
    zk_op::CREATE_TTL,
    zk_op::CREATE_CONTAINER,
];

fn proxied(servers: usize) -> ZkCluster {
    ZkCluster::start(ZkOptions {
        servers,
        proxied: true,
        ..ZkOptions::default()
    })
    .expect("zookeeper behind proxies")
}

fn only_proxy(zk: &ZkCluster) -> &FaultProxy {
    zk.proxy(0).expect("proxied cluster")
}

fn member(i: usize) -> Vec<u8> {
    format!(
        r#"{{"serviceEndpoint":{{"host":"10.1.{}.{}","port":80}},"additionalEndpoints":{{}},"status":"ALIVE"}}"#,
        i / 250,
        i % 250
    )
    .into_bytes()
}

/// Creates `n` persistent members at once, past the proxy.
async fn add_members(raw: &zk::Client, path: &str, from: usize, n: usize) {
    raw.mkdir(
        path,
        &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
    )
    .await
    .or_else(|e| {
        if e == zk::Error::NodeExists {
            Ok(())
        } else {
            Err(e)
        }
    })
    .expect("set path");
    let options = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let prefix = format!("{path}/member_");
    let mut creates = Vec::with_capacity(n);
    let (prefix, options) = (&prefix, &options);
    for i in from..from + n {
        let data = member(i);
        creates.push(async move { raw.create(prefix, &data, options).await });
    }
    for r in futures::future::join_all(creates).await {
        r.expect("create member");
    }
}

/// Waits until the watch serves exactly ZooKeeper's members; on a timeout
/// says which differ (a few of them).
async fn converges(watch: &impl Watcher, raw: &zk::Client, path: &str, what: &str) {
    let truth: BTreeSet<String> = members_in_zk(raw, path).await.into_iter().collect();
    let served = |w: &dyn Fn() -> serversets_core::Snapshot| -> BTreeSet<String> {
        w().iter().map(|m| m.id().as_str().to_string()).collect()
    };
    let snapshot = || watch.snapshot();
    let deadline = tokio::time::Instant::now() + T;
    let mut sub = watch.subscribe();
    loop {
        let seen = served(&snapshot);
        if seen == truth {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<_> = truth.difference(&seen).take(5).collect();
            let extra: Vec<_> = seen.difference(&truth).take(5).collect();
            panic!(
                "{what}: the watch serves {} members, ZooKeeper has {}; missing (first 5) {missing:?}, extra (first 5) {extra:?}",
                seen.len(),
                truth.len()
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), sub.changed()).await;
    }
}

async fn one_member_each(raw: &zk::Client, path: &str, endpoints: &[&Registration]) {
    let names = members_in_zk(raw, path).await;
    assert_eq!(
        names.len(),
        endpoints.len(),
        "one member per live registration, have {names:?}"
    );
    for ep in endpoints {
        let p = ep.path().expect("registered");
        assert!(
            names.iter().any(|n| p.ends_with(n.as_str())),
            "{p} missing from {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_lost_to_a_reset_during_propagation_are_read_again() {
    init_tracing();
    let zk = proxied(1);
    let raw = raw(&zk.direct_connect_string()).await;
    let set = set(&zk.connect_string(), "lost-reads", Duration::from_secs(10));
    let path = set.path().to_string();
    add_members(&raw, &path, 0, 1).await;
    let watch = set.watch().await.unwrap();
    assert_eq!(watch.snapshot().len(), 1);

    // A burst of members; the first read of it is answered by the server
    // but its reply is lost and the connection reset, failing every read in
    // flight with an error that says nothing about the members.
    only_proxy(&zk).lose_replies(&READS, 1);
    add_members(&raw, &path, 1, 1500).await;
    converges(&watch, &raw, &path, "every member after the reset").await;
    assert_eq!(
        only_proxy(&zk).faults().lost_replies,
        1,
        "the fault happened"
    );
    assert!(watch.rejected().is_empty(), "{:?}", watch.rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_started_through_lost_reads_returns_the_whole_set() {
    init_tracing();
    let zk = proxied(1);
    let raw = raw(&zk.direct_connect_string()).await;
    let set = set(&zk.connect_string(), "lost-start", Duration::from_secs(10));
    let path = set.path().to_string();
    add_members(&raw, &path, 0, 1500).await;

    // Session set-up first, so the lost reply is a member read.
    set.session().unwrap().wait_connected().await.unwrap();
    only_proxy(&zk).lose_replies(&READS, 1);
    let watch = set.watch().await.unwrap();
    assert_eq!(
        watch.snapshot().len(),
        1500,
        "start() returned a partial set as complete"
    );
    assert_eq!(only_proxy(&zk).faults().lost_replies, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_reply_is_lost_makes_exactly_one_member() {
    init_tracing();
    let zk = proxied(1);
    let raw = raw(&zk.direct_connect_string()).await;
    let set = set(&zk.connect_string(), "lost-create", Duration::from_secs(30));
    let path = set.path().to_string();
    set.session().unwrap().wait_connected().await.unwrap();

    // The first registration: its create is applied, the reply lost.
    only_proxy(&zk).lose_replies(&CREATES, 1);
    let ep = set
        .register_endpoint("127.0.0.1", 5001, None)
        .await
        .expect("a lost reply is no reason to give up the registration");
    assert_eq!(only_proxy(&zk).faults().lost_replies, 1);
    one_member_each(&raw, &path, &[&ep]).await;

    // A re-create after someone deleted the member: lost again.
    only_proxy(&zk).lose_replies(&CREATES, 1);
    let first = ep.path().unwrap();
    raw.delete(&first, None).await.unwrap();
    eventually(T, "re-created", || async {
        ep.path().is_some_and(|p| p != first)
    })
    .await;
    assert_eq!(only_proxy(&zk).faults().lost_replies, 2);
    // Settled: still exactly one, and it is the one the endpoint reports.
    tokio::time::sleep(Duration::from_millis(500)).await;
    one_member_each(&raw, &path, &[&ep]).await;

    // The member the lost create made is tracked: closing removes it.
    ep.close().await.unwrap();
    assert!(members_in_zk(&raw, &path).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_member_whose_create_reply_was_lost_is_still_removed() {
    init_tracing();
    let zk = proxied(1);
    let raw = raw(&zk.direct_connect_string()).await;
    let set = set(
        &zk.connect_string(),
        "lost-unhealthy",
        Duration::from_secs(30),
    );
    let path = set.path().to_string();
    set.session().unwrap().wait_connected().await.unwrap();
    only_proxy(&zk).lose_replies(&CREATES, 1);
    let ep = register_local(&set, 5002).await;
    one_member_each(&raw, &path, &[&ep]).await;
    drop(ep);
    eventually(T, "removed after drop", || async {
        members_in_zk(&raw, &path).await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_stalls_on_an_ensemble_lose_nothing_and_duplicate_nothing() {
    init_tracing();
    let zk = proxied(3);
    let raw = raw(&zk.direct_connect_string()).await;
    let set = set(&zk.connect_string(), "rough", Duration::from_secs(6));
    let path = set.path().to_string();
    add_members(&raw, &path, 0, 800).await;
    let watch = set.watch().await.unwrap();
    let mut endpoints = Vec::new();
    for port in 6000..6010 {
        endpoints.push(
            set.register_endpoint("127.0.0.1", port, None)
                .await
                .unwrap(),
        );
    }
    wait_for(&watch, T, "all", |s| s.len() == 810).await;

    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..12 {
        let i = rng.usize(0..zk.len());
        let proxy = zk.proxy(i).unwrap();
        match round % 4 {
            0 => {
                proxy.reset_all();
            }
            1 => proxy.stall(Duration::from_millis(rng.u64(500..3000))),
            2 => proxy.lose_replies(
                &[
                    zk_op::GET_DATA,
                    zk_op::MULTI_READ,
                    zk_op::CREATE,
                    zk_op::CREATE2,
                ],
                1,
            ),
            _ => {
                for p in zk.proxies() {
                    p.lose_replies(&CREATES, 1);
                }
            }
        }
        // Churn while the fault is on: members come and go, registrations
        // are replaced.
        add_members(&raw, &path, 1000 + round * 20, 20).await;
        let gone = endpoints.remove(rng.usize(0..endpoints.len()));
        drop(gone);
        let port = 7000 + round as u16;
        match set.register_endpoint("127.0.0.1", port, None).await {
            Ok(ep) => endpoints.push(ep),
            Err(e) => panic!("registration during round {round} failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(100..800))).await;
    }
    for p in zk.proxies() {
        p.heal();
    }
    let live: Vec<&Registration> = endpoints.iter().collect();
    eventually(T, "registrations settle", || async {
        live.iter().all(|e| e.path().is_some())
            && members_in_zk(&raw, &path).await.len() == 800 + 12 * 20 + live.len()
    })
    .await;
    converges(&watch, &raw, &path, "after the faults").await;
    let all = members_in_zk(&raw, &path).await;
    let mut ours = 0;
    for name in &all {
        let (data, _) = raw.get_data(&format!("{path}/{name}")).await.unwrap();
        if String::from_utf8_lossy(&data).contains("127.0.0.1") {
            ours += 1;
        }
    }
    assert_eq!(ours, live.len(), "one member per live registration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_reads_use_multi_read_or_single_reads_and_serve_the_same_set() {
    init_tracing();
    let zk = proxied(1);
    let raw = raw(&zk.direct_connect_string()).await;
    let set = set(&zk.connect_string(), "bulk", Duration::from_secs(10));
    let path = set.path().to_string();
    add_members(&raw, &path, 0, 3000).await;

    let multi = set.watch().await.unwrap();
    assert_eq!(multi.snapshot().len(), 3000);
    let stats = multi.stats();
    assert_eq!(stats.single_reads, 0, "{stats:?}");
    assert!((3..=30).contains(&stats.multi_reads), "{stats:?}");

    // The fallback older servers get, forced by configuration: no server
    // before 3.6 is available here.
    let single = set.watch_builder().multi_read(false).start().await.unwrap();
    assert_eq!(single.snapshot(), multi.snapshot());
    let stats = single.stats();
    assert_eq!(
        (stats.single_reads, stats.multi_reads),
        (3000, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_after_a_partition_reads_only_what_changed() {
    init_tracing();
    let zk = proxied(1);
    let raw = raw(&zk.direct_connect_string()).await;
    let set = set(&zk.connect_string(), "resync", Duration::from_secs(10));
    let path = set.path().to_string();
    add_members(&raw, &path, 0, 3000).await;
    let watch = set.watch().await.unwrap();
    let before = watch.stats();

    // Cut off; meanwhile 50 members leave and 50 arrive.
    only_proxy(&zk).set_blackhole(true);
    let names = members_in_zk(&raw, &path).await;
    for name in names.iter().take(50) {
        raw.delete(&format!("{path}/{name}"), None).await.unwrap();
    }
    add_members(&raw, &path, 5000, 50).await;
    only_proxy(&zk).reset_all();
    only_proxy(&zk).heal();

    converges(&watch, &raw, &path, "after the partition").await;
    let after = watch.stats();
    assert!(after.resyncs > before.resyncs, "{after:?}");
    assert_eq!(after.single_reads, before.single_reads, "{after:?}");
    assert!(
        after.multi_reads - before.multi_reads <= 4,
        "50 new members should take a batch or two, took {}",
        after.multi_reads - before.multi_reads
    );
}

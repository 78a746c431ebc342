//! The whole path for real: hyper servers register in a real ZooKeeper
//! through serversets-core, and HttpSet follows a core `watch()`.

mod support;

use std::time::Duration;

use serversets_core::{Environment, ServerSet, Watcher};
use serversets_httpset::HttpSet;
use support::{text, Mode, TestServer};
use testkit::eventually;
use testkit::ZkCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_servers_registered_in_zookeeper() {
    let zk = ZkCluster::standalone().expect("zookeeper (see testkit for install hints)");
    let zookeepers = ServerSet::builder(Environment::Test, "httpset-it", [zk.connect_string()])
        .connect_timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let a = TestServer::start("a", Mode::Normal).await;
    let mut b = TestServer::start("b", Mode::Normal).await;
    let c = TestServer::start("c", Mode::Normal).await;
    let mut registered = Vec::new();
    for s in [&a, &b, &c] {
        registered.push(
            zookeepers
                .register_endpoint("127.0.0.1", s.port(), None)
                .await
                .unwrap(),
        );
    }

    let watch = zookeepers.watch().await.unwrap();
    let mut changes = watch.subscribe();
    while watch.snapshot().len() < 3 {
        tokio::time::timeout(Duration::from_secs(20), changes.changed())
            .await
            .expect("three members within 20 s");
    }
    // Ejection as it was by default when this test was written (3
    // failures); the default is now 5 (DEFAULT_EJECT_AFTER).
    let set = HttpSet::builder()
        .eject_after(3)
        .eject_for(Duration::from_secs(30))
        .build(watch)
        .unwrap();

    // 3,000 requests, 16 in flight, spread evenly.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let set = set.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..3000 / 16 {
                let resp = set.get("/").await.expect("request");
                assert_eq!(resp.status(), 200);
                text(resp).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (a.hits() + b.hits() + c.hits()) as f64;
    for s in [&a, &b, &c] {
        let share = s.hits() as f64 / total;
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.05 / 3.0,
            "{}: {share:.4}",
            s.name
        );
    }

    // b crashes without deregistering: its ephemeral node stays, requests
    // are retried around it, and it is ejected.
    b.kill().await;
    let b_hits = b.hits();
    for _ in 0..60 {
        text(set.get("/").await.expect("retried around the dead server")).await;
    }
    assert_eq!(b.hits(), b_hits);
    let hb = set
        .health()
        .into_iter()
        .find(|h| h.addr.port() == b.port())
        .unwrap();
    assert!(hb.is_ejected(), "{hb:?}");

    // Its registration goes away: the set follows.
    let b_reg = registered.remove(1);
    b_reg.close().await.unwrap();
    eventually(
        Duration::from_secs(20),
        "the set to follow the deregistration",
        || async { set.health().len() == 2 },
    )
    .await;
    assert!(set.health().iter().all(|h| h.addr.port() != b.port()));

    // It comes back and registers again: fresh state, and traffic again.
    b.restart().await;
    registered.push(
        zookeepers
            .register_endpoint("127.0.0.1", b.port(), None)
            .await
            .unwrap(),
    );
    eventually(
        Duration::from_secs(20),
        "the set to follow the re-registration",
        || async { set.health().len() == 3 },
    )
    .await;
    for _ in 0..30 {
        text(set.get("/").await.unwrap()).await;
    }
    assert_eq!(b.hits(), b_hits + 10);
    assert!(set.health().iter().all(|h| !h.is_ejected()));

    for r in registered {
        r.close().await.unwrap();
    }
}

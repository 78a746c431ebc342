//! Watching sets in a real ZooKeeper: missing paths, bad members written by
//! others, endpoint and shard selection, both watch strategies.

mod support;

use std::time::Duration;

use serversets_core::zookeeper_client as zk;
use serversets_core::{Environment, ServerSet, WatchStrategy, Watcher};
use support::*;
use testkit::eventually;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_path_is_empty_fills_in_and_is_not_created() {
    let zk = Zk::start().await;
    for strategy in [WatchStrategy::Auto, WatchStrategy::Children] {
        let (set, watch) = zk.watched("missing", strategy).await;
        assert!(watch.snapshot().is_empty());
        let raw = &zk.raw;
        assert_eq!(
            raw.check_stat(set.path()).await.unwrap(),
            None,
            "watching must not create the path"
        );
        assert_eq!(
            raw.check_stat("/discovery").await.unwrap().is_some(),
            strategy == WatchStrategy::Children
        );

        // Someone else registers: the path appears with its first member.
        let _ep = register_local(&set, 7001).await;
        wait_for(&watch, T, "member appears", |s| {
            addrs(s) == ["127.0.0.1:7001"]
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_members_are_skipped_and_reported_without_poisoning_the_set() {
    let zk = Zk::start().await;
    let raw = &zk.raw;
    let path = "/discovery/test/garbage";
    let good1 = put_member(raw, path, &finagle("10.0.0.1", 80, r#","shard":1"#)).await;
    let huge = vec![b'x'; 200 * 1024];
    let bad: Vec<(&[u8], &str)> = vec![
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe\xfd", "not UTF-8"),
        (
            br#"{"serviceEndpoint":{"host":"h","port":"80"},"status":"ALIVE"}"#,
            "port is not an integer",
        ),
        (br#"{"status":"ALIVE"}"#, "missing serviceEndpoint"),
        (b"", "empty data"),
        (
            br#"{"serviceEndpoint":{"host":"h","port":0},"status":"ALIVE"}"#,
            "invalid port",
        ),
        (
            br#"{"serviceEndpoint":{"host":"h","port":70000},"status":"ALIVE"}"#,
            "invalid port",
        ),
        // Huge garbage is read (up to ZooKeeper's own 1 MiB znode limit, so
        // large members we write ourselves stay readable) and refused.
        (&huge, "invalid JSON"),
        (
            br#"{"serviceEndpoint":{"host":"h","port":9},"status":"REBOOTING"}"#,
            "status UNKNOWN",
        ),
        (
            br#"{"serviceEndpoint":{"host":"h","port":9},"status":"STOPPING"}"#,
            "status STOPPING",
        ),
    ];
    let mut bad_names = Vec::new();
    for (data, _) in &bad {
        let p = put_member(raw, path, data).await;
        bad_names.push(p[p.rfind('/').unwrap() + 1..].to_string());
    }
    put_vector(raw, path, br#"{"vector":[]}"#).await;
    put(
        raw,
        &format!("{path}/lock"),
        b"",
        zk::CreateMode::Persistent,
    )
    .await;
    let good2 = put_member(raw, path, &finagle("10.0.0.2", 80, r#","shard":2"#)).await;

    let set = zk.set("garbage");
    let watch = set.watch().await.unwrap();
    assert_eq!(addrs(&watch.snapshot()), ["10.0.0.1:80", "10.0.0.2:80"]);
    let rejected = watch.rejected();
    for ((_, why), name) in bad.iter().zip(&bad_names) {
        let got = rejected
            .get(name)
            .unwrap_or_else(|| panic!("{name} not reported: {rejected:?}"));
        assert!(got.contains(why), "{name}: {got} should mention {why}");
    }
    // A usable vector znode is read and applied (it weighs nothing here), so
    // it is not reported.
    assert!(!rejected.keys().any(|k| k.starts_with("vector_")));
    assert!(rejected.contains_key("lock"));
    assert_eq!(watch.stats().malformed_total, 8);

    // A bad member arriving later does not disturb the set either, and a
    // good one after it is served.
    put(
        raw,
        &format!("{path}/member_"),
        b"[]",
        zk::CreateMode::EphemeralSequential,
    )
    .await;
    put(
        raw,
        &format!("{path}/member_"),
        &finagle("10.0.0.3", 80, ""),
        zk::CreateMode::EphemeralSequential,
    )
    .await;
    wait_for(&watch, T, "third good member", |s| s.len() == 3).await;

    // Endpoint selection and shard filter over the same data.
    let http = set.watch_builder().endpoint("http").start().await.unwrap();
    wait_for(&http, T, "http endpoints", |s| {
        addrs(s) == ["10.0.0.1:81", "10.0.0.2:81", "10.0.0.3:81"]
    })
    .await;
    let shard2 = set.watch_builder().shard(2).start().await.unwrap();
    assert_eq!(addrs(&shard2.snapshot()), ["10.0.0.2:80"]);
    let admin = set.watch_builder().endpoint("admin").start().await.unwrap();
    assert!(admin.snapshot().is_empty());

    // Removal of a good member.
    raw.delete(&good1, None).await.unwrap();
    wait_for(&watch, T, "good1 gone", |s| s.len() == 2).await;
    let _ = good2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_produces_an_event_and_converges_under_churn() {
    let zk = Zk::start().await;
    for strategy in [WatchStrategy::Auto, WatchStrategy::Children] {
        let (set, watch) = zk.watched("churn", strategy).await;
        let mut sub = watch.subscribe();
        let ep = register_local(&set, 8000).await;
        let snap = tokio::time::timeout(T, sub.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(addrs(&snap), ["127.0.0.1:8000"]);
        ep.close().await.unwrap();
        let snap = tokio::time::timeout(T, sub.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(snap.is_empty());

        // Churn: 60 members registered concurrently, half closed again.
        let mut eps = Vec::new();
        for port in 0..60u16 {
            eps.push(set.register_endpoint("127.0.0.1", 9000 + port, None));
        }
        let eps: Vec<_> = futures::future::join_all(eps)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let (closing, keeping): (Vec<_>, Vec<_>) =
            eps.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        futures::future::join_all(closing.iter().map(|(_, e)| e.close())).await;
        let want: Vec<String> = {
            let mut v: Vec<String> = keeping
                .iter()
                .map(|(i, _)| format!("127.0.0.1:{}", 9000 + *i as u16))
                .collect();
            v.sort();
            v
        };
        wait_for(&watch, T, "churn converges", |s| addrs(s) == want).await;
        // Everybody agrees with ZooKeeper itself.
        let raw = &zk.raw;
        assert_eq!(members_in_zk(raw, set.path()).await.len(), 30);
        let fresh = set.watch().await.unwrap();
        assert_eq!(addrs(&fresh.snapshot()), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroot_and_custom_paths_work() {
    let zk = Zk::start().await;
    let raw = &zk.raw;
    raw.create(
        "/tenant",
        b"",
        &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
    )
    .await
    .unwrap();
    let chrooted = format!("{}/tenant", zk.connect_string());
    let set = ServerSet::builder(Environment::Production, "svc", [chrooted.as_str()])
        .path_fn(|env, svc| format!("/aurora/www-data/{env}/{svc}"))
        .build()
        .unwrap();
    let _ep = register_local(&set, 6000).await;
    assert_eq!(
        members_in_zk(raw, "/tenant/aurora/www-data/prod/svc")
            .await
            .len(),
        1
    );
    let watch = set.watch().await.unwrap();
    assert_eq!(addrs(&watch.snapshot()), ["127.0.0.1:6000"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_watch_closes_its_feeds() {
    let zk = Zk::start().await;
    let set = zk.set("dropfeed");
    let watch = set.watch().await.unwrap();
    let feed = watch.feed();
    let mut sub = feed.subscribe();
    assert!(!feed.is_closed());
    drop(watch);
    assert!(feed.is_closed());
    assert!(tokio::time::timeout(T, sub.changed())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_member_is_reported_and_does_not_stall_the_set() {
    let zk = Zk::start().await;
    let (cs, raw) = (zk.connect_string(), &zk.raw);
    let path = "/discovery/test/unreadable";
    put_member(raw, path, &finagle("10.0.0.1", 80, "")).await;
    // A member only its (digest) creator may read.
    let owner = zk::Client::connector()
        .with_auth("digest", b"owner:pw")
        .connect(&cs)
        .await
        .unwrap();
    let (_, seq) = owner
        .create(
            &format!("{path}/member_"),
            &finagle("10.0.0.9", 80, ""),
            &zk::CreateMode::PersistentSequential.with_acls(zk::Acls::creator_all()),
        )
        .await
        .unwrap();
    let secret = format!("member_{seq}");

    let set = zk.set("unreadable");
    let watch = set
        .watch()
        .await
        .expect("the watch starts despite one unreadable member");
    assert_eq!(addrs(&watch.snapshot()), ["10.0.0.1:80"]);
    let why = watch.rejected().get(&secret).cloned().unwrap_or_default();
    assert!(why.contains("unreadable"), "{why}");
    // Later changes still arrive.
    put_member(raw, path, &finagle("10.0.0.2", 80, "")).await;
    wait_for(&watch, T, "a later member", |s| s.len() == 2).await;

    // Refused reads are not remembered as a verdict: once the member may be
    // read, the next resync (here after a new session) serves it.
    let open = zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone());
    owner
        .set_acl(&format!("{path}/{secret}"), &[open], None)
        .await
        .unwrap();
    set.session().unwrap().expire_for_testing().await.unwrap();
    wait_for(&watch, T, "the once unreadable member", |s| s.len() == 3).await;
    assert!(!watch.rejected().contains_key(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_follows_non_member_children_as_they_come_and_go() {
    let zk = Zk::start().await;
    let raw = &zk.raw;
    for (service, strategy) in [
        ("rej-auto", WatchStrategy::Auto),
        ("rej-children", WatchStrategy::Children),
    ] {
        let set = zk.set(service);
        let path = set.path().to_string();
        put_member(raw, &path, &finagle("10.0.0.1", 80, "")).await;
        let watch = watch_with(&set, strategy).await;
        assert!(watch.rejected().is_empty(), "{strategy:?}");

        put(
            raw,
            &format!("{path}/lock"),
            b"",
            zk::CreateMode::Persistent,
        )
        .await;
        // A member after it, so the set publishes and we know the event passed.
        put_member(raw, &path, &finagle("10.0.0.2", 80, "")).await;
        wait_for(&watch, T, "second member", |s| s.len() == 2).await;
        eventually(T, "lock reported", || async {
            watch.rejected().contains_key("lock")
        })
        .await;

        raw.delete(&format!("{path}/lock"), None).await.unwrap();
        eventually(T, "lock no longer reported once deleted", || async {
            !watch.rejected().contains_key("lock")
        })
        .await;
        assert_eq!(watch.stats().rejected, 0, "{strategy:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_data_is_rewritten_is_followed() {
    let zk = Zk::start().await;
    let raw = &zk.raw;
    let path = "/discovery/test/rewritten";
    let node = put_member(raw, path, &finagle("10.0.0.1", 80, "")).await;
    let set = zk.set("rewritten");
    let watch = set.watch().await.unwrap();
    assert_eq!(watch.snapshot().len(), 1);
    // Writers should delete + create, but some use setData: follow it anyway.
    let stopping = br#"{"serviceEndpoint":{"host":"10.0.0.1","port":80},"status":"STOPPING"}"#;
    raw.set_data(&node, stopping, None).await.unwrap();
    wait_for(&watch, T, "stopping member leaves", |s| s.is_empty()).await;
    let moved = br#"{"serviceEndpoint":{"host":"10.0.0.7","port":81},"status":"ALIVE"}"#;
    raw.set_data(&node, moved, None).await.unwrap();
    wait_for(&watch, T, "member back at its new address", |s| {
        addrs(s) == ["10.0.0.7:81"]
    })
    .await;
}

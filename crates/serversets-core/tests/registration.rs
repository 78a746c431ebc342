//! Registering members in a real ZooKeeper: the wire format, closing, health
//! checks, deletion by others and session sharing.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serversets_core::{Environment, Error, Ping, RegistrationState, ServerSet, Watcher};
use support::*;
use testkit::eventually;
use testkit::ZkCluster;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_finagle_json_and_watch_sees_it() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "wire", Duration::from_secs(5));
    assert_eq!(set.path(), "/discovery/test/wire");
    let ep = set
        .registration("10.0.0.3", 31781)
        .additional_endpoint("http", "10.0.0.3", 31782)
        .shard(0)
        .metadata("weight", "2")
        .register()
        .await
        .unwrap();
    let path = ep.path().expect("registered");
    assert!(path.starts_with("/discovery/test/wire/member_"), "{path}");
    assert_eq!(path.len(), "/discovery/test/wire/member_".len() + 10);

    let raw = raw(&zk.connect_string()).await;
    let (data, stat) = raw.get_data(&path).await.unwrap();
    assert_eq!(
        String::from_utf8(data).unwrap(),
        r#"{"serviceEndpoint":{"host":"10.0.0.3","port":31781},"additionalEndpoints":{"http":{"host":"10.0.0.3","port":31782}},"status":"ALIVE","shard":0,"metadata":{"weight":"2"}}"#
    );
    assert_ne!(stat.ephemeral_owner, 0, "member must be ephemeral");
    let (acl, _) = raw.get_acl(&path).await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "world");

    let watch = set.watch().await.unwrap();
    let snap = watch.snapshot();
    assert_eq!(addrs(&snap), ["10.0.0.3:31781"]);
    assert_eq!(
        snap.members()[0].id().as_str(),
        &path[path.rfind('/').unwrap() + 1..]
    );
    assert_eq!(snap.members()[0].shard(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_removes_at_once_and_twice_is_fine_and_drop_deregisters() {
    let zk = standalone();
    // A long session timeout: a removal seen quickly cannot be an expiry.
    let set = set(&zk.connect_string(), "close", Duration::from_secs(30));
    let watch = set.watch().await.unwrap();
    let a = register_local(&set, 1001).await;
    let b = register_local(&set, 1002).await;
    wait_for(&watch, T, "both members", |s| s.len() == 2).await;

    let started = std::time::Instant::now();
    a.close().await.unwrap();
    wait_for(&watch, T, "a gone", |s| addrs(s) == ["127.0.0.1:1002"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "removal must not wait for session expiry"
    );
    assert_eq!(a.state(), RegistrationState::Closed);
    a.close().await.unwrap();
    assert_eq!(a.path(), None);

    drop(b);
    wait_for(&watch, T, "b gone after drop", |s| s.is_empty()).await;
    let raw = raw(&zk.connect_string()).await;
    assert!(members_in_zk(&raw, set.path()).await.is_empty());
    // Closed registrations stay closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(members_in_zk(&raw, set.path()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_ping_deregisters_and_recovery_reregisters() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "ping", Duration::from_secs(30));
    let watch = set.watch().await.unwrap();
    let up = Arc::new(AtomicBool::new(true));
    let ep = set
        .registration("127.0.0.1", 2001)
        .ping(ping_while(&up))
        .ping_interval(Duration::from_millis(50))
        .register()
        .await
        .unwrap();
    wait_for(&watch, T, "registered", |s| s.len() == 1).await;
    let first = ep.path().unwrap();

    up.store(false, Ordering::SeqCst);
    wait_for(&watch, T, "removed while unhealthy", |s| s.is_empty()).await;
    // The state follows right after the removal is confirmed.
    let mut states = ep.state_changes();
    let state = tokio::time::timeout(
        T,
        states.wait_for(|s| matches!(s, RegistrationState::Unhealthy(_))),
    )
    .await
    .expect("reports unhealthy")
    .expect("open")
    .clone();
    assert!(
        matches!(state, RegistrationState::Unhealthy(ref why) if why.contains("backend down")),
        "{state:?}"
    );

    up.store(true, Ordering::SeqCst);
    wait_for(&watch, T, "back when healthy", |s| s.len() == 1).await;
    let second = ep.path().unwrap();
    assert_ne!(
        first, second,
        "re-registration is a new member node (delete + create)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_ping_counts_as_failure_and_failing_first_ping_registers_nothing() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "hung", Duration::from_secs(30));
    let watch = set.watch().await.unwrap();
    let ep = set
        .registration("127.0.0.1", 3001)
        .ping(Ping::new(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<(), String>(())
        }))
        .ping_timeout(Duration::from_millis(100))
        .ping_interval(Duration::from_millis(50))
        .register()
        .await
        .unwrap();
    assert!(
        matches!(ep.state(), RegistrationState::Unhealthy(ref why) if why.contains("no answer")),
        "{:?}",
        ep.state()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(watch.snapshot().is_empty());
    let raw = raw(&zk.connect_string()).await;
    assert!(members_in_zk(&raw, set.path()).await.is_empty());

    let blocking = set
        .registration("127.0.0.1", 3002)
        .ping(Ping::blocking(|| Ok::<(), String>(())))
        .register()
        .await
        .unwrap();
    assert!(blocking.path().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_deleted_by_someone_else_is_recreated_once() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "deleted", Duration::from_secs(30));
    let ep = register_local(&set, 4001).await;
    let first = ep.path().unwrap();
    let raw = raw(&zk.connect_string()).await;
    raw.delete(&first, None).await.unwrap();
    eventually(T, "re-created under a new name", || async {
        ep.path().is_some_and(|p| p != first)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        members_in_zk(&raw, set.path()).await.len(),
        1,
        "exactly one member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_with_same_settings_share_one_session() {
    let zk = standalone();
    let a = set(&zk.connect_string(), "share-a", Duration::from_secs(7));
    let b = set(&zk.connect_string(), "share-b", Duration::from_secs(7));
    let _ea = register_local(&a, 5001).await;
    let _eb = register_local(&b, 5002).await;
    let _w = a.watch().await.unwrap();
    let sa = a.session().unwrap();
    let sb = b.session().unwrap();
    assert!(sa.session_id().is_some());
    assert_eq!(sa.session_id(), sb.session_id());
    // ZooKeeper agrees: one connection from us.
    let cons = four_letter(&zk, 0, "cons").unwrap();
    let ours = cons
        .lines()
        .filter(|l| l.contains(&format!("sid=0x{:x}", sa.session_id().unwrap())))
        .count();
    assert_eq!(ours, 1, "{cons}");
}

#[tokio::test]
async fn bad_names_and_unreachable_zookeeper_are_typed_errors() {
    for bad in ["", "a/b"] {
        assert!(matches!(
            ServerSet::new(Environment::Test, bad, ["127.0.0.1:1"]),
            Err(Error::InvalidServiceName(_))
        ));
    }
    assert!(matches!(
        ServerSet::new(Environment::Test, "x", Vec::<String>::new()),
        Err(Error::NoZooKeeperHosts)
    ));
    let set = ServerSet::builder(
        Environment::Test,
        "x",
        [format!("127.0.0.1:{}", testkit::free_port())],
    )
    .connect_timeout(Duration::from_millis(500))
    .session_timeout(Duration::from_secs(2))
    .build()
    .unwrap();
    let err = set
        .register_endpoint("127.0.0.1", 1, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert!(matches!(
        set.register_endpoint("127.0.0.1", 0, None).await,
        Err(Error::Address(_))
    ));
    assert!(matches!(set.watch().await, Err(Error::Connect { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_and_acls_protect_members_but_not_reads() {
    use serversets_core::AclPolicy;
    let zk = standalone();
    let set = ServerSet::builder(Environment::Test, "secured", [zk.connect_string()])
        .digest_auth("svc", "s3cret")
        .acls(AclPolicy::CreatorAllWorldRead)
        .build()
        .unwrap();
    let ep = register_local(&set, 6001).await;
    let path = ep.path().unwrap();
    let raw = raw(&zk.connect_string()).await;
    let (acl, _) = raw.get_acl(&path).await.unwrap();
    let schemes: Vec<&str> = acl.iter().map(|a| a.scheme()).collect();
    assert!(
        schemes.contains(&"digest") && schemes.contains(&"world"),
        "{schemes:?}"
    );
    // Others may read (watchers without credentials see the member)...
    let anonymous = set_for(&zk.connect_string(), "secured");
    let watch = anonymous.watch().await.unwrap();
    assert_eq!(addrs(&watch.snapshot()), ["127.0.0.1:6001"]);
    // ...but not delete it.
    let err = raw.delete(&path, None).await.unwrap_err();
    assert_eq!(err, serversets_core::zookeeper_client::Error::NoAuth);
}

fn set_for(zk: &str, service: &str) -> ServerSet {
    ServerSet::new(Environment::Test, service, [zk]).unwrap()
}

/// Requests the server has received so far (`srvr`'s "Received:" line).
fn received(zk: &ZkCluster) -> u64 {
    let srvr = four_letter(zk, 0, "srvr").unwrap();
    srvr.lines()
        .find_map(|l| l.strip_prefix("Received: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Received line in {srvr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_registrations_and_watches_send_almost_nothing() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "idle", Duration::from_secs(30));
    let _a = register_local(&set, 7001).await;
    let _b = register_local(&set, 7002).await;
    let _c = set
        .registration("127.0.0.1", 7003)
        .ping(Ping::new(|| async { Ok::<(), String>(()) }))
        .register()
        .await
        .unwrap();
    let _w = set.watch().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = received(&zk);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = received(&zk) - before;
    // Only heart-beats (one every few seconds per session) and our own
    // `srvr` probe: a loop re-checking a member would send thousands.
    assert!(during < 20, "{during} requests in one idle second");
}

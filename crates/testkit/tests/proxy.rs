//! The fault proxy in front of a real ZooKeeper, with a raw zookeeper-client
//! 0.11 session through it: what each fault looks like to that client.
//!
//! Each test prints the errors it saw (`cargo test -p testkit --test proxy --
//! --nocapture`); the table in `src/proxy.rs` is written from them.

use std::time::{Duration, Instant};

use testkit::{zk_op, FaultProxy, ZkCluster, ZkOptions};
use zookeeper_client as zk;

/// Session 8 s; connection timeout 1 s, so a silent connection fails in 1 s.
const SESSION: Duration = Duration::from_secs(8);
const CONNECTION: Duration = Duration::from_secs(1);

fn proxied() -> ZkCluster {
    ZkCluster::start(ZkOptions {
        proxied: true,
        ..ZkOptions::default()
    })
    .expect("standalone ZooKeeper behind a fault proxy")
}

async fn connect(cluster: &str) -> zk::Client {
    connect_with(cluster, SESSION).await
}

async fn connect_with(cluster: &str, session: Duration) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(session)
        .with_connection_timeout(CONNECTION)
        .connect(cluster)
        .await
        .unwrap_or_else(|e| panic!("connect {cluster}: {e}"))
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// The variant, and for `Custom` the I/O error kind underneath, if any.
fn describe(e: &zk::Error) -> String {
    match e {
        zk::Error::Custom(_) => {
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                // The source is an `Arc<dyn Error>` around the I/O error.
                let inner = s
                    .downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()
                    .map(|a| &**a as &(dyn std::error::Error + 'static));
                if let Some(io) = inner.unwrap_or(s).downcast_ref::<std::io::Error>() {
                    return format!("Custom(io::Error {:?}: {e})", io.kind());
                }
                source = s.source();
            }
            format!("Custom({e})")
        }
        other => format!("{other:?}"),
    }
}

/// A reset as zookeeper-client reports it: `Custom` over an I/O
/// `ConnectionReset`, never `ConnectionLoss`.
fn assert_reset(e: &zk::Error) {
    let d = describe(e);
    assert!(
        d.starts_with("Custom(io::Error ConnectionReset"),
        "expected a reset, got {d}"
    );
}

/// A silent connection as zookeeper-client reports it.
fn assert_no_response(e: &zk::Error) {
    let d = describe(e);
    assert!(
        matches!(e, zk::Error::Custom(_)) && d.contains("no response from connection"),
        "expected no response, got {d}"
    );
}

/// Retries `get_data(path)` until it answers (errors from the fault are
/// expected on the way); returns the data and when it came.
async fn get_eventually(client: &zk::Client, path: &str, within: Duration) -> (Vec<u8>, Instant) {
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), client.get_data(path)).await {
            Ok(Ok((data, _))) => return (data, Instant::now()),
            Ok(Err(e)) => println!("  (retrying get after {})", describe(&e)),
            Err(_) => println!("  (retrying get after 3 s without an answer)"),
        }
        assert!(
            Instant::now() < deadline,
            "{path} unreadable for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn proxy(zk: &ZkCluster) -> &FaultProxy {
    zk.proxy(0)
        .expect("a proxied cluster has a proxy per server")
}

#[tokio::test(flavor = "current_thread")]
async fn without_faults_everything_passes_and_restarts_work_through_the_proxy() {
    let zk = proxied();
    let p = proxy(&zk);
    assert_ne!(zk.connect_string(), zk.direct_connect_string());
    assert_eq!(zk.connect_string(), p.addr().to_string());
    assert_eq!(zk.server_address(0).unwrap(), p.addr().to_string());
    assert_eq!(zk.direct_address(0).unwrap(), zk.direct_connect_string());
    assert_eq!(p.upstream().to_string(), zk.direct_connect_string());
    assert!(zk.proxy(1).is_none());

    let client = connect(&zk.connect_string()).await;
    client
        .create("/pass", b"through", &persistent())
        .await
        .unwrap();
    let (data, _) = client.get_data("/pass").await.unwrap();
    assert_eq!(data, b"through");
    let children = client.list_children("/").await.unwrap();
    assert!(children.contains(&"pass".to_string()), "{children:?}");
    let direct = connect(&zk.direct_connect_string()).await;
    assert_eq!(direct.get_data("/pass").await.unwrap().0, b"through");
    assert_eq!(p.connections(), 1);
    assert_eq!(
        p.faults(),
        testkit::FaultCounts {
            accepted: 1,
            ..Default::default()
        }
    );

    drop(client);

    // Server restarts through the proxy, with a session long enough to
    // outlive a JVM restart on a busy machine.
    let client = connect_with(&zk.connect_string(), Duration::from_secs(30)).await;
    let session = client.session_id();
    // A server killed while it holds an unread request (it is paused) is
    // closed by the kernel with an RST, which the proxy passes on: even a
    // server crash can fail a request with a reset rather than ConnectionLoss.
    zk.pause(0).unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get_data("/pass").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    zk.kill(0).unwrap();
    let err = in_flight.await.unwrap().unwrap_err();
    println!(
        "paused server killed, request in flight: {}",
        describe(&err)
    );
    assert_reset(&err);
    zk.restart(0).unwrap();
    let (data, _) = get_eventually(&client, "/pass", Duration::from_secs(20)).await;
    assert_eq!(data, b"through");

    // An idle server killed closes its connections cleanly, and the proxy
    // passes the close on. A request made right after the kill either went
    // out before the client saw the close, and fails with ConnectionLoss
    // (the clean close: the only fault that gives it), or waits and is
    // answered once the server is back. Never a reset.
    zk.kill(0).unwrap();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.get_data("/pass").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    zk.restart(0).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("answered after the restart")
        .unwrap();
    println!("idle server killed, request right after: {answer:?}");
    match answer {
        Ok((data, _)) => assert_eq!(data, b"through"),
        Err(e) => assert_eq!(e, zk::Error::ConnectionLoss, "{}", describe(&e)),
    }
    let (data, _) = get_eventually(&client, "/pass", Duration::from_secs(20)).await;
    assert_eq!(data, b"through");
    assert_eq!(
        client.session_id(),
        session,
        "same session through the proxy"
    );
    let f = p.faults();
    assert_eq!((f.resets, f.lost_replies, f.refused), (0, 0, 0));
    assert!(f.accepted >= 4, "reconnected through the proxy: {f:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn reset_fails_requests_in_flight_with_custom_not_connection_loss() {
    let zk = proxied();
    let p = proxy(&zk);
    let client = connect(&zk.connect_string()).await;
    client.create("/reset", b"r", &persistent()).await.unwrap();
    let session = client.session_id();

    // Hold a request in the proxy, then reset: it was surely in flight.
    p.stall(Duration::from_secs(30));
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get_data("/reset").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.reset_all(), 1);
    let err = in_flight.await.unwrap().unwrap_err();
    println!("reset_all, request in flight: {}", describe(&err));
    assert_reset(&err);
    p.heal();
    let (data, _) = get_eventually(&client, "/reset", Duration::from_secs(10)).await;
    assert_eq!(data, b"r");
    assert_eq!(client.session_id(), session, "a reset keeps the session");

    // An idle connection reset: the client reconnects by itself.
    let before = p.faults();
    assert_eq!(p.reset_all(), 1);
    let (data, _) = get_eventually(&client, "/reset", Duration::from_secs(10)).await;
    assert_eq!(data, b"r");
    let after = p.faults();
    assert_eq!(after.resets, before.resets + 1);
    assert!(after.accepted > before.accepted, "the client reconnected");
    assert_eq!(after.resets, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_stall_past_the_connection_timeout_fails_requests_then_the_client_recovers() {
    let zk = proxied();
    let p = proxy(&zk);
    let client = connect(&zk.connect_string()).await;
    client.create("/stall", b"s", &persistent()).await.unwrap();
    let session = client.session_id();

    let stall = Duration::from_secs(3);
    let start = Instant::now();
    p.stall(stall);
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "stall returns at once"
    );
    let err = client.get_data("/stall").await.unwrap_err();
    let failed = start.elapsed();
    println!(
        "stall {stall:?}, request after {failed:?}: {}",
        describe(&err)
    );
    assert_no_response(&err);
    assert!(
        failed >= CONNECTION && failed < stall,
        "failed by the client's own timeout, after {failed:?}"
    );
    let (data, at) = get_eventually(&client, "/stall", Duration::from_secs(15)).await;
    assert_eq!(data, b"s");
    assert!(at - start >= stall, "nothing answered during the stall");
    assert_eq!(
        client.session_id(),
        session,
        "a stall shorter than the session keeps it"
    );
    assert_eq!(p.faults().stalls, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_lost_create_reply_leaves_the_node_created_and_the_client_told_otherwise() {
    let zk = proxied();
    let p = proxy(&zk);
    let client = connect(&zk.connect_string()).await;
    let direct = connect(&zk.direct_connect_string()).await;

    p.lose_replies(&[zk_op::CREATE, zk_op::CREATE2], 1);
    let err = client
        .create("/lost", b"applied", &persistent())
        .await
        .unwrap_err();
    println!("lost create reply: {}", describe(&err));
    assert_reset(&err);
    assert_eq!(p.faults().lost_replies, 1);
    // ZooKeeper applied it.
    let (data, _) = direct
        .get_data("/lost")
        .await
        .expect("the create was applied");
    assert_eq!(data, b"applied");
    // A retry is told the node exists.
    let deadline = Instant::now() + Duration::from_secs(10);
    let retry = loop {
        match client.create("/lost", b"applied", &persistent()).await {
            Err(e @ zk::Error::Custom(_)) if Instant::now() < deadline => {
                println!("  (retrying create after {})", describe(&e));
            }
            other => break other,
        }
    };
    println!("retried create: {retry:?}");
    assert_eq!(retry.unwrap_err(), zk::Error::NodeExists);

    // A sequential create retried after a lost reply makes a duplicate: the
    // case serversets registrations must guard against.
    client.mkdir("/set", &persistent()).await.unwrap();
    let member = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    p.lose_replies(&[zk_op::CREATE2], 1);
    let err = client
        .create("/set/member_", b"m", &member)
        .await
        .unwrap_err();
    println!("lost sequential create reply: {}", describe(&err));
    assert_reset(&err);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.create("/set/member_", b"m", &member).await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "retry failed: {e}");
                println!("  (retrying create after {})", describe(&e));
            }
        }
    }
    direct.sync("/set").await.unwrap();
    let members = direct.list_children("/set").await.unwrap();
    assert_eq!(
        members.len(),
        2,
        "one lost reply, one duplicate: {members:?}"
    );
    let f = p.faults();
    assert_eq!((f.lost_replies, f.resets), (2, 0));

    // Other operations were never touched, and the budget is spent.
    client.create("/after", b"", &persistent()).await.unwrap();
    assert_eq!(p.faults().lost_replies, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn blackhole_and_refuse_starve_the_client_until_healed() {
    let zk = proxied();
    let p = proxy(&zk);
    let client = connect(&zk.connect_string()).await;
    client.create("/hole", b"h", &persistent()).await.unwrap();
    let session = client.session_id();

    // Blackhole: the request in flight fails by the client's own timeout.
    p.set_blackhole(true);
    p.set_blackhole(true); // already on: not a second blackhole
    let start = Instant::now();
    let err = client.get_data("/hole").await.unwrap_err();
    println!(
        "blackhole, request after {:?}: {}",
        start.elapsed(),
        describe(&err)
    );
    assert_no_response(&err);
    // New connections are accepted and starved too; requests wait.
    let accepted = p.faults().accepted;
    let waiting = tokio::time::timeout(Duration::from_millis(2500), client.get_data("/hole")).await;
    println!("blackhole, next request: {waiting:?}");
    assert!(
        !matches!(waiting, Ok(Ok(_))),
        "nothing answers in a blackhole"
    );
    assert!(p.faults().accepted > accepted, "reconnects are accepted");
    assert!(p.connections() >= 1, "and held open");
    p.set_blackhole(false);
    let (data, _) = get_eventually(&client, "/hole", Duration::from_secs(10)).await;
    assert_eq!(data, b"h");
    assert_eq!(client.session_id(), session);
    let f = p.faults();
    assert_eq!(f.blackholes, 1);
    assert!(f.blackholed_frames >= 2, "{f:?}");

    // Refuse, and reset the open connection: every reconnect is reset, and
    // a request made meanwhile waits for a connection.
    p.refuse(true);
    assert_eq!(p.reset_all(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = tokio::time::timeout(Duration::from_millis(1500), client.get_data("/hole")).await;
    println!("refusing, request: {waiting:?}");
    assert!(waiting.is_err(), "no connection: the request waits");
    let refused = p.faults().refused;
    assert!(refused >= 1, "the client tried to reconnect");
    p.refuse(false);
    let (data, _) = get_eventually(&client, "/hole", Duration::from_secs(10)).await;
    assert_eq!(data, b"h");
    assert_eq!(client.session_id(), session);
    let f = p.faults();
    assert_eq!(f.resets, 1);
    assert!(f.accepted > f.refused);
}

#[tokio::test(flavor = "current_thread")]
async fn an_ensemble_gets_one_proxy_per_server() {
    let zk = ZkCluster::start(ZkOptions {
        servers: 3,
        proxied: true,
        ..ZkOptions::default()
    })
    .expect("3-node ensemble behind fault proxies");
    assert_eq!(zk.proxies().len(), 3);
    let addrs: Vec<String> = zk.proxies().iter().map(|p| p.addr().to_string()).collect();
    assert_eq!(zk.connect_string(), addrs.join(","));
    for (i, addr) in addrs.iter().enumerate() {
        assert_eq!(&zk.server_address(i).unwrap(), addr);
        assert_eq!(
            zk.proxy(i).unwrap().upstream().to_string(),
            zk.direct_address(i).unwrap()
        );
    }
    // A client on server 0's proxy; resetting it moves the client on.
    let client = connect(&zk.connect_string()).await;
    client.create("/ens", b"e", &persistent()).await.unwrap();
    let on: Vec<usize> = (0..3)
        .filter(|&i| zk.proxy(i).unwrap().connections() == 1)
        .collect();
    assert_eq!(on.len(), 1, "one connection, through one proxy");
    assert_eq!(zk.proxy(on[0]).unwrap().reset_all(), 1);
    let (data, _) = get_eventually(&client, "/ens", Duration::from_secs(10)).await;
    assert_eq!(data, b"e");
}

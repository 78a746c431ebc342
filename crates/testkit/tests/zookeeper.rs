//! The test kit against real ZooKeeper: start, round trip, kill, restart,
//! pause and resume, for a standalone server and a 3-node ensemble.

use std::time::Duration;

use testkit::ZkCluster;
use zookeeper_client as zk;

async fn connect(cluster: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_connection_timeout(Duration::from_secs(2))
        .connect(cluster)
        .await
        .unwrap_or_else(|e| panic!("connect {cluster}: {e}"))
}

async fn round_trip(client: &zk::Client, path: &str, data: &[u8]) {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create(path, data, &opts).await.expect("create");
    let (got, _) = client.get_data(path).await.expect("get");
    assert_eq!(got, data);
}

#[tokio::test(flavor = "current_thread")]
async fn standalone_round_trip_kill_restart_pause() {
    let zk = ZkCluster::standalone().expect("standalone ZooKeeper");
    assert_eq!(zk.len(), 1);
    assert_eq!(zk.leader(), Some(0));
    let client = connect(&zk.connect_string()).await;
    round_trip(&client, "/kit", b"one").await;

    // Pause: the server stops answering but keeps its socket.
    zk.pause(0).unwrap();
    let stalled = tokio::time::timeout(Duration::from_millis(500), client.get_data("/kit")).await;
    assert!(stalled.is_err(), "a paused server must not answer");
    zk.resume(0).unwrap();
    let (got, _) = tokio::time::timeout(Duration::from_secs(10), client.get_data("/kit"))
        .await
        .expect("answers after resume")
        .expect("get after resume");
    assert_eq!(got, b"one");

    // Kill -9 and restart on the same data dir: persistent data survives.
    zk.kill(0).unwrap();
    assert!(testkit::four_letter_word(
        zk.server_address(0)
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
        "ruok"
    )
    .is_err());
    zk.restart(0).unwrap();
    let client2 = connect(&zk.connect_string()).await;
    let (got, _) = client2
        .get_data("/kit")
        .await
        .expect("data survives restart");
    assert_eq!(got, b"one");

    // Graceful stop.
    zk.stop(0).unwrap();
    assert_eq!(zk.leader(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn ensemble_round_trip_survives_leader_kill() {
    let zk = ZkCluster::ensemble().expect("3-node ZooKeeper ensemble");
    assert_eq!(zk.len(), 3);
    assert_eq!(zk.connect_string().split(',').count(), 3);
    let leader = zk.leader().expect("an elected leader");

    // Talk to each server on its own: all see the same data.
    let first = connect(&zk.server_address(0).unwrap()).await;
    round_trip(&first, "/ens", b"quorum").await;
    for i in 1..3 {
        let c = connect(&zk.server_address(i).unwrap()).await;
        c.sync("/ens").await.expect("sync");
        let (got, _) = c.get_data("/ens").await.expect("read from another server");
        assert_eq!(got, b"quorum");
    }

    // Kill the leader: the other two elect a new one and keep serving.
    zk.kill(leader).unwrap();
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    zk.wait_serving(survivor).expect("survivors serve again");
    let mut new_leader = None;
    for _ in 0..200 {
        new_leader = zk.leader();
        if new_leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_leader = new_leader.expect("a new leader");
    assert_ne!(new_leader, leader);
    let c = connect(&zk.server_address(survivor).unwrap()).await;
    round_trip(&c, "/after-kill", b"still").await;

    // The old leader comes back as a follower with the new data.
    zk.restart(leader).unwrap();
    let back = connect(&zk.server_address(leader).unwrap()).await;
    back.sync("/after-kill").await.expect("sync");
    let (got, _) = back
        .get_data("/after-kill")
        .await
        .expect("rejoined server has the data");
    assert_eq!(got, b"still");
}

#[test]
fn two_clusters_get_distinct_ports() {
    let a = ZkCluster::standalone().expect("first");
    let b = ZkCluster::standalone().expect("second");
    assert_ne!(a.connect_string(), b.connect_string());
    let dir = a.root().to_path_buf();
    drop(a);
    assert!(!dir.exists(), "data directory removed on drop");
}

#[test]
fn memcached_starts_and_answers() {
    use std::io::{BufRead, BufReader, Write};
    let mc = testkit::Memcached::start().expect("memcached");
    let mut s = std::net::TcpStream::connect(mc.address()).unwrap();
    s.write_all(b"version\r\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.starts_with("VERSION "), "{line}");
}

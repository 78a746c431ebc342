//! Real memcached (feature `client`): three servers from testkit, keys
//! written through the McSet, placement checked by asking every server
//! directly over its text protocol. First over a FixedSet, then with the
//! servers registered in a real ZooKeeper and the McSet following a watch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serversets_core::{Environment, ServerSet, Watcher};
use serversets_fixedset::FixedSet;
use serversets_mcset::{Error, McSet, Ring, WeightedNode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);
const KEYS: usize = 300;

fn start_three() -> Vec<testkit::Memcached> {
    (0..3)
        .map(|_| testkit::Memcached::start().expect("memcached (apt-get install memcached)"))
        .collect()
}

fn key(i: usize) -> String {
    format!("mcset-test:{i}")
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

/// One text-protocol command on a fresh connection; returns the response
/// lines up to and including the terminator.
async fn raw(addr: &str, command: &str, terminator: &str) -> Vec<String> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    write.write_all(command.as_bytes()).await.expect("write");
    let mut lines = BufReader::new(read).lines();
    let mut out = Vec::new();
    while let Some(line) = lines.next_line().await.expect("read") {
        let done = line == terminator || line.ends_with("ERROR");
        out.push(line);
        if done {
            break;
        }
    }
    out
}

/// The value stored under `key` on the server at `addr`, asked directly.
async fn raw_get(addr: &str, key: &str) -> Option<Vec<u8>> {
    let lines = raw(addr, &format!("get {key}\r\n"), "END").await;
    match lines.as_slice() {
        [end] if end == "END" => None,
        [header, data, end] if header.starts_with("VALUE ") && end == "END" => {
            Some(data.clone().into_bytes())
        }
        other => panic!("unexpected reply from {addr}: {other:?}"),
    }
}

async fn curr_connections(addr: &str) -> u64 {
    raw(addr, "stats\r\n", "END")
        .await
        .iter()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .and_then(|n| n.trim().parse().ok())
        .expect("curr_connections in stats")
}

/// Which server holds each key, found by asking every server.
async fn holders(servers: &[String]) -> HashMap<String, Vec<String>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..KEYS {
        for addr in servers {
            if let Some(v) = raw_get(addr, &key(i)).await {
                assert_eq!(v, value(i), "{} on {addr}", key(i));
                found.entry(key(i)).or_default().push(addr.clone());
            }
        }
    }
    found
}

fn ketama_over(servers: &[String]) -> Ring {
    Ring::ketama(
        servers
            .iter()
            .map(|a| a.parse::<WeightedNode>().expect("address")),
    )
}

async fn write_all(set: &McSet) {
    for i in 0..KEYS {
        set.set(key(i), &value(i), None).await.expect("set");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_on_the_ketama_server_and_removal_moves_only_its_keys() {
    let memcached = start_three();
    let servers: Vec<String> = memcached.iter().map(|m| m.address()).collect();
    let source = Arc::new(FixedSet::new(&servers).expect("addresses"));
    let set = McSet::new(source.clone()).expect("runtime");
    assert_eq!(set.client_count(), 3);

    write_all(&set).await;
    let ring = ketama_over(&servers);
    let before = holders(&servers).await;
    assert_eq!(before.len(), KEYS, "every key stored somewhere");
    let mut per_server: HashMap<&str, usize> = HashMap::new();
    for i in 0..KEYS {
        let want = ring.pick(key(i)).expect("ring").addr().to_string();
        assert_eq!(
            before[&key(i)],
            std::slice::from_ref(&want),
            "{} lives only on its ketama server",
            key(i)
        );
        *per_server
            .entry(servers.iter().find(|s| **s == want).unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        per_server.len(),
        3,
        "all three servers hold keys: {per_server:?}"
    );

    // Reads through the set find every key.
    for i in (0..KEYS).step_by(7) {
        assert_eq!(set.get(key(i)).await.expect("get"), Some(value(i)));
    }

    // Remove one server: only its keys move.
    let gone = servers[1].clone();
    let with_client = curr_connections(&gone).await;
    let rest: Vec<String> = servers.iter().filter(|s| **s != gone).cloned().collect();
    source.set_addresses(&rest).expect("addresses");
    tokio::time::timeout(WAIT, set.wait_for_version(source.snapshot().version()))
        .await
        .expect("ring updated in time")
        .expect("following");
    assert_eq!(set.client_count(), 2);
    let after = ketama_over(&rest);
    let mut moved = 0;
    for i in 0..KEYS {
        let old = &before[&key(i)][0];
        let new = set.pick(key(i)).expect("servers").addr().to_string();
        assert_eq!(new, after.pick(key(i)).unwrap().addr().to_string());
        if *old == gone {
            moved += 1;
            assert_ne!(new, gone);
            // It moved to a server that never had it.
            assert_eq!(set.get(key(i)).await.expect("get"), None, "{}", key(i));
        } else {
            assert_eq!(
                &new,
                old,
                "{} lived on a surviving server and must stay",
                key(i)
            );
            assert_eq!(set.get(key(i)).await.expect("get"), Some(value(i)));
        }
    }
    assert_eq!(moved, per_server[gone.as_str()]);

    // The departed server's client was dropped: its connection closes.
    testkit::eventually(
        WAIT,
        "client connection to the removed server closed",
        || async { curr_connections(&gone).await < with_client },
    )
    .await;
}

#[tokio::test]
async fn delete_and_missing_keys() {
    let memcached = start_three();
    let servers: Vec<String> = memcached.iter().map(|m| m.address()).collect();
    let set = McSet::new(FixedSet::new(&servers).expect("addresses")).expect("runtime");
    set.set("k1", b"v1", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let home = set.pick("k1").unwrap().addr().to_string();
    assert_eq!(raw_get(&home, "k1").await, Some(b"v1".to_vec()));
    assert!(set.delete("k1").await.unwrap());
    assert!(!set.delete("k1").await.unwrap());
    assert_eq!(raw_get(&home, "k1").await, None);
    assert_eq!(set.get("never-written").await.unwrap(), None);
}

/// A memcached started by hand on a given port (testkit picks its own
/// ports), killed on drop.
struct OnPort(std::process::Child);

impl OnPort {
    async fn start(port: u16) -> OnPort {
        let child = std::process::Command::new("memcached")
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-m",
                "16",
                "-u",
                "root",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn memcached");
        let server = OnPort(child);
        testkit::eventually(WAIT, "restarted memcached accepts", || async {
            TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        server
    }
}

impl Drop for OnPort {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_dead_server_fails_typed_and_is_reconnected_when_back() {
    let mut memcached = start_three();
    let servers: Vec<String> = memcached.iter().map(|m| m.address()).collect();
    let set = McSet::new(FixedSet::new(&servers).expect("addresses")).expect("runtime");
    let on = |n: usize| {
        (0..)
            .map(key)
            .find(|k| set.pick(k).unwrap().addr().to_string() == servers[n])
            .unwrap()
    };
    let k = on(0);
    set.set(&k, b"x", None).await.unwrap();

    let port = memcached[0].port();
    memcached[0].kill();
    let err = set.get(&k).await.expect_err("server is down");
    match &err {
        Error::Memcache { addr, .. } => assert_eq!(addr.to_string(), servers[0]),
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains(&servers[0]), "{err}");

    // Keys on other servers are unaffected.
    let other = on(2);
    set.set(&other, b"y", None).await.unwrap();
    assert_eq!(set.get(&other).await.unwrap(), Some(b"y".to_vec()));

    // Back on the same port (empty): the client reconnects by itself.
    let _back = OnPort::start(port).await;
    assert_eq!(set.get(&k).await.expect("reconnected"), None);
    set.set(&k, b"z", None).await.unwrap();
    assert_eq!(raw_get(&servers[0], &k).await, Some(b"z".to_vec()));
}

#[tokio::test]
async fn empty_set_is_no_servers() {
    let set = McSet::new(FixedSet::empty()).expect("runtime");
    assert!(matches!(set.get("k").await, Err(Error::NoMembers)));
    assert!(matches!(
        set.set("k", b"v", None).await,
        Err(Error::NoMembers)
    ));
    assert!(matches!(set.delete("k").await, Err(Error::NoMembers)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_registered_in_zookeeper() {
    let zk = testkit::ZkCluster::standalone().expect("zookeeper (apt-get install zookeeper)");
    let memcached = start_three();
    let servers: Vec<String> = memcached.iter().map(|m| m.address()).collect();
    let set = ServerSet::builder(Environment::Test, "mcset-it", [zk.connect_string()])
        .connect_timeout(Duration::from_secs(20))
        .build()
        .expect("server set");
    let mut endpoints = Vec::new();
    for m in &memcached {
        let ep = set.register_endpoint("127.0.0.1", m.port(), None).await;
        endpoints.push(ep.expect("registered"));
    }
    let mcset = McSet::new(set.watch().await.expect("watch")).expect("runtime");
    testkit::eventually(WAIT, "all three members seen", || async {
        mcset.ring().len() == 3
    })
    .await;

    // Keys land on the ketama server.
    write_all(&mcset).await;
    let ring = ketama_over(&servers);
    let before = holders(&servers).await;
    for i in 0..KEYS {
        let want = ring.pick(key(i)).unwrap().addr().to_string();
        assert_eq!(before[&key(i)], [want], "{}", key(i));
    }

    // Server 2 leaves ZooKeeper: only its keys move.
    let gone = servers[2].clone();
    endpoints
        .pop()
        .expect("three")
        .close()
        .await
        .expect("deregistered");
    testkit::eventually(WAIT, "removal seen", || async { mcset.ring().len() == 2 }).await;
    let mut moved = 0;
    for i in 0..KEYS {
        let old = &before[&key(i)][0];
        let new = mcset.pick(key(i)).unwrap().addr().to_string();
        let stored = mcset.get(key(i)).await.expect("get");
        if *old == gone {
            moved += 1;
            assert_ne!(new, gone);
            assert_eq!(
                stored,
                None,
                "{} moved to a server that never had it",
                key(i)
            );
        } else {
            assert_eq!(&new, old, "{} must stay", key(i));
            assert_eq!(stored, Some(value(i)));
        }
    }
    assert!(moved > 0, "the removed server held keys");

    // It comes back announcing weight 3: the ring follows the metadata.
    let _back = set
        .registration("127.0.0.1", memcached[2].port())
        .metadata("weight", "3")
        .register()
        .await
        .expect("registered again");
    testkit::eventually(WAIT, "weighted member seen", || async {
        mcset.ring().len() == 3
    })
    .await;
    let weighted = Ring::ketama([
        format!("{}=1", servers[0]).parse::<WeightedNode>().unwrap(),
        format!("{}=1", servers[1]).parse().unwrap(),
        format!("{}=3", servers[2]).parse().unwrap(),
    ]);
    let ring = mcset.ring();
    assert_eq!(ring.nodes().iter().map(|n| n.weight()).sum::<f64>(), 5.0);
    for i in 0..KEYS {
        assert_eq!(
            ring.pick(key(i)).unwrap().addr(),
            weighted.pick(key(i)).unwrap().addr(),
            "{}",
            key(i)
        );
    }
}

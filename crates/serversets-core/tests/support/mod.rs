//! Shared set-up for the ZooKeeper integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serversets_core::zookeeper_client as zk;
use serversets_core::{
    Environment, Ping, Registration, ServerSet, ServerSetBuilder, Snapshot, Watch, WatchStrategy,
    Watcher,
};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "serversets_core=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A standalone ZooKeeper, with test logging started.
pub fn standalone() -> testkit::ZkCluster {
    init_tracing();
    testkit::ZkCluster::standalone().expect("ZooKeeper starts")
}

/// Registers the member `127.0.0.1:port` in `set`.
pub async fn register_local(set: &ServerSet, port: u16) -> Registration {
    set.register_endpoint("127.0.0.1", port, None)
        .await
        .expect("register")
}

/// A health check that passes while `up` is true and fails with
/// "backend down" once it is false.
pub fn ping_while(up: &Arc<AtomicBool>) -> Ping {
    let up = up.clone();
    Ping::new(move || {
        let ok = up.load(Ordering::SeqCst);
        async move {
            if ok {
                Ok(())
            } else {
                Err("backend down")
            }
        }
    })
}

/// What server `i` of `zk` answers to the four-letter word `word`.
pub fn four_letter(zk: &testkit::ZkCluster, i: usize, word: &str) -> std::io::Result<String> {
    let port: u16 = zk
        .server_address(i)
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    testkit::four_letter_word(port, word)
}

/// A server set on `zk` with a short session timeout, under a unique name.
pub fn set(zk: &str, service: &str, session_timeout: Duration) -> ServerSet {
    set_builder(zk, service)
        .session_timeout(session_timeout)
        .build()
        .expect("valid server set")
}

/// The builder of `/discovery/test/<service>` on `zk`, with a connect
/// timeout generous enough for a loaded machine (20 s) and 10 s sessions.
pub fn set_builder(zk: &str, service: &str) -> ServerSetBuilder {
    ServerSet::builder(Environment::Test, service, [zk])
        .session_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(20))
}

/// A plain zookeeper-client connection, standing in for other writers
/// (Finagle, Aurora, an operator's script).
pub async fn raw(zk: &str) -> zk::Client {
    testkit::znodes::connect(zk)
        .await
        .expect("raw client connects")
}

pub async fn put(client: &zk::Client, path: &str, data: &[u8], mode: zk::CreateMode) -> String {
    testkit::znodes::put(client, path, data, mode)
        .await
        .expect("create")
}

/// Waits on the watcher's subscription until the snapshot satisfies `pred`.
pub async fn wait_for<W: Watcher>(
    w: &W,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let mut sub = w.subscribe();
    let fut = async {
        let mut snap = w.snapshot();
        loop {
            if pred(&snap) {
                return snap;
            }
            snap = sub.changed().await.expect("watch closed while waiting");
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(s) => s,
        Err(_) => panic!(
            "timed out after {timeout:?} waiting for: {what}; have {:?}",
            w.snapshot()
        ),
    }
}

pub fn addrs(s: &Snapshot) -> Vec<String> {
    s.iter().map(|m| m.addr().to_string()).collect()
}

/// Member children of `path` as seen by a fresh client.
pub async fn members_in_zk(client: &zk::Client, path: &str) -> Vec<String> {
    testkit::znodes::members(client, path)
        .await
        .expect("list members")
}

/// A `member_` child of `set_path` written the way another writer
/// (Finagle, Aurora, an operator's script) writes it: persistent sequential,
/// so it outlives every session. Returns its path.
pub async fn put_member(client: &zk::Client, set_path: &str, data: &[u8]) -> String {
    let prefix = format!("{set_path}/member_");
    put(client, &prefix, data, zk::CreateMode::PersistentSequential).await
}

/// A Finagle `vector_` weight znode under `set_path`, written the same way.
/// Returns its path.
pub async fn put_vector(client: &zk::Client, set_path: &str, data: &[u8]) -> String {
    let prefix = format!("{set_path}/vector_");
    put(client, &prefix, data, zk::CreateMode::PersistentSequential).await
}

/// Finagle member JSON as another writer writes it: ALIVE at `host:port`,
/// an `http` additional endpoint on the next port, then `extra` fields
/// (`,"shard":1`).
pub fn finagle(host: &str, port: u16, extra: &str) -> Vec<u8> {
    let http = u32::from(port) + 1;
    format!(r#"{{"serviceEndpoint":{{"host":"{host}","port":{port}}},"additionalEndpoints":{{"http":{{"host":"{host}","port":{http}}}}},"status":"ALIVE"{extra}}}"#).into_bytes()
}

/// One standalone ZooKeeper and a plain client on it, standing in for the
/// other writers: what most tests start from.
pub struct Zk {
    pub server: testkit::ZkCluster,
    pub raw: zk::Client,
}

impl Zk {
    /// Starts the server (and test logging) and connects the plain client.
    pub async fn start() -> Zk {
        init_tracing();
        let server = testkit::ZkCluster::standalone().expect("ZooKeeper starts");
        let raw = raw(&server.connect_string()).await;
        Zk { server, raw }
    }

    pub fn connect_string(&self) -> String {
        self.server.connect_string()
    }

    /// The set `/discovery/test/<service>` on this server (10 s sessions).
    pub fn set(&self, service: &str) -> ServerSet {
        set(&self.connect_string(), service, Duration::from_secs(10))
    }

    /// The set `<name>-<strategy>` (lower case) on this server and a watch
    /// of it that follows it with `strategy`.
    pub async fn watched(&self, name: &str, strategy: WatchStrategy) -> (ServerSet, Watch) {
        let service = format!("{name}-{strategy:?}").to_lowercase();
        let set = self.set(&service);
        let watch = watch_with(&set, strategy).await;
        (set, watch)
    }
}

/// An error and its causes on one line (`what: why: why`): a cause is an
/// error's `source()`, never repeated in its message.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut shown = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        shown = format!("{shown}: {c}");
        cause = c.source();
    }
    shown
}

/// A watch of `set` that follows it with `strategy` (tests run both).
pub async fn watch_with(set: &ServerSet, strategy: WatchStrategy) -> Watch {
    set.watch_builder()
        .strategy(strategy)
        .start()
        .await
        .expect("the watch starts")
}

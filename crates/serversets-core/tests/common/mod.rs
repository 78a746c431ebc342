//! Shared helpers for the ZooKeeper integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use serversets_core::zookeeper_client as zk;
use serversets_core::{Environment, ServerSet, Snapshot, Watcher};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "serversets_core=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A server set on `zk` with a short session timeout, under a unique name.
pub fn set(zk: &str, service: &str, session_timeout: Duration) -> ServerSet {
    ServerSet::builder(Environment::Test, service, [zk])
        .session_timeout(session_timeout)
        .connect_timeout(Duration::from_secs(20))
        .build()
        .expect("valid server set")
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

/// Polls `cond` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

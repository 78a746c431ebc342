//! `serversets watch` against a real ZooKeeper, with members written by
//! another client in the Finagle format.

mod support;

use serde_json::Value;
use serversets_core::zookeeper_client as zk;
use support::*;

const FINAGLE_A: &str = r#"{"serviceEndpoint":{"host":"10.0.0.1","port":31781},"additionalEndpoints":{"http":{"host":"10.0.0.1","port":31782},"admin":{"host":"10.0.0.1","port":9990}},"status":"ALIVE","shard":3,"metadata":{"weight":"2"}}"#;
// go.serversets style: no shard, no metadata, extra fields tolerated.
const GO_B: &str = r#"{"serviceEndpoint":{"host":"10.0.0.2","port":31781,"inet":"10.0.0.2"},"additionalEndpoints":{},"status":"ALIVE","member_id":"x"}"#;
const STOPPING: &str = r#"{"serviceEndpoint":{"host":"10.0.0.3","port":31781},"additionalEndpoints":{},"status":"STOPPING"}"#;

fn by_member(v: &Value) -> Vec<&Value> {
    let mut members: Vec<&Value> = v.as_array().expect("array").iter().collect();
    members.sort_by_key(|m| m["member"].as_str().unwrap().to_string());
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_once_json_sees_finagle_members_from_another_client() {
    let client = raw().await;
    let set = "/discovery/test/watch-json";
    let a = put_member(&client, set, FINAGLE_A).await;
    let b = put_member(&client, set, GO_B).await;
    put_member(&client, set, STOPPING).await;
    put_member(&client, set, "not json").await;
    put(
        &client,
        &format!("{set}/vector_0000000000"),
        b"{}",
        zk::CreateMode::Persistent,
    )
    .await;

    let out = run_on_zk(&[
        "watch",
        "--env",
        "test",
        "--service",
        "watch-json",
        "--once",
        "--json",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {}", out.stdout);
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    let members = by_member(&v);
    assert_eq!(members.len(), 2, "only the two ALIVE members: {v}");

    let name = |p: &str| p.rsplit('/').next().unwrap().to_string();
    let (ma, mb) = (members[0], members[1]);
    assert_eq!(ma["member"], name(&a).as_str());
    assert_eq!(ma["host"], "10.0.0.1");
    assert_eq!(ma["port"], 31781);
    assert_eq!(ma["status"], "ALIVE");
    assert_eq!(ma["shard"], 3);
    assert_eq!(ma["additional_endpoints"]["http"]["host"], "10.0.0.1");
    assert_eq!(ma["additional_endpoints"]["http"]["port"], 31782);
    assert_eq!(ma["additional_endpoints"]["admin"]["port"], 9990);
    assert_eq!(ma["metadata"]["weight"], "2");
    assert_eq!(mb["member"], name(&b).as_str());
    assert!(mb["shard"].is_null(), "no shard is null: {mb}");
    assert_eq!(mb["additional_endpoints"], serde_json::json!({}));
    assert_eq!(mb["metadata"], serde_json::json!({}));

    // --endpoint serves the named endpoint and skips members without it.
    let out = run_on_zk(&[
        "--path",
        set,
        "watch",
        "--endpoint",
        "http",
        "--once",
        "--json",
    ])
    .await;
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let members = by_member(&v);
    assert_eq!(members.len(), 1, "{v}");
    assert_eq!(
        (members[0]["host"].as_str(), members[0]["port"].as_u64()),
        (Some("10.0.0.1"), Some(31782))
    );

    // --shard filters.
    let out = run_on_zk(&["watch", "--path", set, "--shard", "4", "--once", "--json"]).await;
    assert_eq!(out.stdout.trim(), "[]");

    // Text output lists the members and says why the others are not served.
    let out = run_on_zk(&["watch", "--path", set, "--once"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout;
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains(&format!("{set}: 2 members (connection connected)")),
        "{text}"
    );
    assert!(text.contains("10.0.0.1:31781  ALIVE  shard=3  endpoints{admin=10.0.0.1:9990,http=10.0.0.1:31782}  metadata{weight=2}"), "{text}");
    assert!(text.contains("not served: status STOPPING"), "{text}");
    assert!(
        text.contains("not served: malformed: invalid JSON"),
        "{text}"
    );
    // A Finagle weight znode the watch cannot use is reported, not served.
    assert!(
        text.contains("vector_0000000000 skipped: invalid vector: no \"vector\" array"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_change_and_exits_on_sigint() {
    let client = raw().await;
    let set = "/discovery/test/watch-changes";
    put_member(&client, set, GO_B).await;
    let zk = zk_args();
    let mut w = Running::spawn(&args(&zk, &["watch", "--path", set]));
    w.expect("the initial set", |l| {
        l.ends_with(&format!("{set}: 1 member (connection connected)"))
    })
    .await;
    w.expect("the member", |l| l.contains("10.0.0.2:31781  ALIVE"))
        .await;

    let a = put_member(&client, set, FINAGLE_A).await;
    w.expect("the addition", |l| l.ends_with(" 2 members (+1 -0)"))
        .await;
    let added = w
        .expect("the added member", |l| l.starts_with("  + "))
        .await;
    assert!(added.contains("10.0.0.1:31781"), "{added}");

    client.delete(&a, None).await.unwrap();
    w.expect("the removal", |l| l.ends_with(" 1 member (+0 -1)"))
        .await;
    let removed = w
        .expect("the removed member", |l| l.starts_with("  - "))
        .await;
    assert!(removed.contains("10.0.0.1:31781"), "{removed}");

    // A malformed member changes no snapshot, but is reported on its own.
    let bad = put_member(&client, set, r#"{"serviceEndpoint":{"host":"10.0.0.9"}}"#).await;
    let name = bad.rsplit('/').next().unwrap().to_string();
    let line = w
        .expect("the malformed member", |l| l.contains(" ! "))
        .await;
    assert!(
        line.ends_with(&format!(
            " ! {name} not served: malformed: invalid serviceEndpoint: missing port"
        )),
        "{line}"
    );

    w.signal(libc::SIGINT);
    let (status, _) = w.wait().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_json_prints_one_line_per_snapshot() {
    let client = raw().await;
    let set = "/discovery/test/watch-json-stream";
    let zk = zk_args();
    let mut w = Running::spawn(&args(&zk, &["watch", "--path", set, "--json"]));
    // A missing path is an empty set.
    w.expect("the empty set", |l| l == "[]").await;
    put_member(&client, set, FINAGLE_A).await;
    let line = w.expect("one member", |l| l != "[]").await;
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["shard"], 3);
    w.signal(libc::SIGTERM);
    let (status, _) = w.wait().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_connection_changes_and_keeps_the_set() {
    // Its own server, so stopping it does not disturb the other tests.
    let own = testkit::ZkCluster::standalone().unwrap();
    let writer = zk::Client::connector()
        .with_session_timeout(std::time::Duration::from_secs(60))
        .connect(&own.connect_string())
        .await
        .unwrap();
    let set = "/discovery/test/watch-health";
    put(
        &writer,
        &format!("{set}/member_0000000000"),
        GO_B.as_bytes(),
        zk::CreateMode::Persistent,
    )
    .await;
    drop(writer);

    let connect = own.connect_string();
    let mut w = Running::spawn(&[
        "--zk",
        &connect,
        "--session-timeout",
        "2s",
        "watch",
        "--path",
        set,
    ]);
    w.expect("the initial set", |l| {
        l.contains(": 1 member (connection connected)")
    })
    .await;
    own.stop(0).unwrap();
    w.expect("the outage", |l| {
        l.contains("connection: disconnected, reconnecting (members kept)")
    })
    .await;
    own.restart(0).unwrap();
    w.expect("the recovery", |l| l.ends_with("connection: connected"))
        .await;
    // No member change was printed through the outage.
    assert!(
        !w.seen
            .iter()
            .any(|l| l.contains("(+") || l.starts_with("  - ")),
        "{:?}",
        w.seen
    );
    w.signal(libc::SIGTERM);
    let (status, _) = w.wait().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_watch_whose_stdout_is_not_read() {
    let client = raw().await;
    let set = "/discovery/test/watch-stalled-stdout";
    put_member(&client, set, FINAGLE_A).await;
    let (_reader, stdout) = stalled_stdout();
    let zk = zk_args();
    let mut cmd = command(&args(&zk, &["watch", "--path", set]));
    cmd.stdout(stdout).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn serversets");
    // Caught, not fatal; then time to connect and get stuck on the first
    // write (the signal ends it at any point; the wait makes it land there).
    wait_for_handler(child.id().unwrap(), libc::SIGTERM).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    signal_pid(child.id().unwrap(), libc::SIGTERM);
    assert_eq!(exit_code(&mut child).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ends_a_watch_that_is_still_connecting() {
    let dead = format!("127.0.0.1:{}", testkit::free_port());
    // A connect timeout far beyond how long the test waits for the exit.
    let mut cmd = command(&[
        "--zk",
        &dead,
        "--connect-timeout",
        "5m",
        "watch",
        "--env",
        "test",
        "--service",
        "x",
    ]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn serversets");
    // Past installing the handlers (before that SIGINT kills it outright,
    // which would show as no exit code).
    wait_for_handler(child.id().unwrap(), libc::SIGINT).await;
    signal_pid(child.id().unwrap(), libc::SIGINT);
    assert_eq!(exit_code(&mut child).await, Some(0));
}

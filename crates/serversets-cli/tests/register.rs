//! `serversets register` against a real ZooKeeper: each check kind,
//! checks that flip, and deregistration on signals.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FAST: &[&str] = &["--check-interval", "100ms", "--check-timeout", "1s"];

/// `register --path SET --host 127.0.0.1 --port PORT`, then `extra`, after
/// the test ZooKeeper's options.
fn register_args(set: &str, port: &str, extra: &[&str]) -> Vec<String> {
    let mut v = zk_args();
    let own = [
        "register",
        "--path",
        set,
        "--host",
        "127.0.0.1",
        "--port",
        port,
    ];
    v.extend(own.iter().chain(extra).map(|s| s.to_string()));
    v
}

/// `serversets register` of 127.0.0.1:PORT in `set`, followed line by line.
fn register(set: &str, port: &str, extra: &[&str]) -> Running {
    let v = register_args(set, port, extra);
    Running::spawn(&v.iter().map(String::as_str).collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_deregisters_within_one_second() {
    let client = raw().await;
    let set = "/discovery/test/register-sigterm";
    // A session timeout far above one second: only an explicit delete can
    // remove the member in time.
    let mut r = Running::spawn(&[
        "--zk",
        &zk().connect_string(),
        "--session-timeout",
        "30s",
        "register",
        "--env",
        "test",
        "--service",
        "register-sigterm",
        "--host",
        "10.1.2.3",
        "--port",
        "8080",
        "--additional",
        "http=10.1.2.3:8081",
        "--shard",
        "7",
        "--metadata",
        "weight=2",
    ]);
    let line = r.expect("registered", |l| l.contains(" registered ")).await;
    let path = line.split(" registered ").nth(1).unwrap().to_string();
    assert!(path.starts_with(&format!("{set}/member_")), "{line}");

    // What it wrote is Finagle JSON with everything asked for.
    let (data, stat) = client.get_data(&path).await.unwrap();
    assert_ne!(stat.ephemeral_owner, 0, "the member is ephemeral");
    assert!(
        data.starts_with(b"{\""),
        "Java commons sniffs the first two bytes"
    );
    let v: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        v["serviceEndpoint"],
        serde_json::json!({"host": "10.1.2.3", "port": 8080})
    );
    assert_eq!(v["additionalEndpoints"]["http"]["port"], 8081);
    assert_eq!(
        (v["status"].as_str(), v["shard"].as_i64()),
        (Some("ALIVE"), Some(7))
    );
    assert_eq!(v["metadata"]["weight"], "2");

    r.signal(libc::SIGTERM);
    let sent = Instant::now();
    wait_members(&client, set, 0).await;
    let took = sent.elapsed();
    eprintln!("member removed {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(1), "deregistered after {took:?}");
    let (status, out) = r.wait().await;
    assert_eq!(status.code(), Some(0), "{out:?}");
    assert!(
        out.iter()
            .any(|l| l.ends_with("received SIGTERM; deregistering")),
        "{out:?}"
    );
    assert!(out.last().unwrap().ends_with(" deregistered"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tcp_follows_a_listener_that_opens_and_closes() {
    let client = raw().await;
    let set = "/discovery/test/register-tcp";
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut r = register(set, &port, &[&["--check-tcp"], FAST].concat());
    let first = r.expect("the plan", |l| l.contains(" registering ")).await;
    assert!(
        first.contains(&format!(
            "check: tcp connect to 127.0.0.1:{port} every 100ms"
        )),
        "{first}"
    );
    r.expect("registered", |l| l.contains(" registered ")).await;
    wait_members(&client, set, 1).await;

    drop(listener);
    let down = r
        .expect("unhealthy", |l| l.contains(" unhealthy, not registered: "))
        .await;
    assert!(
        down.contains(&format!("connect to 127.0.0.1:{port}")),
        "{down}"
    );
    wait_members(&client, set, 0).await;

    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    r.expect("registered again", |l| l.contains(" registered "))
        .await;
    wait_members(&client, set, 1).await;

    r.signal(libc::SIGINT);
    let (status, out) = r.wait().await;
    assert_eq!(status.code(), Some(0), "{out:?}");
    wait_members(&client, set, 0).await;
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_cmd_follows_a_file() {
    let client = raw().await;
    let set = "/discovery/test/register-cmd";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ready");
    let cmd = format!("test -f '{}'", file.display());
    let mut r = register(set, "9000", &[&["--check-cmd", &cmd], FAST].concat());

    // The first check fails: the command starts unregistered.
    let line = r
        .expect("unhealthy at start", |l| {
            l.contains(" unhealthy, not registered: ")
        })
        .await;
    assert!(line.contains("failed with exit code 1"), "{line}");
    assert!(members_in_zk(&client, set).await.is_empty());

    std::fs::write(&file, b"").unwrap();
    r.expect("registered", |l| l.contains(" registered ")).await;
    wait_members(&client, set, 1).await;

    std::fs::remove_file(&file).unwrap();
    r.expect("unhealthy", |l| l.contains(" unhealthy, not registered: "))
        .await;
    wait_members(&client, set, 0).await;

    std::fs::write(&file, b"").unwrap();
    back_then_sigterm(r, &client, set).await;
}

/// The member is registered again, then SIGTERM removes it and ends the
/// command with 0.
async fn back_then_sigterm(
    mut r: Running,
    client: &serversets_core::zookeeper_client::Client,
    set: &str,
) {
    r.expect("registered again", |l| l.contains(" registered "))
        .await;
    wait_members(client, set, 1).await;
    r.signal(libc::SIGTERM);
    let (status, _) = r.wait().await;
    assert_eq!(status.code(), Some(0));
    wait_members(client, set, 0).await;
}

/// A loopback HTTP server whose health endpoint answers 200 or 503.
async fn health_server(healthy: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let status = if !req.starts_with("GET /health ") {
                    "404 Not Found"
                } else if healthy.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_http_follows_the_status_code() {
    let client = raw().await;
    let set = "/discovery/test/register-http";
    let healthy = Arc::new(AtomicBool::new(true));
    let port = health_server(healthy.clone()).await;
    let url = format!("http://127.0.0.1:{port}/health");
    let port = port.to_string();
    let mut r = register(set, &port, &[&["--check-http", &url], FAST].concat());
    r.expect("registered", |l| l.contains(" registered ")).await;
    wait_members(&client, set, 1).await;

    healthy.store(false, Ordering::SeqCst);
    let line = r
        .expect("unhealthy", |l| l.contains(" unhealthy, not registered: "))
        .await;
    assert!(line.contains("answered 503 Service Unavailable"), "{line}");
    wait_members(&client, set, 0).await;

    healthy.store(true, Ordering::SeqCst);
    back_then_sigterm(r, &client, set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_deleted_by_someone_else_comes_back() {
    let client = raw().await;
    let set = "/discovery/test/register-deleted";
    let mut r = register(set, "7000", &[]);
    let line = r.expect("registered", |l| l.contains(" registered ")).await;
    let first = line.split(" registered ").nth(1).unwrap().to_string();
    client.delete(&first, None).await.unwrap();
    let line = r
        .expect("registered again", |l| l.contains(" registered "))
        .await;
    assert!(!line.ends_with(&first), "a new member znode: {line}");
    wait_members(&client, set, 1).await;
    r.signal(libc::SIGTERM);
    let (status, _) = r.wait().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_acls_need_the_digest_to_read() {
    let set = "/acl-test/locked";
    let zk = zk_args();
    let with_digest = |rest: &[&'static str]| {
        let mut v: Vec<String> = zk.clone();
        v.extend(["--digest".to_string(), "ops:s3cret".to_string()]);
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let reg = with_digest(&[
        "register",
        "--path",
        "/acl-test/locked",
        "--host",
        "127.0.0.1",
        "--port",
        "7100",
        "--acl",
        "creator",
    ]);
    let mut r = Running::spawn(&reg.iter().map(String::as_str).collect::<Vec<_>>());
    r.expect("registered", |l| l.contains(" registered ")).await;

    let out = run_on_zk(&["--connect-timeout", "2s", "watch", "--path", set, "--once"]).await;
    assert_fails(&out, 1, &["not allowed to read the server set", "--digest"]);
    let out = run_on_zk(&["dump", "--path", set]).await;
    assert_fails(
        &out,
        1,
        &["not allowed to list /acl-test/locked", "--digest"],
    );

    let watch = with_digest(&["watch", "--path", "/acl-test/locked", "--once", "--json"]);
    let out = run(&watch.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("\"port\":7100"), "{}", out.stdout);

    r.signal(libc::SIGTERM);
    let (status, _) = r.wait().await;
    assert_eq!(status.code(), Some(0));
}

/// Starts `register` on `set` with `stdout`, stderr collected.
fn spawn_register(
    set: &str,
    port: &str,
    stdout: std::process::Stdio,
    extra: &[&str],
) -> tokio::process::Child {
    let v = register_args(set, port, extra);
    let mut cmd = command(&v.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.stdout(stdout).stderr(std::process::Stdio::piped());
    cmd.spawn().expect("spawn serversets")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_does_not_end_the_registration() {
    use tokio::io::AsyncBufReadExt;
    let client = raw().await;
    let set = "/discovery/test/register-closed-stdout";
    let mut child = spawn_register(set, "7100", std::process::Stdio::piped(), &[]);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = loop {
        let line = tokio::time::timeout(T, lines.next_line())
            .await
            .expect("output")
            .unwrap()
            .expect("a registered line");
        if let Some(path) = line.split(" registered ").nth(1) {
            break path.to_string();
        }
    };
    // The reader goes away (`| head -2`), then something is printed: the
    // member is deleted by someone else and comes back.
    drop(lines);
    client.delete(&first, None).await.unwrap();
    testkit::eventually(T, "the member to come back under a new name", || async {
        let members = members_in_zk(&client, set).await;
        members.len() == 1 && !first.ends_with(&members[0])
    })
    .await;
    // Still running, and still removes its member on SIGTERM.
    assert!(child.try_wait().unwrap().is_none(), "still running");
    signal_pid(child.id().unwrap(), libc::SIGTERM);
    wait_members(&client, set, 0).await;
    assert_eq!(exit_code(&mut child).await, Some(0));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stdout_neither_blocks_registering_nor_sigterm() {
    let client = raw().await;
    let set = "/discovery/test/register-stalled-stdout";
    let (_reader, stdout) = stalled_stdout();
    let mut child = spawn_register(set, "7101", stdout, &[]);
    wait_members(&client, set, 1).await;
    signal_pid(child.id().unwrap(), libc::SIGTERM);
    wait_members(&client, set, 0).await;
    assert_eq!(exit_code(&mut child).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_registering_still_deregisters() {
    let client = raw().await;
    let set = "/discovery/test/register-sigterm-early";
    // The first check takes a second, so registering does too.
    let mut r = register(
        set,
        "7102",
        &["--check-cmd", "sleep 1", "--check-timeout", "5s"],
    );
    r.expect("the plan", |l| l.contains(" registering ")).await;
    r.signal(libc::SIGTERM);
    let (status, out) = r.wait().await;
    assert_eq!(status.code(), Some(0), "{out:?}");
    assert!(
        out.iter()
            .any(|l| l
                .ends_with("received SIGTERM while registering; deregistering once that settles")),
        "{out:?}"
    );
    // It saw the registration through and removed what it created.
    assert!(out.last().unwrap().ends_with(" deregistered"), "{out:?}");
    assert!(members_in_zk(&client, set).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_gives_up_on_a_stuck_deregistration() {
    // Its own server, paused so the removal cannot finish.
    let own = testkit::ZkCluster::standalone().unwrap();
    let connect = own.connect_string();
    let mut r = Running::spawn(&[
        "--zk",
        &connect,
        "--session-timeout",
        "30s",
        "register",
        "--path",
        "/discovery/test/register-second-signal",
        "--host",
        "127.0.0.1",
        "--port",
        "7103",
    ]);
    r.expect("registered", |l| l.contains(" registered ")).await;
    own.pause(0).unwrap();
    r.signal(libc::SIGTERM);
    r.expect("deregistering", |l| {
        l.ends_with("received SIGTERM; deregistering")
    })
    .await;
    r.signal(libc::SIGINT);
    let stderr_of = r.stderr_handle();
    let (status, out) = r.wait().await;
    own.resume(0).unwrap();
    assert_eq!(status.code(), Some(1), "{out:?}");
    // The stderr reader may lag the exit a little.
    testkit::eventually(T, "\"received SIGINT again\" on stderr", || async {
        stderr_of.lock().unwrap().contains("received SIGINT again")
    })
    .await;
    assert!(!out.iter().any(|l| l.ends_with(" deregistered")), "{out:?}");
}

//! `--tls-ca`, `--tls-cert`, `--tls-key` and `--sasl-user` against real
//! ZooKeeper servers with a TLS port and SASL users: registration and
//! reads work, members are creator-owned and world-readable by default,
//! and every misconfiguration is one line on stderr within seconds.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serversets_core::zookeeper_client as zk;
use support::{assert_fails, command, Output};
use testkit::{ClientAuth, TestPki, Validity, ZkCluster};

/// Every failure below must come well before the 20 s connect timeout.
const FAST: Duration = Duration::from_secs(8);

fn tls_cluster(pki: &TestPki, server_cert: Validity) -> ZkCluster {
    ZkCluster::with_tls(pki, ClientAuth::Need, server_cert).expect("TLS ZooKeeper")
}

fn sasl_cluster() -> ZkCluster {
    ZkCluster::with_sasl_user("app", "s3cret").expect("SASL ZooKeeper")
}

fn path(p: std::path::PathBuf) -> String {
    p.display().to_string()
}

/// `--zk SERVERS --connect-timeout 20s` plus `rest`.
fn argv(zk: &str, rest: &[&str]) -> Vec<String> {
    [
        "--zk",
        zk,
        "--connect-timeout",
        "20s",
        "--session-timeout",
        "4s",
    ]
    .iter()
    .chain(rest)
    .map(|s| s.to_string())
    .collect()
}

fn mtls(pki: &TestPki) -> Vec<String> {
    vec![
        "--tls-ca".into(),
        path(pki.ca_pem()),
        "--tls-cert".into(),
        path(pki.client_cert()),
        "--tls-key".into(),
        path(pki.client_key()),
    ]
}

/// Runs the binary to completion with extra environment variables.
async fn run_env(args: &[String], env: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("serversets finishes")
        .expect("serversets runs");
    let took = started.elapsed();
    (
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        took,
    )
}

/// Starts `serversets register` in the background.
fn spawn_env(args: &[String], env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn serversets register")
}

/// Polls ZooKeeper (plain port, no credentials) until `set` has a member,
/// and returns its path.
async fn member_of(client: &zk::Client, set: &str) -> String {
    let found = std::sync::Mutex::new(None);
    testkit::eventually(
        Duration::from_secs(30),
        &format!("a member in {set}"),
        || async {
            let children = client.list_children(set).await.unwrap_or_default();
            let member = children.into_iter().find(|c| c.starts_with("member_"));
            let done = member.is_some();
            *found.lock().unwrap() = member;
            done
        },
    )
    .await;
    let member = found.into_inner().unwrap().expect("found");
    format!("{set}/{member}")
}

/// The member is world-readable and owned by an authenticated identity.
async fn assert_creator_read(client: &zk::Client, member: &str, scheme: &str) {
    let (acls, _) = client.get_acl(member).await.expect("acl");
    assert!(
        acls.iter()
            .any(|a| a.scheme() == scheme && a.permission() == zk::Permission::ALL),
        "{acls:?}"
    );
    assert!(
        acls.iter()
            .any(|a| a.scheme() == "world" && a.permission() == zk::Permission::READ),
        "{acls:?}"
    );
    assert_eq!(client.delete(member, None).await, Err(zk::Error::NoAuth));
}

async fn stop(mut child: tokio::process::Child) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("register exits on SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_dump_over_mutual_tls() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, Validity::Valid);
    let secure = zk.secure_connect_string().expect("TLS port");
    let mut register = argv(&secure, &[]);
    register.extend(mtls(&pki));
    register.extend(
        [
            "register",
            "--path",
            "/tls/users",
            "--host",
            "10.0.0.5",
            "--port",
            "8080",
        ]
        .map(String::from),
    );
    let child = spawn_env(&register, &[]);

    let plain = testkit::znodes::connect(&zk.connect_string())
        .await
        .expect("plain client");
    let member = member_of(&plain, "/tls/users").await;
    assert_creator_read(&plain, &member, "x509").await;

    let mut dump = argv(&secure, &[]);
    dump.extend(mtls(&pki));
    dump.extend(["dump", "--path", "/tls/users"].map(String::from));
    let (out, _) = run_env(&dump, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("10.0.0.5:8080"), "{}", out.stdout);
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_dump_with_sasl() {
    let zk = sasl_cluster();
    let env = [("SERVERSETS_ZK_SASL_PASSWORD", "s3cret")];
    let register = argv(
        &zk.connect_string(),
        &[
            "--sasl-user",
            "app",
            "register",
            "--path",
            "/sasl/users",
            "--host",
            "10.0.0.6",
            "--port",
            "8080",
        ],
    );
    let child = spawn_env(&register, &env);
    let plain = testkit::znodes::connect(&zk.connect_string())
        .await
        .expect("plain client");
    let member = member_of(&plain, "/sasl/users").await;
    assert_creator_read(&plain, &member, "sasl").await;

    let dump = argv(
        &zk.connect_string(),
        &["--sasl-user", "app", "dump", "--path", "/sasl/users"],
    );
    let (out, _) = run_env(&dump, &env).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("10.0.0.6:8080"), "{}", out.stdout);
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_misconfigurations_are_one_line_each_and_fast() {
    let pki = TestPki::generate().expect("pki");
    let zk = tls_cluster(&pki, Validity::Valid);
    let expired = tls_cluster(&pki, Validity::Expired);
    let secure = zk.secure_connect_string().expect("TLS port");
    let ca = path(pki.ca_pem());
    let other_ca = path(pki.other_ca_pem());
    let (cert, key) = (path(pki.client_cert()), path(pki.client_key()));
    let expired_secure = expired.secure_connect_string().expect("TLS port");
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (
            argv(
                &secure,
                &[
                    "--tls-ca",
                    &other_ca,
                    "--tls-cert",
                    &cert,
                    "--tls-key",
                    &key,
                    "ls",
                ],
            ),
            &[
                "TLS connection to ZooKeeper at 127.0.0.1:",
                "not signed by the configured CA",
            ],
        ),
        (
            argv(
                &expired_secure,
                &[
                    "--tls-ca",
                    &ca,
                    "--tls-cert",
                    &cert,
                    "--tls-key",
                    &key,
                    "watch",
                    "--path",
                    "/x",
                ],
            ),
            &["certificate has expired"],
        ),
        (
            argv(&secure, &["--tls-ca", &ca, "watch", "--path", "/x"]),
            &["requires a client certificate (mutual TLS)"],
        ),
        (
            argv(&secure, &["ls"]),
            &["answers with TLS: the server may require TLS"],
        ),
    ];
    for (args, wants) in cases {
        let (out, took) = run_env(&args, &[]).await;
        assert_fails(&out, 1, wants);
        assert!(out.stderr.starts_with("serversets: "), "{}", out.stderr);
        assert!(took < FAST, "{args:?} took {took:?}");
    }
    // `register` logs what it registers on stdout first; the error is
    // still one line on stderr.
    let register = argv(
        &secure,
        &[
            "register", "--path", "/x", "--host", "10.0.0.1", "--port", "1",
        ],
    );
    let (out, took) = run_env(&register, &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("the server may require TLS"),
        "{}",
        out.stderr
    );
    assert!(took < FAST, "register took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sasl_password_is_one_line_and_fast() {
    let zk = sasl_cluster();
    for args in [
        argv(
            &zk.connect_string(),
            &["--sasl-user", "app", "watch", "--path", "/x"],
        ),
        argv(&zk.connect_string(), &["--sasl-user", "app", "ls"]),
    ] {
        let (out, took) = run_env(&args, &[("SERVERSETS_ZK_SASL_PASSWORD", "guess")]).await;
        assert_fails(
            &out,
            1,
            &["refused the SASL login of \"app\": wrong user or password"],
        );
        assert!(took < FAST, "{args:?} took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_security_options_are_usage_errors() {
    let pki = TestPki::generate().expect("pki");
    let (ca, cert) = (path(pki.ca_pem()), path(pki.client_cert()));
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (
            argv("127.0.0.1:1", &["--sasl-user", "app", "ls"]),
            &["SERVERSETS_ZK_SASL_PASSWORD"],
        ),
        (
            argv("127.0.0.1:1", &["--tls-ca", &ca, "--tls-cert", &cert, "ls"]),
            &["--tls-key"],
        ),
        (
            argv("127.0.0.1:1", &["--tls-ca", "/nonexistent/ca.pem", "ls"]),
            &["/nonexistent/ca.pem"],
        ),
        (
            argv(
                "127.0.0.1:1",
                &["--tls-ca", &cert, "--tls-cert", &ca, "--tls-key", &ca, "ls"],
            ),
            &["no private key"],
        ),
    ];
    for (args, wants) in cases {
        let (out, _) = run_env(&args, &[]).await;
        assert_fails(&out, 2, wants);
    }
}

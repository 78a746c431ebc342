//! Every kind of bad input: one clear line on stderr, nothing on stdout,
//! exit code 2 for usage errors and 1 for an unreachable ZooKeeper.

mod support;

use support::*;

/// A loopback port nothing listens on.
fn dead_zk() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_zookeeper_names_the_servers_after_the_connect_timeout() {
    let zk = format!("{},{}", dead_zk(), dead_zk());
    let servers = zk.clone();
    let set = ["--env", "test", "--service", "x"];
    let cases: Vec<Vec<&str>> = vec![
        vec!["watch", "--once"],
        vec!["register", "--host", "127.0.0.1", "--port", "1"],
        vec!["dump"],
        vec!["ls"],
        vec!["locate", "k"],
        vec!["weights"],
        vec!["drain", "10.0.0.1:80"],
    ];
    // The cases run at once: each waits out its own connect timeout.
    let runs: Vec<_> = cases
        .into_iter()
        .map(|case| {
            let zk = zk.clone();
            tokio::spawn(async move {
                let mut argv = vec!["--zk", zk.as_str(), "--connect-timeout", "1s"];
                argv.extend(set);
                argv.extend(&case);
                let start = std::time::Instant::now();
                let out = run(&argv).await;
                (case, out, start.elapsed())
            })
        })
        .collect();
    for handle in runs {
        let (case, out, elapsed) = handle.await.unwrap();
        let want = format!("could not connect to ZooKeeper at {servers} within 1s");
        if case[0] == "register" {
            // register prints its plan before connecting.
            assert_eq!(out.code, Some(1), "{case:?}: {}", out.stderr);
            assert_eq!(out.stderr.lines().count(), 1, "{case:?}: {}", out.stderr);
            assert!(out.stderr.contains(&want), "{}", out.stderr);
        } else {
            assert_fails(&out, 1, &[&want]);
        }
        // Each server is probed to say why.
        assert!(
            out.stderr.matches("Connection refused").count() == 2,
            "{}",
            out.stderr
        );
        // Bounded: the timeout is honoured (with room for process start-up).
        assert!(
            elapsed < std::time::Duration::from_secs(10),
            "{case:?} took {elapsed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_zookeeper_is_told_apart_from_a_closed_port() {
    // The kernel completes TCP handshakes into the backlog; nothing answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let zk = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let out = run(&[
        "--zk",
        &zk,
        "--connect-timeout",
        "1s",
        "--path",
        "/a",
        "watch",
        "--once",
    ])
    .await;
    assert_fails(
        &out,
        1,
        &[
            &format!("could not connect to ZooKeeper at {zk} within 1s"),
            "(every server accepts TCP connections)",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_with_one_line() {
    let cases: &[(&[&str], &[&str])] = &[
        // ZooKeeper servers and ports.
        (
            &["--zk", "127.0.0.1:0", "dump", "--path", "/a"],
            &["--zk", "invalid port", "127.0.0.1:0"],
        ),
        (&["--zk", "zk1:21x81", "watch"], &["--zk", "invalid port"]),
        (&["--zk", ":2181", "watch"], &["--zk", "empty host"]),
        (&["--zk", "zk1:2181/rel//x", "watch"], &["invalid chroot"]),
        (
            &["watch", "--path", "/a"],
            &["no ZooKeeper servers given", "SERVERSETS_ZK"],
        ),
        // Registered hosts and ports.
        (
            &["register", "--host", "h", "--port", "70000"],
            &["--port", "70000"],
        ),
        (
            &["register", "--host", "h", "--port", "0"],
            &["--port", "0"],
        ),
        (
            &["register", "--host", "a b", "--port", "1"],
            &["invalid host"],
        ),
        (
            &[
                "register",
                "--host",
                "h",
                "--port",
                "1",
                "--additional",
                "http=h:x",
            ],
            &["--additional", "invalid port"],
        ),
        (
            &[
                "register",
                "--host",
                "h",
                "--port",
                "1",
                "--check-tcp",
                "--check-cmd",
                "true",
            ],
            &["--check-cmd", "cannot be used with"],
        ),
        (
            &[
                "register",
                "--host",
                "h",
                "--port",
                "1",
                "--check-http",
                "https://h/",
            ],
            &["only http://"],
        ),
        (&["register", "--port", "1"], &["--host"]),
        (
            &[
                "register",
                "--host",
                "h",
                "--port",
                "1",
                "--check-interval",
                "0s",
            ],
            &["invalid duration"],
        ),
        // Rings and nodes.
        (
            &["locate", "k", "--ring", "jump", "--node", "h:1"],
            &["'jump'", "ketama", "go-mcset"],
        ),
        (&["locate", "k", "--node", "h"], &["--node", "has no port"]),
        (
            &["locate", "k", "--node", "h:11211=-1"],
            &["--node", "invalid weight"],
        ),
        (
            &["locate", "k", "--ring", "go-mcset", "--node", "h:11211=2"],
            &["go-mcset ring does not support weights"],
        ),
        // Paths.
        (
            &["--zk", "127.0.0.1:2181", "--path", "discovery/x", "dump"],
            &["discovery/x", "must be absolute"],
        ),
        (
            &["--zk", "127.0.0.1:2181", "ls", "discovery"],
            &["must be absolute"],
        ),
        (
            &["--zk", "127.0.0.1:2181", "--path", "/a//b", "watch"],
            &["empty"],
        ),
        // Set names.
        (
            &["--zk", "127.0.0.1:2181", "--env", "prod", "watch"],
            &["--env needs --service"],
        ),
        (
            &["--zk", "127.0.0.1:2181", "--service", "x", "watch"],
            &["--service needs --env"],
        ),
        (
            &[
                "--zk",
                "127.0.0.1:2181",
                "--env",
                "prod",
                "--service",
                "x",
                "--path",
                "/a",
                "watch",
            ],
            &["not both"],
        ),
        (
            &[
                "--zk",
                "127.0.0.1:2181",
                "--env",
                "prod",
                "--service",
                "a/b",
                "watch",
            ],
            &["invalid service name"],
        ),
        (
            &["--zk", "127.0.0.1:2181", "watch"],
            &["no server set given"],
        ),
        // Other.
        (
            &[
                "--zk",
                "127.0.0.1:2181",
                "--path",
                "/a",
                "register",
                "--host",
                "h",
                "--port",
                "1",
                "--acl",
                "creator",
            ],
            &["--digest"],
        ),
        // Weights.
        (
            &["weight", "--select", "colo=east", "--weight", "2"],
            &["--select", "unknown selector \"colo\"", "inet=HOST:PORT"],
        ),
        (
            &["weight", "--select", "inet=10.0.0.1", "--weight", "2"],
            &["--select", "has no port"],
        ),
        (
            &["weight", "--select", "shard=x", "--weight", "2"],
            &["--select", "shard \"x\" is not a number"],
        ),
        (
            &["weight", "--select", "member=7", "--weight", "2"],
            &["--select", "not a member znode name"],
        ),
        (
            &["weight", "--select", "shard=1", "--weight", "-2"],
            &["--weight", "neither a weight (0 or more) nor -1 (drain)"],
        ),
        (
            &["weight", "--select", "shard=1", "--weight", "NaN"],
            &["--weight", "neither a weight"],
        ),
        (
            &["weight", "--select", "shard=1", "--weight", "two"],
            &["--weight", "is not a number"],
        ),
        (&["weight", "--select", "shard=1"], &["--weight", "--clear"]),
        (
            &["weight", "--select", "shard=1", "--weight", "2", "--clear"],
            &["cannot be used with"],
        ),
        (&["weight", "--weight", "2"], &["--select"]),
        (&["drain", "10.0.0.1"], &["has no port"]),
        (&["undrain", "10.0.0.1:0"], &["invalid port"]),
        (&["drain"], &["HOST:PORT"]),
        (
            &[
                "--zk",
                "127.0.0.1:2181",
                "--path",
                "/a",
                "drain",
                "10.0.0.1:80",
                "--acl",
                "creator-read",
            ],
            &["--digest"],
        ),
        (
            &["--zk", "127.0.0.1:2181", "weights", "--env", "prod"],
            &["--env needs --service"],
        ),
        (&["completions", "tcsh"], &["'tcsh'"]),
        (&["frobnicate"], &["'frobnicate'"]),
    ];
    for (argv, wants) in cases {
        let out = run(argv).await;
        assert_fails(&out, 2, wants);
        assert!(
            out.stderr.starts_with("serversets: "),
            "{argv:?}: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_comes_from_the_environment_too() {
    let mut cmd = command(&["watch", "--path", "/a"]);
    cmd.env("SERVERSETS_ZK", "h:0");
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid port"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_has_examples_and_completions_are_generated() {
    for sub in [
        "watch",
        "register",
        "ls",
        "dump",
        "locate",
        "weight",
        "drain",
        "undrain",
        "weights",
        "completions",
    ] {
        let out = run(&[sub, "--help"]).await;
        assert_eq!(out.code, Some(0));
        assert!(
            out.stdout.contains("Examples:\n  serversets "),
            "{sub}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("--zk <SERVERS>"),
            "{sub}: global options are listed"
        );
    }
    let out = run(&["--help"]).await;
    assert!(out.stdout.contains("Exit codes:"), "{}", out.stdout);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]).await;
        assert_eq!(out.code, Some(0), "{shell}: {}", out.stderr);
        assert!(
            out.stdout.contains("serversets") && out.stdout.contains("locate"),
            "{shell}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_zk_chroots_and_durations_are_usage_errors() {
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &[
                "--zk",
                "127.0.0.1:2181/app,127.0.0.1:2182",
                "dump",
                "--path",
                "/x",
            ],
            &["--zk", "can only follow the last server"],
        ),
        (
            &[
                "--zk",
                "127.0.0.1:2181",
                "--connect-timeout",
                "0.5ms",
                "dump",
                "--path",
                "/x",
            ],
            &["--connect-timeout", "at least 1ms"],
        ),
        (
            &[
                "--zk",
                "127.0.0.1:2181",
                "register",
                "--path",
                "/x",
                "--host",
                "h",
                "--port",
                "1",
                "--check-tcp",
                "--check-interval",
                "5ms",
            ],
            &["--check-interval", "at least 10ms"],
        ),
    ];
    for (args, wants) in cases {
        let out = run(args).await;
        assert_fails(&out, 2, wants);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_stdin_keys_are_named_as_such() {
    use tokio::io::AsyncWriteExt;
    let mut cmd = command(&["locate", "-", "--node", "10.0.0.1:11211"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn serversets");
    let mut stdin = child.stdin.take().unwrap();
    // The second line is not UTF-8, so it cannot be a key.
    stdin.write_all(b"ok\n\xff\xfe\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("serversets: cannot read keys from stdin: "),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\t10.0.0.1:11211\n");
}

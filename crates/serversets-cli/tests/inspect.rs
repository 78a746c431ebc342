//! `dump`, `ls` and `locate` against a real ZooKeeper (and `locate` over
//! `--node` lists, checked against the public ring vectors).

mod support;

use serde_json::Value;
use serversets_core::zookeeper_client as zk;
use support::*;

const GOOD: &str = r#"{"serviceEndpoint":{"host":"10.0.0.1","port":8080},"additionalEndpoints":{"http":{"host":"10.0.0.1","port":8081}},"status":"ALIVE","shard":0}"#;
const NO_PORT: &str =
    r#"{"serviceEndpoint":{"host":"10.0.0.2"},"additionalEndpoints":{},"status":"ALIVE"}"#;
const STOPPING: &str = r#"{"serviceEndpoint":{"host":"10.0.0.3","port":8080},"status":"STOPPING"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_explains_every_child() {
    let client = raw().await;
    let set = "/discovery/test/dump";
    let good = put_member(&client, set, GOOD).await;
    let bad = put_member(&client, set, NO_PORT).await;
    let binary = put(
        &client,
        &format!("{set}/member_"),
        b"\x0b\x00\x01\xff",
        zk::CreateMode::PersistentSequential,
    )
    .await;
    let stopping = put_member(&client, set, STOPPING).await;
    put(
        &client,
        &format!("{set}/lock"),
        b"",
        zk::CreateMode::Persistent,
    )
    .await;
    let name = |p: &str| p.rsplit('/').next().unwrap().to_string();

    let out = run_on_zk(&["dump", "--env", "test", "--service", "dump"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout;
    let line_of = |n: &str| {
        text.lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} in {text}"))
            .to_string()
    };
    assert!(
        text.starts_with(&format!(
            "{set}: 5 children: 1 member, 1 not served, 2 malformed, 1 ignored\n"
        )),
        "{text}"
    );
    let l = line_of(&name(&good));
    assert!(
        l.contains("  member  ") && l.contains("10.0.0.1:8080  ALIVE  shard=0"),
        "{l}"
    );
    let l = line_of(&name(&bad));
    assert!(
        l.contains("  malformed  ") && l.contains("invalid serviceEndpoint: missing port"),
        "{l}"
    );
    let l = line_of(&name(&binary));
    assert!(
        l.contains("  malformed  ") && l.contains("not UTF-8"),
        "{l}"
    );
    let l = line_of(&name(&stopping));
    assert!(
        l.contains("  not served  status STOPPING: 10.0.0.3:8080"),
        "{l}"
    );
    let l = line_of("lock");
    assert!(
        l.contains("  ignored  ") && l.contains("not a member_ node"),
        "{l}"
    );
    // Raw data is shown, escaped where it is not printable.
    assert!(text.contains(&format!("data: {NO_PORT}")), "{text}");
    assert!(text.contains("data: \\u{b}\\u{0}\\u{1}\\xff"), "{text}");
    assert!(
        text.contains("persistent znode: it stays when its writer dies"),
        "{text}"
    );
    assert!(text.contains("data: (empty)"), "{text}");

    // Judged as a watch of the "admin" endpoint, the good member is not served.
    let out = run_on_zk(&["dump", "--path", set, "--endpoint", "admin", "--json"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rows: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 5);
    let row = rows
        .iter()
        .find(|r| r["name"] == name(&good).as_str())
        .unwrap();
    assert_eq!(row["verdict"], "not served");
    assert_eq!(row["reason"], "no additional endpoint named \"admin\"");
    assert_eq!(row["member"]["additional_endpoints"]["http"]["port"], 8081);
    assert!(row["ephemeral_owner"].as_str().unwrap().starts_with("0x"));
    let row = rows
        .iter()
        .find(|r| r["name"] == name(&bad).as_str())
        .unwrap();
    assert_eq!(row["verdict"], "malformed");
    assert!(row["member"].is_null());
    assert_eq!(row["data"], NO_PORT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_of_a_missing_set_says_so() {
    let out = run_on_zk(&["dump", "--path", "/discovery/test/nothing-here"]).await;
    assert_fails(&out, 1, &["/discovery/test/nothing-here does not exist"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_draws_the_tree_with_member_counts() {
    let client = raw().await;
    put_member(&client, "/ls-test/prod/users", GOOD).await;
    put_member(&client, "/ls-test/prod/users", GOOD).await;
    put(
        &client,
        "/ls-test/prod/empty",
        b"",
        zk::CreateMode::Persistent,
    )
    .await;
    put_member(&client, "/ls-test/staging/web", GOOD).await;
    put(
        &client,
        "/ls-test/staging/web/vector_0000000000",
        b"{}",
        zk::CreateMode::Persistent,
    )
    .await;

    let out = run_on_zk(&["ls", "/ls-test"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "/ls-test\n\
         ├── prod\n\
         │   ├── empty  0 members\n\
         │   └── users  2 members\n\
         └── staging\n\
         \x20   └── web  1 member, 1 other child\n\
         3 server sets, 3 members\n"
    );

    let out = run_on_zk(&["ls", "/ls-test/nope"]).await;
    assert_fails(&out, 1, &["no such path: /ls-test/nope"]);
}

/// Parses `key node` lines of a vector file (comments start with `#`).
fn vectors(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split(' ').collect();
            (cols[0].to_string(), cols[cols.len() - 1].to_string())
        })
        .collect()
}

fn expect_locations(stdout: &str, want: &[(String, String)]) {
    let got = locations(stdout);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_go_mcset_over_nodes_matches_the_go_vectors() {
    let want = vectors(testkit::vectors::GO_3_NODES);
    assert_eq!(want.len(), 200);
    let mut argv = vec!["locate", "--ring", "go-mcset"];
    for n in ["10.0.0.3:11211", "10.0.0.1:11211", "10.0.0.2:11211"] {
        argv.extend(["--node", n]);
    }
    argv.push("--");
    argv.extend(want.iter().map(|(k, _)| k.as_str()));
    let out = run(&argv).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    expect_locations(&out.stdout, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_ketama_over_weighted_nodes_matches_the_finagle_vectors() {
    let text = testkit::vectors::FINAGLE_KETAMA;
    // The weighted node list is in the header comment.
    let nodes: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("#   "))
        .flat_map(|l| l[1..].split_whitespace().map(str::to_string))
        .collect();
    assert_eq!(nodes.len(), 8, "{nodes:?}");
    // Vectors name nodes by identifier (host, port 11211).
    let want: Vec<(String, String)> = vectors(text)
        .into_iter()
        .map(|(k, id)| (k, format!("{id}:11211")))
        .collect();
    // Keys through stdin this time.
    let stdout = locate_from_stdin(&[], &nodes, want.iter().map(|(k, _)| k.as_str())).await;
    expect_locations(&stdout, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_over_a_watched_set_agrees_with_the_same_node_list() {
    let client = raw().await;
    let set = "/discovery/test/locate";
    for host in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        let json = format!(
            r#"{{"serviceEndpoint":{{"host":"{host}","port":11211}},"additionalEndpoints":{{}},"status":"ALIVE"}}"#
        );
        put_member(&client, set, &json).await;
    }
    let keys = [
        "user:1",
        "user:2",
        "session:abc",
        "x",
        "y",
        "z",
        "another key",
    ];
    let zk = zk_args();
    for ring in ["ketama", "go-mcset"] {
        let mut watched = args(&zk, &["locate", "--path", set, "--ring", ring, "--"]);
        watched.extend(keys);
        let from_zk = run(&watched).await;
        assert_eq!(from_zk.code, Some(0), "{}", from_zk.stderr);

        let mut listed = vec![
            "locate",
            "--ring",
            ring,
            "--node",
            "10.0.0.1:11211",
            "--node",
            "10.0.0.2:11211",
            "--node",
            "10.0.0.3:11211",
            "--",
        ];
        listed.extend(keys);
        let from_list = run(&listed).await;
        assert_eq!(from_list.code, Some(0), "{}", from_list.stderr);
        assert_eq!(from_zk.stdout, from_list.stdout, "{ring}");
        assert_eq!(from_zk.stdout.lines().count(), keys.len());
        assert!(
            from_zk.stdout.starts_with("user:1\t10.0.0."),
            "{}",
            from_zk.stdout
        );
    }

    // An empty set cannot place keys.
    let out = run_on_zk(&["locate", "--path", "/discovery/test/locate-empty", "k"]).await;
    assert_fails(&out, 1, &["has no members"]);
}

//! `weight`, `drain`, `undrain` and `weights` against a real ZooKeeper:
//! round trips, the exact bytes we write (read back with a plain
//! zookeeper-client, as Finagle would read them), vectors written by a
//! foreign client, the one-znode-per-selector replace and what a concurrent
//! change does to it. Also `watch` and `dump` showing weights.

mod support;

use serde_json::Value;
use serversets_cli::steer::{Change, Plan};
use serversets_core::vector::Selector;
use serversets_core::zookeeper_client as zk;
use support::*;

const A: &str = r#"{"serviceEndpoint":{"host":"10.0.1.1","port":8080},"additionalEndpoints":{"http":{"host":"10.0.1.1","port":8081}},"status":"ALIVE","shard":0}"#;
const B: &str = r#"{"serviceEndpoint":{"host":"10.0.1.2","port":8080},"additionalEndpoints":{},"status":"ALIVE","shard":1}"#;

fn name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// A set with members A and B (ephemeral, as Finagle writes them); returns
/// their znode names.
async fn set_with_two(client: &zk::Client, set: &str) -> (String, String) {
    let a = put_member(client, set, A).await;
    let b = put_member(client, set, B).await;
    (name(&a), name(&b))
}

/// Every `vector_` child of `set`: (name, data, stat), sorted, after a sync.
async fn vectors_in_zk(client: &zk::Client, set: &str) -> Vec<(String, Vec<u8>, zk::Stat)> {
    client.sync(set).await.expect("sync");
    let mut names = client.list_children(set).await.expect("list");
    names.retain(|n| n.starts_with("vector_"));
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let (data, stat) = client
            .get_data(&format!("{set}/{n}"))
            .await
            .expect("read vector");
        out.push((n, data, stat));
    }
    out
}

/// The vector znodes whose data is exactly `data`.
async fn nodes_with(client: &zk::Client, set: &str, data: &str) -> Vec<String> {
    vectors_in_zk(client, set)
        .await
        .into_iter()
        .filter(|(_, d, _)| d == data.as_bytes())
        .map(|(n, _, _)| n)
        .collect()
}

/// The vector znodes holding one descriptor with `select`.
async fn nodes_for(client: &zk::Client, set: &str, select: &str) -> Vec<String> {
    vectors_in_zk(client, set)
        .await
        .into_iter()
        .filter(|(_, d, _)| {
            serde_json::from_slice::<Value>(d)
                .ok()
                .and_then(|v| v["vector"].as_array().cloned())
                .is_some_and(|a| a.len() == 1 && a[0]["select"] == select)
        })
        .map(|(n, _, _)| n)
        .collect()
}

/// `watch --once --json` as member name -> weight.
async fn watched_weights(set: &str) -> Vec<(String, f64)> {
    let out = run_on_zk(&["--path", set, "watch", "--once", "--json"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON line");
    let mut members: Vec<(String, f64)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["member"].as_str().unwrap().to_string(),
                m["weight"].as_f64().expect("a weight on every member"),
            )
        })
        .collect();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members
}

/// `weight --select SELECT --weight W` on the set at `set`.
async fn weigh(set: &str, select: &str, w: &str) -> Output {
    run_on_zk(&["--path", set, "weight", "--select", select, "--weight", w]).await
}

fn ok(out: &Output) -> &str {
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    &out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_drain_undrain_and_weights_round_trip() {
    let client = raw().await;
    let set = "/discovery/test/w-round";
    let (a, b) = set_with_two(&client, set).await;
    // Runs a command on this set, named by --env/--service.
    let exec = |rest: &[&'static str]| {
        let argv = [&["--env", "test", "--service", "w-round"], rest].concat();
        async move { run_on_zk(&argv).await }
    };
    let weigh_a =
        |w: &'static str| exec(&["weight", "--select", "inet=10.0.1.1:8080", "--weight", w]);

    // A weight: one znode, in Finagle's form, and the member weighs it.
    let out = weigh_a("2").await;
    let text = ok(&out);
    let two = r#"{"vector":[{"select":"inet=10.0.1.1:8080","weight":2.0,"priority":1}]}"#;
    let first = nodes_with(&client, set, two).await;
    assert_eq!(first.len(), 1, "{text}");
    assert_eq!(
        text,
        format!(
            "created {} {two}\n{a}  10.0.1.1:8080  weight=2.0\n",
            first[0]
        )
    );
    assert_eq!(
        watched_weights(set).await,
        vec![(a.clone(), 2.0), (b.clone(), 1.0)]
    );

    // A new weight for the same selector replaces that znode.
    let out = weigh_a("0.5").await;
    let text = ok(&out);
    assert!(
        text.contains(&format!(
            "deleted {} (it gave inet=10.0.1.1:8080 weight=2.0)",
            first[0]
        )),
        "{text}"
    );
    let now = nodes_for(&client, set, "inet=10.0.1.1:8080").await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, first);
    assert_eq!(
        watched_weights(set).await,
        vec![(a.clone(), 0.5), (b.clone(), 1.0)]
    );

    // The same weight again writes nothing.
    let out = weigh_a("0.5").await;
    assert!(ok(&out).starts_with(&format!(
        "{} already gives inet=10.0.1.1:8080 weight=0.5; nothing written\n",
        now[0]
    )));
    assert_eq!(nodes_for(&client, set, "inet=10.0.1.1:8080").await, now);

    // Drain: B leaves every watch, stays registered.
    let out = exec(&["drain", "10.0.1.2:8080"]).await;
    let text = ok(&out);
    assert!(
        text.ends_with(&format!("{b}  10.0.1.2:8080  drained\n")),
        "{text}"
    );
    let drain = r#"{"vector":[{"select":"inet=10.0.1.2:8080","weight":-1.0,"priority":1}]}"#;
    assert_eq!(nodes_with(&client, set, drain).await.len(), 1);
    assert_eq!(watched_weights(set).await, vec![(a.clone(), 0.5)]);
    assert_eq!(
        members_in_zk(&client, set).await.len(),
        2,
        "drained, not deregistered"
    );
    // Draining again changes nothing.
    let out = exec(&["drain", "10.0.1.2:8080"]).await;
    assert!(ok(&out).contains("nothing written"));

    // `weights` lists the znodes and every member's weight.
    let out = exec(&["weights"]).await;
    let text = ok(&out);
    assert!(
        text.starts_with(&format!("{set}: 2 vector znodes, 2 members (1 drained)\n")),
        "{text}"
    );
    assert!(text.contains("  inet=10.0.1.1:8080 weight=0.5\n"), "{text}");
    assert!(
        text.contains("  inet=10.0.1.2:8080 weight=-1.0\n"),
        "{text}"
    );
    let line_a = text.lines().find(|l| l.starts_with(&a)).unwrap_or_default();
    assert!(
        line_a.contains("weight=0.5  from vector_")
            && line_a.ends_with("inet=10.0.1.1:8080 weight=0.5"),
        "{text}"
    );
    let line_b = text.lines().find(|l| l.starts_with(&b)).unwrap_or_default();
    assert!(
        line_b.contains("  drained  ") && line_b.contains("inet=10.0.1.2:8080 weight=-1.0"),
        "{text}"
    );
    let out = exec(&["weights", "--json"]).await;
    let v: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(v["path"], set);
    assert_eq!(v["vectors"].as_array().map(Vec::len), Some(2));
    let member = |n: &str| {
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["member"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(member(&a)["weight"], 0.5);
    assert_eq!(member(&a)["drained"], false);
    assert_eq!(member(&a)["served"], true);
    assert_eq!(member(&b)["weight"], -1.0);
    assert_eq!(member(&b)["drained"], true);
    assert_eq!(member(&b)["served"], false);
    assert_eq!(member(&b)["from"][0]["select"], "inet=10.0.1.2:8080");

    // Undrain removes the drain znode, and only it.
    let out = exec(&["undrain", "10.0.1.2:8080"]).await;
    let text = ok(&out);
    assert!(
        text.starts_with("deleted vector_")
            && text.ends_with(&format!("{b}  10.0.1.2:8080  weight=1.0\n")),
        "{text}"
    );
    assert!(nodes_with(&client, set, drain).await.is_empty());
    assert_eq!(
        watched_weights(set).await,
        vec![(a.clone(), 0.5), (b.clone(), 1.0)]
    );
    let out = exec(&["undrain", "10.0.1.2:8080"]).await;
    assert!(ok(&out)
        .starts_with("no vector znode drains inet=10.0.1.2:8080 on its own; nothing to remove\n"));

    // --clear removes a weight.
    let out = exec(&["weight", "--select", "inet=10.0.1.1:8080", "--clear"]).await;
    assert!(ok(&out).contains("weight=1.0"));
    assert!(vectors_in_zk(&client, set).await.is_empty());
    assert_eq!(watched_weights(set).await, vec![(a, 1.0), (b, 1.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_we_write_is_finagles_exact_form_byte_for_byte() {
    let client = raw().await;
    let set = "/discovery/test/w-bytes";
    let (a, _) = set_with_two(&client, set).await;
    let zk = zk_args();
    let member_sel = format!("member={a}");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["weight", "--select", "inet=10.0.1.1:8080", "--weight", "3"],
            r#"{"vector":[{"select":"inet=10.0.1.1:8080","weight":3.0,"priority":1}]}"#.into(),
        ),
        (
            vec!["weight", "--select", "shard=-3", "--weight", "0.25"],
            r#"{"vector":[{"select":"shard=-3","weight":0.25,"priority":1}]}"#.into(),
        ),
        (
            vec!["weight", "--select", &member_sel, "--weight", "1.5"],
            format!(r#"{{"vector":[{{"select":"member={a}","weight":1.5,"priority":1}}]}}"#),
        ),
        (
            vec!["weight", "--select", "shard=1", "--weight", "0"],
            r#"{"vector":[{"select":"shard=1","weight":0.0,"priority":1}]}"#.into(),
        ),
        (
            vec!["drain", "10.0.1.2:8080"],
            r#"{"vector":[{"select":"inet=10.0.1.2:8080","weight":-1.0,"priority":1}]}"#.into(),
        ),
    ];
    for (argv, want) in &cases {
        let mut full = args(&zk, &["--path", set]);
        full.extend(argv.iter().copied());
        let out = run(&full).await;
        ok(&out);
        let found = nodes_with(&client, set, want).await;
        assert_eq!(
            found.len(),
            1,
            "{argv:?} should write exactly {want}; got {:?}",
            vectors_in_zk(&client, set).await
        );
    }
    let nodes = vectors_in_zk(&client, set).await;
    assert_eq!(nodes.len(), cases.len());
    let (acls, _) = client
        .get_acl(&format!("{set}/{}", nodes[0].0))
        .await
        .unwrap();
    assert_eq!(
        acls,
        zk::Acls::anyone_all().to_vec(),
        "the open ACL, as members"
    );
    for (n, data, stat) in &nodes {
        // vector_ plus ZooKeeper's ten-digit sequence; persistent; compact
        // JSON starting with {" (the Java codec's JSON test).
        assert!(
            n.len() == "vector_".len() + 10
                && n["vector_".len()..].bytes().all(|c| c.is_ascii_digit()),
            "{n}"
        );
        assert_eq!(stat.ephemeral_owner, 0, "{n} is persistent");
        assert!(data.starts_with(b"{\"vector\":[{\"select\":"), "{n}");
        assert!(
            !data.contains(&b' ') && !data.contains(&b'\n'),
            "{n}: compact"
        );
        // Every weight is a JSON double, as Finagle's parser needs.
        let v: Value = serde_json::from_slice(data).unwrap();
        assert!(v["vector"][0]["weight"].is_f64(), "{n}");
        assert_eq!(v["vector"][0]["priority"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_from_a_foreign_client_show_in_weights_dump_and_watch() {
    let client = raw().await;
    let set = "/discovery/test/w-foreign";
    let (a, b) = set_with_two(&client, set).await;
    // Finagle's exact form (as in its own tests), written as another client would.
    let finagle = format!(
        r#"{{"vector":[{{"select":"member={a}","weight":1.2,"priority":1}},{{"select":"inet=10.0.1.1:8080","weight":1.3,"priority":2}}]}}"#
    );
    let multi = put(
        &client,
        &format!("{set}/vector_"),
        finagle.as_bytes(),
        zk::CreateMode::PersistentSequential,
    )
    .await;
    // An integer weight: Finagle reads it as 1.0, and so do we, loudly.
    let integer = put(
        &client,
        &format!("{set}/vector_"),
        br#"{"vector":[{"select":"shard=1","weight":2}]}"#,
        zk::CreateMode::PersistentSequential,
    )
    .await;
    let invalid = put(
        &client,
        &format!("{set}/vector_"),
        b"{\"vector\":",
        zk::CreateMode::PersistentSequential,
    )
    .await;
    let (multi, integer, invalid) = (name(&multi), name(&integer), name(&invalid));

    let out = run_on_zk(&["--path", set, "weights"]).await;
    let text = ok(&out);
    assert!(
        text.starts_with(&format!(
            "{set}: 3 vector znodes (1 with notes, 1 invalid), 2 members (0 drained)\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{multi}  member={a} weight=1.2, inet=10.0.1.1:8080 weight=1.3 priority=2\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{integer}  shard=1 weight=1.0\n")),
        "{text}"
    );
    assert!(text.contains("note: descriptor 0 (shard=1): weight 2 is an integer; read as 1.0, as Finagle does (write 2.0)"), "{text}");
    assert!(
        text.contains(&format!("{invalid}  invalid vector: invalid JSON")),
        "{text}"
    );
    let line_a = text.lines().find(|l| l.starts_with(&a)).unwrap_or_default();
    assert!(line_a.contains("  weight=1.56  from "), "1.2 x 1.3: {text}");

    let out = run_on_zk(&["--path", set, "weights", "--json"]).await;
    let v: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    let wa = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == a.as_str())
        .unwrap()["weight"]
        .as_f64()
        .unwrap();
    assert!((wa - 1.56).abs() < 1e-9, "{wa}");
    let nodes = v["vectors"].as_array().unwrap();
    assert!(nodes.iter().any(|n| n["name"] == integer.as_str()
        && n["notes"][0]
            .as_str()
            .is_some_and(|s| s.contains("integer"))));
    assert!(nodes.iter().any(|n| n["name"] == invalid.as_str()
        && n["error"]
            .as_str()
            .is_some_and(|s| s.starts_with("invalid vector: "))));

    // dump flags them where operators look.
    let out = run_on_zk(&["--path", set, "dump"]).await;
    let text = ok(&out);
    assert!(text.starts_with(&format!("{set}: 5 children: 2 members, 0 not served, 1 malformed, 0 ignored, 2 vectors (1 with notes)\n")), "{text}");
    assert!(
        text.contains(&format!("{integer}  vector      shard=1 weight=1.0\n")),
        "{text}"
    );
    assert!(
        text.contains("    note: descriptor 0 (shard=1): weight 2 is an integer"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{invalid}  malformed   invalid vector: invalid JSON"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("data: {finagle}")), "{text}");
    let line_a = text.lines().find(|l| l.starts_with(&a)).unwrap_or_default();
    assert!(
        line_a.contains("10.0.1.1:8080  ALIVE  weight=1.56  shard=0"),
        "{text}"
    );
    let out = run_on_zk(&["--path", set, "dump", "--json"]).await;
    let rows: Vec<Value> = ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).cloned().unwrap();
    assert_eq!(row(&integer)["verdict"], "vector");
    assert_eq!(row(&integer)["vector"]["descriptors"][0]["weight"], 1.0);
    assert!(row(&integer)["vector"]["notes"][0]
        .as_str()
        .unwrap()
        .contains("integer"));
    assert_eq!(row(&invalid)["verdict"], "malformed");
    assert!(row(&invalid)["reason"]
        .as_str()
        .unwrap()
        .starts_with("invalid vector: "));
    assert!((row(&a)["member"]["weight"].as_f64().unwrap() - 1.56).abs() < 1e-9);
    assert_eq!(row(&b)["member"]["weight"], 1.0);
    assert!(row(&b)["vector"].is_null());

    // The watch applies them: A weighs 1.2 x 1.3, the integer weight is 1.0.
    let w = watched_weights(set).await;
    assert!(
        (w[0].1 - 1.56).abs() < 1e-9 && w[1] == (b.clone(), 1.0),
        "{w:?}"
    );

    // Our own weight for inet=10.0.1.1:8080 leaves the foreign node alone.
    let out = weigh(set, "inet=10.0.1.1:8080", "2").await;
    let text = ok(&out);
    assert!(!text.contains("deleted"), "{text}");
    assert!(text.contains(&format!("weight=3.12  (also {multi} member={a} weight=1.2, {multi} inet=10.0.1.1:8080 weight=1.3 priority=2)")), "{text}");
    assert!(vectors_in_zk(&client, set)
        .await
        .iter()
        .any(|(n, _, _)| *n == multi));
    // And draining B through shard=1 with an integer -1 does not drain (Finagle reads 1.0).
    put(
        &client,
        &format!("{set}/vector_"),
        br#"{"vector":[{"select":"shard=1","weight":-1}]}"#,
        zk::CreateMode::PersistentSequential,
    )
    .await;
    let w = watched_weights(set).await;
    assert_eq!(w.len(), 2, "{w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_replaces_every_node_of_its_selector_in_one_multi() {
    let client = raw().await;
    let set = "/discovery/test/w-replace";
    set_with_two(&client, set).await;
    // Two nodes for shard=0 (two writers raced, or hand-written), one for
    // another selector, one with several descriptors.
    let mk = |data: &'static str| {
        let client = client.clone();
        async move {
            name(
                &put(
                    &client,
                    &format!("{set}/vector_"),
                    data.as_bytes(),
                    zk::CreateMode::PersistentSequential,
                )
                .await,
            )
        }
    };
    let d1 = mk(r#"{"vector":[{"select":"shard=0","weight":2.0}]}"#).await;
    let d2 = mk(r#"{"vector":[{"select":"shard=0","weight":3,"priority":1}]}"#).await;
    let other = mk(r#"{"vector":[{"select":"shard=1","weight":2.0,"priority":1}]}"#).await;
    let multi =
        mk(r#"{"vector":[{"select":"shard=0","weight":1.1},{"select":"shard=1","weight":1.1}]}"#)
            .await;
    let out = weigh(set, "shard=0", "4").await;
    let text = ok(&out);
    assert!(
        text.contains(&format!("deleted {d1} (it gave shard=0 weight=2.0)\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("deleted {d2} (it gave shard=0 weight=1.0)\n")),
        "{text}"
    );
    let left: Vec<String> = vectors_in_zk(&client, set)
        .await
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    let mine = nodes_for(&client, set, "shard=0").await;
    assert_eq!(mine.len(), 1, "exactly one node for the selector: {left:?}");
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        left.contains(&other) && left.contains(&multi),
        "others untouched: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_change_fails_the_multi_and_writes_nothing() {
    let client = raw().await;
    let set = "/discovery/test/w-race";
    set_with_two(&client, set).await;
    let select = Selector::Inet("10.0.1.1:8080".into());
    let first = name(
        &put(
            &client,
            &format!("{set}/vector_"),
            br#"{"vector":[{"select":"inet=10.0.1.1:8080","weight":2.0,"priority":1}]}"#,
            zk::CreateMode::PersistentSequential,
        )
        .await,
    );

    // Planned against `first`; meanwhile another writer replaces it.
    let plan = Plan::read(&client, set, select.clone(), Change::Set(3.0))
        .await
        .unwrap();
    assert_eq!(plan.replaces().len(), 1);
    let out = weigh(set, "inet=10.0.1.1:8080", "5").await;
    ok(&out);
    let before = vectors_in_zk(&client, set).await;
    let err = plan
        .commit(&client, &zk::Acls::anyone_all())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{first} was deleted by another writer since it was read; nothing was written; run the command again to replace what is there now")
    );
    assert_eq!(err.exit_code(), 1);
    let after = vectors_in_zk(&client, set).await;
    assert_eq!(before.len(), after.len(), "nothing created: {after:?}");
    assert_eq!(nodes_for(&client, set, "inet=10.0.1.1:8080").await.len(), 1);

    // A node changed in place (setData, against the contract) fails the
    // version check the same way.
    let current = nodes_for(&client, set, "inet=10.0.1.1:8080").await;
    let plan = Plan::read(&client, set, select.clone(), Change::Set(3.0))
        .await
        .unwrap();
    client
        .set_data(
            &format!("{set}/{}", current[0]),
            br#"{"vector":[{"select":"inet=10.0.1.1:8080","weight":7.0,"priority":1}]}"#,
            None,
        )
        .await
        .unwrap();
    let err = plan
        .commit(&client, &zk::Acls::anyone_all())
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with(&format!("{} was changed by another writer since it was read (version 0 read); nothing was written", current[0])), "{err}");
    assert_eq!(nodes_for(&client, set, "inet=10.0.1.1:8080").await, current);

    // Two writers giving a selector its first weight at once have no node
    // to check: the commit finds the other one and says so.
    let plan = Plan::read(&client, set, Selector::Shard(7), Change::Set(2.0))
        .await
        .unwrap();
    assert!(plan.replaces().is_empty());
    let rival = name(
        &put(
            &client,
            &format!("{set}/vector_"),
            br#"{"vector":[{"select":"shard=7","weight":3.0,"priority":1}]}"#,
            zk::CreateMode::PersistentSequential,
        )
        .await,
    );
    let done = plan.commit(&client, &zk::Acls::anyone_all()).await.unwrap();
    assert_eq!(done.also, vec![rival]);
    // The next write for the selector replaces both.
    let out = weigh(set, "shard=7", "2").await;
    assert_eq!(ok(&out).matches("deleted ").count(), 2, "{}", out.stdout);
    assert_eq!(nodes_for(&client, set, "shard=7").await.len(), 1);

    // Re-read, it goes through.
    let plan = Plan::read(&client, set, select, Change::Set(3.0))
        .await
        .unwrap();
    let done = plan.commit(&client, &zk::Acls::anyone_all()).await.unwrap();
    assert_eq!(done.deleted, current);
    assert_eq!(
        nodes_for(&client, set, "inet=10.0.1.1:8080").await,
        vec![done.created.unwrap()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_weight_commands_never_leave_two_nodes() {
    let client = raw().await;
    let set = "/discovery/test/w-racers";
    set_with_two(&client, set).await;
    put(
        &client,
        &format!("{set}/vector_"),
        br#"{"vector":[{"select":"shard=0","weight":2.0,"priority":1}]}"#,
        zk::CreateMode::PersistentSequential,
    )
    .await;
    let zk = zk_args();
    let mut failures = 0;
    for round in 0..8 {
        let weights = [format!("{}.5", round + 1), format!("{}.25", round + 1)];
        let runs: Vec<_> = weights
            .iter()
            .map(|w| {
                let argv: Vec<String> = args(
                    &zk,
                    &[
                        "--path", set, "weight", "--select", "shard=0", "--weight", w,
                    ],
                )
                .into_iter()
                .map(String::from)
                .collect();
                tokio::spawn(async move {
                    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
                    run(&refs).await
                })
            })
            .collect();
        for r in runs {
            let out = r.await.unwrap();
            if out.code != Some(0) {
                failures += 1;
                assert_fails(&out, 1, &["by another writer since it was read; nothing was written; run the command again"]);
            }
        }
        let mine = nodes_for(&client, set, "shard=0").await;
        assert_eq!(
            mine.len(),
            1,
            "round {round}: {:?}",
            vectors_in_zk(&client, set).await
        );
    }
    eprintln!("{failures} of 16 racing writes lost the race and failed cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_weights_drains_and_unusable_vectors_as_they_change() {
    let client = raw().await;
    let set = "/discovery/test/w-watch";
    let (a, b) = set_with_two(&client, set).await;
    let zk = zk_args();
    let mut watch = Running::spawn(&args(&zk, &["--path", set, "watch"]));
    watch
        .expect("the set", |l| l.contains(&format!("{set}: 2 members")))
        .await;
    ok(&weigh(set, "shard=0", "2").await);
    let l = watch
        .expect("a reweighed member", |l| l.contains("reweighed"))
        .await;
    assert!(l.ends_with("2 members (+0 -0, 1 reweighed)"), "{l}");
    let l = watch
        .expect("its new weight", |l| l.starts_with("  ~ "))
        .await;
    assert_eq!(l, format!("  ~ {a}  10.0.1.1:8080  ALIVE  weight=2.0  shard=0  endpoints{{http=10.0.1.1:8081}}  (weight was 1.0)"));
    ok(&run_on_zk(&["--path", set, "drain", "10.0.1.2:8080"]).await);
    watch
        .expect("B leaves", |l| {
            l.starts_with(&format!("  - {b}  10.0.1.2:8080"))
        })
        .await;
    watch
        .expect("B is drained", |l| {
            l.contains(&format!("! {b} not served: drained"))
        })
        .await;
    put(
        &client,
        &format!("{set}/vector_"),
        b"[]",
        zk::CreateMode::PersistentSequential,
    )
    .await;
    watch
        .expect("the bad vector", |l| {
            l.contains("skipped: invalid vector: no \"vector\" array")
        })
        .await;
    ok(&run_on_zk(&["--path", set, "undrain", "10.0.1.2:8080"]).await);
    watch
        .expect("B is back", |l| {
            l.starts_with(&format!("  + {b}  10.0.1.2:8080"))
        })
        .await;
    watch.signal(libc::SIGINT);
    let (status, _) = watch.wait().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_done_fails_with_one_line() {
    let client = raw().await;
    let set = "/discovery/test/w-fail";
    let (_, b) = set_with_two(&client, set).await;
    // A set that does not exist is not created.
    let out = run_on_zk(&[
        "--path",
        "/discovery/test/w-nowhere",
        "drain",
        "10.0.0.1:80",
    ])
    .await;
    assert_fails(&out, 1, &["/discovery/test/w-nowhere does not exist"]);
    // A member name that is not there would select nothing, ever.
    let out = weigh(set, "member=member_0999999999", "2").await;
    assert_fails(&out, 1, &["has no member member_0999999999"]);
    // Undrain cannot lift a drain by another selector.
    put(
        &client,
        &format!("{set}/vector_"),
        br#"{"vector":[{"select":"shard=1","weight":-1.0}]}"#,
        zk::CreateMode::PersistentSequential,
    )
    .await;
    let out = run_on_zk(&["--path", set, "undrain", "10.0.1.2:8080"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("{b}  10.0.1.2:8080  drained")),
        "{}",
        out.stdout
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("10.0.1.2:8080 is still drained by vector_")
            && out
                .stderr
                .contains("(shard=1 weight=-1.0), which undrain does not change"),
        "{}",
        out.stderr
    );
    // A drain for an address with no member is written, and says so.
    let out = run_on_zk(&["--path", set, "drain", "10.9.9.9:1"]).await;
    assert!(ok(&out).ends_with("no member is selected by inet=10.9.9.9:1 now; the vector applies to members as they register\n"), "{}", out.stdout);
    // Undone, nothing is left to apply.
    let out = run_on_zk(&["--path", set, "undrain", "10.9.9.9:1"]).await;
    assert!(
        ok(&out).ends_with(")\nno member is selected by inet=10.9.9.9:1 now\n"),
        "{}",
        out.stdout
    );
}

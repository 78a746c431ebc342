//! Finagle `vector_` weight znodes next to the members, written the way a
//! foreign client (Finagle, an operator's script) writes them, against a
//! real ZooKeeper: weights reach the snapshot, -1.0 drains, a bad vector is
//! reported and changes nothing.

mod support;

use std::time::Duration;

use serversets_core::zookeeper_client as zk;
use serversets_core::{Snapshot, WatchStrategy, Watcher};
use support::*;

const T: Duration = Duration::from_secs(20);

fn weights(s: &Snapshot) -> Vec<(String, f64)> {
    s.iter()
        .map(|m| (m.addr().to_string(), m.weight()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_weigh_drain_and_are_undone_when_deleted() {
    let zk = Zk::start().await;
    let raw = &zk.raw;
    for (service, strategy) in [
        ("w-auto", WatchStrategy::Auto),
        ("w-children", WatchStrategy::Children),
    ] {
        let set = zk.set(service);
        let path = set.path().to_string();
        let a = put_member(raw, &path, &finagle("10.0.0.1", 80, r#","shard":1"#)).await;
        put_member(raw, &path, &finagle("10.0.0.2", 80, r#","shard":2"#)).await;
        put_member(raw, &path, &finagle("10.0.0.3", 80, r#","shard":2"#)).await;
        let a_name = a.rsplit('/').next().unwrap().to_string();
        // Finagle's exact form, two znodes: the weights multiply.
        let v1 = put_vector(raw, &path, format!(r#"{{"vector":[{{"select":"member={a_name}","weight":1.5,"priority":1}},{{"select":"shard=2","weight":2.0,"priority":1}}]}}"#).as_bytes()).await;
        let watch = watch_with(&set, strategy).await;
        assert_eq!(
            weights(&watch.snapshot()),
            [
                ("10.0.0.1:80".into(), 1.5),
                ("10.0.0.2:80".into(), 2.0),
                ("10.0.0.3:80".into(), 2.0)
            ],
            "{strategy:?}"
        );
        let v2 = put_vector(raw, &path, br#"{"vector":[{"select":"inet=10.0.0.2:80","weight":3.0,"priority":1},{"select":"inet=10.0.0.3:80","weight":-1.0,"priority":1}]}"#).await;
        let s = wait_for(&watch, T, "second vector applied", |s| s.len() == 2).await;
        assert_eq!(
            weights(&s),
            [("10.0.0.1:80".into(), 1.5), ("10.0.0.2:80".into(), 6.0)],
            "{strategy:?}"
        );
        let drained: Vec<_> = watch
            .rejected()
            .into_iter()
            .filter(|(_, why)| why.contains("drained"))
            .collect();
        assert_eq!(drained.len(), 1, "{:?}", watch.rejected());

        // Deleting a vector undoes it; the drained member returns.
        raw.delete(&v2, None).await.unwrap();
        let s = wait_for(&watch, T, "second vector undone", |s| s.len() == 3).await;
        assert_eq!(weights(&s)[2], ("10.0.0.3:80".into(), 2.0), "{strategy:?}");
        raw.delete(&v1, None).await.unwrap();
        let s = wait_for(&watch, T, "all weights back to 1", |s| {
            s.iter().all(|m| m.weight() == 1.0)
        })
        .await;
        assert_eq!(s.len(), 3);
        assert!(watch.rejected().is_empty(), "{:?}", watch.rejected());

        // A member that arrives later is weighed by the vectors present.
        put_vector(
            raw,
            &path,
            br#"{"vector":[{"select":"shard=9","weight":0.5}]}"#,
        )
        .await;
        put_member(raw, &path, &finagle("10.0.0.9", 80, r#","shard":9"#)).await;
        let s = wait_for(&watch, T, "late member weighed", |s| s.len() == 4).await;
        assert_eq!(weights(&s)[3], ("10.0.0.9:80".into(), 0.5), "{strategy:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_vectors_are_reported_and_change_nothing() {
    let zk = Zk::start().await;
    let raw = &zk.raw;
    let set = zk.set("w-bad");
    let path = set.path().to_string();
    put_member(raw, &path, &finagle("10.0.0.1", 80, r#","shard":1"#)).await;
    let garbage = put_vector(raw, &path, b"\x00\x01 not json").await;
    // Finagle reads an integer weight as 1.0; so do we.
    put_vector(
        raw,
        &path,
        br#"{"vector":[{"select":"shard=1","weight":5}]}"#,
    )
    .await;
    let watch = set.watch().await.unwrap();
    assert_eq!(weights(&watch.snapshot()), [("10.0.0.1:80".into(), 1.0)]);
    let name = garbage.rsplit('/').next().unwrap();
    let why = watch.rejected().get(name).cloned().unwrap_or_default();
    assert!(why.contains("invalid vector"), "{why}");
    assert_eq!(watch.rejected().len(), 1, "{:?}", watch.rejected());
    // Later changes still arrive.
    put_member(raw, &path, &finagle("10.0.0.2", 80, r#","shard":1"#)).await;
    wait_for(&watch, T, "a later member", |s| s.len() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_replaced_in_one_transaction_publishes_once() {
    let zk = Zk::start().await;
    let raw = &zk.raw;
    let set = zk.set("w-replace");
    let path = set.path().to_string();
    put_member(raw, &path, &finagle("10.0.0.1", 80, r#","shard":1"#)).await;
    let mut old = put_vector(
        raw,
        &path,
        br#"{"vector":[{"select":"shard=1","weight":2.0}]}"#,
    )
    .await;
    let watch = set.watch().await.unwrap();
    assert_eq!(weights(&watch.snapshot()), [("10.0.0.1:80".into(), 2.0)]);
    let options = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    for (round, w) in [3.0, -1.0, 4.0].into_iter().enumerate() {
        let before = watch.snapshot().version();
        // What `serversets weight` does: the new znode and the deletion of
        // the old one in one transaction.
        let mut multi = raw.new_multi_writer();
        let data = format!(r#"{{"vector":[{{"select":"shard=1","weight":{w:?}}}]}}"#);
        multi
            .add_create(&format!("{path}/vector_"), data.as_bytes(), &options)
            .unwrap();
        multi.add_delete(&old, None).unwrap();
        let results = multi.commit().await.unwrap();
        old = match &results[0] {
            zk::MultiWriteResult::Create { path, .. } => path.clone(),
            other => panic!("{other:?}"),
        };
        let s = wait_for(&watch, T, "new weight", |s| match w {
            w if w < 0.0 => s.is_empty(),
            w => s.len() == 1 && s.members()[0].weight() == w,
        })
        .await;
        assert_eq!(
            s.version(),
            before + 1,
            "round {round}: an unweighted set was published in between"
        );
    }
}

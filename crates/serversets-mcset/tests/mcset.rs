//! McSet over a FixedSet: the ring follows the source, lookups never fail
//! while servers exist, and the following task's end is always visible.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serversets_core::{HostPort, Member, MemberId, Watcher};
use serversets_fixedset::FixedSet;
use serversets_mcset::{Error, McSet, NodeIdentity, Ring, RingKind, SyncState, WeightedNode};

const WAIT: Duration = Duration::from_secs(10);

fn addrs(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("10.0.0.{i}:11211")).collect()
}

fn reference(list: &[String]) -> Ring {
    Ring::ketama(list.iter().map(|a| a.parse::<WeightedNode>().unwrap()))
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

async fn settle(set: &McSet, source: &FixedSet) -> Arc<Ring> {
    tokio::time::timeout(WAIT, set.wait_for_version(source.snapshot().version()))
        .await
        .expect("ring caught up in time")
        .expect("still following")
}

fn assert_same_placement(set: &McSet, want: &Ring) {
    for key in keys(2000) {
        let got = set.pick(&key).expect("servers present");
        assert_eq!(got.addr(), want.pick(&key).unwrap().addr(), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_follows_additions_and_removals() {
    let source = Arc::new(FixedSet::new(addrs(1..4)).unwrap());
    let set = McSet::new(source.clone()).unwrap();
    assert_eq!(set.ring().version(), source.snapshot().version());
    assert_same_placement(&set, &reference(&addrs(1..4)));

    source.set_addresses(addrs(1..6)).unwrap();
    let ring = settle(&set, &source).await;
    assert_eq!(ring.len(), 5);
    assert_same_placement(&set, &reference(&addrs(1..6)));

    source.set_addresses(addrs(2..6)).unwrap();
    settle(&set, &source).await;
    assert_same_placement(&set, &reference(&addrs(2..6)));
    let listed: Vec<String> = set.each().map(|m| m.addr().to_string()).collect();
    assert_eq!(listed, addrs(2..6));
    assert_eq!(set.state(), SyncState::Following);
}

#[tokio::test]
async fn empty_set_is_a_typed_error_until_servers_arrive() {
    let source = Arc::new(FixedSet::empty());
    let set = McSet::new(source.clone()).unwrap();
    assert!(matches!(set.pick("k"), Err(Error::NoMembers)));
    assert_eq!(set.each().len(), 0);

    source.set_addresses(["10.0.0.1:11211"]).unwrap();
    settle(&set, &source).await;
    assert_eq!(set.pick("k").unwrap().addr().to_string(), "10.0.0.1:11211");

    source.set_addresses(Vec::<String>::new()).unwrap();
    settle(&set, &source).await;
    assert!(matches!(set.pick("k"), Err(Error::NoMembers)));
}

#[tokio::test]
async fn weights_come_from_member_metadata() {
    let member = |host: &str, weight: Option<&str>| {
        let addr = HostPort::new(host, 11211).unwrap();
        let b = Member::builder(MemberId::new(addr.to_string()), addr);
        match weight {
            Some(w) => b.metadata("weight", w).build(),
            None => b.build(),
        }
    };
    let source = FixedSet::from_members([
        member("10.0.1.1", Some("600")),
        member("10.0.1.2", Some("300")),
        member("10.0.1.3", Some("not-a-number")),
        member("10.0.1.4", None),
    ]);
    let set = McSet::new(source).unwrap();
    let ring = set.ring();
    let want = Ring::ketama(
        [
            "10.0.1.1:11211=600",
            "10.0.1.2:11211=300",
            "10.0.1.3:11211",
            "10.0.1.4:11211",
        ]
        .map(|n| n.parse::<WeightedNode>().unwrap()),
    );
    let weights: Vec<f64> = ring.nodes().iter().map(|n| n.weight()).collect();
    assert_eq!(weights, [600.0, 300.0, 1.0, 1.0]);
    assert_same_placement(&set, &want);
}

#[tokio::test]
async fn go_ring_and_identity_are_selectable() {
    let sharded = |host: &str, shard: i32| {
        let addr = HostPort::new(host, 11211).unwrap();
        Member::builder(MemberId::new(addr.to_string()), addr)
            .shard(shard)
            .build()
    };
    let members = [sharded("10.0.0.1", 3), sharded("10.0.0.2", 4)];

    let identifiers = |set: &McSet| -> Vec<String> {
        set.ring()
            .nodes()
            .iter()
            .map(|n| n.identifier().to_string())
            .collect()
    };
    let finagle = McSet::new(FixedSet::from_members(members.clone())).unwrap();
    assert_eq!(identifiers(&finagle), ["3", "4"]);

    let by_addr = McSet::builder()
        .identity(NodeIdentity::HostPort)
        .build(FixedSet::from_members(members.clone()))
        .unwrap();
    assert_eq!(identifiers(&by_addr), ["10.0.0.1", "10.0.0.2"]);

    let go = McSet::builder()
        .kind(RingKind::GoMcset)
        .build(FixedSet::from_members(members))
        .unwrap();
    assert_eq!(go.ring().kind(), RingKind::GoMcset);
    assert_eq!(go.ring().point_count(), 300);
    // Placement follows the Go scheme (checked in full by the vectors
    // test), and both nodes own keys.
    let go_ring = Ring::builder()
        .kind(RingKind::GoMcset)
        .build_nodes(
            ["10.0.0.1:11211", "10.0.0.2:11211"].map(|n| n.parse::<WeightedNode>().unwrap()),
        )
        .unwrap();
    for k in keys(200) {
        assert_eq!(
            go.pick(&k).unwrap().addr(),
            go_ring.pick(&k).unwrap().addr()
        );
    }
    let owners: std::collections::HashSet<String> = keys(200)
        .iter()
        .map(|k| go.pick(k).unwrap().addr().to_string())
        .collect();
    assert_eq!(owners.len(), 2);
}

#[tokio::test]
async fn closed_source_keeps_the_last_ring() {
    let source = FixedSet::new(addrs(1..4)).unwrap();
    let set = McSet::new(source.feed()).unwrap();
    source.close();
    let err = tokio::time::timeout(WAIT, set.wait_for_version(u64::MAX))
        .await
        .expect("task ended in time")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFollowing {
                state: SyncState::SourceClosed
            }
        ),
        "{err}"
    );
    assert_eq!(set.state(), SyncState::SourceClosed);
    assert_same_placement(&set, &reference(&addrs(1..4)));
}

#[tokio::test]
async fn dropping_the_mcset_stops_the_task_and_releases_the_watcher() {
    let source = Arc::new(FixedSet::new(addrs(1..4)).unwrap());
    let set = McSet::new(source.clone()).unwrap();
    assert_eq!(Arc::strong_count(&source), 2, "the task holds the watcher");
    drop(set);
    testkit::eventually(WAIT, "watcher released after drop", || async {
        Arc::strong_count(&source) == 1
    })
    .await;
}

#[test]
fn runtime_shutdown_is_reported_not_silent() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let source = Arc::new(FixedSet::new(addrs(1..4)).unwrap());
    let set = runtime.block_on(async { McSet::new(source.clone()).unwrap() });
    assert_eq!(set.state(), SyncState::Following);
    drop(runtime);
    match set.state() {
        SyncState::Failed(why) => assert!(why.contains("cancelled"), "{why}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    // The last ring is still served.
    assert!(set.pick("k").is_ok());
    // And each use catches up with the source itself (core's follower
    // policy), so the ring does not go stale.
    source.set_addresses(addrs(1..6)).unwrap();
    assert_eq!(set.ring().len(), 5);
    assert_eq!(set.ring().version(), source.snapshot().version());
    assert_same_placement(&set, &reference(&addrs(1..6)));
}

#[test]
fn a_follower_that_dies_is_reported_and_each_use_catches_up() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let source = Arc::new(FixedSet::new(addrs(1..4)).unwrap());
    let set = runtime.block_on(async {
        let set = McSet::new(source.clone()).unwrap();
        // Only the task installs rings here: once this returns, it runs.
        source.set_addresses(addrs(1..5)).unwrap();
        settle(&set, &source).await;
        set
    });
    assert_eq!(set.state(), SyncState::Following);
    drop(runtime);
    match set.state() {
        SyncState::Failed(why) => assert!(why.contains("cancelled"), "{why}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_same_placement(&set, &reference(&addrs(1..5)));
    source.set_addresses(addrs(2..7)).unwrap();
    assert_eq!(set.ring().version(), source.snapshot().version());
    assert_same_placement(&set, &reference(&addrs(2..7)));
    let err = futures::executor::block_on(set.wait_for_version(u64::MAX)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFollowing {
                state: SyncState::Failed(_)
            }
        ),
        "{err}"
    );
}

#[test]
fn refuses_to_start_outside_a_runtime() {
    let err = McSet::new(FixedSet::empty()).unwrap_err();
    assert!(matches!(err, Error::NoRuntime));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_fail_during_rebuilds() {
    let lists = [addrs(1..40), addrs(5..60), addrs(20..90)];
    let all: std::collections::HashSet<String> = lists.iter().flatten().cloned().collect();
    let source = Arc::new(FixedSet::new(&lists[0]).unwrap());
    let set = Arc::new(McSet::new(source.clone()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (set, stop, all) = (set.clone(), stop.clone(), all.clone());
            std::thread::spawn(move || {
                let mut picks = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("r{r}:{picks}");
                    let m = set.pick(&key).expect("never empty");
                    assert!(all.contains(&m.addr().to_string()));
                    picks += 1;
                }
                picks
            })
        })
        .collect();
    for round in 0..30 {
        source.set_addresses(&lists[round % 3]).unwrap();
        settle(&set, &source).await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_same_placement(&set, &reference(&lists[29 % 3]));
}

/// Collects what `tracing` logs while `f` runs.
fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn bad_weights_and_shared_identifiers_are_reported() {
    let bad = Member::builder("member_1", "10.0.0.1:11211".parse().unwrap())
        .metadata("weight", "-5")
        .build();
    let twin_a = Member::builder("member_2", "10.0.0.2:11211".parse().unwrap())
        .shard(0)
        .build();
    let twin_b = Member::builder("member_3", "10.0.0.3:11211".parse().unwrap())
        .shard(0)
        .build();
    let mut ring = None;
    let logs = logs_of(|| ring = Some(Ring::builder().build([bad, twin_a, twin_b])));
    let ring = ring.unwrap();
    assert!(logs.contains("invalid memcache weight"), "{logs}");
    assert!(logs.contains("-5"), "{logs}");
    assert!(logs.contains("share a ring identifier"), "{logs}");
    // The bad weight counted as 1; the shadowed twin owns nothing.
    let owned: Vec<(String, f64, u32)> = ring
        .nodes()
        .iter()
        .map(|n| (n.addr().to_string(), n.weight(), n.owned_points()))
        .collect();
    assert_eq!(
        owned,
        [
            ("10.0.0.2:11211".to_string(), 1.0, 160),
            ("10.0.0.3:11211".to_string(), 1.0, 0),
            ("10.0.0.1:11211".to_string(), 1.0, 160),
        ]
    );
}

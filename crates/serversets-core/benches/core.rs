//! Discovery benchmarks against a real ZooKeeper (run by `cargo xtask bench`).
//!
//! - `core.propagation`: from issuing a member's create to the watch's new
//!   snapshot, measured on the same create as `core.propagation_limit`, the
//!   bare notification round trip seen by a zookeeper-client persistent
//!   watch (what no watcher can beat), and `core.propagation_read_floor`,
//!   that notification plus the one read of the new member's data that any
//!   watcher serving member data must make (ZooKeeper events carry no data).
//! - `core.propagation_recorded`: `core.propagation` (its baseline) with a
//!   metrics recorder (the Prometheus one `serversets --metrics-addr`
//!   installs) recording the watch's metrics: members, propagation time,
//!   reads per change. The watch is restarted in alternating blocks of
//!   creates, recorded or not, so the two never share the machine or the
//!   session at the same time; the limit and read floor are measured on
//!   every create of both.
//! - `core.propagation_naive`: go.serversets' strategy, a children watch that
//!   re-reads every member one by one on each change.
//! - `core.cold_start`: `watch()` returning with every member read, against
//!   `core.cold_start_multi_limit`: with zookeeper-client alone, list the
//!   set, read it in multi-read batches all in flight, and decode each
//!   member with the project's codec (the least any watch must do). The
//!   older `core.cold_start_limit`, one list plus every single read in
//!   flight at once, is measured in the same run.
//! - `core.resync`: a watch cut off (through testkit's fault proxy) while
//!   100 of its 10,000 members change, from the reconnect until its
//!   snapshot is right again.
//! - `core.memory_per_member`: live heap bytes a watch holds per member.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::json;
use serversets_core::zookeeper_client as zk;
use serversets_core::{codec, Environment, ServerSet, Watcher};
use testkit::bench::{emit, micros, wanted, Record};
use testkit::{ZkCluster, ZkOptions};

use testkit::recorder;

/// Counts live heap bytes so memory per member can be measured exactly.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 4] = [10, 1_000, 10_000, 50_000];
/// Sizes propagation is measured at (the naive strategy is hopeless beyond).
const PROPAGATION_SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Operations per multi-read in the limit.
const LIMIT_BATCH: usize = 500;

fn member_json(i: usize) -> Vec<u8> {
    format!(
        r#"{{"serviceEndpoint":{{"host":"10.{}.{}.{}","port":31781}},"additionalEndpoints":{{"http":{{"host":"10.0.0.1","port":31782}}}},"status":"ALIVE","shard":{i}}}"#,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
    .into_bytes()
}

async fn connect(cs: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(30))
        .connect(cs)
        .await
        .expect("connect")
}

/// Fills `path` up to `n` persistent members, pipelining the creates.
async fn populate(client: &zk::Client, path: &str, n: usize) {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.mkdir(path, &opts).await.expect("mkdir");
    let have = client.list_children(path).await.expect("list").len();
    let seq_opts = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let prefix = format!("{path}/member_");
    let mut pending = FuturesUnordered::new();
    for i in have..n {
        let data = member_json(i);
        let (prefix, seq_opts) = (&prefix, &seq_opts);
        pending.push(async move { client.create(prefix, &data, seq_opts).await });
        if pending.len() >= 2000 {
            pending.next().await.expect("some").expect("create");
        }
    }
    while let Some(r) = pending.next().await {
        r.expect("create");
    }
}

fn main() {
    // Installed (switched off) before any session or watch exists.
    recorder::install();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if ![
        "core.propagation",
        "core.cold_start",
        "core.resync",
        "core.memory_per_member",
    ]
    .iter()
    .any(|n| wanted(n))
    {
        return;
    }
    // Proxied for the resync benchmark only; every other client connects
    // past the proxy.
    let zk = ZkCluster::start(ZkOptions {
        proxied: true,
        ..ZkOptions::default()
    })
    .expect("ZooKeeper for benchmarks");
    rt.block_on(run(&zk));
}

async fn run(zk: &ZkCluster) {
    let direct = zk.direct_connect_string();
    let cs = direct.as_str();
    let writer = connect(cs).await;
    for &n in &SIZES {
        let service = format!("bench{n}");
        let path = format!("/discovery/test/{service}");
        populate(&writer, &path, n).await;
        let set = ServerSet::builder(Environment::Test, &service, [cs])
            .session_timeout(Duration::from_secs(30))
            .build()
            .expect("set");

        if wanted("core.memory_per_member") && n >= 10_000 {
            memory(&set, n).await;
        }
        if wanted("core.cold_start") && n >= 1_000 {
            cold_start(&set, cs, &path, n).await;
        }
        if wanted("core.resync") && n == 10_000 {
            resync(zk, &writer, &service, &path, n).await;
        }
        if wanted("core.propagation") && PROPAGATION_SIZES.contains(&n) {
            propagation(&set, &writer, cs, &path, n).await;
            propagation_naive(&writer, cs, &path, n).await;
        }
    }
}

async fn memory(set: &ServerSet, n: usize) {
    // Connect the session first so only the watch's own state is counted.
    set.session()
        .expect("session")
        .wait_connected()
        .await
        .expect("connected");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = LIVE.load(Ordering::SeqCst);
    let watch = set.watch().await.expect("watch");
    assert_eq!(watch.snapshot().len(), n);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = LIVE.load(Ordering::SeqCst);
    let per = (after - before) as f64 / n as f64;
    emit(&Record::from_samples(
        "core.memory_per_member",
        json!({ "members": n }),
        "bytes",
        &[per],
        None,
    ));
    drop(watch);
}

async fn cold_start(set: &ServerSet, cs: &str, path: &str, n: usize) {
    set.session()
        .expect("session")
        .wait_connected()
        .await
        .expect("connected");
    let reader = connect(cs).await;
    let mut ours = Vec::new();
    let mut limit = Vec::new();
    let mut multi_limit = Vec::new();
    let rounds = if n >= 50_000 { 5 } else { 10 };
    for _ in 0..rounds {
        // The old limit: list, then every single read in flight at once.
        let start = Instant::now();
        let names = reader.list_children(path).await.expect("list");
        let mut reads: FuturesUnordered<_> = names
            .iter()
            .map(|name| reader.get_data(&format!("{path}/{name}")))
            .collect();
        let mut got = 0;
        while let Some(r) = reads.next().await {
            let (data, _) = r.expect("read");
            got += usize::from(!data.is_empty());
        }
        assert_eq!(got, n);
        limit.push(micros(start.elapsed()) / 1000.0);

        // The multi-read limit: list, every batch in flight, decode each.
        let start = Instant::now();
        let names = reader.list_children(path).await.expect("list");
        let mut batches: FuturesUnordered<_> = names
            .chunks(LIMIT_BATCH)
            .map(|chunk| {
                let mut batch = reader.new_multi_reader();
                for name in chunk {
                    batch.add_get_data(&format!("{path}/{name}")).expect("path");
                }
                let commit = batch.commit();
                async move { (chunk, commit.await) }
            })
            .collect();
        let mut decoded = Vec::with_capacity(n);
        while let Some((chunk, r)) = batches.next().await {
            for (name, result) in chunk.iter().zip(r.expect("multi-read")) {
                if let zk::MultiReadResult::Data { data, .. } = result {
                    decoded.push(codec::decode(name, &data).expect("a valid member"));
                }
            }
        }
        assert_eq!(decoded.len(), n);
        multi_limit.push(micros(start.elapsed()) / 1000.0);
        drop(decoded);

        let start = Instant::now();
        let watch = set.watch().await.expect("watch");
        ours.push(micros(start.elapsed()) / 1000.0);
        assert_eq!(watch.snapshot().len(), n);
        drop(watch);
    }
    let params = json!({ "members": n });
    emit(&Record::from_samples(
        "core.cold_start_limit",
        params.clone(),
        "ms",
        &limit,
        None,
    ));
    emit(&Record::from_samples(
        "core.cold_start_multi_limit",
        params.clone(),
        "ms",
        &multi_limit,
        Some("core.cold_start_limit"),
    ));
    emit(&Record::from_samples(
        "core.cold_start",
        params,
        "ms",
        &ours,
        Some("core.cold_start_multi_limit"),
    ));
}

/// A watch through the fault proxy is cut off while 50 members leave and
/// 50 arrive; measured from the reconnect to a correct snapshot.
async fn resync(zk: &ZkCluster, writer: &zk::Client, service: &str, path: &str, n: usize) {
    let proxy = zk.proxy(0).expect("proxied cluster");
    let set = ServerSet::builder(Environment::Test, service, [zk.connect_string()])
        .session_timeout(Duration::from_secs(30))
        .build()
        .expect("set");
    let watch = set.watch().await.expect("watch");
    assert_eq!(watch.snapshot().len(), n);
    let opts = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let prefix = format!("{path}/member_");
    let mut samples = Vec::new();
    for round in 0..10 {
        proxy.set_blackhole(true);
        let mut names = writer.list_children(path).await.expect("list");
        names.sort();
        for name in names.iter().take(50) {
            writer
                .delete(&format!("{path}/{name}"), None)
                .await
                .expect("delete");
        }
        for i in 0..50 {
            writer
                .create(&prefix, &member_json(n + 100_000 + round * 50 + i), &opts)
                .await
                .expect("create");
        }
        let mut truth = writer.list_children(path).await.expect("list");
        truth.sort();
        let start = Instant::now();
        proxy.heal();
        proxy.reset_all();
        let mut sub = watch.subscribe();
        loop {
            let mut seen: Vec<String> = watch
                .snapshot()
                .iter()
                .map(|m| m.id().as_str().to_string())
                .collect();
            seen.sort();
            if seen == truth {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), sub.changed()).await;
        }
        samples.push(micros(start.elapsed()) / 1000.0);
    }
    emit(&Record::from_samples(
        "core.resync",
        json!({ "members": n }),
        "ms",
        &samples,
        Some("core.cold_start_multi_limit"),
    ));
}

/// Blocks of watches alternating between unrecorded and recorded.
const BLOCKS: usize = 10;
/// Creates at the start of each block that only warm the new watch up.
const BLOCK_WARMUP: usize = 4;

/// Creates one member at a time; our watch and a bare persistent watch see
/// the same create, and each one's delay from the create call is recorded.
/// Our watch is restarted for each of [`BLOCKS`] blocks, with the metrics
/// recorder off and on in turn (`core.propagation`,
/// `core.propagation_recorded`).
async fn propagation(set: &ServerSet, writer: &zk::Client, cs: &str, path: &str, n: usize) {
    let observer = connect(cs).await;
    let mut bare = observer
        .watch(path, zk::AddWatchMode::PersistentRecursive)
        .await
        .expect("persistent watch");
    let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let prefix = format!("{path}/member_");
    let samples = if n >= 10_000 { 150 } else { 300 };
    let per_block = samples / (BLOCKS / 2);
    let mut ours = Vec::new();
    let mut ours_recorded = Vec::new();
    let mut limit = Vec::new();
    let mut read_floor = Vec::new();
    let mut i = 0;
    for block in 0..BLOCKS {
        let with_recorder = block % 2 == 1;
        recorder::set_on(with_recorder);
        let watch = set.watch().await.expect("watch");
        recorder::set_on(false);
        assert_eq!(watch.snapshot().len(), n);
        let mut sub = watch.subscribe();
        for k in 0..per_block + BLOCK_WARMUP {
            i += 1;
            let start = Instant::now();
            let (_, seq) = writer
                .create(&prefix, &member_json(n + i), &opts)
                .await
                .expect("create");
            let name = format!("member_{seq}");
            let bare_wait = async {
                loop {
                    let e = bare.changed().await;
                    if e.event_type == zk::EventType::NodeCreated && e.path.ends_with(&name) {
                        let notified = start.elapsed();
                        // What any watcher that serves member data must do
                        // next: read the new member.
                        observer.get_data(&e.path).await.expect("read new member");
                        return (notified, start.elapsed());
                    }
                }
            };
            let ours_wait = async {
                loop {
                    let s = sub.changed().await.expect("open");
                    if s.len() == n + 1 {
                        return start.elapsed();
                    }
                }
            };
            let ((b, r), o) = tokio::join!(bare_wait, ours_wait);
            if k >= BLOCK_WARMUP {
                limit.push(micros(b));
                read_floor.push(micros(r));
                if with_recorder {
                    ours_recorded.push(micros(o));
                } else {
                    ours.push(micros(o));
                }
            }
            writer
                .delete(&format!("{path}/{name}"), None)
                .await
                .expect("delete");
            loop {
                let e = bare.changed().await;
                if e.event_type == zk::EventType::NodeDeleted {
                    break;
                }
            }
            while sub.changed().await.expect("open").len() != n {}
        }
        drop(watch);
    }
    let params = json!({ "members": n });
    emit(&Record::from_samples(
        "core.propagation_limit",
        params.clone(),
        "us",
        &limit,
        None,
    ));
    emit(&Record::from_samples(
        "core.propagation_read_floor",
        params.clone(),
        "us",
        &read_floor,
        Some("core.propagation_limit"),
    ));
    let base = Record::from_samples(
        "core.propagation",
        params.clone(),
        "us",
        &ours,
        Some("core.propagation_limit"),
    );
    emit(&base);
    let recorded = Record::from_samples(
        "core.propagation_recorded",
        params,
        "us",
        &ours_recorded,
        Some("core.propagation"),
    );
    emit(&recorded);
    let changes = testkit::prometheus::Samples::parse(&recorder::render()).sum(
        "serversets_watch_propagation_seconds_count",
        &[("set", path)],
    );
    eprintln!(
        "core.propagation_recorded / core.propagation, {n} members: {:.3} ({changes} changes recorded)",
        recorded.median / base.median
    );
}

/// go.serversets' way: on each children-watch fire, list and read every
/// member sequentially, then publish.
async fn propagation_naive(writer: &zk::Client, cs: &str, path: &str, n: usize) {
    let reader = connect(cs).await;
    let samples = match n {
        0..=100 => 100,
        101..=2_000 => 20,
        _ => 4,
    };
    let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let prefix = format!("{path}/member_");
    let mut naive = Vec::new();
    let (_, _, mut watcher) = reader
        .get_and_watch_children(path)
        .await
        .expect("watch children");
    for i in 0..samples + 1 {
        let start = Instant::now();
        writer
            .create(&prefix, &member_json(n + i), &opts)
            .await
            .expect("create");
        let _ = watcher.changed().await;
        let (names, _, w) = reader.get_and_watch_children(path).await.expect("re-list");
        watcher = w;
        let mut members = Vec::with_capacity(names.len());
        for name in &names {
            let (data, _) = reader
                .get_data(&format!("{path}/{name}"))
                .await
                .expect("read");
            members.push(data);
        }
        assert_eq!(members.len(), n + i + 1);
        if i > 0 {
            naive.push(micros(start.elapsed()));
        }
    }
    emit(&Record::from_samples(
        "core.propagation_naive",
        json!({ "members": n }),
        "us",
        &naive,
        Some("core.propagation_limit"),
    ));
}

//! mcset benchmarks in the shared record format (`cargo xtask bench`).
//!
//! * `mcset.pick` (ns): `McSet::pick` on random keys for 10, 100 and
//!   1000 servers, against the floor `mcset.pick_floor`: MD5 of the key plus
//!   `partition_point` over a plain sorted `Vec<u32>` of the same ring's
//!   points. Samples of the two alternate so drift hits both alike.
//! * `mcset.pick_weighted` (ns): the same over the same servers with vector
//!   weights (`Member::weight`) 1, 2, 3, 0.5 cycled, its baseline
//!   `mcset.pick`; its samples alternate with the other two.
//! * `mcset.pick_recorded` (ns): `mcset.pick` (its baseline) on a McSet
//!   built while a metrics recorder (the Prometheus one `serversets
//!   --metrics-addr` installs) was on, per-node pick counts off (the
//!   default); `mcset.pick_counted`: the same with
//!   `McSetBuilder::count_picks(true)`, one counter add per pick. Their
//!   samples alternate with the others.
//! * `mcset.rebuild` (ms): building the ketama ring for 10, 100 and 1000
//!   servers.
//! * `mcset.moved` (fraction): share of 1,000,000 keys that change server
//!   when one of 100 equal servers leaves.

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use serversets_core::{HostPort, Member};
use serversets_fixedset::FixedSet;
use serversets_mcset::{McSet, Ring, WeightedNode};
use testkit::bench::{emit, wanted, Record};

use testkit::recorder;

const SAMPLES: usize = 40;
/// Vector weights for `mcset.pick_weighted`, cycled over the servers.
const WEIGHTS: [f64; 4] = [1.0, 2.0, 3.0, 0.5];
const BATCH: usize = 20_000;

fn addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.{}:11211", i / 65536, (i / 256) % 256, i % 256))
        .collect()
}

fn random_keys(count: usize, seed: u64) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|_| format!("user:{:016x}", rng.u64(..)))
        .collect()
}

/// Nanoseconds per call of `f` over one batch.
fn sample(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..BATCH {
        f();
    }
    start.elapsed().as_nanos() as f64 / BATCH as f64
}

fn floor_pick(points: &[u32], key: &[u8]) -> usize {
    let digest = md5::compute(key).0;
    let hash = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let i = points.partition_point(|&p| p < hash);
    if i == points.len() {
        0
    } else {
        i
    }
}

fn bench_pick(runtime: &tokio::runtime::Runtime) {
    let keys = random_keys(1 << 14, 42);
    let mask = keys.len() - 1;
    for servers in [10usize, 100, 1000] {
        let source = FixedSet::new(addresses(servers)).expect("valid addresses");
        let set = {
            let _entered = runtime.enter();
            McSet::new(source).expect("inside a runtime")
        };
        let points: Vec<u32> = set.ring().points().map(|(p, _)| p).collect();
        // The same servers with vector weights 1, 2, 3, 0.5 cycled.
        let weighted_source =
            FixedSet::from_members(addresses(servers).iter().zip(WEIGHTS.iter().cycle()).map(
                |(a, &w)| Member::from_addr(a.parse::<HostPort>().expect("valid")).with_weight(w),
            ));
        let weighted_set = {
            let _entered = runtime.enter();
            McSet::new(weighted_source).expect("inside a runtime")
        };
        // The same servers, with a recorder on: picks not counted, then
        // counted per node.
        let recorded_set = |count_picks: bool| {
            let _entered = runtime.enter();
            let source = FixedSet::new(addresses(servers)).expect("valid addresses");
            recorder::recorded(|| {
                McSet::builder()
                    .metrics_set("/bench/mcset")
                    .count_picks(count_picks)
                    .build(source)
                    .expect("inside a runtime")
            })
        };
        let (recorded, counted) = (recorded_set(false), recorded_set(true));

        let (mut pick, mut floor, mut weighted) = (Vec::new(), Vec::new(), Vec::new());
        let (mut with_recorder, mut with_counts) = (Vec::new(), Vec::new());
        let (mut i, mut j, mut k, mut r, mut c) = (0usize, 0usize, 0usize, 0usize, 0usize);
        for round in 0..=SAMPLES {
            let p = sample(|| {
                i = (i + 1) & mask;
                black_box(set.pick(black_box(&keys[i])).ok());
            });
            let f = sample(|| {
                j = (j + 1) & mask;
                black_box(floor_pick(&points, black_box(keys[j].as_bytes())));
            });
            let w = sample(|| {
                k = (k + 1) & mask;
                black_box(weighted_set.pick(black_box(&keys[k])).ok());
            });
            let rec = sample(|| {
                r = (r + 1) & mask;
                black_box(recorded.pick(black_box(&keys[r])).ok());
            });
            let cnt = sample(|| {
                c = (c + 1) & mask;
                black_box(counted.pick(black_box(&keys[c])).ok());
            });
            // Round 0 warms caches and branch predictors.
            if round > 0 {
                pick.push(p);
                floor.push(f);
                weighted.push(w);
                with_recorder.push(rec);
                with_counts.push(cnt);
            }
        }
        let params = json!({ "servers": servers });
        emit(&Record::from_samples(
            "mcset.pick_floor",
            params.clone(),
            "ns",
            &floor,
            None,
        ));
        let base = Record::from_samples(
            "mcset.pick",
            params.clone(),
            "ns",
            &pick,
            Some("mcset.pick_floor"),
        );
        emit(&base);
        for (name, samples) in [
            ("mcset.pick_recorded", &with_recorder),
            ("mcset.pick_counted", &with_counts),
        ] {
            if wanted(name) {
                let rec =
                    Record::from_samples(name, params.clone(), "ns", samples, Some("mcset.pick"));
                emit(&rec);
                eprintln!(
                    "{name} / mcset.pick, {servers} servers: {:.3}",
                    rec.median / base.median
                );
            }
        }
        if wanted("mcset.pick_weighted") {
            let w = Record::from_samples(
                "mcset.pick_weighted",
                params,
                "ns",
                &weighted,
                Some("mcset.pick"),
            );
            emit(&w);
            eprintln!(
                "mcset.pick_weighted / mcset.pick, {servers} servers: {:.3}",
                w.median / base.median
            );
        }
    }
}

fn bench_rebuild() {
    for servers in [10usize, 100, 1000] {
        let members: Vec<Member> = addresses(servers)
            .iter()
            .map(|a| Member::from_addr(a.parse::<HostPort>().expect("valid")))
            .collect();
        let rounds = if servers == 1000 { 30 } else { 200 };
        let mut samples = Vec::new();
        for round in 0..=rounds {
            let start = Instant::now();
            let ring = Ring::builder().build(members.iter().cloned());
            let ms = start.elapsed().as_secs_f64() * 1e3;
            // 160 points a server, less the few that collide.
            assert!(ring.point_count() + 100 > servers * 160);
            black_box(ring);
            if round > 0 {
                samples.push(ms);
            }
        }
        emit(&Record::from_samples(
            "mcset.rebuild",
            json!({ "servers": servers }),
            "ms",
            &samples,
            None,
        ));
    }
}

fn bench_moved() {
    let nodes: Vec<WeightedNode> = addresses(100)
        .iter()
        .map(|a| a.parse().expect("valid"))
        .collect();
    let before = Ring::ketama(nodes.clone());
    let gone = nodes[57].addr().clone();
    let after = Ring::ketama(nodes.into_iter().filter(|n| *n.addr() != gone));
    let keys = 1_000_000u32;
    let mut moved = 0u32;
    let mut stray = 0u32;
    for i in 0..keys {
        let key = format!("key:{i}");
        let (old, new) = (before.pick(&key), after.pick(&key));
        let (Some(old), Some(new)) = (old, new) else {
            continue;
        };
        if old.addr() != new.addr() {
            moved += 1;
            if *old.addr() != gone {
                stray += 1;
            }
        }
    }
    assert_eq!(stray, 0, "keys on surviving servers must not move");
    let fraction = f64::from(moved) / f64::from(keys);
    emit(&Record::from_samples(
        "mcset.moved",
        json!({ "servers": 100, "keys": keys }),
        "fraction",
        &[fraction],
        None,
    ));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    if wanted("mcset.pick") || wanted("mcset.pick_floor") {
        bench_pick(&runtime);
    }
    if wanted("mcset.rebuild") {
        bench_rebuild();
    }
    if wanted("mcset.moved") {
        bench_moved();
    }
}

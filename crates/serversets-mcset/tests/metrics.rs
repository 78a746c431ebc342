//! What a McSet reports through the `metrics` facade, read back from the
//! Prometheus recorder (what `serversets --metrics-addr` installs), and
//! that a pick allocates nothing, with or without per-node pick counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use serversets_core::Watcher;
use serversets_fixedset::FixedSet;
use serversets_mcset::McSet;
use testkit::prometheus::{self, scrape as samples};

/// Counts the allocations of the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn rebuilds_and_ring_size_follow_the_members() {
    prometheus::install();
    runtime().block_on(async {
        let source = Arc::new(
            FixedSet::new(["10.1.0.1:11211", "10.1.0.2:11211", "10.1.0.3:11211"]).unwrap(),
        );
        let set = McSet::builder()
            .metrics_set("/t/mc")
            .build(source.clone())
            .unwrap();
        let set_label = [("set", "/t/mc")];
        let s = samples();
        assert_eq!(s.sum("serversets_mc_ring_nodes", &set_label), 3.0);
        let points = s.sum("serversets_mc_ring_points", &set_label);
        assert_eq!(points, set.ring().point_count() as f64);
        assert!(points > 0.0);
        assert_eq!(s.sum("serversets_mc_rebuilds_total", &set_label), 0.0);

        source
            .set_addresses(["10.1.0.1:11211", "10.1.0.2:11211"])
            .unwrap();
        set.wait_for_version(source.snapshot().version())
            .await
            .unwrap();
        let s = samples();
        assert_eq!(s.sum("serversets_mc_ring_nodes", &set_label), 2.0);
        assert_eq!(s.sum("serversets_mc_rebuilds_total", &set_label), 1.0);
        assert_eq!(
            s.sum("serversets_mc_ring_points", &set_label),
            set.ring().point_count() as f64
        );
        // Picks are not counted unless asked for.
        set.pick("k").unwrap();
        assert!(!samples().has("serversets_mc_picks_total", &set_label));
    });
}

#[test]
fn picks_are_counted_per_node_when_asked_for() {
    prometheus::install();
    runtime().block_on(async {
        let nodes = ["10.2.0.1:11211", "10.2.0.2:11211", "10.2.0.3:11211"];
        let set = McSet::builder()
            .metrics_set("/t/mc-picks")
            .count_picks(true)
            .build(FixedSet::new(nodes).unwrap())
            .unwrap();
        let mut want = std::collections::HashMap::new();
        for i in 0..300 {
            let server = set.pick(format!("user:{i}")).unwrap();
            *want.entry(server.addr().to_string()).or_insert(0.0) += 1.0;
        }
        let s = samples();
        assert_eq!(
            s.sum("serversets_mc_picks_total", &[("set", "/t/mc-picks")]),
            300.0
        );
        for node in nodes {
            let labels = [("set", "/t/mc-picks"), ("endpoint", node)];
            assert_eq!(
                s.sum("serversets_mc_picks_total", &labels),
                want.get(node).copied().unwrap_or(0.0),
                "{node}"
            );
        }
    });
}

#[test]
fn a_pick_allocates_nothing_with_a_recorder_installed() {
    prometheus::install();
    let rt = runtime();
    for count_picks in [false, true] {
        let set = {
            let _in = rt.enter();
            McSet::builder()
                .metrics_set("/t/mc-alloc")
                .count_picks(count_picks)
                .build(FixedSet::new(["10.3.0.1:11211", "10.3.0.2:11211"]).unwrap())
                .unwrap()
        };
        let keys: Vec<String> = (0..1000).map(|i| format!("user:{i}")).collect();
        set.pick(&keys[0]).unwrap(); // warm
        let before = allocations();
        for key in &keys {
            std::hint::black_box(set.pick(key).unwrap());
        }
        assert_eq!(
            allocations() - before,
            0,
            "1000 picks allocated (count_picks {count_picks})"
        );
    }
}

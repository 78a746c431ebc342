//! Property tests for both rings (proptest): the published vectors hold for
//! any order the nodes are listed in, removing a node moves only its keys
//! (about 1/N of them), and key shares follow the weights.
//!
//! Tolerances are stated with the statistics behind them, so a failure
//! means a broken ring rather than bad luck. A node owning `k` of the
//! ring's `M` points covers a share of the circle with mean `k / M` and
//! standard deviation about `sqrt(p (1 - p) / M)` (its arcs are `k` of `M`
//! uniform gaps); counting keys adds `sqrt(p (1 - p) / K)` for `K` keys.

use proptest::prelude::*;
use serversets_core::{HostPort, Member, MemberId};
use serversets_mcset::{Ring, RingKind, WeightedNode};

const KETAMA: &str = testkit::vectors::FINAGLE_KETAMA;
const GO_3_NODES: &str = testkit::vectors::GO_3_NODES;
const GO_COLLISIONS: &str = testkit::vectors::GO_COLLISIONS;

/// The weighted nodes in the ketama vectors' header (`#   host:port=w ...`).
fn ketama_nodes() -> Vec<WeightedNode> {
    KETAMA
        .lines()
        .filter(|l| l.starts_with("#   "))
        .flat_map(|l| l[1..].split_whitespace())
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The nodes in a go.serversets vector file (`# nodes: a,b,...`).
fn go_nodes(text: &str) -> Vec<WeightedNode> {
    text.lines()
        .find_map(|l| l.strip_prefix("# nodes: "))
        .unwrap()
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect()
}

/// `(key, expected)` from data lines, where expected is the last column.
fn vectors(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let key = l.split(' ').next().unwrap();
            (key, l.rsplit(' ').next().unwrap())
        })
        .collect()
}

/// `n` distinct nodes on port 11211 or 11212 (ketama identifies the first
/// by host alone, the second by `host:port`).
fn pool(n: usize, seed: u64) -> Vec<HostPort> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let addr = format!(
            "10.{}.{}.{}:{}",
            rng.u8(..),
            rng.u8(..),
            rng.u8(1..255),
            11211 + u16::from(rng.bool())
        );
        if seen.insert(addr.clone()) {
            out.push(addr.parse().unwrap());
        }
    }
    out
}

fn ring_of(kind: RingKind, nodes: &[(HostPort, f64)]) -> Ring {
    let nodes = nodes
        .iter()
        .map(|(addr, w)| WeightedNode::new(addr.clone(), *w).unwrap());
    Ring::builder().kind(kind).build_nodes(nodes).unwrap()
}

fn kind() -> impl Strategy<Value = RingKind> {
    prop_oneof![Just(RingKind::Ketama), Just(RingKind::GoMcset)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ketama_vectors_hold_for_any_node_order(
        nodes in Just(ketama_nodes()).prop_shuffle(),
        ids in proptest::collection::vec(any::<u32>(), 8),
    ) {
        // Explicit nodes, and members with weight metadata and arbitrary
        // znode names, in the shuffled order.
        let by_nodes = Ring::ketama(nodes.clone());
        let members = nodes.iter().zip(&ids).map(|(n, id)| {
            Member::builder(MemberId::new(format!("member_{id:010}")), n.addr().clone())
                .metadata("weight", n.weight().to_string())
                .build()
        });
        let by_members = Ring::builder().build(members);
        for (key, node) in vectors(KETAMA) {
            prop_assert_eq!(by_nodes.pick(key).unwrap().identifier(), node, "key {}", key);
            prop_assert_eq!(by_members.pick(key).unwrap().identifier(), node, "key {}", key);
        }
    }

    #[test]
    fn go_mcset_vectors_hold_for_any_node_order(
        three in Just(go_nodes(GO_3_NODES)).prop_shuffle(),
        colliding in Just(go_nodes(GO_COLLISIONS)).prop_shuffle(),
    ) {
        for (nodes, text) in [(three, GO_3_NODES), (colliding, GO_COLLISIONS)] {
            let ring = Ring::builder().kind(RingKind::GoMcset).build_nodes(nodes).unwrap();
            for (key, node) in vectors(text) {
                prop_assert_eq!(ring.pick(key).unwrap().addr().to_string(), node, "key {}", key);
            }
        }
    }
}

/// Keys counted per test: enough that counting noise stays small next to
/// the ring's own unevenness.
const REMOVAL_KEYS: u32 = 20_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Removing one of N equal nodes moves exactly the keys it held, and
    /// those are 1/N of all keys within ±50%.
    ///
    /// Its share has a relative deviation of about 1/sqrt(160) = 7.9%
    /// (ketama; 8.2% for 150 go-mcset points) from the ring, plus
    /// sqrt(N / 20,000) <= 5% from counting, so ±50% is more than five
    /// standard deviations.
    #[test]
    fn removing_one_of_n_nodes_moves_only_its_keys_about_one_nth(
        kind in kind(),
        n in 2usize..=50,
        seed in any::<u64>(),
        gone in any::<prop::sample::Index>(),
        prefix in "[a-z]{0,8}",
    ) {
        let nodes: Vec<(HostPort, f64)> = pool(n, seed).into_iter().map(|a| (a, 1.0)).collect();
        let gone = gone.index(n);
        let before = ring_of(kind, &nodes);
        let mut rest = nodes.clone();
        let removed = rest.remove(gone).0;
        let after = ring_of(kind, &rest);
        let mut moved = 0u32;
        for i in 0..REMOVAL_KEYS {
            let key = format!("{prefix}:{i}");
            let old = before.pick(&key).unwrap().addr();
            let new = after.pick(&key).unwrap().addr();
            if old != new {
                prop_assert_eq!(old, &removed, "{} moved off a surviving node", key);
                moved += 1;
            } else {
                prop_assert_ne!(old, &removed);
            }
        }
        let fraction = f64::from(moved) / f64::from(REMOVAL_KEYS);
        let ideal = 1.0 / n as f64;
        prop_assert!(
            (0.5 * ideal..=1.5 * ideal).contains(&fraction),
            "{:?}: removing 1 of {} moved {:.4} of keys, ideal {:.4}", kind, n, fraction, ideal
        );
    }
}

/// Keys counted for the share test.
const SHARE_KEYS: u32 = 100_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Each node's share of 100,000 keys is within 5 percentage points of
    /// its share of the total weight (go-mcset: of the node count).
    ///
    /// Pools have 10 to 40 nodes weighted 1 to 3 (ketama), so the ring has
    /// M >= 1,600 points and a node's share p <= 0.25: its deviation is at
    /// most sqrt(0.25 * 0.75 / 1600) + sqrt(0.25 * 0.75 / 100,000) = 1.2
    /// points, and 5 points is four standard deviations or more. Smaller
    /// pools spread keys less evenly (2 equal nodes: 2.8 points), which is
    /// ketama's nature, not a defect.
    #[test]
    fn key_shares_follow_the_weights_within_five_points(
        kind in kind(),
        n in 10usize..=40,
        seed in any::<u64>(),
        weights in proptest::collection::vec(1u8..=3, 40),
        prefix in "[a-z]{0,8}",
    ) {
        let nodes: Vec<(HostPort, f64)> = pool(n, seed)
            .into_iter()
            .zip(&weights)
            .map(|(a, &w)| (a, if kind == RingKind::Ketama { f64::from(w) } else { 1.0 }))
            .collect();
        let ring = ring_of(kind, &nodes);
        let total: f64 = nodes.iter().map(|(_, w)| w).sum();
        let mut counts = std::collections::HashMap::new();
        for i in 0..SHARE_KEYS {
            let key = format!("{prefix}/{i}");
            *counts.entry(ring.pick(&key).unwrap().addr().clone()).or_insert(0u32) += 1;
        }
        for (addr, weight) in &nodes {
            let share = f64::from(counts.get(addr).copied().unwrap_or(0)) / f64::from(SHARE_KEYS);
            let want = weight / total;
            prop_assert!(
                (share - want).abs() <= 0.05,
                "{:?}: {} (weight {}) got {:.4} of keys, weight share {:.4}",
                kind, addr, weight, share, want
            );
        }
    }
}

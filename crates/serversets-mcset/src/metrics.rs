//! A McSet's metrics through the `metrics` facade (no recorder installed:
//! every update is a no-op). See `docs/metrics.md`.
//!
//! Handles are registered once: the set's when it is built, the per-node
//! pick counters when a ring is installed ([`Routing`](crate::routing::Routing)),
//! so no metric is looked up by name on the pick path.

use std::sync::Arc;

use metrics::{Counter, Gauge};

/// The `set` label when none was given
/// ([`McSetBuilder::metrics_set`](crate::McSetBuilder::metrics_set)).
pub(crate) const UNNAMED: &str = "unnamed";

/// A McSet's metrics, labelled `set`; registered when it is built.
pub(crate) struct McMetrics {
    pub(crate) name: Arc<str>,
    /// Whether each pick adds to its node's `serversets_mc_picks_total`
    /// ([`McSetBuilder::count_picks`](crate::McSetBuilder::count_picks)).
    pub(crate) count_picks: bool,
    /// `serversets_mc_rebuilds_total`: rings built and installed after a
    /// membership change.
    pub(crate) rebuilds: Counter,
    /// `serversets_mc_rebuild_failures_total`: rebuilds that failed (the
    /// previous ring stays).
    pub(crate) rebuild_failures: Counter,
    /// `serversets_mc_ring_nodes`: nodes on the ring now.
    pub(crate) nodes: Gauge,
    /// `serversets_mc_ring_points`: points on the continuum now.
    pub(crate) points: Gauge,
}

impl McMetrics {
    pub(crate) fn new(name: Arc<str>, count_picks: bool) -> McMetrics {
        metrics::describe_counter!(
            "serversets_mc_rebuilds_total",
            "Memcache rings rebuilt and installed after a membership change"
        );
        metrics::describe_counter!(
            "serversets_mc_rebuild_failures_total",
            "Memcache ring rebuilds that failed (the previous ring stays in service)"
        );
        metrics::describe_gauge!("serversets_mc_ring_nodes", "Nodes on the memcache ring");
        metrics::describe_gauge!(
            "serversets_mc_ring_points",
            "Points on the memcache ring's continuum"
        );
        if count_picks {
            metrics::describe_counter!(
                "serversets_mc_picks_total",
                "Keys routed to each memcache ring node (McSetBuilder::count_picks)"
            );
        }
        let set = name.to_string();
        McMetrics {
            rebuilds: metrics::counter!("serversets_mc_rebuilds_total", "set" => set.clone()),
            rebuild_failures: metrics::counter!("serversets_mc_rebuild_failures_total", "set" => set.clone()),
            nodes: metrics::gauge!("serversets_mc_ring_nodes", "set" => set.clone()),
            points: metrics::gauge!("serversets_mc_ring_points", "set" => set),
            name,
            count_picks,
        }
    }

    /// One `serversets_mc_picks_total{set,endpoint}` counter per node of
    /// `ring`, by node index, when picks are counted. The label keeps its
    /// published name `endpoint`; its value is the node's address.
    pub(crate) fn pick_counters(&self, ring: &crate::Ring) -> Option<Box<[Counter]>> {
        self.count_picks.then(|| {
            ring.nodes()
                .iter()
                .map(|node| {
                    metrics::counter!(
                        "serversets_mc_picks_total",
                        "set" => self.name.to_string(),
                        "endpoint" => node.addr().to_string()
                    )
                })
                .collect()
        })
    }

    /// Sets the ring-size gauges to `ring`'s.
    pub(crate) fn ring_installed(&self, ring: &crate::Ring) {
        self.nodes.set(ring.len() as f64);
        self.points.set(ring.point_count() as f64);
    }
}

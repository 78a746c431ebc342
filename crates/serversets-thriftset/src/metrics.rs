//! What a [`ThriftSet`](crate::ThriftSet) reports through the `metrics`
//! facade (no recorder installed: every update is a no-op).
//!
//! Handles are registered once: the set's when it is built, a member's
//! when it joins. The pool updates them under the lock it already holds, each
//! update an atomic store or add.

use std::sync::Arc;

use metrics::{Counter, Gauge};
use serversets_core::HostPort;

/// The `set` label when none was given ([`Builder::metrics_set`](crate::ThriftSetBuilder::metrics_set)).
pub(crate) const UNNAMED: &str = "unnamed";

/// Metrics of the whole pool, labelled `set`.
pub(crate) struct PoolMetrics {
    pub(crate) name: Arc<str>,
    /// `serversets_thrift_waiting`: callers waiting for a free slot.
    pub(crate) waiting: Gauge,
    /// `serversets_thrift_checkout_timeouts_total`: checkouts that found
    /// every member full until the checkout timeout.
    pub(crate) timeouts: Counter,
    /// `serversets_thrift_hosts` (the name predates the word "member";
    /// dashboards use it): members in the pool now.
    pub(crate) members: Gauge,
}

impl PoolMetrics {
    pub(crate) fn new(name: &Arc<str>) -> PoolMetrics {
        metrics::describe_gauge!(
            "serversets_thrift_waiting",
            "Callers of a ThriftSet waiting for a free connection slot"
        );
        metrics::describe_counter!(
            "serversets_thrift_checkout_timeouts_total",
            "Checkouts that found every member at its max_active limit until the checkout timeout"
        );
        metrics::describe_gauge!("serversets_thrift_hosts", "Members in a ThriftSet's pool");
        metrics::describe_gauge!(
            "serversets_thrift_active",
            "Connections to a member in flight: checked out, or being opened"
        );
        metrics::describe_gauge!(
            "serversets_thrift_idle",
            "Open, unused connections to a member"
        );
        metrics::describe_counter!(
            "serversets_thrift_checkouts_total",
            "Connections to a member handed out"
        );
        metrics::describe_counter!(
            "serversets_thrift_connect_failures_total",
            "Connections to a member that could not be opened"
        );
        metrics::describe_counter!(
            "serversets_thrift_ejections_total",
            "Times a member was ejected after consecutive failures"
        );
        let set = name.to_string();
        PoolMetrics {
            name: name.clone(),
            waiting: metrics::gauge!("serversets_thrift_waiting", "set" => set.clone()),
            timeouts: metrics::counter!("serversets_thrift_checkout_timeouts_total", "set" => set.clone()),
            members: metrics::gauge!("serversets_thrift_hosts", "set" => set),
        }
    }
}

/// Metrics of one member, labelled `set` and `endpoint` (its address,
/// `host:port`; the label name is shared with every crate's metrics).
pub(crate) struct MemberMetrics {
    /// `serversets_thrift_active`: connections in flight.
    in_flight: Gauge,
    idle: Gauge,
    pub(crate) checkouts: Counter,
    pub(crate) connect_failures: Counter,
    pub(crate) ejections: Counter,
}

impl MemberMetrics {
    pub(crate) fn new(pool: &PoolMetrics, addr: &HostPort) -> MemberMetrics {
        let labels = [
            ("set", pool.name.to_string()),
            ("endpoint", addr.to_string()),
        ];
        MemberMetrics {
            in_flight: metrics::gauge!("serversets_thrift_active", &labels),
            idle: metrics::gauge!("serversets_thrift_idle", &labels),
            checkouts: metrics::counter!("serversets_thrift_checkouts_total", &labels),
            connect_failures: metrics::counter!(
                "serversets_thrift_connect_failures_total",
                &labels
            ),
            ejections: metrics::counter!("serversets_thrift_ejections_total", &labels),
        }
    }

    /// Sets the member's gauges to its counts now.
    pub(crate) fn counts(&self, in_flight: usize, idle: usize) {
        self.in_flight.set(in_flight as f64);
        self.idle.set(idle as f64);
    }
}

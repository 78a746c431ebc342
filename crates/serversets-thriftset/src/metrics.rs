//! What a [`ThriftSet`](crate::ThriftSet) reports through the `metrics`
//! facade (no recorder installed: every update is a no-op).
//!
//! Handles are registered once: the set's when it is built, a host's when
//! it joins. The pool updates them under the lock it already holds, each
//! update an atomic store or add.

use std::sync::Arc;

use metrics::{Counter, Gauge};
use serversets_core::HostPort;

/// The `set` label when none was given ([`Builder::metrics_set`](crate::Builder::metrics_set)).
pub(crate) const UNNAMED: &str = "unnamed";

/// Metrics of the whole pool, labelled `set`.
pub(crate) struct PoolMetrics {
    pub(crate) name: Arc<str>,
    /// `serversets_thrift_waiting`: callers waiting for a free slot.
    pub(crate) waiting: Gauge,
    /// `serversets_thrift_checkout_timeouts_total`: checkouts that found
    /// every host full until the checkout timeout.
    pub(crate) timeouts: Counter,
    /// `serversets_thrift_hosts`: hosts in the pool now.
    pub(crate) hosts: Gauge,
}

impl PoolMetrics {
    pub(crate) fn new(name: &Arc<str>) -> PoolMetrics {
        metrics::describe_gauge!(
            "serversets_thrift_waiting",
            "Callers of a ThriftSet waiting for a free connection slot"
        );
        metrics::describe_counter!(
            "serversets_thrift_checkout_timeouts_total",
            "Checkouts that found every host at its active limit until the checkout timeout"
        );
        metrics::describe_gauge!("serversets_thrift_hosts", "Hosts in a ThriftSet's pool");
        metrics::describe_gauge!(
            "serversets_thrift_active",
            "Connections to a host checked out, or being opened"
        );
        metrics::describe_gauge!(
            "serversets_thrift_idle",
            "Open, unused connections to a host"
        );
        metrics::describe_counter!(
            "serversets_thrift_checkouts_total",
            "Connections to a host handed out"
        );
        metrics::describe_counter!(
            "serversets_thrift_connect_failures_total",
            "Connections to a host that could not be opened"
        );
        metrics::describe_counter!(
            "serversets_thrift_ejections_total",
            "Times a host was ejected after consecutive failures"
        );
        let set = name.to_string();
        PoolMetrics {
            name: name.clone(),
            waiting: metrics::gauge!("serversets_thrift_waiting", "set" => set.clone()),
            timeouts: metrics::counter!("serversets_thrift_checkout_timeouts_total", "set" => set.clone()),
            hosts: metrics::gauge!("serversets_thrift_hosts", "set" => set),
        }
    }
}

/// Metrics of one host, labelled `set` and `endpoint` (`host:port`).
pub(crate) struct HostMetrics {
    active: Gauge,
    idle: Gauge,
    pub(crate) checkouts: Counter,
    pub(crate) connect_failures: Counter,
    pub(crate) ejections: Counter,
}

impl HostMetrics {
    pub(crate) fn new(pool: &PoolMetrics, addr: &HostPort) -> HostMetrics {
        let labels = [
            ("set", pool.name.to_string()),
            ("endpoint", addr.to_string()),
        ];
        HostMetrics {
            active: metrics::gauge!("serversets_thrift_active", &labels),
            idle: metrics::gauge!("serversets_thrift_idle", &labels),
            checkouts: metrics::counter!("serversets_thrift_checkouts_total", &labels),
            connect_failures: metrics::counter!(
                "serversets_thrift_connect_failures_total",
                &labels
            ),
            ejections: metrics::counter!("serversets_thrift_ejections_total", &labels),
        }
    }

    /// Sets the host's gauges to its counts now.
    pub(crate) fn counts(&self, active: usize, idle: usize) {
        self.active.set(active as f64);
        self.idle.set(idle as f64);
    }
}

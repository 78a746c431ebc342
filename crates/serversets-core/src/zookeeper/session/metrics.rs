//! A session's metrics: its state, and how often it opens, reconnects,
//! expires and fails to connect.

use super::Health;

/// The label value of a [`Health`] in `serversets_session_state{state}`.
fn health_label(health: Health) -> &'static str {
    match health {
        Health::Connecting => "connecting",
        Health::Connected => "connected",
        Health::Disconnected => "disconnected",
        Health::Expired => "expired",
        Health::AuthFailed => "auth_failed",
    }
}

/// A session's metrics, labelled `zk` with its hosts (without chroot).
/// Registered once per session, so an update is an atomic store or add.
pub(super) struct SessionMetrics {
    /// `serversets_session_state{zk,state}`: 1 for the state now, 0 for
    /// the others.
    pub(super) states: [(Health, metrics::Gauge); 5],
    /// `serversets_session_established_total`: sessions opened (the first,
    /// and a new one after each expiry).
    pub(super) established: metrics::Counter,
    /// `serversets_session_reconnects_total`: connections restored to the
    /// same session after a disconnect.
    pub(super) reconnects: metrics::Counter,
    /// `serversets_session_expiries_total`: sessions that expired (or that
    /// the server closed).
    pub(super) expiries: metrics::Counter,
    /// `serversets_session_connect_failures_total`: attempts to open a
    /// session that failed.
    pub(super) connect_failures: metrics::Counter,
}

impl SessionMetrics {
    pub(super) fn new(hosts: &str) -> SessionMetrics {
        metrics::describe_gauge!(
            "serversets_session_state",
            "ZooKeeper session state: 1 for the current state, 0 for the others"
        );
        metrics::describe_counter!(
            "serversets_session_established_total",
            "ZooKeeper sessions opened (the first, and one after each expiry)"
        );
        metrics::describe_counter!(
            "serversets_session_reconnects_total",
            "Connections restored to the same ZooKeeper session after a disconnect"
        );
        metrics::describe_counter!(
            "serversets_session_expiries_total",
            "ZooKeeper sessions that expired or were closed by the server"
        );
        metrics::describe_counter!(
            "serversets_session_connect_failures_total",
            "Attempts to open a ZooKeeper session that failed"
        );
        let zk = hosts.to_string();
        let state = |h: Health| {
            let labels = [("zk", zk.clone()), ("state", health_label(h).to_string())];
            (h, metrics::gauge!("serversets_session_state", &labels))
        };
        let this = SessionMetrics {
            states: [
                state(Health::Connecting),
                state(Health::Connected),
                state(Health::Disconnected),
                state(Health::Expired),
                state(Health::AuthFailed),
            ],
            established: metrics::counter!("serversets_session_established_total", "zk" => zk.clone()),
            reconnects: metrics::counter!("serversets_session_reconnects_total", "zk" => zk.clone()),
            expiries: metrics::counter!("serversets_session_expiries_total", "zk" => zk.clone()),
            connect_failures: metrics::counter!("serversets_session_connect_failures_total", "zk" => zk),
        };
        this.health(Health::Connecting);
        this
    }

    pub(super) fn health(&self, now: Health) {
        for (h, gauge) in &self.states {
            gauge.set(if *h == now { 1.0 } else { 0.0 });
        }
    }
}

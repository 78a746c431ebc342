//! A registration's metrics: the state it is in, creates and re-creates,
//! and how its health checks fare.

use super::RegistrationState;

/// The `state` label of `serversets_registrations`, by state.
const STATE_LABELS: [&str; 4] = ["pending", "registered", "unhealthy", "closed"];

fn state_index(state: &RegistrationState) -> usize {
    match state {
        RegistrationState::Pending => 0,
        RegistrationState::Registered(_) => 1,
        RegistrationState::Unhealthy(_) => 2,
        RegistrationState::Closed => 3,
    }
}

/// A registration's metrics, labelled `set` (its path) and `endpoint`
/// (the member's address). Registered once per registration, so an update
/// is an atomic add.
pub(super) struct RegistrationMetrics {
    /// `serversets_registrations{state}`: registrations in each state; this
    /// one counts 1 in the state it is in, until it is dropped.
    pub(super) states: [metrics::Gauge; 4],
    /// Index into `states` of the state counted now.
    pub(super) current: std::sync::atomic::AtomicUsize,
    /// `serversets_registration_creates_total`: members created (or a lost
    /// create's znode adopted).
    pub(super) creates: metrics::Counter,
    /// `serversets_registration_reregistrations_total`: creates after the
    /// first (a new session, a deleted member, a passing check again).
    pub(super) reregistrations: metrics::Counter,
    /// `serversets_registration_ping_seconds`: how long each health check
    /// took.
    pub(super) ping: metrics::Histogram,
    /// `serversets_registration_ping_failures_total`: health checks that
    /// failed (error, panic or timeout).
    pub(super) ping_failures: metrics::Counter,
}

impl RegistrationMetrics {
    pub(super) fn new(set: &str, endpoint: &str) -> RegistrationMetrics {
        metrics::describe_gauge!(
            "serversets_registrations",
            "Registrations in each state: pending, registered, unhealthy, closed"
        );
        metrics::describe_counter!(
            "serversets_registration_creates_total",
            "Members a registration created (or adopted after a lost create)"
        );
        metrics::describe_counter!(
            "serversets_registration_reregistrations_total",
            "Members a registration created again after its first (new session, deletion, check passing again)"
        );
        metrics::describe_histogram!(
            "serversets_registration_ping_seconds",
            metrics::Unit::Seconds,
            "How long a registration's health check took"
        );
        metrics::describe_counter!(
            "serversets_registration_ping_failures_total",
            "Health checks of a registration that failed (error, panic or timeout)"
        );
        let labels = [("set", set.to_string()), ("endpoint", endpoint.to_string())];
        let states = STATE_LABELS.map(|state| {
            let mut with_state = labels.to_vec();
            with_state.push(("state", state.to_string()));
            metrics::gauge!("serversets_registrations", &with_state)
        });
        states[0].increment(1.0);
        RegistrationMetrics {
            states,
            current: std::sync::atomic::AtomicUsize::new(0),
            creates: metrics::counter!("serversets_registration_creates_total", &labels),
            reregistrations: metrics::counter!(
                "serversets_registration_reregistrations_total",
                &labels
            ),
            ping: metrics::histogram!("serversets_registration_ping_seconds", &labels),
            ping_failures: metrics::counter!(
                "serversets_registration_ping_failures_total",
                &labels
            ),
        }
    }

    /// Counts the registration in `to`'s state instead of the one before.
    pub(super) fn moved(&self, to: &RegistrationState) {
        let to = state_index(to);
        let from = self.current.swap(to, std::sync::atomic::Ordering::Relaxed);
        if from != to {
            self.states[from].decrement(1.0);
            self.states[to].increment(1.0);
        }
    }
}

impl Drop for RegistrationMetrics {
    fn drop(&mut self) {
        let current = self.current.load(std::sync::atomic::Ordering::Relaxed);
        self.states[current].decrement(1.0);
    }
}

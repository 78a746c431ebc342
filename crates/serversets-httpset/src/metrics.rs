//! What an [`HttpSet`](crate::HttpSet) reports through the `metrics`
//! facade (no recorder installed: every update is a no-op).
//!
//! Handles are registered once: the set's when it is built, a member's
//! when it joins the table. A request only adds to handles it already
//! holds, so no metric is looked up by name on the request path.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram};
use serversets_core::HostPort;

use crate::Error;

/// The `set` label when none was given ([`Builder::metrics_set`](crate::Builder::metrics_set)).
pub(crate) const UNNAMED: &str = "unnamed";

/// How a request ended, as the `outcome` label of `serversets_http_requests_total`.
const OUTCOMES: [&str; 6] = [
    "response",
    "no_servers",
    "connect",
    "request",
    "timeout",
    "invalid_uri",
];

/// Metrics of the whole set, labelled `set`.
pub(crate) struct SetMetrics {
    /// The `set` label, for members that join later and for spans.
    pub(crate) name: Arc<str>,
    /// `serversets_http_requests_total{outcome}`, by [`OUTCOMES`].
    requests: [Counter; 6],
    /// `serversets_http_endpoints`: members in the table now (the metric
    /// keeps its published name).
    pub(crate) members: Gauge,
}

impl SetMetrics {
    pub(crate) fn new(name: &Arc<str>) -> SetMetrics {
        metrics::describe_counter!(
            "serversets_http_requests_total",
            "Requests through an HttpSet, by outcome (response, or the error's kind)"
        );
        metrics::describe_gauge!(
            "serversets_http_endpoints",
            "Members an HttpSet balances over now"
        );
        metrics::describe_counter!(
            "serversets_http_attempts_total",
            "Attempts sent to a member (first tries and retries)"
        );
        metrics::describe_counter!(
            "serversets_http_retries_total",
            "Attempts at a member that were followed by a retry elsewhere"
        );
        metrics::describe_counter!(
            "serversets_http_attempt_failures_total",
            "Attempts at a member that failed: kind=connect, timeout or request"
        );
        metrics::describe_counter!(
            "serversets_http_ejections_total",
            "Times a member was ejected after consecutive failures"
        );
        metrics::describe_histogram!(
            "serversets_http_attempt_seconds",
            metrics::Unit::Seconds,
            "From sending an attempt to its response head, for answered attempts"
        );
        let set = name.to_string();
        SetMetrics {
            name: name.clone(),
            requests: OUTCOMES.map(|outcome| {
                metrics::counter!("serversets_http_requests_total", "set" => set.clone(), "outcome" => outcome)
            }),
            members: metrics::gauge!("serversets_http_endpoints", "set" => set),
        }
    }

    /// Counts one finished request.
    pub(crate) fn finished<T>(&self, result: &Result<T, Error>) {
        let outcome = match result {
            Ok(_) => 0,
            Err(Error::NoMembers { .. }) => 1,
            Err(Error::Connect { .. } | Error::ConnectAfterSent { .. }) => 2,
            Err(Error::Request { .. }) => 3,
            Err(Error::Timeout { .. }) => 4,
            Err(Error::InvalidUri { .. }) => 5,
        };
        self.requests[outcome].increment(1);
    }
}

/// How an attempt failed, as the `kind` label of
/// `serversets_http_attempt_failures_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Failure {
    Connect = 0,
    Timeout = 1,
    Request = 2,
}

/// Metrics of one member, labelled `set` and `endpoint` (its address,
/// `host:port`; the label keeps its published name).
pub(crate) struct MemberMetrics {
    pub(crate) attempts: Counter,
    pub(crate) retries: Counter,
    failures: [Counter; 3],
    pub(crate) ejections: Counter,
    pub(crate) latency: Histogram,
}

impl MemberMetrics {
    pub(crate) fn new(set: &SetMetrics, addr: &HostPort) -> MemberMetrics {
        let labels = [
            ("set", set.name.to_string()),
            ("endpoint", addr.to_string()),
        ];
        let failure = |kind: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("kind", kind.to_string()));
            metrics::counter!("serversets_http_attempt_failures_total", &labels)
        };
        MemberMetrics {
            attempts: metrics::counter!("serversets_http_attempts_total", &labels),
            retries: metrics::counter!("serversets_http_retries_total", &labels),
            failures: [failure("connect"), failure("timeout"), failure("request")],
            ejections: metrics::counter!("serversets_http_ejections_total", &labels),
            latency: metrics::histogram!("serversets_http_attempt_seconds", &labels),
        }
    }

    pub(crate) fn failed(&self, how: Failure) {
        self.failures[how as usize].increment(1);
    }
}

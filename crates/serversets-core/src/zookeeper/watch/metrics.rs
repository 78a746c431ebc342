//! A watch's metrics: what it serves and rejects, how often it re-reads,
//! and how long and how many reads a change takes to reach its snapshot.

use super::cache::{DRAINED, NOT_A_MEMBER};
use super::{lock, Ctx};
use crate::zookeeper::read::Reader;

/// Why a child is in `rejected()`, as the `reason` label of
/// `serversets_watch_rejected`.
const REJECTION_REASONS: [&str; 6] = [
    "malformed",
    "not_served",
    "drained",
    "not_a_member",
    "unreadable",
    "invalid_vector",
];

/// The `reason` label (an index into [`REJECTION_REASONS`]) of a
/// `rejected()` entry.
fn rejection_reason(why: &str) -> usize {
    if why.starts_with("malformed: ") {
        0
    } else if why == DRAINED {
        2
    } else if why == NOT_A_MEMBER {
        3
    } else if why.starts_with("unreadable: ") {
        4
    } else if why.starts_with("invalid vector: ") {
        5
    } else {
        1
    }
}

/// A watch's metrics, labelled `set` with its path. Registered once per
/// watch, so an update is an atomic store or add.
pub(super) struct WatchMetrics {
    /// `serversets_watch_members`: members served now.
    pub(super) members: metrics::Gauge,
    /// `serversets_watch_rejected{reason}`: children present but not
    /// served, by [`REJECTION_REASONS`].
    pub(super) rejected: [metrics::Gauge; 6],
    /// `serversets_watch_resyncs_total`: full re-reads.
    pub(super) resyncs: metrics::Counter,
    /// `serversets_watch_malformed_total`: malformed members read.
    pub(super) malformed: metrics::Counter,
    /// `serversets_watch_propagation_seconds`: from a notification to the
    /// snapshot that includes it.
    pub(super) propagation: metrics::Histogram,
    /// `serversets_watch_reads_per_change`: ZooKeeper read requests one
    /// published change took.
    pub(super) reads_per_change: metrics::Histogram,
}

/// A change under way: when its first notification arrived, and the read
/// requests sent before it.
pub(super) struct Change {
    pub(super) at: std::time::Instant,
    pub(super) reads: u64,
}

impl WatchMetrics {
    pub(super) fn new(path: &str) -> WatchMetrics {
        metrics::describe_gauge!("serversets_watch_members", "Members a watch serves now");
        metrics::describe_gauge!(
            "serversets_watch_rejected",
            "Children of a watched set present but not served, by reason"
        );
        metrics::describe_counter!(
            "serversets_watch_resyncs_total",
            "Full re-reads of a watched set (start, reconnects, new sessions)"
        );
        metrics::describe_counter!(
            "serversets_watch_malformed_total",
            "Malformed members read by a watch"
        );
        metrics::describe_histogram!(
            "serversets_watch_propagation_seconds",
            metrics::Unit::Seconds,
            "From a ZooKeeper notification to the watch's snapshot that includes it"
        );
        metrics::describe_histogram!(
            "serversets_watch_reads_per_change",
            "ZooKeeper read requests one published change of a watch took"
        );
        let set = path.to_string();
        let rejected = REJECTION_REASONS.map(|reason| {
            metrics::gauge!("serversets_watch_rejected", "set" => set.clone(), "reason" => reason)
        });
        WatchMetrics {
            members: metrics::gauge!("serversets_watch_members", "set" => set.clone()),
            rejected,
            resyncs: metrics::counter!("serversets_watch_resyncs_total", "set" => set.clone()),
            malformed: metrics::counter!("serversets_watch_malformed_total", "set" => set.clone()),
            propagation: metrics::histogram!("serversets_watch_propagation_seconds", "set" => set.clone()),
            reads_per_change: metrics::histogram!("serversets_watch_reads_per_change", "set" => set),
        }
    }

    /// A change starts with this notification.
    pub(super) fn change(reader: &Reader) -> Change {
        Change {
            at: std::time::Instant::now(),
            reads: reader.requests(),
        }
    }

    /// `change` is published: its time and reads, and the gauges.
    pub(super) fn published(&self, ctx: &Ctx, change: Change) {
        self.propagation.record(change.at.elapsed().as_secs_f64());
        let reads = ctx.reader.requests().saturating_sub(change.reads);
        self.reads_per_change.record(reads as f64);
        self.refresh(ctx);
    }

    /// Sets the gauges from the snapshot and `rejected()`.
    pub(super) fn refresh(&self, ctx: &Ctx) {
        self.members.set(ctx.publisher.snapshot().len() as f64);
        let mut counts = [0usize; 6];
        for why in lock(&ctx.rejected).values() {
            counts[rejection_reason(why)] += 1;
        }
        for (gauge, n) in self.rejected.iter().zip(counts) {
            gauge.set(n as f64);
        }
    }
}

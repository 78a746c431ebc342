//! `--metrics-addr HOST:PORT` on `watch` and `register`: the process's
//! metrics (every `serversets_*` metric the libraries emit; see
//! `docs/metrics.md`) served as Prometheus text over plain HTTP, on any
//! path (`/metrics` by convention).

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::Error;

/// Buckets of every `*_seconds` histogram: 100 µs (a notification on a
/// quiet LAN) to 10 s (a check or request near its timeout).
const SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets of `serversets_watch_reads_per_change`.
const READS: [f64; 8] = [0.0, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 1000.0];

/// Installs the Prometheus recorder and starts its HTTP listener on the
/// current tokio runtime. Must run before any server set is used, so that
/// every metric registers with it.
///
/// # Errors
///
/// [`Error::Metrics`] when the address cannot be bound (in use, not
/// local) or a recorder is already installed in this process.
pub(crate) fn serve(addr: SocketAddr) -> Result<(), Error> {
    let failed = |source| Error::Metrics { addr, source };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .map_err(failed)?
        .set_buckets_for_metric(
            Matcher::Full("serversets_watch_reads_per_change".into()),
            &READS,
        )
        .map_err(failed)?
        .install()
        .map_err(failed)?;
    tracing::info!(%addr, "serving metrics (Prometheus text) over HTTP");
    Ok(())
}

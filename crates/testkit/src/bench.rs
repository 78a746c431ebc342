//! The record format every `cargo xtask bench` benchmark emits.
//!
//! A benchmark binary measures, then calls [`emit`] once per measurement.
//! Records go as JSON lines to the file named by `SERVERSETS_BENCH_OUT`
//! (set by `cargo xtask bench`), or to stdout when it is unset. The xtask
//! joins each record with its baseline (same params) to compute the ratio.

use std::io::Write;
use std::time::{Duration, Instant};

/// One measurement: a distribution summarised as median and p99.
#[derive(Debug, Clone)]
pub struct Record {
    /// Dotted name, crate first: `core.propagation`.
    pub name: String,
    /// Parameters, e.g. `{"members": 1000}`.
    pub params: serde_json::Value,
    /// Unit of `median` and `p99`: `us`, `ns`, `ms`, `bytes`, `fraction`, ...
    pub unit: String,
    /// Median of the samples.
    pub median: f64,
    /// 99th percentile of the samples.
    pub p99: f64,
    /// Name of the measurement this one is compared with (same params), if any.
    pub baseline: Option<String>,
}

impl Record {
    /// A record from raw samples.
    pub fn from_samples(
        name: &str,
        params: serde_json::Value,
        unit: &str,
        samples: &[f64],
        baseline: Option<&str>,
    ) -> Record {
        let (median, p99) = summarize(samples);
        Record {
            name: name.to_string(),
            params,
            unit: unit.to_string(),
            median,
            p99,
            baseline: baseline.map(str::to_string),
        }
    }
}

/// Median and p99 of the samples (0 for none).
pub fn summarize(samples: &[f64]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.99))
}

/// Writes one record (see the module docs for where it goes).
pub fn emit(record: &Record) {
    let line = serde_json::json!({
        "name": record.name,
        "params": record.params,
        "unit": record.unit,
        "median": record.median,
        "p99": record.p99,
        "baseline": record.baseline,
    })
    .to_string();
    match std::env::var_os("SERVERSETS_BENCH_OUT") {
        Some(path) => {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = written {
                eprintln!("bench: cannot write {}: {e}", path.to_string_lossy());
            }
        }
        None => println!("{line}"),
    }
    eprintln!(
        "bench {:<32} {:<28} median {:>12.3} {} p99 {:>12.3}",
        record.name,
        record.params.to_string(),
        record.median,
        record.unit,
        record.p99
    );
}

/// True when `name` passes the filter in `SERVERSETS_BENCH_FILTER` (a name
/// prefix; everything passes when unset). Benchmarks check this before
/// doing expensive set-up.
pub fn wanted(name: &str) -> bool {
    match std::env::var("SERVERSETS_BENCH_FILTER") {
        Ok(prefix) if !prefix.is_empty() => name.starts_with(&prefix) || prefix.starts_with(name),
        _ => true,
    }
}

/// Times `batch` calls of `f` per sample and returns nanoseconds per call,
/// one value per sample, after a warm-up sample.
pub fn time_per_call<F: FnMut()>(samples: usize, batch: usize, mut f: F) -> Vec<f64> {
    let batch = batch.max(1);
    let mut run = || {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        start.elapsed().as_nanos() as f64 / batch as f64
    };
    run();
    (0..samples).map(|_| run()).collect()
}

/// A duration as fractional microseconds.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_picks_median_and_p99() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let (m, p) = summarize(&samples);
        assert!((50.0..=51.0).contains(&m));
        assert!((98.0..=100.0).contains(&p));
        assert_eq!(summarize(&[]), (0.0, 0.0));
    }
}

//! `cargo xtask bench [PREFIX]`: runs every `[[bench]]` target of the
//! workspace crates, collects the records they emit (see `testkit::bench`),
//! joins each with its baseline, and writes `target/bench/results.json` and
//! `target/bench/report.md` with one SVG chart per benchmark.

pub mod model;
pub mod report;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::proc;
use crate::ui::{human, Ui};
use crate::{cargo, project_root, target_dir, Result};

/// A benchmark target of a workspace package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub package: String,
    pub name: String,
    /// The target's `required-features`, passed to `cargo bench --features`.
    pub features: Vec<String>,
}

/// The list under `key` in `v`, or none.
fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The bench targets in `cargo metadata --no-deps` output.
pub fn bench_targets(metadata: &Value) -> Vec<Target> {
    let mut found = Vec::new();
    for pkg in array(metadata, "packages") {
        let Some(package) = pkg.get("name").and_then(Value::as_str) else {
            continue;
        };
        for t in array(pkg, "targets") {
            let is_bench = t
                .get("kind")
                .and_then(Value::as_array)
                .is_some_and(|k| k.iter().any(|k| k == "bench"));
            if let (true, Some(name)) = (is_bench, t.get("name").and_then(Value::as_str)) {
                let features = t
                    .get("required-features")
                    .and_then(Value::as_array)
                    .map(|f| {
                        f.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                found.push(Target {
                    package: package.to_string(),
                    name: name.to_string(),
                    features,
                });
            }
        }
    }
    found
}

/// Whether a target of `package` can emit names starting with `prefix`.
///
/// Benchmark names start with their crate's short name (`serversets-httpset`
/// emits `httpset.*`), so a prefix whose first segment is unrelated to the
/// crate cannot match and the target is not even built. Anything unsure runs.
pub fn may_match(package: &str, prefix: &str) -> bool {
    let short = package.strip_prefix("serversets-").unwrap_or(package);
    let first = prefix.split('.').next().unwrap_or(prefix);
    first.is_empty() || short.starts_with(first) || first.starts_with(short)
}

pub fn run(prefix: Option<&str>) -> Result<ExitCode> {
    let ui = Ui::stdout();
    let out_dir = target_dir().join("bench");
    let raw_dir = out_dir.join("raw");
    std::fs::create_dir_all(&raw_dir)?;

    let metadata = cargo_metadata()?;
    let all = bench_targets(&metadata);
    let targets: Vec<Target> = all
        .iter()
        .filter(|t| prefix.is_none_or(|p| may_match(&t.package, p)))
        .cloned()
        .collect();
    println!(
        "{} benchmark targets in the workspace, {} to run{}",
        all.len(),
        targets.len(),
        prefix
            .map(|p| format!(" for prefix {p:?}"))
            .unwrap_or_default()
    );

    let run_started = Instant::now();
    let deadline = run_started + Duration::from_secs(60 * 60);
    let mut failures = Vec::new();
    let mut text = String::new();
    for t in &targets {
        let raw = raw_dir.join(format!("{}.{}.jsonl", t.package, t.name));
        let _ = std::fs::remove_file(&raw);
        ui.step_start(&format!("cargo bench -p {} --bench {}", t.package, t.name));
        let started = Instant::now();
        let mut cmd = Command::new(cargo());
        cmd.args(["bench", "-p", &t.package, "--bench", &t.name]);
        if !t.features.is_empty() {
            cmd.args(["--features", &t.features.join(",")]);
        }
        cmd.current_dir(project_root())
            .env("SERVERSETS_BENCH_OUT", &raw)
            .env("SERVERSETS_BENCH_FILTER", prefix.unwrap_or(""));
        let outcome = proc::run(&mut cmd, deadline)?;
        ui.step_end(outcome.success(), started.elapsed());
        if !outcome.success() {
            let why = match outcome {
                proc::Outcome::TimedOut => "killed after the 60-minute limit".to_string(),
                proc::Outcome::Exited(status) => status.to_string(),
            };
            failures.push(format!("{}/{}: {why}", t.package, t.name));
        }
        match std::fs::read_to_string(&raw) {
            Ok(s) => text.push_str(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", raw.display()).into()),
        }
    }

    let (mut records, bad) = model::parse_lines(&text);
    for (line, why) in &bad {
        println!(
            "{} skipped bad record (line {line} of the collected output): {why}",
            ui.yellow("warning:")
        );
    }
    if let Some(p) = prefix {
        // A target may emit more than asked for; keep what the filter names.
        records.retain(|r| r.name.starts_with(p));
    }
    let joined = model::join(records);
    write_outputs(&out_dir, &joined, prefix, &failures)?;

    for j in &joined {
        let r = &j.record;
        println!(
            "  {:<36} {:<24} median {:>10} {:<4} p99 {:>10}  ratio {}",
            r.name,
            model::params_label(&r.params),
            report::fmt_num(r.median),
            r.unit,
            report::fmt_num(r.p99),
            j.ratio
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    println!(
        "{} measurements in {}; wrote {} and {}",
        joined.len(),
        human(run_started.elapsed()),
        out_dir.join("results.json").display(),
        out_dir.join("report.md").display()
    );
    if all.is_empty() {
        println!("no benchmark targets in the workspace yet (crates add `[[bench]] harness = false` targets)");
    } else if joined.is_empty() {
        println!(
            "{} no measurement{}",
            ui.yellow("warning:"),
            prefix
                .map(|p| format!(" has a name starting with {p:?}"))
                .unwrap_or_else(|| " was recorded".into())
        );
    }
    if failures.is_empty() && bad.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            println!("{} {f}", ui.red("failed:"));
        }
        Ok(ExitCode::FAILURE)
    }
}

fn write_outputs(
    out_dir: &Path,
    joined: &[model::Joined],
    prefix: Option<&str>,
    failures: &[String],
) -> Result<()> {
    // Old charts would be linked from nowhere, or worse, look current.
    for entry in std::fs::read_dir(out_dir)?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "svg") {
            std::fs::remove_file(entry.path())?;
        }
    }
    std::fs::write(out_dir.join("results.json"), model::results_text(joined))?;
    let info = report::RunInfo {
        when: utc_now(),
        revision: git_revision(),
        prefix: prefix.map(str::to_string),
        failures: failures.to_vec(),
    };
    std::fs::write(out_dir.join("report.md"), report::markdown(joined, &info))?;
    for name in report::names(joined) {
        std::fs::write(
            out_dir.join(report::chart_file(&name)),
            report::svg(&name, joined),
        )?;
    }
    Ok(())
}

fn cargo_metadata() -> Result<Value> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(project_root())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn git_revision() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(project_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc(secs)
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the epoch (Howard Hinnant's
/// days-to-civil algorithm).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (hh, mm) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_only_bench_targets() {
        let metadata = json!({"packages": [
            {"name": "serversets-httpset", "targets": [
                {"name": "serversets_httpset", "kind": ["lib"]},
                {"name": "balance", "kind": ["bench"]},
                {"name": "it", "kind": ["test"]},
            ]},
            {"name": "xtask", "targets": [{"name": "xtask", "kind": ["bin"]}]},
            {"name": "serversets-core", "targets": [{"name": "propagation", "kind": ["bench"]}]},
            {"name": "serversets-tower", "targets": [
                {"name": "tower", "kind": ["bench"], "required-features": ["tonic"]},
            ]},
        ]});
        assert_eq!(
            bench_targets(&metadata),
            [
                Target {
                    package: "serversets-httpset".into(),
                    name: "balance".into(),
                    features: vec![],
                },
                Target {
                    package: "serversets-core".into(),
                    name: "propagation".into(),
                    features: vec![],
                },
                Target {
                    package: "serversets-tower".into(),
                    name: "tower".into(),
                    features: vec!["tonic".into()],
                },
            ]
        );
        assert!(bench_targets(&json!({})).is_empty());
    }

    #[test]
    fn prefix_skips_only_unrelated_crates() {
        assert!(may_match("serversets-httpset", "httpset"));
        assert!(may_match("serversets-httpset", "http"));
        assert!(may_match("serversets-httpset", "httpset.rr.latency"));
        assert!(!may_match("serversets-httpset", "core"));
        assert!(!may_match("serversets-core", "mcset.ring"));
        assert!(may_match("serversets-core", "core.propagation"));
        assert!(may_match("testkit", "testkit"));
        assert!(may_match("serversets-core", ""));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
    }
}

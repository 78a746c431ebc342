//! `cargo xtask test`: the one command that says whether the project is green.
//!
//! Steps: system packages, `cargo fmt --check`, clippy with `-D warnings`,
//! the docs of the whole workspace with warnings denied (binaries such as
//! xtask's and the demo with their private items, as `cargo doc` does by
//! default; xtask's library too, in a second run), and
//! `cargo test` (unit, integration and doc tests). All features are enabled
//! so optional code (e.g. mcset's memcache client) is checked too. Every step
//! runs even when an earlier one failed, and clippy and the tests go on past
//! a failing crate, so one run shows every problem; the exit code is non-zero
//! if any failed.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::proc::{self, Outcome};
use crate::ui::{human, Ui};
use crate::{cargo, project_root, provision, Result};

/// The whole run is cut off here, well before CI's 90 minutes, so a hung
/// test shows up as a named failure rather than a silent CI timeout.
const HARD_LIMIT: Duration = Duration::from_secs(75 * 60);
/// What the suite should stay under on a 2-core machine.
const BUDGET: Duration = Duration::from_secs(30 * 60);

/// Totals summed over every "test result:" line cargo test printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub suites: u64,
}

impl Totals {
    /// Adds one libtest summary line, e.g.
    /// `test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result:") else {
            return;
        };
        let count = |what: &str| -> u64 {
            rest.split(';')
                .filter_map(|part| part.trim().strip_suffix(what))
                .filter_map(|n| n.split_whitespace().last()?.parse().ok())
                .next()
                .unwrap_or(0)
        };
        self.passed += count(" passed");
        self.failed += count(" failed");
        self.ignored += count(" ignored");
        self.suites += 1;
    }
}

/// A cargo command run as one step: its title, its arguments, and the
/// environment it needs.
type CargoStep<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

struct StepResult {
    name: String,
    ok: bool,
    took: Duration,
    note: String,
}

pub fn run() -> Result<ExitCode> {
    let ui = Ui::stdout();
    let started = Instant::now();
    let deadline = started + HARD_LIMIT;
    let mut results = Vec::new();

    ui.step_start(&format!(
        "system packages ({})",
        provision::PACKAGES.join(", ")
    ));
    let t = Instant::now();
    let provisioned = provision::ensure(&ui, "    ");
    ui.step_end(provisioned.is_ok(), t.elapsed());
    // Without the servers the integration tests cannot run at all.
    provisioned?;
    results.push(StepResult {
        name: "system packages".into(),
        ok: true,
        took: t.elapsed(),
        note: String::new(),
    });

    let steps: [CargoStep<'_>; 4] = [
        (
            "cargo fmt --all -- --check",
            &["fmt", "--all", "--", "--check"],
            &[],
        ),
        (
            "cargo clippy --workspace --all-targets --all-features --keep-going -- -D warnings",
            &[
                "clippy",
                "--keep-going",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
        (
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --all-features --no-deps",
            &[
                "doc",
                "--keep-going",
                "--workspace",
                "--all-features",
                "--no-deps",
            ],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
        (
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc -p xtask --lib --no-deps --document-private-items",
            &[
                "doc",
                "--package",
                "xtask",
                "--lib",
                "--no-deps",
                "--document-private-items",
            ],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
    ];
    for (name, args, env) in steps {
        ui.step_start(name);
        let t = Instant::now();
        let mut cmd = cargo_cmd(args);
        cmd.envs(env.iter().copied());
        let outcome = proc::run(&mut cmd, deadline)?;
        let took = t.elapsed();
        ui.step_end(outcome.success(), took);
        results.push(StepResult {
            name: name.into(),
            ok: outcome.success(),
            took,
            note: timeout_note(&outcome),
        });
    }

    let name = "cargo test --workspace --all-features --no-fail-fast";
    ui.step_start(name);
    let t = Instant::now();
    let mut totals = Totals::default();
    let outcome = proc::run_tee(
        &mut cargo_cmd(&["test", "--workspace", "--all-features", "--no-fail-fast"]),
        deadline,
        |line| totals.add_line(line),
    )?;
    let took = t.elapsed();
    let ok = outcome.success() && totals.suites > 0;
    ui.step_end(ok, took);
    let mut note = timeout_note(&outcome);
    if totals.suites == 0 {
        note = "no test ran".into();
    } else if note.is_empty() {
        note = format!(
            "{} passed, {} failed, {} ignored in {} suites",
            totals.passed, totals.failed, totals.ignored, totals.suites
        );
    }
    results.push(StepResult {
        name: name.into(),
        ok,
        took,
        note,
    });

    let total = started.elapsed();
    println!();
    println!("{}", ui.bold("summary"));
    for r in &results {
        let verdict = if r.ok {
            ui.green("ok    ")
        } else {
            ui.red("FAILED")
        };
        println!(
            "  {verdict} {:>8}  {}  {}",
            human(r.took),
            r.name,
            ui.dim(&r.note)
        );
    }
    println!("  total {}", human(total));
    if total > BUDGET {
        println!(
            "  {}",
            ui.yellow(&format!(
                "warning: the suite took longer than its {} budget",
                human(BUDGET)
            ))
        );
    }
    // A plain closing line that any CI log reader understands.
    if totals.suites > 0 {
        println!(
            "tests: {} passed, {} failed, {} skipped",
            totals.passed, totals.failed, totals.ignored
        );
    }
    if results.iter().all(|r| r.ok) {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

fn cargo_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.args(args).current_dir(project_root());
    cmd
}

fn timeout_note(outcome: &Outcome) -> String {
    match outcome {
        Outcome::TimedOut => format!(
            "killed: the whole run passed its {} limit",
            human(HARD_LIMIT)
        ),
        Outcome::Exited(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_libtest_summaries() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s");
        t.add_line("running 5 tests");
        t.add_line("test foo::bar ... ok");
        assert_eq!(
            t,
            Totals {
                passed: 8,
                failed: 2,
                ignored: 1,
                suites: 2
            }
        );
    }
}

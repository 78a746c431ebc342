//! What the soak found: violations as they happen (from any thread), the
//! convergence checks, and the summary printed and written at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ui::{human, Ui};

/// How many violations are kept with their details (all are counted).
const KEPT: usize = 200;

/// The kinds of invariant the soak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A watcher printed an empty set (the static members are always live).
    EmptySnapshot,
    /// A watcher printed a set without every static member.
    PartialSnapshot,
    /// "panicked" in a child's stderr.
    Panic,
    /// A child exited without the harness signalling it.
    DiedByItself,
    /// Watchers or registrations did not match ZooKeeper by the deadline.
    NotConverged,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::EmptySnapshot => "empty snapshot",
            Kind::PartialSnapshot => "partial snapshot",
            Kind::Panic => "panic",
            Kind::DiedByItself => "died by itself",
            Kind::NotConverged => "not converged",
        }
    }
}

/// One broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    pub at: Duration,
    pub kind: Kind,
    pub detail: String,
}

/// One convergence check: after a heal, or after the final deregistration.
#[derive(Debug, Clone)]
pub struct Check {
    pub label: String,
    /// How long healing took (restarting servers) before the clock started.
    pub heal: Duration,
    /// Time from the heal to convergence; `None` if it never converged.
    pub converged: Option<Duration>,
    /// Members missing from watchers when the check ended.
    pub members_lost: usize,
    /// Registrations with more than one node when the check ended.
    pub duplicates: usize,
}

/// Everything recorded during a run; shared with the output threads.
#[derive(Debug)]
pub struct Ledger {
    start: Instant,
    counts: BTreeMap<Kind, u64>,
    violations: Vec<Violation>,
    notes: Vec<String>,
    /// Events seen in the children's logs (session expiries, ...).
    pub seen: BTreeMap<&'static str, u64>,
    pub checks: Vec<Check>,
}

/// The ledger as the threads share it.
pub type Shared = Arc<Mutex<Ledger>>;

impl Ledger {
    pub fn new(start: Instant) -> Shared {
        Arc::new(Mutex::new(Ledger {
            start,
            counts: BTreeMap::new(),
            violations: Vec::new(),
            notes: Vec::new(),
            seen: BTreeMap::new(),
            checks: Vec::new(),
        }))
    }

    /// Records a violation and prints it at once.
    pub fn violation(&mut self, kind: Kind, detail: impl Into<String>) {
        let detail = detail.into();
        let at = self.start.elapsed();
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        // Repeats of one kind are counted; only the first few are printed.
        if *n <= 5 {
            let ui = Ui::stdout();
            println!(
                "  {} {} {}: {detail}",
                stamp(at),
                ui.red("VIOLATION"),
                kind.name()
            );
        }
        if self.violations.len() < KEPT {
            self.violations.push(Violation { at, kind, detail });
        }
    }

    /// Something worth reading that is not a violation.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!(
            "  {} {} {text}",
            stamp(self.start.elapsed()),
            Ui::stdout().yellow("note:")
        );
        if self.notes.len() < KEPT {
            self.notes.push(text);
        }
    }

    /// Counts an event seen in a child's log.
    pub fn saw(&mut self, what: &'static str) {
        *self.seen.entry(what).or_default() += 1;
    }

    pub fn count(&self, kind: Kind) -> u64 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Locks the shared ledger (a panicked holder leaves it usable).
pub fn lock(shared: &Shared) -> MutexGuard<'_, Ledger> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// `t+  12.3s`: time since the run started, for every printed event.
pub fn stamp(at: Duration) -> String {
    format!("t+{:6.1}s", at.as_secs_f64())
}

/// What the summary needs besides the ledger.
pub struct Totals<'a> {
    pub seed: u64,
    pub seconds: u64,
    pub cycles: usize,
    pub deadline: Duration,
    pub faults: &'a BTreeMap<&'static str, u64>,
    pub proxy: &'a BTreeMap<&'static str, u64>,
    pub replay: &'a str,
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

/// Prints the summary and returns it as JSON.
pub fn summarize(ledger: &Ledger, t: &Totals<'_>) -> Value {
    let ui = Ui::stdout();
    let times: Vec<Duration> = ledger.checks.iter().filter_map(|c| c.converged).collect();
    let longest = times.iter().max().copied();
    let median = median(times.clone());
    let lost: usize = ledger.checks.iter().map(|c| c.members_lost).sum();
    let duplicates: usize = ledger.checks.iter().map(|c| c.duplicates).sum();
    let passed = ledger.total() == 0;

    println!();
    println!(
        "{}",
        ui.bold(&format!(
            "soak summary: seed {}, {} s of faults in {} cycles, {} in all",
            t.seed,
            t.seconds,
            t.cycles,
            human(ledger.elapsed())
        ))
    );
    println!("  faults injected:");
    for (kind, n) in t.faults {
        println!("    {kind:<34} {n:>5}");
    }
    let total: u64 = t.faults.values().sum();
    println!("    {:<34} {total:>5}", "total");
    let proxy: Vec<String> = t.proxy.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  proxy counters: {}", proxy.join(", "));
    let seen: Vec<String> = ledger
        .seen
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("  seen in the children's logs: {}", seen.join(", "));
    println!(
        "  convergence checks: {} ({} converged), longest {}, median {} (deadline {})",
        ledger.checks.len(),
        times.len(),
        longest.map_or("-".into(), human),
        median.map_or("-".into(), human),
        human(t.deadline)
    );
    for c in &ledger.checks {
        println!(
            "    {:<28} heal {:>7}  converged {}",
            c.label,
            human(c.heal),
            c.converged
                .map_or_else(|| ui.red("NEVER"), |d| format!("in {}", human(d)))
        );
    }
    let line = |name: &str, n: u64| {
        let text = format!("{n}");
        let text = if n == 0 {
            ui.green(&text)
        } else {
            ui.red(&text)
        };
        println!("  {name:<36} {text}");
    };
    line("members lost", lost as u64);
    line("duplicate registrations", duplicates as u64);
    line("panics", ledger.count(Kind::Panic));
    line(
        "processes that died by themselves",
        ledger.count(Kind::DiedByItself),
    );
    line("empty snapshots", ledger.count(Kind::EmptySnapshot));
    line(
        "partial snapshots (static missing)",
        ledger.count(Kind::PartialSnapshot),
    );
    line("checks not converged", ledger.count(Kind::NotConverged));
    if !ledger.notes.is_empty() {
        println!("  notes: {}", ledger.notes.len());
    }
    if passed {
        println!("  result: {}", ui.green("PASSED"));
    } else {
        println!(
            "  result: {} ({} violations)",
            ui.red("FAILED"),
            ledger.total()
        );
        for v in ledger.violations().iter().take(10) {
            println!("    {} {}: {}", stamp(v.at), v.kind.name(), v.detail);
        }
        println!("  replay with: {}", t.replay);
    }

    let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
    json!({
        "seed": t.seed,
        "seconds": t.seconds,
        "cycles": t.cycles,
        "elapsed_s": secs(ledger.elapsed()),
        "passed": passed,
        "replay": t.replay,
        "faults": t.faults,
        "proxy_counters": t.proxy,
        "seen_in_logs": ledger.seen,
        "convergence": {
            "deadline_s": secs(t.deadline),
            "checks": ledger.checks.iter().map(|c| json!({
                "label": c.label,
                "heal_s": secs(c.heal),
                "converged_s": c.converged.map(secs),
                "members_lost": c.members_lost,
                "duplicates": c.duplicates,
            })).collect::<Vec<_>>(),
            "longest_s": longest.map(secs),
            "median_s": median.map(secs),
        },
        "members_lost": lost,
        "duplicate_registrations": duplicates,
        "panics": ledger.count(Kind::Panic),
        "died_by_themselves": ledger.count(Kind::DiedByItself),
        "empty_snapshots": ledger.count(Kind::EmptySnapshot),
        "partial_snapshots": ledger.count(Kind::PartialSnapshot),
        "not_converged": ledger.count(Kind::NotConverged),
        "violations": ledger.violations().iter().map(|v| json!({
            "at_s": secs(v.at),
            "kind": v.kind.name(),
            "detail": v.detail,
        })).collect::<Vec<_>>(),
        "notes": ledger.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_durations() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![ms(5), ms(1), ms(3)]), Some(ms(3)));
    }

    #[test]
    fn violations_are_counted_by_kind() {
        let shared = Ledger::new(Instant::now());
        let mut l = lock(&shared);
        l.violation(Kind::Panic, "x");
        l.violation(Kind::Panic, "y");
        l.violation(Kind::EmptySnapshot, "z");
        assert_eq!(l.count(Kind::Panic), 2);
        assert_eq!(l.count(Kind::DiedByItself), 0);
        assert_eq!(l.total(), 3);
        assert_eq!(l.violations().len(), 3);
    }
}

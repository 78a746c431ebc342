//! After a heal: how long until every watcher shows ZooKeeper's truth and
//! every registration has exactly the nodes it should, and a precise diff
//! when that does not happen in time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::fleet::{Fleet, RegView};
use super::report::{self, stamp, Check, Kind};
use super::truth::{compare, list, registration_port, Members, Truth};
use crate::ui::human;
use crate::Result;

/// How often the truth and the watchers are compared.
const POLL: Duration = Duration::from_millis(200);
/// After a missed deadline, how much longer to look, to tell a late
/// convergence from a stuck one.
const AFTER: Duration = Duration::from_secs(30);

/// What differs from the truth.
#[derive(Debug, Default)]
pub struct Verdict {
    pub problems: Vec<String>,
    pub members_lost: usize,
    pub duplicates: usize,
}

/// Compares the fleet with ZooKeeper's truth.
pub fn evaluate(
    truth: &Members,
    statics: &Members,
    watchers: &[(String, Option<Members>)],
    regs: &[RegView],
) -> Verdict {
    let mut v = Verdict::default();

    let gone: Vec<(String, String)> = statics
        .iter()
        .filter(|(n, a)| truth.get(*n) != Some(a))
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
    if !gone.is_empty() {
        v.problems.push(format!(
            "{} static members are missing from ZooKeeper: {}",
            gone.len(),
            list(&gone, 5)
        ));
    }

    let mut by_port: HashMap<u16, Vec<String>> = HashMap::new();
    for (name, addr) in truth {
        if statics.contains_key(name) {
            continue;
        }
        match registration_port(addr) {
            Some(port) => by_port.entry(port).or_default().push(name.clone()),
            None => v.problems.push(format!(
                "node {name} ({addr}) is neither a static member nor a registration"
            )),
        }
    }
    for r in regs {
        let nodes = by_port.remove(&r.port).unwrap_or_default();
        if nodes.len() > 1 {
            v.duplicates += 1;
        }
        if nodes.len() != r.want {
            v.problems.push(format!(
                "registration {} ({}) has {} nodes, wants {}{}",
                r.name,
                r.state,
                nodes.len(),
                r.want,
                if nodes.is_empty() {
                    String::new()
                } else {
                    format!(": {}", nodes.join(", "))
                }
            ));
        }
    }
    for (port, nodes) in by_port {
        v.problems.push(format!(
            "nodes {} announce 127.0.0.1:{port}, which no registration of this run had",
            nodes.join(", ")
        ));
    }

    for (name, seen) in watchers {
        let Some(seen) = seen else {
            v.problems
                .push(format!("watcher {name} has not printed a set yet"));
            v.members_lost += truth.len();
            continue;
        };
        let d = compare(truth, seen);
        if !d.missing.is_empty() || !d.extra.is_empty() {
            v.members_lost += d.missing.len();
            v.problems.push(format!(
                "watcher {name} shows {} members, ZooKeeper has {}: missing {} [{}], extra {} [{}]",
                seen.len(),
                truth.len(),
                d.missing.len(),
                list(&d.missing, 8),
                d.extra.len(),
                list(&d.extra, 8)
            ));
        }
    }
    v
}

/// One comparison now; an unreadable truth is a problem of its own.
fn look(truth: &mut Truth, fleet: &Fleet, statics: &Members) -> Verdict {
    match truth.read() {
        Ok(t) => evaluate(
            &t,
            statics,
            &fleet.watcher_views(),
            &fleet.registration_views(),
        ),
        Err(e) => Verdict {
            problems: vec![format!("cannot read the truth: {e}")],
            ..Verdict::default()
        },
    }
}

/// Waits until the fleet matches the truth, up to `deadline` from now.
/// Records the check; on a miss, records a violation with the diff and
/// looks a while longer to say whether it converged late or not at all.
/// Returns whether it converged in time.
pub fn converge(
    label: &str,
    heal: Duration,
    deadline: Duration,
    truth: &mut Truth,
    fleet: &mut Fleet,
    statics: &Members,
    ledger: &report::Shared,
) -> Result<bool> {
    let started = Instant::now();
    let mut last;
    loop {
        fleet.poll()?;
        last = look(truth, fleet, statics);
        if last.problems.is_empty() {
            let took = started.elapsed();
            let mut l = report::lock(ledger);
            println!(
                "  {} {label}: converged in {} (heal took {})",
                stamp(l.elapsed()),
                human(took),
                human(heal)
            );
            l.checks.push(Check {
                label: label.to_string(),
                heal,
                converged: Some(took),
                members_lost: 0,
                duplicates: 0,
            });
            return Ok(true);
        }
        if started.elapsed() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    {
        let mut l = report::lock(ledger);
        l.violation(
            Kind::NotConverged,
            format!(
                "{label}: not converged {} after the heal:\n    {}",
                human(deadline),
                last.problems.join("\n    ")
            ),
        );
        l.checks.push(Check {
            label: label.to_string(),
            heal,
            converged: None,
            members_lost: last.members_lost,
            duplicates: last.duplicates,
        });
    }
    let more = Instant::now() + AFTER;
    while Instant::now() < more {
        std::thread::sleep(POLL);
        fleet.poll()?;
        let now = look(truth, fleet, statics);
        if now.problems.is_empty() {
            report::lock(ledger).note(format!(
                "{label}: converged late, {} after the heal",
                human(started.elapsed())
            ));
            return Ok(false);
        }
        last = now;
    }
    report::lock(ledger).note(format!(
        "{label}: still not converged {} after the heal:\n    {}",
        human(started.elapsed()),
        last.problems.join("\n    ")
    ));
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(pairs: &[(&str, &str)]) -> Members {
        pairs
            .iter()
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect()
    }

    fn reg(name: &str, port: u16, want: usize) -> RegView {
        RegView {
            name: name.into(),
            port,
            want,
            state: "live".into(),
        }
    }

    #[test]
    fn a_matching_fleet_has_no_problems() {
        let statics = members(&[("member_0", "10.77.0.1:31000")]);
        let truth = members(&[
            ("member_0", "10.77.0.1:31000"),
            ("member_5", "127.0.0.1:40001"),
        ]);
        let v = evaluate(
            &truth,
            &statics,
            &[("w".into(), Some(truth.clone()))],
            &[reg("r1", 40001, 1), reg("r0", 40000, 0)],
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    #[test]
    fn duplicates_leftovers_and_lost_members_are_reported() {
        let statics = members(&[("member_0", "10.77.0.1:31000")]);
        let truth = members(&[
            ("member_0", "10.77.0.1:31000"),
            ("member_5", "127.0.0.1:40001"),
            ("member_6", "127.0.0.1:40001"),
            ("member_7", "127.0.0.1:40000"),
            ("member_8", "127.0.0.1:49999"),
        ]);
        let seen = members(&[("member_5", "127.0.0.1:40001")]);
        let v = evaluate(
            &truth,
            &statics,
            &[("w".into(), Some(seen)), ("fresh".into(), None)],
            &[reg("r1", 40001, 1), reg("r0", 40000, 0)],
        );
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.members_lost, 4 + 5);
        let text = v.problems.join("\n");
        assert!(text.contains("r1 (live) has 2 nodes, wants 1: member_5, member_6"));
        assert!(text.contains("r0 (live) has 1 nodes, wants 0: member_7"));
        assert!(text.contains("127.0.0.1:49999, which no registration"));
        assert!(text.contains("watcher fresh has not printed"));
        assert!(text.contains("watcher w shows 1 members, ZooKeeper has 5: missing 4"));
    }
}

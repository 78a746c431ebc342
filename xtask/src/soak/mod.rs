//! `cargo xtask soak [--seconds N] [--seed S]`: a chaos soak of the
//! `serversets` command (and so of serversets-core) against a real 3-node
//! ZooKeeper ensemble behind fault-injecting proxies.
//!
//! Setup: thousands of static members in one set, so every full read is
//! long; watchers and registration sidecars (half with a health check) in
//! processes of their own, connected through the proxies. Then cycles of
//! random faults ([`faults`]), each ended by a heal and a convergence check
//! ([`converge`]): every watcher must show ZooKeeper's truth, and every
//! registration exactly the nodes it should, within the session timeout
//! plus a few seconds. Throughout, a set without every static member, a
//! panic, or a child exiting by itself is a violation ([`fleet`]). At the
//! end every registration is stopped and must remove its member. The seed
//! replays the same fault schedule.

mod converge;
mod faults;
mod fleet;
mod report;
mod truth;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::{ZkCluster, ZkOptions};

use crate::ui::{human, Ui};
use crate::{cargo, target_dir, Result};

/// The set every process watches or registers in.
const SET_PATH: &str = "/soak/big";
/// Members that are always there.
const STATIC_MEMBERS: usize = 2000;
const WATCHERS: usize = 3;
const REGISTRATIONS: usize = 8;
/// The session timeout of every process under test.
const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// Convergence must come within the session timeout plus this.
const GRACE: Duration = Duration::from_secs(10);
/// Faults per cycle, before a heal and a convergence check.
const CYCLE: Duration = Duration::from_secs(25);
/// A last cycle shorter than this is merged into the one before.
const MIN_CYCLE: Duration = Duration::from_secs(10);
/// How often the fault loop wakes.
const TICK: Duration = Duration::from_millis(100);
/// Chance that a checked registration is left unhealthy by a heal (it
/// must then have no node).
const UNHEALTHY_AFTER_HEAL: f64 = 0.25;

const USAGE: &str = "usage: cargo xtask soak [--seconds N] [--seed S] [--bin PATH]";

struct Options {
    seconds: u64,
    seed: u64,
    /// A `serversets` binary to soak instead of building this workspace's.
    bin: Option<PathBuf>,
}

fn parse(args: &[&str]) -> Result<Options> {
    let mut opts = Options {
        seconds: 60,
        seed: clock_seed(),
        bin: None,
    };
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (arg, None),
        };
        let mut text = |name: &str| -> Result<String> {
            match inline {
                Some(v) => Ok(v.to_string()),
                None => it
                    .next()
                    .map(|v| v.to_string())
                    .ok_or_else(|| format!("{name} needs a value").into()),
            }
        };
        let number = |name: &str, v: String| -> Result<u64> {
            v.parse()
                .map_err(|e| format!("invalid value {v:?} for {name}: {e}").into())
        };
        match flag {
            "--seconds" => opts.seconds = number(flag, text(flag)?)?,
            "--seed" => opts.seed = number(flag, text(flag)?)?,
            "--bin" => opts.bin = Some(PathBuf::from(text(flag)?)),
            _ => return Err(format!("unknown argument {arg:?}").into()),
        }
    }
    if opts.seconds == 0 {
        return Err("--seconds must be at least 1".into());
    }
    Ok(opts)
}

/// A seed from the clock, for runs that do not give one.
fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Keep it short enough to type; the low bits vary the most.
    (nanos % 1_000_000_000) as u64
}

/// Runs the soak; the exit code says whether every invariant held.
pub fn run(args: &[&str]) -> Result<ExitCode> {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xtask soak: {e}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut replay = format!(
        "cargo xtask soak --seconds {} --seed {}",
        opts.seconds, opts.seed
    );
    if let Some(bin) = &opts.bin {
        replay.push_str(&format!(" --bin {}", bin.display()));
    }
    let ui = Ui::stdout();
    println!(
        "{} seed {} ({} s of faults); replay with: {replay}",
        ui.bold("soak:"),
        opts.seed,
        opts.seconds
    );
    let result = soak(&opts, &replay);
    if result.is_err() {
        // main prints the error itself.
        eprintln!(
            "soak: the harness failed (seed {}; replay with: {replay})",
            opts.seed
        );
    }
    result
}

fn soak(opts: &Options, replay: &str) -> Result<ExitCode> {
    let ui = Ui::stdout();
    let start = Instant::now();
    let ledger = report::Ledger::new(start);

    let bin = match &opts.bin {
        Some(bin) => {
            if !bin.is_file() {
                return Err(format!("--bin {}: no such file", bin.display()).into());
            }
            println!("soaking {}", bin.display());
            bin.clone()
        }
        None => {
            ui.step_start("build the serversets command");
            let t = Instant::now();
            let status = Command::new(cargo())
                .args(["build", "-p", "serversets-cli"])
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            ui.step_end(status.success(), t.elapsed());
            if !status.success() {
                return Err(format!("cargo build -p serversets-cli failed: {status}").into());
            }
            target_dir().join("debug/serversets")
        }
    };

    let soak_dir = target_dir().join("soak");
    let log_dir = soak_dir.join(opts.seed.to_string());
    if log_dir.exists() {
        std::fs::remove_dir_all(&log_dir)
            .map_err(|e| format!("remove {}: {e}", log_dir.display()))?;
    }
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("create {}: {e}", log_dir.display()))?;
    let health = tempfile::Builder::new()
        .prefix("serversets-soak-")
        .tempdir()
        .map_err(|e| format!("create a temporary directory: {e}"))?;

    ui.step_start("start a 3-node ZooKeeper ensemble behind fault proxies");
    let t = Instant::now();
    let zk = ZkCluster::start(ZkOptions {
        servers: 3,
        proxied: true,
        ..ZkOptions::default()
    })?;
    ui.step_end(true, t.elapsed());
    println!("  proxied: {}", zk.connect_string());
    println!("  direct:  {}", zk.direct_connect_string());

    ui.step_start(&format!(
        "create {STATIC_MEMBERS} static members in {SET_PATH}"
    ));
    let t = Instant::now();
    let mut truth = truth::Truth::new(&zk.direct_connect_string(), SET_PATH)?;
    let statics = truth.create_static(STATIC_MEMBERS)?;
    ui.step_end(statics.len() == STATIC_MEMBERS, t.elapsed());

    ui.step_start(&format!(
        "start {WATCHERS} watchers and {REGISTRATIONS} registrations (logs in {})",
        log_dir.display()
    ));
    let t = Instant::now();
    let mut fleet = fleet::Fleet::new(
        fleet::Config {
            bin,
            zk: zk.connect_string(),
            path: SET_PATH.into(),
            session_timeout: SESSION_TIMEOUT,
            log_dir: log_dir.clone(),
            health_dir: health.path().to_path_buf(),
            static_count: STATIC_MEMBERS,
            start,
        },
        ledger.clone(),
    );
    for _ in 0..WATCHERS {
        fleet.start_watcher()?;
    }
    for slot in 0..REGISTRATIONS {
        fleet.start_registration(slot % 2 == 1)?;
    }
    let deadline = SESSION_TIMEOUT + GRACE;
    let ready = converge::converge(
        "setup",
        Duration::ZERO,
        Duration::from_secs(60),
        &mut truth,
        &mut fleet,
        &statics,
        &ledger,
    )?;
    // Setup is not one of the measured checks.
    report::lock(&ledger).checks.clear();
    ui.step_end(ready, t.elapsed());

    let mut chaos = faults::Chaos::new(opts.seed, start, SESSION_TIMEOUT, &zk)?;
    let total = Duration::from_secs(opts.seconds);
    let mut spent = Duration::ZERO;
    let mut cycles = 0;
    let mut healthy_run = ready;
    while healthy_run && spent < total {
        let left = total - spent;
        let mut phase = left.min(CYCLE);
        if left - phase < MIN_CYCLE {
            phase = left;
        }
        cycles += 1;
        ui.step_start(&format!("cycle {cycles}: {} of faults", human(phase)));
        let t = Instant::now();
        chaos.start_phase();
        let end = Instant::now() + phase;
        while Instant::now() < end {
            chaos.tick(&zk, &mut fleet)?;
            fleet.poll()?;
            std::thread::sleep(TICK);
        }
        spent += phase;

        println!(
            "  {} heal: every server up, proxies healed",
            report::stamp(start.elapsed())
        );
        let heal_started = Instant::now();
        chaos.heal(&zk, &ledger)?;
        for slot in fleet.checked_slots() {
            let healthy = !chaos.chance(UNHEALTHY_AFTER_HEAL);
            fleet.set_health(slot, healthy)?;
        }
        let heal = heal_started.elapsed();
        healthy_run = converge::converge(
            &format!("cycle {cycles}"),
            heal,
            deadline,
            &mut truth,
            &mut fleet,
            &statics,
            &ledger,
        )?;
        ui.step_end(healthy_run, t.elapsed());
    }

    if healthy_run {
        ui.step_start("stop every registration (SIGTERM): each must remove its member");
        let t = Instant::now();
        fleet.deregister_all();
        let ok = converge::converge(
            "final deregistration",
            Duration::ZERO,
            deadline,
            &mut truth,
            &mut fleet,
            &statics,
            &ledger,
        )?;
        ui.step_end(ok, t.elapsed());
    }
    ui.step_start("stop the watchers");
    let t = Instant::now();
    let stuck = fleet.stop_watchers(Duration::from_secs(15))?;
    if stuck > 0 {
        report::lock(&ledger).note(format!("{stuck} processes did not exit after SIGTERM"));
    }
    ui.step_end(stuck == 0, t.elapsed());
    drop(fleet);

    let mut proxy = std::collections::BTreeMap::new();
    for p in zk.proxies() {
        let f = p.faults();
        for (k, v) in [
            ("connections", f.accepted),
            ("resets", f.resets),
            ("refused", f.refused),
            ("stalls", f.stalls),
            ("blackholes", f.blackholes),
            ("blackholed_frames", f.blackholed_frames),
            ("lost_replies", f.lost_replies),
        ] {
            *proxy.entry(k).or_insert(0u64) += v;
        }
    }
    drop(zk);

    let l = report::lock(&ledger);
    let json = report::summarize(
        &l,
        &report::Totals {
            seed: opts.seed,
            seconds: opts.seconds,
            cycles,
            deadline,
            faults: &chaos.counts,
            proxy: &proxy,
            replay,
        },
    );
    let out: PathBuf = soak_dir.join(format!("{}.json", opts.seed));
    let text =
        serde_json::to_string_pretty(&json).map_err(|e| format!("encode the summary: {e}"))?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("write {}: {e}", out.display()))?;
    println!(
        "  summary: {}; child logs: {}",
        out.display(),
        log_dir.display()
    );
    Ok(if l.total() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let o = parse(&["--seconds", "300", "--seed=7", "--bin", "/x/serversets"]).unwrap();
        assert_eq!((o.seconds, o.seed), (300, 7));
        assert_eq!(o.bin, Some(PathBuf::from("/x/serversets")));
        let o = parse(&[]).unwrap();
        assert_eq!(o.seconds, 60);
        assert_eq!(o.bin, None);
        assert!(parse(&["--seconds"]).is_err());
        assert!(parse(&["--seconds", "0"]).is_err());
        assert!(parse(&["--seed", "x"]).is_err());
        assert!(parse(&["--what"]).is_err());
    }
}

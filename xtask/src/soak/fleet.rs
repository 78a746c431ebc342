//! The processes under test: `serversets watch --json` watchers and
//! `serversets register` sidecars, all connected through the fault proxies.
//!
//! Every child dies with the harness (`PR_SET_PDEATHSIG`, set when it is
//! forked from the harness's main thread) and is always reaped. Its stdout
//! and stderr are drained by two threads each into `target/soak/<seed>/<name>.log`
//! (every line stamped with the harness clock); a watcher's JSON lines are
//! parsed into its latest set, and checked at once: a set without every
//! static member (or an empty one) is a violation, as is "panicked" on
//! stderr. Each registration incarnation announces a port of its own, so
//! every node in ZooKeeper names exactly one incarnation.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::report::{self, stamp, Kind};
use super::truth::{Members, STATIC_HOST_PREFIX};
use crate::proc::signal;
use crate::Result;

/// Library logs of every child, for finding out why something went wrong.
const LOG_FILTER: &str = "serversets_core=debug,serversets_cli=debug";
/// Lines of each child's output kept in memory for reports.
const TAIL: usize = 40;
/// How long a SIGTERMed child may take to exit before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(30);
/// First port announced by a registration; each incarnation takes the next.
const FIRST_PORT: u16 = 40000;

/// How the fleet runs its children.
pub struct Config {
    pub bin: PathBuf,
    /// The proxied connect string.
    pub zk: String,
    pub path: String,
    pub session_timeout: Duration,
    pub log_dir: PathBuf,
    pub health_dir: PathBuf,
    pub static_count: usize,
    pub start: Instant,
}

/// What the output threads learned about a child.
#[derive(Debug, Default)]
pub struct Output {
    /// A watcher's last printed set.
    pub latest: Option<Members>,
    pub snapshots: u64,
    /// The last lines of stdout and stderr.
    pub tail: VecDeque<String>,
}

type Log = Arc<Mutex<BufWriter<File>>>;

/// One child process.
pub struct Proc {
    pub name: String,
    child: Child,
    out: Arc<Mutex<Output>>,
    log: Log,
    start: Instant,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> MutexGuard<'_, Output> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A line from the harness in the child's log.
    fn log(&self, text: &str) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(log, "{} [harness] {text}", stamp(self.start.elapsed()));
        let _ = log.flush();
    }

    fn tail_text(&self) -> String {
        let out = self.output();
        if out.tail.is_empty() {
            return "(no output)".into();
        }
        let lines: Vec<&String> = out.tail.iter().rev().take(12).collect();
        lines
            .into_iter()
            .rev()
            .map(|l| format!("\n      | {l}"))
            .collect()
    }

    fn signal(&self, sig: libc::c_int, what: &str) {
        self.log(&format!("sending {what}"));
        let _ = signal(self.pid(), sig);
    }

    /// SIGKILL, then reap (a child already reaped is left alone).
    fn kill(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        self.log("sending SIGKILL");
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

/// A live registration sidecar.
pub struct Reg {
    pub proc: Proc,
    pub port: u16,
    /// Guarded by `--check-cmd 'test -e DIR/healthy-PORT'`.
    pub checked: bool,
    /// Whether its health file exists (always true when not checked).
    pub healthy: bool,
}

/// A registration incarnation that is over, and how it ended.
pub struct Closed {
    pub name: String,
    pub port: u16,
    pub how: &'static str,
    pub at: Instant,
}

/// A child that was signalled and has not exited yet.
struct Retiring {
    proc: Proc,
    how: &'static str,
    since: Instant,
}

/// What a registration should have in ZooKeeper now.
pub struct RegView {
    pub name: String,
    pub port: u16,
    /// Nodes it must have: 1 when live and healthy, else 0.
    pub want: usize,
    pub state: String,
}

/// Every child process of the soak.
pub struct Fleet {
    cfg: Config,
    ledger: report::Shared,
    pub watchers: Vec<Proc>,
    pub regs: Vec<Reg>,
    closed: Vec<Closed>,
    retiring: Vec<Retiring>,
    next_port: u16,
    generation: usize,
}

impl Fleet {
    pub fn new(cfg: Config, ledger: report::Shared) -> Fleet {
        Fleet {
            cfg,
            ledger,
            watchers: Vec::new(),
            regs: Vec::new(),
            closed: Vec::new(),
            retiring: Vec::new(),
            next_port: FIRST_PORT,
            generation: 0,
        }
    }

    fn common_args(&self) -> Vec<String> {
        vec![
            "--zk".into(),
            self.cfg.zk.clone(),
            "--path".into(),
            self.cfg.path.clone(),
            "--session-timeout".into(),
            format!("{}ms", self.cfg.session_timeout.as_millis()),
            // A child started during quorum loss must wait for it to end,
            // not give up after the default 10 s.
            "--connect-timeout".into(),
            "60s".into(),
        ]
    }

    fn health_file(&self, port: u16) -> PathBuf {
        self.cfg.health_dir.join(format!("healthy-{port}"))
    }

    /// Starts one more watcher.
    pub fn start_watcher(&mut self) -> Result<()> {
        let proc = self.new_watcher(self.watchers.len())?;
        self.watchers.push(proc);
        Ok(())
    }

    fn new_watcher(&mut self, slot: usize) -> Result<Proc> {
        self.generation += 1;
        let name = format!("watcher{slot}.{}", self.generation);
        let mut args = self.common_args();
        args.extend(["watch".into(), "--json".into()]);
        self.spawn(name, args, true)
    }

    /// Starts one more registration, healthy if it has a check.
    pub fn start_registration(&mut self, checked: bool) -> Result<()> {
        let reg = self.new_registration(self.regs.len(), checked)?;
        self.regs.push(reg);
        Ok(())
    }

    /// A registration sidecar for `slot`, announcing a port never used before.
    fn new_registration(&mut self, slot: usize, checked: bool) -> Result<Reg> {
        self.generation += 1;
        let port = self.next_port;
        self.next_port = self
            .next_port
            .checked_add(1)
            .ok_or("ran out of ports for registrations")?;
        let name = format!("reg{slot}.{}-p{port}", self.generation);
        let mut args = self.common_args();
        args.extend([
            "register".into(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
        ]);
        if checked {
            let file = self.health_file(port);
            File::create(&file).map_err(|e| format!("create {}: {e}", file.display()))?;
            args.extend([
                "--check-cmd".into(),
                format!("test -e {}", file.display()),
                "--check-interval".into(),
                "200ms".into(),
            ]);
        }
        let proc = self.spawn(name, args, false)?;
        Ok(Reg {
            proc,
            port,
            checked,
            healthy: true,
        })
    }

    /// SIGTERMs (or SIGKILLs) the watcher in `slot` and starts another.
    pub fn restart_watcher(&mut self, slot: usize, kill: bool) -> Result<()> {
        if slot >= self.watchers.len() {
            return Ok(());
        }
        let new = self.new_watcher(slot)?;
        let old = std::mem::replace(&mut self.watchers[slot], new);
        self.retire(old, kill);
        Ok(())
    }

    /// SIGTERMs (or SIGKILLs) the registration in `slot` and starts a new
    /// one (with a new port) in its place.
    pub fn replace_registration(&mut self, slot: usize, kill: bool) -> Result<()> {
        self.replace_reg(slot, if kill { "SIGKILL" } else { "SIGTERM" })
    }

    fn replace_reg(&mut self, slot: usize, how: &'static str) -> Result<()> {
        let Some(checked) = self.regs.get(slot).map(|r| r.checked) else {
            return Ok(());
        };
        let new = self.new_registration(slot, checked)?;
        let old = std::mem::replace(&mut self.regs[slot], new);
        self.close_registration(old, how);
        Ok(())
    }

    /// Ends a registration incarnation: `how` is SIGTERM (it deregisters
    /// and is reaped later), SIGKILL, or "its own exit" (already reaped).
    fn close_registration(&mut self, reg: Reg, how: &'static str) {
        self.closed.push(Closed {
            name: reg.proc.name.clone(),
            port: reg.port,
            how,
            at: Instant::now(),
        });
        let _ = std::fs::remove_file(self.health_file(reg.port));
        self.retire(reg.proc, how != "SIGTERM");
    }

    /// SIGKILLs and reaps `proc` now, or SIGTERMs it and reaps it later.
    fn retire(&mut self, mut proc: Proc, kill: bool) {
        if kill {
            proc.kill();
        } else {
            proc.signal(libc::SIGTERM, "SIGTERM");
            self.retiring.push(Retiring {
                proc,
                how: "SIGTERM",
                since: Instant::now(),
            });
        }
    }

    /// Creates or removes the health file of the registration in `slot`.
    pub fn set_health(&mut self, slot: usize, healthy: bool) -> Result<()> {
        let Some(reg) = self.regs.get(slot) else {
            return Ok(());
        };
        if !reg.checked {
            return Ok(());
        }
        let file = self.health_file(reg.port);
        if healthy {
            File::create(&file).map_err(|e| format!("create {}: {e}", file.display()))?;
        } else {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("remove {}: {e}", file.display()).into()),
            }
        }
        reg.proc.log(&format!(
            "health file {}",
            if healthy { "created" } else { "removed" }
        ));
        if let Some(reg) = self.regs.get_mut(slot) {
            reg.healthy = healthy;
        }
        Ok(())
    }

    /// Slots of registrations with a health check.
    pub fn checked_slots(&self) -> Vec<usize> {
        (0..self.regs.len())
            .filter(|&i| self.regs[i].checked)
            .collect()
    }

    /// Reaps every child that exited. One that exited without being
    /// signalled is a violation (with its last output), and is replaced.
    pub fn poll(&mut self) -> Result<()> {
        for slot in 0..self.watchers.len() {
            if let Some(status) = self.watchers[slot].child.try_wait()? {
                self.died(&self.watchers[slot], status);
                self.restart_watcher(slot, true)?;
            }
        }
        for slot in 0..self.regs.len() {
            if let Some(status) = self.regs[slot].proc.child.try_wait()? {
                self.died(&self.regs[slot].proc, status);
                self.replace_reg(slot, "its own exit")?;
            }
        }
        let ledger = &self.ledger;
        self.retiring.retain_mut(|r| match r.proc.child.try_wait() {
            Ok(Some(status)) => {
                r.proc.log(&format!("exited: {status}"));
                if !status.success() {
                    report::lock(ledger).note(format!(
                        "{} (pid {}) exited with {status} after one {}; last lines:{}",
                        r.proc.name,
                        r.proc.pid(),
                        r.how,
                        r.proc.tail_text()
                    ));
                }
                false
            }
            Ok(None) if r.since.elapsed() > TERM_GRACE => {
                report::lock(ledger).note(format!(
                    "{} (pid {}) still running {} s after {}; killing it; last lines:{}",
                    r.proc.name,
                    r.proc.pid(),
                    TERM_GRACE.as_secs(),
                    r.how,
                    r.proc.tail_text()
                ));
                r.proc.kill();
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
        Ok(())
    }

    fn died(&self, proc: &Proc, status: ExitStatus) {
        proc.log(&format!("exited by itself: {status}"));
        report::lock(&self.ledger).violation(
            Kind::DiedByItself,
            format!(
                "{} (pid {}) exited by itself with {status}; last lines:{}",
                proc.name,
                proc.pid(),
                proc.tail_text()
            ),
        );
    }

    /// SIGTERMs every registration, for the final check that each one
    /// removes its member.
    pub fn deregister_all(&mut self) {
        let regs = std::mem::take(&mut self.regs);
        for reg in regs {
            self.close_registration(reg, "SIGTERM");
        }
    }

    /// SIGTERMs every watcher and waits for them (and any other signalled
    /// child) to exit, up to `wait`. Returns how many are still running.
    pub fn stop_watchers(&mut self, wait: Duration) -> Result<usize> {
        for proc in std::mem::take(&mut self.watchers) {
            self.retire(proc, false);
        }
        let deadline = Instant::now() + wait;
        while !self.retiring.is_empty() && Instant::now() < deadline {
            self.poll()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(self.retiring.len())
    }

    /// The latest set of every watcher, by name.
    pub fn watcher_views(&self) -> Vec<(String, Option<Members>)> {
        self.watchers
            .iter()
            .map(|w| (w.name.clone(), w.output().latest.clone()))
            .collect()
    }

    /// What every registration of the run should have in ZooKeeper.
    pub fn registration_views(&self) -> Vec<RegView> {
        let live = self.regs.iter().map(|r| {
            let want_one = !r.checked || r.healthy;
            RegView {
                name: r.proc.name.clone(),
                port: r.port,
                want: usize::from(want_one),
                state: match (r.checked, r.healthy) {
                    (false, _) => "live, no check".into(),
                    (true, true) => "live, healthy".into(),
                    (true, false) => "live, unhealthy".into(),
                },
            }
        });
        let closed = self.closed.iter().map(|c| RegView {
            name: c.name.clone(),
            port: c.port,
            want: 0,
            state: format!(
                "closed by {} {:.1} s ago",
                c.how,
                c.at.elapsed().as_secs_f64()
            ),
        });
        live.chain(closed).collect()
    }

    /// Starts a child from this (the main) thread: `PR_SET_PDEATHSIG`
    /// fires when the forking thread exits, and the main thread lives as
    /// long as the harness.
    fn spawn(&self, name: String, args: Vec<String>, watcher: bool) -> Result<Proc> {
        let log_path = self.cfg.log_dir.join(format!("{name}.log"));
        let file =
            File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let log: Log = Arc::new(Mutex::new(BufWriter::new(file)));
        let mut cmd = Command::new(&self.cfg.bin);
        cmd.args(&args)
            .env("RUST_LOG", LOG_FILTER)
            .env("NO_COLOR", "1")
            .env_remove("SERVERSETS_ZK")
            .env_remove("SERVERSETS_ZK_DIGEST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let parent = libc::pid_t::try_from(std::process::id())
            .map_err(|e| format!("process id out of range: {e}"))?;
        // SAFETY: prctl and getppid are async-signal-safe, and the closure
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The harness died before prctl: do not outlive it.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.cfg.bin.display()))?;
        let out = Arc::new(Mutex::new(Output::default()));
        {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(
                log,
                "{} [harness] pid {}: {} {}",
                stamp(self.cfg.start.elapsed()),
                child.id(),
                self.cfg.bin.display(),
                args.join(" ")
            );
        }
        if let Err(e) = self.drain(&name, &mut child, watcher, &out, &log) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Proc {
            name,
            child,
            out,
            log,
            start: self.cfg.start,
        })
    }

    /// Starts the threads that read a child's stdout and stderr.
    fn drain(
        &self,
        name: &str,
        child: &mut Child,
        watcher: bool,
        out: &Arc<Mutex<Output>>,
        log: &Log,
    ) -> Result<()> {
        let start = self.cfg.start;
        // What each reader thread writes to: its own handles, and the name.
        let sinks = || {
            (
                Arc::clone(out),
                Arc::clone(log),
                Arc::clone(&self.ledger),
                name.to_string(),
            )
        };
        if let Some(stderr) = child.stderr.take() {
            let (out, log, ledger, who) = sinks();
            reader(
                format!("soak-err-{name}"),
                stderr,
                Arc::clone(&log),
                move |line| {
                    write_log(&log, start, line);
                    push_tail(&out, line);
                    if line.contains("panicked") {
                        report::lock(&ledger).violation(Kind::Panic, format!("{who}: {line}"));
                    }
                    if let Some(what) = notable(line) {
                        report::lock(&ledger).saw(what);
                    }
                },
            )?;
        }
        if let Some(stdout) = child.stdout.take() {
            let (out, log, ledger, who) = sinks();
            let statics = self.cfg.static_count;
            reader(
                format!("soak-out-{name}"),
                stdout,
                Arc::clone(&log),
                move |line| {
                    if watcher {
                        snapshot(&who, line, statics, &out, &log, &ledger, start);
                    } else {
                        write_log(&log, start, line);
                        push_tail(&out, line);
                    }
                },
            )?;
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for w in &mut self.watchers {
            w.kill();
        }
        for r in &mut self.regs {
            r.proc.kill();
        }
        for r in &mut self.retiring {
            r.proc.kill();
        }
    }
}

/// Starts a thread called `thread` that reads `pipe` with [`lines`], then
/// flushes `log`.
fn reader(
    thread: String,
    pipe: impl Read + Send + 'static,
    log: Log,
    each: impl FnMut(&str) + Send + 'static,
) -> Result<()> {
    std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            lines(pipe, each);
            flush(&log);
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(())
}

/// Reads `pipe` line by line until it closes, calling `each` per line.
/// Lines may be huge (a watcher's set of thousands of members) or end
/// without a newline (a child killed mid-line).
fn lines(pipe: impl Read, mut each: impl FnMut(&str)) {
    let mut reader = BufReader::with_capacity(1 << 16, pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                each(text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Library log lines worth counting: evidence of what the faults did.
const NOTABLE: &[(&str, &str)] = &[
    ("ZooKeeper session expired", "session expiries"),
    ("ZooKeeper connection lost", "connection losses"),
    (
        "unexpected answer reading a member",
        "unexpected read answers",
    ),
    ("watch interrupted", "watch interruptions"),
    (
        "ZooKeeper operation failed; retrying",
        "registration retries",
    ),
    (
        "found the member a lost create made",
        "lost creates adopted",
    ),
    ("an earlier session left behind", "orphans removed"),
    ("member is gone; re-creating it", "members re-created"),
    ("member removal not confirmed yet", "removals unconfirmed"),
    ("background task panicked", "background task panics"),
];

fn notable(line: &str) -> Option<&'static str> {
    NOTABLE
        .iter()
        .find(|(text, _)| line.contains(text))
        .map(|&(_, what)| what)
}

fn write_log(log: &Log, start: Instant, line: &str) {
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(log, "{} {line}", stamp(start.elapsed()));
}

fn flush(log: &Log) {
    let _ = log.lock().unwrap_or_else(|p| p.into_inner()).flush();
}

fn push_tail(out: &Mutex<Output>, line: &str) {
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    if out.tail.len() == TAIL {
        out.tail.pop_front();
    }
    out.tail.push_back(line.chars().take(400).collect());
}

/// A watcher printed a line: keep it as its latest set, log what changed,
/// and check that every static member is in it.
fn snapshot(
    who: &str,
    line: &str,
    statics: usize,
    out: &Mutex<Output>,
    log: &Log,
    ledger: &report::Shared,
    start: Instant,
) {
    let members = match parse_snapshot(line) {
        Ok(m) => m,
        Err(why) => {
            // A watcher killed mid-line leaves half a line; anything else
            // shows up as a watcher that does not converge.
            let head: String = line.chars().take(200).collect();
            write_log(
                log,
                start,
                &format!("[harness] stdout line is no set ({why}): {head}"),
            );
            return;
        }
    };
    let have = static_count(&members);
    let summary = {
        let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
        o.snapshots += 1;
        let changes = match &o.latest {
            Some(prev) => {
                let added: Vec<(String, String)> = members
                    .iter()
                    .filter(|(n, _)| !prev.contains_key(*n))
                    .map(|(n, a)| (n.clone(), a.clone()))
                    .collect();
                let removed: Vec<(String, String)> = prev
                    .iter()
                    .filter(|(n, _)| !members.contains_key(*n))
                    .map(|(n, a)| (n.clone(), a.clone()))
                    .collect();
                format!(
                    " +{} [{}] -{} [{}]",
                    added.len(),
                    super::truth::list(&added, 6),
                    removed.len(),
                    super::truth::list(&removed, 6)
                )
            }
            None => String::new(),
        };
        let summary = format!(
            "[stdout] set #{}: {} members ({have} static){changes}",
            o.snapshots,
            members.len()
        );
        o.latest = Some(members.clone());
        summary
    };
    write_log(log, start, &summary);
    push_tail(out, &summary);
    if members.is_empty() {
        report::lock(ledger).violation(
            Kind::EmptySnapshot,
            format!("{who} printed an empty set while {statics} static members are live"),
        );
    } else if have < statics {
        report::lock(ledger).violation(
            Kind::PartialSnapshot,
            format!(
                "{who} printed a set of {} members holding only {have} of the {statics} static ones",
                members.len()
            ),
        );
    }
}

/// A watcher's `--json` line as members, or why it is not one.
pub fn parse_snapshot(line: &str) -> std::result::Result<Members, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let items = v.as_array().ok_or("not a JSON array")?;
    let mut members = Members::new();
    for item in items {
        let name = item["member"]
            .as_str()
            .ok_or("a member without \"member\"")?;
        let host = item["host"].as_str().ok_or("a member without \"host\"")?;
        let port = item["port"].as_u64().ok_or("a member without \"port\"")?;
        members.insert(name.to_string(), format!("{host}:{port}"));
    }
    Ok(members)
}

/// How many members of `m` are static ones.
pub fn static_count(m: &Members) -> usize {
    m.values()
        .filter(|a| a.starts_with(STATIC_HOST_PREFIX))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_parse_from_watch_json() {
        let line = r#"[{"additional_endpoints":{},"host":"10.77.0.1","member":"member_0000000000","metadata":{},"port":31000,"shard":0,"status":"ALIVE"},{"additional_endpoints":{},"host":"127.0.0.1","member":"member_0000002001","metadata":{},"port":40001,"shard":null,"status":"ALIVE"}]"#;
        let m = parse_snapshot(line).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["member_0000002001"], "127.0.0.1:40001");
        assert_eq!(static_count(&m), 1);
        assert_eq!(parse_snapshot("[]").unwrap().len(), 0);
        assert!(parse_snapshot("[{\"host\":\"h\"}]").is_err());
        assert!(parse_snapshot("[{\"memb").is_err());
    }

    #[test]
    fn lines_handles_a_missing_last_newline() {
        let mut seen = Vec::new();
        lines(&b"one\r\ntwo\nthree"[..], |l| seen.push(l.to_string()));
        assert_eq!(seen, ["one", "two", "three"]);
    }
}

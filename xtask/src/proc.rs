//! Running child commands with a deadline, and looking at processes by pid.
//!
//! Children stay in our process group so Ctrl-C reaches them as usual. When a
//! deadline passes, the child and all its descendants (found through /proc)
//! are killed, so a hung test binary cannot outlive `cargo xtask test`.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Result;

/// How a command ended.
pub enum Outcome {
    /// It exited by itself.
    Exited(ExitStatus),
    /// It ran past its deadline and was killed with its descendants.
    TimedOut,
}

impl Outcome {
    /// It exited by itself, with status 0.
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited(s) if s.success())
    }
}

/// Runs `cmd` with inherited stdio until it exits or `deadline` passes.
pub fn run(cmd: &mut Command, deadline: Instant) -> Result<Outcome> {
    run_tee(cmd, deadline, |_| {})
}

/// Like [`run`], but stdout goes through `on_line` (and is still printed), so
/// a caller can read results (e.g. cargo test's "test result:" lines) while
/// a person watches the output.
///
/// A process left behind by the child that still holds the pipe open cannot
/// hang us: after the child exits, output is drained for at most two seconds.
pub fn run_tee(
    cmd: &mut Command,
    deadline: Instant,
    mut on_line: impl FnMut(&str),
) -> Result<Outcome> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut eof = false;
    let mut ended: Option<(Outcome, Instant)> = None;
    loop {
        if eof {
            std::thread::sleep(Duration::from_millis(100));
        } else {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    println!("{line}");
                    on_line(&line);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => eof = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        if let Some((outcome, at)) = ended.take() {
            if eof || at.elapsed() > Duration::from_secs(2) {
                return Ok(outcome);
            }
            ended = Some((outcome, at));
        } else if let Some(status) = child.try_wait()? {
            ended = Some((Outcome::Exited(status), Instant::now()));
        } else if Instant::now() >= deadline {
            kill_tree(child.id());
            let _ = child.wait();
            ended = Some((Outcome::TimedOut, Instant::now()));
        }
    }
}

/// Sends SIGKILL to `root` and every process descended from it.
pub fn kill_tree(root: u32) {
    let mut doomed = descendants(root, &process_table());
    doomed.push(root);
    for pid in doomed {
        let _ = signal(pid, libc::SIGKILL);
    }
}

/// (pid, parent pid) of every process, read from /proc.
fn process_table() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_stat(&stat)?.1))
        })
        .collect()
}

/// State letter and parent pid from a `/proc/<pid>/stat` line. The command name
/// is in parentheses and may itself contain spaces or parentheses, so fields
/// are counted from the last ')'.
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// All descendants of `root` in a (pid, ppid) table, deepest last.
fn descendants(root: u32, table: &[(u32, u32)]) -> Vec<u32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in table {
            if ppid == parent && pid != root && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_string(),
    )
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let line = "1234 (my (odd) name) S 99 1234 1234 0 -1 4194560";
        assert_eq!(parse_stat(line), Some(('S', 99)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn descendants_walks_the_whole_tree() {
        let table = [(2, 1), (3, 2), (4, 3), (5, 1), (6, 9)];
        let mut d = descendants(1, &table);
        d.sort();
        assert_eq!(d, [2, 3, 4, 5]);
    }

    #[test]
    fn deadline_kills_a_hung_command_and_its_children() {
        let start = Instant::now();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30; wait"]);
        let outcome = run(&mut cmd, Instant::now() + Duration::from_millis(300)).unwrap();
        assert!(matches!(outcome, Outcome::TimedOut));
        assert!(start.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn tee_sees_every_line() {
        let mut seen = Vec::new();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two; exit 3"]);
        let outcome = run_tee(&mut cmd, Instant::now() + Duration::from_secs(20), |l| {
            seen.push(l.to_string())
        })
        .unwrap();
        assert!(!outcome.success());
        assert!(matches!(outcome, Outcome::Exited(s) if s.code() == Some(3)));
        assert_eq!(seen, ["one", "two"]);
    }

    #[test]
    fn this_process_is_alive_with_a_cmdline() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(cmdline(me).is_some_and(|c| !c.is_empty()));
        assert!(!alive(u32::MAX - 1));
    }
}

//! Helpers for running the real `serversets` binary against a real
//! ZooKeeper, with a plain ZooKeeper client standing in for other writers
//! (Finagle, Aurora, an operator's script).
#![allow(dead_code)]

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serversets_core::zookeeper_client as zk;
use testkit::ZkCluster;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

/// How long any single expectation may take before the test fails.
pub const T: Duration = Duration::from_secs(30);

/// One ZooKeeper for every test of this binary; each test uses its own
/// service name. (testkit's servers die with the test process.)
pub fn zk() -> &'static ZkCluster {
    static ZK: OnceLock<ZkCluster> = OnceLock::new();
    ZK.get_or_init(|| ZkCluster::standalone().expect("start ZooKeeper"))
}

/// The binary, with no ZooKeeper settings inherited from the environment.
pub fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_serversets"));
    cmd.args(args)
        .env_remove("SERVERSETS_ZK")
        .env_remove("SERVERSETS_ZK_DIGEST")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary to completion.
pub async fn run(args: &[&str]) -> Output {
    run_with_stdin(args, None).await
}

/// Runs the binary to completion, feeding `stdin` when given.
pub async fn run_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = command(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn serversets");
    if let Some(text) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(T * 2, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("serversets {args:?} did not finish"))
        .expect("wait for serversets");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A long-running command (`watch`, `register`) whose output is followed
/// line by line.
pub struct Running {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Running {
    pub fn spawn(args: &[&str]) -> Running {
        let mut cmd = command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn serversets");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            child,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for the next stdout line matching `pred` and returns it.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
                if pred(&line) {
                    return Some(line);
                }
            }
            None
        };
        match tokio::time::timeout(T, wait).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "output ended before: {what}\nstdout:\n{}\nstderr:\n{}",
                self.seen.join("\n"),
                self.stderr()
            ),
            Err(_) => panic!(
                "timed out waiting for: {what}\nstdout:\n{}\nstderr:\n{}",
                self.seen.join("\n"),
                self.stderr()
            ),
        }
    }

    /// The stderr collected so far and from now on (readable after `wait`).
    pub fn stderr_handle(&self) -> Arc<Mutex<String>> {
        self.stderr.clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal (SIGTERM, SIGINT) to the process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.child.id().expect("still running") as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own child.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Waits for the process to exit; returns its status and the rest of
    /// its stdout.
    pub async fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(T, self.child.wait())
            .await
            .expect("process exits")
            .expect("wait");
        while let Ok(Some(line)) = tokio::time::timeout(T, self.lines.recv()).await {
            self.seen.push(line);
        }
        (status, self.seen)
    }
}

/// A plain zookeeper-client connection to the shared test ZooKeeper.
pub async fn raw() -> zk::Client {
    testkit::znodes::connect(&zk().connect_string())
        .await
        .expect("raw client connects")
}

/// Creates `path` (and its parents) with `data`; returns the created path
/// (with the sequence number for sequential modes).
pub async fn put(client: &zk::Client, path: &str, data: &[u8], mode: zk::CreateMode) -> String {
    testkit::znodes::put(client, path, data, mode)
        .await
        .expect("create")
}

/// A member in the Finagle format, as another client would write it.
pub async fn put_member(client: &zk::Client, set: &str, json: &str) -> String {
    put(
        client,
        &format!("{set}/member_"),
        json.as_bytes(),
        zk::CreateMode::EphemeralSequential,
    )
    .await
}

/// The `member_` children of `path`, sorted, as a fresh read sees them.
pub async fn members_in_zk(client: &zk::Client, path: &str) -> Vec<String> {
    testkit::znodes::members(client, path)
        .await
        .expect("list members")
}

/// Polls until `path` has `n` members, and returns them.
pub async fn wait_members(client: &zk::Client, path: &str, n: usize) -> Vec<String> {
    let seen = Mutex::new(Vec::new());
    testkit::eventually(T, &format!("{path} to have {n} members"), || async {
        let members = members_in_zk(client, path).await;
        let done = members.len() == n;
        *seen.lock().unwrap() = members;
        done
    })
    .await;
    seen.into_inner().unwrap()
}

/// `--zk <test zk> --session-timeout 2s` plus the rest.
pub fn zk_args() -> Vec<String> {
    vec![
        "--zk".into(),
        zk().connect_string(),
        "--session-timeout".into(),
        "2s".into(),
    ]
}

/// `locate` with the options `extra`, a `--node` for each of `nodes`, and
/// `keys` on stdin; returns what it printed once it succeeded.
pub async fn locate_from_stdin<'a>(
    extra: &[&str],
    nodes: &[String],
    keys: impl Iterator<Item = &'a str>,
) -> String {
    let mut argv = vec!["locate"];
    argv.extend_from_slice(extra);
    for n in nodes {
        argv.extend(["--node", n.as_str()]);
    }
    argv.push("-");
    let keys: String = keys.map(|k| format!("{k}\n")).collect();
    let out = run_with_stdin(&argv, Some(&keys)).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout
}

/// The `(key, node)` pairs of `locate`'s `KEY<TAB>NODE` lines.
pub fn locations(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .map(|l| {
            let (k, n) = l.split_once('\t').expect("KEY<TAB>NODE");
            (k.to_string(), n.to_string())
        })
        .collect()
}

/// Runs the binary to completion with [`zk_args`], then `rest`.
pub async fn run_on_zk(rest: &[&str]) -> Output {
    let zk = zk_args();
    run(&args(&zk, rest)).await
}

/// Joins owned and borrowed arguments for `run`/`Running::spawn`.
pub fn args<'a>(owned: &'a [String], rest: &[&'a str]) -> Vec<&'a str> {
    owned
        .iter()
        .map(String::as_str)
        .chain(rest.iter().copied())
        .collect()
}

/// Asserts a failed run: `code`, and exactly one stderr line containing
/// every one of `wants`.
pub fn assert_fails(out: &Output, code: i32, wants: &[&str]) {
    assert_eq!(out.code, Some(code), "exit code; stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {:?}", out.stderr);
    for want in wants {
        assert!(
            lines[0].contains(want),
            "stderr {:?} should contain {want:?}",
            lines[0]
        );
    }
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
}

/// A pipe whose buffer is already full, as a stdout nobody reads: any
/// write to the returned `Stdio` blocks. Keep the returned read end alive
/// (dropping it would turn the writes into broken-pipe errors instead).
pub fn stalled_stdout() -> (std::os::fd::OwnedFd, Stdio) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two-element array with fresh descriptors,
    // each owned exactly once below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut file = std::fs::File::from(write);
    set_nonblocking(&file, true);
    let chunk = [b'x'; 4096];
    loop {
        use std::io::Write;
        match file.write(&chunk) {
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    // Blocking again: the child shares this file description.
    set_nonblocking(&file, false);
    (read, Stdio::from(file))
}

fn set_nonblocking(file: &std::fs::File, on: bool) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl(2) on a descriptor we own, changing only O_NONBLOCK.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert!(flags >= 0, "F_GETFL");
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags), 0, "F_SETFL");
    }
}

/// Sends `sig` to the process `pid`.
pub fn signal_pid(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child of this test.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Waits until the process has a handler installed for `sig` (the
/// `SigCgt` mask in /proc), so a signal sent next is caught, not fatal.
pub async fn wait_for_handler(pid: u32, sig: libc::c_int) {
    let bit = 1u64 << (sig - 1);
    let what = format!("a handler for signal {sig} in {pid}");
    testkit::eventually(T, &what, || async {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        caught & bit != 0
    })
    .await;
}

/// Waits for a child to exit (at most `T`), with its exit code.
pub async fn exit_code(child: &mut tokio::process::Child) -> Option<i32> {
    tokio::time::timeout(T, child.wait())
        .await
        .expect("the process exits")
        .expect("wait")
        .code()
}

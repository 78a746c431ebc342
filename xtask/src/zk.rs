//! `cargo xtask zk start|status|stop`: a local ZooKeeper for trying things by
//! hand. The servers are started by testkit (the same code the tests use),
//! then detached so they outlive this command; their pids, ports and data
//! directory are kept in `target/zk/state.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{ZkCluster, ZkOptions};
use xtask::zookeeper::server_mode;

use crate::proc::{alive, cmdline, signal};
use crate::ui::{human, Ui};
use crate::{provision, target_dir, Result};

/// One detached server, as remembered in the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub pid: u32,
    pub address: String,
}

/// What `zk start` leaves behind for `status` and `stop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub connect: String,
    pub data_dir: PathBuf,
    pub servers: Vec<ServerState>,
}

impl State {
    pub fn to_json(&self) -> Value {
        json!({
            "connect": self.connect,
            "data_dir": self.data_dir.display().to_string(),
            "servers": self.servers.iter().map(|s| json!({
                "pid": s.pid,
                "address": s.address,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn from_json(v: &Value) -> Result<State> {
        let text = |key: &str| -> Result<String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("state file: missing {key:?}").into())
        };
        let servers = v
            .get("servers")
            .and_then(Value::as_array)
            .ok_or("state file: missing \"servers\"")?
            .iter()
            .map(|s| {
                let pid = s
                    .get("pid")
                    .and_then(Value::as_u64)
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or("state file: server without a pid")?;
                let address = s
                    .get("address")
                    .and_then(Value::as_str)
                    .ok_or("state file: server without an address")?
                    .to_string();
                Ok(ServerState { pid, address })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(State {
            connect: text("connect")?,
            data_dir: PathBuf::from(text("data_dir")?),
            servers,
        })
    }
}

fn zk_dir() -> PathBuf {
    target_dir().join("zk")
}

fn state_path() -> PathBuf {
    zk_dir().join("state.json")
}

fn load() -> Result<Option<State>> {
    let path = state_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let v: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(Some(State::from_json(&v)?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// True when `pid` is alive and still one of our ZooKeeper JVMs (pids can
/// be reused after a reboot or a long time).
fn is_our_server(pid: u32, data_dir: &Path) -> bool {
    alive(pid)
        && cmdline(pid).is_some_and(|c| {
            c.contains("org.apache.zookeeper") && c.contains(&*data_dir.to_string_lossy())
        })
}

/// Parses `--ensemble N` / `--ensemble=N`; 1 (standalone) when absent.
pub fn parse_start_args(args: &[&str]) -> Result<usize> {
    let mut servers = 1;
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let value = if arg == "--ensemble" {
            *it.next().ok_or("--ensemble needs a number of servers")?
        } else if let Some(v) = arg.strip_prefix("--ensemble=") {
            v
        } else {
            return Err(format!("unknown argument {arg:?} for `zk start`").into());
        };
        servers = value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=9).contains(n))
            .ok_or_else(|| format!("--ensemble {value:?}: expected a number from 1 to 9"))?;
    }
    Ok(servers)
}

pub fn run(args: &[&str]) -> Result<ExitCode> {
    let usage = |why: &str| {
        eprintln!("xtask zk: {why}\nusage: cargo xtask zk start [--ensemble N] | status | stop");
        Ok(ExitCode::from(2))
    };
    match args {
        ["start", rest @ ..] => match parse_start_args(rest) {
            Ok(servers) => start(servers),
            Err(e) => usage(&e.to_string()),
        },
        ["status"] => status(),
        ["stop"] => stop(),
        _ => usage(&format!("unknown arguments {args:?}")),
    }
}

fn start(servers: usize) -> Result<ExitCode> {
    let ui = Ui::stdout();
    if let Some(state) = load()? {
        if state
            .servers
            .iter()
            .any(|s| is_our_server(s.pid, &state.data_dir))
        {
            println!(
                "a local ZooKeeper is already running: {}",
                ui.bold(&state.connect)
            );
            println!("stop it first with `cargo xtask zk stop`");
            return Ok(ExitCode::FAILURE);
        }
    }
    provision::ensure(&ui, "")?;
    let data_dir = zk_dir().join("data");
    if data_dir.exists() {
        // Each start picks new free ports, so old data (with its old
        // ensemble configuration) is of no use.
        std::fs::remove_dir_all(&data_dir)
            .map_err(|e| format!("remove {}: {e}", data_dir.display()))?;
    }
    let kind = if servers == 1 {
        "a standalone ZooKeeper".to_string()
    } else {
        format!("a {servers}-server ZooKeeper ensemble")
    };
    println!("starting {kind} ...");
    let t = Instant::now();
    let cluster = ZkCluster::start(ZkOptions {
        servers,
        die_with_parent: false,
        data_root: Some(data_dir.clone()),
        tick_ms: 500,
        ..ZkOptions::default()
    })?;
    let connect = cluster.connect_string();
    let addresses = (0..cluster.len())
        .map(|i| cluster.server_address(i))
        .collect::<testkit::Result<Vec<_>>>()?;
    let pids = cluster.detach();
    if pids.len() != addresses.len() {
        return Err(format!(
            "expected {} running servers, found {}",
            addresses.len(),
            pids.len()
        )
        .into());
    }
    let state = State {
        connect: connect.clone(),
        data_dir,
        servers: pids
            .into_iter()
            .zip(addresses)
            .map(|(pid, address)| ServerState { pid, address })
            .collect(),
    };
    let path = state_path();
    std::fs::write(&path, format!("{:#}\n", state.to_json()))
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("started {kind} in {}", human(t.elapsed()));
    print_servers(&ui, &state);
    println!();
    println!("connect string: {}", ui.bold(&connect));
    println!("  export SERVERSETS_ZK={connect}");
    println!(
        "logs and data in {}; stop with `cargo xtask zk stop`",
        state.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn status() -> Result<ExitCode> {
    let ui = Ui::stdout();
    let Some(state) = load()? else {
        println!("no local ZooKeeper (start one with `cargo xtask zk start`)");
        return Ok(ExitCode::FAILURE);
    };
    println!("connect string: {}", ui.bold(&state.connect));
    let up = print_servers(&ui, &state);
    println!("{up} of {} servers running", state.servers.len());
    Ok(if up == state.servers.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints one line per server; returns how many are running.
fn print_servers(ui: &Ui, state: &State) -> usize {
    let mut up = 0;
    for (i, s) in state.servers.iter().enumerate() {
        let running = is_our_server(s.pid, &state.data_dir);
        let line = if running {
            up += 1;
            let mode = server_mode(&s.address).unwrap_or_else(|| "not serving".to_string());
            format!("{} {mode}", ui.green("running"))
        } else {
            ui.red("not running")
        };
        println!("  server {i}  pid {:<8} {:<22} {line}", s.pid, s.address);
    }
    up
}

fn stop() -> Result<ExitCode> {
    let Some(state) = load()? else {
        println!("no local ZooKeeper to stop");
        return Ok(ExitCode::SUCCESS);
    };
    let running: Vec<u32> = state
        .servers
        .iter()
        .map(|s| s.pid)
        .filter(|&pid| is_our_server(pid, &state.data_dir))
        .collect();
    for &pid in &running {
        let _ = signal(pid, libc::SIGCONT);
        let _ = signal(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in running.iter().filter(|&&p| alive(p)) {
        let _ = signal(pid, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(100));
    let left: Vec<u32> = running.iter().copied().filter(|&p| alive(p)).collect();
    if !left.is_empty() {
        return Err(format!("could not stop ZooKeeper pids {left:?}").into());
    }
    std::fs::remove_file(state_path())?;
    println!(
        "stopped {} ZooKeeper server(s) ({}); logs kept in {} until the next start",
        running.len(),
        state.connect,
        state.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensemble_argument_forms() {
        assert_eq!(parse_start_args(&[]).unwrap(), 1);
        assert_eq!(parse_start_args(&["--ensemble", "3"]).unwrap(), 3);
        assert_eq!(parse_start_args(&["--ensemble=5"]).unwrap(), 5);
        assert!(parse_start_args(&["--ensemble"]).is_err());
        assert!(parse_start_args(&["--ensemble", "0"]).is_err());
        assert!(parse_start_args(&["--ensemble", "x"]).is_err());
        assert!(parse_start_args(&["--bogus"]).is_err());
    }

    #[test]
    fn state_round_trips_through_json() {
        let state = State {
            connect: "127.0.0.1:1,127.0.0.1:2".into(),
            data_dir: PathBuf::from("/tmp/zk"),
            servers: vec![
                ServerState {
                    pid: 10,
                    address: "127.0.0.1:1".into(),
                },
                ServerState {
                    pid: 11,
                    address: "127.0.0.1:2".into(),
                },
            ],
        };
        assert_eq!(State::from_json(&state.to_json()).unwrap(), state);
        assert!(State::from_json(&json!({"connect": "x"})).is_err());
    }
}

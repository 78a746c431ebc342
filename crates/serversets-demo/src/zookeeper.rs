//! The ZooKeeper part: the system packages, a 3-node ensemble, each
//! server's role, and killing the leader under a live watch.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serversets_core::Watcher;
use testkit::{four_letter_word, ZkCluster, ZkOptions};

use crate::context::Demo;
use crate::http::wait_members;
use crate::ui::human;
use crate::{Result, StepFuture};

/// The system packages are xtask's business (the one place that knows the
/// list): `cargo xtask install` checks them, installs what is missing when
/// run as root, and otherwise prints the exact command and fails.
pub fn provision_step(demo: &mut Demo) -> Result<()> {
    demo.say("the demo runs real servers: ZooKeeper (Debian's package, on a JVM) and memcached");
    demo.say(&format!("$ {}", demo.ui.bold("cargo xtask install")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(&cargo)
        .args(["xtask", "install"])
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{cargo} xtask install`: {e}"))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            demo.say(&line?);
        }
    }
    let status = child.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo xtask install` failed ({status}); see above").into())
    }
}

pub fn start_zk(demo: &mut Demo) -> Result<()> {
    demo.say("three ZooKeeper JVMs on free loopback ports, each with its own data directory");
    let zk = ZkCluster::start(ZkOptions {
        servers: 3,
        ..ZkOptions::default()
    })?;
    demo.zk_pids = zk.pids().into_iter().flatten().collect();
    demo.say(&format!(
        "connect string: {}",
        demo.ui.bold(&zk.connect_string())
    ));
    demo.say(&format!("data and logs:  {}", zk.root().display()));
    let count = demo.zk_pids.len();
    demo.zk = Some(zk);
    demo.check(count == 3, format!("{count} of 3 servers running"))
}

pub fn roles(demo: &mut Demo) -> Result<()> {
    let zk = demo.zk()?;
    let mut modes = Vec::new();
    for i in 0..zk.len() {
        let addr = zk.server_address(i)?;
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("bad server address {addr}"))?;
        let mode = four_letter_word(port, "srvr")
            .ok()
            .and_then(|r| parse_mode(&r))
            .unwrap_or_else(|| "no answer".into());
        demo.say(&format!("server {i} at {addr}: {}", demo.ui.bold(&mode)));
        modes.push(mode);
    }
    let leaders = modes.iter().filter(|m| *m == "leader").count();
    let followers = modes.iter().filter(|m| *m == "follower").count();
    demo.check(
        leaders == 1 && followers == 2,
        format!("one leader and two followers (got {leaders} and {followers})"),
    )
}

pub fn kill_leader(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let zk = demo.zk()?;
        let watch = demo
            .watch
            .as_ref()
            .ok_or("no watch (the watch step did not run)")?;
        let leader = zk.leader().ok_or("no ZooKeeper leader found")?;
        let mut health = watch.health_changes();
        demo.say(&format!("kill -9 the leader, server {leader}"));
        zk.kill(leader)?;
        let t = Instant::now();
        let mut lowest = watch.snapshot().len();
        let mut transitions = Vec::new();
        while t.elapsed() < Duration::from_secs(3) {
            lowest = lowest.min(watch.snapshot().len());
            if health.has_changed().unwrap_or(false) {
                transitions.push(health.borrow_and_update().to_string());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !transitions.is_empty() {
            demo.say(&format!(
                "connection health went: {}",
                transitions.join(" -> ")
            ));
        }
        demo.check(
            lowest == 3,
            format!("the watch served all 3 members throughout (lowest seen: {lowest})"),
        )?;
        let new_leader = zk.leader();
        demo.say(&format!(
            "new leader: {}",
            new_leader
                .map(|l| format!("server {l}"))
                .unwrap_or_else(|| "election in progress".into())
        ));
        // A change made now still reaches the watch.
        let sick = demo.backends.first().ok_or("no first backend")?;
        let addr = sick.addr.clone();
        sick.healthy.store(false, Ordering::SeqCst);
        let (_, took) = wait_members(watch, "backend 1 left after the leader change", |s| {
            s.iter().all(|m| m.addr().to_string() != addr)
        })
        .await?;
        demo.ok(&format!(
            "a change after the leader kill arrived in {}",
            human(took)
        ));
        sick.healthy.store(true, Ordering::SeqCst);
        wait_members(watch, "all three back", |s| s.len() == 3).await?;
        demo.ok("and all three members are registered again");
        demo.say(&format!(
            "restart server {leader}: it rejoins as a follower"
        ));
        zk.restart(leader)?;
        Ok(())
    })
}

/// The `Mode:` of a `srvr` reply (standalone, leader, follower).
fn parse_mode(srvr: &str) -> Option<String> {
    srvr.lines()
        .find_map(|l| l.strip_prefix("Mode:"))
        .map(|m| m.trim().to_string())
}

/// True when `pid` exists and is not a zombie (the state letter of
/// `/proc/<pid>/stat` follows the command name, which is in parentheses).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next()?.chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_comes_from_srvr() {
        let reply = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\nNode count: 5\n";
        assert_eq!(parse_mode(reply).as_deref(), Some("follower"));
        assert_eq!(parse_mode("nothing"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }
}

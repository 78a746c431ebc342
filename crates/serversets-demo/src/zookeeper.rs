//! The ZooKeeper part: the system packages, a 3-node ensemble, each
//! server's role, and killing the leader under a live watch.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serversets_core::Watcher;
use testkit::{ZkCluster, ZkOptions};
use xtask::provision;
use xtask::ui::human;
use xtask::zookeeper::server_mode;

use crate::context::Demo;
use crate::http::wait_members;
use crate::{Result, StepFuture};

/// The system packages are xtask's business: its provision module holds the
/// one list, installs what is missing when run as root, and otherwise
/// prints the exact command and fails (`cargo xtask install` runs the same).
pub fn provision_step(demo: &mut Demo) -> Result<()> {
    demo.say("the demo runs real servers: ZooKeeper (Debian's package, on a JVM) and memcached");
    provision::ensure(&demo.ui, "      ")
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
        let mode = server_mode(&addr).unwrap_or_else(|| "no answer".into());
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
        let watch = demo.watch()?;
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

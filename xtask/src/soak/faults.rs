//! Random faults, drawn from one seeded RNG, and the heal that ends them.
//!
//! Server-level faults (a server killed, paused, or two of them gone) run
//! one at a time: the next starts only after every server serves again.
//! Everything else (proxy resets, stalls, blackholes, refusals, lost
//! replies, sidecars and watchers killed or stopped, health flips) comes
//! every 0.3-1.5 s and overlaps freely with them and with each other.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use testkit::{four_letter_word, zk_op, ZkCluster};

use super::fleet::Fleet;
use super::report::{self, stamp};
use crate::Result;

/// A lost-reply group: its name in the counts, and its operation codes.
type Lose = (&'static str, &'static [i32]);
const LOSE_CREATE: Lose = ("lost-replies-create", &[zk_op::CREATE, zk_op::CREATE2]);
const LOSE_DELETE: Lose = ("lost-replies-delete", &[zk_op::DELETE]);
const LOSE_GET_DATA: Lose = ("lost-replies-getdata", &[zk_op::GET_DATA]);
const LOSE_LIST: Lose = (
    "lost-replies-getchildren",
    &[zk_op::GET_CHILDREN, zk_op::GET_CHILDREN2],
);
const LOSE_MULTI: Lose = ("lost-replies-multi", &[zk_op::MULTI, zk_op::MULTI_READ]);
const LOSE: &[Lose] = &[
    LOSE_CREATE,
    LOSE_DELETE,
    LOSE_GET_DATA,
    LOSE_LIST,
    LOSE_MULTI,
];

/// Kinds of non-server fault, with their weights.
const OTHER: &[(Other, f64)] = &[
    (Other::Reset, 3.0),
    (Other::Stall, 2.0),
    (Other::Blackhole, 1.5),
    (Other::Refuse, 1.0),
    (Other::LoseReplies, 3.0),
    (Other::RegTerm, 1.5),
    (Other::RegKill, 1.5),
    (Other::WatcherTerm, 0.7),
    (Other::WatcherKill, 0.8),
    (Other::HealthFlip, 2.0),
];

#[derive(Debug, Clone, Copy)]
enum Other {
    Reset,
    Stall,
    Blackhole,
    Refuse,
    LoseReplies,
    RegTerm,
    RegKill,
    WatcherTerm,
    WatcherKill,
    HealthFlip,
}

/// How servers were taken down, so they can be brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    Killed,
    Stopped,
    Paused,
}

/// Where the one server-level fault is.
#[derive(Debug)]
enum ServerFault {
    Calm,
    Down {
        servers: Vec<usize>,
        how: Down,
        restore_at: Instant,
    },
    Settling {
        since: Instant,
        next_probe: Instant,
    },
}

/// The fault injector.
pub struct Chaos {
    rng: fastrand::Rng,
    start: Instant,
    session: Duration,
    /// How many faults of each kind were injected.
    pub counts: BTreeMap<&'static str, u64>,
    server: ServerFault,
    next_fault: Instant,
    next_server_fault: Instant,
    blackhole_until: Vec<Option<Instant>>,
    refuse_until: Vec<Option<Instant>>,
    /// When to reset every proxy's connections.
    resets_at: Vec<Instant>,
    ports: Vec<u16>,
}

impl Chaos {
    pub fn new(seed: u64, start: Instant, session: Duration, zk: &ZkCluster) -> Result<Chaos> {
        let n = zk.len();
        let ports = (0..n)
            .map(|i| {
                let addr = zk.direct_address(i)?;
                addr.rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .ok_or_else(|| format!("no port in server address {addr}").into())
            })
            .collect::<Result<Vec<u16>>>()?;
        let now = Instant::now();
        Ok(Chaos {
            rng: fastrand::Rng::with_seed(seed),
            start,
            session,
            counts: BTreeMap::new(),
            server: ServerFault::Calm,
            next_fault: now,
            next_server_fault: now,
            blackhole_until: vec![None; n],
            refuse_until: vec![None; n],
            resets_at: Vec::new(),
            ports,
        })
    }

    /// A random value in `lo..hi`.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.rng.u64(0..=span))
    }

    fn say(&self, text: &str) {
        println!("  {} {text}", stamp(self.start.elapsed()));
    }

    fn count(&mut self, kind: &'static str) {
        *self.counts.entry(kind).or_default() += 1;
    }

    /// A random bool, true with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.f64() < p
    }

    /// Starts a fault phase: the first faults come soon.
    pub fn start_phase(&mut self) {
        let now = Instant::now();
        self.next_fault = now + self.between(ms(200), ms(1000));
        self.next_server_fault = now + self.between(ms(500), ms(4000));
    }

    /// Called every tick of a fault phase: ends timed faults, moves the
    /// server fault along, and injects the next fault when it is due.
    pub fn tick(&mut self, zk: &ZkCluster, fleet: &mut Fleet) -> Result<()> {
        let now = Instant::now();
        self.end_timed(zk, now);
        self.step_server(zk, now)?;
        if now >= self.next_fault {
            self.inject(zk, fleet)?;
            self.next_fault = Instant::now() + self.between(ms(300), ms(1500));
        }
        Ok(())
    }

    fn end_timed(&mut self, zk: &ZkCluster, now: Instant) {
        let due = self.resets_at.len();
        self.resets_at.retain(|&t| t > now);
        for _ in self.resets_at.len()..due {
            let reset: usize = zk.proxies().iter().map(|p| p.reset_all()).sum();
            self.count("proxy-reset");
            self.say(&format!("every proxy: reset {reset} connections"));
        }
        for (i, p) in zk.proxies().iter().enumerate() {
            if self.blackhole_until[i].is_some_and(|t| now >= t) {
                self.blackhole_until[i] = None;
                p.set_blackhole(false);
                self.say(&format!("proxy {i}: blackhole off"));
            }
            if self.refuse_until[i].is_some_and(|t| now >= t) {
                self.refuse_until[i] = None;
                p.refuse(false);
                self.say(&format!("proxy {i}: refusing off"));
            }
        }
    }

    /// A server to hurt: the leader half of the time.
    fn victim(&mut self, zk: &ZkCluster) -> usize {
        if self.rng.bool() {
            if let Some(leader) = zk.leader() {
                return leader;
            }
        }
        self.rng.usize(0..zk.len())
    }

    fn step_server(&mut self, zk: &ZkCluster, now: Instant) -> Result<()> {
        match &self.server {
            ServerFault::Calm if now >= self.next_server_fault && zk.len() >= 3 => {
                self.start_server_fault(zk, now)
            }
            ServerFault::Down { restore_at, .. } if now >= *restore_at => {
                self.restore_servers(zk)?;
                self.server = ServerFault::Settling {
                    since: now,
                    next_probe: now + ms(500),
                };
                Ok(())
            }
            ServerFault::Settling { since, next_probe } if now >= *next_probe => {
                let since = *since;
                let serving = self
                    .ports
                    .iter()
                    .all(|&p| four_letter_word(p, "srvr").is_ok_and(|r| r.contains("Mode: ")));
                if serving || since.elapsed() > Duration::from_secs(60) {
                    if !serving {
                        self.say("servers still not all serving 60 s after the restore; going on");
                    }
                    self.server = ServerFault::Calm;
                    self.next_server_fault = Instant::now() + self.between(ms(2000), ms(8000));
                } else {
                    self.server = ServerFault::Settling {
                        since,
                        next_probe: now + ms(500),
                    };
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn start_server_fault(&mut self, zk: &ZkCluster, now: Instant) -> Result<()> {
        let past_session = self.between(self.session + ms(500), self.session + ms(3000));
        let roll = self.rng.f64();
        let (servers, how, hold) = if roll < 0.45 {
            let v = self.victim(zk);
            zk.kill(v)?;
            self.count("server-kill");
            let hold = self.between(ms(1000), ms(5000));
            self.say(&format!(
                "server {v}: kill -9 (restart in {:.1} s)",
                hold.as_secs_f64()
            ));
            (vec![v], Down::Killed, hold)
        } else if roll < 0.8 {
            let v = self.victim(zk);
            zk.pause(v)?;
            self.count("server-pause");
            self.say(&format!(
                "server {v}: SIGSTOP for {:.1} s",
                past_session.as_secs_f64()
            ));
            (vec![v], Down::Paused, past_session)
        } else {
            let first = self.victim(zk);
            let second = (first + 1 + self.rng.usize(0..zk.len() - 1)) % zk.len();
            let how = if self.rng.bool() {
                Down::Stopped
            } else {
                Down::Paused
            };
            for &v in &[first, second] {
                if how == Down::Stopped {
                    zk.stop(v)?;
                } else {
                    zk.pause(v)?;
                }
            }
            self.count(if how == Down::Stopped {
                "quorum-loss-stop"
            } else {
                "quorum-loss-pause"
            });
            self.say(&format!(
                "quorum loss: servers {first} and {second} {} for {:.1} s",
                if how == Down::Stopped {
                    "stopped"
                } else {
                    "paused"
                },
                past_session.as_secs_f64()
            ));
            (vec![first, second], how, past_session)
        };
        self.server = ServerFault::Down {
            servers,
            how,
            restore_at: now + hold,
        };
        Ok(())
    }

    fn restore_servers(&mut self, zk: &ZkCluster) -> Result<()> {
        if let ServerFault::Down { servers, how, .. } =
            std::mem::replace(&mut self.server, ServerFault::Calm)
        {
            for &v in &servers {
                match how {
                    Down::Paused => zk.resume(v)?,
                    Down::Killed | Down::Stopped => zk.start_server(v)?,
                }
            }
            let verb = if how == Down::Paused {
                "resumed"
            } else {
                "started again"
            };
            self.say(&format!("servers {servers:?} {verb}"));
        }
        Ok(())
    }

    /// Proxies to hit: all of them a quarter of the time, else one.
    fn proxies(&mut self, n: usize) -> Vec<usize> {
        if self.chance(0.25) {
            (0..n).collect()
        } else {
            vec![self.rng.usize(0..n)]
        }
    }

    fn pick_other(&mut self) -> Other {
        let total: f64 = OTHER.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.f64() * total;
        for &(kind, w) in OTHER {
            if x < w {
                return kind;
            }
            x -= w;
        }
        Other::Reset
    }

    fn inject(&mut self, zk: &ZkCluster, fleet: &mut Fleet) -> Result<()> {
        let n = zk.proxies().len();
        if n == 0 {
            return Err("the soak needs a proxied cluster".into());
        }
        let kind = self.pick_other();
        match kind {
            Other::Reset => {
                let targets = self.proxies(n);
                let reset: usize = targets.iter().map(|&i| zk.proxies()[i].reset_all()).sum();
                self.count("proxy-reset");
                self.say(&format!("proxies {targets:?}: reset {reset} connections"));
            }
            Other::Stall => {
                let targets = self.proxies(n);
                let hi = self.session.mul_f64(1.2);
                let d = self.between(ms(500), hi);
                for &i in &targets {
                    zk.proxies()[i].stall(d);
                }
                self.count("proxy-stall");
                self.say(&format!(
                    "proxies {targets:?}: stall {:.1} s",
                    d.as_secs_f64()
                ));
            }
            Other::Blackhole => {
                let targets = self.proxies(n);
                // A blackhole of every proxy past the session timeout
                // expires every session.
                let d = if targets.len() == n && self.rng.bool() {
                    self.between(self.session + ms(500), self.session + ms(2500))
                } else {
                    self.between(ms(1000), ms(4000))
                };
                for &i in &targets {
                    zk.proxies()[i].set_blackhole(true);
                }
                hold(&mut self.blackhole_until, &targets, Instant::now() + d);
                self.count("proxy-blackhole");
                self.say(&format!(
                    "proxies {targets:?}: blackhole for {:.1} s",
                    d.as_secs_f64()
                ));
            }
            Other::Refuse => {
                let targets = self.proxies(n);
                let d = self.between(ms(500), ms(3000));
                for &i in &targets {
                    zk.proxies()[i].refuse(true);
                }
                hold(&mut self.refuse_until, &targets, Instant::now() + d);
                self.count("proxy-refuse");
                self.say(&format!(
                    "proxies {targets:?}: refuse new connections for {:.1} s",
                    d.as_secs_f64()
                ));
            }
            Other::LoseReplies => {
                let targets = self.proxies(n);
                let (kind, ops) = LOSE[self.rng.usize(0..LOSE.len())];
                let count = self.rng.usize(1..=3);
                for &i in &targets {
                    zk.proxies()[i].lose_replies(ops, count);
                }
                self.count(kind);
                self.say(&format!(
                    "proxies {targets:?}: lose the next {count} replies to {}",
                    kind.trim_start_matches("lost-replies-")
                ));
            }
            Other::RegTerm | Other::RegKill => {
                if fleet.regs.is_empty() {
                    return Ok(());
                }
                let kill = matches!(kind, Other::RegKill);
                let slot = self.rng.usize(0..fleet.regs.len());
                let name = fleet.regs[slot].proc.name.clone();
                fleet.replace_registration(slot, kill)?;
                let new = &fleet.regs[slot].proc.name;
                self.count(if kill {
                    "registration-kill"
                } else {
                    "registration-term"
                });
                self.say(&format!(
                    "{name}: {}, replaced by {new}",
                    if kill { "kill -9" } else { "SIGTERM" }
                ));
                self.ambush(zk, LOSE_CREATE);
            }
            Other::WatcherTerm | Other::WatcherKill => {
                if fleet.watchers.is_empty() {
                    return Ok(());
                }
                let kill = matches!(kind, Other::WatcherKill);
                let slot = self.rng.usize(0..fleet.watchers.len());
                let name = fleet.watchers[slot].name.clone();
                fleet.restart_watcher(slot, kill)?;
                let new = &fleet.watchers[slot].name;
                self.count(if kill { "watcher-kill" } else { "watcher-term" });
                self.say(&format!(
                    "{name}: {}, restarted as {new}",
                    if kill { "kill -9" } else { "SIGTERM" }
                ));
                let reads = [LOSE_MULTI, LOSE_LIST, LOSE_GET_DATA][self.rng.usize(0..3)];
                self.ambush(zk, reads);
            }
            Other::HealthFlip => {
                let slots = fleet.checked_slots();
                if slots.is_empty() {
                    return Ok(());
                }
                let slot = slots[self.rng.usize(0..slots.len())];
                let healthy = !fleet.regs[slot].healthy;
                fleet.set_health(slot, healthy)?;
                self.count("health-flip");
                self.say(&format!(
                    "{}: health check now {}",
                    fleet.regs[slot].proc.name,
                    if healthy { "passes" } else { "fails" }
                ));
            }
        }
        Ok(())
    }

    /// Right after a process starts: half of the time its first requests
    /// of a kind (a watcher's first full read, a sidecar's first create)
    /// lose their replies on every proxy, and a third of the time every
    /// connection is reset a moment later, likely in the middle of them.
    fn ambush(&mut self, zk: &ZkCluster, (kind, ops): Lose) {
        if self.rng.bool() {
            let count = self.rng.usize(1..=2);
            for p in zk.proxies() {
                p.lose_replies(ops, count);
            }
            self.count(kind);
            self.say(&format!(
                "  and every proxy loses the next {count} replies to {}",
                kind.trim_start_matches("lost-replies-")
            ));
        }
        if self.chance(0.3) {
            let at = Instant::now() + self.between(ms(30), ms(400));
            self.resets_at.push(at);
        }
    }

    /// Ends every fault: servers back and serving, proxies healed. Returns
    /// once every server serves.
    pub fn heal(&mut self, zk: &ZkCluster, ledger: &report::Shared) -> Result<()> {
        self.restore_servers(zk)?;
        self.server = ServerFault::Calm;
        for p in zk.proxies() {
            p.heal();
        }
        self.blackhole_until.iter_mut().for_each(|t| *t = None);
        self.refuse_until.iter_mut().for_each(|t| *t = None);
        self.resets_at.clear();
        let pids = zk.pids();
        for (i, pid) in pids.iter().enumerate() {
            match pid {
                None => zk.start_server(i)?,
                // SIGCONT is harmless for a server that is not paused.
                Some(_) => zk.resume(i)?,
            }
        }
        for i in 0..zk.len() {
            if let Err(e) = zk.wait_serving(i) {
                report::lock(ledger).note(format!("server {i} did not come back: {e}"));
                return Err(e.into());
            }
        }
        Ok(())
    }
}

/// Holds each of `targets` until `until` at least: a longer hold already
/// running is kept.
fn hold(holds: &mut [Option<Instant>], targets: &[usize], until: Instant) {
    for &i in targets {
        holds[i] = Some(holds[i].map_or(until, |t| t.max(until)));
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_only_ever_grows() {
        let now = Instant::now();
        let mut holds = vec![None, Some(now + ms(5000)), None];
        hold(&mut holds, &[0, 1], now + ms(1000));
        assert_eq!(holds, [Some(now + ms(1000)), Some(now + ms(5000)), None]);
        hold(&mut holds, &[0], now + ms(3000));
        assert_eq!(holds[0], Some(now + ms(3000)));
    }
}

//! The shared pool: per-host bookkeeping, least-outstanding choice, checkout,
//! return, membership changes, ejection and idle reaping.
//!
//! One mutex guards all hosts so a choice sees a consistent picture; it is
//! held only for bookkeeping, never across a connect, probe or close.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serversets_core::{HostPort, Snapshot, Watcher};

use crate::config::Config;
use crate::link::Link;
use crate::metrics::{HostMetrics, PoolMetrics};
use crate::{Error, HostStats};

/// Everything a set, its guards and its follower thread share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) watcher: Box<dyn Watcher>,
    state: Mutex<State>,
    /// Signalled when a slot frees, the members change, or the set closes.
    freed: Condvar,
    closed: AtomicBool,
    /// False once the follower thread has ended unexpectedly; `get` then
    /// applies membership changes itself.
    pub(crate) follower_alive: AtomicBool,
    /// Wakes the follower thread when the set closes.
    pub(crate) stop: tokio::sync::Notify,
    next_host_id: AtomicU64,
    /// The pool's metric handles (each host holds its own).
    metrics: PoolMetrics,
}

struct State {
    closed: bool,
    /// Version of the last snapshot applied; `None` before the first.
    version: Option<u64>,
    /// Callers blocked in `reserve`; a return wakes one only if there are
    /// any (a Condvar notify is a system call even with nobody waiting).
    waiters: usize,
    hosts: Vec<Host>,
    /// True when the hosts' weights differ: choices then compare
    /// outstanding requests per unit of weight ([`pick_weighted`]). False
    /// (all equal, or all 0) keeps the unweighted [`pick`].
    weighted: bool,
}

struct Host {
    /// Unique per incarnation: a host removed and added back gets a new id,
    /// so connections from before the removal are never reused.
    id: u64,
    addr: Arc<HostPort>,
    /// Checked-out connections plus connects in progress.
    active: usize,
    /// Unused connections, most recently returned last.
    idle: Vec<Idle>,
    /// Failures since the last success.
    failures: u32,
    ejected_until: Option<Instant>,
    /// The member's weight (`Member::weight`, finite and >= 0).
    weight: f64,
    /// 2^32 / `share`: outstanding × scale is the load a weighted choice
    /// compares (outstanding per unit of weight, in fixed point), one
    /// integer multiplication per host. Set by [`Shared::apply`].
    scale: u64,
    /// Its metric handles, registered when it joined.
    metrics: HostMetrics,
    /// The weight as an integer share of the set's heaviest (2^16 for it,
    /// at least 1; 1 for weight 0), for tie-breaks: integer sums keep the
    /// scan as fast as the unweighted one (a float sum is a chain of
    /// 4-cycle additions). Set by [`Shared::apply`].
    share: u64,
}

struct Idle {
    link: Link,
    since: Instant,
}

/// A slot reserved on a host: `active` already counts it.
struct Reservation {
    host_id: u64,
    index: usize,
    addr: Arc<HostPort>,
    link: Option<Link>,
}

/// Connections to close once the lock is released.
type Doomed = Vec<Link>;

fn close_all(doomed: Doomed) {
    for link in doomed {
        link.close();
    }
}

impl Host {
    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| t > now)
    }

    /// Brings the host's `active` and `idle` gauges up to date; called
    /// under the pool's lock after every change of either.
    fn report(&self) {
        self.metrics.counts(self.active, self.idle.len());
    }

    fn set_weight(&mut self, weight: f64) {
        self.weight = if weight.is_finite() && weight > 0.0 {
            weight
        } else {
            0.0
        };
    }
}

/// Units of [`Host::share`] for the heaviest host.
const SHARE_UNIT: f64 = 65_536.0;

/// Sets every host's tie-break share from its weight (see [`Host::share`]).
fn set_shares(hosts: &mut [Host]) {
    let heaviest = hosts.iter().map(|h| h.weight).fold(0.0, f64::max);
    for h in hosts {
        h.share = if h.weight > 0.0 && heaviest > 0.0 {
            ((h.weight / heaviest * SHARE_UNIT).round() as u64).max(1)
        } else {
            1
        };
        h.scale = (1u64 << 32) / h.share;
    }
}

impl Shared {
    pub(crate) fn new(config: Config, watcher: Box<dyn Watcher>) -> Shared {
        let metrics = PoolMetrics::new(&config.metrics_set);
        Shared {
            metrics,
            config,
            watcher,
            state: Mutex::new(State {
                closed: false,
                version: None,
                waiters: 0,
                hosts: Vec::new(),
                weighted: false,
            }),
            freed: Condvar::new(),
            closed: AtomicBool::new(false),
            follower_alive: AtomicBool::new(true),
            stop: tokio::sync::Notify::new(),
            next_host_id: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can
        // panic (there is nothing in them that panics), so a poisoned lock
        // still guards valid data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Applies `snap` if it is newer than what the pool holds: new addresses
    /// join, removed ones leave with their idle connections closed at once.
    pub(crate) fn apply(&self, snap: &Snapshot) {
        let mut doomed = Doomed::new();
        {
            let mut state = self.lock();
            let newer = state.version.is_none_or(|v| snap.version() > v);
            if state.closed || !newer {
                return;
            }
            state.version = Some(snap.version());
            let mut wanted: Vec<(&HostPort, f64)> =
                snap.iter().map(|m| (m.addr(), m.weight())).collect();
            // Members sharing an address are one host, of their largest
            // weight (sorted by address, heaviest first, then deduplicated).
            wanted.sort_by(|a, b| a.0.cmp(b.0).then(b.1.total_cmp(&a.1)));
            wanted.dedup_by(|later, first| later.0 == first.0);

            let before = state.hosts.len();
            state.hosts.retain_mut(|h| {
                let found = wanted.binary_search_by(|(a, _)| (*a).cmp(&*h.addr));
                if let Ok(i) = found {
                    h.set_weight(wanted[i].1);
                }
                let keep = found.is_ok();
                if !keep {
                    tracing::info!(addr = %h.addr, idle = h.idle.len(), in_flight = h.active,
                        "thriftset: host left the set");
                    doomed.extend(h.idle.drain(..).map(|i| i.link));
                    // Gone from the pool: nothing of it is counted any more.
                    h.metrics.counts(0, 0);
                }
                keep
            });
            let removed = before - state.hosts.len();
            let present: HashSet<HostPort> =
                state.hosts.iter().map(|h| (*h.addr).clone()).collect();
            let mut added = 0;
            for (addr, weight) in wanted {
                if !present.contains(addr) {
                    tracing::info!(%addr, weight, "thriftset: host joined the set");
                    let mut host = Host {
                        id: self.next_host_id.fetch_add(1, Ordering::Relaxed),
                        addr: Arc::new(addr.clone()),
                        active: 0,
                        idle: Vec::new(),
                        failures: 0,
                        ejected_until: None,
                        weight: 1.0,
                        scale: 1 << 32,
                        share: 1,
                        metrics: HostMetrics::new(&self.metrics, addr),
                    };
                    host.report();
                    host.set_weight(weight);
                    state.hosts.push(host);
                    added += 1;
                }
            }
            set_shares(&mut state.hosts);
            self.metrics.hosts.set(state.hosts.len() as f64);
            state.weighted = state.hosts.first().is_some_and(|first| {
                state
                    .hosts
                    .iter()
                    .any(|h| h.weight.to_bits() != first.weight.to_bits())
            });
            tracing::debug!(
                version = snap.version(),
                added,
                removed,
                hosts = state.hosts.len(),
                "thriftset: membership applied"
            );
        }
        // Waiters may now have a new host, or must learn theirs is gone.
        self.freed.notify_all();
        close_all(doomed);
    }

    /// Applies the watcher's current snapshot when the follower is not there
    /// to do it.
    fn sync_if_unfollowed(&self) {
        if !self.follower_alive.load(Ordering::Acquire) {
            self.apply(&self.watcher.snapshot());
        }
    }

    /// Checks out a connection: least outstanding host, waiting while every
    /// host is full, trying the next host when a connect fails.
    ///
    /// The whole checkout ends by `checkout_timeout + connect_timeout` from
    /// its start (#12): waiting for a slot takes at most the checkout
    /// timeout, each connect (name lookup included, over every address) at
    /// most the connect timeout, and all of it together at most their sum,
    /// however many hosts are tried.
    pub(crate) fn checkout(&self) -> Result<(Link, usize), Error> {
        self.sync_if_unfollowed();
        let start = Instant::now();
        let overall = later(
            start,
            self.config
                .checkout_timeout
                .saturating_add(self.config.connect_timeout),
        );
        // Set on the first wait, so the common path reads the clock less.
        let mut deadline = None;
        let mut tried: Vec<u64> = Vec::new();
        let mut last_error: Option<Error> = None;
        loop {
            let reservation = match self.reserve(&mut deadline, overall, &tried) {
                Ok(r) => r,
                // Every host failed to connect during this call: say why.
                Err(Error::NoHosts) => return Err(last_error.unwrap_or(Error::NoHosts)),
                Err(e) => return Err(e),
            };
            let host_id = reservation.host_id;
            match self.establish(reservation, overall) {
                Ok((link, index)) => {
                    // The host may have left the set, or the set closed,
                    // while we dialled or probed without the lock: never hand
                    // that out, and give the slot back (a close during a
                    // connect left it counted as active for good, #12).
                    if self.still_member(host_id, index) {
                        return Ok((link, index));
                    }
                    self.release(host_id, index, Some(link), Outcome::Unused);
                    tried.push(host_id);
                }
                Err((host_id, e)) => {
                    tried.push(host_id);
                    if let Some(e) = e {
                        last_error = Some(e);
                    }
                }
            }
        }
    }

    /// True while the host is in the set and the pool is open.
    /// Counts the checkout when it is handed out (so, on a member).
    fn still_member(&self, host_id: u64, hint: usize) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        match find(&mut state.hosts, host_id, hint) {
            Some(host) => {
                host.metrics.checkouts.increment(1);
                true
            }
            None => false,
        }
    }

    /// Reserves a slot on the best host, waiting for one while every host is
    /// full. Hosts in `tried` are skipped; `NoHosts` when nothing is left.
    fn reserve(
        &self,
        deadline: &mut Option<Instant>,
        overall: Instant,
        tried: &[u64],
    ) -> Result<Reservation, Error> {
        let mut doomed = Doomed::new();
        let mut state = self.lock();
        let result = loop {
            if state.closed {
                break Err(Error::Closed);
            }
            let now = Instant::now();
            let choice = if state.weighted {
                pick_weighted(&state.hosts, self.config.max_active, now, tried)
            } else {
                pick(&state.hosts, self.config.max_active, now, tried)
            };
            match choice {
                Pick::Host(index) => {
                    let idle_timeout = self.config.idle_timeout;
                    let Some(host) = state.hosts.get_mut(index) else {
                        // `pick` returns an index into these very hosts under
                        // the same lock; treat the impossible as "no host".
                        break Err(Error::NoHosts);
                    };
                    host.active += 1;
                    let mut link = None;
                    if let Some(idle) = host.idle.pop() {
                        if idle_timeout.is_some_and(|t| now.duration_since(idle.since) >= t) {
                            // The newest is too old, so all older ones are.
                            doomed.push(idle.link);
                            doomed.extend(host.idle.drain(..).map(|i| i.link));
                        } else {
                            link = Some(idle.link);
                        }
                    }
                    host.report();
                    break Ok(Reservation {
                        host_id: host.id,
                        index,
                        addr: host.addr.clone(),
                        link,
                    });
                }
                Pick::None => break Err(Error::NoHosts),
                Pick::AllFull => {
                    let until = (*deadline
                        .get_or_insert_with(|| later(now, self.config.checkout_timeout)))
                    .min(overall);
                    if now >= until {
                        self.metrics.timeouts.increment(1);
                        break Err(Error::Exhausted(self.config.checkout_timeout));
                    }
                    state.waiters += 1;
                    self.metrics.waiting.set(state.waiters as f64);
                    state = self
                        .freed
                        .wait_timeout(state, until - now)
                        .map(|(s, _)| s)
                        .unwrap_or_else(|p| p.into_inner().0);
                    state.waiters -= 1;
                    self.metrics.waiting.set(state.waiters as f64);
                }
            }
        };
        drop(state);
        close_all(doomed);
        result
    }

    /// Turns a reservation into a live connection: probes an idle one, dials
    /// otherwise, by `overall` at the latest. On a dial failure the slot is
    /// released and the failure counted; the caller moves on to another
    /// host. A host that left the set (or a set that closed) while its idle
    /// connection was probed is not dialled: the slot is released with no
    /// error to report.
    fn establish(
        &self,
        mut r: Reservation,
        overall: Instant,
    ) -> Result<(Link, usize), (u64, Option<Error>)> {
        while let Some(link) = r.link.take() {
            if !self.config.check_idle || link.looks_alive() {
                return Ok((link, r.index));
            }
            tracing::debug!(addr = %r.addr, "thriftset: idle connection was closed by the server");
            link.close();
            // Try the host's next idle one, still holding the slot.
            match self.take_idle(r.host_id, r.index) {
                NextIdle::Link(next) => r.link = Some(next),
                NextIdle::None => {}
                NextIdle::HostGone => {
                    self.release(r.host_id, r.index, None, Outcome::Unused);
                    return Err((r.host_id, None));
                }
            }
        }
        let deadline = later(Instant::now(), self.config.connect_timeout).min(overall);
        match Link::connect(r.host_id, &r.addr, deadline, self.config.io_timeout) {
            Ok(link) => Ok((link, r.index)),
            Err(source) => {
                tracing::warn!(addr = %r.addr, error = %source, "thriftset: connect failed");
                if let Some(host) = find(&mut self.lock().hosts, r.host_id, r.index) {
                    host.metrics.connect_failures.increment(1);
                }
                self.release(r.host_id, r.index, None, Outcome::Failed);
                Err((
                    r.host_id,
                    Some(Error::Connect {
                        addr: (*r.addr).clone(),
                        source,
                    }),
                ))
            }
        }
    }

    /// The next idle connection of a host whose slot the caller holds, if
    /// one is left and still within the idle timeout.
    fn take_idle(&self, host_id: u64, hint: usize) -> NextIdle {
        let mut state = self.lock();
        if state.closed {
            return NextIdle::HostGone;
        }
        let Some(host) = find(&mut state.hosts, host_id, hint) else {
            return NextIdle::HostGone;
        };
        let Some(idle) = host.idle.pop() else {
            return NextIdle::None;
        };
        host.report();
        let stale = self
            .config
            .idle_timeout
            .is_some_and(|t| idle.since.elapsed() >= t);
        if stale {
            // The reaper closes the rest; this one closes with the caller's.
            drop(state);
            idle.link.close();
            return NextIdle::None;
        }
        NextIdle::Link(idle.link)
    }

    /// Gives a slot back: the link (if any) goes idle or is closed, and the
    /// outcome feeds the ejection count.
    pub(crate) fn release(&self, host_id: u64, hint: usize, link: Option<Link>, outcome: Outcome) {
        let mut doomed = Doomed::new();
        let wake;
        {
            let mut state = self.lock();
            wake = state.waiters > 0;
            let closed = state.closed;
            // Only a failure needs this count (for "never eject the last host").
            let others_usable = match outcome {
                Outcome::Ok | Outcome::Unused => 0,
                Outcome::Failed => {
                    let now = Instant::now();
                    state
                        .hosts
                        .iter()
                        .filter(|h| h.id != host_id && !h.ejected(now))
                        .count()
                }
            };
            match find(&mut state.hosts, host_id, hint) {
                Some(host) => {
                    host.active = host.active.saturating_sub(1);
                    match outcome {
                        Outcome::Ok => host.failures = 0,
                        Outcome::Failed => {
                            host.failures = host.failures.saturating_add(1);
                            self.maybe_eject(host, others_usable);
                        }
                        Outcome::Unused => {}
                    }
                    match link {
                        Some(link)
                            if outcome == Outcome::Ok
                                && !closed
                                && host.idle.len() < self.config.max_idle =>
                        {
                            host.idle.push(Idle {
                                link,
                                since: Instant::now(),
                            });
                        }
                        Some(link) => doomed.push(link),
                        None => {}
                    }
                    host.report();
                }
                // The host left the set: its connections are never reused.
                None => doomed.extend(link),
            }
        }
        if wake {
            // Every waiter: one woken alone may have tried this host
            // already and go back to sleep while another could use it.
            self.freed.notify_all();
        }
        close_all(doomed);
    }

    fn maybe_eject(&self, host: &mut Host, others_usable: usize) {
        let threshold = self.config.eject_after;
        if threshold == 0 || host.failures < threshold {
            return;
        }
        let now = Instant::now();
        if host.ejected(now) {
            return;
        }
        if others_usable == 0 {
            tracing::warn!(addr = %host.addr, failures = host.failures,
                "thriftset: host keeps failing but is the last usable one; not ejecting");
            return;
        }
        host.ejected_until = Some(later(now, self.config.eject_for));
        host.metrics.ejections.increment(1);
        tracing::warn!(addr = %host.addr, failures = host.failures,
            period = ?self.config.eject_for, "thriftset: host ejected");
    }

    /// Closes idle connections unused for longer than the idle timeout.
    pub(crate) fn reap(&self) {
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        let mut doomed = Doomed::new();
        {
            let mut state = self.lock();
            let now = Instant::now();
            for host in &mut state.hosts {
                // Oldest first: stop at the first one still fresh.
                let stale = host
                    .idle
                    .iter()
                    .take_while(|i| now.duration_since(i.since) >= timeout)
                    .count();
                doomed.extend(host.idle.drain(..stale).map(|i| i.link));
                if stale > 0 {
                    host.report();
                }
            }
        }
        if !doomed.is_empty() {
            tracing::debug!(closed = doomed.len(), "thriftset: closed idle connections");
        }
        close_all(doomed);
    }

    /// Marks the set closed, wakes every waiter and closes idle connections.
    /// Returns false when it was already closed.
    pub(crate) fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let mut doomed = Doomed::new();
        {
            let mut state = self.lock();
            state.closed = true;
            for host in &mut state.hosts {
                doomed.extend(host.idle.drain(..).map(|i| i.link));
                host.report();
            }
        }
        self.freed.notify_all();
        self.stop.notify_one();
        close_all(doomed);
        true
    }

    pub(crate) fn stats(&self) -> Vec<HostStats> {
        let state = self.lock();
        let now = Instant::now();
        state
            .hosts
            .iter()
            .map(|h| HostStats {
                addr: (*h.addr).clone(),
                active: h.active,
                idle: h.idle.len(),
                consecutive_failures: h.failures,
                ejected_for: h
                    .ejected_until
                    .filter(|t| *t > now)
                    .map(|t| t.duration_since(now)),
            })
            .collect()
    }

    /// How often the follower should reap, if at all.
    pub(crate) fn reap_interval(&self) -> Option<Duration> {
        self.config.idle_timeout.map(|t| {
            (t / 2)
                .max(Duration::from_millis(5))
                .min(Duration::from_secs(1))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Returned in good order: may be reused, resets the failure count.
    Ok,
    /// Broken or failed: closed, counts toward ejection.
    Failed,
    /// A slot given back unused (the set closed or the host left while it
    /// was being set up): no verdict on the host; a link is kept only if
    /// the host is still in an open set.
    Unused,
}

/// What is left on a host whose idle connection turned out dead.
enum NextIdle {
    /// Another idle connection to probe.
    Link(Link),
    /// None: dial a new one.
    None,
    /// The host left the set, or the set closed: do not dial.
    HostGone,
}

enum Pick {
    Host(usize),
    /// Usable hosts exist but are all at their active limit.
    AllFull,
    /// No host is left to try.
    None,
}

/// The host with the fewest outstanding requests among those with room, ties
/// broken at random. Ejected hosts count only when every host not yet tried
/// is ejected (so the last usable host is never shut out).
///
/// One scan finds the least load and how many hosts share it (both among
/// healthy hosts and among all), a second takes a random one of those.
fn pick(hosts: &[Host], max_active: usize, now: Instant, tried: &[u64]) -> Pick {
    #[derive(Clone, Copy)]
    struct Least {
        load: usize,
        ties: usize,
    }
    impl Least {
        fn add(&mut self, load: usize) {
            if load < self.load {
                *self = Least { load, ties: 1 };
            } else if load == self.load {
                self.ties += 1;
            }
        }
    }
    let none = Least {
        load: usize::MAX,
        ties: 0,
    };
    let (mut healthy, mut all) = (none, none);
    let (mut any_untried, mut any_healthy) = (false, false);
    for h in hosts {
        if tried.contains(&h.id) {
            continue;
        }
        any_untried = true;
        let ejected = h.ejected(now);
        any_healthy |= !ejected;
        if h.active < max_active {
            all.add(h.active);
            if !ejected {
                healthy.add(h.active);
            }
        }
    }
    if !any_untried {
        return Pick::None;
    }
    let (least, include_ejected) = if any_healthy {
        (healthy, false)
    } else {
        (all, true)
    };
    if least.ties == 0 {
        // Usable hosts exist but all are at their limit: wait for one.
        return Pick::AllFull;
    }
    let mut nth = if least.ties == 1 {
        0
    } else {
        fastrand::usize(..least.ties)
    };
    for (i, h) in hosts.iter().enumerate() {
        if h.active == least.load && !tried.contains(&h.id) && (include_ejected || !h.ejected(now))
        {
            if nth == 0 {
                return Pick::Host(i);
            }
            nth -= 1;
        }
    }
    // The second scan sees exactly the hosts the first one counted.
    Pick::AllFull
}

/// [`pick`] over hosts of unequal weights: the host with the fewest
/// outstanding requests per unit of weight among those with room, ties
/// broken at random in proportion to weight (so an idle set, where every
/// host ties at 0, is shared by weight).
///
/// Hosts fall in four tiers, and only the best tier with an untried host is
/// considered: positive weight and not ejected; positive weight, ejected;
/// weight 0, not ejected; weight 0, ejected. So a host of weight 0 is used
/// only when every host of positive weight has failed to connect during
/// this checkout (or all weigh 0), never merely because they are busy: a
/// full tier waits ([`Pick::AllFull`]). Among hosts of weight 0 all count
/// as weight 1.
///
/// The same two scans as [`pick`]: the first finds the best tier, its least
/// load and the total weight of the hosts sharing it; the second draws one.
fn pick_weighted(hosts: &[Host], max_active: usize, now: Instant, tried: &[u64]) -> Pick {
    let tier = |h: &Host| u8::from(h.weight == 0.0) * 2 + u8::from(h.ejected(now));
    let load = |h: &Host| (h.active as u64).saturating_mul(h.scale);
    // Best tier seen (4: none yet), its least load and the shares tied at it.
    let (mut best, mut least, mut tied) = (4u8, u64::MAX, 0u64);
    for h in hosts {
        if tried.contains(&h.id) {
            continue;
        }
        let t = tier(h);
        if t > best {
            continue;
        }
        if t < best {
            (best, least, tied) = (t, u64::MAX, 0);
        }
        if h.active < max_active {
            let l = load(h);
            if l < least {
                (least, tied) = (l, h.share);
            } else if l == least {
                tied += h.share;
            }
        }
    }
    if best == 4 {
        return Pick::None;
    }
    if tied == 0 {
        return Pick::AllFull;
    }
    let mut r = fastrand::u64(..tied);
    for (i, h) in hosts.iter().enumerate() {
        // Cheapest tests first: most hosts fail the load test under load.
        if h.active < max_active && load(h) == least && tier(h) == best && !tried.contains(&h.id) {
            if r < h.share {
                return Pick::Host(i);
            }
            r -= h.share;
        }
    }
    // The second scan sees exactly the hosts the first one counted.
    Pick::AllFull
}

/// The host with this id, looked up at `hint` first (its index at checkout;
/// right unless the membership changed since).
/// `now + d`, saturating at a year for durations too large for an `Instant`.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn find(hosts: &mut [Host], id: u64, hint: usize) -> Option<&mut Host> {
    if hosts.get(hint).is_some_and(|h| h.id == id) {
        return hosts.get_mut(hint);
    }
    hosts.iter_mut().find(|h| h.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }

    fn host(id: u64, active: usize) -> Host {
        Host {
            id,
            addr: Arc::new(HostPort::new("h", id as u16).unwrap()),
            active,
            idle: Vec::new(),
            failures: 0,
            ejected_until: None,
            weight: 1.0,
            scale: 1 << 32,
            share: 1,
            metrics: HostMetrics::new(
                &PoolMetrics::new(&Arc::from("test")),
                &HostPort::new("h", id as u16).unwrap(),
            ),
        }
    }

    fn weighted(id: u64, active: usize, weight: f64) -> Host {
        let mut h = host(id, active);
        h.set_weight(weight);
        h
    }

    fn with_shares<const N: usize>(mut hosts: [Host; N]) -> [Host; N] {
        set_shares(&mut hosts);
        hosts
    }

    /// ±5% is relative to each host's expected share: a host of weight 2
    /// out of 6 must get 10,000 ± 500 of 30,000 checkouts.
    #[test]
    fn idle_hosts_share_30000_picks_by_weight() {
        fastrand::seed(11);
        let now = Instant::now();
        let weights = [1.0, 2.0, 3.0, 0.0, 0.5];
        let mut hosts: Vec<Host> = (0..5)
            .map(|i| weighted(i as u64 + 1, 0, weights[i]))
            .collect();
        set_shares(&mut hosts);
        let mut counts = [0usize; 5];
        for _ in 0..30_000 {
            counts[picked(pick_weighted(&hosts, 8, now, &[])).unwrap()] += 1;
        }
        assert_eq!(counts[3], 0, "weight 0 picked: {counts:?}");
        for i in [0, 1, 2, 4] {
            let want = 30_000.0 * weights[i] / 6.5;
            let got = counts[i] as f64;
            assert!(
                (got - want).abs() <= 0.05 * want,
                "host {i} (weight {}) got {got}, want {want:.0} ± 5%",
                weights[i]
            );
        }
    }

    #[test]
    fn outstanding_is_divided_by_weight() {
        let now = Instant::now();
        // 3 outstanding at weight 4 (0.75 each) beats 1 at weight 1.
        let hosts = with_shares([weighted(1, 3, 4.0), weighted(2, 1, 1.0)]);
        for _ in 0..50 {
            assert_eq!(picked(pick_weighted(&hosts, 8, now, &[])), Some(0));
        }
        // 5 at weight 4 (1.25) loses.
        let hosts = with_shares([weighted(1, 5, 4.0), weighted(2, 1, 1.0)]);
        assert_eq!(picked(pick_weighted(&hosts, 8, now, &[])), Some(1));
    }

    #[test]
    fn weight_zero_is_the_last_resort() {
        let now = Instant::now();
        let mut hosts = with_shares([weighted(1, 0, 0.0), weighted(2, 0, 1.0)]);
        // Busy or ejected, the weighted host still comes first...
        hosts[1].active = 2;
        assert!(matches!(pick_weighted(&hosts, 2, now, &[]), Pick::AllFull));
        hosts[1].active = 0;
        hosts[1].ejected_until = Some(now + Duration::from_secs(5));
        assert_eq!(picked(pick_weighted(&hosts, 2, now, &[])), Some(1));
        // ...until it failed to connect in this checkout.
        assert_eq!(picked(pick_weighted(&hosts, 2, now, &[2])), Some(0));
        assert!(matches!(pick_weighted(&hosts, 2, now, &[1, 2]), Pick::None));
        // All of weight 0: all equal.
        let hosts = with_shares([weighted(1, 1, 0.0), weighted(2, 0, 0.0)]);
        assert_eq!(picked(pick_weighted(&hosts, 2, now, &[])), Some(1));
    }

    fn picked(p: Pick) -> Option<usize> {
        match p {
            Pick::Host(i) => Some(i),
            _ => None,
        }
    }

    /// Without a follower (it died), `checkout` applies membership itself.
    #[test]
    fn checkout_follows_the_watcher_when_the_follower_is_gone() {
        use serversets_core::{Member, Publisher};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: HostPort = listener.local_addr().unwrap().to_string().parse().unwrap();
        let publisher = Publisher::new();
        let shared = Shared::new(Config::default(), Box::new(publisher.feed()));
        shared.follower_alive.store(false, Ordering::Release);
        assert!(matches!(shared.checkout(), Err(Error::NoHosts)));

        publisher.publish([Member::from_addr(addr.clone())]);
        let (link, hint) = shared.checkout().unwrap();
        assert_eq!(*link.addr, addr);
        shared.release(link.host_id, hint, Some(link), Outcome::Ok);
        assert_eq!(shared.stats()[0].idle, 1);

        publisher.publish([]);
        assert!(matches!(shared.checkout(), Err(Error::NoHosts)));
        assert!(shared.stats().is_empty(), "the removed host is gone");
    }

    /// A host that leaves while its idle connection is being checked is
    /// not dialled (#12): the slot is given back and nothing is counted.
    #[test]
    fn a_host_that_leaves_while_its_idle_link_is_checked_is_not_dialled() {
        use serversets_core::{Member, Publisher};
        use std::io::ErrorKind;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: HostPort = listener.local_addr().unwrap().to_string().parse().unwrap();
        let publisher = Publisher::new();
        let shared = Shared::new(Config::default(), Box::new(publisher.feed()));
        shared.follower_alive.store(false, Ordering::Release);
        publisher.publish([Member::from_addr(addr.clone())]);

        // One idle connection, which the server then closes.
        let (link, hint) = shared.checkout().unwrap();
        let (server_side, _) = listener.accept().unwrap();
        shared.release(link.host_id, hint, Some(link), Outcome::Ok);
        drop(server_side);
        listener.set_nonblocking(true).unwrap();

        // A checkout reserves it; the host leaves before the probe.
        let now = Instant::now();
        let r = shared
            .reserve(&mut None, now + Duration::from_secs(5), &[])
            .unwrap();
        assert!(r.link.is_some(), "the idle connection was reserved");
        publisher.publish([]);
        shared.apply(&shared.watcher.snapshot());
        std::thread::sleep(Duration::from_millis(20)); // let the FIN land

        let result = shared.establish(r, now + Duration::from_secs(5));
        assert!(
            matches!(result, Err((_, None))),
            "not dialled, nothing to report"
        );
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "the departed host was dialled"
        );
    }

    #[test]
    fn picks_the_least_loaded_host() {
        let now = Instant::now();
        let hosts = [host(1, 3), host(2, 1), host(3, 2)];
        for _ in 0..50 {
            assert_eq!(picked(pick(&hosts, 8, now, &[])), Some(1));
        }
    }

    #[test]
    fn ties_are_broken_evenly() {
        let now = Instant::now();
        let hosts = [host(1, 0), host(2, 5), host(3, 0), host(4, 0)];
        let mut counts = [0usize; 4];
        for _ in 0..3000 {
            counts[picked(pick(&hosts, 8, now, &[])).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        for i in [0, 2, 3] {
            assert!((800..1200).contains(&counts[i]), "{counts:?}");
        }
    }

    #[test]
    fn full_tried_and_ejected_hosts() {
        let now = Instant::now();
        let mut hosts = [host(1, 2), host(2, 2)];
        assert!(matches!(pick(&hosts, 2, now, &[]), Pick::AllFull));
        assert!(matches!(pick(&hosts, 2, now, &[1, 2]), Pick::None));
        hosts[1].active = 1;
        assert_eq!(picked(pick(&hosts, 2, now, &[])), Some(1));
        assert!(matches!(pick(&hosts, 2, now, &[2]), Pick::AllFull));

        // An ejected host is skipped while another is usable, even if full...
        let mut hosts = [host(1, 0), host(2, 2)];
        hosts[0].ejected_until = Some(now + Duration::from_secs(5));
        assert!(matches!(pick(&hosts, 2, now, &[]), Pick::AllFull));
        hosts[1].active = 0;
        assert_eq!(picked(pick(&hosts, 2, now, &[])), Some(1));
        // ...but used when it is the only one left,
        assert_eq!(picked(pick(&hosts, 2, now, &[2])), Some(0));
        // and when its cool-down is over.
        hosts[1].active = 1;
        let later = now + Duration::from_secs(6);
        assert_eq!(picked(pick(&hosts, 2, later, &[])), Some(0));
    }
}

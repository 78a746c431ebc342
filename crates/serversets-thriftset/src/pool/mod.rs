//! The shared pool: what a set, its connection guards and its follower
//! thread share, and the lock that keeps it consistent.
//!
//! One mutex guards every member's slot so that a choice sees a consistent
//! picture (no member counted twice, none between states); it is held only
//! for bookkeeping, never across a connect, probe or close. Each job on the
//! pool has a module of its own, all `impl Shared` blocks over this state:
//!
//! - [`slot`]: one member's bookkeeping (connections in flight and idle,
//!   weight, passive health);
//! - [`choose`]: the least-in-flight choice among the slots;
//! - [`checkout`]: handing out a connection (reserve, probe or dial);
//! - [`release`]: taking one back;
//! - [`eject`]: feeding those returns to the shared ejection rule;
//! - [`membership`]: applying a new snapshot of the member list, and
//!   catching up with the source when no follower runs;
//! - [`reap`]: closing idle connections past their timeout.
//!
//! Connections to close are collected under the lock ([`Doomed`]) and
//! closed after it is released. A checkout's in-flight count is held by its
//! [`Lease`] and given back under the lock too, so that a waiter never
//! misses the wake-up of a freed slot.
//!
//! The in-flight counter, the ejection rule and the follower are core's
//! shared parts ([`serversets_core::balance`]), as in every balancer.

mod checkout;
mod choose;
mod eject;
mod membership;
mod reap;
mod release;
mod slot;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serversets_core::balance::{Attempt, Clock, Ejection, Follower, InFlight, InFlightGuard};
use serversets_core::Watcher;

use crate::config::Config;
use crate::link::Link;
use crate::metrics::PoolMetrics;
use crate::MemberStats;

pub(crate) use release::Outcome;
use slot::MemberSlot;

/// Everything a set, its guards and its follower thread share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Follows the source: on the follower thread while it runs, in each
    /// checkout when it does not ([`Follower::catch_up`]).
    pub(crate) follower: Follower,
    /// `eject_after` and `eject_for`, as the shared rule takes them.
    ejection: Ejection,
    /// The time base of the members' health records.
    clock: Clock,
    state: Mutex<State>,
    /// Signalled when a slot frees, the members change, or the set closes.
    freed: Condvar,
    closed: AtomicBool,
    /// Wakes the follower thread when the set closes.
    pub(crate) stop: tokio::sync::Notify,
    /// The id of the next member slot (see [`MemberSlot::id`]).
    next_slot_id: AtomicU64,
    /// The pool's metric handles (each member slot holds its own).
    metrics: PoolMetrics,
}

/// What the pool's one mutex guards.
struct State {
    closed: bool,
    /// Version of the last snapshot applied; `None` before the first.
    version: Option<u64>,
    /// Callers blocked in `reserve`; a return wakes them only if there are
    /// any (a Condvar notify is a system call even with nobody waiting).
    waiters: usize,
    members: Vec<MemberSlot>,
    /// True when the members' weights differ: choices then compare
    /// requests in flight per unit of weight ([`choose::pick_weighted`]).
    /// False (all equal, or all 0) keeps the unweighted [`choose::pick`].
    weighted: bool,
}

/// Connections to close once the lock is released.
type Doomed = Vec<Link>;

/// A checkout's claim on its member slot: counted in flight for as long as
/// it lives, and the ejection epoch the checkout started under. Every lease
/// goes back through [`Shared::release`]; one dropped any other way (a
/// panic) still frees its count, only without waking waiters.
pub(crate) struct Lease {
    slot_id: u64,
    /// The slot's index when the lease was taken, to find it again quickly.
    hint: usize,
    in_flight: InFlightGuard<Arc<InFlight>>,
    attempt: Attempt,
}

fn close_all(doomed: Doomed) {
    for link in doomed {
        link.close();
    }
}

impl Shared {
    pub(crate) fn new(config: Config, watcher: Arc<dyn Watcher>) -> Shared {
        let metrics = PoolMetrics::new(&config.metrics_set);
        Shared {
            metrics,
            ejection: Ejection::new(config.eject_after, config.eject_for),
            config,
            follower: Follower::from_arc(watcher),
            clock: Clock::new(),
            state: Mutex::new(State {
                closed: false,
                version: None,
                waiters: 0,
                members: Vec::new(),
                weighted: false,
            }),
            freed: Condvar::new(),
            closed: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
            next_slot_id: AtomicU64::new(1),
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

    /// Marks the set closed, wakes every waiter and closes idle connections.
    /// Returns false when it was already closed.
    pub(crate) fn close(&self) -> bool {
        // Before the flag: the follower thread may see the flag and end the
        // follower at once, which must then count as an orderly stop.
        self.follower.stop();
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let mut doomed = Doomed::new();
        {
            let mut state = self.lock();
            state.closed = true;
            for slot in &mut state.members {
                doomed.extend(slot.idle.drain(..).map(|i| i.link));
                slot.report();
            }
        }
        self.freed.notify_all();
        self.stop.notify_one();
        close_all(doomed);
        true
    }

    /// Every member's counts and ejection state, in slot order.
    pub(crate) fn stats(&self) -> Vec<MemberStats> {
        let state = self.lock();
        state
            .members
            .iter()
            .map(|m| {
                let health = m.health.report(&self.clock);
                MemberStats {
                    addr: (*m.addr).clone(),
                    in_flight: m.in_flight(),
                    idle: m.idle.len(),
                    consecutive_failures: health.consecutive_failures,
                    ejected_for: health.ejected_for,
                }
            })
            .collect()
    }
}

/// `now + d`, saturating at a year for durations too large for an `Instant`.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
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
}

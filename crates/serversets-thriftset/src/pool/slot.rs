//! One member's bookkeeping in the pool: its connections in flight and
//! idle, its weight as the choice uses it, its passive health.
//!
//! A slot is one incarnation of a member: a member removed and added back
//! gets a new slot with a new id, so that connections from before the
//! removal, returned late, are never pooled again.
//!
//! The in-flight count and the health record are core's shared parts
//! ([`serversets_core::balance`]); the pool reads and changes them under its
//! lock like the rest of the slot, so a choice still sees one consistent
//! picture.

use std::sync::Arc;
use std::time::Instant;

use serversets_core::balance::{InFlight, PassiveHealth};
use serversets_core::HostPort;

use crate::link::Link;
use crate::metrics::MemberMetrics;

/// One member of the pool, as the lock guards it.
pub(super) struct MemberSlot {
    /// Unique per incarnation (see the module docs).
    pub(super) id: u64,
    pub(super) addr: Arc<HostPort>,
    /// Connections checked out plus connects in progress: what
    /// `max_active` limits and the choice compares. Each is counted by the
    /// guard its [`Lease`](super::Lease) holds, dropped under the lock when
    /// the slot is given back.
    pub(super) load: Arc<InFlight>,
    /// Unused connections, most recently returned last.
    pub(super) idle: Vec<Idle>,
    /// Consecutive failures and ejection, by the shared rule (see
    /// [`eject`](super::eject)).
    pub(super) health: PassiveHealth,
    /// The member's weight (`Member::weight`, finite and >= 0).
    pub(super) weight: f64,
    /// 2^32 / `share`: in flight × scale is the load a weighted choice
    /// compares (in flight per unit of weight, in fixed point), one
    /// integer multiplication per member. Set by [`set_shares`].
    pub(super) scale: u64,
    /// Its metric handles, registered when it joined.
    pub(super) metrics: MemberMetrics,
    /// The weight as an integer share of the set's heaviest (2^16 for it,
    /// at least 1; 1 for weight 0), for tie-breaks: integer sums keep the
    /// scan as fast as the unweighted one (a float sum is a chain of
    /// 4-cycle additions). Set by [`set_shares`].
    pub(super) share: u64,
}

/// An unused connection and when it was returned.
pub(super) struct Idle {
    pub(super) link: Link,
    pub(super) since: Instant,
}

impl MemberSlot {
    /// A slot with nothing in flight, no idle connection, no failure, of
    /// weight 1 until [`set_weight`](MemberSlot::set_weight) and
    /// [`set_shares`] say otherwise.
    pub(super) fn new(id: u64, addr: Arc<HostPort>, metrics: MemberMetrics) -> MemberSlot {
        MemberSlot {
            id,
            addr,
            load: Arc::default(),
            idle: Vec::new(),
            health: PassiveHealth::default(),
            weight: 1.0,
            scale: 1 << 32,
            share: 1,
            metrics,
        }
    }

    /// Connections in flight now.
    pub(super) fn in_flight(&self) -> usize {
        self.load.get()
    }

    /// Brings the member's in-flight and idle gauges up to date; called
    /// under the pool's lock after every change of either.
    pub(super) fn report(&self) {
        self.metrics.counts(self.in_flight(), self.idle.len());
    }

    /// Makes the in-flight count `n`, for tests of the choice (the guards
    /// are leaked: nothing gives these back).
    #[cfg(test)]
    pub(super) fn set_in_flight(&mut self, n: usize) {
        self.load = Arc::default();
        for _ in 0..n {
            std::mem::forget(InFlight::enter(self.load.clone()));
        }
    }

    pub(super) fn set_weight(&mut self, weight: f64) {
        self.weight = if weight.is_finite() && weight > 0.0 {
            weight
        } else {
            0.0
        };
    }
}

/// Units of [`MemberSlot::share`] for the heaviest member.
const SHARE_UNIT: f64 = 65_536.0;

/// Sets every slot's tie-break share from its weight (see
/// [`MemberSlot::share`]).
pub(super) fn set_shares(slots: &mut [MemberSlot]) {
    let heaviest = slots.iter().map(|m| m.weight).fold(0.0, f64::max);
    for m in slots {
        m.share = if m.weight > 0.0 && heaviest > 0.0 {
            ((m.weight / heaviest * SHARE_UNIT).round() as u64).max(1)
        } else {
            1
        };
        m.scale = (1u64 << 32) / m.share;
    }
}

/// The index of the slot with this id, looked up at `hint` first (its
/// index at checkout; right unless the membership changed since).
pub(super) fn position(slots: &[MemberSlot], id: u64, hint: usize) -> Option<usize> {
    if slots.get(hint).is_some_and(|m| m.id == id) {
        return Some(hint);
    }
    slots.iter().position(|m| m.id == id)
}

/// The slot with this id (see [`position`]).
pub(super) fn find(slots: &mut [MemberSlot], id: u64, hint: usize) -> Option<&mut MemberSlot> {
    position(slots, id, hint).and_then(|i| slots.get_mut(i))
}

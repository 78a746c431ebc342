//! The ejection rule: after `eject_after` consecutive failures a member is
//! skipped for `eject_for`, unless it is the last usable one.
//!
//! Failures are counted by [`release`](super::release) (a failed return)
//! and reset by a return in good order; the choice
//! ([`choose`](super::choose)) skips ejected members while any other is
//! left. Kept apart so that the rule reads in one place.

use std::time::Instant;

use super::slot::MemberSlot;
use super::{later, Shared};

impl MemberSlot {
    /// True while the member's ejection lasts.
    pub(super) fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| t > now)
    }
}

/// Members other than slot `id` that are not ejected: "never eject the last
/// usable member" needs it.
pub(super) fn usable_besides(slots: &[MemberSlot], id: u64, now: Instant) -> usize {
    slots
        .iter()
        .filter(|m| m.id != id && !m.ejected(now))
        .count()
}

impl Shared {
    /// Counts one more failure against `slot` and ejects it if that makes
    /// `eject_after` in a row, it is not ejected already, and
    /// `others_usable` members are left to take its traffic.
    pub(super) fn record_failure(&self, slot: &mut MemberSlot, others_usable: usize) {
        slot.failures = slot.failures.saturating_add(1);
        let threshold = self.config.eject_after;
        if threshold == 0 || slot.failures < threshold {
            return;
        }
        let now = Instant::now();
        if slot.ejected(now) {
            return;
        }
        if others_usable == 0 {
            tracing::warn!(addr = %slot.addr, failures = slot.failures,
                "thriftset: member keeps failing but is the last usable one; not ejecting");
            return;
        }
        slot.ejected_until = Some(later(now, self.config.eject_for));
        slot.metrics.ejections.increment(1);
        tracing::warn!(addr = %slot.addr, failures = slot.failures,
            period = ?self.config.eject_for, "thriftset: member ejected");
    }
}

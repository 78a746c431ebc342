//! The ejection rule, as the pool applies it.
//!
//! The rule itself is core's, shared by every balancer
//! ([`serversets_core::balance::health`]): after `eject_after` consecutive
//! failures a member is skipped for `eject_for`, unless it is the last one
//! in service; after the cool-down live traffic probes it, one more failure
//! ejects it again and an answer puts it back. What is left here is how
//! the pool feeds it: a failed return ([`release`](super::release)) is a
//! failure, a return in good order an answer to the request its checkout
//! started, and "in service" means not ejected among the pool's members.
//! The choice ([`choose`](super::choose)) skips ejected members while any
//! other is left.

use serversets_core::balance::{Attempt, LazyNow};

use super::slot::MemberSlot;
use super::Shared;

impl MemberSlot {
    /// False while the member's ejection lasts.
    pub(super) fn in_service(&self, now: &mut LazyNow<'_>) -> bool {
        self.health.is_available(now)
    }

    /// A return in good order: the member answered the request its checkout
    /// started under `attempt`, so its failures are forgiven and any
    /// ejection ends, unless it was ejected after that checkout began.
    pub(super) fn answered(&self, attempt: Attempt) {
        self.health.record_answer(attempt);
    }
}

impl Shared {
    /// Counts a failure against `slots[index]` and ejects it if the rule
    /// says so and another member is in service; counts the ejection in
    /// the member's metrics.
    pub(super) fn record_failure(&self, slots: &[MemberSlot], index: usize) {
        let Some(slot) = slots.get(index) else {
            return;
        };
        let ejected = slot
            .health
            .record_failure(&slot.addr, self.ejection, &self.clock, |now| {
                slots.iter().any(|m| m.id != slot.id && m.in_service(now))
            });
        if ejected {
            slot.metrics.ejections.increment(1);
        }
    }
}

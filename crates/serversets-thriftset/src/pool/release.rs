//! Taking a connection back: the slot is freed, the connection goes idle
//! or is closed, and the outcome feeds the ejection rule
//! ([`eject`](super::eject)).
//!
//! Every lease ends here exactly once, from the connection guard's `Drop`
//! or from a checkout that gives up its reservation, and its in-flight
//! count ends with it, under the lock, so that waiters see the slot free.
//! The count is core's guard, so even a lease lost some other way (a panic
//! between reserve and hand-out) cannot leave it counted for good.

use std::time::Instant;

use super::slot::{position, Idle};
use super::{close_all, Doomed, Lease, Shared};
use crate::link::Link;

/// How a slot comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Returned in good order: may be reused; an answer, for the ejection
    /// rule.
    Ok,
    /// Broken or failed: closed, counts toward ejection.
    Failed,
    /// A slot given back unused (the set closed or the member left while
    /// it was being set up): no verdict on the member; a link is kept only
    /// if the member is still in an open set.
    Unused,
}

impl Shared {
    /// Gives a lease back: its in-flight count ends, the link (if any) goes
    /// idle or is closed, and the outcome feeds the ejection rule.
    pub(crate) fn release(&self, lease: Lease, link: Option<Link>, outcome: Outcome) {
        let Lease {
            slot_id,
            hint,
            in_flight,
            attempt,
        } = lease;
        let mut doomed = Doomed::new();
        let wake;
        {
            let mut state = self.lock();
            // Under the lock, so a waiter that found every member full
            // cannot miss this slot freeing.
            drop(in_flight);
            wake = state.waiters > 0;
            let closed = state.closed;
            let found = position(&state.members, slot_id, hint);
            if let (Some(index), Outcome::Failed) = (found, outcome) {
                // Before the slot is borrowed alone: the rule looks at the
                // other members too.
                self.record_failure(&state.members, index);
            }
            match found.and_then(|i| state.members.get_mut(i)) {
                Some(slot) => {
                    if outcome == Outcome::Ok {
                        slot.answered(attempt);
                    }
                    match link {
                        Some(link)
                            if outcome == Outcome::Ok
                                && !closed
                                && slot.idle.len() < self.config.max_idle =>
                        {
                            slot.idle.push(Idle {
                                link,
                                since: Instant::now(),
                            });
                        }
                        Some(link) => doomed.push(link),
                        None => {}
                    }
                    slot.report();
                }
                // The member left the set: its connections are never reused.
                None => doomed.extend(link),
            }
        }
        if wake {
            // Every waiter: one woken alone may have tried this member
            // already and go back to sleep while another could use it.
            self.freed.notify_all();
        }
        close_all(doomed);
    }
}

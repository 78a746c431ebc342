//! Taking a connection back: the slot is freed, the connection goes idle
//! or is closed, and the outcome feeds the ejection rule
//! ([`eject`](super::eject)).
//!
//! Every checkout ends here exactly once, from the guard's `Drop` or from a
//! checkout that gives up its reservation, so the in-flight count cannot
//! drift.

use std::time::Instant;

use super::eject::usable_besides;
use super::slot::{find, Idle};
use super::{close_all, Doomed, Shared};
use crate::link::Link;

/// How a slot comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Returned in good order: may be reused, resets the failure count.
    Ok,
    /// Broken or failed: closed, counts toward ejection.
    Failed,
    /// A slot given back unused (the set closed or the member left while
    /// it was being set up): no verdict on the member; a link is kept only
    /// if the member is still in an open set.
    Unused,
}

impl Shared {
    /// Gives a slot back: the link (if any) goes idle or is closed, and the
    /// outcome feeds the ejection count.
    pub(crate) fn release(&self, slot_id: u64, hint: usize, link: Option<Link>, outcome: Outcome) {
        let mut doomed = Doomed::new();
        let wake;
        {
            let mut state = self.lock();
            wake = state.waiters > 0;
            let closed = state.closed;
            // Only a failure needs this count (for "never eject the last
            // member").
            let others_usable = match outcome {
                Outcome::Ok | Outcome::Unused => 0,
                Outcome::Failed => usable_besides(&state.members, slot_id, Instant::now()),
            };
            match find(&mut state.members, slot_id, hint) {
                Some(slot) => {
                    slot.in_flight = slot.in_flight.saturating_sub(1);
                    match outcome {
                        Outcome::Ok => slot.failures = 0,
                        Outcome::Failed => self.record_failure(slot, others_usable),
                        Outcome::Unused => {}
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

//! Membership changes: bringing the slots in line with a snapshot of the
//! member list.
//!
//! The follower thread applies each snapshot as it comes; when no follower
//! runs (it died, or its source closed), every checkout catches up with the
//! source itself ([`Shared::catch_up`]), the one policy of core's
//! [`Follower`](serversets_core::balance::Follower), so the pool never goes
//! stale.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serversets_core::{HostPort, Snapshot};

use super::slot::{set_shares, MemberSlot};
use super::{close_all, Doomed, Shared};
use crate::metrics::MemberMetrics;

impl Shared {
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
            // Members sharing an address are one slot, of their largest
            // weight (sorted by address, heaviest first, then deduplicated).
            wanted.sort_by(|a, b| a.0.cmp(b.0).then(b.1.total_cmp(&a.1)));
            wanted.dedup_by(|later, first| later.0 == first.0);

            let before = state.members.len();
            state.members.retain_mut(|m| {
                let found = wanted.binary_search_by(|(a, _)| (*a).cmp(&*m.addr));
                if let Ok(i) = found {
                    m.set_weight(wanted[i].1);
                }
                let keep = found.is_ok();
                if !keep {
                    tracing::info!(addr = %m.addr, idle = m.idle.len(), in_flight = m.in_flight(),
                        "thriftset: member left the set");
                    doomed.extend(m.idle.drain(..).map(|i| i.link));
                    // Gone from the pool: nothing of it is counted any more.
                    m.metrics.counts(0, 0);
                }
                keep
            });
            let removed = before - state.members.len();
            let present: HashSet<HostPort> =
                state.members.iter().map(|m| (*m.addr).clone()).collect();
            let mut added = 0;
            for (addr, weight) in wanted {
                if !present.contains(addr) {
                    tracing::info!(%addr, weight, "thriftset: member joined the set");
                    let mut slot = MemberSlot::new(
                        self.next_slot_id.fetch_add(1, Ordering::Relaxed),
                        Arc::new(addr.clone()),
                        MemberMetrics::new(&self.metrics, addr),
                    );
                    slot.report();
                    slot.set_weight(weight);
                    state.members.push(slot);
                    added += 1;
                }
            }
            set_shares(&mut state.members);
            self.metrics.members.set(state.members.len() as f64);
            state.weighted = state.members.first().is_some_and(|first| {
                state
                    .members
                    .iter()
                    .any(|m| m.weight.to_bits() != first.weight.to_bits())
            });
            tracing::debug!(
                version = snap.version(),
                added,
                removed,
                members = state.members.len(),
                "thriftset: membership applied"
            );
        }
        // Waiters may now have a new member, or must learn theirs is gone.
        self.freed.notify_all();
        close_all(doomed);
    }

    /// Applies the source's newest snapshot when no follower runs to do
    /// it; one atomic load while it runs.
    pub(crate) fn catch_up(&self) {
        self.follower.catch_up(|snap| self.apply(&snap));
    }
}

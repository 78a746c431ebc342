//! Idle reaping: closing connections left unused past the idle timeout.
//!
//! The follower thread calls [`Shared::reap`] every
//! [`Shared::reap_interval`]; a checkout that meets a stale idle
//! connection closes it itself (see [`checkout`](super::checkout)), so
//! a stale connection is never handed out even between two reaps.

use std::time::{Duration, Instant};

use super::{close_all, Doomed, Shared};

impl Shared {
    /// Closes idle connections unused for longer than the idle timeout.
    pub(crate) fn reap(&self) {
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        let mut doomed = Doomed::new();
        {
            let mut state = self.lock();
            let now = Instant::now();
            for slot in &mut state.members {
                // Oldest first: stop at the first one still fresh.
                let stale = slot
                    .idle
                    .iter()
                    .take_while(|i| now.duration_since(i.since) >= timeout)
                    .count();
                doomed.extend(slot.idle.drain(..stale).map(|i| i.link));
                if stale > 0 {
                    slot.report();
                }
            }
        }
        if !doomed.is_empty() {
            tracing::debug!(closed = doomed.len(), "thriftset: closed idle connections");
        }
        close_all(doomed);
    }

    /// How often the follower should reap, if at all: about twice per idle
    /// timeout, but no more often than every 5 ms and no less often than
    /// every second.
    pub(crate) fn reap_interval(&self) -> Option<Duration> {
        self.config.idle_timeout.map(|t| {
            (t / 2)
                .max(Duration::from_millis(5))
                .min(Duration::from_secs(1))
        })
    }
}

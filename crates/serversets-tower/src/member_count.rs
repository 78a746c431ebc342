//! Whether a balancer has anyone to send to: written by whatever feeds the
//! balancer (the discover streams, the tonic sync task), read by
//! [`FailFast`](crate::FailFast) on every request.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serversets_core::Watcher;

/// What a balancer has to send to: the members handed to it, and the set
/// they come from.
///
/// - [`len`](MemberCount::len) counts the members handed to the balancer
///   and not taken back: inserts minus removes, by key. A balancer fed by a
///   discover stream takes changes in only when it is polled (on a
///   request), so this can lag the set until then.
/// - [`no_servers`](MemberCount::no_servers) is what
///   [`FailFast`](crate::FailFast) asks: true when nothing has been handed
///   out, *or* when the set itself is empty now (the balancer will drop
///   what it holds before it places the next request). So the first request
///   after a set empties is already guarded, though the balancer has not
///   heard of it yet.
///
/// Cloning shares the state. `len` is one relaxed atomic load;
/// `no_servers` adds one snapshot of the watcher (an atomic load and a reference count).
///
/// The count follows what was *given* to the balancer. A balancer may still
/// hold none of them ready (connecting, or dropped by tower's `Balance` after
/// its `poll_ready` failed); this does not see that.
///
/// ```
/// use futures::StreamExt;
/// use serversets_fixedset::FixedSet;
/// use serversets_tower::WatcherDiscover;
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let set = Arc::new(FixedSet::new(["10.0.0.1:80", "10.0.0.2:80"])?);
/// let mut discover = WatcherDiscover::new(set.clone(), |m: &serversets_core::Member| m.addr().clone());
/// let members = discover.member_count();
/// assert!(members.is_empty()); // nothing handed out yet
/// assert!(members.no_servers());
/// discover.next().await;
/// discover.next().await;
/// assert_eq!(members.len(), 2);
/// assert!(!members.no_servers());
///
/// // The set empties: the removals are not handed out yet, but there are
/// // already no servers for the next request.
/// set.set_addresses(Vec::<String>::new())?;
/// assert_eq!(members.len(), 2);
/// assert!(members.no_servers());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemberCount {
    shared: Arc<Shared>,
}

struct Shared {
    /// Members handed to the balancer and not taken back.
    handed_out: AtomicUsize,
    /// The set they come from.
    watcher: Arc<dyn Watcher>,
}

impl MemberCount {
    /// Nothing handed out yet, from `watcher`'s set.
    pub(crate) fn new(watcher: Arc<dyn Watcher>) -> MemberCount {
        MemberCount {
            shared: Arc::new(Shared {
                handed_out: AtomicUsize::new(0),
                watcher,
            }),
        }
    }

    /// The number of members the balancer was given and still has.
    pub fn len(&self) -> usize {
        // Relaxed: the count guards no other memory; a reader only needs some
        // recent value, and a stale one costs at most a short wait.
        self.shared.handed_out.load(Ordering::Relaxed)
    }

    /// True when no member is handed out (`len() == 0`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the balancer has, or is about to have, no member: none
    /// handed out, or the set is empty now.
    pub fn no_servers(&self) -> bool {
        self.is_empty() || self.shared.watcher.snapshot().is_empty()
    }

    /// Records the new count (only feeders write).
    pub(crate) fn set(&self, n: usize) {
        self.shared.handed_out.store(n, Ordering::Relaxed);
    }
}

impl fmt::Debug for MemberCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberCount")
            .field("handed_out", &self.len())
            .field("set_len", &self.shared.watcher.snapshot().len())
            .finish()
    }
}

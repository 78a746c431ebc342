//! What [`HttpSet::health`](crate::HttpSet::health) reports of each
//! member: the shared passive-health rule's counters
//! ([`serversets_core::balance::health`]: eject after consecutive failures,
//! never the last member in service, re-admit on an answer) with the
//! member's id, address and requests in flight added.
//!
//! The rule itself is core's, the same in every balancer; httpset feeds it
//! (connect failures and attempt timeouts are failures, any response is an
//! answer) from `inner` and `call`.

use std::time::Duration;

use serversets_core::balance::HealthReport;
use serversets_core::{HostPort, MemberId};

/// One member's passive-health state, as returned by
/// [`HttpSet::health`](crate::HttpSet::health).
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::HttpSet;
///
/// let set = HttpSet::new(FixedSet::new(["127.0.0.1:8080"])?);
/// let health = set.health();
/// assert_eq!(health.len(), 1);
/// assert_eq!(health[0].addr.port(), 8080);
/// assert!(!health[0].is_ejected());
/// assert_eq!(health[0].consecutive_failures, 0);
/// # Ok::<(), serversets_fixedset::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberHealth {
    /// The member's id in its source.
    pub id: MemberId,
    /// The address requests go to.
    pub addr: HostPort,
    /// Connect failures and attempt timeouts since the last answer.
    pub consecutive_failures: u32,
    /// Remaining cool-down when the member is ejected now.
    pub ejected_for: Option<Duration>,
    /// How many times this member was ejected while in the set.
    pub ejections: u64,
    /// Requests sent to it that have not yet got a response head.
    pub in_flight: usize,
}

impl MemberHealth {
    /// True while the member is out of rotation.
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_httpset::HttpSet;
    /// let set = HttpSet::new(FixedSet::new(["127.0.0.1:8080"])?);
    /// assert!(set.health().iter().all(|h| !h.is_ejected()));
    /// # Ok::<(), serversets_fixedset::Error>(())
    /// ```
    pub fn is_ejected(&self) -> bool {
        self.ejected_for.is_some()
    }

    /// The report for the member `id` at `addr`, from its health counters
    /// and its requests in flight.
    pub(crate) fn new(
        id: &MemberId,
        addr: &HostPort,
        health: HealthReport,
        in_flight: usize,
    ) -> MemberHealth {
        MemberHealth {
            id: id.clone(),
            addr: addr.clone(),
            consecutive_failures: health.consecutive_failures,
            ejected_for: health.ejected_for,
            ejections: health.ejections,
            in_flight,
        }
    }
}

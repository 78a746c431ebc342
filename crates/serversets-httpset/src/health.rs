//! Passive health: consecutive failures per member, ejection for a
//! cool-down, re-admission when live traffic gets an answer again.
//!
//! Everything here is a handful of atomics per member so the request path
//! stays lock-free. The only O(n) step, checking that an ejection leaves some
//! other member in service, runs when an ejection is about to happen, which
//! is rare by construction.
//!
//! The clock is Tokio's (`tokio::time::Instant`), as are the set's timeouts:
//! outside tests it is the monotonic system clock, and under a paused Tokio
//! clock (`tokio::time::pause`) cool-downs pass with the set's timeouts
//! rather than in real time.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use serversets_core::{HostPort, MemberId};

/// Monotonic nanoseconds since the set was built, so deadlines fit in a u64.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Now, in nanoseconds since the epoch, never 0 (0 means "not ejected").
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// Reads the clock at most once, and only when some member is ejected: a
/// healthy set never pays for a clock read.
pub(crate) struct LazyNow<'a> {
    clock: &'a Clock,
    now: Option<u64>,
}

impl<'a> LazyNow<'a> {
    pub(crate) fn new(clock: &'a Clock) -> LazyNow<'a> {
        LazyNow { clock, now: None }
    }

    fn get(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| self.clock.now())
    }
}

/// When to eject, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EjectPolicy {
    /// Consecutive failures that eject; 0 disables ejection.
    pub(crate) after: u32,
    pub(crate) cooldown: Duration,
}

/// The health counters of one member.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    /// Clock value until which the member is out of rotation; 0 = in service.
    ejected_until: AtomicU64,
    ejections: AtomicU64,
    /// Bumped just before each ejection: an attempt remembers the value it
    /// started under, so an answer to a request sent before an ejection is
    /// recognised as stale and does not end it.
    epoch: AtomicU64,
    in_flight: AtomicUsize,
}

impl Health {
    /// True when the member may take traffic: never ejected, or its
    /// cool-down is over (then live traffic probes it).
    pub(crate) fn available(&self, now: &mut LazyNow<'_>) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || now.get() >= until
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one more request in flight; pair with [`leave`](Self::leave).
    pub(crate) fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request in flight as done.
    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The ejection epoch to hand to [`on_success`](Self::on_success) when
    /// the attempt sent now gets its answer.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The member answered (any status) a request sent under `epoch`: it
    /// is healthy, unless the request predates the latest ejection. Such a
    /// late answer says nothing about the failures that ejected the
    /// member, so it neither ends the ejection nor clears the count.
    ///
    /// Reads before writing so the common healthy case does not bounce the
    /// cache line between cores.
    pub(crate) fn on_success(&self, addr: &HostPort, epoch: u64) {
        if self.epoch.load(Ordering::Relaxed) != epoch {
            tracing::debug!(member = %addr, "answer to a request sent before the member's ejection; ignored for health");
            return;
        }
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejected_until.load(Ordering::Relaxed) != 0
            && self.ejected_until.swap(0, Ordering::Relaxed) != 0
        {
            tracing::info!(member = %addr, "ejected member answered again; back in rotation");
        }
    }

    /// The member did not answer (connect failure or attempt timeout).
    /// Ejects it once the failures reach the policy's bound, unless no other
    /// member in `peers` is in service. Returns true when it ejected.
    pub(crate) fn on_failure<'p>(
        &self,
        addr: &HostPort,
        policy: EjectPolicy,
        clock: &Clock,
        peers: impl Iterator<Item = &'p Health>,
    ) -> bool {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if policy.after == 0 || failures < policy.after {
            return false;
        }
        let now = clock.now();
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until != 0 && now < until {
            return false; // already ejected by a concurrent failure
        }
        let mut lazy = LazyNow {
            clock,
            now: Some(now),
        };
        let others_in_service = peers
            .filter(|p| !std::ptr::eq(*p, self))
            .any(|p| p.available(&mut lazy));
        if !others_in_service {
            tracing::warn!(
                member = %addr,
                failures,
                "member keeps failing but is the last one in service; not ejecting"
            );
            return false;
        }
        let cooldown = u64::try_from(policy.cooldown.as_nanos()).unwrap_or(u64::MAX);
        let next = now.saturating_add(cooldown).max(1);
        // Before the ejection becomes visible, so no answer to an older
        // request can be taken for a fresh one once it is.
        self.epoch.fetch_add(1, Ordering::Relaxed);
        if self
            .ejected_until
            .compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false; // another failure ejected it first
        }
        self.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            member = %addr,
            failures,
            cooldown_ms = u64::try_from(policy.cooldown.as_millis()).unwrap_or(u64::MAX),
            "ejecting member after consecutive failures"
        );
        true
    }

    /// A readable copy of the counters.
    pub(crate) fn report(&self, id: &MemberId, addr: &HostPort, clock: &Clock) -> MemberHealth {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let now = clock.now();
        MemberHealth {
            id: id.clone(),
            addr: addr.clone(),
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            ejected_for: (until != 0 && now < until).then(|| Duration::from_nanos(until - now)),
            ejections: self.ejections.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> HostPort {
        "h:1".parse().unwrap()
    }

    const POLICY: EjectPolicy = EjectPolicy {
        after: 3,
        cooldown: Duration::from_millis(50),
    };

    #[tokio::test(start_paused = true)]
    async fn ejects_after_the_bound_and_readmits_after_cooldown() {
        let clock = Clock::new();
        let peers = [Health::default(), Health::default()];
        let me = &peers[0];
        assert!(!me.on_failure(&addr(), POLICY, &clock, peers.iter()));
        assert!(!me.on_failure(&addr(), POLICY, &clock, peers.iter()));
        assert!(me.available(&mut LazyNow::new(&clock)));
        assert!(me.on_failure(&addr(), POLICY, &clock, peers.iter()));
        assert!(!me.available(&mut LazyNow::new(&clock)));
        assert!(me.report(&"h".into(), &addr(), &clock).is_ejected());
        // Still out just before the cool-down ends...
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(!me.available(&mut LazyNow::new(&clock)));
        tokio::time::advance(Duration::from_millis(11)).await;
        // Cool-down over: probed again, but one more failure re-ejects.
        assert!(me.available(&mut LazyNow::new(&clock)));
        assert!(me.on_failure(&addr(), POLICY, &clock, peers.iter()));
        assert_eq!(me.report(&"h".into(), &addr(), &clock).ejections, 2);
        // An answer puts it straight back.
        me.on_success(&addr(), me.epoch());
        assert!(me.available(&mut LazyNow::new(&clock)));
        let r = me.report(&"h".into(), &addr(), &clock);
        assert_eq!((r.consecutive_failures, r.is_ejected()), (0, false));
    }

    #[test]
    fn a_late_answer_to_a_request_sent_before_the_ejection_does_not_end_it() {
        let clock = Clock::new();
        let peers = [Health::default(), Health::default()];
        let me = &peers[0];
        let old = me.epoch(); // a request goes out, then the member fails
        for _ in 0..3 {
            me.on_failure(&addr(), POLICY, &clock, peers.iter());
        }
        assert!(!me.available(&mut LazyNow::new(&clock)));
        me.on_success(&addr(), old); // ...and the old request is answered
        assert!(!me.available(&mut LazyNow::new(&clock)));
        let r = me.report(&"h".into(), &addr(), &clock);
        assert_eq!((r.consecutive_failures, r.is_ejected()), (3, true));
        // A request sent after the ejection (all members down, say) does
        // re-admit it.
        me.on_success(&addr(), me.epoch());
        assert!(me.available(&mut LazyNow::new(&clock)));
        let r = me.report(&"h".into(), &addr(), &clock);
        assert_eq!((r.consecutive_failures, r.is_ejected()), (0, false));
    }

    #[test]
    fn never_ejects_the_last_member_in_service() {
        let clock = Clock::new();
        let peers = [Health::default(), Health::default()];
        for _ in 0..3 {
            peers[1].on_failure(&addr(), POLICY, &clock, peers.iter());
        }
        assert!(!peers[1].available(&mut LazyNow::new(&clock)));
        for _ in 0..10 {
            assert!(!peers[0].on_failure(&addr(), POLICY, &clock, peers.iter()));
        }
        assert!(peers[0].available(&mut LazyNow::new(&clock)));
        let alone = [Health::default()];
        for _ in 0..10 {
            assert!(!alone[0].on_failure(&addr(), POLICY, &clock, alone.iter()));
        }
    }

    #[test]
    fn zero_bound_disables_ejection_and_in_flight_counts() {
        let clock = Clock::new();
        let peers = [Health::default(), Health::default()];
        let off = EjectPolicy { after: 0, ..POLICY };
        for _ in 0..10 {
            assert!(!peers[0].on_failure(&addr(), off, &clock, peers.iter()));
        }
        peers[0].enter();
        peers[0].enter();
        assert_eq!(peers[0].in_flight(), 2);
        peers[0].leave();
        peers[0].leave();
        assert_eq!(peers[0].in_flight(), 0);
    }
}

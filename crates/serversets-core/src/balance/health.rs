//! Passive health: consecutive failures per member, ejection for a
//! cool-down, re-admission when live traffic gets an answer again.
//!
//! One rule for every balancer, so that an operator reading "ejected" in
//! any of them knows what happened:
//!
//! - a member is ejected after [`Ejection::after`] consecutive failures
//!   (a connect failure, a timeout, a broken connection: no answer), for
//!   [`Ejection::cooldown`];
//! - the last member still in service is never ejected (serving from a
//!   suspect member beats serving nothing);
//! - once the cool-down is over, live traffic probes the member: one more
//!   failure ejects it again, an answer puts it back at once;
//! - an answer to a request sent *before* the ejection says nothing about
//!   the failures that caused it, so it neither ends the ejection nor clears
//!   the count.
//!
//! The state is a handful of atomics, so a balancer can read it on every
//! request without a lock; the one O(n) step, checking that some other
//! member stays in service, runs only when an ejection is about to happen.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::contract::address::HostPort;

/// Consecutive failures that eject a member, unless a balancer's builder
/// says otherwise (`eject_after`). Finagle's failure accrual uses 5 too.
///
/// ```
/// use serversets_core::balance::{Ejection, DEFAULT_EJECT_AFTER};
///
/// // A balancer that wants to be more patient than the default:
/// let patient = Ejection::new(DEFAULT_EJECT_AFTER * 2, Ejection::default().cooldown());
/// assert_eq!(patient.after(), 10);
/// ```
pub const DEFAULT_EJECT_AFTER: u32 = 5;

/// How long an ejected member is skipped before live traffic probes it
/// again, unless a builder says otherwise (`eject_for`).
///
/// ```
/// use std::time::Duration;
/// use serversets_core::balance::{Ejection, DEFAULT_EJECT_FOR};
///
/// let quick = Ejection::new(3, DEFAULT_EJECT_FOR / 10);
/// assert_eq!(quick.cooldown(), Duration::from_secs(1));
/// ```
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);

/// When to eject a member, and for how long.
///
/// ```
/// use std::time::Duration;
/// use serversets_core::balance::Ejection;
///
/// let policy = Ejection::default();
/// assert_eq!((policy.after(), policy.cooldown()), (5, Duration::from_secs(10)));
/// assert!(!Ejection::DISABLED.is_enabled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    after: u32,
    cooldown: Duration,
}

impl Ejection {
    /// Never eject.
    pub const DISABLED: Ejection = Ejection {
        after: 0,
        cooldown: Duration::ZERO,
    };

    /// Eject after `after` consecutive failures (0 never ejects) for
    /// `cooldown`.
    pub const fn new(after: u32, cooldown: Duration) -> Ejection {
        Ejection { after, cooldown }
    }

    /// Consecutive failures that eject; 0 when ejection is off.
    pub const fn after(&self) -> u32 {
        self.after
    }

    /// How long an ejection lasts before traffic probes the member again.
    pub const fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// False when this policy never ejects.
    pub const fn is_enabled(&self) -> bool {
        self.after != 0
    }

    /// This policy with another failure count.
    pub const fn with_after(self, after: u32) -> Ejection {
        Ejection { after, ..self }
    }

    /// This policy with another cool-down.
    pub const fn with_cooldown(self, cooldown: Duration) -> Ejection {
        Ejection { cooldown, ..self }
    }
}

impl Default for Ejection {
    fn default() -> Ejection {
        Ejection::new(DEFAULT_EJECT_AFTER, DEFAULT_EJECT_FOR)
    }
}

/// Monotonic nanoseconds since the balancer was built, so a deadline fits
/// in one atomic `u64`.
///
/// ```
/// use serversets_core::balance::Clock;
/// let clock = Clock::new();
/// assert!(clock.now() >= 1);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Now, in nanoseconds since the clock started; never 0 (0 means "not
    /// ejected").
    #[inline]
    pub fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// A reading taken at most once, and only if needed: see [`LazyNow`].
    #[inline]
    pub fn lazy_now(&self) -> LazyNow<'_> {
        LazyNow {
            clock: self,
            now: None,
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// Reads the clock at most once, and only when some member is ejected: a
/// healthy set never pays for a clock read on its request path.
///
/// ```
/// use serversets_core::balance::{Clock, PassiveHealth};
///
/// let clock = Clock::new();
/// let members = [PassiveHealth::default(), PassiveHealth::default()];
/// let mut now = clock.lazy_now(); // one reading for the whole scan
/// assert_eq!(members.iter().filter(|m| m.is_available(&mut now)).count(), 2);
/// ```
#[derive(Debug)]
pub struct LazyNow<'a> {
    clock: &'a Clock,
    now: Option<u64>,
}

impl LazyNow<'_> {
    /// The reading, taken on first use.
    #[inline]
    pub fn get(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| self.clock.now())
    }
}

/// The ejection epoch a request was sent under, handed back to
/// [`PassiveHealth::record_answer`] with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt(u64);

/// One member's passive health.
///
/// ```
/// use std::time::Duration;
/// use serversets_core::balance::{Clock, Ejection, PassiveHealth};
/// use serversets_core::HostPort;
///
/// let clock = Clock::new();
/// let addr: HostPort = "10.0.0.1:80".parse()?;
/// let members = [PassiveHealth::default(), PassiveHealth::default()];
/// let policy = Ejection::new(2, Duration::from_secs(10));
/// let fail = || members[0].record_failure(&addr, policy, &clock, |now| members[1].is_available(now));
///
/// assert!(!fail());
/// assert!(fail()); // ejected: another member is in service
/// assert!(!members[0].is_available(&mut clock.lazy_now()));
/// assert!(members[0].report(&clock).is_ejected());
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
#[derive(Debug, Default)]
pub struct PassiveHealth {
    failures: AtomicU32,
    /// Clock value until which the member is out of rotation; 0 = in service.
    ejected_until: AtomicU64,
    ejections: AtomicU64,
    /// Bumped just before each ejection: an attempt remembers the value it
    /// started under, so an answer to a request sent before an ejection is
    /// recognised as stale and does not end it.
    epoch: AtomicU64,
}

impl PassiveHealth {
    /// True when the member may take traffic: never ejected, or its
    /// cool-down is over (then live traffic probes it).
    #[inline]
    pub fn is_available(&self, now: &mut LazyNow<'_>) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || now.get() >= until
    }

    /// Marks a request about to be sent; pass the result to
    /// [`record_answer`](Self::record_answer) when it is answered.
    #[inline]
    pub fn attempt(&self) -> Attempt {
        Attempt(self.epoch.load(Ordering::Relaxed))
    }

    /// The member answered (any answer, even an error status: it is alive)
    /// a request sent under `attempt`: it is healthy again, unless the
    /// request predates the latest ejection. Returns true when this ended an
    /// ejection.
    ///
    /// Reads before writing, so the common healthy case does not bounce the
    /// cache line between cores.
    #[inline]
    pub fn record_answer(&self, attempt: Attempt) -> bool {
        if self.epoch.load(Ordering::Relaxed) != attempt.0 {
            return false;
        }
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        self.ejected_until.load(Ordering::Relaxed) != 0
            && self.ejected_until.swap(0, Ordering::Relaxed) != 0
    }

    /// The member did not answer. Ejects it once the consecutive failures
    /// reach `policy`'s bound, unless `others_available` says no other
    /// member is in service. Returns true when this call ejected it; logs
    /// the ejection (or the refusal to eject the last member) at warn level.
    pub fn record_failure(
        &self,
        addr: &HostPort,
        policy: Ejection,
        clock: &Clock,
        others_available: impl FnOnce(&mut LazyNow<'_>) -> bool,
    ) -> bool {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if !policy.is_enabled() || failures < policy.after {
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
        if !others_available(&mut lazy) {
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
    pub fn report(&self, clock: &Clock) -> HealthReport {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let now = clock.now();
        HealthReport {
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            ejected_for: (until != 0 && now < until).then(|| Duration::from_nanos(until - now)),
            ejections: self.ejections.load(Ordering::Relaxed),
        }
    }
}

/// A member's passive health at one moment; balancers add what they know
/// (the member, its address, its load) to their own reports.
///
/// ```
/// use serversets_core::balance::{Clock, PassiveHealth};
///
/// let report = PassiveHealth::default().report(&Clock::new());
/// assert!(!report.is_ejected());
/// assert_eq!((report.consecutive_failures, report.ejections), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HealthReport {
    /// Failures since the last answer.
    pub consecutive_failures: u32,
    /// Remaining cool-down when the member is ejected now.
    pub ejected_for: Option<Duration>,
    /// How many times the member was ejected.
    pub ejections: u64,
}

impl HealthReport {
    /// True while the member is out of rotation.
    #[inline]
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

    const POLICY: Ejection = Ejection::new(3, Duration::from_secs(3600));

    /// A clock that has run for `nanos` already, so tests move through a
    /// cool-down without sleeping.
    fn clock_at(c: &Clock, nanos: u64) -> LazyNow<'_> {
        LazyNow {
            clock: c,
            now: Some(nanos),
        }
    }

    fn fail(me: &PassiveHealth, peer: &PassiveHealth, clock: &Clock) -> bool {
        me.record_failure(&addr(), POLICY, clock, |now| peer.is_available(now))
    }

    #[test]
    fn ejects_after_the_bound_and_readmits_on_an_answer() {
        let clock = Clock::new();
        let (me, peer) = (PassiveHealth::default(), PassiveHealth::default());
        assert!(!fail(&me, &peer, &clock));
        assert!(!fail(&me, &peer, &clock));
        assert!(me.is_available(&mut clock.lazy_now()));
        assert!(fail(&me, &peer, &clock));
        assert!(!me.is_available(&mut clock.lazy_now()));
        let r = me.report(&clock);
        assert!(r.is_ejected() && r.ejected_for.unwrap() > Duration::from_secs(3000));
        // Once the cool-down is over, traffic probes it again.
        assert!(me.is_available(&mut clock_at(&clock, u64::MAX)));
        // An answer to a request sent now puts it straight back.
        assert!(me.record_answer(me.attempt()));
        assert!(me.is_available(&mut clock.lazy_now()));
        let r = me.report(&clock);
        assert_eq!(
            (r.consecutive_failures, r.is_ejected(), r.ejections),
            (0, false, 1)
        );
        // And a second answer does not claim to re-admit it again.
        assert!(!me.record_answer(me.attempt()));
    }

    #[test]
    fn a_late_answer_to_a_request_sent_before_the_ejection_does_not_end_it() {
        let clock = Clock::new();
        let (me, peer) = (PassiveHealth::default(), PassiveHealth::default());
        let old = me.attempt(); // a request goes out, then the member fails
        for _ in 0..3 {
            fail(&me, &peer, &clock);
        }
        assert!(!me.is_available(&mut clock.lazy_now()));
        assert!(!me.record_answer(old)); // ...and the old request is answered
        assert!(!me.is_available(&mut clock.lazy_now()));
        assert_eq!(me.report(&clock).consecutive_failures, 3);
        assert!(me.record_answer(me.attempt()));
        assert!(me.is_available(&mut clock.lazy_now()));
    }

    #[test]
    fn never_ejects_the_last_member_in_service() {
        let clock = Clock::new();
        let (a, b) = (PassiveHealth::default(), PassiveHealth::default());
        for _ in 0..3 {
            fail(&b, &a, &clock);
        }
        assert!(!b.is_available(&mut clock.lazy_now()));
        for _ in 0..10 {
            assert!(!fail(&a, &b, &clock));
        }
        assert!(a.is_available(&mut clock.lazy_now()));
        assert_eq!(a.report(&clock).consecutive_failures, 10);
    }

    #[test]
    fn a_disabled_policy_never_ejects() {
        let clock = Clock::new();
        let (me, peer) = (PassiveHealth::default(), PassiveHealth::default());
        for _ in 0..100 {
            assert!(
                !me.record_failure(&addr(), Ejection::DISABLED, &clock, |now| {
                    peer.is_available(now)
                })
            );
        }
        assert!(me.is_available(&mut clock.lazy_now()));
    }

    #[test]
    fn a_failure_while_ejected_does_not_extend_or_recount_the_ejection() {
        let clock = Clock::new();
        let (me, peer) = (PassiveHealth::default(), PassiveHealth::default());
        for _ in 0..3 {
            fail(&me, &peer, &clock);
        }
        let before = me.report(&clock).ejected_for.unwrap();
        assert!(!fail(&me, &peer, &clock));
        let r = me.report(&clock);
        assert_eq!(r.ejections, 1);
        assert!(r.ejected_for.unwrap() <= before);
    }

    #[test]
    fn builders_and_defaults() {
        let p = Ejection::default();
        assert_eq!(
            (p.after(), p.cooldown()),
            (DEFAULT_EJECT_AFTER, DEFAULT_EJECT_FOR)
        );
        let q = p.with_after(7).with_cooldown(Duration::from_secs(1));
        assert_eq!((q.after(), q.cooldown()), (7, Duration::from_secs(1)));
        assert!(q.is_enabled() && !q.with_after(0).is_enabled());
    }
}

//! Choosing the member for one attempt: round-robin or power-of-two-choices
//! least-outstanding, both skipping ejected members.
//!
//! Both are O(1) while the set is healthy: one atomic increment (round-robin)
//! or two random indices (least-outstanding). Skipping ejected members walks
//! forward from the chosen index, so its cost grows only with the number of
//! ejected members, and when every member is ejected the plain choice is
//! used anyway (a set that is all failing is still better tried than not).
//!
//! With unequal weights ([`Weights::Weighted`]) both stay O(1): round-robin
//! indexes a precomputed, interleaved schedule instead of the member list,
//! and least-outstanding draws its two members in proportion to weight and
//! compares requests awaiting a head divided by weight. A member of weight
//! 0 is never chosen while another has weight, even when that one is ejected
//! or to be avoided.

use std::sync::atomic::{AtomicUsize, Ordering};

use serversets_core::balance::{LazyNow, PassiveHealth};

use crate::weights::{Weighted, Weights};

/// How the next member is chosen.
///
/// Both follow members' weights ([`serversets_core::Member::weight`]): a
/// member of weight 2 gets twice the requests of one of weight 1, and one
/// of weight 0 none while another has weight. Round-robin interleaves them
/// smoothly from a schedule built when the set changes (64 slots per
/// member, so weights are exact to within half a slot); least-outstanding
/// draws in proportion to weight and compares requests in flight divided by
/// weight. A pick stays O(1) either way.
///
/// ```
/// use serversets_core::{HostPort, Member};
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::HttpSet;
///
/// let heavy = Member::from_addr("127.0.0.1:1".parse::<HostPort>()?).with_weight(3.0);
/// let light = Member::from_addr("127.0.0.1:2".parse::<HostPort>()?);
/// let set = HttpSet::new(FixedSet::from_members([heavy, light]));
/// let to_heavy = (0..400)
///     .filter(|_| set.next_addr().map(|e| e.port()) == Some(1))
///     .count();
/// assert_eq!(to_heavy, 300);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{Balance, HttpSet};
///
/// let set = HttpSet::builder()
///     .balance(Balance::LeastOutstanding)
///     .build(FixedSet::new(["127.0.0.1:8080", "127.0.0.1:8081"])?)?;
/// assert_eq!(set.health().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Balance {
    /// Each request goes to the next member in turn (the default).
    #[default]
    RoundRobin,
    /// Two members are drawn at random and the one with fewer requests
    /// awaiting a response head is used ("power of two choices"): slow or
    /// overloaded members get less traffic.
    LeastOutstanding,
}

/// What a pick reads of a member: its passive health (may it take traffic
/// now?) and its load (requests in flight).
pub(crate) trait Candidate {
    fn health(&self) -> &PassiveHealth;
    fn in_flight(&self) -> usize;
}

/// Picks an index into `items`, or `None` when `items` is empty.
///
/// `weights` are the items' weights as prepared by [`Weights::new`].
/// `avoid` is an index to skip when another choice exists (the member that
/// just failed, on a retry).
pub(crate) fn pick<T: Candidate>(
    balance: Balance,
    counter: &AtomicUsize,
    items: &[T],
    weights: &Weights,
    avoid: Option<usize>,
    now: &mut LazyNow<'_>,
) -> Option<usize> {
    if let Weights::Weighted(w) = weights {
        return pick_weighted(balance, counter, items, w, avoid, now);
    }
    let n = items.len();
    if n == 0 {
        return None;
    }
    if n == 1 {
        return Some(0);
    }
    let usable =
        |i: usize, now: &mut LazyNow<'_>| Some(i) != avoid && items[i].health().is_available(now);
    if balance == Balance::LeastOutstanding {
        let a = fastrand::usize(..n);
        let mut b = fastrand::usize(..n - 1);
        if b >= a {
            b += 1;
        }
        let b_lighter = || items[b].in_flight() < items[a].in_flight();
        if let Some(i) = two_choices(a, b, |i| usable(i, now), b_lighter) {
            return Some(i);
        }
        // Neither is usable: fall through to the walk below.
    }
    let start = counter.fetch_add(1, Ordering::Relaxed) % n;
    if usable(start, now) {
        return Some(start);
    }
    // Walk forward to the next usable member.
    for k in 1..n {
        let i = (start + k) % n;
        if usable(i, now) {
            return Some(i);
        }
    }
    // Everything is ejected (or the only other one is `avoid`): prefer not
    // to repeat the failed member, then use the plain choice anyway.
    if Some(start) == avoid {
        return Some((start + 1) % n);
    }
    Some(start)
}

/// [`pick`] over unequal weights.
fn pick_weighted<T: Candidate>(
    balance: Balance,
    counter: &AtomicUsize,
    items: &[T],
    w: &Weighted,
    avoid: Option<usize>,
    now: &mut LazyNow<'_>,
) -> Option<usize> {
    let n = items.len();
    if n == 0 {
        return None;
    }
    let usable = |i: usize, now: &mut LazyNow<'_>| {
        i < n && Some(i) != avoid && items[i].health().is_available(now)
    };
    if balance == Balance::LeastOutstanding {
        let a = w.draw();
        let mut b = w.draw();
        if b == a {
            // One more draw: a heavy member often comes up twice.
            b = w.draw();
        }
        // Fewer in flight per unit of weight wins; cross-multiplied, so no
        // division and weight 0 cannot come up here.
        let b_lighter = || {
            let (la, lb) = (items[a].in_flight(), items[b].in_flight());
            (lb as f64) * w.weight(a) < (la as f64) * w.weight(b)
        };
        if let Some(i) = two_choices(a, b, |i| usable(i, now), b_lighter) {
            return Some(i);
        }
    }
    let start = counter.fetch_add(1, Ordering::Relaxed);
    let first = w.scheduled(start);
    if usable(first, now) {
        return Some(first);
    }
    // Walk the schedule a little (keeps the weighted order around one
    // ejected member), then every member of positive weight once.
    for k in 1..n.min(w.schedule_len()) {
        let i = w.scheduled(start.wrapping_add(k));
        if usable(i, now) {
            return Some(i);
        }
    }
    for k in 1..n {
        let i = (first + k) % n;
        if w.weight(i) > 0.0 && usable(i, now) {
            return Some(i);
        }
    }
    // Nothing of positive weight is usable: prefer not to repeat the failed
    // member, then use the plain choice anyway. Weight 0 stays unused.
    if Some(first) == avoid {
        if let Some(i) = (1..n).map(|k| (first + k) % n).find(|&i| w.weight(i) > 0.0) {
            return Some(i);
        }
    }
    Some(first.min(n - 1))
}

/// The power-of-two-choices step between draws `a` and `b`: the usable one,
/// or of two usable ones `b` when `b_lighter` says so and `a` otherwise;
/// `None` when neither is usable.
#[inline]
fn two_choices(
    a: usize,
    b: usize,
    mut usable: impl FnMut(usize) -> bool,
    b_lighter: impl FnOnce() -> bool,
) -> Option<usize> {
    match (usable(a), usable(b)) {
        (true, true) => Some(if b_lighter() { b } else { a }),
        (true, false) => Some(a),
        (false, true) => Some(b),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets_core::balance::{Clock, Ejection, InFlight, InFlightGuard};
    use std::time::Duration;

    /// A member as a pick sees it.
    #[derive(Default)]
    struct Slot {
        health: PassiveHealth,
        load: InFlight,
    }

    impl Candidate for Slot {
        fn health(&self) -> &PassiveHealth {
            &self.health
        }
        fn in_flight(&self) -> usize {
            self.load.get()
        }
    }

    /// Ejects after one failure, for longer than any test runs.
    const EJECT_AT_ONCE: Ejection = Ejection::new(1, Duration::from_secs(60));

    /// One failure of `me` among `peers`: true when it ejected `me`.
    fn fail<'a>(me: &Slot, peers: impl IntoIterator<Item = &'a Slot>, clock: &Clock) -> bool {
        me.health
            .record_failure(&"h:1".parse().unwrap(), EJECT_AT_ONCE, clock, |now| {
                peers
                    .into_iter()
                    .filter(|p| !std::ptr::eq(*p, me))
                    .any(|p| p.health.is_available(now))
            })
    }

    fn eject(h: &Slot, peers: &[Slot], clock: &Clock) {
        assert!(fail(h, peers, clock));
    }

    /// Counts `n` requests in flight on `slot` until the guards drop.
    fn in_flight(slot: &Slot, n: usize) -> Vec<InFlightGuard<&InFlight>> {
        (0..n).map(|_| InFlight::enter(&slot.load)).collect()
    }

    fn pick_n(balance: Balance, items: &[Slot], clock: &Clock, rounds: usize) -> Vec<usize> {
        let counter = AtomicUsize::new(0);
        let mut counts = vec![0; items.len()];
        for _ in 0..rounds {
            let i = pick(
                balance,
                &counter,
                items,
                &Weights::Uniform,
                None,
                &mut clock.lazy_now(),
            )
            .unwrap();
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_exactly_even() {
        let items: Vec<Slot> = (0..3).map(|_| Slot::default()).collect();
        assert_eq!(
            pick_n(Balance::RoundRobin, &items, &Clock::new(), 300),
            [100, 100, 100]
        );
    }

    #[test]
    fn empty_and_single() {
        let clock = Clock::new();
        let counter = AtomicUsize::new(0);
        let none: [Slot; 0] = [];
        assert_eq!(
            pick(
                Balance::RoundRobin,
                &counter,
                &none,
                &Weights::Uniform,
                None,
                &mut clock.lazy_now()
            ),
            None
        );
        let one = [Slot::default()];
        assert_eq!(
            pick(
                Balance::LeastOutstanding,
                &counter,
                &one,
                &Weights::Uniform,
                Some(0),
                &mut clock.lazy_now()
            ),
            Some(0)
        );
    }

    #[test]
    fn skips_ejected_and_avoided() {
        let clock = Clock::new();
        let items: Vec<Slot> = (0..3).map(|_| Slot::default()).collect();
        eject(&items[1], &items, &clock);
        for balance in [Balance::RoundRobin, Balance::LeastOutstanding] {
            let counts = pick_n(balance, &items, &clock, 300);
            assert_eq!(counts[1], 0, "{balance:?}: ejected member picked");
            assert_eq!(counts[0] + counts[2], 300);
        }
        let counter = AtomicUsize::new(0);
        for _ in 0..50 {
            let i = pick(
                Balance::RoundRobin,
                &counter,
                &items,
                &Weights::Uniform,
                Some(0),
                &mut clock.lazy_now(),
            );
            assert_eq!(i, Some(2));
        }
    }

    #[test]
    fn all_ejected_still_picks() {
        let clock = Clock::new();
        let items: Vec<Slot> = (0..2).map(|_| Slot::default()).collect();
        eject(&items[0], &items, &clock);
        // The last one in service is never ejected through a failure...
        assert!(!fail(&items[1], &items, &clock));
        let counts = pick_n(Balance::RoundRobin, &items, &clock, 10);
        assert_eq!(counts, [0, 10]);
        // ...but concurrent ejections can still leave none; then all are used.
        let healthy_elsewhere = Slot::default();
        assert!(fail(
            &items[1],
            items.iter().chain([&healthy_elsewhere]),
            &clock
        ));
        let counts = pick_n(Balance::RoundRobin, &items, &clock, 10);
        assert_eq!(counts, [5, 5]);
        // Avoiding the only usable one falls back to something, never None.
        let counter = AtomicUsize::new(0);
        let i = pick(
            Balance::RoundRobin,
            &counter,
            &items,
            &Weights::Uniform,
            Some(1),
            &mut clock.lazy_now(),
        );
        assert!(i.is_some());
    }

    #[test]
    fn least_outstanding_prefers_the_idle_member() {
        let clock = Clock::new();
        let items: Vec<Slot> = (0..2).map(|_| Slot::default()).collect();
        let _busy = in_flight(&items[0], 5);
        let counts = pick_n(Balance::LeastOutstanding, &items, &clock, 100);
        assert_eq!(counts, [0, 100]);
    }

    fn pick_weighted_n(
        balance: Balance,
        items: &[Slot],
        weights: &[f64],
        avoid: Option<usize>,
        rounds: usize,
    ) -> Vec<usize> {
        let weights = Weights::new(weights);
        let (clock, counter) = (Clock::new(), AtomicUsize::new(0));
        let mut counts = vec![0; items.len()];
        for _ in 0..rounds {
            let i = pick(
                balance,
                &counter,
                items,
                &weights,
                avoid,
                &mut clock.lazy_now(),
            )
            .unwrap();
            counts[i] += 1;
        }
        counts
    }

    /// ±5% is relative to each member's expected share: a member of weight
    /// 2 out of 6 must get between 0.95 × 10,000 and 1.05 × 10,000 of 30,000
    /// picks.
    fn assert_shares(counts: &[usize], weights: &[f64], what: &str) {
        let total: usize = counts.iter().sum();
        let weight: f64 = weights.iter().sum();
        for (i, (&got, &w)) in counts.iter().zip(weights).enumerate() {
            let want = total as f64 * w / weight;
            if w == 0.0 {
                assert_eq!(got, 0, "{what}: member {i} of weight 0 was picked");
            } else {
                assert!(
                    (got as f64 - want).abs() <= 0.05 * want,
                    "{what}: member {i} (weight {w}) got {got} of {total}, want {want:.0} ± 5%"
                );
            }
        }
    }

    #[test]
    fn weighted_shares_follow_weights_over_30000_picks() {
        fastrand::seed(13);
        let weights = [1.0, 2.0, 3.0, 0.0, 0.5];
        let items: Vec<Slot> = weights.iter().map(|_| Slot::default()).collect();
        for balance in [Balance::RoundRobin, Balance::LeastOutstanding] {
            let counts = pick_weighted_n(balance, &items, &weights, None, 30_000);
            assert_shares(&counts, &weights, &format!("{balance:?}"));
        }
    }

    #[test]
    fn weighted_round_robin_interleaves() {
        // 1:3 gives the light member one pick in every four, never a
        // burst of the heavy one longer than three.
        let items: Vec<Slot> = (0..2).map(|_| Slot::default()).collect();
        let weights = Weights::new(&[1.0, 3.0]);
        let (clock, counter) = (Clock::new(), AtomicUsize::new(0));
        let order: Vec<usize> = (0..400)
            .map(|_| {
                let i = pick(
                    Balance::RoundRobin,
                    &counter,
                    &items,
                    &weights,
                    None,
                    &mut clock.lazy_now(),
                );
                i.unwrap()
            })
            .collect();
        for window in order.chunks(4) {
            assert_eq!(window.iter().filter(|&&i| i == 0).count(), 1, "{window:?}");
        }
    }

    #[test]
    fn all_zero_weights_are_equal() {
        let items: Vec<Slot> = (0..3).map(|_| Slot::default()).collect();
        let counts = pick_weighted_n(Balance::RoundRobin, &items, &[0.0; 3], None, 300);
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn weight_zero_is_never_picked_even_as_a_fallback() {
        let clock = Clock::new();
        let items: Vec<Slot> = (0..3).map(|_| Slot::default()).collect();
        eject(&items[0], &items, &clock);
        let weights = [1.0, 2.0, 0.0];
        for balance in [Balance::RoundRobin, Balance::LeastOutstanding] {
            // The ejected one is skipped for the other of positive weight...
            let counts = pick_weighted_n(balance, &items, &weights, None, 300);
            assert_eq!(counts, [0, 300, 0], "{balance:?}");
            // ...and avoiding that one leaves the ejected one, not weight 0.
            let counts = pick_weighted_n(balance, &items, &weights, Some(1), 300);
            assert_eq!(counts, [300, 0, 0], "{balance:?}");
        }
    }

    #[test]
    fn least_outstanding_divides_in_flight_by_weight() {
        fastrand::seed(5);
        let items: Vec<Slot> = (0..2).map(|_| Slot::default()).collect();
        let _busy = (in_flight(&items[0], 4), in_flight(&items[1], 2));
        // Unweighted, 4 in flight loses to 2.
        let counts = pick_weighted_n(Balance::LeastOutstanding, &items, &[1.0, 1.0], None, 1000);
        assert_eq!(counts, [0, 1000]);
        // At weight 4 that is 1 per unit against 2: the heavy one wins
        // whenever both are drawn (the light one only when drawn 3 times in
        // a row, 1 in 125).
        let counts = pick_weighted_n(Balance::LeastOutstanding, &items, &[4.0, 1.0], None, 10_000);
        assert!(counts[1] < 200, "{counts:?}");
    }
}

//! The least-in-flight choice: which member a checkout goes to.
//!
//! Pure functions over the slots as the lock shows them (and one clock
//! reading, taken only if some member is ejected), so that the choice can
//! be tested (and read) without sockets or threads. Two
//! variants: [`pick`] when every member weighs the same, [`pick_weighted`]
//! when weights differ; [`State::weighted`](super::State) says which.

use serversets_core::balance::LazyNow;

use super::slot::MemberSlot;

/// What a choice found.
pub(super) enum Pick {
    /// The index of the slot to use.
    Member(usize),
    /// Usable members exist but are all at their `max_active` limit.
    AllFull,
    /// No member is left to try.
    None,
}

/// The member with the fewest requests in flight among those with room,
/// ties broken at random. Ejected members count only when every member not
/// yet tried is ejected (so the last usable member is never shut out).
///
/// One scan finds the least load and how many members share it (both among
/// healthy members and among all), a second takes a random one of those.
pub(super) fn pick(
    slots: &[MemberSlot],
    max_active: usize,
    now: &mut LazyNow<'_>,
    tried: &[u64],
) -> Pick {
    #[derive(Clone, Copy)]
    struct Least {
        load: usize,
        ties: usize,
    }
    impl Least {
        fn add(&mut self, load: usize) {
            if load < self.load {
                *self = Least { load, ties: 1 };
            } else if load == self.load {
                self.ties += 1;
            }
        }
    }
    let none = Least {
        load: usize::MAX,
        ties: 0,
    };
    let (mut healthy, mut all) = (none, none);
    let (mut any_untried, mut any_healthy) = (false, false);
    for m in slots {
        if tried.contains(&m.id) {
            continue;
        }
        any_untried = true;
        let ejected = !m.in_service(now);
        any_healthy |= !ejected;
        let in_flight = m.in_flight();
        if in_flight < max_active {
            all.add(in_flight);
            if !ejected {
                healthy.add(in_flight);
            }
        }
    }
    if !any_untried {
        return Pick::None;
    }
    let (least, include_ejected) = if any_healthy {
        (healthy, false)
    } else {
        (all, true)
    };
    if least.ties == 0 {
        // Usable members exist but all are at their limit: wait for one.
        return Pick::AllFull;
    }
    let mut nth = if least.ties == 1 {
        0
    } else {
        fastrand::usize(..least.ties)
    };
    for (i, m) in slots.iter().enumerate() {
        if m.in_flight() == least.load
            && !tried.contains(&m.id)
            && (include_ejected || m.in_service(now))
        {
            if nth == 0 {
                return Pick::Member(i);
            }
            nth -= 1;
        }
    }
    // The second scan sees exactly the members the first one counted.
    Pick::AllFull
}

/// [`pick`] over members of unequal weights: the member with the fewest
/// requests in flight per unit of weight among those with room, ties
/// broken at random in proportion to weight (so an idle set, where every
/// member ties at 0, is shared by weight).
///
/// Members fall in four tiers, and only the best tier with an untried
/// member is considered: positive weight and not ejected; positive weight,
/// ejected; weight 0, not ejected; weight 0, ejected. So a member of weight
/// 0 is used only when every member of positive weight has failed to
/// connect during this checkout (or all weigh 0), never merely because they
/// are busy: a full tier waits ([`Pick::AllFull`]). Among members of weight
/// 0 all count as weight 1.
///
/// The same two scans as [`pick`]: the first finds the best tier, its least
/// load and the total weight of the members sharing it; the second draws
/// one.
pub(super) fn pick_weighted(
    slots: &[MemberSlot],
    max_active: usize,
    now: &mut LazyNow<'_>,
    tried: &[u64],
) -> Pick {
    let mut tier = |m: &MemberSlot| u8::from(m.weight == 0.0) * 2 + u8::from(!m.in_service(now));
    let load = |m: &MemberSlot| (m.in_flight() as u64).saturating_mul(m.scale);
    // Best tier seen (4: none yet), its least load and the shares tied at it.
    let (mut best, mut least, mut tied) = (4u8, u64::MAX, 0u64);
    for m in slots {
        if tried.contains(&m.id) {
            continue;
        }
        let t = tier(m);
        if t > best {
            continue;
        }
        if t < best {
            (best, least, tied) = (t, u64::MAX, 0);
        }
        if m.in_flight() < max_active {
            let l = load(m);
            if l < least {
                (least, tied) = (l, m.share);
            } else if l == least {
                tied += m.share;
            }
        }
    }
    if best == 4 {
        return Pick::None;
    }
    if tied == 0 {
        return Pick::AllFull;
    }
    let mut r = fastrand::u64(..tied);
    for (i, m) in slots.iter().enumerate() {
        // Cheapest tests first: most members fail the load test under load.
        if m.in_flight() < max_active
            && load(m) == least
            && tier(m) == best
            && !tried.contains(&m.id)
        {
            if r < m.share {
                return Pick::Member(i);
            }
            r -= m.share;
        }
    }
    // The second scan sees exactly the members the first one counted.
    Pick::AllFull
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serversets_core::balance::{Clock, Ejection};
    use serversets_core::HostPort;

    use super::*;
    use crate::metrics::{MemberMetrics, PoolMetrics};
    use crate::pool::slot::set_shares;

    fn slot(id: u64, in_flight: usize) -> MemberSlot {
        let addr = HostPort::new("h", id as u16).unwrap();
        let metrics = MemberMetrics::new(&PoolMetrics::new(&Arc::from("test")), &addr);
        let mut m = MemberSlot::new(id, Arc::new(addr), metrics);
        m.set_in_flight(in_flight);
        m
    }

    fn weighted(id: u64, in_flight: usize, weight: f64) -> MemberSlot {
        let mut m = slot(id, in_flight);
        m.set_weight(weight);
        m
    }

    fn with_shares<const N: usize>(mut slots: [MemberSlot; N]) -> [MemberSlot; N] {
        set_shares(&mut slots);
        slots
    }

    /// Ejects `m` by the shared rule (one failure, another member in
    /// service) for `cooldown`; a zero cool-down is over at once.
    fn eject(m: &MemberSlot, cooldown: Duration, clock: &Clock) {
        let policy = Ejection::new(1, cooldown);
        assert!(m.health.record_failure(&m.addr, policy, clock, |_| true));
    }

    fn picked(p: Pick) -> Option<usize> {
        match p {
            Pick::Member(i) => Some(i),
            _ => None,
        }
    }

    /// How often each slot is picked in `n` choices.
    fn tally<const N: usize>(n: usize, mut choose: impl FnMut() -> Pick) -> [usize; N] {
        let mut counts = [0usize; N];
        for _ in 0..n {
            counts[picked(choose()).unwrap()] += 1;
        }
        counts
    }

    /// ±5% is relative to each member's expected share: a member of weight
    /// 2 out of 6 must get 10,000 ± 500 of 30,000 checkouts.
    #[test]
    fn idle_members_share_30000_picks_by_weight() {
        fastrand::seed(11);
        let clock = Clock::new();
        let weights = [1.0, 2.0, 3.0, 0.0, 0.5];
        let mut slots: Vec<MemberSlot> = (0..5)
            .map(|i| weighted(i as u64 + 1, 0, weights[i]))
            .collect();
        set_shares(&mut slots);
        let counts: [usize; 5] = tally(30_000, || {
            pick_weighted(&slots, 8, &mut clock.lazy_now(), &[])
        });
        assert_eq!(counts[3], 0, "weight 0 picked: {counts:?}");
        for i in [0, 1, 2, 4] {
            let want = 30_000.0 * weights[i] / 6.5;
            let got = counts[i] as f64;
            assert!(
                (got - want).abs() <= 0.05 * want,
                "member {i} (weight {}) got {got}, want {want:.0} ± 5%",
                weights[i]
            );
        }
    }

    #[test]
    fn in_flight_is_divided_by_weight() {
        let clock = Clock::new();
        let mut now = clock.lazy_now();
        // 3 in flight at weight 4 (0.75 each) beats 1 at weight 1.
        let slots = with_shares([weighted(1, 3, 4.0), weighted(2, 1, 1.0)]);
        for _ in 0..50 {
            assert_eq!(picked(pick_weighted(&slots, 8, &mut now, &[])), Some(0));
        }
        // 5 at weight 4 (1.25) loses.
        let slots = with_shares([weighted(1, 5, 4.0), weighted(2, 1, 1.0)]);
        assert_eq!(picked(pick_weighted(&slots, 8, &mut now, &[])), Some(1));
    }

    #[test]
    fn weight_zero_is_the_last_resort() {
        let clock = Clock::new();
        let mut slots = with_shares([weighted(1, 0, 0.0), weighted(2, 0, 1.0)]);
        // Busy or ejected, the weighted member still comes first...
        slots[1].set_in_flight(2);
        let mut now = clock.lazy_now();
        assert!(matches!(
            pick_weighted(&slots, 2, &mut now, &[]),
            Pick::AllFull
        ));
        slots[1].set_in_flight(0);
        eject(&slots[1], Duration::from_secs(5), &clock);
        let mut now = clock.lazy_now();
        assert!(!slots[1].in_service(&mut now));
        assert_eq!(picked(pick_weighted(&slots, 2, &mut now, &[])), Some(1));
        // ...until it failed to connect in this checkout.
        assert_eq!(picked(pick_weighted(&slots, 2, &mut now, &[2])), Some(0));
        assert!(matches!(
            pick_weighted(&slots, 2, &mut now, &[1, 2]),
            Pick::None
        ));
        // All of weight 0: all equal.
        let slots = with_shares([weighted(1, 1, 0.0), weighted(2, 0, 0.0)]);
        assert_eq!(picked(pick_weighted(&slots, 2, &mut now, &[])), Some(1));
    }

    #[test]
    fn picks_the_least_loaded_member() {
        let clock = Clock::new();
        let slots = [slot(1, 3), slot(2, 1), slot(3, 2)];
        for _ in 0..50 {
            assert_eq!(picked(pick(&slots, 8, &mut clock.lazy_now(), &[])), Some(1));
        }
    }

    #[test]
    fn ties_are_broken_evenly() {
        let clock = Clock::new();
        let slots = [slot(1, 0), slot(2, 5), slot(3, 0), slot(4, 0)];
        let counts: [usize; 4] = tally(3000, || pick(&slots, 8, &mut clock.lazy_now(), &[]));
        assert_eq!(counts[1], 0);
        for i in [0, 2, 3] {
            assert!((800..1200).contains(&counts[i]), "{counts:?}");
        }
    }

    #[test]
    fn full_tried_and_ejected_members() {
        let clock = Clock::new();
        let mut now = clock.lazy_now();
        let mut slots = [slot(1, 2), slot(2, 2)];
        assert!(matches!(pick(&slots, 2, &mut now, &[]), Pick::AllFull));
        assert!(matches!(pick(&slots, 2, &mut now, &[1, 2]), Pick::None));
        slots[1].set_in_flight(1);
        assert_eq!(picked(pick(&slots, 2, &mut now, &[])), Some(1));
        assert!(matches!(pick(&slots, 2, &mut now, &[2]), Pick::AllFull));

        // An ejected member is skipped while another is usable, even if
        // full...
        let mut slots = [slot(1, 0), slot(2, 2)];
        eject(&slots[0], Duration::from_secs(5), &clock);
        let mut now = clock.lazy_now();
        assert!(matches!(pick(&slots, 2, &mut now, &[]), Pick::AllFull));
        slots[1].set_in_flight(0);
        assert_eq!(picked(pick(&slots, 2, &mut now, &[])), Some(1));
        // ...but used when it is the only one left,
        assert_eq!(picked(pick(&slots, 2, &mut now, &[2])), Some(0));
        // and when its cool-down is over (here, a cool-down of zero, as
        // the shared clock cannot be moved forward from outside core).
        let slots = [slot(1, 0), slot(2, 1)];
        eject(&slots[0], Duration::ZERO, &clock);
        assert_eq!(slots[0].health.report(&clock).ejections, 1);
        assert_eq!(picked(pick(&slots, 2, &mut clock.lazy_now(), &[])), Some(0));
    }
}

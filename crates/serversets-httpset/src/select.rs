//! Choosing the endpoint for one attempt: round-robin or power-of-two-choices
//! least-outstanding, both skipping ejected endpoints.
//!
//! Both are O(1) while the set is healthy: one atomic increment (round-robin)
//! or two random indices (least-outstanding). Skipping ejected endpoints walks
//! forward from the chosen index, so its cost grows only with the number of
//! ejected endpoints, and when every endpoint is ejected the plain choice is
//! used anyway (a set that is all failing is still better tried than not).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::health::{Health, LazyNow};

/// How the next endpoint is chosen.
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
    /// Each request goes to the next endpoint in turn (the default).
    #[default]
    RoundRobin,
    /// Two endpoints are drawn at random and the one with fewer requests
    /// awaiting a response head is used ("power of two choices"): slow or
    /// overloaded endpoints get less traffic.
    LeastOutstanding,
}

/// Picks an index into `items`, or `None` when `items` is empty.
///
/// `avoid` is an index to skip when another choice exists (the endpoint that
/// just failed, on a retry).
pub(crate) fn pick<T>(
    balance: Balance,
    counter: &AtomicUsize,
    items: &[T],
    health: impl Fn(&T) -> &Health,
    avoid: Option<usize>,
    now: &mut LazyNow<'_>,
) -> Option<usize> {
    let n = items.len();
    if n == 0 {
        return None;
    }
    if n == 1 {
        return Some(0);
    }
    let usable =
        |i: usize, now: &mut LazyNow<'_>| Some(i) != avoid && health(&items[i]).available(now);
    if balance == Balance::LeastOutstanding {
        let a = fastrand::usize(..n);
        let mut b = fastrand::usize(..n - 1);
        if b >= a {
            b += 1;
        }
        match (usable(a, now), usable(b, now)) {
            (true, true) => {
                let (la, lb) = (health(&items[a]).in_flight(), health(&items[b]).in_flight());
                return Some(if lb < la { b } else { a });
            }
            (true, false) => return Some(a),
            (false, true) => return Some(b),
            (false, false) => {} // fall through to the walk below
        }
    }
    let start = counter.fetch_add(1, Ordering::Relaxed) % n;
    if usable(start, now) {
        return Some(start);
    }
    // Walk forward to the next usable endpoint.
    for k in 1..n {
        let i = (start + k) % n;
        if usable(i, now) {
            return Some(i);
        }
    }
    // Everything is ejected (or the only other one is `avoid`): prefer not
    // to repeat the failed endpoint, then use the plain choice anyway.
    if Some(start) == avoid {
        return Some((start + 1) % n);
    }
    Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Clock, EjectPolicy};
    use std::time::Duration;

    fn eject(h: &Health, peers: &[Health], clock: &Clock) {
        let policy = EjectPolicy {
            after: 1,
            cooldown: Duration::from_secs(60),
        };
        assert!(h.on_failure(&"h:1".parse().unwrap(), policy, clock, peers.iter()));
    }

    fn pick_n(balance: Balance, items: &[Health], clock: &Clock, rounds: usize) -> Vec<usize> {
        let counter = AtomicUsize::new(0);
        let mut counts = vec![0; items.len()];
        for _ in 0..rounds {
            let i = pick(
                balance,
                &counter,
                items,
                |h| h,
                None,
                &mut LazyNow::new(clock),
            )
            .unwrap();
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_exactly_even() {
        let items: Vec<Health> = (0..3).map(|_| Health::default()).collect();
        assert_eq!(
            pick_n(Balance::RoundRobin, &items, &Clock::new(), 300),
            [100, 100, 100]
        );
    }

    #[test]
    fn empty_and_single() {
        let clock = Clock::new();
        let counter = AtomicUsize::new(0);
        let none: [Health; 0] = [];
        assert_eq!(
            pick(
                Balance::RoundRobin,
                &counter,
                &none,
                |h| h,
                None,
                &mut LazyNow::new(&clock)
            ),
            None
        );
        let one = [Health::default()];
        assert_eq!(
            pick(
                Balance::LeastOutstanding,
                &counter,
                &one,
                |h| h,
                Some(0),
                &mut LazyNow::new(&clock)
            ),
            Some(0)
        );
    }

    #[test]
    fn skips_ejected_and_avoided() {
        let clock = Clock::new();
        let items: Vec<Health> = (0..3).map(|_| Health::default()).collect();
        eject(&items[1], &items, &clock);
        for balance in [Balance::RoundRobin, Balance::LeastOutstanding] {
            let counts = pick_n(balance, &items, &clock, 300);
            assert_eq!(counts[1], 0, "{balance:?}: ejected endpoint picked");
            assert_eq!(counts[0] + counts[2], 300);
        }
        let counter = AtomicUsize::new(0);
        for _ in 0..50 {
            let i = pick(
                Balance::RoundRobin,
                &counter,
                &items,
                |h| h,
                Some(0),
                &mut LazyNow::new(&clock),
            );
            assert_eq!(i, Some(2));
        }
    }

    #[test]
    fn all_ejected_still_picks() {
        let clock = Clock::new();
        let items: Vec<Health> = (0..2).map(|_| Health::default()).collect();
        eject(&items[0], &items, &clock);
        // The last one in service is never ejected through on_failure...
        let policy = EjectPolicy {
            after: 1,
            cooldown: Duration::from_secs(60),
        };
        let addr = "h:1".parse().unwrap();
        assert!(!items[1].on_failure(&addr, policy, &clock, items.iter()));
        let counts = pick_n(Balance::RoundRobin, &items, &clock, 10);
        assert_eq!(counts, [0, 10]);
        // ...but concurrent ejections can still leave none; then all are used.
        let healthy_elsewhere = Health::default();
        assert!(items[1].on_failure(
            &addr,
            policy,
            &clock,
            items.iter().chain([&healthy_elsewhere])
        ));
        let counts = pick_n(Balance::RoundRobin, &items, &clock, 10);
        assert_eq!(counts, [5, 5]);
        // Avoiding the only usable one falls back to something, never None.
        let counter = AtomicUsize::new(0);
        let i = pick(
            Balance::RoundRobin,
            &counter,
            &items,
            |h| h,
            Some(1),
            &mut LazyNow::new(&clock),
        );
        assert!(i.is_some());
    }

    #[test]
    fn least_outstanding_prefers_the_idle_endpoint() {
        let clock = Clock::new();
        let items: Vec<Health> = (0..2).map(|_| Health::default()).collect();
        (0..5).for_each(|_| items[0].enter());
        let counts = pick_n(Balance::LeastOutstanding, &items, &clock, 100);
        assert_eq!(counts, [0, 100]);
    }
}

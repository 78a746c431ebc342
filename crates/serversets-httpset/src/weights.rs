//! Member weights, prepared once per table so that a pick stays O(1).
//!
//! When every member has the same weight (the common case, and every set
//! without Finagle `vector_` nodes) there is nothing to prepare:
//! [`Weights::Uniform`] keeps the unweighted code path exactly as it was.
//!
//! Otherwise two structures are built when the table is (on a membership or
//! weight change, never per request), both O(n) to build and O(1) to use:
//!
//! - a round-robin *schedule*: member indices, each appearing in proportion
//!   to its weight and spread evenly over the schedule, so consecutive picks
//!   interleave as nginx's smooth weighted round-robin does (which costs
//!   O(n) per pick instead). A pick is one atomic increment and one index.
//!   The schedule has a bounded length ([`SLOTS_PER_MEMBER`] slots per
//!   member, within [`MIN_SLOTS`]..=[`MAX_SLOTS`]), so weights are
//!   quantised to it: each member's share is exact to within half a slot,
//!   and a member of positive weight always gets at least one slot.
//! - an alias table (Vose's method) for drawing a member at random in
//!   proportion to its weight: one random index and one random coin.
//!
//! A member of weight 0 is in neither while another has weight: it gets
//! no traffic. When all have weight 0 they are all equal (`Uniform`).

/// Schedule slots per member: each member's share of a weighted
/// round-robin is exact to within 1/(2 × 64) of an average share.
pub(crate) const SLOTS_PER_MEMBER: usize = 64;
/// The shortest weighted schedule, so small sets quantise finely too.
pub(crate) const MIN_SLOTS: usize = 4096;
/// The longest weighted schedule (4 MiB of `u32`), bounding memory and build
/// time for very large sets.
pub(crate) const MAX_SLOTS: usize = 1 << 20;

/// How the members of one table share traffic.
pub(crate) enum Weights {
    /// All members weigh the same: plain round-robin and uniform draws.
    Uniform,
    /// Members weigh differently.
    Weighted(Weighted),
}

/// The prepared form of unequal weights.
pub(crate) struct Weighted {
    /// Each member's weight, by member index (0 for "no traffic").
    weight: Box<[f64]>,
    /// Round-robin order: member indices in proportion to weight, evenly
    /// interleaved. Never empty (some weight is positive).
    schedule: Box<[u32]>,
    /// Alias table: member `i` is drawn with probability `prob[i]` when
    /// index `i` comes up, and `alias[i]` otherwise.
    prob: Box<[f64]>,
    alias: Box<[u32]>,
}

impl Weights {
    /// Prepares `weights` (one per member, each finite and >= 0).
    pub(crate) fn new(weights: &[f64]) -> Weights {
        let Some(first) = weights.first() else {
            return Weights::Uniform;
        };
        if weights.iter().all(|w| w.to_bits() == first.to_bits()) {
            return Weights::Uniform;
        }
        let weight: Box<[f64]> = weights
            .iter()
            .map(|&w| if w.is_finite() && w > 0.0 { w } else { 0.0 })
            .collect();
        if weight.iter().all(|&w| w == 0.0) {
            return Weights::Uniform;
        }
        Weights::Weighted(
            Weighted {
                schedule: schedule(&weight),
                prob: Box::default(),
                alias: Box::default(),
                weight,
            }
            .with_alias(),
        )
    }
}

impl Weighted {
    /// The weight of member `i`.
    pub(crate) fn weight(&self, i: usize) -> f64 {
        self.weight.get(i).copied().unwrap_or(0.0)
    }

    /// The member at position `k` of the round-robin schedule (wrapping).
    pub(crate) fn scheduled(&self, k: usize) -> usize {
        self.schedule[k % self.schedule.len()] as usize
    }

    /// The schedule's length.
    pub(crate) fn schedule_len(&self) -> usize {
        self.schedule.len()
    }

    /// A member drawn at random in proportion to its weight.
    pub(crate) fn draw(&self) -> usize {
        let i = fastrand::usize(..self.prob.len());
        if fastrand::f64() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }

    /// Builds the alias table (Vose's method, O(n)).
    fn with_alias(mut self) -> Weighted {
        let n = self.weight.len();
        let total: f64 = self.weight.iter().sum();
        let mut prob: Vec<f64> = self.weight.iter().map(|w| w * n as f64 / total).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1 up to rounding error.
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        // Rounding must never hand a member of weight 0 its own slot.
        let heaviest = (0..n)
            .max_by(|&a, &b| self.weight[a].total_cmp(&self.weight[b]))
            .unwrap_or(0);
        for i in 0..n {
            if self.weight[i] == 0.0 {
                prob[i] = 0.0;
                if self.weight[alias[i] as usize] == 0.0 {
                    alias[i] = heaviest as u32;
                }
            }
        }
        self.prob = prob.into();
        self.alias = alias.into();
        self
    }
}

/// The round-robin schedule for `weight` (some positive): slot counts in
/// proportion to weight, then every member's slots spread evenly (its k-th
/// of c slots at (k + ½)/c of the way through), ordered by a counting sort.
fn schedule(weight: &[f64]) -> Box<[u32]> {
    let n = weight.len();
    let total: f64 = weight.iter().sum();
    let target = n
        .saturating_mul(SLOTS_PER_MEMBER)
        .clamp(MIN_SLOTS, MAX_SLOTS) as f64;
    let counts: Vec<usize> = weight
        .iter()
        .map(|&w| {
            if w > 0.0 {
                ((w / total * target).round() as usize).max(1)
            } else {
                0
            }
        })
        .collect();
    let len: usize = counts.iter().sum();
    // Bucket of each slot: floor((k + ½) / c × len).
    let bucket = |c: usize, k: usize| ((2 * k + 1) * len / (2 * c)).min(len - 1);
    let mut starts = vec![0usize; len + 1];
    for &c in &counts {
        for k in 0..c {
            starts[bucket(c, k) + 1] += 1;
        }
    }
    for b in 1..=len {
        starts[b] += starts[b - 1];
    }
    let mut out = vec![0u32; len];
    for (i, &c) in counts.iter().enumerate() {
        for k in 0..c {
            let b = bucket(c, k);
            out[starts[b]] = i as u32;
            starts[b] += 1;
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(w: &[f64]) -> Weighted {
        match Weights::new(w) {
            Weights::Weighted(w) => w,
            Weights::Uniform => panic!("{w:?} should be weighted"),
        }
    }

    #[test]
    fn equal_weights_are_uniform() {
        assert!(matches!(Weights::new(&[]), Weights::Uniform));
        assert!(matches!(Weights::new(&[1.0; 5]), Weights::Uniform));
        assert!(matches!(Weights::new(&[0.0; 5]), Weights::Uniform));
        assert!(matches!(Weights::new(&[2.5, 2.5]), Weights::Uniform));
        assert!(matches!(Weights::new(&[1.0, 2.0]), Weights::Weighted(_)));
    }

    #[test]
    fn schedule_counts_follow_weights_and_interleave() {
        let w = weighted(&[1.0, 2.0, 3.0, 0.0]);
        let len = w.schedule_len();
        let mut counts = [0usize; 4];
        for k in 0..len {
            counts[w.scheduled(k)] += 1;
        }
        assert_eq!(counts[3], 0);
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].into_iter().enumerate() {
            let share = counts[i] as f64 / len as f64;
            assert!((share - want).abs() < 1.0 / len as f64, "{i}: {share}");
        }
        // Smooth: the heaviest never waits more than ceil(len/count)+1 slots.
        let gaps: Vec<usize> = (0..len)
            .filter(|&k| w.scheduled(k) == 2)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|p| p[1] - p[0])
            .collect();
        assert!(gaps.iter().all(|&g| g <= 3), "{gaps:?}");
    }

    #[test]
    fn tiny_weights_keep_a_slot() {
        let w = weighted(&[1e-9, 1.0, 1.0]);
        assert!((0..w.schedule_len()).any(|k| w.scheduled(k) == 0));
    }

    #[test]
    fn draws_follow_weights_and_never_zero() {
        fastrand::seed(7);
        let w = weighted(&[0.0, 1.0, 3.0, 0.0, 4.0]);
        let mut counts = [0usize; 5];
        for _ in 0..80_000 {
            counts[w.draw()] += 1;
        }
        assert_eq!((counts[0], counts[3]), (0, 0));
        for (i, want) in [(1, 10_000.0), (2, 30_000.0), (4, 40_000.0)] {
            let got = counts[i] as f64;
            assert!((got - want).abs() / want < 0.05, "{i}: {got} vs {want}");
        }
    }
}

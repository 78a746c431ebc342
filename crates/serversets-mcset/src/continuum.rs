//! The sorted circle of points behind both rings, and the lookup on it.
//!
//! A lookup reads three things: one entry of a bucket table indexed by the
//! top bits of the hash, the few ring entries in that bucket, and the node.
//! Each ring entry packs its point and owner into one `u64` (point in the
//! high half), so the entry that answers a lookup is one cache line, and a
//! ring for 1000 servers is about 1.5 MB: small enough to stay in a core's
//! L2 cache.
//!
//! Building sorts the points in O(n) and in place: points are dealt into
//! 256 runs by their top byte as they are made, each run (a few hundred
//! points, in cache) is radix-sorted on its low bits, whose last pass also
//! yields the bucket sizes, and the runs are packed together.

/// One ring point and the index of the node owning it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) point: u32,
    pub(crate) owner: u32,
}

/// `point` and `owner` packed as one sortable `u64`.
#[inline]
fn pack(point: u32, owner: u32) -> u64 {
    (u64::from(point) << 32) | u64::from(owner)
}

#[inline]
fn point_of(packed: u64) -> u32 {
    (packed >> 32) as u32
}

#[inline]
fn unpack(packed: u64) -> Entry {
    Entry {
        point: point_of(packed),
        owner: packed as u32,
    }
}

/// Sorted, packed ring entries plus a bucket table over the top bits of the
/// hash that narrows every lookup to a handful of entries.
#[derive(Clone)]
pub(crate) struct Continuum {
    entries: Box<[u64]>,
    /// `starts[b]` is the index of the first entry whose top bits are
    /// `>= b`; one extra item at the end holds `entries.len()`.
    starts: Box<[u32]>,
    /// `hash >> shift` is the bucket of a hash (a shift of 32 puts every
    /// hash in bucket 0).
    shift: u32,
}

impl Default for Continuum {
    fn default() -> Self {
        ContinuumBuilder::with_capacity(0).finish(TieRule::FirstOwner)
    }
}

/// Average entries per bucket is between this and twice this.
const ENTRIES_PER_BUCKET: usize = 4;

/// Collects ring points in any order; [`finish`](Self::finish) sorts them
/// into a [`Continuum`].
///
/// Points are dealt by their top byte into 256 runs as they are made. The
/// runs are fixed regions of one buffer, sized for the expected count with
/// generous headroom (never-written headroom costs no memory); a point whose
/// region is full goes to a spill list, and `finish` then takes a general
/// path. Each region is radix-sorted in cache and the regions are packed
/// together, so the buffer that collected the points becomes the ring.
pub(crate) struct ContinuumBuilder {
    buf: Vec<u64>,
    /// Capacity of each run's region.
    cap: usize,
    lens: [usize; RUNS],
    spill: Vec<u64>,
}

impl ContinuumBuilder {
    /// A builder expecting about `expected` points.
    pub(crate) fn with_capacity(expected: usize) -> ContinuumBuilder {
        // Mean run length plus six standard deviations (runs are about
        // Poisson-distributed) plus a little: overflow is vanishingly rare,
        // and handled anyway.
        let mean = expected / RUNS;
        let cap = mean + 6 * mean.isqrt() + 16;
        ContinuumBuilder {
            // Zeroed u64s come straight from the allocator: pages are only
            // touched where points are written.
            buf: vec![0u64; cap * RUNS],
            cap,
            lens: [0; RUNS],
            spill: Vec::new(),
        }
    }

    /// Adds a point owned by node `owner`.
    #[inline]
    pub(crate) fn push(&mut self, point: u32, owner: u32) {
        let run = (point >> 24) as usize;
        let len = self.lens[run];
        match self.buf.get_mut(run * self.cap + len) {
            Some(slot) if len < self.cap => {
                *slot = pack(point, owner);
                self.lens[run] = len + 1;
            }
            _ => self.spill.push(pack(point, owner)),
        }
    }

    /// Sorts and deduplicates the points and builds the bucket table; when
    /// several owners produced the same point, `ties` says which keeps it.
    pub(crate) fn finish(self, ties: TieRule) -> Continuum {
        let ContinuumBuilder {
            mut buf,
            cap,
            lens,
            spill,
        } = self;
        let total = lens.iter().sum::<usize>() + spill.len();
        let (bits, shift) = bucket_bits(total);
        let mut starts = vec![0u32; (1usize << bits) + 1];
        // Bucket bits below a run's top byte. With some, each run's last
        // sorting pass is on them and its digit counts are the bucket sizes.
        let sub_bits = bits.saturating_sub(8);
        let mut sizes_known = sub_bits > 0 && spill.is_empty();

        let mut entries = if spill.is_empty() {
            let mut scratch = Vec::new();
            let mut packed_to = 0;
            for (r, &len) in lens.iter().enumerate() {
                let from = r * cap;
                // Always in bounds (len <= cap); skipping keeps this total.
                let Some(run) = buf.get_mut(from..from + len) else {
                    sizes_known = false;
                    continue;
                };
                let sizes = sort_run(run, &mut scratch, shift, sub_bits);
                if sizes_known {
                    for (d, &size) in sizes.iter().take(1 << sub_bits).enumerate() {
                        if let Some(start) = starts.get_mut((r << sub_bits) + d + 1) {
                            *start = size as u32;
                        }
                    }
                }
                buf.copy_within(from..from + len, packed_to);
                packed_to += len;
            }
            buf.truncate(packed_to);
            buf
        } else {
            // A run overflowed its region: gather everything and sort it
            // the ordinary way.
            let mut all = Vec::with_capacity(total);
            for (r, &len) in lens.iter().enumerate() {
                all.extend_from_slice(buf.get(r * cap..r * cap + len).unwrap_or(&[]));
            }
            drop(buf);
            all.extend_from_slice(&spill);
            all.sort_unstable();
            all
        };

        let had_duplicates = entries.windows(2).any(|w| point_of(w[0]) == point_of(w[1]));
        if had_duplicates {
            // `dedup_by` hands (later, kept): fold each repeat into the
            // kept one. Rare (two identifiers hashing to one point), so the
            // bucket sizes are simply counted again below.
            entries.dedup_by(|later, kept| {
                let same = point_of(*later) == point_of(*kept);
                if same {
                    // Same point in the high half: comparing the packed
                    // values compares the owners.
                    *kept = match ties {
                        TieRule::FirstOwner => (*kept).min(*later),
                        TieRule::LastOwner => (*kept).max(*later),
                    };
                }
                same
            });
        }
        if !sizes_known || had_duplicates {
            starts.fill(0);
            for &e in &entries {
                let bucket = (u64::from(point_of(e)) >> shift) as usize;
                if let Some(count) = starts.get_mut(bucket + 1) {
                    *count += 1;
                }
            }
        }
        // Sizes one slot ahead, summed: starts[b] becomes the number of
        // entries in the buckets before b.
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        Continuum {
            entries: entries.into_boxed_slice(),
            starts: starts.into_boxed_slice(),
            shift,
        }
    }
}

/// Which owner keeps a point that several owners produced.
///
/// Callers number owners in a canonical order (identifier, then address),
/// so either rule gives a winner that never depends on the order servers
/// were announced in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TieRule {
    /// The smallest owner index keeps the point (ketama: neither Finagle nor
    /// libmemcached defines a winner, so the first node in order keeps it).
    FirstOwner,
    /// The largest owner index keeps the point: go.serversets adds its
    /// sorted endpoints in order and groupcache's map keeps the last write,
    /// so the larger endpoint string wins.
    LastOwner,
}

/// Runs the points are first grouped into, by their top byte.
const RUNS: usize = 256;

/// Widest digit of a counting pass: 512 counters stay in L1.
const MAX_DIGIT_BITS: u32 = 9;

/// Sorts one run (all its points share the top byte) in place, with the
/// help of `scratch`; returns the run's bucket sizes when `sub_bits > 0`.
///
/// With bucket bits below the top byte, two counting passes sort the run
/// on the 9 bits below the buckets and then on the bucket bits (whose digit
/// counts are the bucket sizes); only points agreeing on all bits above the
/// lowest few can still be out of order, which is rare, so an insertion
/// pass finishes in about one look per point. Short runs of small rings are
/// simply sorted.
fn sort_run(
    run: &mut [u64],
    scratch: &mut Vec<u64>,
    shift: u32,
    sub_bits: u32,
) -> [usize; 1 << MAX_DIGIT_BITS] {
    let mut sizes = [0usize; 1 << MAX_DIGIT_BITS];
    if sub_bits == 0 {
        run.sort_unstable();
        return sizes;
    }
    let below = shift.min(MAX_DIGIT_BITS);
    scratch.clear();
    scratch.resize(run.len(), 0);
    counting_pass(run, scratch, shift - below, below);
    sizes = counting_pass(scratch, run, shift, sub_bits.min(MAX_DIGIT_BITS));
    insertion_pass(run);
    sizes
}

/// Insertion sort: linear on input that is already almost sorted.
fn insertion_pass(run: &mut [u64]) {
    for i in 1..run.len() {
        let e = run[i];
        let mut j = i;
        while j > 0 && run[j - 1] > e {
            run[j] = run[j - 1];
            j -= 1;
        }
        run[j] = e;
    }
}

/// One stable counting-sort pass from `src` into `dst` (same length) on
/// the `width` (at most 9) bits of the point starting at bit `low`; returns
/// how many entries got each digit.
fn counting_pass(
    src: &[u64],
    dst: &mut [u64],
    low: u32,
    width: u32,
) -> [usize; 1 << MAX_DIGIT_BITS] {
    let mask = (1u64 << width.min(MAX_DIGIT_BITS)) - 1;
    let digit = |e: u64| (((e >> 32) >> low) & mask) as usize;
    let mut sizes = [0usize; 1 << MAX_DIGIT_BITS];
    for &e in src {
        sizes[digit(e)] += 1;
    }
    let mut next = [0usize; 1 << MAX_DIGIT_BITS];
    let mut sum = 0;
    for (slot, &n) in next.iter_mut().zip(&sizes) {
        *slot = sum;
        sum += n;
    }
    for &e in src {
        let slot = &mut next[digit(e)];
        if let Some(out) = dst.get_mut(*slot) {
            *out = e;
        }
        *slot += 1;
    }
    sizes
}

/// Most bucket bits: 8 for the run plus one counting-pass digit, so a
/// run's last pass always covers all its bucket bits.
const MAX_BUCKET_BITS: u32 = 8 + MAX_DIGIT_BITS;

/// Bucket-table size for `len` points: `(bits, shift)`, with the largest
/// power of two <= len / ENTRIES_PER_BUCKET buckets, at most
/// 2^MAX_BUCKET_BITS (past a million points buckets simply fill up more).
fn bucket_bits(len: usize) -> (u32, u32) {
    let wanted = len / ENTRIES_PER_BUCKET;
    let bits = if wanted < 2 {
        0
    } else {
        (usize::BITS - 1 - wanted.leading_zeros()).min(MAX_BUCKET_BITS)
    };
    (bits, 32 - bits)
}

impl Continuum {
    /// Builds the circle from entries packed with [`pack`], in any order.
    #[cfg(test)]
    pub(crate) fn from_packed(packed: Vec<u64>) -> Continuum {
        Continuum::from_packed_with(packed, TieRule::FirstOwner)
    }

    /// Like [`from_packed`](Self::from_packed), with the given tie rule.
    #[cfg(test)]
    pub(crate) fn from_packed_with(packed: Vec<u64>, ties: TieRule) -> Continuum {
        let mut builder = ContinuumBuilder::with_capacity(packed.len());
        for e in packed {
            builder.push(point_of(e), e as u32);
        }
        builder.finish(ties)
    }

    /// Number of points on the circle.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries in ascending point order.
    pub(crate) fn entries(&self) -> impl ExactSizeIterator<Item = Entry> + '_ {
        self.entries.iter().map(|&e| unpack(e))
    }

    /// The entry owning `hash`: the first point `>= hash`, wrapping to the
    /// first entry past the last one; `None` on an empty circle.
    ///
    /// The bucket table gives the few entries sharing the hash's top bits;
    /// a binary search over just those finishes. Every point in an earlier
    /// bucket is smaller than the hash and every point in a later one
    /// larger, so the answer is in the bucket or is the first entry after.
    #[inline]
    pub(crate) fn find(&self, hash: u32) -> Option<Entry> {
        let bucket = (u64::from(hash) >> self.shift) as usize;
        let lo = *self.starts.get(bucket)? as usize;
        let hi = *self.starts.get(bucket + 1)? as usize;
        let in_bucket = self.entries.get(lo..hi)?;
        let at = lo + in_bucket.partition_point(|&e| point_of(e) < hash);
        // Past the last point: wrap around to the first (None when empty).
        self.entries
            .get(at)
            .or_else(|| self.entries.first())
            .map(|&e| unpack(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(u32, u32)]) -> Vec<u64> {
        pairs
            .iter()
            .map(|&(point, owner)| pack(point, owner))
            .collect()
    }

    fn points(c: &Continuum) -> Vec<u32> {
        c.entries().map(|e| e.point).collect()
    }

    fn entry_pairs(c: &Continuum) -> Vec<(u32, u32)> {
        c.entries().map(|e| (e.point, e.owner)).collect()
    }

    #[test]
    fn lookup_is_first_point_at_or_after_hash_with_wraparound() {
        let c = Continuum::from_packed(entries(&[(30, 0), (10, 1), (20, 2), (u32::MAX, 3)]));
        assert_eq!(points(&c), [10, 20, 30, u32::MAX]);
        let owner = |h| c.find(h).unwrap().owner;
        assert_eq!(owner(0), 1);
        assert_eq!(owner(10), 1);
        assert_eq!(owner(11), 2);
        assert_eq!(owner(30), 0);
        assert_eq!(owner(31), 3);
        assert_eq!(owner(u32::MAX), 3);

        let c = Continuum::from_packed(entries(&[(10, 0), (20, 1)]));
        assert_eq!(
            c.find(21),
            Some(Entry {
                point: 10,
                owner: 0
            }),
            "wraps"
        );
        assert!(Continuum::default().find(5).is_none());
    }

    #[test]
    fn lookup_agrees_with_partition_point_on_every_size() {
        let mut rng = fastrand::Rng::with_seed(7);
        for n in (1..200usize).chain([255, 256, 257, 1000, 5000, 40_000]) {
            let pairs: Vec<(u32, u32)> = (0..n).map(|i| (rng.u32(..), i as u32)).collect();
            let c = Continuum::from_packed(entries(&pairs));
            let pts = points(&c);
            let all: Vec<Entry> = c.entries().collect();
            for _ in 0..500 {
                let h = rng.u32(..);
                let want = all[pts.partition_point(|&p| p < h) % c.len()];
                assert_eq!(c.find(h), Some(want), "n={n} h={h}");
            }
            for e in c.entries() {
                assert_eq!(c.find(e.point), Some(e));
                if e.point > 0 {
                    let below = e.point - 1;
                    let want = if pts.binary_search(&below).is_ok() {
                        below
                    } else {
                        e.point
                    };
                    assert_eq!(c.find(below).map(|f| f.point), Some(want));
                }
            }
        }
    }

    #[test]
    fn equal_points_go_to_the_smallest_owner_whatever_the_input_order() {
        let a = Continuum::from_packed(entries(&[(5, 2), (5, 0), (5, 1), (9, 3)]));
        let b = Continuum::from_packed(entries(&[(9, 3), (5, 1), (5, 2), (5, 0)]));
        for c in [a, b] {
            assert_eq!(entry_pairs(&c), [(5, 0), (9, 3)]);
        }
    }

    #[test]
    fn last_owner_rule_gives_equal_points_to_the_largest_owner() {
        let a = Continuum::from_packed_with(
            entries(&[(5, 2), (5, 0), (5, 1), (9, 3)]),
            TieRule::LastOwner,
        );
        let b = Continuum::from_packed_with(
            entries(&[(9, 3), (5, 1), (5, 2), (5, 0)]),
            TieRule::LastOwner,
        );
        for c in [a, b] {
            assert_eq!(entry_pairs(&c), [(5, 2), (9, 3)]);
        }
    }

    #[test]
    fn ties_resolve_to_the_smallest_owner_on_large_rings_too() {
        // Enough entries to take the radix path, with many collisions and
        // the owners shuffled.
        let mut rng = fastrand::Rng::with_seed(11);
        let mut pairs: Vec<(u32, u32)> = (0..6000)
            .map(|i| (rng.u32(0..500) * 8_000_000, i))
            .collect();
        rng.shuffle(&mut pairs);
        let c = Continuum::from_packed(entries(&pairs));
        let mut want = std::collections::BTreeMap::new();
        for &(p, o) in &pairs {
            let e = want.entry(p).or_insert(o);
            *e = (*e).min(o);
        }
        let want: Vec<(u32, u32)> = want.into_iter().collect();
        assert_eq!(entry_pairs(&c), want);
    }

    #[test]
    fn an_underestimated_count_spills_and_still_sorts() {
        let mut rng = fastrand::Rng::with_seed(3);
        let pairs: Vec<(u32, u32)> = (0..20_000).map(|i| (rng.u32(..), i)).collect();
        let mut small = ContinuumBuilder::with_capacity(10);
        for &(p, o) in &pairs {
            small.push(p, o);
        }
        assert!(
            !small.spill.is_empty(),
            "the test must exercise the spill path"
        );
        let spilled = small.finish(TieRule::FirstOwner);
        let exact = Continuum::from_packed(entries(&pairs));
        assert_eq!(entry_pairs(&spilled), entry_pairs(&exact));
        for _ in 0..2000 {
            let h = rng.u32(..);
            assert_eq!(spilled.find(h), exact.find(h));
        }
    }

    #[test]
    fn rings_past_a_million_points_cap_the_bucket_table() {
        let n = 1_100_000u32;
        let mut rng = fastrand::Rng::with_seed(5);
        let pairs: Vec<(u32, u32)> = (0..n).map(|i| (rng.u32(..), i)).collect();
        let c = Continuum::from_packed(entries(&pairs));
        assert_eq!(32 - c.shift, MAX_BUCKET_BITS);
        let mut want: Vec<u64> = entries(&pairs);
        want.sort_unstable();
        want.dedup_by(|later, kept| point_of(*later) == point_of(*kept));
        assert!(c
            .entries()
            .map(|e| pack(e.point, e.owner))
            .eq(want.iter().copied()));
        let pts = points(&c);
        for _ in 0..2000 {
            let h = rng.u32(..);
            let want = pts.partition_point(|&p| p < h) % pts.len();
            assert_eq!(c.find(h).map(|e| e.point), Some(pts[want]));
        }
    }
}

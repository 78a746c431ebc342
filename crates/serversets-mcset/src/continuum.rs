//! The sorted circle of points behind both rings, and the lookup on it.
//!
//! A lookup reads three things: one entry of a bucket table indexed by the
//! top bits of the hash, the few ring entries in that bucket, and the node.
//! Each ring entry packs its point and owner into one `u64` (point in the
//! high half), so the entry that answers a lookup is one cache line, and a
//! ring for 1000 servers is about 1.5 MB: small enough to stay in a core's
//! L2 cache.
//!
//! Building collects the packed points, sorts them with the standard
//! library's `sort_unstable`, folds repeated points by the tie rule and
//! counts the buckets. (A hand-written radix sort saved about 1 ms of a
//! 6-10 ms build at 1000 servers and nothing at 100; a build runs off the
//! request path, on a membership change, so the plain sort is kept.)

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
pub(crate) struct ContinuumBuilder {
    entries: Vec<u64>,
}

impl ContinuumBuilder {
    /// A builder expecting about `expected` points (more may be pushed).
    pub(crate) fn with_capacity(expected: usize) -> ContinuumBuilder {
        ContinuumBuilder {
            entries: Vec::with_capacity(expected),
        }
    }

    /// Adds a point owned by node `owner`.
    #[inline]
    pub(crate) fn push(&mut self, point: u32, owner: u32) {
        self.entries.push(pack(point, owner));
    }

    /// Sorts and deduplicates the points and builds the bucket table; when
    /// several owners produced the same point, `ties` says which keeps it.
    pub(crate) fn finish(self, ties: TieRule) -> Continuum {
        let mut entries = self.entries;
        // Packed with the point in the high half: sorting the packed values
        // sorts by point, then owner.
        entries.sort_unstable();
        // `dedup_by` hands (later, kept): fold each repeat into the kept
        // one. Rare (two identifiers hashing to one point).
        entries.dedup_by(|later, kept| {
            let same = point_of(*later) == point_of(*kept);
            if same {
                // Same point in the high half: comparing the packed values
                // compares the owners.
                *kept = match ties {
                    TieRule::FirstOwner => (*kept).min(*later),
                    TieRule::LastOwner => (*kept).max(*later),
                };
            }
            same
        });
        let (bits, shift) = bucket_bits(entries.len());
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for &e in &entries {
            let bucket = (u64::from(point_of(e)) >> shift) as usize;
            if let Some(count) = starts.get_mut(bucket + 1) {
                *count += 1;
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
/// so either rule gives a winner that never depends on the order members
/// were announced in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TieRule {
    /// The smallest owner index keeps the point (ketama: neither Finagle nor
    /// libmemcached defines a winner, so the first node in order keeps it).
    FirstOwner,
    /// The largest owner index keeps the point: go.serversets adds its
    /// sorted members in order and groupcache's map keeps the last write,
    /// so the larger `host:port` string wins.
    LastOwner,
}

/// Most bucket bits: past a million points buckets simply fill up more.
const MAX_BUCKET_BITS: u32 = 17;

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
        // Many entries (a bucket table of 1024 buckets), with many
        // collisions and the owners shuffled.
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
    fn an_underestimated_count_still_sorts() {
        let mut rng = fastrand::Rng::with_seed(3);
        let pairs: Vec<(u32, u32)> = (0..20_000).map(|i| (rng.u32(..), i)).collect();
        let mut small = ContinuumBuilder::with_capacity(10);
        for &(p, o) in &pairs {
            small.push(p, o);
        }
        assert!(small.entries.len() > 10 * 1000, "far past the estimate");
        let grown = small.finish(TieRule::FirstOwner);
        let exact = Continuum::from_packed(entries(&pairs));
        assert_eq!(entry_pairs(&grown), entry_pairs(&exact));
        for _ in 0..2000 {
            let h = rng.u32(..);
            assert_eq!(grown.find(h), exact.find(h));
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

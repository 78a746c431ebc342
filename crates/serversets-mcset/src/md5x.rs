//! MD5 of many short messages at once, for building ketama rings fast.
//!
//! A ring for 1000 servers needs 40,000 MD5 digests of strings like
//! `10.0.3.7-12`. Each fits in one 64-byte block, and the digests are
//! independent, so this computes [`LANES`] of them side by side: every MD5
//! step is one loop over the lanes doing the same arithmetic, which the
//! compiler vectorises (SSE2 on any x86-64; checked there) with no
//! `unsafe` and no platform code. That is about three times faster than
//! hashing the messages one by one. Messages longer than one block can hold
//! fall back to the `md5` crate. The algorithm is RFC 1321; the tests check
//! every result against the `md5` crate.

/// Messages hashed together. Wide enough that each step's lane loop is
/// vectorised rather than unrolled into scalar code; the working set
/// (5 KiB) stays in L1.
pub(crate) const LANES: usize = 64;

/// Longest message that fits one block with its padding and length.
pub(crate) const MAX_SINGLE_BLOCK: usize = 55;

type Lane = [u32; LANES];

/// Per-step additive constants: `floor(|sin(i + 1)| * 2^32)`.
const T: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Initial state A, B, C, D.
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Which message word step `i` reads.
const fn word_index(i: usize) -> usize {
    match i / 16 {
        0 => i,
        1 => (5 * i + 1) % 16,
        2 => (3 * i + 5) % 16,
        _ => (7 * i) % 16,
    }
}

const fn word_indices() -> [usize; 64] {
    let mut out = [0; 64];
    let mut i = 0;
    while i < 64 {
        out[i] = word_index(i);
        i += 1;
    }
    out
}

const K: [usize; 64] = word_indices();

/// One MD5 step on every lane: `a = b + rotl(a + fun(b, c, d) + x + t, s)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step<F: Fn(u32, u32, u32) -> u32>(
    a: &mut Lane,
    b: &Lane,
    c: &Lane,
    d: &Lane,
    x: &Lane,
    t: u32,
    s: u32,
    fun: &F,
) {
    for l in 0..LANES {
        let sum = a[l]
            .wrapping_add(fun(b[l], c[l], d[l]))
            .wrapping_add(x[l])
            .wrapping_add(t);
        a[l] = b[l].wrapping_add(sum.rotate_left(s));
    }
}

/// One round: 16 steps with one mixing function and its four rotations.
#[inline(always)]
fn round<F: Fn(u32, u32, u32) -> u32>(
    [a, b, c, d]: &mut [Lane; 4],
    x: &[Lane; 16],
    first: usize,
    shifts: [u32; 4],
    fun: F,
) {
    let mut i = first;
    while i < first + 16 {
        step(a, b, c, d, &x[K[i]], T[i], shifts[0], &fun);
        step(d, a, b, c, &x[K[i + 1]], T[i + 1], shifts[1], &fun);
        step(c, d, a, b, &x[K[i + 2]], T[i + 2], shifts[2], &fun);
        step(b, c, d, a, &x[K[i + 3]], T[i + 3], shifts[3], &fun);
        i += 4;
    }
}

/// The MD5 compression of one block per lane, from the initial state.
/// `x[w][lane]` is little-endian word `w` of that lane's block. Leaves the
/// final state words A, B, C, D per lane in `state`: word `k` of a lane is
/// bytes `4k..4k + 4` of its digest read little-endian.
fn compress(x: &[Lane; 16], state: &mut [Lane; 4]) {
    for (word, init) in state.iter_mut().zip(INIT) {
        *word = [init; LANES];
    }
    round(state, x, 0, [7, 12, 17, 22], |b, c, d| d ^ (b & (c ^ d)));
    round(state, x, 16, [5, 9, 14, 20], |b, c, d| c ^ (d & (b ^ c)));
    round(state, x, 32, [4, 11, 16, 23], |b, c, d| b ^ c ^ d);
    round(state, x, 48, [6, 10, 15, 21], |b, c, d| c ^ (b | !d));
    for (word, init) in state.iter_mut().zip(INIT) {
        for v in word.iter_mut() {
            *v = v.wrapping_add(init);
        }
    }
}

/// Collects messages and hands each one's four digest words to a sink, in
/// batches of [`LANES`]. Results for single-block messages arrive when a
/// batch fills or on [`flush`](Self::flush); longer messages are hashed at
/// once. Each result carries the tag given with its message.
pub(crate) struct Md5Batch<S: FnMut(u32, [u32; 4])> {
    words: Box<[Lane; 16]>,
    state: Box<[Lane; 4]>,
    tags: [u32; LANES],
    filled: usize,
    sink: S,
}

impl<S: FnMut(u32, [u32; 4])> Md5Batch<S> {
    pub(crate) fn new(sink: S) -> Self {
        Md5Batch {
            words: Box::new([[0; LANES]; 16]),
            state: Box::new([[0; LANES]; 4]),
            tags: [0; LANES],
            filled: 0,
            sink,
        }
    }

    /// Queues `message`, to be reported to the sink with `tag`.
    pub(crate) fn push(&mut self, message: &[u8], tag: u32) {
        if message.len() > MAX_SINGLE_BLOCK {
            let digest = md5::compute(message).0;
            let word = |k: usize| {
                u32::from_le_bytes([
                    digest[4 * k],
                    digest[4 * k + 1],
                    digest[4 * k + 2],
                    digest[4 * k + 3],
                ])
            };
            (self.sink)(tag, [word(0), word(1), word(2), word(3)]);
            return;
        }
        // Lay the padded block out as 16 little-endian words, straight into
        // this lane: message words, then the 0x80 marker after the last
        // byte, zeros, and the bit length in words 14 and 15.
        let lane = self.filled;
        let words = &mut self.words;
        let mut chunks = message.chunks_exact(4);
        let mut w = 0;
        for chunk in &mut chunks {
            words[w][lane] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            w += 1;
        }
        let tail = chunks.remainder();
        let mut last = 0x80u32 << (8 * tail.len());
        for (i, &byte) in tail.iter().enumerate() {
            last |= u32::from(byte) << (8 * i);
        }
        words[w][lane] = last;
        for word in &mut words[w + 1..14] {
            word[lane] = 0;
        }
        let bits = (message.len() as u64) * 8;
        words[14][lane] = bits as u32;
        words[15][lane] = (bits >> 32) as u32;
        self.tags[lane] = tag;
        self.filled += 1;
        if self.filled == LANES {
            self.flush();
        }
    }

    /// Hashes whatever is queued.
    pub(crate) fn flush(&mut self) {
        if self.filled == 0 {
            return;
        }
        compress(&self.words, &mut self.state);
        let state = &self.state;
        for (lane, &tag) in self.tags[..self.filled].iter().enumerate() {
            let words = [
                state[0][lane],
                state[1][lane],
                state[2][lane],
                state[3][lane],
            ];
            (self.sink)(tag, words);
        }
        self.filled = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_the_sine_table() {
        for (i, &t) in T.iter().enumerate() {
            let want = ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0).floor() as u32;
            assert_eq!(t, want, "T[{i}]");
        }
    }

    #[test]
    fn every_length_and_lane_count_matches_the_md5_crate() {
        let mut messages: Vec<Vec<u8>> = Vec::new();
        for len in 0..=80 {
            messages.push((0..len).map(|i| (i * 7 + len) as u8).collect());
        }
        for i in 0..37 {
            messages.push(format!("10.0.1.{i}-{}", i * 13).into_bytes());
        }
        let mut got = Vec::new();
        {
            let mut batch = Md5Batch::new(|tag, words| got.push((tag, words)));
            for (tag, m) in messages.iter().enumerate() {
                batch.push(m, tag as u32);
            }
            batch.flush();
        }
        got.sort_by_key(|(tag, _)| *tag);
        assert_eq!(got.len(), messages.len());
        for ((tag, words), m) in got.iter().zip(&messages) {
            let d = md5::compute(m).0;
            let want: Vec<u32> = d
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(&words[..], &want[..], "message {tag} ({} bytes)", m.len());
        }
    }
}

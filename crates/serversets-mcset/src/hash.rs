//! The two hash functions the rings are built from.
//!
//! Ketama (Finagle, libmemcached) hashes with MD5 and reads little-endian
//! 32-bit words out of the digest; go.serversets' mcset ring uses 32-bit
//! MurmurHash3 with seed 0. Both are written so the per-key path needs no
//! allocation: the MD5 state lives on the stack.

/// The 16-byte MD5 digest of `data`.
#[inline]
pub(crate) fn md5_digest(data: &[u8]) -> [u8; 16] {
    md5::compute(data).0
}

/// The little-endian `u32` at `digest[4 * word .. 4 * word + 4]`.
#[inline]
pub(crate) fn le_word(digest: &[u8; 16], word: usize) -> u32 {
    let at = 4 * word;
    u32::from_le_bytes([digest[at], digest[at + 1], digest[at + 2], digest[at + 3]])
}

/// Ketama key hash: the first four bytes of `md5(key)`, little-endian.
#[inline]
pub(crate) fn ketama_key_hash(key: &[u8]) -> u32 {
    le_word(&md5_digest(key), 0)
}

/// go.serversets mcset key hash: `murmur3_32(key)` with seed 0.
#[inline]
pub(crate) fn go_key_hash(key: &[u8]) -> u32 {
    murmur3_32(key, 0)
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline]
fn mix_block(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

/// MurmurHash3, x86 32-bit variant (what Go's `mmh3.Sum32` and most
/// "murmur3 32" libraries compute), over `data` with `seed`.
///
/// Written here rather than pulled in: it is twenty lines, and the crates
/// that offer it take a `Read` and return `io::Result`, which costs more than
/// the hash on short keys.
pub(crate) fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        h ^= mix_block(k);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= mix_block(k);
    }
    // The length is mixed in modulo 2^32, as the reference does.
    h ^= data.len() as u32;
    fmix32(h)
}

#[inline]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_published_vectors() {
        // Reference values for MurmurHash3_x86_32 (SMHasher and the
        // vectors most ports test against).
        let cases: [(&[u8], u32, u32); 10] = [
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"", 0xffff_ffff, 0x81f1_6f39),
            (b"\0\0\0\0", 0, 0x2362_f9de),
            (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
            (b"\x21\x43\x65\x87", 0, 0xf55b_516b),
            (b"\x21\x43\x65", 0, 0x7e4a_8634),
            (b"\x21\x43", 0, 0xa0f7_b07a),
            (b"\x21", 0, 0x7266_1cf4),
            (b"aaaa", 0x9747_b28c, 0x5a97_808a),
        ];
        for (data, seed, want) in cases {
            assert_eq!(murmur3_32(data, seed), want, "{data:?} seed {seed:#x}");
        }
        assert_eq!(murmur3_32(b"Hello, world!", 0x9747_b28c), 0x2488_4cba);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    #[test]
    fn ketama_hash_is_first_le_word_of_md5() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(ketama_key_hash(b""), 0xd98c_1dd4);
        let d = md5_digest(b"");
        assert_eq!(le_word(&d, 3), 0x7e42_f8ec);
        // md5("abc") = 900150983cd24fb0d6963f7d28e17f72
        assert_eq!(ketama_key_hash(b"abc"), 0x9850_0190);
    }
}

//! The two hash functions the rings are built from.
//!
//! Ketama (Finagle, libmemcached) hashes with MD5 and reads little-endian
//! 32-bit words out of the digest; go.serversets' mcset ring uses 32-bit
//! MurmurHash3 with seed 0. Both come from crates (`md5`, `mur3`) and need
//! no allocation per key: the hash state lives on the stack.

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

/// MurmurHash3, x86 32-bit variant (what Go's `mmh3.Sum32` and most
/// "murmur3 32" libraries compute), over `data` with `seed`: the `mur3`
/// crate's, which takes a slice and costs what a hand-written one does on
/// short keys (the `murmur3` crate reads through `io::Read` and costs about
/// 2.5 times as much per key).
#[inline]
pub(crate) fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    mur3::murmurhash3_x86_32(data, seed)
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

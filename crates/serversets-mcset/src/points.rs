//! Ring points for each scheme: which hashes a node owns.
//!
//! Ketama: a node of weight `w` gets `floor(w / W * N * 40 + 1e-10)`
//! digests `md5(identifier + "-" + i)`, each giving four little-endian u32
//! points. go-mcset: 150 points `murmur3_32(decimal(i) + "host:port")`.

use crate::continuum::{Continuum, ContinuumBuilder, TieRule};
use crate::hash::{le_word, md5_digest, murmur3_32};

/// Ketama digests per node at equal weight: 160 points / 4 per digest.
const KETAMA_DIGESTS_PER_SERVER: f64 = 40.0;
/// Finagle's fudge against floating-point error in the digest count.
const KETAMA_FUDGE: f64 = 1e-10;
/// Points per node on go.serversets' ring (groupcache `consistenthash`).
const GO_REPLICAS: u32 = 150;

/// One node that owns points: its identifier, weight and index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) identifier: &'a str,
    pub(crate) weight: f64,
    pub(crate) owner: u32,
}

/// Number of ketama digests (4 points each) for a node: Finagle's
/// `(w / W * N * 40 + 1e-10).toInt`, evaluated in the same order so
/// floating-point rounding matches.
pub(crate) fn ketama_digests(weight: f64, total_weight: f64, node_count: usize) -> u32 {
    let share = weight / total_weight;
    let digests = share * node_count as f64 * KETAMA_DIGESTS_PER_SERVER + KETAMA_FUDGE;
    // At most 40 * node_count; the float-to-int cast saturates anyway.
    digests.floor() as u32
}

/// The ketama ring of `sources`.
pub(crate) fn ketama_continuum(sources: &[Source<'_>]) -> Continuum {
    let total_weight: f64 = sources.iter().map(|s| s.weight).sum();
    let counts: Vec<u32> = if total_weight.is_finite() {
        sources
            .iter()
            .map(|s| ketama_digests(s.weight, total_weight, sources.len()))
            .collect()
    } else {
        // Weights are bounded when parsed; should a sum still overflow,
        // equal weights beat a ring with no points at all.
        tracing::warn!("ketama weights overflow; treating every node as weight 1");
        let n = sources.len();
        vec![ketama_digests(1.0, n as f64, n); n]
    };
    let total: usize = counts.iter().map(|&d| d as usize * 4).sum();
    let mut ring = ContinuumBuilder::with_capacity(total);
    let mut buf = Vec::with_capacity(64);
    for (source, &count) in sources.iter().zip(&counts) {
        buf.clear();
        buf.extend_from_slice(source.identifier.as_bytes());
        buf.push(b'-');
        let prefix = buf.len();
        for i in 0..count {
            buf.truncate(prefix);
            push_decimal(&mut buf, i);
            let digest = md5_digest(&buf);
            for word in 0..4 {
                ring.push(le_word(&digest, word), source.owner);
            }
        }
    }
    ring.finish(TieRule::FirstOwner)
}

/// The go-mcset ring of `sources`.
pub(crate) fn go_continuum(sources: &[Source<'_>]) -> Continuum {
    let mut ring = ContinuumBuilder::with_capacity(sources.len() * GO_REPLICAS as usize);
    let mut buf = Vec::with_capacity(64);
    for source in sources {
        for i in 0..GO_REPLICAS {
            buf.clear();
            push_decimal(&mut buf, i);
            buf.extend_from_slice(source.identifier.as_bytes());
            ring.push(murmur3_32(&buf, 0), source.owner);
        }
    }
    // Owners are numbered in byte order of `host:port`, the order Go sorts
    // and adds them in; its last write (the larger `host:port`) wins a shared
    // point.
    ring.finish(TieRule::LastOwner)
}

/// Appends the decimal form of `n` (what `i.to_string()` gives), byte by
/// byte: a slice copy would call `memcpy` for one or two bytes.
fn push_decimal(buf: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        buf.push(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_counts_follow_finagles_formula() {
        assert_eq!(ketama_digests(1.0, 3.0, 3), 40);
        assert_eq!(ketama_digests(1.0, 49.0, 49), 40);
        // The vectors' ring: total weight 4300 over 8 nodes.
        assert_eq!(ketama_digests(600.0, 4300.0, 8), 44);
        assert_eq!(ketama_digests(100.0, 4300.0, 8), 7);
        assert_eq!(ketama_digests(1.0, 1.0, 1), 40);
        assert_eq!(ketama_digests(1.0, 1000.0, 2), 0);
    }

    #[test]
    fn push_decimal_matches_to_string() {
        for n in [0u32, 1, 9, 10, 39, 149, 1000, u32::MAX] {
            let mut buf = b"x-".to_vec();
            push_decimal(&mut buf, n);
            assert_eq!(buf, format!("x-{n}").into_bytes());
        }
    }

    #[test]
    fn ketama_points_are_the_md5_words_of_identifier_dash_index() {
        let sources = [
            Source {
                identifier: "10.0.0.1",
                weight: 1.0,
                owner: 0,
            },
            Source {
                identifier: "a-much-longer-host-name-that-needs-two-md5-blocks.example.com:11212",
                weight: 3.0,
                owner: 1,
            },
        ];
        let got: Vec<(u32, u32)> = ketama_continuum(&sources)
            .entries()
            .map(|e| (e.point, e.owner))
            .collect();
        let mut want = Vec::new();
        for (source, digests) in sources.iter().zip([20u32, 60]) {
            for i in 0..digests {
                let d = md5::compute(format!("{}-{i}", source.identifier)).0;
                for w in d.chunks_exact(4) {
                    let point = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                    want.push((point, source.owner));
                }
            }
        }
        want.sort_unstable();
        assert_eq!(got, want);
    }
}

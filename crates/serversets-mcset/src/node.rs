//! How a member is named as a ring node and how much of the ring it owns.

use std::fmt;
use std::str::FromStr;

use serversets_core::{HostPort, Member};

use crate::RingError;

/// memcached's default port: ketama names servers on it by host alone.
pub(crate) const MEMCACHED_PORT: u16 = 11211;

/// Which string a member hashes under on a ketama ring.
///
/// The identifier decides every point a node owns, so two clients agree on
/// where a key lives only if they name nodes the same way.
///
/// * [`NodeIdentity::Finagle`] (the default) is Finagle's memcached client:
///   the member's shard id when it has one, else the address rule below.
/// * [`NodeIdentity::HostPort`] is libmemcached's address rule alone:
///   `host` when the port is 11211, else `host:port` (IPv6 hosts are not
///   bracketed). Shards are ignored.
///
/// Finagle's own announcer writes `shard: 0` on every member it registers.
/// Under the Finagle rule such members all hash as `"0"` and collapse into a
/// single ring node, exactly as they would in Finagle; pools announced that
/// way should use [`NodeIdentity::HostPort`].
///
/// The go.serversets ring ignores this setting: it always hashes `host:port`.
///
/// ```
/// use serversets_core::{HostPort, Member};
/// use serversets_mcset::NodeIdentity;
///
/// let plain = Member::from_addr(HostPort::new("10.0.0.1", 11211)?);
/// let other_port = Member::from_addr(HostPort::new("10.0.0.1", 11212)?);
/// let sharded = Member::builder("member_0000000001", HostPort::new("10.0.0.2", 11211)?)
///     .shard(7)
///     .build();
///
/// assert_eq!(NodeIdentity::Finagle.identifier(&plain), "10.0.0.1");
/// assert_eq!(NodeIdentity::Finagle.identifier(&other_port), "10.0.0.1:11212");
/// assert_eq!(NodeIdentity::Finagle.identifier(&sharded), "7");
/// assert_eq!(NodeIdentity::HostPort.identifier(&sharded), "10.0.0.2");
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NodeIdentity {
    /// The shard id when the member has one, else `host` (port 11211) or
    /// `host:port`: Finagle's memcached client.
    #[default]
    Finagle,
    /// `host` (port 11211) or `host:port`, ignoring shards: libmemcached.
    HostPort,
}

impl NodeIdentity {
    /// The ketama identifier of `member` under this rule (see the type's
    /// example).
    pub fn identifier(self, member: &Member) -> String {
        match (self, member.shard()) {
            (NodeIdentity::Finagle, Some(shard)) => shard.to_string(),
            _ => address_identifier(member.addr()),
        }
    }
}

/// libmemcached's name for an address: `host` on port 11211, else
/// `host:port`, with no brackets around IPv6 hosts.
pub(crate) fn address_identifier(addr: &HostPort) -> String {
    if addr.port() == MEMCACHED_PORT {
        addr.host().to_string()
    } else {
        format!("{}:{}", addr.host(), addr.port())
    }
}

/// Reads a member's weight from its `weight` metadata entry.
///
/// Absent means 1. A value that is not a finite number greater than zero is
/// reported through `tracing` and replaced by 1: one bad announcement must
/// not take a member out of the ring or break the rebuild for the others.
pub(crate) fn member_weight(member: &Member) -> f64 {
    match member.metadata().get("weight") {
        None => 1.0,
        Some(text) => match parse_weight(text) {
            Some(w) => w,
            None => {
                tracing::warn!(
                    member = %member.id(),
                    addr = %member.addr(),
                    weight = %text,
                    "ignoring invalid memcache weight (want a finite number > 0); using 1"
                );
                1.0
            }
        },
    }
}

/// A weight if `text` is a finite number greater than zero.
pub(crate) fn parse_weight(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|w| w.is_finite() && *w > 0.0 && *w <= MAX_WEIGHT)
}

/// Larger weights are refused: a sum of a few huge (finite) weights would
/// overflow to infinity and leave every node without points.
pub(crate) const MAX_WEIGHT: f64 = 1e9;

/// An address with a ketama weight: one entry of an explicit node
/// list, written `HOST:PORT` or `HOST:PORT=WEIGHT` (weight default 1).
///
/// This is what a command line `--node` option parses into.
///
/// ```
/// use serversets_mcset::WeightedNode;
///
/// let n: WeightedNode = "10.0.1.1:11211=600".parse()?;
/// assert_eq!(n.addr().to_string(), "10.0.1.1:11211");
/// assert_eq!(n.weight(), 600.0);
///
/// let plain: WeightedNode = "[::1]:11212".parse()?;
/// assert_eq!(plain.weight(), 1.0);
/// assert_eq!(plain.to_string(), "[::1]:11212");
/// # Ok::<(), serversets_mcset::RingError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedNode {
    addr: HostPort,
    weight: f64,
}

impl WeightedNode {
    /// A node with a weight.
    ///
    /// # Errors
    ///
    /// [`RingError::InvalidWeight`] for a weight that is not a finite
    /// number greater than zero.
    ///
    /// ```
    /// use serversets_core::HostPort;
    /// use serversets_mcset::WeightedNode;
    ///
    /// let addr = HostPort::new("cache01", 11211)?;
    /// assert!(WeightedNode::new(addr.clone(), 2.5).is_ok());
    /// assert!(WeightedNode::new(addr.clone(), 0.0).is_err());
    /// assert!(WeightedNode::new(addr, f64::NAN).is_err());
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn new(addr: HostPort, weight: f64) -> Result<WeightedNode, RingError> {
        if weight.is_finite() && weight > 0.0 {
            Ok(WeightedNode { addr, weight })
        } else {
            Err(RingError::InvalidWeight {
                entry: format!("{addr}={weight}"),
            })
        }
    }

    /// A node of weight 1.
    ///
    /// ```
    /// use serversets_core::HostPort;
    /// use serversets_mcset::WeightedNode;
    ///
    /// let n = WeightedNode::unweighted(HostPort::new("cache01", 11211)?);
    /// assert_eq!(n.weight(), 1.0);
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn unweighted(addr: HostPort) -> WeightedNode {
        WeightedNode { addr, weight: 1.0 }
    }

    /// The address.
    ///
    /// ```
    /// use serversets_mcset::WeightedNode;
    /// let n: WeightedNode = "cache01:11211=3".parse()?;
    /// assert_eq!(n.addr().host(), "cache01");
    /// # Ok::<(), serversets_mcset::RingError>(())
    /// ```
    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    /// The weight (finite, greater than zero).
    ///
    /// ```
    /// use serversets_mcset::WeightedNode;
    /// let n: WeightedNode = "cache01:11211=3".parse()?;
    /// assert_eq!(n.weight(), 3.0);
    /// # Ok::<(), serversets_mcset::RingError>(())
    /// ```
    pub fn weight(&self) -> f64 {
        self.weight
    }
}

impl From<HostPort> for WeightedNode {
    fn from(addr: HostPort) -> Self {
        WeightedNode::unweighted(addr)
    }
}

impl FromStr for WeightedNode {
    type Err = RingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, weight) = match s.rsplit_once('=') {
            Some((addr, weight)) => {
                let weight = parse_weight(weight).ok_or_else(|| RingError::InvalidWeight {
                    entry: s.to_string(),
                })?;
                (addr, weight)
            }
            None => (s, 1.0),
        };
        let addr = addr_text
            .parse::<HostPort>()
            .map_err(|source| RingError::InvalidAddress {
                entry: s.to_string(),
                source,
            })?;
        Ok(WeightedNode { addr, weight })
    }
}

impl fmt::Display for WeightedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weight == 1.0 {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}={}", self.addr, self.weight)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_bounded_so_their_sum_stays_finite() {
        assert_eq!(parse_weight("2"), Some(2.0));
        assert_eq!(parse_weight("1e9"), Some(1e9));
        for bad in ["1e308", "inf", "NaN", "0", "-1", "x"] {
            assert_eq!(parse_weight(bad), None, "{bad}");
        }
    }

    fn member(addr: &str) -> Member {
        Member::from_addr(addr.parse().unwrap())
    }

    #[test]
    fn identifier_rules() {
        assert_eq!(NodeIdentity::HostPort.identifier(&member("h:11211")), "h");
        assert_eq!(
            NodeIdentity::HostPort.identifier(&member("h:11212")),
            "h:11212"
        );
        // IPv6: libmemcached and Finagle print the raw host, no brackets.
        assert_eq!(
            NodeIdentity::HostPort.identifier(&member("[::1]:5000")),
            "::1:5000"
        );
        let sharded = Member::builder("m", "h:5000".parse().unwrap())
            .shard(-3)
            .build();
        assert_eq!(NodeIdentity::Finagle.identifier(&sharded), "-3");
        assert_eq!(NodeIdentity::HostPort.identifier(&sharded), "h:5000");
    }

    #[test]
    fn weights_from_metadata_default_and_fall_back_to_one() {
        let with = |w: &str| {
            Member::builder("m", "h:1".parse().unwrap())
                .metadata("weight", w)
                .build()
        };
        assert_eq!(member_weight(&member("h:1")), 1.0);
        assert_eq!(member_weight(&with("3")), 3.0);
        assert_eq!(member_weight(&with(" 2.5 ")), 2.5);
        for bad in ["0", "-1", "abc", "", "NaN", "inf", "1e999"] {
            assert_eq!(member_weight(&with(bad)), 1.0, "{bad:?}");
        }
    }

    #[test]
    fn parses_node_entries_and_refuses_bad_ones() {
        let n: WeightedNode = "h:11211=2".parse().unwrap();
        assert_eq!((n.addr().port(), n.weight()), (11211, 2.0));
        assert_eq!(n.to_string(), "h:11211=2");
        for bad in ["h:11211=", "h:11211=0", "h:11211=x", "h:11211=-1"] {
            assert!(
                matches!(
                    bad.parse::<WeightedNode>(),
                    Err(RingError::InvalidWeight { .. })
                ),
                "{bad}"
            );
        }
        for bad in ["h", "h:0=2", ":1"] {
            assert!(
                matches!(
                    bad.parse::<WeightedNode>(),
                    Err(RingError::InvalidAddress { .. })
                ),
                "{bad}"
            );
        }
    }
}

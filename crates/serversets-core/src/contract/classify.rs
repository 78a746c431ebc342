//! How a watch reads each child of a server set: one rule set shared by the
//! ZooKeeper watch and by tools that explain it (`serversets dump`): only
//! `member_` children, decoded with the codec, ALIVE only, then the shard
//! and endpoint filters.

use crate::contract::codec::{self, DecodeError};
use crate::contract::member::{Member, Status};

/// The filters a watch applies on top of "ALIVE only".
///
/// ```
/// use serversets_core::{classify, MemberFilter, Verdict};
///
/// let data = br#"{"serviceEndpoint":{"host":"h","port":80},"additionalEndpoints":{"http":{"host":"h","port":8080}},"status":"ALIVE","shard":2}"#;
/// // Shard 2's members, addressed by their "http" endpoint.
/// let http_of_shard_2 = MemberFilter { endpoint: Some("http".into()), shard: Some(2) };
/// match classify("member_0000000001", data, &http_of_shard_2).verdict {
///     Verdict::Member(m) => assert_eq!(m.addr().to_string(), "h:8080"),
///     other => panic!("{other:?}"),
/// }
/// // The default filter serves every ALIVE member on its service endpoint.
/// match classify("member_0000000001", data, &MemberFilter::default()).verdict {
///     Verdict::Member(m) => assert_eq!(m.addr().to_string(), "h:80"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFilter {
    /// Serve this named additional endpoint instead of the service endpoint.
    pub endpoint: Option<String>,
    /// Serve only this shard.
    pub shard: Option<i32>,
}

/// What a watch makes of one child of a server set.
///
/// ```
/// use serversets_core::{classify, MemberFilter, Verdict};
///
/// let f = MemberFilter::default();
/// let ok = br#"{"serviceEndpoint":{"host":"h","port":1},"status":"ALIVE"}"#;
/// assert!(matches!(classify("member_0000000001", ok, &f).verdict, Verdict::Member(_)));
///
/// let stopping = br#"{"serviceEndpoint":{"host":"h","port":1},"status":"STOPPING"}"#;
/// assert!(matches!(classify("member_0000000002", stopping, &f).verdict, Verdict::NotServed { .. }));
///
/// assert!(matches!(classify("member_0000000003", b"{}", &f).verdict, Verdict::Malformed(_)));
/// assert!(matches!(classify("vector_0000000001", ok, &f).verdict, Verdict::Ignored(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Served: a watch with this filter lists it (with the served address).
    Member(Member),
    /// Decoded, but the watch does not serve it.
    NotServed {
        /// The decoded member.
        member: Member,
        /// Why not (`status STOPPING`, `shard 1, not 2`, ...).
        reason: String,
    },
    /// The data cannot be read as a member.
    Malformed(DecodeError),
    /// Not a `member_` znode; readers skip it.
    Ignored(String),
}

impl Verdict {
    /// A short label: `member`, `not served`, `malformed` or `ignored`.
    ///
    /// ```
    /// use serversets_core::{classify, MemberFilter};
    /// assert_eq!(classify("x", b"", &MemberFilter::default()).verdict.label(), "ignored");
    /// ```
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Member(_) => "member",
            Verdict::NotServed { .. } => "not served",
            Verdict::Malformed(_) => "malformed",
            Verdict::Ignored(_) => "ignored",
        }
    }
}

/// A [`Verdict`] plus the parts of the member a reader drops (an additional
/// endpoint with a bad port, say) while keeping the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// What the watch makes of the child.
    pub verdict: Verdict,
    /// Parts that were dropped, with why.
    pub dropped: Vec<DecodeError>,
}

/// Reads one child (`name`, raw `data`) the way a watch with `filter` does.
///
/// ```
/// use serversets_core::{classify, MemberFilter, Verdict};
///
/// let data = br#"{"serviceEndpoint":{"host":"h","port":1},"additionalEndpoints":{"http":{"host":"h","port":2}},"status":"ALIVE","shard":0}"#;
/// let http = MemberFilter { endpoint: Some("http".into()), shard: None };
/// assert!(matches!(classify("member_0000000001", data, &http).verdict, Verdict::Member(m) if m.port() == 2));
/// let shard1 = MemberFilter { endpoint: None, shard: Some(1) };
/// assert!(matches!(
///     classify("member_0000000001", data, &shard1).verdict,
///     Verdict::NotServed { reason, .. } if reason == "shard 0, not 1"
/// ));
/// ```
pub fn classify(name: &str, data: &[u8], filter: &MemberFilter) -> Reading {
    if !name.starts_with("member_") {
        return Reading {
            verdict: Verdict::Ignored("not a member_ node".into()),
            dropped: Vec::new(),
        };
    }
    let decoded = match codec::decode(name, data) {
        Ok(d) => d,
        Err(e) => {
            return Reading {
                verdict: Verdict::Malformed(e),
                dropped: Vec::new(),
            }
        }
    };
    let member = decoded.member;
    let verdict = match select(filter, &member) {
        Ok(served) => Verdict::Member(served),
        Err(reason) => Verdict::NotServed { member, reason },
    };
    Reading {
        verdict,
        dropped: decoded.dropped,
    }
}

/// ALIVE only, then the shard, then the endpoint; the reasons are what
/// `Watch::rejected` and `serversets dump` show.
fn select(filter: &MemberFilter, member: &Member) -> Result<Member, String> {
    if member.status() != Status::Alive {
        return Err(format!("status {}", member.status()));
    }
    if let Some(shard) = filter.shard {
        if member.shard() != Some(shard) {
            return Err(match member.shard() {
                Some(s) => format!("shard {s}, not {shard}"),
                None => format!("no shard, not {shard}"),
            });
        }
    }
    match &filter.endpoint {
        None => Ok(member.clone()),
        Some(name) => member
            .with_served_endpoint(name)
            .ok_or_else(|| format!("no additional endpoint named {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIVE: &[u8] = br#"{"serviceEndpoint":{"host":"h","port":1},"additionalEndpoints":{"bad":{"host":"h","port":"x"}},"status":"ALIVE"}"#;

    #[test]
    fn every_rule_has_a_reason() {
        let none = MemberFilter::default();
        let r = classify("member_1", ALIVE, &none);
        assert!(matches!(r.verdict, Verdict::Member(_)));
        assert_eq!(
            r.dropped.len(),
            1,
            "the bad additional endpoint is reported"
        );

        let shard = MemberFilter {
            shard: Some(4),
            ..Default::default()
        };
        match classify("member_1", ALIVE, &shard).verdict {
            Verdict::NotServed { reason, .. } => assert_eq!(reason, "no shard, not 4"),
            v => panic!("{v:?}"),
        }
        let ep = MemberFilter {
            endpoint: Some("http".into()),
            ..Default::default()
        };
        match classify("member_1", ALIVE, &ep).verdict {
            Verdict::NotServed { reason, .. } => {
                assert_eq!(reason, "no additional endpoint named \"http\"")
            }
            v => panic!("{v:?}"),
        }
        let unknown = br#"{"serviceEndpoint":{"host":"h","port":1},"status":"REBOOTING"}"#;
        match classify("member_2", unknown, &none).verdict {
            Verdict::NotServed { reason, .. } => assert_eq!(reason, "status UNKNOWN"),
            v => panic!("{v:?}"),
        }
        match classify("member_3", b"\x0b\x00", &none).verdict {
            Verdict::Malformed(e) => assert!(e.to_string().contains("invalid JSON")),
            v => panic!("{v:?}"),
        }
        assert_eq!(classify("lock", ALIVE, &none).verdict.label(), "ignored");
    }
}

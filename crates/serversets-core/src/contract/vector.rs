//! Finagle's `vector_` weight znodes: how operators steer traffic without
//! touching the members.
//!
//! A vector znode is a persistent sibling of the members holding a list of
//! descriptors, each selecting members (`inet=host:port`, `member=<znode
//! name>` or `shard=N`) and giving them a weight. A member's weight is the
//! product of the weights of every descriptor, in every vector znode, that
//! selects it; a weight of exactly -1.0 drains it ("drain without
//! deregistering": watchers stop serving it while it stays registered).
//!
//! Like members, vector znodes are immutable by contract: a change is a new
//! znode plus the deletion of the old one.
//!
//! Finagle's parser reads a weight only when it is a JSON double: an integer
//! such as `"weight":2` is read by Finagle as the default, 1.0. We do the
//! same, so every client of a set agrees on its weights, and report such a
//! descriptor in [`Vector::notes`] (`serversets dump` shows it), since it is
//! almost certainly not what the operator meant.
//!
//! ```
//! use serversets_core::vector::{self, Vector};
//! use serversets_core::{HostPort, Member};
//!
//! let v = vector::decode(
//!     br#"{"vector":[{"select":"inet=10.0.0.3:80","weight":2.5},{"select":"shard=1","weight":-1.0}]}"#,
//! )?;
//! let m = Member::builder("member_0000000007", HostPort::new("10.0.0.3", 80)?).build();
//! assert_eq!(vector::weight_of(&m, [&v]), Some(2.5));
//! let drained = Member::builder("member_0000000008", HostPort::new("10.0.0.4", 80)?).shard(1).build();
//! assert_eq!(vector::weight_of(&drained, [&v]), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde_json::Value;

use crate::contract::codec::{JsonError, MAX_MEMBER_BYTES};
use crate::contract::member::Member;

/// The weight that drains a member: watchers stop serving it while it stays
/// registered.
///
/// ```
/// use serversets_core::vector::{self, Descriptor, Selector, DRAIN};
/// use serversets_core::{HostPort, Member};
///
/// // What an operator writes to take 10.0.0.3:80 out of rotation.
/// let drain = Descriptor { selector: Selector::Inet("10.0.0.3:80".into()), weight: DRAIN, priority: 1 };
/// let node = vector::decode(&vector::encode(&[drain]))?;
/// let member = Member::from_addr(HostPort::new("10.0.0.3", 80)?);
/// assert_eq!(vector::weight_of(&member, [&node]), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DRAIN: f64 = -1.0;

/// Which members a descriptor applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// `inet=host:port`: members at this address, their service endpoint or
    /// the endpoint a watch serves them on (compared as text, as Finagle
    /// does).
    Inet(String),
    /// `member=<znode name>`: one member by its znode name.
    Member(String),
    /// `shard=N`: members of this shard.
    Shard(i32),
}

impl Selector {
    fn parse(text: &str) -> Option<Selector> {
        let (kind, arg) = text.split_once('=')?;
        match kind {
            "inet" => Some(Selector::Inet(arg.to_string())),
            "member" => Some(Selector::Member(arg.to_string())),
            "shard" => arg.parse().ok().map(Selector::Shard),
            _ => None,
        }
    }

    /// Whether this selector picks `member`.
    pub fn selects(&self, member: &Member) -> bool {
        match self {
            Selector::Inet(addr) => {
                member.addr().to_string() == *addr || member.service_endpoint().to_string() == *addr
            }
            Selector::Member(name) => member.id().as_str() == name,
            Selector::Shard(n) => member.shard() == Some(*n),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Inet(a) => write!(f, "inet={a}"),
            Selector::Member(m) => write!(f, "member={m}"),
            Selector::Shard(s) => write!(f, "shard={s}"),
        }
    }
}

/// One selector with its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// The members it applies to.
    pub selector: Selector,
    /// Their weight factor (1.0 when absent or not a JSON double).
    pub weight: f64,
    /// Parsed and kept, unused by Finagle and by us (default 1).
    pub priority: i32,
}

/// One decoded `vector_` znode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vector {
    /// The descriptors this znode applies.
    pub descriptors: Vec<Descriptor>,
    /// What an operator should know: descriptors skipped (unknown selector,
    /// wrong types) and weights read as 1.0 because they are not doubles.
    pub notes: Vec<String>,
}

/// Why a vector znode could not be read at all (it is then skipped whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// The data is larger than a znode can hold
    /// ([`MAX_MEMBER_BYTES`](crate::codec::MAX_MEMBER_BYTES)).
    #[error("data too large ({0} bytes, limit {MAX_MEMBER_BYTES})")]
    TooLarge(usize),
    /// The data is not JSON; `source()` is the parser's error.
    #[error("invalid JSON")]
    InvalidJson(#[source] JsonError),
    /// The JSON has no `vector` array.
    #[error("no \"vector\" array")]
    NoVector,
}

/// Reads a vector znode's data. Descriptors that cannot be used are skipped
/// and listed in [`Vector::notes`]; only data that is not a vector at all is
/// an error.
///
/// # Errors
///
/// [`VectorError`] when the data is too large, is not JSON or has no
/// `vector` array.
pub fn decode(data: &[u8]) -> Result<Vector, VectorError> {
    if data.len() > MAX_MEMBER_BYTES {
        return Err(VectorError::TooLarge(data.len()));
    }
    let value: Value =
        serde_json::from_slice(data).map_err(|e| VectorError::InvalidJson(e.into()))?;
    let Some(items) = value.get("vector").and_then(Value::as_array) else {
        return Err(VectorError::NoVector);
    };
    let mut vector = Vector::default();
    for (i, item) in items.iter().enumerate() {
        let Some(text) = item.get("select").and_then(Value::as_str) else {
            vector
                .notes
                .push(format!("descriptor {i}: no \"select\" string; skipped"));
            continue;
        };
        let Some(selector) = Selector::parse(text) else {
            vector.notes.push(format!(
                "descriptor {i}: unknown selector {text:?}; skipped"
            ));
            continue;
        };
        let weight = match item.get("weight") {
            None => 1.0,
            Some(w) if w.is_f64() => match w.as_f64() {
                Some(w) if w.is_finite() && (w >= 0.0 || w == DRAIN) => w,
                Some(w) => {
                    vector.notes.push(format!(
                        "descriptor {i} ({selector}): weight {w} is neither a share of traffic nor -1.0 (drain); skipped"
                    ));
                    continue;
                }
                None => 1.0,
            },
            Some(w) if w.is_number() => {
                vector.notes.push(format!(
                    "descriptor {i} ({selector}): weight {w} is an integer; read as 1.0, as Finagle does (write {w}.0)"
                ));
                1.0
            }
            Some(w) => {
                vector.notes.push(format!(
                    "descriptor {i} ({selector}): weight {w} is not a number; read as 1.0"
                ));
                1.0
            }
        };
        let priority = item
            .get("priority")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(1);
        vector.descriptors.push(Descriptor {
            selector,
            weight,
            priority,
        });
    }
    Ok(vector)
}

/// Writes a vector znode in Finagle's exact form: compact JSON, weights as
/// doubles, priority 1.
///
/// ```
/// use serversets_core::vector::{self, Descriptor, Selector};
/// let d = Descriptor { selector: Selector::Inet("10.0.0.3:80".into()), weight: 2.0, priority: 1 };
/// assert_eq!(
///     vector::encode(&[d]),
///     br#"{"vector":[{"select":"inet=10.0.0.3:80","weight":2.0,"priority":1}]}"#,
/// );
/// ```
pub fn encode(descriptors: &[Descriptor]) -> Vec<u8> {
    let items: Vec<String> = descriptors
        .iter()
        .map(|d| {
            format!(
                r#"{{"select":{},"weight":{},"priority":{}}}"#,
                Value::String(d.selector.to_string()),
                double(d.weight),
                d.priority
            )
        })
        .collect();
    format!(r#"{{"vector":[{}]}}"#, items.join(",")).into_bytes()
}

/// A weight as a JSON double: always with a fraction, so Finagle reads it.
fn double(w: f64) -> String {
    let text = format!("{w:?}");
    if text.contains(['.', 'e', 'E']) {
        text
    } else {
        format!("{text}.0")
    }
}

/// A member's weight under these vectors: the product of every descriptor
/// selecting it (1.0 when none does), or `None` when one of them drains it.
pub fn weight_of<'a>(
    member: &Member,
    vectors: impl IntoIterator<Item = &'a Vector>,
) -> Option<f64> {
    let mut weight = 1.0;
    for d in vectors
        .into_iter()
        .flat_map(|v| &v.descriptors)
        .filter(|d| d.selector.selects(member))
    {
        if d.weight == DRAIN {
            return None;
        }
        weight *= d.weight;
    }
    Some(weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::address::HostPort;

    fn member(id: &str, host: &str, port: u16, shard: Option<i32>) -> Member {
        let mut b = Member::builder(id, HostPort::new(host, port).unwrap());
        if let Some(s) = shard {
            b = b.shard(s);
        }
        b.build()
    }

    #[test]
    fn reads_finagles_exact_form_and_multiplies_across_nodes() {
        let a = decode(br#"{"vector":[{"select":"member=member_0000000007","weight":1.2,"priority":1},{"select":"inet=10.0.0.3:80","weight":1.3,"priority":2}]}"#).unwrap();
        assert!(a.notes.is_empty(), "{:?}", a.notes);
        assert_eq!(a.descriptors[1].priority, 2);
        let b = decode(br#"{"vector":[{"select":"shard=4","weight":2.0}]}"#).unwrap();
        let m = member("member_0000000007", "10.0.0.3", 80, Some(4));
        let w = weight_of(&m, [&a, &b]).unwrap();
        assert!((w - 1.2 * 1.3 * 2.0).abs() < 1e-12, "{w}");
        let other = member("member_0000000009", "10.0.0.9", 80, None);
        assert_eq!(weight_of(&other, [&a, &b]), Some(1.0));
    }

    #[test]
    fn minus_one_drains_and_other_negatives_are_skipped() {
        let v = decode(br#"{"vector":[{"select":"inet=h:1","weight":-1.0},{"select":"inet=h:2","weight":-2.5}]}"#).unwrap();
        assert_eq!(weight_of(&member("m1", "h", 1, None), [&v]), None);
        assert_eq!(weight_of(&member("m2", "h", 2, None), [&v]), Some(1.0));
        assert_eq!(v.notes.len(), 1, "{:?}", v.notes);
    }

    #[test]
    fn integer_weights_are_read_as_finagle_reads_them_and_flagged() {
        let v = decode(
            br#"{"vector":[{"select":"inet=h:1","weight":2},{"select":"inet=h:2","weight":-1}]}"#,
        )
        .unwrap();
        assert_eq!(weight_of(&member("m1", "h", 1, None), [&v]), Some(1.0));
        // An integer -1 does not drain in Finagle either.
        assert_eq!(weight_of(&member("m2", "h", 2, None), [&v]), Some(1.0));
        assert_eq!(v.notes.len(), 2);
        assert!(v.notes[0].contains("integer"), "{}", v.notes[0]);
    }

    #[test]
    fn bad_descriptors_are_skipped_bad_nodes_are_errors() {
        let v = decode(br#"{"vector":[{"select":"colo=east","weight":3.0},{"weight":2.0},{"select":"shard=x"},{"select":"shard=2","weight":"big"}]}"#).unwrap();
        assert_eq!(v.descriptors.len(), 1);
        assert_eq!(v.descriptors[0].selector, Selector::Shard(2));
        assert_eq!(v.notes.len(), 4, "{:?}", v.notes);
        assert!(matches!(
            decode(b"{not json"),
            Err(VectorError::InvalidJson(_))
        ));
        assert_eq!(decode(br#"{"weights":[]}"#), Err(VectorError::NoVector));
        assert_eq!(decode(br#"[1,2]"#), Err(VectorError::NoVector));
        let huge = vec![b' '; MAX_MEMBER_BYTES + 1];
        assert_eq!(decode(&huge), Err(VectorError::TooLarge(huge.len())));
    }

    #[test]
    fn a_cause_is_given_once() {
        let e = decode(b"{not json").unwrap_err();
        let source = std::error::Error::source(&e).expect("the parser's error");
        assert!(!e.to_string().contains(&source.to_string()), "{e}");
    }

    #[test]
    fn what_we_write_reads_back_and_uses_doubles() {
        let ds = vec![
            Descriptor {
                selector: Selector::Inet("10.0.0.1:80".into()),
                weight: 2.0,
                priority: 1,
            },
            Descriptor {
                selector: Selector::Member("member_0000000001".into()),
                weight: DRAIN,
                priority: 1,
            },
            Descriptor {
                selector: Selector::Shard(-3),
                weight: 0.25,
                priority: 1,
            },
        ];
        let bytes = encode(&ds);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"vector":[{"select":"inet=10.0.0.1:80","weight":2.0,"priority":1},{"select":"member=member_0000000001","weight":-1.0,"priority":1},{"select":"shard=-3","weight":0.25,"priority":1}]}"#
        );
        let back = decode(&bytes).unwrap();
        assert!(back.notes.is_empty());
        assert_eq!(back.descriptors, ds);
    }
}

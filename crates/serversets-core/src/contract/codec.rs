//! The Finagle ServerSet member JSON: what we write and how we read what
//! anyone else wrote.
//!
//! Writing follows the contract byte for byte: compact JSON starting with
//! `{"` (the Java commons codec sniffs those two bytes), fields in the order
//! `serviceEndpoint`, `additionalEndpoints` (always present), `status`,
//! `shard` (only when set), `metadata` (only when non-empty).
//!
//! Reading is defensive: member data comes from every writer sharing the
//! path, so each problem is a typed [`DecodeError`] for that one member and
//! never affects the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::contract::address::{AddressError, HostPort};
use crate::contract::member::{Member, MemberId, Status};

/// Member data larger than this is refused without parsing. It is
/// ZooKeeper's own limit per znode (`jute.maxbuffer`, 1 MiB by default), so
/// every member a writer can store, [`encode`]'s included, is read. Finagle
/// members are a few hundred bytes, but the metadata of a member has no size
/// limit: a lower limit here made members we wrote ourselves unreadable to our
/// own watchers, while Finagle served them.
///
/// ```
/// use serversets_core::codec::{self, DecodeError, MAX_MEMBER_BYTES};
///
/// let oversized = vec![b' '; MAX_MEMBER_BYTES + 1];
/// assert_eq!(codec::decode("member_1", &oversized), Err(DecodeError::TooLarge(oversized.len())));
/// ```
pub const MAX_MEMBER_BYTES: usize = 1024 * 1024;

/// Why one member's data could not be read.
///
/// A cause from elsewhere (the JSON parser's error, an address refused) is
/// [`source()`](std::error::Error::source), not part of the message.
///
/// ```
/// use std::error::Error as _;
/// use serversets_core::codec::{self, DecodeError};
///
/// let e = codec::decode("member_1", br#"{"serviceEndpoint":{"host":"h","port":0}}"#).unwrap_err();
/// assert!(matches!(e, DecodeError::InvalidEndpoint { .. }));
/// assert_eq!(e.to_string(), "invalid serviceEndpoint: not a valid address");
/// let why = e.source().map(|s| s.to_string()).unwrap_or_default();
/// assert!(why.contains("invalid port"), "{why}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The znode has no data.
    #[error("empty data")]
    Empty,
    /// The data is larger than [`MAX_MEMBER_BYTES`].
    #[error("data too large ({0} bytes, limit {MAX_MEMBER_BYTES})")]
    TooLarge(usize),
    /// The data is not UTF-8.
    #[error("data is not UTF-8")]
    NotUtf8,
    /// The data is not JSON (it may be the legacy Thrift binary form);
    /// `source()` is the parser's error.
    #[error("invalid JSON")]
    InvalidJson(#[source] JsonError),
    /// The JSON is not an object.
    #[error("JSON is not an object")]
    NotAnObject,
    /// `serviceEndpoint` is absent.
    #[error("missing serviceEndpoint")]
    MissingServiceEndpoint,
    /// An endpoint is malformed; when its host and port are there but do
    /// not make an address, `source()` says why.
    #[error("invalid {field}: {reason}")]
    InvalidEndpoint {
        /// `serviceEndpoint` or `additionalEndpoints.<name>`.
        field: String,
        /// What is wrong.
        reason: &'static str,
        /// Why the host and port are not an address.
        #[source]
        source: Option<AddressError>,
    },
    /// A field has the wrong JSON type.
    #[error("field {field} has the wrong type (expected {expected})")]
    WrongType {
        /// The field name.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

/// The JSON parser's error, shared so the errors that carry it stay cheap
/// to clone and comparable (two are equal when they say the same at the
/// same place).
#[derive(Debug, Clone)]
pub struct JsonError(Arc<serde_json::Error>);

impl JsonError {
    /// Line and column where the parser stopped (1-based).
    pub fn position(&self) -> (usize, usize) {
        (self.0.line(), self.0.column())
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError(Arc::new(e))
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for JsonError {}

impl PartialEq for JsonError {
    fn eq(&self, other: &Self) -> bool {
        self.0.classify() == other.0.classify()
            && self.position() == other.position()
            && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for JsonError {}

#[derive(Serialize)]
struct WireEndpoint<'a> {
    host: &'a str,
    port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireMember<'a> {
    service_endpoint: WireEndpoint<'a>,
    additional_endpoints: BTreeMap<&'a str, WireEndpoint<'a>>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<i32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: &'a BTreeMap<String, String>,
}

fn wire(addr: &HostPort) -> WireEndpoint<'_> {
    WireEndpoint {
        host: addr.host(),
        port: addr.port(),
    }
}

/// Encodes a member as Finagle JSON. The member id is not part of the data
/// (it is the znode name).
///
/// ```
/// use serversets_core::{codec, HostPort, Member};
///
/// let m = Member::builder("x", HostPort::new("10.0.0.3", 31781)?)
///     .additional_endpoint("http", HostPort::new("10.0.0.3", 31782)?)
///     .shard(0)
///     .metadata("weight", "2")
///     .build();
/// assert_eq!(
///     String::from_utf8_lossy(&codec::encode(&m)),
///     r#"{"serviceEndpoint":{"host":"10.0.0.3","port":31781},"additionalEndpoints":{"http":{"host":"10.0.0.3","port":31782}},"status":"ALIVE","shard":0,"metadata":{"weight":"2"}}"#
/// );
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
pub fn encode(member: &Member) -> Vec<u8> {
    let wire = WireMember {
        service_endpoint: wire(member.service_endpoint()),
        additional_endpoints: member
            .additional_endpoints()
            .iter()
            .map(|(k, v)| (k.as_str(), wire(v)))
            .collect(),
        status: member.status().as_wire(),
        shard: member.shard(),
        metadata: member.metadata(),
    };
    // Serialising plain strings, integers and maps cannot fail; fall back to
    // an empty vector rather than panic if serde_json ever says otherwise.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// What decoding one member yielded, besides the member itself: problems that
/// dropped a part of it (an additional endpoint Finagle would drop too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The member.
    pub member: Member,
    /// Additional endpoints that were dropped, with why.
    pub dropped: Vec<DecodeError>,
}

/// Decodes Finagle JSON written by anyone: Finagle, Twitter commons, Aurora,
/// go.serversets or this crate. Unknown fields are ignored; unknown status
/// strings read as [`Status::Unknown`].
///
/// ```
/// use serversets_core::{codec, Status};
///
/// let d = codec::decode("member_0000000001", br#"{"serviceEndpoint":{"host":"h","port":80},"status":"ALIVE","member_id":"x"}"#)?;
/// assert_eq!(d.member.addr().to_string(), "h:80");
/// assert_eq!(d.member.status(), Status::Alive);
///
/// assert!(codec::decode("member_0000000002", b"").is_err());
/// assert!(codec::decode("member_0000000003", br#"{"serviceEndpoint":{"host":"h","port":0}}"#).is_err());
/// # Ok::<(), codec::DecodeError>(())
/// ```
///
/// # Errors
///
/// A [`DecodeError`] naming what makes the data unreadable as a member: no
/// data, too much, not UTF-8, not a JSON object, no usable
/// `serviceEndpoint`, a field of the wrong type. A bad additional endpoint
/// is no error: it is dropped and listed in [`Decoded::dropped`].
pub fn decode(id: &str, data: &[u8]) -> Result<Decoded, DecodeError> {
    if data.is_empty() {
        return Err(DecodeError::Empty);
    }
    if data.len() > MAX_MEMBER_BYTES {
        return Err(DecodeError::TooLarge(data.len()));
    }
    let text = std::str::from_utf8(data).map_err(|_| DecodeError::NotUtf8)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| DecodeError::InvalidJson(e.into()))?;
    let obj = value.as_object().ok_or(DecodeError::NotAnObject)?;

    let service = obj
        .get("serviceEndpoint")
        .filter(|v| !v.is_null())
        .ok_or(DecodeError::MissingServiceEndpoint)?;
    let service = endpoint("serviceEndpoint", service)?;

    let mut builder = Member::builder(MemberId::new(id), service);
    let mut dropped = Vec::new();
    match obj.get("additionalEndpoints") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, v) in map {
                match endpoint(&format!("additionalEndpoints.{name}"), v) {
                    Ok(addr) => builder = builder.additional_endpoint(name.clone(), addr),
                    Err(e) => dropped.push(e),
                }
            }
        }
        Some(_) => {
            return Err(DecodeError::WrongType {
                field: "additionalEndpoints",
                expected: "object",
            })
        }
    }
    let status = match obj.get("status") {
        None | Some(Value::Null) => Status::Unknown,
        Some(Value::String(s)) => Status::from_wire(s),
        Some(_) => {
            return Err(DecodeError::WrongType {
                field: "status",
                expected: "string",
            })
        }
    };
    builder = builder.status(status);
    match obj.get("shard") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let shard =
                v.as_i64()
                    .and_then(|s| i32::try_from(s).ok())
                    .ok_or(DecodeError::WrongType {
                        field: "shard",
                        expected: "32-bit integer",
                    })?;
            builder = builder.shard(shard);
        }
    }
    match obj.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let v = v.as_str().ok_or(DecodeError::WrongType {
                    field: "metadata",
                    expected: "object of strings",
                })?;
                builder = builder.metadata(k.clone(), v);
            }
        }
        Some(_) => {
            return Err(DecodeError::WrongType {
                field: "metadata",
                expected: "object of strings",
            })
        }
    }
    Ok(Decoded {
        member: builder.build(),
        dropped,
    })
}

fn endpoint(field: &str, v: &Value) -> Result<HostPort, DecodeError> {
    let bad = |reason: &'static str| DecodeError::InvalidEndpoint {
        field: field.to_string(),
        reason,
        source: None,
    };
    let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
    let host = match obj.get("host") {
        Some(Value::String(h)) => h.as_str(),
        Some(_) => return Err(bad("host is not a string")),
        None => return Err(bad("missing host")),
    };
    let port = match obj.get("port") {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad("port is not an integer"))?,
        Some(_) => return Err(bad("port is not an integer")),
        None => return Err(bad("missing port")),
    };
    HostPort::from_wide(host, port).map_err(|e| DecodeError::InvalidEndpoint {
        field: field.to_string(),
        reason: "not a valid address",
        source: Some(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::chain;

    fn ok(data: &str) -> Member {
        decode("member_0000000001", data.as_bytes())
            .unwrap_or_else(|e| panic!("{data}: {e}"))
            .member
    }

    #[test]
    fn reads_every_writer_in_the_wild() {
        // Finagle announcer: shard always present, metadata optional.
        let m = ok(
            r#"{"serviceEndpoint":{"host":"10.0.0.3","port":31781},"additionalEndpoints":{"http":{"host":"10.0.0.3","port":31782}},"status":"ALIVE","shard":0}"#,
        );
        assert_eq!(m.shard(), Some(0));
        assert_eq!(m.additional_endpoints()["http"].port(), 31782);
        // Aurora: instance id as shard, extra fields.
        let m = ok(
            r#"{"serviceEndpoint":{"host":"h","port":1,"inet":"1.2.3.4"},"additionalEndpoints":{},"status":"ALIVE","shard":7,"member_id":"x"}"#,
        );
        assert_eq!(m.shard(), Some(7));
        // go.serversets: no shard, no metadata.
        let m = ok(
            r#"{"serviceEndpoint":{"host":"h","port":2},"additionalEndpoints":{},"status":"ALIVE"}"#,
        );
        assert_eq!(m.shard(), None);
        assert!(m.metadata().is_empty());
        // Whitespace and field order do not matter for readers.
        let m = ok("{ \"status\" : \"STOPPING\", \"serviceEndpoint\" : { \"port\" : 3, \"host\" : \"h\" } }");
        assert_eq!(m.status(), Status::Stopping);
    }

    #[test]
    fn every_kind_of_garbage_is_a_typed_error() {
        let huge = format!(
            r#"{{"serviceEndpoint":{{"host":"h","port":1}},"x":"{}"}}"#,
            "a".repeat(MAX_MEMBER_BYTES)
        );
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "empty data"),
            (b"\xff\xfe{", "not UTF-8"),
            (b"{\"serviceEndpoint\":", "invalid JSON"),
            (b"\x0b\x00\x01", "invalid JSON"), // legacy thrift binary
            (b"[1,2]", "not an object"),
            (b"{}", "missing serviceEndpoint"),
            (br#"{"serviceEndpoint":null}"#, "missing serviceEndpoint"),
            (br#"{"serviceEndpoint":"h:1"}"#, "not an object"),
            (br#"{"serviceEndpoint":{"host":"h"}}"#, "missing port"),
            (br#"{"serviceEndpoint":{"port":1}}"#, "missing host"),
            (
                br#"{"serviceEndpoint":{"host":1,"port":1}}"#,
                "host is not a string",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":"80"}}"#,
                "port is not an integer",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":80.5}}"#,
                "port is not an integer",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":0}}"#,
                "invalid port",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":65536}}"#,
                "invalid port",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":-5}}"#,
                "invalid port",
            ),
            (br#"{"serviceEndpoint":{"host":"","port":5}}"#, "empty host"),
            (
                br#"{"serviceEndpoint":{"host":"h","port":5},"status":3}"#,
                "status",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":5},"shard":"1"}"#,
                "shard",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":5},"shard":4294967296}"#,
                "shard",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":5},"metadata":{"a":1}}"#,
                "metadata",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":5},"metadata":[]}"#,
                "metadata",
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":5},"additionalEndpoints":[]}"#,
                "additionalEndpoints",
            ),
            (huge.as_bytes(), "too large"),
        ];
        for (data, want) in cases {
            let err = decode("member_0000000009", data).expect_err(&String::from_utf8_lossy(data));
            let shown = chain(&err);
            assert!(
                shown.contains(want),
                "{:?}: got {shown}, want {want}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn a_cause_is_given_once() {
        let wrapping = [
            decode("m", b"{not json").unwrap_err(),
            decode("m", br#"{"serviceEndpoint":{"host":"h","port":0}}"#).unwrap_err(),
        ];
        for e in &wrapping {
            let source = std::error::Error::source(e).expect("a wrapped cause");
            assert!(
                !e.to_string().contains(&source.to_string()),
                "{e:?} prints its source: {e}"
            );
        }
        assert_eq!(
            wrapping[0],
            decode("other", b"{not json").unwrap_err(),
            "the same parser error at the same place is the same error"
        );
    }

    #[test]
    fn a_member_we_write_past_64_kib_is_read_back() {
        // Found by the codec_props round trip (shrunk case): the read limit
        // was 64 KiB, so this member was written, then read as "too large".
        let m = Member::builder("member_0000000000", HostPort::new("0.0.0.0", 1).unwrap())
            .status(Status::Dead)
            .metadata("", "x".repeat(65_432))
            .build();
        let data = encode(&m);
        assert_eq!(data.len(), 65_539);
        assert_eq!(decode("member_0000000000", &data).unwrap().member, m);
    }

    #[test]
    fn unknown_status_and_bad_additional_endpoint_are_tolerated() {
        let d = decode(
            "member_0000000001",
            br#"{"serviceEndpoint":{"host":"h","port":5},"additionalEndpoints":{"ok":{"host":"h","port":6},"bad":{"host":"h","port":"x"}},"status":"REBOOTING"}"#,
        )
        .unwrap();
        assert_eq!(d.member.status(), Status::Unknown);
        assert_eq!(d.member.additional_endpoints().len(), 1);
        assert_eq!(d.dropped.len(), 1);
        assert!(d.dropped[0].to_string().contains("additionalEndpoints.bad"));
    }

    #[test]
    fn encode_matches_the_contract_and_round_trips() {
        let bare = Member::builder("m", HostPort::new("h", 1).unwrap()).build();
        let text = String::from_utf8(encode(&bare)).unwrap();
        assert_eq!(
            text,
            r#"{"serviceEndpoint":{"host":"h","port":1},"additionalEndpoints":{},"status":"ALIVE"}"#
        );
        assert!(text.starts_with("{\""));
        let full = Member::builder("m", HostPort::new("::1", 2).unwrap())
            .additional_endpoint("b", HostPort::new("x", 3).unwrap())
            .additional_endpoint("a", HostPort::new("y", 4).unwrap())
            .status(Status::Warning)
            .shard(-3)
            .metadata("k", "v \"quoted\"")
            .build();
        let back = decode("m", &encode(&full)).unwrap();
        assert_eq!(back.member, full);
        assert!(back.dropped.is_empty());
    }
}

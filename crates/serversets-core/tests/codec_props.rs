//! Property tests for the member codec and the child classifier: what
//! `codec::decode` and `classify` make of anything a ZooKeeper znode can hold,
//! and that what we write, and what Finagle, Twitter commons and Aurora
//! write, is read back as the same member.
//!
//! No ZooKeeper is needed. The case counts keep the whole file at a few
//! seconds in a debug build; `PROPTEST_CASES=N` raises them all for a longer
//! hunt.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{Map, Value};
use serversets_core::codec::{self, DecodeError, Decoded, MAX_MEMBER_BYTES};
use serversets_core::{classify, HostPort, Member, MemberFilter, Status, Verdict};

// ---------------------------------------------------------------------------
// The oracle: what `classify` must say, given what `decode` says.
// ---------------------------------------------------------------------------

/// Checks one child end to end: `decode` and `classify` return (no panic),
/// agree with each other, follow the serving rules (`member_` only, ALIVE
/// only, then shard, then endpoint), and whatever decodes is written back
/// by `encode` as the same member. Returns what `decode` said.
fn check_child(
    name: &str,
    data: &[u8],
    filter: &MemberFilter,
) -> Result<Result<Decoded, DecodeError>, TestCaseError> {
    let decoded = codec::decode(name, data);
    let reading = classify(name, data, filter);
    if !name.starts_with("member_") {
        prop_assert!(matches!(reading.verdict, Verdict::Ignored(_)));
        prop_assert!(reading.dropped.is_empty());
        return Ok(decoded);
    }
    let d = match &decoded {
        Err(e) => {
            prop_assert_eq!(&reading.verdict, &Verdict::Malformed(e.clone()));
            prop_assert!(reading.dropped.is_empty());
            if data.len() > MAX_MEMBER_BYTES {
                prop_assert_eq!(e, &DecodeError::TooLarge(data.len()));
            }
            return Ok(decoded);
        }
        Ok(d) => d,
    };
    prop_assert_eq!(d.member.id().as_str(), name);
    prop_assert_eq!(d.member.addr(), d.member.service_endpoint());
    prop_assert_eq!(&reading.dropped, &d.dropped);
    prop_assert_eq!(reading.verdict, expected_verdict(&d.member, filter));

    // What we read, we can write back, and that reads as the same member
    // (unless re-encoding grew it past the read limit: absent fields are
    // written out in full).
    let again = codec::encode(&d.member);
    if again.len() <= MAX_MEMBER_BYTES {
        prop_assert_eq!(
            codec::decode(name, &again),
            Ok(Decoded {
                member: d.member.clone(),
                dropped: Vec::new(),
            })
        );
    }
    Ok(decoded)
}

/// The serving rules, written out independently of `classify`.
fn expected_verdict(member: &Member, filter: &MemberFilter) -> Verdict {
    let not_served = |reason: String| Verdict::NotServed {
        member: member.clone(),
        reason,
    };
    if member.status() != Status::Alive {
        return not_served(format!("status {}", member.status().as_wire()));
    }
    if let Some(want) = filter.shard {
        match member.shard() {
            Some(s) if s == want => {}
            Some(s) => return not_served(format!("shard {s}, not {want}")),
            None => return not_served(format!("no shard, not {want}")),
        }
    }
    match &filter.endpoint {
        None => Verdict::Member(member.clone()),
        Some(name) => match member.additional_endpoints().get(name) {
            Some(addr) => {
                let served = member
                    .with_served_endpoint(name)
                    .expect("the endpoint exists");
                assert_eq!(served.addr(), addr);
                assert_eq!(served.service_endpoint(), member.service_endpoint());
                Verdict::Member(served)
            }
            None => not_served(format!("no additional endpoint named {name:?}")),
        },
    }
}

// ---------------------------------------------------------------------------
// Strategies: strings, JSON values, members and filters.
// ---------------------------------------------------------------------------

/// Characters that break naive JSON, UTF-8 and host handling: controls,
/// quotes, separators, invisible and right-to-left marks, the BOM, the line
/// separators JavaScript chokes on, noncharacters, and astral ones (which
/// need a surrogate pair as a `\u` escape).
const ODD_CHARS: &str = "\0\u{1}\u{8}\t\n\r\u{1f} \"\\/'<>&=:[]@%\u{7f}\u{80}\u{a0}\u{ad}éßİı中\
    \u{200b}\u{200d}\u{200e}\u{202e}\u{2028}\u{2029}\u{3000}\u{d7ff}\u{e000}\u{feff}\u{fffd}\
    \u{ffff}\u{10000}\u{1f600}\u{10ffff}";

fn odd_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => select(ODD_CHARS.chars().collect::<Vec<_>>()),
        2 => proptest::char::range('a', 'z'),
    ]
}

fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-z]{0,8}",
        vec(odd_char(), 0..12).prop_map(|cs| cs.into_iter().collect()),
    ]
    .boxed()
}

/// Every key the codec looks at, plus the extra ones seen in the wild, so that
/// random trees reach deep into `decode`.
const KNOWN_KEYS: &[&str] = &[
    "serviceEndpoint",
    "additionalEndpoints",
    "status",
    "shard",
    "metadata",
    "host",
    "port",
    "member_id",
    "inet",
    "inet6",
];

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(KNOWN_KEYS).prop_map(String::from),
        select(KNOWN_KEYS).prop_map(|k| k.to_uppercase()),
        odd_string(),
    ]
}

/// Numbers at every edge `decode` cares about (ports, 32-bit shards, i64/u64
/// limits) and floats from the tiniest to the largest.
fn edge_number() -> BoxedStrategy<Value> {
    prop_oneof![
        select(
            &[
                i64::MIN,
                i32::MIN as i64 - 1,
                i32::MIN as i64,
                -65536,
                -1,
                0,
                1,
                80,
                65535,
                65536,
                i32::MAX as i64,
                i32::MAX as i64 + 1,
                i64::MAX,
            ][..]
        )
        .prop_map(Value::from),
        select(&[u64::MAX, u64::MAX - 1, 1 << 63][..]).prop_map(Value::from),
        select(
            &[
                0.0,
                -0.0,
                0.5,
                80.0,
                80.5,
                65535.0,
                65536.0,
                1e15,
                1e300,
                -1e300,
                f64::MAX,
                f64::MIN,
                f64::MIN_POSITIVE,
                5e-324,
                f64::EPSILON,
            ][..]
        )
        .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // NaN and infinities are not JSON; serde_json turns them into null.
        any::<f64>().prop_map(Value::from),
    ]
    .boxed()
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        edge_number(),
        odd_string().prop_map(Value::String),
        select(&["ALIVE", "alive", "DEAD", "UNKNOWN", "10.0.0.3", "::1", "h:80", ""][..])
            .prop_map(Value::from),
    ]
    .boxed()
}

/// Arbitrary JSON trees, a few levels deep and a few dozen nodes wide.
fn arb_json() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((json_key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// A tree nested deeper than serde_json's recursion limit (128) allows, by
/// arrays and by objects whose keys are the member fields.
fn deep_json() -> impl Strategy<Value = Value> {
    (json_leaf(), vec((0u8..4, json_key()), 100..300)).prop_map(|(leaf, levels)| {
        levels
            .into_iter()
            .fold(leaf, |inner, (kind, key)| match kind {
                0 => Value::Array(vec![inner]),
                1 => Value::Object(Map::from_iter([("serviceEndpoint".to_string(), inner)])),
                2 => Value::Object(Map::from_iter([("port".to_string(), inner)])),
                _ => Value::Object(Map::from_iter([(key, inner)])),
            })
    })
}

/// Hosts a writer announces: IPv4, IPv6 (with and without a zone), DNS names,
/// and any other text `HostPort` accepts (odd unicode, quotes, backslashes).
fn arb_host() -> BoxedStrategy<String> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<Ipv6Addr>().prop_map(|a| a.to_string()),
        (any::<Ipv6Addr>(), "[a-z0-9]{1,6}").prop_map(|(a, zone)| format!("{a}%{zone}")),
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,4}\\.?",
        vec(odd_char(), 1..16).prop_filter_map("no character HostPort accepts", |cs| {
            // Keep the characters HostPort accepts on their own, so the
            // rules stay in address.rs and nothing is rejected wholesale.
            let host: String = cs
                .into_iter()
                .filter(|c| HostPort::new(c.to_string(), 1).is_ok())
                .collect();
            HostPort::new(host.clone(), 1).ok().map(|_| host)
        }),
    ]
    .boxed()
}

fn arb_host_port() -> impl Strategy<Value = HostPort> {
    (arb_host(), 1u16..=u16::MAX)
        .prop_map(|(h, p)| HostPort::new(h, p).expect("arb_host yields valid hosts"))
}

const ALL_STATUSES: &[Status] = &[
    Status::Dead,
    Status::Starting,
    Status::Alive,
    Status::Stopping,
    Status::Stopped,
    Status::Warning,
    Status::Unknown,
];

/// What one member announces, as generated before a writer renders it.
#[derive(Debug, Clone)]
struct Announced {
    service: HostPort,
    additional: BTreeMap<String, HostPort>,
    status: Status,
    shard: Option<i32>,
    metadata: BTreeMap<String, String>,
}

impl Announced {
    fn member(&self, id: &str) -> Member {
        let mut b = Member::builder(id, self.service.clone()).status(self.status);
        for (name, addr) in &self.additional {
            b = b.additional_endpoint(name.clone(), addr.clone());
        }
        if let Some(shard) = self.shard {
            b = b.shard(shard);
        }
        for (k, v) in &self.metadata {
            b = b.metadata(k.clone(), v.clone());
        }
        b.build()
    }
}

/// Endpoint names: the usual ones and odd text (even empty).
fn endpoint_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(&["http", "https", "admin", "health", "thrift", "aurora"][..])
            .prop_map(String::from),
        odd_string(),
    ]
}

fn arb_announced(
    statuses: &'static [Status],
    shard: BoxedStrategy<Option<i32>>,
    max_metadata: usize,
) -> impl Strategy<Value = Announced> {
    (
        arb_host_port(),
        btree_map(endpoint_name(), arb_host_port(), 0..4),
        select(statuses),
        shard,
        btree_map(odd_string(), odd_string(), 0..=max_metadata),
    )
        .prop_map(|(service, additional, status, shard, metadata)| Announced {
            service,
            additional,
            status,
            shard,
            metadata,
        })
}

/// Any member this crate can be asked to register.
fn our_member() -> impl Strategy<Value = Announced> {
    arb_announced(ALL_STATUSES, any::<Option<i32>>().boxed(), 10)
}

/// A member with one large metadata value (a certificate, a config blob):
/// the registration API takes any size.
fn big_member() -> impl Strategy<Value = Announced> {
    (
        our_member(),
        odd_string(),
        // Up to past ZooKeeper's znode limit; 64 KiB was once our read limit.
        0usize..MAX_MEMBER_BYTES + 64 * 1024,
        select(&['x', 'é', '\u{1f600}', '"'][..]),
    )
        .prop_map(|(mut a, key, len, c)| {
            let value = c.to_string().repeat(len / c.len_utf8());
            a.metadata.insert(key, value);
            a
        })
}

fn member_name() -> impl Strategy<Value = String> {
    (0u64..10_000_000_000).prop_map(|n| format!("member_{n:010}"))
}

/// A child name: mostly a member, sometimes a near miss or another znode.
fn child_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => member_name(),
        1 => select(&["member_", "member", "Member_0000000001", "vector_0000000001", "lock", ""][..])
            .prop_map(String::from),
        1 => odd_string().prop_map(|s| format!("member_{s}")),
        1 => odd_string(),
    ]
}

/// Filters that sometimes match a member and sometimes do not.
fn arb_filter() -> impl Strategy<Value = MemberFilter> {
    (
        proptest::option::of(endpoint_name()),
        proptest::option::of(prop_oneof![-2i32..8, any::<i32>()]),
    )
        .prop_map(|(endpoint, shard)| MemberFilter { endpoint, shard })
}

/// A filter made for `a`: its shard or another, one of its endpoints or a
/// missing one.
fn filter_for(a: &Announced, shard_pick: u8, endpoint_pick: Index, other: i32) -> MemberFilter {
    let shard = match shard_pick % 3 {
        0 => None,
        1 => a.shard.or(Some(other)),
        _ => Some(other),
    };
    let names: Vec<&String> = a.additional.keys().collect();
    let endpoint = match endpoint_pick.index(names.len() + 2) {
        0 => None,
        i if i <= names.len() => Some(names[i - 1].clone()),
        _ => Some("no-such-endpoint".to_string()),
    };
    MemberFilter { endpoint, shard }
}

// ---------------------------------------------------------------------------
// A JSON writer with the habits of each writer in the wild, plus random
// whitespace, field order and escapes.
// ---------------------------------------------------------------------------

/// The writers whose member data we must read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Finagle's announcer (Jackson): compact, raw UTF-8, shard always set,
    /// metadata when given.
    Finagle,
    /// Twitter commons (Gson): compact, HTML-safe escapes (`=` as `\u003d`),
    /// shard optional, no metadata.
    Commons,
    /// Aurora's executor (Python `json.dumps`): `", "` and `": "` separators,
    /// every non-ASCII character as `\uXXXX` (surrogate pairs above the
    /// BMP), shard = instance id, an integer `member_id`, endpoint
    /// `inet`/`inet6`.
    Aurora,
}

/// A JSON document before rendering.
#[derive(Debug, Clone)]
enum Node {
    Str(String),
    /// A number (or `true`/`false`/`null`) as its literal text.
    Lit(String),
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
}

impl Node {
    fn from_value(v: &Value) -> Node {
        match v {
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(items) => Node::Arr(items.iter().map(Node::from_value).collect()),
            Value::Object(map) => Node::Obj(
                map.iter()
                    .map(|(k, v)| (k.clone(), Node::from_value(v)))
                    .collect(),
            ),
            other => Node::Lit(other.to_string()),
        }
    }
}

/// Rendering decisions read from a byte tape (cycled; an empty tape reads as
/// zeros), so a failing case shrinks towards the plainest rendering.
struct Tape<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Tape<'_> {
    fn below(&mut self, n: usize) -> usize {
        if self.bytes.is_empty() || n <= 1 {
            return 0;
        }
        let b = self.bytes[self.pos % self.bytes.len()];
        self.pos += 1;
        usize::from(b) % n
    }
}

struct Render<'a> {
    out: String,
    tape: Tape<'a>,
    writer: Writer,
}

impl Render<'_> {
    fn render(writer: Writer, tape: &[u8], node: &Node) -> String {
        let mut r = Render {
            out: String::new(),
            tape: Tape {
                bytes: tape,
                pos: 0,
            },
            writer,
        };
        r.ws();
        r.node(node);
        r.ws();
        r.out
    }

    /// JSON whitespace, mostly none.
    fn ws(&mut self) {
        const WS: [&str; 6] = [" ", "  ", "\n", "\n    ", "\t", "\r\n"];
        if self.tape.below(4) == 3 {
            for _ in 0..=self.tape.below(3) {
                let w = WS[self.tape.below(WS.len())];
                self.out.push_str(w);
            }
        }
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::Str(s) => self.string(s),
            Node::Lit(text) => self.out.push_str(text),
            Node::Arr(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.ws();
                        self.comma();
                    }
                    self.ws();
                    self.node(item);
                }
                self.ws();
                self.out.push(']');
            }
            Node::Obj(entries) => {
                // Random field order: a Fisher-Yates shuffle driven by the tape.
                let mut order: Vec<usize> = (0..entries.len()).collect();
                for i in (1..order.len()).rev() {
                    let j = self.tape.below(i + 1);
                    order.swap(i, j);
                }
                self.out.push('{');
                for (n, &i) in order.iter().enumerate() {
                    let (key, value) = &entries[i];
                    if n > 0 {
                        self.ws();
                        self.comma();
                    }
                    self.ws();
                    self.string(key);
                    self.ws();
                    self.out.push(':');
                    if self.writer == Writer::Aurora {
                        self.out.push(' ');
                    }
                    self.ws();
                    self.node(value);
                }
                self.ws();
                self.out.push('}');
            }
        }
    }

    fn comma(&mut self) {
        self.out.push(',');
        if self.writer == Writer::Aurora {
            self.out.push(' ');
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            let must = c == '"' || c == '\\' || u32::from(c) < 0x20;
            let habit = match self.writer {
                Writer::Finagle => false,
                Writer::Commons => {
                    matches!(c, '<' | '>' | '&' | '=' | '\'' | '\u{2028}' | '\u{2029}')
                }
                Writer::Aurora => !c.is_ascii(),
            };
            if must || habit || self.tape.below(16) == 0 {
                self.escape(c);
            } else {
                self.out.push(c);
            }
        }
        self.out.push('"');
    }

    fn escape(&mut self, c: char) {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        match short {
            Some(s) if self.tape.below(4) != 0 => self.out.push_str(s),
            _ => {
                let upper = self.tape.below(2) == 1;
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if upper {
                        self.out.push_str(&format!("\\u{unit:04X}"));
                    } else {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
    }
}

/// Unknown fields a writer may add. Their keys are never one the codec
/// reads, at any level.
fn extra_fields() -> impl Strategy<Value = Vec<(String, Value)>> {
    vec(
        (
            odd_string().prop_filter("not a field the codec reads", |k| {
                !KNOWN_KEYS[..7].contains(&k.as_str())
            }),
            arb_json(),
        ),
        0..3,
    )
}

/// Extras seen in the wild: Aurora's `member_id` and endpoint `inet`/`inet6`.
#[derive(Debug, Clone)]
struct WildExtras {
    member_id: Option<u32>,
    inet: Option<Ipv4Addr>,
    inet6: Option<Ipv6Addr>,
}

/// One member as some writer wrote it, with the member it must read as.
#[derive(Debug, Clone)]
struct Written {
    writer: Writer,
    announced: Announced,
    wild: WildExtras,
    top_extras: Vec<(String, Value)>,
    endpoint_extras: Vec<(String, Value)>,
    tape: Vec<u8>,
}

impl Written {
    fn endpoint(&self, addr: &HostPort) -> Node {
        let mut fields = vec![
            ("host".to_string(), Node::Str(addr.host().to_string())),
            ("port".to_string(), Node::Lit(addr.port().to_string())),
        ];
        if let Some(inet) = self.wild.inet {
            fields.push(("inet".to_string(), Node::Str(inet.to_string())));
        }
        if let Some(inet6) = self.wild.inet6 {
            fields.push(("inet6".to_string(), Node::Str(inet6.to_string())));
        }
        for (k, v) in &self.endpoint_extras {
            fields.push((k.clone(), Node::from_value(v)));
        }
        Node::Obj(fields)
    }

    fn document(&self) -> Node {
        let a = &self.announced;
        let mut top = vec![
            ("serviceEndpoint".to_string(), self.endpoint(&a.service)),
            (
                "additionalEndpoints".to_string(),
                Node::Obj(
                    a.additional
                        .iter()
                        .map(|(name, addr)| (name.clone(), self.endpoint(addr)))
                        .collect(),
                ),
            ),
            (
                "status".to_string(),
                Node::Str(a.status.as_wire().to_string()),
            ),
        ];
        if let Some(shard) = a.shard {
            top.push(("shard".to_string(), Node::Lit(shard.to_string())));
        }
        if !a.metadata.is_empty() {
            top.push((
                "metadata".to_string(),
                Node::Obj(
                    a.metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), Node::Str(v.clone())))
                        .collect(),
                ),
            ));
        }
        if let Some(id) = self.wild.member_id {
            top.push(("member_id".to_string(), Node::Lit(id.to_string())));
        }
        for (k, v) in &self.top_extras {
            top.push((k.clone(), Node::from_value(v)));
        }
        Node::Obj(top)
    }

    fn text(&self) -> String {
        Render::render(self.writer, &self.tape, &self.document())
    }
}

const KNOWN_STATUSES: &[Status] = &[
    Status::Dead,
    Status::Starting,
    Status::Alive,
    Status::Stopping,
    Status::Stopped,
    Status::Warning,
];

fn written_by(writer: Writer) -> impl Strategy<Value = Written> {
    let announced = match writer {
        // The announcer always sets a shard (default 0).
        Writer::Finagle => arb_announced(ALL_STATUSES, any::<i32>().prop_map(Some).boxed(), 10),
        Writer::Commons => arb_announced(KNOWN_STATUSES, any::<Option<i32>>().boxed(), 0),
        // The instance id.
        Writer::Aurora => arb_announced(
            KNOWN_STATUSES,
            proptest::option::weighted(0.9, 0i32..2000).boxed(),
            0,
        ),
    };
    let aurora = writer == Writer::Aurora;
    // Only Aurora writes these.
    let wild = (
        proptest::option::weighted(0.7, any::<u32>()),
        proptest::option::weighted(0.5, any::<Ipv4Addr>()),
        proptest::option::weighted(0.3, any::<Ipv6Addr>()),
    )
        .prop_map(move |(member_id, inet, inet6)| WildExtras {
            member_id: member_id.filter(|_| aurora),
            inet: inet.filter(|_| aurora),
            inet6: inet6.filter(|_| aurora),
        });
    (
        announced,
        wild,
        extra_fields(),
        extra_fields(),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(
            move |(announced, wild, top_extras, endpoint_extras, tape)| Written {
                writer,
                announced,
                wild,
                top_extras,
                endpoint_extras,
                tape,
            },
        )
}

fn written_in_the_wild() -> impl Strategy<Value = Written> {
    prop_oneof![
        written_by(Writer::Finagle),
        written_by(Writer::Commons),
        written_by(Writer::Aurora),
    ]
}

// ---------------------------------------------------------------------------
// Near misses: a good member with one thing wrong.
// ---------------------------------------------------------------------------

/// One change to a member as we write it.
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove a top-level field.
    Remove(&'static str),
    /// Set a top-level field to any value.
    SetTop(&'static str, Value),
    /// Set `serviceEndpoint.host`.
    Host(Value),
    /// Set `serviceEndpoint.port`.
    Port(Value),
    /// Set (or add) one additional endpoint to any value.
    Additional(String, Value),
    /// Add a metadata entry with any value.
    Metadata(String, Value),
    /// Misspell a top-level key.
    Misspell(&'static str, String),
}

const TOP_FIELDS: &[&str] = &[
    "serviceEndpoint",
    "additionalEndpoints",
    "status",
    "shard",
    "metadata",
];

fn endpointish() -> BoxedStrategy<Value> {
    prop_oneof![
        arb_json(),
        (json_leaf(), json_leaf()).prop_map(|(h, p)| serde_json::json!({"host": h, "port": p})),
        (arb_host(), edge_number()).prop_map(|(h, p)| serde_json::json!({"host": h, "port": p})),
        arb_host_port().prop_map(|a| serde_json::json!({"host": a.host(), "port": a.port()})),
    ]
    .boxed()
}

fn mutation() -> BoxedStrategy<Mutation> {
    let top = select(TOP_FIELDS);
    prop_oneof![
        top.clone().prop_map(Mutation::Remove),
        (
            top.clone(),
            prop_oneof![json_leaf(), arb_json(), endpointish()]
        )
            .prop_map(|(k, v)| Mutation::SetTop(k, v)),
        prop_oneof![json_leaf(), arb_host().prop_map(Value::from)].prop_map(Mutation::Host),
        prop_oneof![
            edge_number(),
            json_leaf(),
            (1u16..=u16::MAX).prop_map(Value::from)
        ]
        .prop_map(Mutation::Port),
        (endpoint_name(), endpointish()).prop_map(|(n, v)| Mutation::Additional(n, v)),
        (odd_string(), prop_oneof![json_leaf(), arb_json()])
            .prop_map(|(k, v)| Mutation::Metadata(k, v)),
        (
            top,
            prop_oneof![
                Just("upper".to_string()),
                Just("lower".to_string()),
                Just(" ".to_string()),
                Just("\u{200b}".to_string()),
                odd_string()
            ]
        )
            .prop_map(|(k, how)| Mutation::Misspell(k, how)),
    ]
    .boxed()
}

/// The member as we write it, as a JSON object.
fn as_object(member: &Member) -> Map<String, Value> {
    match serde_json::from_slice(&codec::encode(member)) {
        Ok(Value::Object(map)) => map,
        other => panic!("encode wrote no object: {other:?}"),
    }
}

fn misspell(key: &str, how: &str) -> String {
    let k = match how {
        "upper" => key.to_uppercase(),
        "lower" => key.to_lowercase(),
        other => format!("{key}{other}"),
    };
    if k == key {
        format!("{key}_")
    } else {
        k
    }
}

/// A port JSON value that must be accepted: an integer from 1 to 65535.
fn valid_port(v: &Value) -> Option<u16> {
    v.as_i64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

// ---------------------------------------------------------------------------
// Checks of the bytes we write.
// ---------------------------------------------------------------------------

/// The top-level keys of a JSON object, in document order.
fn top_level_keys(data: &[u8]) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Keys>(data)
        .expect("encode writes an object")
        .0
}

/// True when no whitespace appears outside strings.
fn is_compact(text: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------

/// `n` cases, or `PROPTEST_CASES` when set (for a longer hunt).
fn cases(n: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig::with_cases(n)
}

proptest! {
    #![proptest_config(cases(512))]

    /// Any bytes at all: no panic, and classify agrees with decode.
    #[test]
    fn arbitrary_bytes_never_panic(
        name in child_name(),
        data in prop_oneof![
            4 => vec(any::<u8>(), 0..256),
            // Bytes that pass the `{"` sniff and then go wrong.
            4 => vec(any::<u8>(), 0..256).prop_map(|mut b| { b.splice(0..0, *b"{\""); b }),
            // Our own encoding with random bytes overwritten, inserted or cut.
            8 => (our_member(), vec((any::<Index>(), any::<u8>(), 0u8..3), 1..6)).prop_map(|(a, edits)| {
                let mut b = codec::encode(&a.member("m"));
                for (at, byte, op) in edits {
                    let i = at.index(b.len() + 1);
                    match op {
                        0 if i < b.len() => b[i] = byte,
                        1 => b.insert(i, byte),
                        _ if i < b.len() => { b.remove(i); }
                        _ => b.push(byte),
                    }
                }
                b
            }),
        ],
        filter in arb_filter(),
    ) {
        let _ = check_child(&name, &data, &filter)?;
    }

    /// Any JSON value, as the whole document, as the service endpoint, or as
    /// any one field of an otherwise good member: no panic, and classify
    /// agrees with decode.
    #[test]
    fn arbitrary_json_never_panics(
        name in child_name(),
        value in arb_json(),
        place in 0usize..4,
        field in select(TOP_FIELDS),
        base in our_member(),
        filter in arb_filter(),
    ) {
        let doc = match place {
            0 => value,
            1 => serde_json::json!({"serviceEndpoint": value}),
            2 => {
                let mut obj = as_object(&base.member("m"));
                obj.insert(field.to_string(), value);
                Value::Object(obj)
            }
            _ => serde_json::json!({"serviceEndpoint": {"host": "h", "port": 1}, "additionalEndpoints": {"x": value}, "status": "ALIVE"}),
        };
        let data = serde_json::to_vec(&doc).expect("a Value always serialises");
        let _ = check_child(&name, &data, &filter)?;
    }

    /// A good member with one field changed: no panic, classify agrees with
    /// decode, and each change has the effect the contract gives it.
    #[test]
    fn near_miss_members_fail_or_read_as_the_contract_says(
        a in our_member(),
        m in mutation(),
        filter in arb_filter(),
    ) {
        let member = a.member("member_0000000001");
        let mut obj = as_object(&member);
        match &m {
            Mutation::Remove(k) => { obj.remove(*k); }
            Mutation::SetTop(k, v) => { obj.insert(k.to_string(), v.clone()); }
            Mutation::Host(v) => { obj["serviceEndpoint"]["host"] = v.clone(); }
            Mutation::Port(v) => { obj["serviceEndpoint"]["port"] = v.clone(); }
            Mutation::Additional(n, v) => { obj["additionalEndpoints"][n.as_str()] = v.clone(); }
            Mutation::Metadata(k, v) => {
                let md = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
                md[k.as_str()] = v.clone();
            }
            Mutation::Misspell(k, how) => {
                if let Some(v) = obj.remove(*k) {
                    obj.insert(misspell(k, how), v);
                }
            }
        }
        let data = serde_json::to_vec(&obj).expect("a Value always serialises");
        let got = check_child("member_0000000001", &data, &filter)?;

        let service = a.service.clone();
        match &m {
            Mutation::Remove("serviceEndpoint") | Mutation::Misspell("serviceEndpoint", _) => {
                prop_assert_eq!(got, Err(DecodeError::MissingServiceEndpoint));
            }
            Mutation::Remove(field) | Mutation::Misspell(field, _) => {
                // Every other field is optional: its default is read.
                let d = got.expect("only serviceEndpoint is required");
                match *field {
                    "additionalEndpoints" => prop_assert!(d.member.additional_endpoints().is_empty()),
                    "status" => prop_assert_eq!(d.member.status(), Status::Unknown),
                    "shard" => prop_assert_eq!(d.member.shard(), None),
                    _ => prop_assert!(d.member.metadata().is_empty()),
                }
            }
            Mutation::Port(v) => match valid_port(v) {
                Some(port) => {
                    let d = got.expect("an integer port in 1..=65535 is read");
                    prop_assert_eq!(d.member.addr(), &HostPort::new(service.host(), port).unwrap());
                }
                None => prop_assert!(
                    matches!(&got, Err(DecodeError::InvalidEndpoint { field, .. }) if field == "serviceEndpoint"),
                    "port {} read as {:?}", v, got
                ),
            },
            Mutation::Host(v) => match v.as_str().map(|h| HostPort::new(h, service.port())) {
                Some(Ok(addr)) => {
                    let d = got.expect("a valid host is read");
                    prop_assert_eq!(d.member.addr(), &addr);
                }
                _ => prop_assert!(
                    matches!(&got, Err(DecodeError::InvalidEndpoint { field, .. }) if field == "serviceEndpoint"),
                    "host {} read as {:?}", v, got
                ),
            },
            Mutation::Additional(name, v) => {
                // A bad additional endpoint drops that endpoint, never the member.
                let d = got.expect("an additional endpoint never breaks the member");
                let want = v.as_object().and_then(|o| {
                    let host = o.get("host")?.as_str()?;
                    HostPort::new(host, valid_port(o.get("port")?)?).ok()
                });
                prop_assert_eq!(d.member.additional_endpoints().get(name), want.as_ref());
                prop_assert_eq!(d.dropped.len(), usize::from(want.is_none()));
                let mut others = d.member.additional_endpoints().clone();
                others.remove(name);
                let mut before = a.additional.clone();
                before.remove(name);
                prop_assert_eq!(others, before);
                prop_assert_eq!(d.member.service_endpoint(), &service);
            }
            Mutation::Metadata(k, v) => match v {
                Value::String(s) => {
                    let d = got.expect("string metadata is read");
                    prop_assert_eq!(d.member.metadata().get(k), Some(s));
                }
                _ => prop_assert!(
                    matches!(&got, Err(DecodeError::WrongType { field: "metadata", .. })),
                    "metadata {} read as {:?}", v, got
                ),
            },
            Mutation::SetTop("status", v) => match v {
                Value::Null => prop_assert_eq!(got.expect("null status").member.status(), Status::Unknown),
                Value::String(s) => prop_assert_eq!(got.expect("string status").member.status(), Status::from_wire(s)),
                _ => prop_assert!(
                    matches!(&got, Err(DecodeError::WrongType { field: "status", .. })),
                    "status {} read as {:?}", v, got
                ),
            },
            Mutation::SetTop("shard", v) => {
                let want = if v.is_null() { Some(None) } else { v.as_i64().and_then(|s| i32::try_from(s).ok()).map(Some) };
                match want {
                    Some(shard) => prop_assert_eq!(got.expect("a 32-bit shard").member.shard(), shard),
                    None => prop_assert!(
                        matches!(&got, Err(DecodeError::WrongType { field: "shard", .. })),
                        "shard {} read as {:?}", v, got
                    ),
                }
            }
            Mutation::SetTop(..) => {}
        }
    }

    /// Every member we encode: compact JSON starting with `{"`, fields in the
    /// contract's order, and it decodes to itself; classify serves it exactly
    /// when the rules say, on the endpoint the filter names.
    #[test]
    fn every_member_we_encode_decodes_to_itself(
        a in our_member(),
        name in member_name(),
        shard_pick in any::<u8>(),
        endpoint_pick in any::<Index>(),
        other_shard in prop_oneof![-1i32..4, any::<i32>()],
    ) {
        let member = a.member(&name);
        let data = codec::encode(&member);
        prop_assert!(data.len() <= MAX_MEMBER_BYTES);
        let text = std::str::from_utf8(&data).expect("encode writes UTF-8");
        prop_assert!(text.starts_with("{\"serviceEndpoint\":{\"host\":"), "{}", text);
        prop_assert!(is_compact(text), "{}", text);
        let mut want_keys = vec!["serviceEndpoint", "additionalEndpoints", "status"];
        if a.shard.is_some() {
            want_keys.push("shard");
        }
        if !a.metadata.is_empty() {
            want_keys.push("metadata");
        }
        prop_assert_eq!(top_level_keys(&data), want_keys);

        prop_assert_eq!(
            codec::decode(&name, &data),
            Ok(Decoded { member: member.clone(), dropped: Vec::new() })
        );

        let filter = filter_for(&a, shard_pick, endpoint_pick, other_shard);
        let reading = classify(&name, &data, &filter);
        prop_assert!(reading.dropped.is_empty());
        let want = expected_verdict(&member, &filter);
        let served = a.status == Status::Alive
            && filter.shard.is_none_or(|s| a.shard == Some(s))
            && filter.endpoint.as_ref().is_none_or(|n| a.additional.contains_key(n));
        prop_assert_eq!(matches!(want, Verdict::Member(_)), served);
        prop_assert_eq!(reading.verdict, want);
    }

    /// Finagle, Twitter commons and Aurora members, with random field order,
    /// whitespace, escapes and unknown fields, read as the member they
    /// announce.
    #[test]
    fn members_from_every_writer_are_read_right(
        w in written_in_the_wild(),
        name in member_name(),
        filter in arb_filter(),
    ) {
        let text = w.text();
        let want = w.announced.member(&name);
        prop_assert_eq!(
            codec::decode(&name, text.as_bytes()),
            Ok(Decoded { member: want, dropped: Vec::new() }),
            "{:?} wrote {}", w.writer, text
        );
        let _ = check_child(&name, text.as_bytes(), &filter)?;
    }
}

proptest! {
    // Each case builds and parses a few hundred levels, or up to a MiB of
    // data; fewer are enough.
    #![proptest_config(cases(64))]

    /// Member data right at and past the size limit.
    #[test]
    fn data_around_the_size_limit_is_refused_not_parsed(
        extra in 0usize..64,
        byte in any::<u8>(),
        filter in arb_filter(),
    ) {
        let data = vec![byte; MAX_MEMBER_BYTES - 32 + extra];
        let got = check_child("member_0000000001", &data, &filter)?;
        if data.len() > MAX_MEMBER_BYTES {
            prop_assert_eq!(got, Err(DecodeError::TooLarge(data.len())));
        }
    }



    /// JSON nested past serde_json's recursion limit, as the document or in
    /// any member field: an error or a member, never a stack overflow.
    #[test]
    fn deep_nesting_never_panics(
        deep in deep_json(),
        place in 0usize..3,
        field in select(TOP_FIELDS),
        base in our_member(),
        filter in arb_filter(),
    ) {
        let doc = match place {
            0 => deep,
            1 => {
                let mut obj = as_object(&base.member("m"));
                obj.insert(field.to_string(), deep);
                Value::Object(obj)
            }
            _ => {
                let mut obj = as_object(&base.member("m"));
                obj.insert("unknownField".to_string(), deep);
                Value::Object(obj)
            }
        };
        let data = serde_json::to_vec(&doc).expect("a Value always serialises");
        let _ = check_child("member_0000000001", &data, &filter)?;
    }

    /// Number literals no `f64` or `i64` holds, put where a number goes.
    #[test]
    fn huge_number_literals_never_panic(
        a in our_member(),
        literal in prop_oneof![
            select(&[
                "1e400", "-1e400", "1e-400", "-0", "-0.0", "0e0", "1E+2", "6.5535e4",
                "65535.0000000000000000001", "18446744073709551616",
                "-9223372036854775809", "123456789012345678901234567890",
            ][..]).prop_map(String::from),
            // 99999 and longer: past any port.
            (5usize..400).prop_map(|n| "9".repeat(n)),
            (1usize..400).prop_map(|n| format!("-{}", "9".repeat(n))),
            (1usize..400).prop_map(|n| format!("0.{}1", "0".repeat(n))),
        ],
        place in 0usize..4,
        filter in arb_filter(),
    ) {
        // Written as text: serde_json's Value cannot hold these.
        let base = String::from_utf8(codec::encode(&a.member("m"))).unwrap();
        let port = format!("\"port\":{}", a.service.port());
        let text = match place {
            0 => base.replacen(&port, &format!("\"port\":{literal}"), 1),
            1 => format!("{{\"shard\":{literal},{}", &base[1..]),
            2 => format!("{{\"unknownField\":{literal},{}", &base[1..]),
            _ => literal.clone(),
        };
        let got = check_child("member_0000000001", text.as_bytes(), &filter)?;
        // Known limit: in an unknown field, a number past f64 (`1e400`, 400
        // digits) or nesting past 128 levels makes the whole member
        // unreadable (serde_json refuses the document), where Jackson and
        // Python read it. No writer in the wild writes either, so here it is
        // only checked not to panic.
        if place == 0 {
            // Finagle drops an endpoint whose port is not an integer; none of
            // these is an integer in 1..=65535.
            prop_assert!(got.is_err(), "port {} read as {:?}", literal, got);
        }
    }
}

proptest! {
    // Up to a MiB per case: a few cases cover the sizes that matter.
    #![proptest_config(cases(16))]

    /// Large members too: whatever ZooKeeper can hold of what we write, our
    /// readers read. (Past its znode limit the create itself fails.)
    #[test]
    fn big_members_we_encode_decode_to_themselves(a in big_member(), name in member_name()) {
        let member = a.member(&name);
        let data = codec::encode(&member);
        let want = if data.len() <= MAX_MEMBER_BYTES {
            Ok(member)
        } else {
            Err(DecodeError::TooLarge(data.len()))
        };
        prop_assert_eq!(codec::decode(&name, &data).map(|d| d.member), want, "{} bytes", data.len());
    }
}

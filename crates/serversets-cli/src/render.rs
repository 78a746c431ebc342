//! How members look on the terminal and in JSON output.

use serde_json::{json, Map, Value};
use serversets_core::{Member, Snapshot};

use crate::vectors::show_weight;

/// One member as the JSON object `watch --json` prints: `member` (the znode
/// name), `host` and `port` (the served address), `status`, `shard` (null
/// when absent), `additional_endpoints` (name -> `{host, port}`),
/// `metadata` and `weight` (1.0 unless Finagle `vector_` znodes set it).
///
/// ```
/// use serversets_core::{HostPort, Member};
/// use serversets_cli::member_json;
///
/// let m = Member::builder("member_0000000001", HostPort::new("10.0.0.1", 8080)?)
///     .additional_endpoint("http", HostPort::new("10.0.0.1", 8081)?)
///     .build();
/// let v = member_json(&m);
/// assert_eq!(v["member"], "member_0000000001");
/// assert_eq!(v["port"], 8080);
/// assert!(v["shard"].is_null());
/// assert_eq!(v["additional_endpoints"]["http"]["port"], 8081);
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
pub fn member_json(m: &Member) -> Value {
    let endpoints: Map<String, Value> = m
        .additional_endpoints()
        .iter()
        .map(|(name, addr)| {
            (
                name.clone(),
                json!({"host": addr.host(), "port": addr.port()}),
            )
        })
        .collect();
    let metadata: Map<String, Value> = m
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "member": m.id().as_str(),
        "host": m.host(),
        "port": m.port(),
        "status": m.status().as_wire(),
        "shard": m.shard(),
        "additional_endpoints": endpoints,
        "metadata": metadata,
        "weight": m.weight(),
    })
}

/// A snapshot as one JSON line: an array of [`member_json`] objects.
pub(crate) fn snapshot_json(s: &Snapshot) -> String {
    Value::Array(s.iter().map(member_json).collect()).to_string()
}

/// `member_0000000001  10.0.0.1:8080  ALIVE  weight=2.5  shard=1  endpoints{http=10.0.0.1:8081}  metadata{weight=2}`
/// (the weight only when it is not 1.0)
pub(crate) fn member_line(m: &Member) -> String {
    format!("{}  {}", m.id(), member_details(m))
}

/// Everything [`member_line`] shows except the member's name.
pub(crate) fn member_details(m: &Member) -> String {
    let mut line = format!("{}  {}", m.addr(), m.status());
    if m.weight() != 1.0 {
        line.push_str(&format!("  weight={}", show_weight(m.weight())));
    }
    if let Some(shard) = m.shard() {
        line.push_str(&format!("  shard={shard}"));
    }
    if !m.additional_endpoints().is_empty() {
        let eps: Vec<String> = m
            .additional_endpoints()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(&format!("  endpoints{{{}}}", eps.join(",")));
    }
    if !m.metadata().is_empty() {
        let md: Vec<String> = m
            .metadata()
            .iter()
            .map(|(k, v)| format!("{k}={}", printable(v.as_bytes())))
            .collect();
        line.push_str(&format!("  metadata{{{}}}", md.join(",")));
    }
    line
}

/// Bytes as text safe for one terminal line: valid UTF-8 is kept, control
/// characters and invalid bytes are escaped (`\n`, `\u{1b}`, `\xff`).
pub(crate) fn printable(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len());
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets_core::HostPort;

    #[test]
    fn lines_show_everything_announced() {
        let m = Member::builder(
            "member_0000000001",
            HostPort::new("10.0.0.1", 8080).unwrap(),
        )
        .additional_endpoint("http", HostPort::new("10.0.0.1", 8081).unwrap())
        .additional_endpoint("admin", HostPort::new("10.0.0.1", 9990).unwrap())
        .shard(3)
        .metadata("weight", "2")
        .build();
        assert_eq!(
            member_line(&m),
            "member_0000000001  10.0.0.1:8080  ALIVE  shard=3  endpoints{admin=10.0.0.1:9990,http=10.0.0.1:8081}  metadata{weight=2}"
        );
        let v = member_json(&m);
        assert_eq!(v["shard"], 3);
        assert_eq!(v["metadata"]["weight"], "2");
        assert_eq!(v["status"], "ALIVE");
        assert_eq!(v["weight"], 1.0);
        let heavy = m.with_weight(2.5);
        assert!(member_line(&heavy).contains("  ALIVE  weight=2.5  shard=3  "));
        assert_eq!(member_json(&heavy)["weight"], 2.5);
        let s = Snapshot::from_members(1, [m]);
        assert!(snapshot_json(&s).starts_with("[{") && !snapshot_json(&s).contains('\n'));
    }

    #[test]
    fn printable_escapes_what_a_terminal_should_not_see() {
        assert_eq!(printable(r#"{"a":"é"}"#.as_bytes()), r#"{"a":"é"}"#);
        assert_eq!(printable(b"a\nb\x1b[0m\xff"), "a\\nb\\u{1b}[0m\\xff");
    }
}

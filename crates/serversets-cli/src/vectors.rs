//! Reading a set's children for `dump`, `weights` and the commands that
//! write Finagle `vector_` znodes: every child with its data, the vector
//! znodes decoded, and how they weigh each member.

use serde_json::{json, Value};
use serversets_core::vector::{self, Descriptor, Vector, VectorError, DRAIN};
use serversets_core::zookeeper_client as zk;
use serversets_core::{classify, Member, MemberFilter, Reading, Verdict};

use crate::args::GlobalArgs;
use crate::error::Error;
use crate::target::{raw_client, set_path, zk_failed};

/// The prefix Finagle reads weight znodes by.
pub(crate) const VECTOR_PREFIX: &str = "vector_";

/// One child as read from ZooKeeper.
pub(crate) struct RawChild {
    pub(crate) name: String,
    pub(crate) data: Vec<u8>,
    pub(crate) stat: zk::Stat,
}

/// A set's children as read.
pub(crate) struct Listing {
    /// Every child with its data, sorted by name.
    pub(crate) children: Vec<RawChild>,
    /// Children listed but deleted before their data was read: they are
    /// no longer part of the set, but the listing is not one moment's.
    pub(crate) vanished: Vec<String>,
}

/// Every child of `path` with its data; `None` when the path does not
/// exist.
pub(crate) async fn read_children(
    client: &zk::Client,
    path: &str,
) -> Result<Option<Listing>, Error> {
    let mut names = match client.list_children(path).await {
        Ok(names) => names,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(zk_failed("list", path, e)),
    };
    names.sort();
    let mut children = Vec::with_capacity(names.len());
    let mut vanished = Vec::new();
    for name in names {
        let child_path = format!("{path}/{name}");
        match client.get_data(&child_path).await {
            Ok((data, stat)) => children.push(RawChild { name, data, stat }),
            Err(zk::Error::NoNode) => vanished.push(name),
            Err(e) => return Err(zk_failed("read", &child_path, e)),
        }
    }
    Ok(Some(Listing { children, vanished }))
}

/// A set read as `dump` and `weights` show it: every child with its data,
/// classified as a watch with the command's filter would, each member
/// weighed under the set's vector znodes.
pub(crate) struct SetRead {
    /// The set's path.
    pub(crate) path: String,
    /// The `vector_` children, decoded.
    pub(crate) vectors: Vec<VectorNode>,
    /// Every child, sorted by name.
    pub(crate) children: Vec<ChildRead>,
}

/// One child of a [`SetRead`].
pub(crate) struct ChildRead {
    pub(crate) name: String,
    pub(crate) data: Vec<u8>,
    /// The session owning an ephemeral znode; 0 for a persistent one.
    pub(crate) ephemeral_owner: i64,
    /// What a watch makes of it before any vector znode applies.
    pub(crate) reading: Reading,
    /// For a member, served by the filter or not: its weight under the
    /// set's vector znodes.
    pub(crate) weighing: Option<Weighing>,
    /// For a `vector_` znode: what readers make of it.
    pub(crate) vector: Option<VectorNode>,
}

impl ChildRead {
    /// The member this child describes, with why the filter would not serve
    /// it (drain aside); `None` for a child that is no usable member.
    pub(crate) fn member(&self) -> Option<(&Member, Option<&str>)> {
        match &self.reading.verdict {
            Verdict::Member(m) => Some((m, None)),
            Verdict::NotServed { member, reason } => Some((member, Some(reason))),
            Verdict::Malformed(_) | Verdict::Ignored(_) => None,
        }
    }
}

/// Reads the set named by the global options, judging members as a watch
/// serving `endpoint` (a named additional endpoint) of `shard` would.
///
/// # Errors
///
/// The set's options are wrong, ZooKeeper cannot be reached or refuses a
/// read, or the set does not exist.
pub(crate) async fn read_set(
    g: &GlobalArgs,
    endpoint: Option<String>,
    shard: Option<i32>,
) -> Result<SetRead, Error> {
    let path = set_path(g)?;
    let filter = MemberFilter { endpoint, shard };
    let client = raw_client(g).await?;
    let Some(listing) = read_children(&client, &path).await? else {
        return Err(Error::Failed(format!(
            "{path} does not exist (a watch sees an empty set until it is created)"
        )));
    };
    let vectors = vector_nodes(&listing.children);
    let children = listing
        .children
        .into_iter()
        .map(|c| {
            let reading = classify(&c.name, &c.data, &filter);
            let weighing = match &reading.verdict {
                Verdict::Member(m) | Verdict::NotServed { member: m, .. } => {
                    Some(weigh(m, &vectors))
                }
                Verdict::Malformed(_) | Verdict::Ignored(_) => None,
            };
            ChildRead {
                vector: vectors.iter().find(|v| v.name == c.name).cloned(),
                name: c.name,
                data: c.data,
                ephemeral_owner: c.stat.ephemeral_owner,
                reading,
                weighing,
            }
        })
        .collect();
    Ok(SetRead {
        path,
        vectors,
        children,
    })
}

/// One `vector_` znode as read.
#[derive(Debug, Clone)]
pub(crate) struct VectorNode {
    pub(crate) name: String,
    /// The data version read (the replace checks it).
    pub(crate) version: i32,
    pub(crate) data: Vec<u8>,
    /// What a watch makes of it: descriptors and notes, or why it is skipped.
    pub(crate) read: Result<Vector, VectorError>,
    /// How many entries its `vector` array holds, usable or not.
    entries: usize,
}

impl VectorNode {
    pub(crate) fn new(name: &str, data: Vec<u8>, version: i32) -> VectorNode {
        let read = vector::decode(&data);
        let entries = match &read {
            Ok(_) => serde_json::from_slice::<Value>(&data)
                .ok()
                .and_then(|v| v.get("vector").and_then(Value::as_array).map(Vec::len))
                .unwrap_or(0),
            Err(_) => 0,
        };
        VectorNode {
            name: name.to_string(),
            version,
            data,
            read,
            entries,
        }
    }

    /// The znode's only descriptor when it holds exactly one (and nothing
    /// else that was skipped): the kind of znode `weight` writes, and the
    /// only kind it replaces.
    pub(crate) fn sole(&self) -> Option<&Descriptor> {
        match &self.read {
            Ok(v) if self.entries == 1 && v.descriptors.len() == 1 => v.descriptors.first(),
            _ => None,
        }
    }

    /// The descriptors a watch applies (none for an unusable znode).
    pub(crate) fn descriptors(&self) -> &[Descriptor] {
        match &self.read {
            Ok(v) => &v.descriptors,
            Err(_) => &[],
        }
    }

    /// What an operator should know about it.
    pub(crate) fn notes(&self) -> &[String] {
        match &self.read {
            Ok(v) => &v.notes,
            Err(_) => &[],
        }
    }

    /// What it holds, for text output: its descriptors, or why readers
    /// skip it.
    pub(crate) fn summary(&self) -> String {
        match &self.read {
            Err(e) => format!("invalid vector: {e}; skipped by every reader"),
            Ok(_) if self.descriptors().is_empty() => "no usable descriptor".into(),
            Ok(_) => self
                .descriptors()
                .iter()
                .map(descriptor_text)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// `{"name", "descriptors", "notes", "error"}` for JSON output.
    pub(crate) fn json(&self) -> Value {
        json!({
            "name": self.name,
            "descriptors": self.descriptors().iter().map(descriptor_json).collect::<Vec<_>>(),
            "notes": self.notes(),
            "error": self.read.as_ref().err().map(|e| format!("invalid vector: {e}")),
        })
    }
}

/// The vector znodes among `children`.
pub(crate) fn vector_nodes(children: &[RawChild]) -> Vec<VectorNode> {
    children
        .iter()
        .filter(|c| c.name.starts_with(VECTOR_PREFIX))
        .map(|c| VectorNode::new(&c.name, c.data.clone(), c.stat.version))
        .collect()
}

/// A member's weight under a set of vector znodes, with what gave it.
#[derive(Debug, Clone)]
pub(crate) struct Weighing {
    /// The product of every selecting descriptor, `None` when drained.
    pub(crate) weight: Option<f64>,
    /// Each selecting descriptor with the znode holding it.
    pub(crate) from: Vec<(String, Descriptor)>,
}

impl Weighing {
    /// `weight=2.0`, or `drained`.
    pub(crate) fn label(&self) -> String {
        match self.weight {
            Some(w) => format!("weight={}", show_weight(w)),
            None => "drained".into(),
        }
    }

    /// `vector_0000000004 inet=10.0.0.3:80 weight=2.0, ...` (empty when no
    /// descriptor selects the member).
    pub(crate) fn sources(&self) -> String {
        self.from
            .iter()
            .map(|(node, d)| format!("{node} {}", descriptor_text(d)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The znodes that drain the member.
    pub(crate) fn drained_by(&self) -> Vec<&(String, Descriptor)> {
        self.from
            .iter()
            .filter(|(_, d)| d.weight == DRAIN)
            .collect()
    }

    /// The weight as JSON: the number, -1.0 when drained.
    pub(crate) fn json_weight(&self) -> Value {
        json!(self.weight.unwrap_or(DRAIN))
    }

    /// The sources as JSON: `[{"vector", "select", "weight"}]`.
    pub(crate) fn json_sources(&self) -> Value {
        Value::Array(
            self.from
                .iter()
                .map(|(node, d)| {
                    json!({"vector": node, "select": d.selector.to_string(), "weight": d.weight})
                })
                .collect(),
        )
    }
}

/// How `vectors` weigh `member`, exactly as a watch does (the number comes
/// from `serversets_core::vector::weight_of`).
pub(crate) fn weigh(member: &Member, vectors: &[VectorNode]) -> Weighing {
    let usable = vectors.iter().filter_map(|v| v.read.as_ref().ok());
    let weight = vector::weight_of(member, usable);
    let from = vectors
        .iter()
        .flat_map(|v| v.descriptors().iter().map(move |d| (v, d)))
        .filter(|(_, d)| d.selector.selects(member))
        .map(|(v, d)| (v.name.clone(), d.clone()))
        .collect();
    Weighing { weight, from }
}

/// `inet=10.0.0.3:80 weight=2.0` (with `priority=N` when not 1).
pub(crate) fn descriptor_text(d: &Descriptor) -> String {
    let mut text = format!("{} weight={}", d.selector, show_weight(d.weight));
    if d.priority != 1 {
        text.push_str(&format!(" priority={}", d.priority));
    }
    text
}

fn descriptor_json(d: &Descriptor) -> Value {
    json!({"select": d.selector.to_string(), "weight": d.weight, "priority": d.priority})
}

/// A weight for people: always with a fraction (`2.0`, as Finagle wants it
/// written), at most six decimals (a product such as 1.2 × 1.3 shows as
/// `1.56`, not `1.5600000000000003`).
pub(crate) fn show_weight(w: f64) -> String {
    let text = format!("{w:.6}");
    let text = text.trim_end_matches('0');
    if let Some(stripped) = text.strip_suffix('.') {
        format!("{stripped}.0")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets_core::vector::Selector;
    use serversets_core::HostPort;

    #[test]
    fn weights_show_as_doubles_without_float_noise() {
        assert_eq!(show_weight(2.0), "2.0");
        assert_eq!(show_weight(-1.0), "-1.0");
        assert_eq!(show_weight(0.25), "0.25");
        assert_eq!(show_weight(1.2 * 1.3), "1.56");
        assert_eq!(show_weight(0.0), "0.0");
    }

    #[test]
    fn only_one_descriptor_nodes_are_sole() {
        let one = VectorNode::new(
            "vector_1",
            br#"{"vector":[{"select":"inet=h:1","weight":2.0,"priority":1}]}"#.to_vec(),
            0,
        );
        assert_eq!(
            one.sole().map(|d| d.selector.clone()),
            Some(Selector::Inet("h:1".into()))
        );
        // A second entry, even one Finagle skips, makes it someone else's.
        let two = VectorNode::new(
            "vector_2",
            br#"{"vector":[{"select":"inet=h:1","weight":2.0},{"select":"colo=x","weight":2.0}]}"#
                .to_vec(),
            0,
        );
        assert!(two.sole().is_none());
        assert_eq!(two.descriptors().len(), 1);
        let bad = VectorNode::new("vector_3", b"nope".to_vec(), 0);
        assert!(bad.sole().is_none());
        assert!(bad.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid vector: ")));
    }

    #[test]
    fn weighing_names_its_sources() {
        let m = Member::builder("member_0000000001", HostPort::new("h", 1).unwrap())
            .shard(2)
            .build();
        let vs = [
            VectorNode::new(
                "vector_1",
                br#"{"vector":[{"select":"inet=h:1","weight":2.0}]}"#.to_vec(),
                0,
            ),
            VectorNode::new(
                "vector_2",
                br#"{"vector":[{"select":"shard=2","weight":1.5}]}"#.to_vec(),
                0,
            ),
            VectorNode::new(
                "vector_3",
                br#"{"vector":[{"select":"shard=3","weight":-1.0}]}"#.to_vec(),
                0,
            ),
        ];
        let w = weigh(&m, &vs);
        assert_eq!(w.weight, Some(3.0));
        assert_eq!(w.label(), "weight=3.0");
        assert_eq!(
            w.sources(),
            "vector_1 inet=h:1 weight=2.0, vector_2 shard=2 weight=1.5"
        );
        let drained = Member::builder("member_0000000002", HostPort::new("h", 2).unwrap())
            .shard(3)
            .build();
        let w = weigh(&drained, &vs);
        assert_eq!(w.label(), "drained");
        assert_eq!(w.drained_by().len(), 1);
        assert_eq!(w.json_weight(), json!(-1.0));
    }
}

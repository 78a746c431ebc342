//! `serversets dump`: every child of a set, its raw data, and how a watch
//! reads it. The answer to "why is my member not seen?".

use std::io::Write;

use serde_json::{json, Value};

use crate::args::{DumpArgs, GlobalArgs};
use crate::error::Error;
use crate::render::{member_details, member_json, printable};
use crate::vectors::{descriptor_text, read_set, ChildRead as Child, VectorNode, Weighing};
use serversets_core::{Reading, Verdict};

/// Raw data longer than this is cut in text output (JSON output has it all).
const MAX_SHOWN_DATA: usize = 2048;

pub(crate) async fn run(
    g: &GlobalArgs,
    a: &DumpArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    let set = read_set(g, a.endpoint.clone(), a.shard).await?;
    let path = set.path;
    let mut children = set.children;
    for c in &mut children {
        if let Some(weighing) = &c.weighing {
            apply_weighing(&mut c.reading, weighing);
        }
    }
    if a.json {
        for c in &children {
            writeln!(out, "{}", child_json(&path, c))?;
        }
    } else {
        print_text(out, &path, &children)?;
    }
    out.flush()?;
    Ok(())
}

/// Applies a member's weighing to its reading, as a watch does: the member
/// gets its weight, or a served one becomes "not served" when drained.
fn apply_weighing(reading: &mut Reading, weighing: &Weighing) {
    let (member, served) = match &reading.verdict {
        Verdict::Member(m) => (m, true),
        Verdict::NotServed { member, .. } => (member, false),
        _ => return,
    };
    match (&weighing.weight, served) {
        (Some(w), _) => {
            let weighed = member.with_weight(*w);
            match &mut reading.verdict {
                Verdict::Member(m) | Verdict::NotServed { member: m, .. } => *m = weighed,
                _ => {}
            }
        }
        (None, true) => {
            let by: Vec<String> = weighing
                .drained_by()
                .iter()
                .map(|(node, d)| format!("{node} ({})", descriptor_text(d)))
                .collect();
            reading.verdict = Verdict::NotServed {
                member: member.clone(),
                reason: format!("drained by {}", by.join(", ")),
            };
        }
        (None, false) => {}
    }
}

/// The label of a child: `vector` for a usable vector znode, `malformed`
/// for an unusable one, else the verdict's.
fn label(c: &Child) -> &'static str {
    match &c.vector {
        Some(v) if v.read.is_ok() => "vector",
        Some(_) => "malformed",
        None => c.reading.verdict.label(),
    }
}

fn print_text(out: &mut (dyn Write + Send), path: &str, children: &[Child]) -> std::io::Result<()> {
    let count = |want: &str| children.iter().filter(|c| label(c) == want).count();
    let vectors = count("vector");
    let noted = children
        .iter()
        .filter(|c| c.vector.as_ref().is_some_and(|v| !v.notes().is_empty()))
        .count();
    let vector_part = match (vectors, noted) {
        (0, _) => String::new(),
        (n, 0) => format!(", {n} vector{}", if n == 1 { "" } else { "s" }),
        (n, k) => format!(
            ", {n} vector{} ({k} with notes)",
            if n == 1 { "" } else { "s" }
        ),
    };
    writeln!(
        out,
        "{path}: {} child{}: {} member{}, {} not served, {} malformed, {} ignored{vector_part}",
        children.len(),
        if children.len() == 1 { "" } else { "ren" },
        count("member"),
        if count("member") == 1 { "" } else { "s" },
        count("not served"),
        count("malformed"),
        count("ignored"),
    )?;
    let weighed = |c: &Child| {
        c.weighing
            .as_ref()
            .filter(|w| w.weight.is_some() && !w.from.is_empty())
            .map(|w| w.sources())
    };
    let width = children.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in children {
        let detail = match (&c.vector, &c.reading.verdict) {
            (Some(v), _) => v.summary(),
            (None, Verdict::Member(m)) => member_details(m),
            (None, Verdict::NotServed { member, reason }) => {
                format!("{reason}: {}", member_details(member))
            }
            (None, Verdict::Malformed(e)) => e.to_string(),
            (None, Verdict::Ignored(why)) => why.clone(),
        };
        writeln!(out, "{:width$}  {:<10}  {detail}", c.name, label(c))?;
        if let Some(v) = &c.vector {
            for note in v.notes() {
                writeln!(out, "{:width$}    note: {note}", "")?;
            }
        }
        if let Some(sources) = weighed(c) {
            writeln!(out, "{:width$}    weight from {sources}", "")?;
        }
        for d in &c.reading.dropped {
            writeln!(out, "{:width$}    dropped {d}", "")?;
        }
        if c.vector.is_some() && c.ephemeral_owner != 0 {
            writeln!(
                out,
                "{:width$}    ephemeral, session {:#x}: it goes when its writer's session ends",
                "", c.ephemeral_owner
            )?;
        }
        if c.name.starts_with("member_") {
            if c.ephemeral_owner == 0 {
                writeln!(
                    out,
                    "{:width$}    persistent znode: it stays when its writer dies",
                    ""
                )?;
            } else {
                writeln!(
                    out,
                    "{:width$}    ephemeral, session {:#x}",
                    "", c.ephemeral_owner
                )?;
            }
        }
        writeln!(out, "{:width$}    data: {}", "", shown_data(&c.data))?;
    }
    Ok(())
}

fn shown_data(data: &[u8]) -> String {
    if data.is_empty() {
        return "(empty)".into();
    }
    if data.len() > MAX_SHOWN_DATA {
        format!(
            "{}... ({} bytes in all)",
            printable(&data[..MAX_SHOWN_DATA]),
            data.len()
        )
    } else {
        printable(data)
    }
}

fn child_json(path: &str, c: &Child) -> Value {
    let (mut member, reason) = match (&c.vector, &c.reading.verdict) {
        (Some(v), _) => (
            Value::Null,
            json!(v
                .read
                .as_ref()
                .err()
                .map(|e| format!("invalid vector: {e}"))),
        ),
        (None, Verdict::Member(m)) => (member_json(m), Value::Null),
        (None, Verdict::NotServed { member, reason }) => (member_json(member), json!(reason)),
        (None, Verdict::Malformed(e)) => (Value::Null, json!(e.to_string())),
        (None, Verdict::Ignored(why)) => (Value::Null, json!(why)),
    };
    if let (Some(obj), Some(w)) = (member.as_object_mut(), &c.weighing) {
        obj.insert("weight".into(), w.json_weight());
    }
    json!({
        "name": c.name,
        "path": format!("{path}/{}", c.name),
        "verdict": label(c),
        "reason": reason,
        "member": member,
        "dropped": c.reading.dropped.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "ephemeral_owner": (c.ephemeral_owner != 0).then(|| format!("{:#x}", c.ephemeral_owner)),
        "data": String::from_utf8_lossy(&c.data),
        "vector": c.vector.as_ref().map(VectorNode::json),
    })
}

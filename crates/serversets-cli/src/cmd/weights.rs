//! `serversets weights`: a set's `vector_` znodes, and the weight every
//! member ends up with (and which descriptors gave it).

use std::io::Write;

use serde_json::{json, Value};
use serversets_core::Member;

use crate::args::{GlobalArgs, WeightsArgs};
use crate::error::Error;
use crate::render::member_json;
use crate::vectors::{read_set, VectorNode, Weighing};

/// One member with its weight.
struct Row<'a> {
    member: &'a Member,
    weighing: &'a Weighing,
    /// Why a watch does not serve it, drain aside (status, shard, endpoint).
    not_served: Option<&'a str>,
}

pub(crate) async fn run(
    g: &GlobalArgs,
    a: &WeightsArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    let set = read_set(g, a.endpoint.clone(), a.shard).await?;
    let (path, vectors) = (&set.path, &set.vectors);
    let mut malformed = 0;
    let mut rows = Vec::new();
    for c in set
        .children
        .iter()
        .filter(|c| c.name.starts_with("member_"))
    {
        match (c.member(), &c.weighing) {
            (Some((member, not_served)), Some(weighing)) => rows.push(Row {
                member,
                weighing,
                not_served,
            }),
            _ => malformed += 1,
        }
    }
    if a.json {
        writeln!(out, "{}", to_json(path, vectors, &rows))?;
    } else {
        print_text(out, path, vectors, &rows, malformed)?;
    }
    out.flush()?;
    Ok(())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_text(
    out: &mut (dyn Write + Send),
    path: &str,
    vectors: &[VectorNode],
    rows: &[Row<'_>],
    malformed: usize,
) -> std::io::Result<()> {
    let noted = vectors.iter().filter(|v| !v.notes().is_empty()).count();
    let invalid = vectors.iter().filter(|v| v.read.is_err()).count();
    let mut flags = Vec::new();
    if noted > 0 {
        flags.push(format!("{noted} with notes"));
    }
    if invalid > 0 {
        flags.push(format!("{invalid} invalid"));
    }
    let drained = rows.iter().filter(|r| r.weighing.weight.is_none()).count();
    let not_served = rows.iter().filter(|r| r.not_served.is_some()).count();
    let mut member_flags = vec![format!("{drained} drained")];
    if not_served > 0 {
        member_flags.push(format!("{not_served} not served otherwise"));
    }
    if malformed > 0 {
        member_flags.push(format!("{malformed} malformed, not shown"));
    }
    writeln!(
        out,
        "{path}: {}{}, {} ({})",
        plural(vectors.len(), "vector znode", "vector znodes"),
        if flags.is_empty() {
            String::new()
        } else {
            format!(" ({})", flags.join(", "))
        },
        plural(rows.len(), "member", "members"),
        member_flags.join(", "),
    )?;
    let width = vectors
        .iter()
        .map(|v| v.name.len())
        .chain(rows.iter().map(|r| r.member.id().as_str().len()))
        .max()
        .unwrap_or(0);
    for v in vectors {
        writeln!(out, "{:width$}  {}", v.name, v.summary())?;
        for note in v.notes() {
            writeln!(out, "{:width$}    note: {note}", "")?;
        }
    }
    if !vectors.is_empty() && !rows.is_empty() {
        writeln!(out)?;
    }
    let addr_width = rows
        .iter()
        .map(|r| r.member.addr().to_string().len())
        .max()
        .unwrap_or(0);
    let label_width = rows
        .iter()
        .map(|r| r.weighing.label().len())
        .max()
        .unwrap_or(0);
    for r in rows {
        let mut line = format!(
            "{:width$}  {:addr_width$}  {:label_width$}",
            r.member.id().as_str(),
            r.member.addr().to_string(),
            r.weighing.label()
        );
        if !r.weighing.from.is_empty() {
            line.push_str(&format!("  from {}", r.weighing.sources()));
        }
        if let Some(why) = &r.not_served {
            line.push_str(&format!("  (not served: {why})"));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn to_json(path: &str, vectors: &[VectorNode], rows: &[Row<'_>]) -> Value {
    let members: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut m = member_json(r.member);
            if let Some(obj) = m.as_object_mut() {
                obj.insert("weight".into(), r.weighing.json_weight());
                obj.insert("drained".into(), json!(r.weighing.weight.is_none()));
                obj.insert(
                    "served".into(),
                    json!(r.weighing.weight.is_some() && r.not_served.is_none()),
                );
                obj.insert("reason".into(), json!(r.not_served));
                obj.insert("from".into(), r.weighing.json_sources());
            }
            m
        })
        .collect();
    let vectors: Vec<Value> = vectors
        .iter()
        .map(|v| {
            let mut j = v.json();
            if let Some(obj) = j.as_object_mut() {
                obj.insert("path".into(), json!(format!("{path}/{}", v.name)));
                obj.insert("data".into(), json!(String::from_utf8_lossy(&v.data)));
            }
            j
        })
        .collect();
    json!({"path": path, "vectors": vectors, "members": members})
}

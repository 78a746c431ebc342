//! `serversets dump`: every child of a set, its raw data, and how a watch
//! reads it. The answer to "why is my member not seen?".

use std::io::Write;

use serde_json::{json, Value};
use serversets_core::zookeeper_client as zk;

use crate::args::{DumpArgs, GlobalArgs};
use crate::error::CliError;
use crate::render::{member_details, member_json, printable};
use crate::target::{raw_client, set_path, zk_failed};
use serversets_core::{classify, MemberFilter, Reading, Verdict};

/// Raw data longer than this is cut in text output (JSON output has it all).
const MAX_SHOWN_DATA: usize = 2048;

/// One child as read from ZooKeeper.
struct Child {
    name: String,
    data: Vec<u8>,
    /// The session owning an ephemeral node; 0 for a persistent one.
    ephemeral_owner: i64,
    reading: Reading,
}

pub(crate) async fn run(
    g: &GlobalArgs,
    a: &DumpArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let path = set_path(g)?;
    let filter = MemberFilter {
        endpoint: a.endpoint.clone(),
        shard: a.shard,
    };
    let client = raw_client(g).await?;
    let mut names = match client.list_children(&path).await {
        Ok(names) => names,
        Err(zk::Error::NoNode) => {
            return Err(CliError::Failed(format!(
                "{path} does not exist (a watch sees an empty set until it is created)"
            )))
        }
        Err(e) => return Err(zk_failed("list", &path, e)),
    };
    names.sort();
    let mut children = Vec::with_capacity(names.len());
    for name in names {
        let child_path = format!("{path}/{name}");
        match client.get_data(&child_path).await {
            Ok((data, stat)) => {
                let reading = classify(&name, &data, &filter);
                children.push(Child {
                    name,
                    data,
                    ephemeral_owner: stat.ephemeral_owner,
                    reading,
                });
            }
            // Deleted since it was listed: it is not part of the set any more.
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(zk_failed("read", &child_path, e)),
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

fn print_text(out: &mut (dyn Write + Send), path: &str, children: &[Child]) -> std::io::Result<()> {
    let count = |label: &str| {
        children
            .iter()
            .filter(|c| c.reading.verdict.label() == label)
            .count()
    };
    writeln!(
        out,
        "{path}: {} child{}: {} member{}, {} not served, {} malformed, {} ignored",
        children.len(),
        if children.len() == 1 { "" } else { "ren" },
        count("member"),
        if count("member") == 1 { "" } else { "s" },
        count("not served"),
        count("malformed"),
        count("ignored"),
    )?;
    let width = children.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in children {
        let detail = match &c.reading.verdict {
            Verdict::Member(m) => member_details(m),
            Verdict::NotServed { member, reason } => {
                format!("{reason}: {}", member_details(member))
            }
            Verdict::Malformed(e) => e.to_string(),
            Verdict::Ignored(why) => why.clone(),
        };
        writeln!(
            out,
            "{:width$}  {:<10}  {detail}",
            c.name,
            c.reading.verdict.label()
        )?;
        for d in &c.reading.dropped {
            writeln!(out, "{:width$}    dropped {d}", "")?;
        }
        if c.name.starts_with("member_") {
            if c.ephemeral_owner == 0 {
                writeln!(
                    out,
                    "{:width$}    persistent node: it stays when its writer dies",
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
    let (member, reason) = match &c.reading.verdict {
        Verdict::Member(m) => (member_json(m), Value::Null),
        Verdict::NotServed { member, reason } => (member_json(member), json!(reason)),
        Verdict::Malformed(e) => (Value::Null, json!(e.to_string())),
        Verdict::Ignored(why) => (Value::Null, json!(why)),
    };
    json!({
        "name": c.name,
        "path": format!("{path}/{}", c.name),
        "verdict": c.reading.verdict.label(),
        "reason": reason,
        "member": member,
        "dropped": c.reading.dropped.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "ephemeral_owner": (c.ephemeral_owner != 0).then(|| format!("{:#x}", c.ephemeral_owner)),
        "data": String::from_utf8_lossy(&c.data),
    })
}

//! `serversets ls [PATH]`: the server sets under a path, as a tree with
//! member counts. Only names are listed (no member data is read), so it is
//! cheap even on a large tree.

use std::collections::HashMap;
use std::io::Write;

use serversets_core::zookeeper_client as zk;

use crate::args::{GlobalArgs, LsArgs};
use crate::error::Error;
use crate::target::{raw_client, zk_failed};

/// Stop listing after this many znodes: `ls` is for discovery trees, not for
/// walking a whole ZooKeeper.
const MAX_NODES: usize = 20_000;

/// What listing one znode gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listing {
    Children(Vec<String>),
    NoAccess,
    /// Deleted between being listed by its parent and read.
    Gone,
}

pub(crate) async fn run(
    g: &GlobalArgs,
    a: &LsArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    let client = raw_client(g).await?;
    let root = a.root.as_str();
    let mut listings: HashMap<String, Listing> = HashMap::new();
    let mut stack = vec![root.to_string()];
    let mut truncated = false;
    while let Some(path) = stack.pop() {
        if listings.len() >= MAX_NODES {
            truncated = true;
            break;
        }
        let listing = match client.list_children(&path).await {
            Ok(mut children) => {
                children.sort();
                Listing::Children(children)
            }
            Err(zk::Error::NoNode) if path == root => {
                return Err(Error::Failed(format!("no such path: {root}")))
            }
            Err(zk::Error::NoNode) => Listing::Gone,
            Err(zk::Error::NoAuth) => Listing::NoAccess,
            Err(e) => return Err(zk_failed("list", &path, e)),
        };
        if let Listing::Children(children) = &listing {
            if !is_set(children) {
                for child in children.iter().rev() {
                    stack.push(join(&path, child));
                }
            }
        }
        listings.insert(path, listing);
    }
    let mut totals = Totals::default();
    let mut lines = Vec::new();
    render(root, root, &listings, "", None, &mut lines, &mut totals);
    for line in lines {
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} server set{}, {} member{}{}",
        totals.sets,
        if totals.sets == 1 { "" } else { "s" },
        totals.members,
        if totals.members == 1 { "" } else { "s" },
        if truncated {
            format!(" (stopped after {MAX_NODES} znodes)")
        } else {
            String::new()
        }
    )?;
    out.flush()?;
    Ok(())
}

/// A znode is a server set when it has `member_` children, or no children
/// at all (a set whose members are all gone).
fn is_set(children: &[String]) -> bool {
    children.is_empty() || children.iter().any(|c| c.starts_with("member_"))
}

fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[derive(Default)]
struct Totals {
    sets: usize,
    members: usize,
}

/// Appends the lines for `path` and its subtree. `last` is `None` for the
/// root, else whether this znode is its parent's last child.
fn render(
    path: &str,
    name: &str,
    listings: &HashMap<String, Listing>,
    prefix: &str,
    last: Option<bool>,
    lines: &mut Vec<String>,
    totals: &mut Totals,
) {
    let branch = match last {
        None => "",
        Some(true) => "└── ",
        Some(false) => "├── ",
    };
    let note = match listings.get(path) {
        None => "  (not listed)".to_string(),
        Some(Listing::NoAccess) => "  (no read access)".to_string(),
        Some(Listing::Gone) => "  (deleted meanwhile)".to_string(),
        Some(Listing::Children(children)) if is_set(children) => {
            let members = children.iter().filter(|c| c.starts_with("member_")).count();
            let others = children.len() - members;
            totals.sets += 1;
            totals.members += members;
            let mut note = format!("  {members} member{}", if members == 1 { "" } else { "s" });
            if others > 0 {
                note.push_str(&format!(
                    ", {others} other child{}",
                    if others == 1 { "" } else { "ren" }
                ));
            }
            note
        }
        Some(Listing::Children(_)) => String::new(),
    };
    lines.push(format!("{prefix}{branch}{name}{note}"));
    if let Some(Listing::Children(children)) = listings.get(path) {
        if is_set(children) {
            return;
        }
        let child_prefix = match last {
            None => String::new(),
            Some(true) => format!("{prefix}    "),
            Some(false) => format!("{prefix}│   "),
        };
        for (i, child) in children.iter().enumerate() {
            let child_path = join(path, child);
            render(
                &child_path,
                child,
                listings,
                &child_prefix,
                Some(i + 1 == children.len()),
                lines,
                totals,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_tree_with_counts() {
        let mut l = HashMap::new();
        let kids = |v: &[&str]| Listing::Children(v.iter().map(|s| s.to_string()).collect());
        l.insert("/discovery".to_string(), kids(&["prod", "test"]));
        l.insert("/discovery/prod".to_string(), kids(&["users", "web"]));
        l.insert(
            "/discovery/prod/users".to_string(),
            kids(&[
                "member_0000000001",
                "member_0000000002",
                "vector_0000000001",
            ]),
        );
        l.insert("/discovery/prod/web".to_string(), Listing::NoAccess);
        l.insert("/discovery/test".to_string(), kids(&["svc"]));
        l.insert("/discovery/test/svc".to_string(), kids(&[]));
        let mut lines = Vec::new();
        let mut totals = Totals::default();
        render(
            "/discovery",
            "/discovery",
            &l,
            "",
            None,
            &mut lines,
            &mut totals,
        );
        assert_eq!(
            lines.join("\n"),
            "/discovery\n\
             ├── prod\n\
             │   ├── users  2 members, 1 other child\n\
             │   └── web  (no read access)\n\
             └── test\n\
             \x20   └── svc  0 members"
        );
        assert_eq!((totals.sets, totals.members), (2, 2));
    }
}

//! `serversets weight`, `drain` and `undrain`: write (or remove) the one
//! Finagle `vector_` znode of a selector, atomically; see [`crate::steer`]
//! for which znodes a write replaces.

use std::io::Write;

use serversets_core::vector::{Selector, DRAIN};
use serversets_core::HostPort;

use crate::args::{AclArg, DrainArgs, GlobalArgs, UndrainArgs, WeightArgs};
use crate::error::{usage, Error};
use crate::render::printable;
use crate::steer::{Change, Plan};
use crate::target::{acls, raw_client, set_path};
use crate::vectors::{descriptor_text, show_weight, weigh, VectorNode};

pub(crate) async fn weight(
    g: &GlobalArgs,
    a: &WeightArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    let change = match (a.weight, a.clear) {
        (Some(w), false) => Change::Set(w),
        (None, true) => Change::Clear,
        _ => return Err(usage("give either --weight W or --clear")),
    };
    apply(g, a.select.clone(), change, a.acl, out).await
}

pub(crate) async fn drain(
    g: &GlobalArgs,
    a: &DrainArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    apply(g, inet(&a.addr), Change::Set(DRAIN), a.acl, out).await
}

pub(crate) async fn undrain(
    g: &GlobalArgs,
    a: &UndrainArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    apply(g, inet(&a.addr), Change::Undrain, None, out).await
}

fn inet(addr: &HostPort) -> Selector {
    Selector::Inet(addr.to_string())
}

async fn apply(
    g: &GlobalArgs,
    selector: Selector,
    change: Change,
    acl: Option<AclArg>,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    // Every usage error before connecting.
    let path = set_path(g)?;
    let acls = acls(acl, g)?;
    let client = raw_client(g).await?;
    let plan = Plan::read(&client, &path, selector.clone(), change).await?;
    let after = if plan.is_noop() {
        let line = match (change, plan.replaces()) {
            (Change::Set(w), [only]) => format!(
                "{} already gives {selector} weight={}; nothing written",
                only.name,
                show_weight(w)
            ),
            (Change::Undrain, _) => {
                format!("no vector znode drains {selector} on its own; nothing to remove")
            }
            _ => {
                format!(
                    "no vector znode sets a weight for {selector} on its own; nothing to remove"
                )
            }
        };
        writeln!(out, "{line}")?;
        plan.vectors.clone()
    } else {
        let done = plan.commit(&client, &acls).await?;
        if let (Some(name), Some(data)) = (&done.created, plan.data()) {
            writeln!(out, "created {name} {}", printable(data))?;
        }
        for r in plan.replaces() {
            writeln!(
                out,
                "deleted {} (it gave {selector} weight={})",
                r.name,
                show_weight(r.weight)
            )?;
        }
        if !done.also.is_empty() {
            out.flush()?;
            return Err(Error::Failed(format!(
                "another writer set a weight for {selector} at the same moment: {} and {} both hold one now; run the command again to keep one",
                done.created.as_deref().unwrap_or("ours"),
                done.also.join(", ")
            )));
        }
        plan.vectors_after(&done)
    };
    let still_drained = print_selected(out, &plan, &after)?;
    out.flush()?;
    match (change, still_drained.first()) {
        (Change::Undrain, Some(line)) => Err(Error::Failed(format!(
            "{} is still drained by {line}, which undrain does not change (delete or replace that znode)",
            selector_addr(&selector)
        ))),
        _ => Ok(()),
    }
}

/// Prints the members the selector picks with their weight under `after`;
/// returns, for drained ones, the descriptors that drain them.
fn print_selected(
    out: &mut (dyn Write + Send),
    plan: &Plan,
    after: &[VectorNode],
) -> Result<Vec<String>, Error> {
    let selected = plan.selected();
    // The selector's own znodes; anything else that weighs a member is shown.
    let own: Vec<&str> = after
        .iter()
        .filter(|v| v.sole().is_some_and(|d| d.selector == plan.selector))
        .map(|v| v.name.as_str())
        .collect();
    if selected.is_empty() {
        let then = if own.is_empty() {
            ""
        } else {
            "; the vector applies to members as they register"
        };
        writeln!(out, "no member is selected by {} now{then}", plan.selector)?;
        return Ok(Vec::new());
    }
    let width = selected
        .iter()
        .map(|m| m.addr().to_string().len())
        .max()
        .unwrap_or(0);
    let mut drained_by = Vec::new();
    for m in &selected {
        let w = weigh(m, after);
        let mut line = format!("{}  {:width$}  {}", m.id(), m.addr().to_string(), w.label());
        let others: Vec<String> = w
            .from
            .iter()
            .filter(|(node, _)| !own.contains(&node.as_str()))
            .map(|(node, d)| format!("{node} {}", descriptor_text(d)))
            .collect();
        if !others.is_empty() {
            line.push_str(&format!("  (also {})", others.join(", ")));
        }
        writeln!(out, "{line}")?;
        for (node, d) in w.drained_by() {
            drained_by.push(format!("{node} ({})", descriptor_text(d)));
        }
    }
    Ok(drained_by)
}

fn selector_addr(selector: &Selector) -> String {
    match selector {
        Selector::Inet(addr) => addr.clone(),
        other => other.to_string(),
    }
}

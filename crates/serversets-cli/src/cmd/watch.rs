//! `serversets watch`: the set now, then every change as it happens.

use std::collections::BTreeMap;
use std::io::Write;

use serversets_core::{Health, Member, ServerSet, Snapshot, Watch, Watcher};

use crate::args::{GlobalArgs, WatchArgs};
use crate::error::Error;
use crate::output::stderr_line;
use crate::render::{member_line, snapshot_json};
use crate::signals::Signals;
use crate::target::server_set;
use crate::timefmt::now;
use crate::vectors::{show_weight, VECTOR_PREFIX};

pub(crate) async fn run(
    g: &GlobalArgs,
    a: &WatchArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    if let Some(addr) = a.metrics_addr {
        crate::metrics::serve(addr)?;
    }
    let set = server_set(g)?;
    let mut signals = Signals::install()?;
    let result = watch(a, &set, &mut signals, out).await;
    // Output stuck on a reader that stopped reading gives up when a signal
    // arrives; that is the signal ending the command, not a failure.
    match result {
        Err(Error::Output(e))
            if e.kind() == std::io::ErrorKind::Interrupted && crate::signals::received() =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn watch(
    a: &WatchArgs,
    set: &ServerSet,
    signals: &mut Signals,
    out: &mut (dyn Write + Send),
) -> Result<(), Error> {
    let mut builder = set.watch_builder();
    if let Some(endpoint) = &a.endpoint {
        builder = builder.endpoint(endpoint);
    }
    if let Some(shard) = a.shard {
        builder = builder.shard(shard);
    }
    // Connecting can take the whole connect timeout; Ctrl-C must not wait.
    let watch = tokio::select! {
        w = builder.start() => w?,
        _ = signals.recv() => return Ok(()),
    };
    let mut changes = watch.subscribe();
    let mut health = watch.health_changes();
    let mut last = changes.latest();
    health.borrow_and_update();

    let mut rejected = watch.rejected();
    if a.json {
        writeln!(out, "{}", snapshot_json(&last))?;
    } else {
        print_set(out, &watch, &last, &rejected)?;
    }
    out.flush()?;
    if a.once {
        return Ok(());
    }

    // Children that are not served publish no snapshot; look for new ones
    // every second so they are reported even while the set is quiet.
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick(), if !a.json => {
                let now_rejected = watch.rejected();
                for (name, why) in &now_rejected {
                    if rejected.get(name) != Some(why) {
                        writeln!(out, "{} ! {}", now(), rejected_text(name, why))?;
                    }
                }
                out.flush()?;
                rejected = now_rejected;
            }
            snap = changes.changed() => {
                let Some(snap) = snap else {
                    return Err(Error::Failed("the watch stopped".into()));
                };
                if a.json {
                    writeln!(out, "{}", snapshot_json(&snap))?;
                } else {
                    print_change(out, &last, &snap)?;
                    let now_rejected = watch.rejected();
                    print_rejected(out, &rejected, &now_rejected)?;
                    rejected = now_rejected;
                }
                out.flush()?;
                last = snap;
            }
            changed = health.changed() => {
                if changed.is_err() {
                    return Err(Error::Failed("the ZooKeeper session ended".into()));
                }
                let h = *health.borrow_and_update();
                let line = format!("{} connection: {}", now(), health_text(h));
                if a.json {
                    stderr_line(&line);
                } else {
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
            }
            _ = signals.recv() => return Ok(()),
        }
    }
}

/// What a connection state means for the printed set.
pub(crate) fn health_text(h: Health) -> String {
    match h {
        Health::Connected => "connected".into(),
        Health::Connecting => "connecting".into(),
        Health::Disconnected => "disconnected, reconnecting (members kept)".into(),
        Health::Expired => "session expired, opening a new one (members kept)".into(),
        Health::AuthFailed => "authentication failed, retrying (members kept)".into(),
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 member".into()
    } else {
        format!("{n} members")
    }
}

fn print_set(
    out: &mut (dyn Write + Send),
    watch: &Watch,
    snap: &Snapshot,
    rejected: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{} {}: {} (connection {})",
        now(),
        watch.path(),
        count(snap.len()),
        watch.health()
    )?;
    for m in snap {
        writeln!(out, "  {}", member_line(m))?;
    }
    print_rejected(out, &BTreeMap::new(), rejected)
}

fn print_change(
    out: &mut (dyn Write + Send),
    before: &Snapshot,
    after: &Snapshot,
) -> std::io::Result<()> {
    let diff = after.diff(before);
    // A member whose weight alone changed (a vector_ znode came or went) is
    // shown once, with both weights, rather than as removed and added.
    let reweighed: Vec<(&Member, &Member)> = diff
        .added
        .iter()
        .filter_map(|new| {
            diff.removed
                .iter()
                .find(|old| old.id() == new.id() && new.with_weight(old.weight()) == **old)
                .map(|old| (old, new))
        })
        .collect();
    let is_reweighed = |m: &Member| reweighed.iter().any(|(_, new)| new.id() == m.id());
    let added: Vec<&Member> = diff.added.iter().filter(|m| !is_reweighed(m)).collect();
    let removed: Vec<&Member> = diff.removed.iter().filter(|m| !is_reweighed(m)).collect();
    let reweighed_part = match reweighed.len() {
        0 => String::new(),
        n => format!(", {n} reweighed"),
    };
    writeln!(
        out,
        "{} {} (+{} -{}{reweighed_part})",
        now(),
        count(after.len()),
        added.len(),
        removed.len()
    )?;
    for m in added {
        writeln!(out, "  + {}", member_line(m))?;
    }
    for m in removed {
        writeln!(out, "  - {}", member_line(m))?;
    }
    for (old, new) in reweighed {
        writeln!(
            out,
            "  ~ {}  (weight was {})",
            member_line(new),
            show_weight(old.weight())
        )?;
    }
    Ok(())
}

/// `member_0000000003 not served: drained: ...`, or for a vector znode the
/// watch cannot use, `vector_0000000006 skipped: invalid vector: ...`.
fn rejected_text(name: &str, why: &str) -> String {
    if name.starts_with(VECTOR_PREFIX) {
        format!("{name} skipped: {why}")
    } else {
        format!("{name} not served: {why}")
    }
}

/// Children newly present but not served, with why.
fn print_rejected(
    out: &mut (dyn Write + Send),
    before: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    for (name, why) in now {
        if before.get(name) != Some(why) {
            writeln!(out, "  ! {}", rejected_text(name, why))?;
        }
    }
    Ok(())
}

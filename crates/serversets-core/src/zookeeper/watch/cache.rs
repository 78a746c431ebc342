//! The watch's cache of what each child of the set says, and the rules that
//! turn it into snapshots.
//!
//! Members and vector znodes are immutable by contract, so each child is
//! read once, when its name first appears; deletions cost no read. Members
//! are weighed by the `vector_` znodes present (a weight of -1.0 drains
//! them), and every child that is present but not served is kept in
//! `rejected` with why. Nothing here talks to ZooKeeper: the strategies
//! read, this module decides.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use zookeeper_client as zk;

use super::{lock, Ctx};
use crate::contract::chain;
use crate::contract::classify::{classify, Verdict};
use crate::contract::member::Member;
use crate::contract::vector::{self, Vector};
use crate::zookeeper::error::is_answer;

/// Members; Finagle's weight znodes; children named otherwise are listed in
/// `rejected()`, never read.
pub(super) const MEMBER_PREFIX: &str = "member_";
pub(super) const VECTOR_PREFIX: &str = "vector_";
pub(super) const NOT_A_MEMBER: &str = "not a member_ node";
pub(super) const DRAINED: &str = "drained: a vector_ node gives it weight -1.0";

/// Whether the watch reads this child's data.
pub(super) fn is_read(name: &str) -> bool {
    name.starts_with(MEMBER_PREFIX) || name.starts_with(VECTOR_PREFIX)
}

/// What the watch knows about one member child.
#[derive(Clone)]
pub(super) enum Entry {
    /// Served, with its weight from the vector znodes.
    Served(Member),
    /// A good member a vector znode drains (weight -1.0); kept so it is
    /// served again, without a read, once the vector goes.
    Drained(Member),
    Skipped,
}

/// Changes learned but not yet published.
#[derive(Default)]
pub(super) struct Changes {
    pub(super) added: Vec<Member>,
    pub(super) removed: Vec<Member>,
}

/// Applies one member read. Only a definite answer about the znode is
/// recorded: its data, `NoNode` (gone: forget it) or `NoAuth` (reported as
/// unreadable and left out of the cache, so the next resync asks again).
/// Any other error leaves the name unread and is returned: its outcome is
/// unknown (a reset or stall fails every read in flight), so the follow loop
/// restarts and the resync that follows reads the name again.
pub(super) fn take_read(
    ctx: &Ctx,
    name: &str,
    result: std::result::Result<Vec<u8>, zk::Error>,
    batch: &mut Changes,
) -> std::result::Result<(), zk::Error> {
    match result {
        Ok(data) if name.starts_with(VECTOR_PREFIX) => learn_vector(ctx, name, &data, batch),
        Ok(data) => learn(ctx, name, &data, batch),
        Err(zk::Error::NoNode) => forget(ctx, name, batch),
        Err(e @ zk::Error::NoAuth) => {
            tracing::warn!(path = %ctx.path, child = name, error = %e, "cannot read child; skipping it until the next resync");
            forget(ctx, name, batch);
            lock(&ctx.rejected).insert(name.to_string(), format!("unreadable: {e}"));
        }
        Err(e) => {
            if is_answer(&e) {
                tracing::warn!(path = %ctx.path, member = name, error = %e, "unexpected answer reading a member; re-reading the set");
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Publishes exactly the served members of the cache: after a full re-read
/// the snapshot is rebuilt from the cache, so it can never drift from it.
pub(super) fn republish(ctx: &Ctx) {
    let served: Vec<Member> = lock(&ctx.cache)
        .values()
        .filter_map(|e| match e {
            Entry::Served(m) => Some(m.clone()),
            Entry::Drained(_) | Entry::Skipped => None,
        })
        .collect();
    ctx.publisher.publish(served);
    ctx.metrics.refresh(ctx);
}

/// Whether this child was read already (members and vectors are immutable).
pub(super) fn known(ctx: &Ctx, name: &str) -> bool {
    if name.starts_with(VECTOR_PREFIX) {
        lock(&ctx.vectors).contains_key(name)
    } else {
        lock(&ctx.cache).contains_key(name)
    }
}

/// Every child read so far.
pub(super) fn known_names(ctx: &Ctx) -> Vec<String> {
    let mut names: Vec<String> = lock(&ctx.cache).keys().cloned().collect();
    names.extend(lock(&ctx.vectors).keys().cloned());
    names
}

/// A member as the vectors make it: weighed, or drained.
fn weigh(vectors: &BTreeMap<String, Option<Vector>>, member: Member) -> Entry {
    match vector::weight_of(&member, vectors.values().flatten()) {
        None => Entry::Drained(member),
        Some(w) if w == member.weight() => Entry::Served(member),
        Some(w) => Entry::Served(member.with_weight(w)),
    }
}

/// Decodes one member's data into the cache and the pending change.
fn learn(ctx: &Ctx, name: &str, data: &[u8], batch: &mut Changes) {
    let reading = classify(name, data, &ctx.filter);
    for problem in &reading.dropped {
        tracing::warn!(path = %ctx.path, member = name, problem = %chain(problem), "ignoring part of a member");
    }
    let entry = match reading.verdict {
        Verdict::Member(member) => {
            let entry = weigh(&lock(&ctx.vectors), member);
            if matches!(entry, Entry::Drained(_)) {
                lock(&ctx.rejected).insert(name.to_string(), DRAINED.into());
            } else {
                lock(&ctx.rejected).remove(name);
            }
            entry
        }
        Verdict::NotServed { reason, .. } => {
            tracing::debug!(path = %ctx.path, member = name, reason = %reason, "member not served");
            lock(&ctx.rejected).insert(name.to_string(), reason);
            Entry::Skipped
        }
        Verdict::Malformed(e) => {
            ctx.malformed_total.fetch_add(1, Ordering::Relaxed);
            ctx.metrics.malformed.increment(1);
            let why = chain(&e);
            tracing::warn!(path = %ctx.path, member = name, error = %why, "skipping malformed member");
            lock(&ctx.rejected).insert(name.to_string(), format!("malformed: {why}"));
            Entry::Skipped
        }
        Verdict::Ignored(why) => {
            lock(&ctx.rejected).insert(name.to_string(), why);
            Entry::Skipped
        }
    };
    if let Some(Entry::Served(old)) = lock(&ctx.cache).insert(name.to_string(), entry.clone()) {
        batch.removed.push(old);
    }
    if let Entry::Served(m) = entry {
        batch.added.push(m);
    }
}

/// Decodes one vector znode and re-weighs the members. An unusable znode is
/// reported and changes nothing.
fn learn_vector(ctx: &Ctx, name: &str, data: &[u8], batch: &mut Changes) {
    let vector = match vector::decode(data) {
        Ok(v) => {
            for note in &v.notes {
                tracing::warn!(path = %ctx.path, vector = name, note = %note, "part of a vector node");
            }
            lock(&ctx.rejected).remove(name);
            Some(v)
        }
        Err(e) => {
            let why = chain(&e);
            tracing::warn!(path = %ctx.path, vector = name, error = %why, "skipping unusable vector node");
            lock(&ctx.rejected).insert(name.to_string(), format!("invalid vector: {why}"));
            None
        }
    };
    let usable = vector.is_some();
    let had = lock(&ctx.vectors).insert(name.to_string(), vector);
    if usable || matches!(had, Some(Some(_))) {
        reweigh(ctx, batch);
    }
}

/// Applies the current vectors to every member read: weights change in
/// place, drained members leave the snapshot and undrained ones return.
fn reweigh(ctx: &Ctx, batch: &mut Changes) {
    let vectors = lock(&ctx.vectors);
    let mut cache = lock(&ctx.cache);
    let mut rejected = lock(&ctx.rejected);
    for (name, entry) in cache.iter_mut() {
        let (member, was_served) = match entry {
            Entry::Served(m) => (m.clone(), true),
            Entry::Drained(m) => (m.clone(), false),
            Entry::Skipped => continue,
        };
        let now = weigh(&vectors, member.clone());
        match (&now, was_served) {
            (Entry::Served(m), true) if *m == member => continue,
            (Entry::Drained(_), false) => continue,
            (Entry::Served(m), _) => {
                rejected.remove(name);
                batch.added.push(m.clone());
            }
            (Entry::Drained(_), true) => {
                rejected.insert(name.clone(), DRAINED.into());
                batch.removed.push(member);
            }
            (Entry::Skipped, _) => {}
        }
        *entry = now;
    }
}

/// Drops a child that is gone (or unreadable): a member leaves the
/// snapshot, a vector's weights are undone.
pub(super) fn forget(ctx: &Ctx, name: &str, batch: &mut Changes) {
    lock(&ctx.rejected).remove(name);
    if let Some(Entry::Served(old)) = lock(&ctx.cache).remove(name) {
        batch.removed.push(old);
    }
    let had = lock(&ctx.vectors).remove(name);
    if matches!(had, Some(Some(_))) {
        reweigh(ctx, batch);
    }
}

pub(super) fn flush(ctx: &Ctx, batch: &mut Changes) {
    let Changes { added, removed } = batch;
    if added.is_empty() && removed.is_empty() {
        return;
    }
    // Within one batch a member may be added, then replaced or removed: add
    // only what the cache still serves.
    let add: Vec<Member> = {
        let cache = lock(&ctx.cache);
        std::mem::take(added)
            .into_iter()
            .filter(|m| matches!(cache.get(m.id().as_str()), Some(Entry::Served(c)) if c == m))
            .collect()
    };
    ctx.publisher.apply(add, std::mem::take(removed));
}

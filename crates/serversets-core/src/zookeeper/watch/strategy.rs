//! Following the set: a persistent recursive watch (ZooKeeper 3.6+), which
//! names each created and deleted child, or a children watch, re-armed on
//! every change, for older servers. Both re-list the whole set after every
//! reconnect and every new session, because persistent watches can miss
//! events across a reconnect (ZOOKEEPER-4698), and both hand what they read
//! to the cache (`super::cache`), which decides what is served.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use zookeeper_client as zk;

use super::builder::WatchStrategy;
use super::cache::{
    flush, forget, is_read, known, known_names, republish, take_read, Changes, NOT_A_MEMBER,
    VECTOR_PREFIX,
};
use super::metrics::{Change, WatchMetrics};
use super::{lock, Ctx};
use crate::zookeeper::backoff::Backoff;
use crate::zookeeper::read::{self, Wanted};
use crate::zookeeper::session::Generation;

/// How many read batches may be in flight at once.
const MAX_INFLIGHT_BATCHES: usize = 32;

/// Why a follow loop returned.
enum Exit {
    /// The watch was dropped.
    Stop,
    /// Start over on the current (or next) session.
    Again,
    /// The server does not support persistent watches.
    Unsupported,
}

pub(super) async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<()>, mut strategy: WatchStrategy) {
    let mut generations = ctx.session.generations();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
    loop {
        let generation = generations.borrow_and_update().clone();
        let Some(generation) = generation else {
            tokio::select! {
                _ = stop.changed() => return,
                _ = generations.changed() => continue,
            }
        };
        let outcome = match strategy {
            WatchStrategy::Auto => {
                follow_recursive(&ctx, &generation, &mut generations, &mut stop).await
            }
            WatchStrategy::Children => {
                follow_children(&ctx, &generation, &mut generations, &mut stop).await
            }
        };
        match outcome {
            Ok(Exit::Stop) => return,
            Ok(Exit::Again) => backoff.reset(),
            Ok(Exit::Unsupported) => {
                tracing::info!(path = %ctx.path, "ZooKeeper has no persistent watches (before 3.6); using a children watch");
                strategy = WatchStrategy::Children;
            }
            Err(e) => {
                *ctx.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                let delay = backoff.next_delay();
                tracing::warn!(path = %ctx.path, error = %e, retry_in = ?delay, "watch interrupted; keeping the last known members");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = generations.changed() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Follows the set with a persistent recursive watch until the session
/// changes, the watch is dropped or an operation fails. Whatever was learned
/// is published on every way out.
async fn follow_recursive(
    ctx: &Ctx,
    generation: &Generation,
    generations: &mut watch::Receiver<Option<Arc<Generation>>>,
    stop: &mut watch::Receiver<()>,
) -> std::result::Result<Exit, zk::Error> {
    let watcher = match generation
        .client
        .watch(&ctx.path, zk::AddWatchMode::PersistentRecursive)
        .await
    {
        Ok(w) => w,
        Err(zk::Error::Unimplemented) => return Ok(Exit::Unsupported),
        Err(e) => return Err(e),
    };
    resync(ctx, generation).await?;
    let mut batch = Changes::default();
    let outcome = follow_events(ctx, generation, generations, stop, watcher, &mut batch).await;
    flush(ctx, &mut batch);
    outcome
}

async fn follow_events(
    ctx: &Ctx,
    generation: &Generation,
    generations: &mut watch::Receiver<Option<Arc<Generation>>>,
    stop: &mut watch::Receiver<()>,
    mut watcher: zk::PersistentWatcher,
    batch: &mut Changes,
) -> std::result::Result<Exit, zk::Error> {
    let prefix = format!("{}/", ctx.path);
    let mut reads: FuturesUnordered<read::Batch> = FuturesUnordered::new();
    // The newest read asked for each name; an older answer is ignored.
    let mut pending: HashMap<String, u64> = HashMap::new();
    // Vector znodes asked for and not answered yet. Changes wait for them:
    // a vector replaced in one transaction (create + delete) must not
    // publish the members unweighted in between.
    let mut vectors_pending: HashSet<String> = HashSet::new();
    let mut next_read = 0u64;
    // Names whose events have arrived; read together once no more events
    // are ready, so a burst of new members costs a few multi-reads.
    let mut wanted: Vec<Wanted> = Vec::new();
    // The change under way, for the propagation and reads metrics.
    let mut change: Option<Change> = None;
    loop {
        let dirty = !batch.added.is_empty() || !batch.removed.is_empty();
        if !dirty && wanted.is_empty() && reads.is_empty() && change.take().is_some() {
            // Settled without a new snapshot (a child not served, say).
            ctx.metrics.refresh(ctx);
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(Exit::Stop),
            _ = generations.changed() => return Ok(Exit::Again),
            event = watcher.changed() => {
                match event.event_type {
                    zk::EventType::Session => match event.session_state {
                        zk::SessionState::Disconnected => {}
                        // Events may have been lost while disconnected
                        // (ZOOKEEPER-4698), and zookeeper-client 0.11 does not
                        // restore persistent watches on reconnect: add the
                        // watch again, then re-read. Terminal states end the
                        // watcher, which must not be polled again.
                        _ => return Ok(Exit::Again),
                    },
                    zk::EventType::NodeCreated | zk::EventType::NodeDataChanged => {
                        change.get_or_insert_with(|| WatchMetrics::change(&ctx.reader));
                        if event.path == ctx.path {
                            flush(ctx, batch);
                            pending.clear();
                            vectors_pending.clear();
                            wanted.clear();
                            reads = FuturesUnordered::new();
                            resync(ctx, generation).await?;
                        } else if let Some(name) = child_name(&event.path, &prefix) {
                            if !is_read(name) {
                                lock(&ctx.rejected).insert(name.to_string(), NOT_A_MEMBER.into());
                                continue;
                            }
                            if !known(ctx, name) || event.event_type == zk::EventType::NodeDataChanged {
                                next_read += 1;
                                pending.insert(name.to_string(), next_read);
                                if name.starts_with(VECTOR_PREFIX) {
                                    vectors_pending.insert(name.to_string());
                                }
                                wanted.push((name.to_string(), next_read));
                            }
                        }
                    }
                    zk::EventType::NodeDeleted => {
                        change.get_or_insert_with(|| WatchMetrics::change(&ctx.reader));
                        if event.path == ctx.path {
                            pending.clear();
                            vectors_pending.clear();
                            for name in known_names(ctx) {
                                forget(ctx, &name, batch);
                            }
                            lock(&ctx.rejected).clear();
                        } else if let Some(name) = child_name(&event.path, &prefix) {
                            pending.remove(name);
                            vectors_pending.remove(name);
                            forget(ctx, name, batch);
                        }
                    }
                    zk::EventType::NodeChildrenChanged => {}
                }
            }
            Some(got) = reads.next(), if !reads.is_empty() => {
                for (name, seq, result) in got {
                    if pending.get(&name) == Some(&seq) {
                        pending.remove(&name);
                        vectors_pending.remove(&name);
                        take_read(ctx, &name, result, batch)?;
                    }
                }
            }
            _ = std::future::ready(()), if !wanted.is_empty() => {
                for names in ctx.reader.plan(&ctx.path, std::mem::take(&mut wanted)) {
                    reads.push(ctx.reader.read(&generation.client, &ctx.path, names));
                }
            }
            _ = std::future::ready(()), if dirty && vectors_pending.is_empty() => {
                flush(ctx, batch);
                if let Some(change) = change.take() {
                    ctx.metrics.published(ctx, change);
                }
            }
        }
    }
}

/// Follows the set with a children watch (and an exists watch while the
/// path is missing), re-armed on every change.
async fn follow_children(
    ctx: &Ctx,
    generation: &Generation,
    generations: &mut watch::Receiver<Option<Arc<Generation>>>,
    stop: &mut watch::Receiver<()>,
) -> std::result::Result<Exit, zk::Error> {
    ctx.resyncs.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.resyncs.increment(1);
    loop {
        let watcher = match generation.client.get_and_watch_children(&ctx.path).await {
            Ok((children, _, watcher)) => {
                apply_children(ctx, generation, children).await?;
                watcher
            }
            Err(zk::Error::NoNode) => {
                match generation.client.check_and_watch_stat(&ctx.path).await? {
                    (Some(_), _) => continue,
                    (None, watcher) => {
                        apply_children(ctx, generation, Vec::new()).await?;
                        watcher
                    }
                }
            }
            Err(e) => return Err(e),
        };
        ctx.ready.send_replace(true);
        tokio::select! {
            _ = stop.changed() => return Ok(Exit::Stop),
            _ = generations.changed() => return Ok(Exit::Again),
            event = watcher.changed() => {
                if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
                    return Ok(Exit::Again);
                }
            }
        }
    }
}

/// Lists the children and brings the cache and snapshot in line.
async fn resync(ctx: &Ctx, generation: &Generation) -> std::result::Result<(), zk::Error> {
    ctx.resyncs.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.resyncs.increment(1);
    let children = match generation.client.list_children(&ctx.path).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(e) => return Err(e),
    };
    apply_children(ctx, generation, children).await?;
    ctx.ready.send_replace(true);
    Ok(())
}

/// Given the full list of children: forget the ones that are gone, read the
/// new ones (pipelined), publish once from the cache.
#[tracing::instrument(name = "watch_resync", level = "info", skip_all, fields(
    set = %ctx.path,
    generation = generation.number,
    session = format_args!("{:#x}", generation.session_id),
    children = children.len(),
))]
async fn apply_children(
    ctx: &Ctx,
    generation: &Generation,
    children: Vec<String>,
) -> std::result::Result<(), zk::Error> {
    // The snapshot is rebuilt from the cache at the end, so the batch only
    // keeps the cache's bookkeeping.
    let mut batch = Changes::default();
    let present: HashSet<&str> = children.iter().map(String::as_str).collect();
    for name in known_names(ctx) {
        if !present.contains(name.as_str()) {
            forget(ctx, &name, &mut batch);
        }
    }
    {
        let mut rejected = lock(&ctx.rejected);
        rejected.retain(|k, _| present.contains(k.as_str()));
        for name in children.iter().filter(|n| !is_read(n)) {
            rejected.insert(name.clone(), NOT_A_MEMBER.into());
        }
    }
    // Vectors first: members read after them are weighed once, not twice.
    let mut new: Vec<String> = children
        .into_iter()
        .filter(|n| is_read(n) && !known(ctx, n))
        .collect();
    new.sort_by_key(|n| !n.starts_with(VECTOR_PREFIX));
    let wanted: Vec<Wanted> = new.into_iter().map(|name| (name, 0)).collect();
    let mut batches = ctx.reader.plan(&ctx.path, wanted).into_iter();
    let mut reads: FuturesUnordered<read::Batch> = FuturesUnordered::new();
    let outcome = 'read: loop {
        while reads.len() < MAX_INFLIGHT_BATCHES {
            match batches.next() {
                Some(names) => reads.push(ctx.reader.read(&generation.client, &ctx.path, names)),
                None => break,
            }
        }
        let Some(got) = reads.next().await else {
            break Ok(());
        };
        // Keep what was read on a failure; the rest is read next time.
        for (name, _, result) in got {
            if let Err(e) = take_read(ctx, &name, result, &mut batch) {
                break 'read Err(e);
            }
        }
    };
    republish(ctx);
    outcome
}

/// The name of a direct child of the set (member or not), from an event path.
fn child_name<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let name = path.strip_prefix(prefix)?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

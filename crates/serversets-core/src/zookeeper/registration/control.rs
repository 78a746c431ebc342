//! The registration's control loop: what it does on each event to keep
//! ZooKeeper in line with what the registration wants (the member present
//! while wanted, absent otherwise), with never more than one member per
//! registration even when an answer is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use super::{Ctx, RegistrationState};
use crate::zookeeper::backoff::Backoff;
use crate::zookeeper::error::{is_answer, is_refusal};
use crate::zookeeper::session::Generation;

/// What a registration knows about its znodes: the one it owns, one a
/// lost create may have made, and those of sessions it gave up on.
#[derive(Default)]
pub(super) struct Ledger {
    /// The member this registration owns now.
    current: Option<Owned>,
    /// A create on this generation may have been applied without an answer;
    /// look for the znode before creating another.
    uncertain: Option<u64>,
    /// Members of sessions this process gave up on (the client declares a
    /// session expired after a long disconnect, while the server may keep it
    /// until its own timeout): deleted from the next session so that a
    /// registration never shows twice.
    orphans: Vec<Owned>,
    /// What last went wrong, until the member is registered again.
    pub(super) last_error: Option<Problem>,
    ever_registered: bool,
}

/// What last kept a registration from its member.
#[derive(Debug, Clone)]
pub(super) enum Problem {
    /// A ZooKeeper request failed.
    ZooKeeper(zk::Error),
    /// The health check failed, with what it said.
    Check(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::ZooKeeper(e) => write!(f, "{e}"),
            Problem::Check(why) => write!(f, "health check failed: {why}"),
        }
    }
}

/// A member znode and the session that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    path: String,
    generation: u64,
    session_id: i64,
}

/// The registration's control loop: one pass per event, each pass bringing
/// ZooKeeper in line with what the registration wants. It ends only when the
/// handle is closed or dropped and the member is known to be gone; every
/// failure before that is retried with back-off.
#[tracing::instrument(name = "registration", level = "info", skip_all, fields(
    set = %ctx.set_path,
    addr = %ctx.addr,
))]
pub(super) async fn keep_registered(ctx: Arc<Ctx>) {
    let mut generations = ctx.session.generations();
    let mut close = ctx.close.subscribe();
    let mut healthy = ctx.healthy.clone();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(30));
    loop {
        let closing = *close.borrow_and_update();
        let generation = generations.borrow_and_update().clone();
        let wanted = !closing && *healthy.borrow_and_update() == Some(true);
        retire_stale(&ctx, generation.as_deref(), closing);

        let Some(generation) = generation else {
            if closing && ctx.ledger().current.is_none() {
                ctx.set_state(RegistrationState::Closed);
                return;
            }
            tokio::select! {
                _ = generations.changed() => {}
                _ = close.changed() => {}
            }
            continue;
        };

        let outcome = if wanted {
            keep(
                &ctx,
                &generation,
                &mut backoff,
                &mut generations,
                &mut close,
                &mut healthy,
            )
            .await
        } else {
            match unwanted(&ctx, &generation, closing).await {
                Ok(Settled::Done) => {
                    ctx.set_state(RegistrationState::Closed);
                    return;
                }
                Ok(Settled::Gone) => {
                    let why = ctx
                        .last_error()
                        .unwrap_or_else(|| "health check pending".into());
                    if *healthy.borrow() == Some(false) {
                        ctx.set_state(RegistrationState::Unhealthy(why));
                    }
                    tokio::select! {
                        _ = generations.changed() => {}
                        _ = close.changed() => {}
                        _ = healthy.changed() => {}
                    }
                    continue;
                }
                Ok(Settled::Again) => Ok(()),
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(()) => backoff.reset(),
            Err(e) => {
                // The error first: whoever the refusal wakes reads it.
                ctx.ledger().last_error = Some(Problem::ZooKeeper(e.clone()));
                if is_refusal(&e) && !ctx.ledger().ever_registered {
                    ctx.refused.send_replace(true);
                }
                let delay = backoff.next_delay();
                tracing::warn!(path = %ctx.set_path, error = %e, retry_in = ?delay, "ZooKeeper operation failed; retrying");
                // Closing and health changes must not wait out the back-off.
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = generations.changed() => {}
                    _ = close.changed() => {}
                    _ = healthy.changed() => {}
                }
            }
        }
    }
}

/// A member belongs to the session that created it: once that session is
/// over (no session now, or a newer one), the member is gone with it, or
/// soon will be; it is no longer ours to report.
fn retire_stale(ctx: &Ctx, generation: Option<&Generation>, closing: bool) {
    let mut ledger = ctx.ledger();
    let stale = match (&ledger.current, generation) {
        (Some(owned), Some(gen)) => owned.generation != gen.number,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !stale {
        return;
    }
    if let Some(owned) = ledger.current.take() {
        ctx.session.release(&owned.path);
        ledger.orphans.push(owned);
    }
    drop(ledger);
    if !closing {
        ctx.set_state(RegistrationState::Pending);
    }
}

/// Deletes members left by earlier sessions that the server still keeps.
async fn remove_orphans(ctx: &Ctx, generation: &Generation) -> std::result::Result<(), zk::Error> {
    loop {
        let Some(orphan) = ctx.ledger().orphans.last().cloned() else {
            return Ok(());
        };
        if orphan.session_id != generation.session_id {
            match generation.client.check_stat(&orphan.path).await? {
                Some(stat) if stat.ephemeral_owner == orphan.session_id => {
                    match generation
                        .client
                        .delete(&orphan.path, Some(stat.version))
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(path = %orphan.path, "removed the member an earlier session left behind");
                        }
                        Err(zk::Error::NoNode | zk::Error::BadVersion) => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => {}
            }
        }
        ctx.ledger().orphans.retain(|o| *o != orphan);
    }
}

/// The member is wanted: create it, or watch the one there is until
/// something changes.
async fn keep(
    ctx: &Ctx,
    generation: &Generation,
    backoff: &mut Backoff,
    generations: &mut watch::Receiver<Option<Arc<Generation>>>,
    close: &mut watch::Receiver<bool>,
    healthy: &mut watch::Receiver<Option<bool>>,
) -> std::result::Result<(), zk::Error> {
    if ctx.ledger().current.is_none() {
        create(ctx, generation).await?;
    }
    // The member exists: remove what earlier sessions left (after the
    // create, so the member is back in the set as soon as it can be),
    // then report it.
    remove_orphans(ctx, generation).await?;
    let Some(owned) = ctx.ledger().current.clone() else {
        return Ok(());
    };
    let path = owned.path;
    ctx.set_state(RegistrationState::Registered(path.clone()));
    match generation.client.check_and_watch_stat(&path).await? {
        (Some(stat), watcher) if stat.ephemeral_owner == generation.session_id => {
            backoff.reset();
            tokio::select! {
                event = watcher.changed() => {
                    if event.event_type == zk::EventType::NodeDeleted {
                        tracing::warn!(path = %path, "member deleted by someone else; re-creating it");
                        forget(ctx, &path);
                        ctx.set_state(RegistrationState::Pending);
                    }
                }
                _ = generations.changed() => {}
                _ = close.changed() => {}
                _ = healthy.changed() => {}
            }
        }
        _ => {
            tracing::warn!(path = %path, "member is gone; re-creating it");
            forget(ctx, &path);
            ctx.set_state(RegistrationState::Pending);
        }
    }
    Ok(())
}

/// How far removing an unwanted member got.
enum Settled {
    /// Closing, and the member is known to be gone: the registration ends.
    Done,
    /// Unhealthy, and the member is known to be gone: wait for a change.
    Gone,
    /// A step was made; look again.
    Again,
}

/// The member is not wanted (closing, or the check fails): remove it, and
/// any znode a create whose answer was lost may have made.
async fn unwanted(
    ctx: &Ctx,
    generation: &Generation,
    closing: bool,
) -> std::result::Result<Settled, zk::Error> {
    remove_orphans(ctx, generation).await?;
    let current = ctx.ledger().current.clone();
    if let Some(owned) = current {
        remove(ctx, generation, &owned.path).await?;
        return Ok(Settled::Again);
    }
    if ctx.ledger().uncertain == Some(generation.number) {
        if let Some(path) = adopt(ctx, generation).await? {
            ctx.ledger().current = Some(Owned {
                path,
                generation: generation.number,
                session_id: generation.session_id,
            });
        }
        return Ok(Settled::Again);
    }
    Ok(if closing {
        Settled::Done
    } else {
        Settled::Gone
    })
}

fn forget(ctx: &Ctx, path: &str) {
    let mut ledger = ctx.ledger();
    if ledger.current.as_ref().is_some_and(|o| o.path == path) {
        ledger.current = None;
    }
    drop(ledger);
    ctx.session.release(path);
}

async fn remove(
    ctx: &Ctx,
    generation: &Generation,
    path: &str,
) -> std::result::Result<(), zk::Error> {
    match generation.client.delete(path, None).await {
        Ok(()) | Err(zk::Error::NoNode) => {
            tracing::info!(path, "member removed");
            forget(ctx, path);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[tracing::instrument(name = "register_create", level = "debug", skip_all, fields(
    generation = generation.number,
    session = format_args!("{:#x}", generation.session_id),
))]
async fn create(ctx: &Ctx, generation: &Generation) -> std::result::Result<(), zk::Error> {
    let client = &generation.client;
    let uncertain = ctx.ledger().uncertain == Some(generation.number);
    if uncertain {
        if let Some(path) = adopt(ctx, generation).await? {
            tracing::info!(path = %path, "found the member a lost create made; keeping it");
            return registered(ctx, generation, path);
        }
    }
    let prefix = format!("{}/member_", ctx.set_path);
    let acls = zk::Acls::new(&ctx.acls);
    let options = zk::CreateMode::EphemeralSequential.with_acls(acls);
    loop {
        ctx.ledger().uncertain = Some(generation.number);
        match client.create(&prefix, &ctx.data, &options).await {
            Ok((_, seq)) => return registered(ctx, generation, format!("{prefix}{seq}")),
            Err(zk::Error::NoNode) => {
                ctx.ledger().uncertain = None;
                let parents = zk::CreateMode::Persistent.with_acls(acls);
                client.mkdir(&ctx.set_path, &parents).await?;
            }
            Err(e) => {
                // Only ZooKeeper's own answer says the create was not
                // applied; after any other error a znode may exist.
                if is_answer(&e) {
                    ctx.ledger().uncertain = None;
                }
                return Err(e);
            }
        }
    }
}

fn registered(
    ctx: &Ctx,
    generation: &Generation,
    path: String,
) -> std::result::Result<(), zk::Error> {
    ctx.session.claim(&path);
    {
        let mut ledger = ctx.ledger();
        ledger.current = Some(Owned {
            path: path.clone(),
            generation: generation.number,
            session_id: generation.session_id,
        });
        ledger.uncertain = None;
        ledger.last_error = None;
        if ledger.ever_registered {
            ctx.metrics.reregistrations.increment(1);
        }
        ledger.ever_registered = true;
    }
    ctx.metrics.creates.increment(1);
    tracing::info!(path = %path, addr = %ctx.addr, "member registered");
    Ok(())
}

/// After a create whose answer was lost: is there a member with our data,
/// owned by this session, that no other registration claims?
///
/// The list is read after a `sync`: the client may have reconnected to a
/// follower that has not applied the create yet, and a list from there
/// would miss the znode and lead to a second one.
async fn adopt(
    ctx: &Ctx,
    generation: &Generation,
) -> std::result::Result<Option<String>, zk::Error> {
    match generation.client.sync(&ctx.set_path).await {
        Ok(()) | Err(zk::Error::NoNode) => {}
        Err(e) => return Err(e),
    }
    let children = match generation.client.list_children(&ctx.set_path).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    for name in children.iter().filter(|n| n.starts_with("member_")) {
        let path = format!("{}/{name}", ctx.set_path);
        if ctx.session.is_claimed(&path) {
            continue;
        }
        match generation.client.get_data(&path).await {
            // Claiming is the atomic step: two registrations with the same
            // data never adopt the same znode.
            Ok((data, stat))
                if stat.ephemeral_owner == generation.session_id
                    && data == ctx.data
                    && ctx.session.claim(&path) =>
            {
                return Ok(Some(path));
            }
            Ok(_) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    ctx.ledger().uncertain = None;
    Ok(None)
}

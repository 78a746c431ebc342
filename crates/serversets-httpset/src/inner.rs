//! The state every clone of an [`HttpSet`](crate::HttpSet) and every
//! request share: the member table kept in step with the source, and the
//! choice of a member for each attempt.
//!
//! Kept apart from the public handle (`set`) so that the handle reads as
//! the API it is, and apart from the request's state machine (`call`),
//! which only asks this module for a member and reports failures back. The
//! background follower that calls [`Inner::sync`] lives in `follower`.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Builder as ClientBuilder;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serversets_core::Watcher;
use tokio::time::Instant;

use crate::builder::Config;
use crate::follower::Follower;
use crate::health::{Clock, LazyNow};
use crate::metrics::SetMetrics;
use crate::select::pick;
use crate::table::{MemberSlot, Table};
use crate::Error;

/// State shared by every clone of an [`HttpSet`](crate::HttpSet) and its
/// requests.
pub(crate) struct Inner<C> {
    watcher: Arc<dyn Watcher>,
    table: ArcSwap<Table<C>>,
    /// The round-robin position.
    counter: AtomicUsize,
    clock: Clock,
    config: Config,
    connector: C,
    clients: ClientBuilder,
    /// Serialises table rebuilds (rare); reads never take it.
    rebuild: Mutex<()>,
    follower: Follower,
    /// The set's metric handles (each member holds its own).
    metrics: SetMetrics,
}

/// Whether a table rebuild waits for one already under way.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Yes,
    No,
}

impl<C> Inner<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// The state for a set over `watcher`, its table built from the
    /// watcher's current snapshot. Starts no follower.
    pub(crate) fn new<W: Watcher + 'static>(config: Config, connector: C, watcher: W) -> Inner<C> {
        let mut clients = ClientBuilder::new(TokioExecutor::new());
        clients
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_member);
        let watcher: Arc<dyn Watcher> = Arc::new(watcher);
        let metrics = SetMetrics::new(&config.metrics_set);
        let first = Table::follow(
            &Table::empty(),
            &watcher.snapshot(),
            &config.scheme,
            &clients,
            &connector,
            &metrics,
        );
        metrics.members.set(first.members.len() as f64);
        Inner {
            watcher,
            table: ArcSwap::from_pointee(first),
            counter: AtomicUsize::new(0),
            clock: Clock::new(),
            config,
            connector,
            clients,
            rebuild: Mutex::new(()),
            follower: Follower::new(),
            metrics,
        }
    }
}

impl<C> Inner<C> {
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &SetMetrics {
        &self.metrics
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn watcher(&self) -> &Arc<dyn Watcher> {
        &self.watcher
    }

    pub(crate) fn follower(&self) -> &Follower {
        &self.follower
    }

    /// The installed table, however old (for `Debug`).
    pub(crate) fn installed(&self) -> Guard<Arc<Table<C>>> {
        self.table.load()
    }

    /// The lock that serialises rebuilds, for tests that stand in for a
    /// rebuild under way.
    #[cfg(test)]
    pub(crate) fn rebuild_lock(&self) -> &Mutex<()> {
        &self.rebuild
    }
}

impl<C> Inner<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// The table matching the watcher's newest snapshot: one snapshot load
    /// and one table load on the common path, a rebuild when they differ.
    ///
    /// Never blocks: when another thread (the follower, usually) is already
    /// rebuilding, the installed table is used rather than wait for it.
    fn current(&self) -> Guard<Arc<Table<C>>> {
        self.current_with(Wait::No)
    }

    /// Like [`current`](Self::current), but waits for a rebuild under way,
    /// so the table is as new as the snapshot read on entry.
    pub(crate) fn current_exact(&self) -> Guard<Arc<Table<C>>> {
        self.current_with(Wait::Yes)
    }

    fn current_with(&self, wait: Wait) -> Guard<Arc<Table<C>>> {
        let table = self.table.load();
        if table.version == self.watcher.snapshot().version() {
            return table;
        }
        drop(table);
        self.sync(wait);
        self.table.load()
    }

    /// Installs the table for the watcher's newest snapshot unless it is
    /// installed already. With `Wait::No`, gives up at once when another
    /// rebuild holds the lock.
    pub(crate) fn sync(&self, wait: Wait) {
        // The lock guards no data (the table is in the ArcSwap); a poisoned
        // lock is harmless.
        let _rebuild = match wait {
            Wait::Yes => self.rebuild.lock().unwrap_or_else(|p| p.into_inner()),
            Wait::No => match self.rebuild.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            },
        };
        // Read under the lock: whatever the caller saw may be stale by now,
        // and the newest snapshot is the one to install. Versions are
        // compared for equality, not order, so a source whose versions
        // restart (a new session, say) is still followed.
        let snap = self.watcher.snapshot();
        let old = self.table.load_full();
        if old.version == snap.version() {
            return;
        }
        let next = Table::follow(
            &old,
            &snap,
            &self.config.scheme,
            &self.clients,
            &self.connector,
            &self.metrics,
        );
        self.metrics.members.set(next.members.len() as f64);
        tracing::debug!(
            version = next.version,
            members = next.members.len(),
            "following membership change"
        );
        self.table.store(Arc::new(next));
    }

    /// A member for the next attempt from the current table, or `None`
    /// when the set is empty.
    ///
    /// The fast path never waits for a rebuild under way and uses the
    /// installed table, which is fine while that table has members. When
    /// it has none but a newer snapshot exists, the rebuild is waited for
    /// instead (#12): the new members are published, and answering
    /// `NoServers` from the old table, or going to sleep on a change that
    /// already happened, would contradict them.
    pub(crate) fn select_now(
        &self,
        avoid: Option<&Arc<MemberSlot<C>>>,
    ) -> Option<Arc<MemberSlot<C>>> {
        let table = self.current();
        if let Some(member) = self.select_from(&table, avoid) {
            return Some(member);
        }
        drop(table);
        let table = self.current_exact();
        self.select_from(&table, avoid)
    }

    fn select_from(
        &self,
        table: &Table<C>,
        avoid: Option<&Arc<MemberSlot<C>>>,
    ) -> Option<Arc<MemberSlot<C>>> {
        let avoid = avoid.and_then(|a| table.members.iter().position(|m| Arc::ptr_eq(m, a)));
        let mut now = LazyNow::new(&self.clock);
        pick(
            self.config.balance,
            &self.counter,
            &table.members,
            |m| &m.health,
            &table.weights,
            avoid,
            &mut now,
        )
        .map(|i| table.members[i].clone())
    }

    /// Waits up to the configured time for the set to offer a member; the
    /// slow path of selection, boxed by the caller so the request future
    /// stays small.
    pub(crate) async fn wait_for_member(
        self: Arc<Self>,
        avoid: Option<Arc<MemberSlot<C>>>,
    ) -> Result<Arc<MemberSlot<C>>, Error> {
        let avoid = avoid.as_ref();
        let Some(wait) = self.config.wait_for_servers else {
            return Err(Error::NoServers {
                waited: Duration::ZERO,
            });
        };
        let started = Instant::now();
        // Subscribe before looking, so a change in between still wakes us.
        let mut changes = self.watcher.subscribe();
        loop {
            if let Some(member) = self.select_now(avoid) {
                return Ok(member);
            }
            let left = wait.saturating_sub(started.elapsed());
            if self.watcher.is_closed() || left.is_zero() {
                return Err(Error::NoServers {
                    waited: started.elapsed(),
                });
            }
            match tokio::time::timeout(left, changes.changed()).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return self.select_now(avoid).ok_or(Error::NoServers {
                        waited: started.elapsed(),
                    });
                }
            }
        }
    }

    /// Records a connect failure or attempt timeout against `member`.
    pub(crate) fn failed(&self, member: &MemberSlot<C>) {
        let table = self.table.load();
        let ejected = member.health.on_failure(
            &member.addr,
            self.config.eject,
            &self.clock,
            table.members.iter().map(|m| &m.health),
        );
        if ejected {
            member.metrics.ejections.increment(1);
        }
    }
}

//! The state every clone of an [`HttpSet`](crate::HttpSet) and every
//! request share: the member table kept in step with the source, and the
//! choice of a member for each attempt.
//!
//! Kept apart from the public handle (`set`) so that the handle reads as
//! the API it is, and apart from the request's state machine (`call`),
//! which only asks this module for a member and reports answers and
//! failures back to the shared passive-health rule
//! ([`serversets_core::balance::health`]). The background follower that
//! calls [`Inner::sync`] is started in `follower`.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Builder as ClientBuilder;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serversets_core::balance::{Attempt, Clock, FollowTask, LazyNow};
use serversets_core::Watcher;
use tokio::time::Instant;

use crate::builder::Config;
use crate::health::MemberHealth;
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
    /// The follower task, once started; dropped with the set, which stops
    /// it.
    follower: OnceLock<FollowTask>,
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
            follower: OnceLock::new(),
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

    pub(crate) fn watcher(&self) -> &Arc<dyn Watcher> {
        &self.watcher
    }

    pub(crate) fn follower(&self) -> &OnceLock<FollowTask> {
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
    /// `NoMembers` from the old table, or going to sleep on a change that
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
        let mut now = self.clock.lazy_now();
        pick(
            self.config.balance,
            &self.counter,
            &table.members,
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
        let Some(wait) = self.config.wait_for_members else {
            return Err(Error::NoMembers {
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
                return Err(Error::NoMembers {
                    waited: started.elapsed(),
                });
            }
            match tokio::time::timeout(left, changes.changed()).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return self.select_now(avoid).ok_or(Error::NoMembers {
                        waited: started.elapsed(),
                    });
                }
            }
        }
    }

    /// Passive-health state of every member in the current set, in the
    /// set's order.
    pub(crate) fn health(&self) -> Vec<MemberHealth> {
        let table = self.current_exact();
        table
            .members
            .iter()
            .map(|m| MemberHealth::new(&m.id, &m.addr, m.health.report(&self.clock), m.load.get()))
            .collect()
    }

    /// Records a connect failure or attempt timeout against `member`;
    /// true when it ejected the member (never the last one in service).
    pub(crate) fn failed(&self, member: &MemberSlot<C>) -> bool {
        let table = self.table.load();
        let others_available = |now: &mut LazyNow<'_>| {
            table
                .members
                .iter()
                .filter(|m| !std::ptr::eq(&***m, member))
                .any(|m| m.health.is_available(now))
        };
        let ejected = member.health.record_failure(
            &member.addr,
            self.config.eject,
            &self.clock,
            others_available,
        );
        if ejected {
            member.metrics.ejections.increment(1);
        }
        ejected
    }

    /// Records an answer (any status) from `member` to an attempt sent
    /// under `attempt`; an answer to a request sent before the member's
    /// latest ejection does not end it.
    pub(crate) fn answered(&self, member: &MemberSlot<C>, attempt: Attempt) {
        if member.health.record_answer(attempt) {
            tracing::info!(member = %member.addr, "ejected member answered again; back in rotation");
        } else if member.health.attempt() != attempt {
            tracing::debug!(member = %member.addr, "answer to a request sent before the member's ejection; ignored for health");
        }
    }
}

/// The passive-health rule as httpset applies it: failures and answers
/// recorded through the set, the peers it must leave in service taken from
/// its table (these were `health.rs`'s tests before the rule moved to
/// core).
#[cfg(test)]
mod tests {
    use hyper_util::client::legacy::connect::HttpConnector;
    use serversets_core::balance::{Ejection, InFlight};
    use serversets_fixedset::FixedSet;

    use super::*;

    /// Ejection after 3 failures, for longer than any test runs.
    const POLICY: Ejection = Ejection::new(3, Duration::from_secs(60));

    /// The state of a set over `n` members (no runtime: no follower).
    fn set_of(
        n: u16,
        eject: Ejection,
    ) -> (Inner<HttpConnector>, Vec<Arc<MemberSlot<HttpConnector>>>) {
        let config = Config {
            eject,
            ..Config::default()
        };
        let addrs = (1..=n).map(|port| format!("127.0.0.1:{port}"));
        let inner = Inner::new(config, HttpConnector::new(), FixedSet::new(addrs).unwrap());
        let members = inner.current_exact().members.clone();
        (inner, members)
    }

    fn available(inner: &Inner<HttpConnector>, member: &MemberSlot<HttpConnector>) -> bool {
        member.health.is_available(&mut inner.clock.lazy_now())
    }

    fn report(inner: &Inner<HttpConnector>, i: usize) -> MemberHealth {
        inner.health().swap_remove(i)
    }

    #[test]
    fn ejects_after_the_bound_and_readmits_after_cooldown() {
        let (set, members) = set_of(2, POLICY);
        let me = &members[0];
        assert!(!set.failed(me));
        assert!(!set.failed(me));
        assert!(available(&set, me));
        assert!(set.failed(me));
        assert!(!available(&set, me));
        assert!(report(&set, 0).is_ejected());

        // The cool-down's end, without waiting for it: core's clock is the
        // system's monotonic clock, which a test cannot advance, so a
        // cool-down of 0 stands for one that has just run out.
        let (set, members) = set_of(2, POLICY.with_cooldown(Duration::ZERO));
        let me = &members[0];
        for _ in 0..3 {
            set.failed(me);
        }
        assert_eq!(report(&set, 0).ejections, 1);
        // Cool-down over: probed again, but one more failure re-ejects.
        assert!(available(&set, me));
        assert!(set.failed(me));
        assert_eq!(report(&set, 0).ejections, 2);
        // An answer puts it straight back.
        set.answered(me, me.health.attempt());
        assert!(available(&set, me));
        let r = report(&set, 0);
        assert_eq!((r.consecutive_failures, r.is_ejected()), (0, false));
    }

    #[test]
    fn a_late_answer_to_a_request_sent_before_the_ejection_does_not_end_it() {
        let (set, members) = set_of(2, POLICY);
        let me = &members[0];
        let old = me.health.attempt(); // a request goes out, then the member fails
        for _ in 0..3 {
            set.failed(me);
        }
        assert!(!available(&set, me));
        set.answered(me, old); // ...and the old request is answered
        assert!(!available(&set, me));
        let r = report(&set, 0);
        assert_eq!((r.consecutive_failures, r.is_ejected()), (3, true));
        // A request sent after the ejection (all members down, say) does
        // re-admit it.
        set.answered(me, me.health.attempt());
        assert!(available(&set, me));
        let r = report(&set, 0);
        assert_eq!((r.consecutive_failures, r.is_ejected()), (0, false));
    }

    #[test]
    fn never_ejects_the_last_member_in_service() {
        let (set, members) = set_of(2, POLICY);
        for _ in 0..3 {
            set.failed(&members[1]);
        }
        assert!(!available(&set, &members[1]));
        for _ in 0..10 {
            assert!(!set.failed(&members[0]));
        }
        assert!(available(&set, &members[0]));
        let (alone, members) = set_of(1, POLICY);
        for _ in 0..10 {
            assert!(!alone.failed(&members[0]));
        }
    }

    #[test]
    fn zero_bound_disables_ejection_and_in_flight_counts() {
        let (set, members) = set_of(2, POLICY.with_after(0));
        for _ in 0..10 {
            assert!(!set.failed(&members[0]));
        }
        let attempts = [
            InFlight::enter(members[0].clone()),
            InFlight::enter(members[0].clone()),
        ];
        assert_eq!(report(&set, 0).in_flight, 2);
        drop(attempts);
        assert_eq!(report(&set, 0).in_flight, 0);
    }
}

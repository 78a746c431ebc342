//! The public pool handle.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serversets_core::{HostPort, Watcher};

use crate::config::{Config, ThriftSetBuilder};
use crate::pool::Shared;
use crate::{follower, BuildError, Connection, Error};

/// A pool of Thrift connections over a live server set, handing out the
/// member with the fewest requests in flight.
///
/// Each member of the watcher's current snapshot gets its own pool. [`get`]
/// picks, among members below their [`max_active`] limit, the one with the
/// fewest connections in flight (ties broken at random, so many clients do
/// not herd onto one member), reuses one of its idle connections or dials a
/// new one, and returns a [`Connection`] guard. Members that fail
/// repeatedly are ejected: skipped for a cool-down (see
/// [`ThriftSetBuilder::eject_after`]).
///
/// [`max_active`]: ThriftSetBuilder::max_active
///
/// Members' weights ([`serversets_core::Member::weight`]) scale the choice:
/// connections in flight are divided by weight and ties broken in
/// proportion to weight. A member of weight 0 is used only when every
/// member of positive weight failed to connect during that `get` (or all
/// weigh 0).
///
/// ```
/// use std::net::TcpListener;
/// use serversets_core::{HostPort, Member};
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::ThriftSet;
///
/// let a = TcpListener::bind("127.0.0.1:0")?;
/// let b = TcpListener::bind("127.0.0.1:0")?;
/// let heavy = Member::from_addr(a.local_addr()?.to_string().parse::<HostPort>()?).with_weight(2.0);
/// let drained = Member::from_addr(b.local_addr()?.to_string().parse::<HostPort>()?).with_weight(0.0);
/// let set = ThriftSet::new(FixedSet::from_members([heavy, drained]))?;
/// // Even with a call out on it, the weighted member comes first.
/// let first = set.get()?;
/// let second = set.get()?;
/// assert_eq!(first.addr(), second.addr());
/// assert_eq!(first.addr().port(), a.local_addr()?.port());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A background thread follows the watcher: new members join; removed ones
/// have their idle connections closed at once and their checked-out ones
/// closed on return. Dropping the set closes it.
///
/// [`get`]: ThriftSet::get
///
/// ```
/// use std::net::TcpListener;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::ThriftSet;
///
/// let a = TcpListener::bind("127.0.0.1:0")?;
/// let b = TcpListener::bind("127.0.0.1:0")?;
/// let members = FixedSet::new([a.local_addr()?.to_string(), b.local_addr()?.to_string()])?;
/// let set = ThriftSet::new(members)?;
///
/// // Two callers at once land on different members: each is the least loaded.
/// let first = set.get()?;
/// let second = set.get()?;
/// assert_ne!(first.addr(), second.addr());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ThriftSet {
    shared: Arc<Shared>,
    follower: Mutex<Option<JoinHandle<()>>>,
}

/// One member's state, as reported by [`ThriftSet::members`].
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::ThriftSet;
///
/// let set = ThriftSet::new(FixedSet::new(["127.0.0.1:9"])?)?;
/// let member = &set.members()[0];
/// assert_eq!(member.addr.to_string(), "127.0.0.1:9");
/// assert_eq!((member.in_flight, member.idle, member.ejected_for), (0, 0, None));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberStats {
    /// The member's address.
    pub addr: HostPort,
    /// Connections in flight: checked out, or being opened. What
    /// [`max_active`](ThriftSetBuilder::max_active) limits.
    pub in_flight: usize,
    /// Open, unused connections.
    pub idle: usize,
    /// Failures since the member's last success.
    pub consecutive_failures: u32,
    /// How much longer the member is ejected, if it is.
    pub ejected_for: Option<Duration>,
}

impl ThriftSet {
    /// A set over `watcher` with every option at its default (framed binary
    /// protocol, the `DEFAULT_*` limits and timeouts).
    ///
    /// # Errors
    ///
    /// As [`ThriftSetBuilder::build`]: with every option at its default,
    /// only [`BuildError::Runtime`] or [`BuildError::Thread`], when the
    /// follower could not be started.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_thriftset::ThriftSet;
    ///
    /// let set = ThriftSet::new(FixedSet::new(["10.0.0.1:9090", "10.0.0.2:9090"])?)?;
    /// assert_eq!(set.members().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<W: Watcher + 'static>(watcher: W) -> Result<ThriftSet, BuildError> {
        ThriftSetBuilder::new().build(watcher)
    }

    /// A builder for the pool options.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_thriftset::ThriftSet;
    ///
    /// let set = ThriftSet::builder().max_active(4).build(FixedSet::empty())?;
    /// # let _ = set;
    /// # Ok::<(), serversets_thriftset::BuildError>(())
    /// ```
    pub fn builder() -> ThriftSetBuilder {
        ThriftSetBuilder::new()
    }

    pub(crate) fn start(
        config: Config,
        watcher: Arc<dyn Watcher>,
    ) -> Result<ThriftSet, BuildError> {
        let shared = Arc::new(Shared::new(config, watcher));
        // The current members at once, in the caller; the follower then
        // applies whatever is newer (it subscribes before it reads, so no
        // change falls between).
        shared.catch_up();
        let follower = follower::spawn(shared.clone())?;
        Ok(ThriftSet {
            shared,
            follower: Mutex::new(Some(follower)),
        })
    }

    /// Checks out a connection to the member with the fewest requests in
    /// flight. Blocks while connecting, and while every member is at its
    /// `max_active` limit (up to the checkout timeout). A member that
    /// refuses the connection is counted as failing and the next best member
    /// is tried. Returns within the checkout timeout plus the connect
    /// timeout in all.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the set is closed, [`Error::NoMembers`] when
    /// the member list is empty, [`Error::Exhausted`] when every member
    /// stayed full for the checkout timeout, or [`Error::Connect`] (the
    /// last failure) when every member tried failed to connect.
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use serversets_fixedset::FixedSet;
    /// use serversets_thriftset::{Error, ThriftSet};
    ///
    /// let server = TcpListener::bind("127.0.0.1:0")?;
    /// let set = ThriftSet::builder()
    ///     .max_active(1)
    ///     .checkout_timeout(std::time::Duration::from_millis(10))
    ///     .build(FixedSet::new([server.local_addr()?.to_string()])?)?;
    /// let held = set.get()?;
    /// assert!(matches!(set.get(), Err(Error::Exhausted(_))));
    /// drop(held);
    /// assert!(set.get().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<Connection, Error> {
        checkout(&self.shared)
    }

    /// [`get`](ThriftSet::get) for async code: the checkout (which may
    /// connect or wait) runs on tokio's blocking pool, not on the runtime's
    /// worker threads. Calls on the connection are blocking too; run them in
    /// `spawn_blocking` as well.
    ///
    /// # Errors
    ///
    /// Those of [`get`](ThriftSet::get); [`Error::NoRuntime`] outside a
    /// tokio runtime; [`Error::Task`] when the blocking task did not finish
    /// (the runtime shut down under it).
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use serversets_fixedset::FixedSet;
    /// use serversets_thriftset::ThriftSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let server = TcpListener::bind("127.0.0.1:0")?;
    /// let set = ThriftSet::new(FixedSet::new([server.local_addr()?.to_string()])?)?;
    /// let conn = set.get_async().await?;
    /// assert_eq!(conn.addr().port(), server.local_addr()?.port());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn get_async(&self) -> Result<Connection, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let shared = self.shared.clone();
        runtime
            .spawn_blocking(move || checkout(&shared))
            .await
            .map_err(Error::Task)?
    }

    /// Closes the set: `get` fails with [`Error::Closed`] from now on, idle
    /// connections close at once, checked-out ones close when returned, and
    /// the follower thread stops. Idempotent; dropping the set does the same.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_thriftset::ThriftSet;
    ///
    /// let set = ThriftSet::new(FixedSet::new(["127.0.0.1:9"])?)?;
    /// set.close();
    /// set.close();
    /// assert!(set.is_closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        if self.shared.close() {
            tracing::debug!("thriftset: closed");
        }
        let handle = self
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            // The follower never calls back into this handle, so this cannot
            // be the follower thread; it exits as soon as it sees the stop.
            if handle.join().is_err() {
                tracing::error!("thriftset: follower thread panicked while stopping");
            }
        }
    }

    /// True once closed.
    ///
    /// ```
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_thriftset::ThriftSet;
    /// let set = ThriftSet::new(FixedSet::empty())?;
    /// assert!(!set.is_closed());
    /// # Ok::<(), serversets_thriftset::BuildError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Every member in the pool with its connection counts and ejection
    /// state, in address order.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_thriftset::ThriftSet;
    ///
    /// let members = FixedSet::new(["127.0.0.1:9"])?;
    /// let set = ThriftSet::new(members.feed())?;
    /// members.set_addresses(["127.0.0.1:9", "127.0.0.1:10"])?;
    /// # for _ in 0..500 { if set.members().len() == 2 { break } std::thread::sleep(std::time::Duration::from_millis(2)); }
    /// assert_eq!(set.members().len(), 2); // the follower applied the change
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn members(&self) -> Vec<MemberStats> {
        let mut members = self.shared.stats();
        members.sort_by(|a, b| a.addr.cmp(&b.addr));
        members
    }
}

fn checkout(shared: &Arc<Shared>) -> Result<Connection, Error> {
    let (link, lease) = shared.checkout()?;
    Ok(Connection::new(shared.clone(), link, lease))
}

impl Drop for ThriftSet {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for ThriftSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThriftSet")
            .field("closed", &self.is_closed())
            .field("members", &self.shared.stats().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serversets_core::balance::FollowState;
    use serversets_core::{HostPort, Member, Publisher};
    use testkit::eventually_blocking;

    use super::*;

    fn member(port: u16) -> Member {
        Member::from_addr(HostPort::new("127.0.0.1", port).unwrap())
    }

    /// The follower thread follows the source until the set closes, and
    /// closing is an orderly stop (not reported as a death).
    #[test]
    fn the_follower_follows_until_the_set_closes_then_stops_in_good_order() {
        let source = Publisher::new();
        let set = ThriftSet::new(source.feed()).unwrap();
        let follower = set.shared.follower.clone();
        eventually_blocking(Duration::from_secs(5), "the follower to run", || {
            follower.state() == FollowState::Following
        });
        source.publish([member(9)]);
        eventually_blocking(Duration::from_secs(5), "the new member", || {
            set.members().len() == 1
        });
        set.close();
        assert_eq!(follower.state(), FollowState::Idle);
    }

    /// A source that closes leaves the last members in the pool, and the
    /// follower in the state that says so.
    #[test]
    fn a_closed_source_leaves_the_last_members() {
        let source = Publisher::new();
        source.publish([member(9), member(10)]);
        let set = ThriftSet::new(source.feed()).unwrap();
        let follower = set.shared.follower.clone();
        source.close();
        eventually_blocking(Duration::from_secs(5), "the source's close", || {
            follower.state() == FollowState::SourceClosed
        });
        assert_eq!(set.members().len(), 2);
    }
}

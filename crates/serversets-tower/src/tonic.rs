//! A tonic [`Channel`] whose endpoints follow a Watcher (feature `tonic`).
//!
//! [`Channel::balance_channel`] gives a channel and the sender of its
//! endpoint changes; [`BalanceChannel`] keeps that sender in step with any
//! [`Watcher`]: [`Change::Insert`] of (member id, [`Endpoint`]) for each new
//! member, [`Change::Remove`] for each one gone. A background task does it;
//! [`ChannelSync`] is its handle.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::tonic::transport::channel::Change;
use ::tonic::transport::{Channel, Endpoint};
use ::tonic::Status;
use serversets_core::balance::Changes;
use serversets_core::{Member, MemberId, Watcher};
use tokio::sync::mpsc::Sender;
use tokio::task::JoinHandle;
use tower::BoxError;

use crate::error::NoMembers;
use crate::fail_fast::FailFastLayer;
use crate::follow::PollFollower;
use crate::member_count::MemberCount;

/// How many endpoint changes may queue for tonic's balancer (tonic's own
/// default buffer size).
pub const DEFAULT_CAPACITY: usize = 1024;

/// The user's hook: configures the endpoint of one member.
type Configure = Box<dyn Fn(&Member, Endpoint) -> Result<Endpoint, BoxError> + Send>;

/// Builds a tonic [`Channel`] over a [`Watcher`], and the task that keeps
/// its endpoints in step with the watcher.
///
/// - Each member becomes an [`Endpoint`] for `http://host:port` (or
///   `https://`, see [`https`](BalanceChannel::https)), passed through the
///   [`configure`](BalanceChannel::configure) hook for TLS, timeouts and the
///   like, and is inserted under its [`MemberId`]. A member whose contents
///   change is inserted again under its id (the new endpoint replaces the
///   old). Unchanged members are never sent again.
/// - tonic connects lazily: a new endpoint connects on its first request,
///   and reconnects after a failure.
/// - The task ends by itself when the watcher closes (the channel keeps its
///   last endpoints, as a watch keeps its members) or when every clone of
///   the channel has been dropped. Dropping the [`ChannelSync`] handle does
///   not end it; [`ChannelSync::stop`] does.
/// - Member weights are not used: tonic's balancer takes no weights (it
///   draws two endpoints and compares loads that tonic reports as 0). For
///   weighted gRPC, build a tonic `Channel` per member with
///   [`WatcherDiscover`](crate::WatcherDiscover) and
///   [`MemberLoad`](crate::MemberLoad) and balance those with tower.
///
/// ```
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_tower::tonic::BalanceChannel;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let set = FixedSet::new(["10.0.0.1:50051", "10.0.0.2:50051"])?;
/// let (channel, sync) = BalanceChannel::new(set)
///     .configure(|_member, endpoint| {
///         Ok::<_, std::convert::Infallible>(endpoint.timeout(Duration::from_secs(2)))
///     })
///     .build()?;
/// // Requests with no member fail with NoMembers (as gRPC `Unavailable`)
/// // after 1 s rather than wait for ever.
/// let channel = tower::Layer::layer(&sync.fail_fast(Duration::from_secs(1)), channel);
/// while sync.member_count().len() < 2 {
///     tokio::task::yield_now().await;
/// }
/// // let mut client = GreeterClient::new(channel); ...
/// # drop(channel);
/// # Ok(()) }
/// ```
pub struct BalanceChannel<W> {
    watcher: W,
    scheme: &'static str,
    capacity: usize,
    configure: Configure,
}

impl<W: Watcher + 'static> BalanceChannel<W> {
    /// A channel over `watcher`'s members, over plain HTTP/2.
    pub fn new(watcher: W) -> BalanceChannel<W> {
        BalanceChannel {
            watcher,
            scheme: "http",
            capacity: DEFAULT_CAPACITY,
            configure: Box::new(|_, endpoint| Ok(endpoint)),
        }
    }

    /// Endpoints are `https://host:port` (add a TLS config in
    /// [`configure`](BalanceChannel::configure), with one of tonic's `tls-*`
    /// features).
    pub fn https(mut self) -> BalanceChannel<W> {
        self.scheme = "https";
        self
    }

    /// How many endpoint changes may wait for tonic's balancer (default
    /// [`DEFAULT_CAPACITY`]; at least 1). A full queue holds the sync task
    /// back, never drops a change.
    pub fn capacity(mut self, capacity: usize) -> BalanceChannel<W> {
        self.capacity = capacity.max(1);
        self
    }

    /// Configures each member's [`Endpoint`] (TLS, timeouts, keep-alive,
    /// ...). The hook gets the member, so it can also read its metadata or
    /// choose per member. A member whose hook fails (or panics) is left out,
    /// logged, and listed by [`ChannelSync::rejected`] until it changes or
    /// leaves; if it was in the channel under an earlier version, it is
    /// removed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_fixedset::FixedSet;
    /// use serversets_tower::tonic::BalanceChannel;
    ///
    /// let builder = BalanceChannel::new(FixedSet::empty()).configure(|member, endpoint| {
    ///     if member.metadata().contains_key("draining") {
    ///         return Err("draining");
    ///     }
    ///     Ok(endpoint
    ///         .connect_timeout(Duration::from_millis(500))
    ///         .tcp_nodelay(true))
    /// });
    /// # drop(builder);
    /// ```
    pub fn configure<F, E>(mut self, configure: F) -> BalanceChannel<W>
    where
        F: Fn(&Member, Endpoint) -> Result<Endpoint, E> + Send + 'static,
        E: Into<BoxError>,
    {
        self.configure =
            Box::new(move |member, endpoint| configure(member, endpoint).map_err(Into::into));
        self
    }

    /// Creates the channel and starts the task that feeds it, on the
    /// current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BuildError::NoRuntime`] outside a tokio runtime: tonic's balancer
    /// and the sync task both need one.
    pub fn build(self) -> Result<(Channel, ChannelSync), BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let (channel, sender) = Channel::balance_channel::<MemberId>(self.capacity);
        let watcher: Arc<dyn Watcher> = Arc::new(self.watcher);
        let members = MemberCount::new(watcher.clone());
        let rejected = Arc::new(Mutex::new(HashMap::new()));
        let task = SyncTask {
            // Subscribes now, so no change before the task starts is lost.
            follower: PollFollower::new(watcher),
            sender,
            scheme: self.scheme,
            configure: self.configure,
            live: HashSet::new(),
            members: members.clone(),
            rejected: rejected.clone(),
        };
        let task = runtime.spawn(task.run());
        Ok((
            channel,
            ChannelSync {
                task,
                members,
                rejected,
            },
        ))
    }
}

impl<W> fmt::Debug for BalanceChannel<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceChannel")
            .field("scheme", &self.scheme)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Why a [`BalanceChannel`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Not called from within a tokio runtime.
    #[error("BalanceChannel::build needs a tokio runtime (tonic's balancer and the sync task run on it)")]
    NoRuntime,
}

/// Why the sync task of a [`BalanceChannel`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// The watcher closed; the channel keeps its last endpoints.
    WatcherClosed,
    /// Every clone of the channel was dropped.
    ChannelDropped,
    /// [`ChannelSync::stop`] was called (or the runtime shut down).
    Aborted,
}

/// A member left out of the channel because its endpoint could not be made.
#[derive(Debug, Clone)]
pub struct Rejected {
    member: Member,
    error: Arc<dyn StdError + Send + Sync>,
}

impl Rejected {
    /// The member.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Why: an invalid URI, or what the hook returned.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }
}

/// The handle of a [`BalanceChannel`]'s sync task.
///
/// Dropping it leaves the task running: it ends by itself when the watcher
/// closes or the channel is dropped.
///
/// ```
/// use serversets_core::{HostPort, Member, Publisher};
/// use serversets_tower::tonic::{BalanceChannel, Stopped};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = Publisher::new();
/// let good = Member::from_addr("10.0.0.1:50051".parse::<HostPort>()?);
/// let odd = Member::builder("m2", "10.0.0.2:50051".parse::<HostPort>()?)
///     .metadata("scheme", "unix")
///     .build();
/// source.publish([good, odd]);
/// let (_channel, sync) = BalanceChannel::new(source.feed())
///     .configure(|member, endpoint| match member.metadata().get("scheme") {
///         Some(other) => Err(format!("cannot dial {other}")),
///         None => Ok(endpoint),
///     })
///     .build()?;
/// while sync.member_count().len() + sync.rejected().len() < 2 {
///     tokio::task::yield_now().await;
/// }
/// assert_eq!(sync.member_count().len(), 1);
/// assert_eq!(sync.rejected()[0].member().id().as_str(), "m2");
/// assert_eq!(sync.rejected()[0].error().to_string(), "cannot dial unix");
///
/// // The source goes away: the task ends, the channel keeps its endpoint.
/// source.close();
/// assert_eq!(sync.stopped().await, Stopped::WatcherClosed);
/// # Ok(()) }
/// ```
pub struct ChannelSync {
    task: JoinHandle<Stopped>,
    members: MemberCount,
    rejected: Arc<Mutex<HashMap<MemberId, Rejected>>>,
}

impl ChannelSync {
    /// How many members the channel has been given an endpoint for (and not
    /// had it taken back).
    pub fn member_count(&self) -> MemberCount {
        self.members.clone()
    }

    /// A layer failing requests with [`NoMembers`] once the channel has had
    /// no member for `wait` (see [`FailFast`](crate::FailFast)). It
    /// reports a [`Status`] with code `Unavailable` whose source is the
    /// [`NoMembers`], so a generated tonic client returns that status;
    /// [`NoMembers::find`] finds it in the status.
    pub fn fail_fast(&self, wait: Duration) -> FailFastLayer {
        FailFastLayer::new(self.members.clone(), wait).grpc_unavailable()
    }

    /// Members left out because their endpoint could not be made.
    pub fn rejected(&self) -> Vec<Rejected> {
        self.rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// True once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ends the task now; the channel keeps the endpoints it has.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Waits for the task to end, and says why it did.
    pub async fn stopped(self) -> Stopped {
        match self.task.await {
            Ok(why) => why,
            // The task does not panic (the user's hook runs under
            // catch_unwind), so a join error is a cancellation.
            Err(_) => Stopped::Aborted,
        }
    }
}

impl fmt::Debug for ChannelSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSync")
            .field("members", &self.members.len())
            .field("finished", &self.task.is_finished())
            .finish_non_exhaustive()
    }
}

/// [`NoMembers`] as gRPC `Unavailable`, with the `NoMembers` as its source.
pub(crate) fn unavailable(no_servers: NoMembers) -> BoxError {
    let mut status = Status::unavailable(no_servers.to_string());
    status.set_source(Arc::new(no_servers));
    Box::new(status)
}

/// The sync task's state.
struct SyncTask {
    /// The source's changes (it keeps the source alive).
    follower: PollFollower,
    /// Into tonic's balancer.
    sender: Sender<Change<MemberId, Endpoint>>,
    scheme: &'static str,
    configure: Configure,
    /// Ids the channel holds.
    live: HashSet<MemberId>,
    /// `live.len()`, for fail-fast.
    members: MemberCount,
    /// Members left out, by id.
    rejected: Arc<Mutex<HashMap<MemberId, Rejected>>>,
}

/// The channel's balancer is gone.
struct Dropped;

/// Sends one change to tonic's balancer, waiting for room in the queue.
/// (A free function: a `&SyncTask` held across the wait would need the
/// user's hook to be `Sync`.)
async fn send(
    sender: &Sender<Change<MemberId, Endpoint>>,
    change: Change<MemberId, Endpoint>,
) -> Result<(), Dropped> {
    sender.send(change).await.map_err(|_| Dropped)
}

impl SyncTask {
    async fn run(mut self) -> Stopped {
        loop {
            let changes = tokio::select! {
                next = self.follower.changes() => match next {
                    Some(changes) => changes,
                    None => {
                        tracing::debug!("watcher closed; the channel keeps its endpoints");
                        return Stopped::WatcherClosed;
                    }
                },
                () = self.sender.closed() => return Stopped::ChannelDropped,
            };
            if self.apply(changes).await.is_err() {
                return Stopped::ChannelDropped;
            }
        }
    }

    /// Inserts first, then removes, so replacing every member never leaves
    /// the channel empty in between.
    async fn apply(&mut self, changes: Changes) -> Result<(), Dropped> {
        for member in changes.insert {
            let id = member.id().clone();
            match self.endpoint(&member) {
                Ok(endpoint) => {
                    send(&self.sender, Change::Insert(id.clone(), endpoint)).await?;
                    self.live.insert(id.clone());
                    self.rejected().remove(&id);
                }
                Err(error) => {
                    tracing::warn!(member = %id, addr = %member.addr(), %error, "member left out of the channel");
                    self.rejected().insert(
                        id.clone(),
                        Rejected {
                            member,
                            error: Arc::from(error),
                        },
                    );
                    if self.live.remove(&id) {
                        send(&self.sender, Change::Remove(id)).await?;
                    }
                }
            }
            self.members.set(self.live.len());
        }
        for id in changes.remove {
            self.rejected().remove(&id);
            if self.live.remove(&id) {
                send(&self.sender, Change::Remove(id)).await?;
            }
            self.members.set(self.live.len());
        }
        Ok(())
    }

    fn endpoint(&self, member: &Member) -> Result<Endpoint, BoxError> {
        let endpoint = Endpoint::from_shared(format!("{}://{}", self.scheme, member.addr()))?;
        // A panicking hook must not end the task and freeze the channel.
        catch_unwind(AssertUnwindSafe(|| (self.configure)(member, endpoint)))
            .unwrap_or_else(|_| Err("the configure hook panicked".into()))
    }

    fn rejected(&self) -> std::sync::MutexGuard<'_, HashMap<MemberId, Rejected>> {
        // The map carries no invariant a panic could break.
        self.rejected.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

//! One member of a server set, as every balancer sees it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::contract::address::HostPort;

/// A member's lifecycle status, as written by Finagle and Twitter commons.
///
/// Only [`Status::Alive`] members are served by a ZooKeeper watch; the other
/// values are kept so tools can show why a member is not served.
///
/// ```
/// use serversets_core::Status;
/// assert_eq!(Status::from_wire("ALIVE"), Status::Alive);
/// assert_eq!(Status::from_wire("SOMETHING_NEW"), Status::Unknown);
/// assert_eq!(Status::Alive.as_wire(), "ALIVE");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Status {
    /// The server is dead.
    Dead,
    /// The server is starting.
    Starting,
    /// The server is serving: the only status balancers use.
    #[default]
    Alive,
    /// The server is shutting down.
    Stopping,
    /// The server has stopped.
    Stopped,
    /// The server is up but unhealthy.
    Warning,
    /// Anything else, including strings this library does not know.
    Unknown,
}

impl Status {
    /// Reads the wire string; anything unrecognised is [`Status::Unknown`].
    pub fn from_wire(s: &str) -> Status {
        match s {
            "DEAD" => Status::Dead,
            "STARTING" => Status::Starting,
            "ALIVE" => Status::Alive,
            "STOPPING" => Status::Stopping,
            "STOPPED" => Status::Stopped,
            "WARNING" => Status::Warning,
            _ => Status::Unknown,
        }
    }

    /// The wire string, as Finagle writes it.
    pub fn as_wire(self) -> &'static str {
        match self {
            Status::Dead => "DEAD",
            Status::Starting => "STARTING",
            Status::Alive => "ALIVE",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
            Status::Warning => "WARNING",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_wire())
    }
}

/// The stable identity of a member within its source.
///
/// For ZooKeeper members it is the znode name (`member_0000000318`); for fixed
/// lists it is the address text. Two snapshots can be diffed by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(Arc<str>);

impl MemberId {
    /// Wraps an identity string.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member, MemberId, Snapshot};
    ///
    /// let id = MemberId::new("member_0000000001");
    /// let member = Member::builder(id.clone(), HostPort::new("10.0.0.1", 80)?).build();
    /// let snapshot = Snapshot::from_members(1, [member]);
    /// assert_eq!(snapshot.get(&id).map(|m| m.port()), Some(80));
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        MemberId(id.into())
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MemberId {
    fn from(s: &str) -> Self {
        MemberId::new(s)
    }
}

/// One server in a set: the address a client should use plus everything else
/// the member announced.
///
/// Cloning is cheap (one reference count).
///
/// ```
/// use serversets_core::{HostPort, Member, Status};
///
/// let m = Member::builder("member_0000000007", HostPort::new("10.0.0.3", 31781)?)
///     .additional_endpoint("http", HostPort::new("10.0.0.3", 31782)?)
///     .shard(2)
///     .metadata("weight", "2")
///     .build();
/// assert_eq!(m.id().as_str(), "member_0000000007");
/// assert_eq!(m.addr().port(), 31781);
/// assert_eq!(m.status(), Status::Alive);
/// assert_eq!(m.shard(), Some(2));
/// assert_eq!(m.additional_endpoints()["http"].port(), 31782);
/// assert_eq!(m.metadata().get("weight").map(String::as_str), Some("2"));
///
/// // A client that wants the "http" endpoint gets a member addressed by it.
/// let http = m.with_served_endpoint("http").ok_or("no http endpoint")?;
/// assert_eq!(http.addr().port(), 31782);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Member {
    inner: Arc<MemberInner>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MemberInner {
    id: MemberId,
    addr: HostPort,
    service_endpoint: HostPort,
    additional_endpoints: BTreeMap<String, HostPort>,
    status: Status,
    shard: Option<i32>,
    metadata: BTreeMap<String, String>,
    weight: Weight,
}

/// A member's share of traffic relative to the others: finite and at least
/// zero (compared by bits, so members stay `Eq` and `Hash`).
#[derive(Debug, Clone, Copy)]
struct Weight(f64);

impl Weight {
    fn new(w: f64) -> Weight {
        Weight(if w.is_finite() && w >= 0.0 { w } else { 0.0 })
    }
}

impl PartialEq for Weight {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Weight {}

impl std::hash::Hash for Weight {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl Member {
    /// Starts a member whose served address is its service endpoint.
    pub fn builder(id: impl Into<MemberId>, service_endpoint: HostPort) -> MemberBuilder {
        MemberBuilder {
            inner: MemberInner {
                id: id.into(),
                addr: service_endpoint.clone(),
                service_endpoint,
                additional_endpoints: BTreeMap::new(),
                status: Status::Alive,
                shard: None,
                metadata: BTreeMap::new(),
                weight: Weight(1.0),
            },
        }
    }

    /// A member for a fixed address: its id is the address text.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member};
    /// let m = Member::from_addr("h1:80".parse::<HostPort>()?);
    /// assert_eq!(m.id().as_str(), "h1:80");
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn from_addr(addr: HostPort) -> Member {
        Member::builder(MemberId::new(addr.to_string()), addr).build()
    }

    /// The member's stable identity.
    pub fn id(&self) -> &MemberId {
        &self.inner.id
    }

    /// The address a client should connect to: the service endpoint, or the
    /// named additional endpoint the watch was asked to serve.
    pub fn addr(&self) -> &HostPort {
        &self.inner.addr
    }

    /// Shorthand for `addr().host()`.
    pub fn host(&self) -> &str {
        self.inner.addr.host()
    }

    /// Shorthand for `addr().port()`.
    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }

    /// The member's main (service) endpoint.
    pub fn service_endpoint(&self) -> &HostPort {
        &self.inner.service_endpoint
    }

    /// Named additional endpoints, such as `http` or `admin`.
    pub fn additional_endpoints(&self) -> &BTreeMap<String, HostPort> {
        &self.inner.additional_endpoints
    }

    /// The announced status.
    pub fn status(&self) -> Status {
        self.inner.status
    }

    /// The shard id, when the member has one.
    pub fn shard(&self) -> Option<i32> {
        self.inner.shard
    }

    /// Free-form string metadata (Finagle allows up to 10 entries).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.inner.metadata
    }

    /// The member's weight: its share of traffic relative to the other
    /// members' (default 1.0; 0 means no traffic while others have some).
    /// Balancers scale their choices by it. From ZooKeeper it is the product
    /// of every Finagle `vector_` weight that selects the member.
    ///
    /// ```
    /// use serversets_core::{HostPort, Member};
    /// let m = Member::from_addr("h1:80".parse::<HostPort>()?);
    /// assert_eq!(m.weight(), 1.0);
    /// assert_eq!(m.with_weight(2.5).weight(), 2.5);
    /// // Not a share of traffic: read as none.
    /// assert_eq!(m.with_weight(-3.0).weight(), 0.0);
    /// assert_eq!(m.with_weight(f64::NAN).weight(), 0.0);
    /// # Ok::<(), serversets_core::AddressError>(())
    /// ```
    pub fn weight(&self) -> f64 {
        self.inner.weight.0
    }

    /// The same member with another weight (negative or non-finite weights
    /// are read as 0).
    pub fn with_weight(&self, weight: f64) -> Member {
        Member {
            inner: Arc::new(MemberInner {
                weight: Weight::new(weight),
                ..(*self.inner).clone()
            }),
        }
    }

    /// The same member, served on its named additional endpoint instead of
    /// its service endpoint; `None` when it has no such endpoint.
    pub fn with_served_endpoint(&self, name: &str) -> Option<Member> {
        let addr = self.inner.additional_endpoints.get(name)?.clone();
        Some(Member {
            inner: Arc::new(MemberInner {
                addr,
                ..(*self.inner).clone()
            }),
        })
    }

    /// The order snapshots are sorted in: address first, then id, so clients
    /// that see the same members see them in the same order.
    pub(crate) fn sort_key(&self) -> (&HostPort, &MemberId) {
        (&self.inner.addr, &self.inner.id)
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.inner.id.as_str())
            .field("addr", &format_args!("{}", self.inner.addr))
            .field("status", &self.inner.status)
            .field("shard", &self.inner.shard)
            .field("additional_endpoints", &self.inner.additional_endpoints)
            .field("metadata", &self.inner.metadata)
            .field("weight", &self.inner.weight.0)
            .finish()
    }
}

/// Builds a [`Member`]; see [`Member::builder`].
#[derive(Debug)]
pub struct MemberBuilder {
    inner: MemberInner,
}

impl MemberBuilder {
    /// Adds a named additional endpoint.
    pub fn additional_endpoint(mut self, name: impl Into<String>, addr: HostPort) -> Self {
        self.inner.additional_endpoints.insert(name.into(), addr);
        self
    }

    /// Sets the status (default [`Status::Alive`]).
    pub fn status(mut self, status: Status) -> Self {
        self.inner.status = status;
        self
    }

    /// Sets the shard id.
    pub fn shard(mut self, shard: i32) -> Self {
        self.inner.shard = Some(shard);
        self
    }

    /// Adds one metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the weight (default 1.0; see [`Member::weight`]).
    pub fn weight(mut self, weight: f64) -> Self {
        self.inner.weight = Weight::new(weight);
        self
    }

    /// Finishes the member.
    pub fn build(self) -> Member {
        Member {
            inner: Arc::new(self.inner),
        }
    }
}

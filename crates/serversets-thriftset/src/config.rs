//! Pool options and their builder.

use std::sync::Arc;
use std::time::Duration;

use serversets_core::Watcher;

use crate::{BuildError, ThriftSet};

/// Default [`ThriftSetBuilder::max_active`]: connections in flight (checked
/// out, or being opened) to one member at once.
///
/// ```
/// use std::net::TcpListener;
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{Error, ThriftSet, DEFAULT_MAX_ACTIVE};
///
/// let server = TcpListener::bind("127.0.0.1:0")?;
/// let set = ThriftSet::builder()
///     .checkout_timeout(Duration::ZERO) // fail at once instead of waiting
///     .build(FixedSet::new([server.local_addr()?.to_string()])?)?;
/// let held: Vec<_> = (0..DEFAULT_MAX_ACTIVE).map(|_| set.get()).collect::<Result<_, _>>()?;
/// assert_eq!(set.members()[0].in_flight, DEFAULT_MAX_ACTIVE);
/// assert!(matches!(set.get(), Err(Error::Exhausted(_))));
/// drop(held);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_MAX_ACTIVE: usize = 16;
/// Default [`ThriftSetBuilder::max_idle`]: connections kept open and unused
/// per member.
///
/// ```
/// use std::net::TcpListener;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{ThriftSet, DEFAULT_MAX_IDLE};
///
/// let server = TcpListener::bind("127.0.0.1:0")?;
/// let set = ThriftSet::new(FixedSet::new([server.local_addr()?.to_string()])?)?;
/// let held: Vec<_> = (0..DEFAULT_MAX_IDLE + 2).map(|_| set.get()).collect::<Result<_, _>>()?;
/// drop(held); // all returned: the ones beyond the limit are closed
/// assert_eq!(set.members()[0].idle, DEFAULT_MAX_IDLE);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_MAX_IDLE: usize = 8;
/// Default [`ThriftSetBuilder::connect_timeout`].
///
/// ```
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{ThriftSet, DEFAULT_CHECKOUT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT};
///
/// // Members on the same rack answer fast: give up on a dead one sooner,
/// // which also shortens the bound on a whole `get`.
/// let connect_timeout = DEFAULT_CONNECT_TIMEOUT / 4;
/// let set = ThriftSet::builder()
///     .connect_timeout(connect_timeout)
///     .build(FixedSet::new(["10.0.0.1:9090"])?)?;
/// let worst_get = DEFAULT_CHECKOUT_TIMEOUT + connect_timeout;
/// assert_eq!(worst_get, Duration::from_millis(1250));
/// # let _ = set;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default [`ThriftSetBuilder::io_timeout`]: a read or write that stalls
/// this long fails.
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{ThriftSet, DEFAULT_IO_TIMEOUT};
///
/// // A service with calls known to run long (a batch export): allow three
/// // times the default before a stalled read fails the call.
/// let set = ThriftSet::builder()
///     .io_timeout(Some(DEFAULT_IO_TIMEOUT * 3))
///     .build(FixedSet::new(["10.0.0.1:9090"])?)?;
/// # let _ = set;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ThriftSetBuilder::idle_timeout`]: an idle connection unused
/// this long is closed.
///
/// ```
/// use std::net::TcpListener;
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{ThriftSet, DEFAULT_IDLE_TIMEOUT};
///
/// let server = TcpListener::bind("127.0.0.1:0")?;
/// // The default keeps an unused connection open a minute; a firewall that
/// // drops idle flows sooner calls for less (40 ms here, to show it work).
/// let idle_timeout = Duration::from_millis(40);
/// assert!(idle_timeout < DEFAULT_IDLE_TIMEOUT);
/// let set = ThriftSet::builder()
///     .idle_timeout(Some(idle_timeout))
///     .build(FixedSet::new([server.local_addr()?.to_string()])?)?;
/// drop(set.get()?);
/// assert_eq!(set.members()[0].idle, 1);
/// # for _ in 0..1000 { if set.members()[0].idle == 0 { break } std::thread::sleep(Duration::from_millis(5)); }
/// assert_eq!(set.members()[0].idle, 0); // closed in the background
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ThriftSetBuilder::checkout_timeout`]: how long `get` waits
/// when every member is at its `max_active` limit.
///
/// ```
/// use std::net::TcpListener;
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{Error, ThriftSet, DEFAULT_CHECKOUT_TIMEOUT};
///
/// let server = TcpListener::bind("127.0.0.1:0")?;
/// // Fail fast under overload instead of queueing for the default second.
/// let wait = DEFAULT_CHECKOUT_TIMEOUT / 100;
/// let set = ThriftSet::builder()
///     .max_active(1)
///     .checkout_timeout(wait)
///     .build(FixedSet::new([server.local_addr()?.to_string()])?)?;
/// let _held = set.get()?;
/// assert!(matches!(set.get(), Err(Error::Exhausted(waited)) if waited == Duration::from_millis(10)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default [`ThriftSetBuilder::eject_after`]: consecutive failures that
/// eject a member; the default of every serversets balancer
/// ([`serversets_core::balance::DEFAULT_EJECT_AFTER`]).
///
/// ```
/// use std::net::TcpListener;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{ThriftSet, DEFAULT_EJECT_AFTER};
///
/// let a = TcpListener::bind("127.0.0.1:0")?;
/// let b = TcpListener::bind("127.0.0.1:0")?;
/// let bad = a.local_addr()?.to_string();
/// let set = ThriftSet::new(FixedSet::new([bad.clone(), b.local_addr()?.to_string()])?)?;
/// let stats = |set: &ThriftSet| set.members().into_iter().find(|m| m.addr.to_string() == bad).unwrap();
/// // Every call on `bad` fails; the other's calls succeed.
/// while stats(&set).consecutive_failures < DEFAULT_EJECT_AFTER {
///     assert!(stats(&set).ejected_for.is_none());
///     let conn = set.get()?;
///     if conn.addr().to_string() == bad {
///         conn.discard();
///     }
/// }
/// assert!(stats(&set).ejected_for.is_some()); // skipped while `b` serves
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_EJECT_AFTER: u32 = serversets_core::balance::DEFAULT_EJECT_AFTER;
/// Default [`ThriftSetBuilder::eject_for`]: how long an ejected member is
/// skipped; the default of every serversets balancer
/// ([`serversets_core::balance::DEFAULT_EJECT_FOR`]).
///
/// ```
/// use std::net::TcpListener;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{ThriftSet, DEFAULT_EJECT_FOR};
///
/// let a = TcpListener::bind("127.0.0.1:0")?;
/// let b = TcpListener::bind("127.0.0.1:0")?;
/// let set = ThriftSet::builder()
///     .eject_after(1)
///     .eject_for(DEFAULT_EJECT_FOR * 3) // a member that fails stays out 30 s
///     .build(FixedSet::new([a.local_addr()?.to_string(), b.local_addr()?.to_string()])?)?;
/// set.get()?.discard();
/// let ejected = set.members().into_iter().find_map(|m| m.ejected_for).unwrap();
/// assert!(ejected > DEFAULT_EJECT_FOR);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const DEFAULT_EJECT_FOR: Duration = serversets_core::balance::DEFAULT_EJECT_FOR;

/// How Thrift messages are delimited on the wire. Must match the server.
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{ThriftSet, Transport};
///
/// // A server started with `TBufferedTransport` (not Finagle's framing).
/// let set = ThriftSet::builder()
///     .transport(Transport::Buffered)
///     .build(FixedSet::new(["10.0.0.1:9090"])?)?;
/// # let _ = set;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Each message is preceded by its 4-byte length (`TFramedTransport`);
    /// what Finagle servers speak. The default.
    ///
    /// Same bytes as the thrift crate's `TFramedTransport`, but each frame
    /// goes out in one write (one TCP segment for small messages, instead of
    /// a 4-byte one plus the payload), replies are read through a buffer,
    /// and a frame length above 64 MiB or below zero is refused as invalid
    /// data instead of being allocated.
    #[default]
    Framed,
    /// Messages are written back to back through a buffer
    /// (`TBufferedTransport`).
    Buffered,
}

/// How Thrift values are encoded. Must match the server.
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{Protocol, ThriftSet};
///
/// // A server started with `TCompactProtocol`.
/// let set = ThriftSet::builder()
///     .protocol(Protocol::Compact)
///     .build(FixedSet::new(["10.0.0.1:9090"])?)?;
/// # let _ = set;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `TBinaryProtocol`, strict mode: what Finagle servers speak. The
    /// default.
    #[default]
    Binary,
    /// `TCompactProtocol`.
    Compact,
}

/// The options of a pool, as fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_active: usize,
    pub(crate) max_idle: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) checkout_timeout: Duration,
    pub(crate) eject_after: u32,
    pub(crate) eject_for: Duration,
    pub(crate) transport: Transport,
    pub(crate) protocol: Protocol,
    pub(crate) check_idle: bool,
    /// The `set` label of the metrics.
    pub(crate) metrics_set: Arc<str>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_active: DEFAULT_MAX_ACTIVE,
            max_idle: DEFAULT_MAX_IDLE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: Some(DEFAULT_IO_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            checkout_timeout: DEFAULT_CHECKOUT_TIMEOUT,
            eject_after: DEFAULT_EJECT_AFTER,
            eject_for: DEFAULT_EJECT_FOR,
            transport: Transport::Framed,
            protocol: Protocol::Binary,
            check_idle: true,
            metrics_set: Arc::from(crate::metrics::UNNAMED),
        }
    }
}

/// Options for a [`ThriftSet`]; start from [`ThriftSet::builder`].
///
/// Every option has a documented default (the `DEFAULT_*` constants), so a
/// builder with nothing set is the same as [`ThriftSet::new`].
///
/// ```
/// use std::time::Duration;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{Protocol, ThriftSet, Transport};
///
/// let set = ThriftSet::builder()
///     .max_active(4)
///     .max_idle(2)
///     .connect_timeout(Duration::from_millis(200))
///     .io_timeout(Some(Duration::from_secs(2)))
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .transport(Transport::Buffered)
///     .protocol(Protocol::Compact)
///     .build(FixedSet::new(["127.0.0.1:9090"])?)?;
/// assert_eq!(set.members().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ThriftSetBuilder {
    config: Config,
}

impl ThriftSetBuilder {
    /// A builder holding the defaults.
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSetBuilder::new();
    /// # let _ = b;
    /// ```
    pub fn new() -> ThriftSetBuilder {
        ThriftSetBuilder::default()
    }

    /// Most connections in flight (checked out, or being opened) to one
    /// member at once (at least 1; default [`DEFAULT_MAX_ACTIVE`]). A member
    /// at its limit is passed over; when every member is, `get` waits up to
    /// the checkout timeout.
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSet::builder().max_active(32);
    /// # let _ = b;
    /// ```
    pub fn max_active(mut self, n: usize) -> ThriftSetBuilder {
        self.config.max_active = n;
        self
    }

    /// Most unused connections kept open per member (default
    /// [`DEFAULT_MAX_IDLE`]); a connection returned beyond it is closed.
    /// 0 closes every connection on return.
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSet::builder().max_idle(0);
    /// # let _ = b;
    /// ```
    pub fn max_idle(mut self, n: usize) -> ThriftSetBuilder {
        self.config.max_idle = n;
        self
    }

    /// Longest wait for a TCP connection to be established, name lookup
    /// and every address of the member's host included (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]; must not be zero). A whole
    /// [`get`](crate::ThriftSet::get) returns within this plus the
    /// [`checkout_timeout`](ThriftSetBuilder::checkout_timeout), however
    /// many members it tries.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = serversets_thriftset::ThriftSet::builder().connect_timeout(Duration::from_millis(250));
    /// # let _ = b;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> ThriftSetBuilder {
        self.config.connect_timeout = timeout;
        self
    }

    /// Longest stall of one socket read or write; `None` waits forever
    /// (default [`DEFAULT_IO_TIMEOUT`]; must not be zero). A timed-out call
    /// surfaces as a Thrift transport error: report it with
    /// [`Connection::report_error`](crate::Connection::report_error).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = serversets_thriftset::ThriftSet::builder().io_timeout(Some(Duration::from_secs(3)));
    /// # let _ = b;
    /// ```
    pub fn io_timeout(mut self, timeout: Option<Duration>) -> ThriftSetBuilder {
        self.config.io_timeout = timeout;
        self
    }

    /// Idle connections unused for this long are closed; `None` keeps them
    /// (default [`DEFAULT_IDLE_TIMEOUT`]; must not be zero). A background
    /// thread checks about twice per timeout (at most once every second).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = serversets_thriftset::ThriftSet::builder().idle_timeout(None);
    /// # let _ = b;
    /// ```
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> ThriftSetBuilder {
        self.config.idle_timeout = timeout;
        self
    }

    /// How long `get` waits for a free slot when every member is at its
    /// `max_active` limit before failing with
    /// [`Error::Exhausted`](crate::Error::Exhausted) (default
    /// [`DEFAULT_CHECKOUT_TIMEOUT`]; zero fails at once). With the
    /// [`connect_timeout`](ThriftSetBuilder::connect_timeout) it bounds the whole
    /// checkout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = serversets_thriftset::ThriftSet::builder().checkout_timeout(Duration::ZERO);
    /// # let _ = b;
    /// ```
    pub fn checkout_timeout(mut self, timeout: Duration) -> ThriftSetBuilder {
        self.config.checkout_timeout = timeout;
        self
    }

    /// Consecutive failures (connect errors, connections discarded or
    /// reported broken) after which a member is skipped for the ejection
    /// period (default [`DEFAULT_EJECT_AFTER`]); 0 turns ejection off. A
    /// connection returned in good order resets the count and ends an
    /// ejection, unless it was checked out before the member's latest
    /// ejection. The last usable member is never ejected. This is the rule
    /// every serversets balancer shares
    /// ([`serversets_core::balance::PassiveHealth`]).
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSet::builder().eject_after(3);
    /// # let _ = b;
    /// ```
    pub fn eject_after(mut self, failures: u32) -> ThriftSetBuilder {
        self.config.eject_after = failures;
        self
    }

    /// How long an ejected member is skipped (default [`DEFAULT_EJECT_FOR`]).
    /// Afterwards it gets traffic again; one more failure before a success
    /// ejects it again at once.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = serversets_thriftset::ThriftSet::builder().eject_for(Duration::from_secs(30));
    /// # let _ = b;
    /// ```
    pub fn eject_for(mut self, cooldown: Duration) -> ThriftSetBuilder {
        self.config.eject_for = cooldown;
        self
    }

    /// Wire transport (default [`Transport::Framed`]).
    ///
    /// ```
    /// use serversets_thriftset::{ThriftSet, Transport};
    /// let b = ThriftSet::builder().transport(Transport::Buffered);
    /// # let _ = b;
    /// ```
    pub fn transport(mut self, transport: Transport) -> ThriftSetBuilder {
        self.config.transport = transport;
        self
    }

    /// Wire protocol (default [`Protocol::Binary`]).
    ///
    /// ```
    /// use serversets_thriftset::{Protocol, ThriftSet};
    /// let b = ThriftSet::builder().protocol(Protocol::Compact);
    /// # let _ = b;
    /// ```
    pub fn protocol(mut self, protocol: Protocol) -> ThriftSetBuilder {
        self.config.protocol = protocol;
        self
    }

    /// Whether an idle connection is checked for a peer close (one
    /// non-blocking peek) before it is handed out (default `true`). The check
    /// is what keeps a restarted or crashed server's stale connections from
    /// failing new requests; turn it off only to measure the pool itself.
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSet::builder().check_idle(false);
    /// # let _ = b;
    /// ```
    pub fn check_idle(mut self, check: bool) -> ThriftSetBuilder {
        self.config.check_idle = check;
        self
    }

    /// Names the set in metrics: the `set` label of every
    /// `serversets_thrift_*` metric (default `unnamed`). Give it the server
    /// set's path, as `serversets-core` labels its watches. See
    /// `docs/metrics.md` for every metric.
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSet::builder().metrics_set("/discovery/prod/search");
    /// # let _ = b;
    /// ```
    pub fn metrics_set(mut self, name: &str) -> ThriftSetBuilder {
        self.config.metrics_set = Arc::from(name);
        self
    }

    /// Builds the set over `watcher`: takes its current members at once and
    /// starts a background thread that follows its changes and closes idle
    /// connections past their timeout.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidOption`] when an option is out of range (see
    /// each option), [`BuildError::Runtime`] or [`BuildError::Thread`] when
    /// the follower could not be started.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_thriftset::{BuildError, ThriftSet};
    ///
    /// let err = ThriftSet::builder().max_active(0).build(FixedSet::empty()).unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidOption { option: "max_active", .. }));
    /// ```
    pub fn build<W: Watcher + 'static>(self, watcher: W) -> Result<ThriftSet, BuildError> {
        self.validate()?;
        ThriftSet::start(self.config, Arc::new(watcher))
    }

    fn validate(&self) -> Result<(), BuildError> {
        let c = &self.config;
        let refuse = |option, reason| Err(BuildError::InvalidOption { option, reason });
        if c.max_active == 0 {
            return refuse("max_active", "must be at least 1");
        }
        if c.connect_timeout.is_zero() {
            return refuse("connect_timeout", "must not be zero");
        }
        if c.io_timeout.is_some_and(|t| t.is_zero()) {
            return refuse("io_timeout", "must not be zero (use None to wait forever)");
        }
        if c.idle_timeout.is_some_and(|t| t.is_zero()) {
            return refuse(
                "idle_timeout",
                "must not be zero (use None to keep idle connections)",
            );
        }
        Ok(())
    }
}

//! Pool options and their builder.

use std::sync::Arc;
use std::time::Duration;

use serversets_core::Watcher;

use crate::{Error, ThriftSet};

/// Default [`Builder::max_active`]: connections checked out at once per host.
///
/// ```
/// assert_eq!(serversets_thriftset::DEFAULT_MAX_ACTIVE, 16);
/// ```
pub const DEFAULT_MAX_ACTIVE: usize = 16;
/// Default [`Builder::max_idle`]: connections kept open and unused per host.
///
/// ```
/// assert_eq!(serversets_thriftset::DEFAULT_MAX_IDLE, 8);
/// ```
pub const DEFAULT_MAX_IDLE: usize = 8;
/// Default [`Builder::connect_timeout`].
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(serversets_thriftset::DEFAULT_CONNECT_TIMEOUT, Duration::from_secs(1));
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default [`Builder::io_timeout`]: a read or write that stalls this long fails.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(serversets_thriftset::DEFAULT_IO_TIMEOUT, Duration::from_secs(10));
/// ```
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Builder::idle_timeout`].
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(serversets_thriftset::DEFAULT_IDLE_TIMEOUT, Duration::from_secs(60));
/// ```
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`Builder::checkout_timeout`]: how long `get` waits when every host
/// is at its active limit.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(serversets_thriftset::DEFAULT_CHECKOUT_TIMEOUT, Duration::from_secs(1));
/// ```
pub const DEFAULT_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default [`Builder::eject_after`]: consecutive failures that eject a host.
///
/// ```
/// assert_eq!(serversets_thriftset::DEFAULT_EJECT_AFTER, 5);
/// ```
pub const DEFAULT_EJECT_AFTER: u32 = 5;
/// Default [`Builder::eject_for`]: how long an ejected host is skipped.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(serversets_thriftset::DEFAULT_EJECT_FOR, Duration::from_secs(10));
/// ```
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);

/// How Thrift messages are delimited on the wire. Must match the server.
///
/// ```
/// use serversets_thriftset::Transport;
/// assert_eq!(Transport::default(), Transport::Framed);
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
/// use serversets_thriftset::Protocol;
/// assert_eq!(Protocol::default(), Protocol::Binary);
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
/// assert_eq!(set.hosts().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// A builder holding the defaults.
    ///
    /// ```
    /// let b = serversets_thriftset::Builder::new();
    /// # let _ = b;
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Most connections checked out from one host at once (at least 1;
    /// default [`DEFAULT_MAX_ACTIVE`]). A host at its limit is passed over;
    /// when every host is, `get` waits up to the checkout timeout.
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSet::builder().max_active(32);
    /// # let _ = b;
    /// ```
    pub fn max_active(mut self, n: usize) -> Builder {
        self.config.max_active = n;
        self
    }

    /// Most unused connections kept open per host (default
    /// [`DEFAULT_MAX_IDLE`]); a connection returned beyond it is closed.
    /// 0 closes every connection on return.
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSet::builder().max_idle(0);
    /// # let _ = b;
    /// ```
    pub fn max_idle(mut self, n: usize) -> Builder {
        self.config.max_idle = n;
        self
    }

    /// Longest wait for a TCP connection to be established, name lookup
    /// and every address of the host included (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]; must not be zero). A whole
    /// [`get`](crate::ThriftSet::get) returns within this plus the
    /// [`checkout_timeout`](Builder::checkout_timeout), however many hosts
    /// it tries.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = serversets_thriftset::ThriftSet::builder().connect_timeout(Duration::from_millis(250));
    /// # let _ = b;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
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
    pub fn io_timeout(mut self, timeout: Option<Duration>) -> Builder {
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
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Builder {
        self.config.idle_timeout = timeout;
        self
    }

    /// How long `get` waits for a free slot when every host is at its active
    /// limit before failing with [`Error::Exhausted`] (default
    /// [`DEFAULT_CHECKOUT_TIMEOUT`]; zero fails at once). With the
    /// [`connect_timeout`](Builder::connect_timeout) it bounds the whole
    /// checkout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = serversets_thriftset::ThriftSet::builder().checkout_timeout(Duration::ZERO);
    /// # let _ = b;
    /// ```
    pub fn checkout_timeout(mut self, timeout: Duration) -> Builder {
        self.config.checkout_timeout = timeout;
        self
    }

    /// Consecutive failures (connect errors, connections discarded or
    /// reported broken) after which a host is skipped for the ejection
    /// period (default [`DEFAULT_EJECT_AFTER`]); 0 turns ejection off. A
    /// connection returned in good order resets the count. The last usable
    /// host is never ejected.
    ///
    /// ```
    /// let b = serversets_thriftset::ThriftSet::builder().eject_after(3);
    /// # let _ = b;
    /// ```
    pub fn eject_after(mut self, failures: u32) -> Builder {
        self.config.eject_after = failures;
        self
    }

    /// How long an ejected host is skipped (default [`DEFAULT_EJECT_FOR`]).
    /// Afterwards it gets traffic again; one more failure before a success
    /// ejects it again at once.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = serversets_thriftset::ThriftSet::builder().eject_for(Duration::from_secs(30));
    /// # let _ = b;
    /// ```
    pub fn eject_for(mut self, period: Duration) -> Builder {
        self.config.eject_for = period;
        self
    }

    /// Wire transport (default [`Transport::Framed`]).
    ///
    /// ```
    /// use serversets_thriftset::{ThriftSet, Transport};
    /// let b = ThriftSet::builder().transport(Transport::Buffered);
    /// # let _ = b;
    /// ```
    pub fn transport(mut self, transport: Transport) -> Builder {
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
    pub fn protocol(mut self, protocol: Protocol) -> Builder {
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
    pub fn check_idle(mut self, check: bool) -> Builder {
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
    pub fn metrics_set(mut self, name: &str) -> Builder {
        self.config.metrics_set = Arc::from(name);
        self
    }

    /// Builds the set over `watcher`: takes its current members at once and
    /// starts a background thread that follows its changes and closes idle
    /// connections past their timeout.
    ///
    /// ```
    /// use serversets_fixedset::FixedSet;
    /// use serversets_thriftset::{Error, ThriftSet};
    ///
    /// let err = ThriftSet::builder().max_active(0).build(FixedSet::empty()).unwrap_err();
    /// assert!(matches!(err, Error::Config(_)));
    /// ```
    pub fn build<W: Watcher + 'static>(self, watcher: W) -> Result<ThriftSet, Error> {
        self.validate()?;
        ThriftSet::start(self.config, Box::new(watcher))
    }

    fn validate(&self) -> Result<(), Error> {
        let c = &self.config;
        if c.max_active == 0 {
            return Err(Error::Config("max_active must be at least 1"));
        }
        if c.connect_timeout.is_zero() {
            return Err(Error::Config("connect_timeout must not be zero"));
        }
        if c.io_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::Config(
                "io_timeout must not be zero (use None to wait forever)",
            ));
        }
        if c.idle_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::Config(
                "idle_timeout must not be zero (use None to keep idle connections)",
            ));
        }
        Ok(())
    }
}

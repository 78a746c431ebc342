//! Typed errors: one enum for building rings from explicit input, one for
//! the live set.

use serversets_core::{AddressError, HostPort};

/// Why a ring could not be built from an explicit node list, or a
/// `HOST:PORT[=WEIGHT]` entry was refused.
///
/// ```
/// use serversets_mcset::{RingError, WeightedNode};
///
/// let err = "cache01:11211=-2".parse::<WeightedNode>().unwrap_err();
/// assert!(matches!(err, RingError::InvalidWeight { .. }));
/// assert!(err.to_string().contains("cache01:11211=-2"));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The `host:port` part of an entry is not a valid address.
    #[error("invalid node {entry:?}: {source}")]
    InvalidAddress {
        /// The entry as given.
        entry: String,
        /// What is wrong with the address.
        #[source]
        source: AddressError,
    },
    /// A weight is not a finite number greater than zero.
    #[error("invalid weight in {entry:?}: weights must be finite numbers greater than 0")]
    InvalidWeight {
        /// The entry (or `host:port=weight`) as given.
        entry: String,
    },
    /// A weight other than 1 was given for the go.serversets ring, which has
    /// no notion of weight; silently ignoring it would place keys where the
    /// caller does not expect.
    #[error("node {node} has weight {weight}, but the go-mcset ring does not support weights")]
    WeightNotSupported {
        /// The node.
        node: HostPort,
        /// The weight that was asked for.
        weight: f64,
    },
}

/// Why a key could not be served by a [`McSet`](crate::McSet).
///
/// ```
/// use serversets_mcset::{McSet, McSetError};
/// use serversets_fixedset::FixedSet;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let set = McSet::new(FixedSet::empty())?;
/// assert!(matches!(set.pick_server("k"), Err(McSetError::NoServers)));
/// # Ok::<(), McSetError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McSetError {
    /// The set has no servers (or none that owns part of the ring).
    #[error("no memcache servers in the set")]
    NoServers,
    /// [`McSet::new`](crate::McSet::new) was called outside a Tokio runtime,
    /// so the task that follows the watcher could not be started.
    #[error("McSet must be created inside a Tokio runtime (it follows the watcher on a task)")]
    NoRuntime,
    /// The task that follows the watcher has ended (the source closed, or the
    /// task failed); the last ring is still served, but it will not change.
    #[error("the McSet no longer follows its source: {0}")]
    NotFollowing(String),
    /// The memcached server chosen for the key failed the request.
    #[cfg(feature = "client")]
    #[error("memcached {server}: {source}")]
    Memcache {
        /// The server the key maps to.
        server: HostPort,
        /// What the client reported.
        #[source]
        source: async_memcached::Error,
    },
    /// The memcached server chosen for the key did not accept a connection
    /// within the connect timeout (a host that is down, or a full accept
    /// queue). The next request tries again.
    #[cfg(feature = "client")]
    #[error("memcached {server}: no connection within {after:?}")]
    ConnectTimeout {
        /// The server the key maps to.
        server: HostPort,
        /// The connect timeout that ran out.
        after: std::time::Duration,
    },
    /// The memcached server chosen for the key did not answer within the
    /// request timeout. Its connection is closed, so a late reply is never
    /// read as another request's.
    #[cfg(feature = "client")]
    #[error("memcached {server}: no reply within {after:?}")]
    RequestTimeout {
        /// The server the key maps to.
        server: HostPort,
        /// The request timeout that ran out.
        after: std::time::Duration,
    },
}

impl McSetError {
    /// True for [`ConnectTimeout`](McSetError::ConnectTimeout) and
    /// [`RequestTimeout`](McSetError::RequestTimeout).
    ///
    /// ```
    /// use serversets_mcset::McSetError;
    /// assert!(!McSetError::NoServers.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        match self {
            #[cfg(feature = "client")]
            McSetError::ConnectTimeout { .. } | McSetError::RequestTimeout { .. } => true,
            _ => false,
        }
    }
}

//! The one error type of this crate.

use std::time::Duration;

use serversets_core::HostPort;

/// Why a [`ThriftSet`](crate::ThriftSet) could not be built or could not hand
/// out a connection.
///
/// ```
/// use serversets_thriftset::{Error, ThriftSet};
/// use serversets_fixedset::FixedSet;
///
/// let set = ThriftSet::new(FixedSet::empty())?;
/// assert!(matches!(set.get(), Err(Error::NoHosts)));
/// set.close();
/// assert!(matches!(set.get(), Err(Error::Closed)));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set was closed with [`ThriftSet::close`](crate::ThriftSet::close)
    /// (or dropped); it hands out nothing more.
    #[error("the thrift set is closed")]
    Closed,
    /// The member list is empty: there is no host to connect to.
    #[error("the server set has no members")]
    NoHosts,
    /// Every host was at its active-connection limit for the whole checkout
    /// timeout.
    #[error("no connection became free within {0:?}: every host is at its active limit")]
    Exhausted(Duration),
    /// Connecting failed on every host tried; this is the last failure.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The host of the last attempt.
        addr: HostPort,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// An established connection could not be set up for Thrift (duplicating
    /// its socket failed).
    #[error("setting up the connection to {addr}: {source}")]
    Socket {
        /// The host of the connection.
        addr: HostPort,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A builder option is out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// The membership follower thread could not be started.
    #[error("starting the membership follower: {0}")]
    Spawn(#[source] std::io::Error),
    /// [`ThriftSet::get_async`](crate::ThriftSet::get_async) was called outside
    /// a tokio runtime.
    #[error("get_async needs a tokio runtime")]
    NoRuntime,
    /// The blocking checkout task of `get_async` did not finish (the runtime
    /// shut down, or the task was aborted).
    #[error("the blocking checkout task failed: {0}")]
    Task(String),
}

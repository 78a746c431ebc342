//! Errors of the ZooKeeper side of the crate.

use std::time::Duration;

use zookeeper_client as zk;

use crate::AddressError;

/// Shorthand for results of this crate's ZooKeeper operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong defining, registering in or watching a server set.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service name is empty or contains `/`.
    #[error("invalid service name {0:?}: it must be non-empty and contain no '/'")]
    InvalidServiceName(String),
    /// The environment name is empty or contains `/`.
    #[error("invalid environment {0:?}: it must be non-empty and contain no '/'")]
    InvalidEnvironment(String),
    /// A ZooKeeper path is not absolute or has empty segments.
    #[error("invalid ZooKeeper path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No ZooKeeper servers were given.
    #[error("no ZooKeeper servers given")]
    NoZooKeeperHosts,
    /// A host or port to register is invalid.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A session needs a tokio runtime to run its background tasks.
    #[error("serversets needs a tokio runtime: call it from within one")]
    NoRuntime,
    /// No session could be established in time; it keeps trying in the
    /// background.
    #[error("could not connect to ZooKeeper at {hosts} within {timeout:?}: {reason}")]
    Connect {
        /// The hosts tried.
        hosts: String,
        /// How long was waited.
        timeout: Duration,
        /// The last error seen.
        reason: String,
    },
    /// A ZooKeeper operation failed.
    #[error("ZooKeeper refused to {op} {path}: {source}")]
    ZooKeeper {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: String,
        /// ZooKeeper's error.
        #[source]
        source: zk::Error,
    },
    /// A registration could not be made.
    #[error("could not register the member: {0}")]
    Registration(String),
    /// The endpoint, watch or session was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    pub(crate) fn zk(op: &'static str, path: &str, source: zk::Error) -> Error {
        Error::ZooKeeper {
            op,
            path: path.to_string(),
            source,
        }
    }
}

/// True for errors that a new attempt (maybe on a new session) can cure.
pub(crate) fn is_transient(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::ConnectionLoss
            | zk::Error::SessionExpired
            | zk::Error::SessionMoved
            | zk::Error::Timeout
            | zk::Error::ClientClosed
            | zk::Error::Throttled
            | zk::Error::NoHosts
    )
}

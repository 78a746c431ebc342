//! Errors of the ZooKeeper side of the crate.

use std::time::Duration;

use zookeeper_client as zk;

use crate::contract::address::AddressError;
use crate::zookeeper::security::TlsProblem;

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
    /// A TLS connection to ZooKeeper failed in a way no retry can change:
    /// a certificate from another CA, an expired certificate, a missing or
    /// refused client certificate, a port that does not speak TLS.
    #[error("TLS connection to ZooKeeper at {host} failed: {problem}")]
    Tls {
        /// The server, `host:port`.
        host: String,
        /// What the handshake said.
        problem: TlsProblem,
    },
    /// A client without TLS reached a port that speaks TLS.
    #[error("ZooKeeper at {host} answers with TLS: the server may require TLS (configure its CA)")]
    TlsRequired {
        /// The server, `host:port`.
        host: String,
    },
    /// ZooKeeper refused the SASL login.
    #[error("ZooKeeper at {hosts} refused the SASL login of {user:?}: wrong user or password")]
    SaslAuthFailed {
        /// The hosts tried.
        hosts: String,
        /// The SASL user.
        user: String,
    },
    /// The TLS settings cannot be used: a file that cannot be read, a PEM
    /// without a certificate or key.
    #[error("invalid TLS settings: {0}")]
    TlsConfig(String),
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

/// True when ZooKeeper itself answered the request, so its outcome is
/// known: it was not applied (or, for `SessionExpired`, everything the
/// session owned is gone anyway).
///
/// Everything else is "maybe applied": zookeeper-client fails every request
/// in flight with the error that broke the connection, so `ConnectionLoss`
/// (a clean close), `Custom` (a reset, a broken pipe, "no response from
/// connection" after a stall), `Timeout`, `ClientClosed` and any error this
/// crate does not know yet may all follow a request the server applied.
/// Callers must treat such an error as "retry", never as a verdict about a
/// node. The list is of answers, not of failures, so that a new variant of
/// the client's error type is unknown until proven otherwise.
pub(crate) fn is_answer(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::NoNode
            | zk::Error::NoAuth
            | zk::Error::BadVersion
            | zk::Error::NoChildrenForEphemerals
            | zk::Error::NodeExists
            | zk::Error::NotEmpty
            | zk::Error::InvalidAcl
            | zk::Error::AuthFailed
            | zk::Error::SessionExpired
            | zk::Error::NotReadOnly
            | zk::Error::NoWatcher
            | zk::Error::QuotaExceeded
            | zk::Error::Throttled
            | zk::Error::Unimplemented
            | zk::Error::ReconfigDisabled
            | zk::Error::BadArguments(_)
    )
}

/// True for answers that no retry can change while the configuration stays
/// as it is: wrong credentials or ACLs, a parent that is ephemeral, a quota.
/// A first registration reports these at once instead of waiting out its
/// connect budget (and still retries until its handle is dropped).
pub(crate) fn is_refusal(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::NoAuth
            | zk::Error::InvalidAcl
            | zk::Error::AuthFailed
            | zk::Error::NoChildrenForEphemerals
            | zk::Error::QuotaExceeded
            | zk::Error::BadArguments(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_answers_count_as_known_outcomes() {
        // A reset or a stall surfaces as `Custom`, which has no public
        // constructor: the fault-proxy tests under tests/ cover it.
        for unknown in [
            zk::Error::ConnectionLoss,
            zk::Error::Timeout,
            zk::Error::ClientClosed,
            zk::Error::NoHosts,
            zk::Error::SessionMoved,
            zk::Error::UnexpectedErrorCode(-999),
            zk::Error::UnexpectedError("x".into()),
        ] {
            assert!(!is_answer(&unknown), "{unknown:?} must be maybe-applied");
            assert!(!is_refusal(&unknown), "{unknown:?} is no refusal");
        }
        for answer in [zk::Error::NoNode, zk::Error::NoAuth, zk::Error::NodeExists] {
            assert!(is_answer(&answer), "{answer:?} is a server answer");
        }
        assert!(is_refusal(&zk::Error::NoAuth));
        assert!(!is_refusal(&zk::Error::NoNode));
    }
}

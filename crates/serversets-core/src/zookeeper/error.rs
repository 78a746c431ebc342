//! Errors of the ZooKeeper side of the crate.

use std::sync::Arc;
use std::time::Duration;

use zookeeper_client as zk;

use crate::contract::address::AddressError;
use crate::zookeeper::security::TlsProblem;

/// Shorthand for results of this crate's ZooKeeper operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong defining, registering in or watching a server set.
///
/// Each variant says what failed; when another error caused it, that error
/// is [`source()`](std::error::Error::source), never repeated in the
/// message, so print the chain to see it:
///
/// ```
/// use std::error::Error as _;
/// use serversets_core::{Environment, Error, ServerSet};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let unreachable = ServerSet::builder(Environment::Test, "svc", ["127.0.0.1:1"])
///     .connect_timeout(std::time::Duration::from_millis(300))
///     .build()?;
/// let e = unreachable.watch().await.expect_err("nothing listens on port 1");
/// assert!(matches!(e, Error::Connect { .. }));
/// let mut shown = e.to_string();
/// let mut cause = e.source();
/// while let Some(c) = cause {
///     shown = format!("{shown}: {c}");
///     cause = c.source();
/// }
/// assert!(shown.starts_with("could not connect to ZooKeeper at 127.0.0.1:1 within 300ms"));
/// # Ok(()) }
/// ```
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
    /// A host or port to register is invalid. Transparent: the message and
    /// source are the [`AddressError`]'s own.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A session needs a tokio runtime to run its background tasks.
    #[error("serversets needs a tokio runtime: call it from within one")]
    NoRuntime,
    /// No session could be established in time (or, for a watch, its
    /// first read did not finish); it keeps trying in the background.
    /// `source()` is the last error the ZooKeeper client reported, when it
    /// reported one.
    #[error(
        "could not connect to ZooKeeper at {hosts} within {timeout:?}{}",
        parenthesised(detail)
    )]
    Connect {
        /// The hosts tried.
        hosts: String,
        /// How long was waited.
        timeout: Duration,
        /// What else is known, in words: what probing each server found
        /// (a refused port, a silent host), that nothing answered, or that
        /// a watch's first read did not finish.
        detail: Option<String>,
        /// The last error the ZooKeeper client reported.
        #[source]
        source: Option<zk::Error>,
    },
    /// A ZooKeeper operation failed; `source()` is ZooKeeper's error.
    #[error("ZooKeeper refused to {op} {path}")]
    ZooKeeper {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: String,
        /// ZooKeeper's error.
        #[source]
        source: zk::Error,
    },
    /// The member was not registered within the time allowed (the connect
    /// timeout plus the first health check's); the registration has
    /// stopped. `source()` is the last ZooKeeper error met, if any.
    #[error("the member was not registered within {within:?}")]
    Registration {
        /// How long was waited.
        within: Duration,
        /// The last ZooKeeper error met.
        #[source]
        source: Option<zk::Error>,
    },
    /// The registration, watch or session was closed.
    #[error("closed")]
    Closed,
    /// A TLS connection to ZooKeeper failed in a way no retry can change:
    /// a certificate from another CA, an expired certificate, a missing or
    /// refused client certificate, a port that does not speak TLS.
    #[error("TLS connection to ZooKeeper at {host} failed: {problem}")]
    Tls {
        /// The server, `host:port`.
        host: String,
        /// What the handshake said (our reading of it, not an error value).
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
    /// without a certificate or key. `source()` is the error of the
    /// library that refused them, when one did.
    #[error("invalid TLS settings: {reason}")]
    TlsConfig {
        /// What cannot be used (naming the file, if it is one).
        reason: String,
        /// The error that made it unusable.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

/// `" (text)"`, or nothing.
fn parenthesised(text: &Option<String>) -> String {
    text.as_deref()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default()
}

impl Error {
    pub(crate) fn zk(op: &'static str, path: &str, source: zk::Error) -> Error {
        Error::ZooKeeper {
            op,
            path: path.to_string(),
            source,
        }
    }

    /// [`Error::TlsConfig`] for a reason of our own.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_config(reason: impl Into<String>) -> Error {
        Error::TlsConfig {
            reason: reason.into(),
            source: None,
        }
    }

    /// [`Error::TlsConfig`] caused by another library's error.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_config_by(
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::TlsConfig {
            reason: reason.into(),
            source: Some(Arc::new(source)),
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
/// znode. The list is of answers, not of failures, so that a new variant of
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

    /// Every variant that wraps an error gives it as `source()` and leaves
    /// it out of its own message.
    #[test]
    fn a_cause_is_given_once() {
        let wrapping = [
            Error::zk("create", "/a", zk::Error::NoAuth),
            Error::Connect {
                hosts: "h:2181".into(),
                timeout: Duration::from_secs(1),
                detail: Some("h:2181: connection refused".into()),
                source: Some(zk::Error::ConnectionLoss),
            },
            Error::Registration {
                within: Duration::from_secs(1),
                source: Some(zk::Error::NoAuth),
            },
            Error::TlsConfig {
                reason: "cannot read /ca.pem".into(),
                source: Some(Arc::new(std::io::Error::from(std::io::ErrorKind::NotFound))),
            },
        ];
        for e in &wrapping {
            let source = std::error::Error::source(e).expect("a wrapped cause");
            assert!(
                !e.to_string().contains(&source.to_string()),
                "{e:?} prints its source: {e}"
            );
        }
        // A transparent wrapper is its cause: one message, no second copy
        // down the chain.
        let address = AddressError::InvalidPort("h:0".into());
        let e = Error::from(address.clone());
        assert_eq!(e.to_string(), address.to_string());
        assert!(std::error::Error::source(&e).is_none());
    }
}

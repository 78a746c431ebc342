//! The errors of this crate's middleware: [`NoMembers`], and [`Error`], what
//! a [`FailFast`](crate::FailFast) service returns.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tower::BoxError;

/// The balancer had no endpoint for a request, for as long as it was told
/// to wait.
///
/// [`FailFast`](crate::FailFast) returns it inside an [`Error`]; find it
/// with [`Error::no_servers`], or with [`NoMembers::find`] in any error
/// chain (a `tonic::Status` made from one, say).
///
/// ```
/// use std::time::Duration;
/// use serversets_tower::NoMembers;
///
/// let err: tower::BoxError = NoMembers::after(Duration::from_millis(250)).into();
/// let found = NoMembers::find(err.as_ref()).ok_or("not a NoMembers")?;
/// assert_eq!(found.waited(), Duration::from_millis(250));
/// assert_eq!(err.to_string(), "no members in the set (waited 250ms)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no members in the set (waited {waited:?})")]
pub struct NoMembers {
    waited: Duration,
}

impl NoMembers {
    /// The error after waiting `waited` for an endpoint.
    pub fn after(waited: Duration) -> NoMembers {
        NoMembers { waited }
    }

    /// How long the request waited for an endpoint.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The `NoMembers` in `error` or in its chain of causes, if any.
    pub fn find<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a NoMembers> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<NoMembers>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// Why a request through a [`FailFast`](crate::FailFast) failed: there were
/// no servers ([`is_no_servers`](Error::is_no_servers)), or the service it
/// wraps (a balancer, a buffer, a tonic channel) failed.
///
/// The cause is in [`source`](StdError::source), never repeated in the
/// message, so a chain prints each thing once. tonic's clients look through
/// that chain, so a transport failure behind a `FailFast` still becomes
/// `Unavailable`, and so does `NoMembers` when the layer was made with
/// `FailFastLayer::grpc_unavailable` (feature `tonic`).
///
/// A concrete type rather than tower's `BoxError`: a tonic client over a
/// service whose error is exactly `BoxError` cannot be moved into
/// `tokio::spawn` (rustc reports "implementation of `From` is not general
/// enough"); over this one it can.
///
/// ```
/// use std::error::Error as _;
/// use std::time::Duration;
/// use serversets_tower::{Error, NoMembers};
///
/// let none = Error::no_servers_after(Duration::from_secs(1));
/// assert!(none.is_no_servers());
/// assert_eq!(none.no_servers().map(NoMembers::waited), Some(Duration::from_secs(1)));
///
/// let failed = Error::from_service("connection refused".into());
/// assert!(!failed.is_no_servers());
/// assert_eq!(failed.to_string(), "the balanced service failed");
/// assert_eq!(failed.source().map(|s| s.to_string()).as_deref(), Some("connection refused"));
/// ```
pub struct Error {
    /// `NoMembers` (possibly inside a `tonic::Status`), or the wrapped
    /// service's error.
    source: BoxError,
    no_servers: bool,
}

impl Error {
    /// A [`NoMembers`] after waiting `waited`.
    pub fn no_servers_after(waited: Duration) -> Error {
        Error::reported_no_servers(Box::new(NoMembers::after(waited)))
    }

    /// A no-servers error reported as `source` (a `NoMembers`, or one
    /// wrapped in a gRPC status).
    pub(crate) fn reported_no_servers(source: BoxError) -> Error {
        Error {
            source,
            no_servers: true,
        }
    }

    /// The wrapped service's error.
    pub fn from_service(source: BoxError) -> Error {
        Error {
            source,
            no_servers: false,
        }
    }

    /// True when the request failed because there were no servers.
    pub fn is_no_servers(&self) -> bool {
        self.no_servers
    }

    /// The [`NoMembers`] this error is, if it is one.
    pub fn no_servers(&self) -> Option<&NoMembers> {
        NoMembers::find(self.source.as_ref())
    }

    /// The cause: the wrapped service's error, or the `NoMembers` report.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.no_servers {
            "no servers to send the request to"
        } else {
            "the balanced service failed"
        })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("no_servers", &self.no_servers)
            .field("source", &self.source)
            .finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cause is given once: in `source()`, never again in the message.
    #[test]
    fn the_message_never_repeats_the_source() {
        let errors = [
            Error::no_servers_after(Duration::from_millis(250)),
            Error::reported_no_servers(Box::new(NoMembers::after(Duration::ZERO))),
            Error::from_service("connection refused".into()),
            Error::from_service(Box::new(std::io::Error::other("reset by peer"))),
        ];
        for error in errors {
            let source = error.source().expect("every Error wraps its cause");
            assert!(
                !error.to_string().contains(&source.to_string()),
                "{error:?} prints its source in its message: {error}"
            );
        }
    }
}

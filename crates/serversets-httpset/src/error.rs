//! The errors an [`HttpSet`](crate::HttpSet) returns, typed so callers can
//! tell "nobody to ask" from "asked and failed".

use std::time::Duration;

use serversets_core::HostPort;

/// Why a request through an [`HttpSet`](crate::HttpSet) produced no response.
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{Error, HttpSet};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let set = HttpSet::new(FixedSet::empty());
/// let err = set.get("/").await.unwrap_err();
/// assert!(matches!(err, Error::NoMembers { .. }));
/// assert!(err.addr().is_none());
/// # });
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set had no members (after waiting, if
    /// [`wait_for_members`](crate::HttpSetBuilder::wait_for_members) was set).
    #[error("no members in the set (waited {waited:?})")]
    NoMembers {
        /// How long the request waited for a first member.
        waited: Duration,
    },
    /// Every attempt failed before a connection was made (refused, connect
    /// timeout, reset on connect). Nothing was sent to any server.
    ///
    /// When an earlier attempt did reach a server and only the last one
    /// could not connect, the error is
    /// [`ConnectAfterSent`](Error::ConnectAfterSent) instead.
    #[error("could not connect to {addr} (after {attempts} attempt(s))")]
    Connect {
        /// The address of the last attempt's member.
        addr: HostPort,
        /// How many attempts were made in total.
        attempts: u32,
        /// The last connect error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The last attempt could not connect, but an earlier one may have
    /// reached a server: it was sent and then timed out, failed after its
    /// connection was made, or was answered with a status configured for
    /// retry. Unlike [`Connect`](Error::Connect), the request may have been
    /// seen, in part or whole, so it is not safe to send again blindly.
    #[error("could not connect to {addr} (attempt {attempts}), but an earlier attempt may have reached {reached}")]
    ConnectAfterSent {
        /// The address of the last attempt's member, which could not
        /// connect.
        addr: HostPort,
        /// How many attempts were made in total.
        attempts: u32,
        /// The address of the latest attempt that may have reached a
        /// server.
        reached: HostPort,
        /// The last connect error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The request failed after a connection was made, and could not be
    /// retried (not idempotent, retries exhausted, or a body that cannot be
    /// replayed). The server may have seen part or all of the request.
    #[error("request to {addr} failed (after {attempts} attempt(s))")]
    Request {
        /// The address of the last attempt's member.
        addr: HostPort,
        /// How many attempts were made in total.
        attempts: u32,
        /// What hyper reported.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// An attempt or the whole request ran out of time.
    #[error("request timed out after {after:?}{}", addr.as_ref().map(|a| format!(" waiting for {a}")).unwrap_or_default())]
    Timeout {
        /// The address being waited for, when one attempt timed out; `None`
        /// when the overall [`request_timeout`](crate::HttpSetBuilder::request_timeout)
        /// expired.
        addr: Option<HostPort>,
        /// The timeout that expired.
        after: Duration,
    },
    /// The request could not be re-targeted at a member: its URI is not
    /// a valid path, or its header map is too full to take a `Host` header.
    #[error("invalid request URI {uri:?}")]
    InvalidUri {
        /// The URI or path as given.
        uri: String,
        /// What is wrong with it.
        #[source]
        source: http::Error,
    },
}

impl Error {
    /// The address of the member the failing attempt went to, when there
    /// was one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_httpset::Error;
    ///
    /// let e = Error::Timeout { addr: Some("10.0.0.1:80".parse().unwrap()), after: Duration::from_secs(1) };
    /// assert_eq!(e.addr().unwrap().port(), 80);
    /// ```
    pub fn addr(&self) -> Option<&HostPort> {
        match self {
            Error::Connect { addr, .. }
            | Error::ConnectAfterSent { addr, .. }
            | Error::Request { addr, .. } => Some(addr),
            Error::Timeout { addr, .. } => addr.as_ref(),
            Error::NoMembers { .. } | Error::InvalidUri { .. } => None,
        }
    }

    /// True when nothing reached any server, over all the request's
    /// attempts: the request may be sent again safely whatever its method.
    /// False for [`ConnectAfterSent`](Error::ConnectAfterSent), where only
    /// the last attempt failed to connect.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_httpset::Error;
    ///
    /// assert!(Error::NoMembers { waited: Duration::ZERO }.is_unsent());
    /// assert!(!Error::Timeout { addr: None, after: Duration::from_secs(1) }.is_unsent());
    /// ```
    pub fn is_unsent(&self) -> bool {
        matches!(
            self,
            Error::NoMembers { .. } | Error::Connect { .. } | Error::InvalidUri { .. }
        )
    }
}

/// Why [`HttpSetBuilder::build`](crate::HttpSetBuilder::build) refused a
/// configuration.
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_httpset::{BuildError, HttpSet};
///
/// let err = HttpSet::builder().https().build(FixedSet::empty()).unwrap_err();
/// assert!(matches!(err, BuildError::HttpsNeedsConnector));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `https` was selected but the connector is the plain-TCP default; pass
    /// a TLS-capable connector with [`HttpSetBuilder::connector`](crate::HttpSetBuilder::connector).
    #[error("https needs a TLS connector (for example hyper-rustls), set with HttpSetBuilder::connector")]
    HttpsNeedsConnector,
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use super::*;

    /// A real hyper-util error: a connect to a port nothing listens on.
    async fn refused() -> hyper_util::client::legacy::Error {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        client.get(uri).await.unwrap_err()
    }

    /// Every variant that wraps an error gives it as `source()` only: its
    /// message must not repeat the source's, or a report walking the chain
    /// prints the cause twice.
    #[tokio::test]
    async fn wrapping_variants_give_their_cause_once() {
        let addr: HostPort = "127.0.0.1:1".parse().unwrap();
        let invalid = http::Uri::try_from("not a path").unwrap_err();
        let wrapping = [
            Error::Connect {
                addr: addr.clone(),
                attempts: 1,
                source: refused().await,
            },
            Error::ConnectAfterSent {
                addr: addr.clone(),
                attempts: 2,
                reached: "127.0.0.1:2".parse().unwrap(),
                source: refused().await,
            },
            Error::Request {
                addr,
                attempts: 1,
                source: refused().await,
            },
            Error::InvalidUri {
                uri: "not a path".to_string(),
                source: invalid.into(),
            },
        ];
        for err in wrapping {
            let source = err.source().expect("a wrapping variant has a source");
            let (message, cause) = (err.to_string(), source.to_string());
            assert!(!cause.is_empty(), "{err:?}");
            assert!(
                !message.contains(&cause),
                "{message:?} repeats its source {cause:?}"
            );
        }
    }

    #[test]
    fn variants_without_a_wrapped_error_have_no_source() {
        let plain = [
            Error::NoMembers {
                waited: Duration::ZERO,
            },
            Error::Timeout {
                addr: None,
                after: Duration::from_secs(1),
            },
        ];
        for err in plain {
            assert!(err.source().is_none(), "{err:?}");
        }
        assert!(BuildError::HttpsNeedsConnector.source().is_none());
    }
}

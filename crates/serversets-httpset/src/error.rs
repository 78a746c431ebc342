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
/// assert!(matches!(err, Error::NoServers { .. }));
/// assert!(err.endpoint().is_none());
/// # });
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set had no endpoints (after waiting, if
    /// [`wait_for_servers`](crate::Builder::wait_for_servers) was set).
    #[error("no servers in the set (waited {waited:?})")]
    NoServers {
        /// How long the request waited for a first endpoint.
        waited: Duration,
    },
    /// Every attempt failed before a connection was made (refused, connect
    /// timeout, reset on connect). Nothing was sent to any server.
    ///
    /// When an earlier attempt did reach a server and only the last one
    /// could not connect, the error is
    /// [`ConnectAfterSent`](Error::ConnectAfterSent) instead.
    #[error("could not connect to {endpoint} (after {attempts} attempt(s))")]
    Connect {
        /// The endpoint of the last attempt.
        endpoint: HostPort,
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
    #[error("could not connect to {endpoint} (attempt {attempts}), but an earlier attempt may have reached {reached}")]
    ConnectAfterSent {
        /// The endpoint of the last attempt, which could not connect.
        endpoint: HostPort,
        /// How many attempts were made in total.
        attempts: u32,
        /// The endpoint of the latest attempt that may have reached a
        /// server.
        reached: HostPort,
        /// The last connect error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The request failed after a connection was made, and could not be
    /// retried (not idempotent, retries exhausted, or a body that cannot be
    /// replayed). The server may have seen part or all of the request.
    #[error("request to {endpoint} failed (after {attempts} attempt(s))")]
    Request {
        /// The endpoint of the last attempt.
        endpoint: HostPort,
        /// How many attempts were made in total.
        attempts: u32,
        /// What hyper reported.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// An attempt or the whole request ran out of time.
    #[error("request timed out after {after:?}{}", endpoint.as_ref().map(|e| format!(" waiting for {e}")).unwrap_or_default())]
    Timeout {
        /// The endpoint being waited for, when one attempt timed out; `None`
        /// when the overall [`request_timeout`](crate::Builder::request_timeout)
        /// expired.
        endpoint: Option<HostPort>,
        /// The timeout that expired.
        after: Duration,
    },
    /// The request could not be re-targeted at an endpoint: its URI is not
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
    /// The endpoint the failing attempt went to, when there was one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets_httpset::Error;
    ///
    /// let e = Error::Timeout { endpoint: Some("10.0.0.1:80".parse().unwrap()), after: Duration::from_secs(1) };
    /// assert_eq!(e.endpoint().unwrap().port(), 80);
    /// ```
    pub fn endpoint(&self) -> Option<&HostPort> {
        match self {
            Error::Connect { endpoint, .. }
            | Error::ConnectAfterSent { endpoint, .. }
            | Error::Request { endpoint, .. } => Some(endpoint),
            Error::Timeout { endpoint, .. } => endpoint.as_ref(),
            Error::NoServers { .. } | Error::InvalidUri { .. } => None,
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
    /// assert!(Error::NoServers { waited: Duration::ZERO }.is_unsent());
    /// assert!(!Error::Timeout { endpoint: None, after: Duration::from_secs(1) }.is_unsent());
    /// ```
    pub fn is_unsent(&self) -> bool {
        matches!(
            self,
            Error::NoServers { .. } | Error::Connect { .. } | Error::InvalidUri { .. }
        )
    }
}

/// Why [`Builder::build`](crate::Builder::build) refused a configuration.
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
    /// a TLS-capable connector with [`Builder::connector`](crate::Builder::connector).
    #[error("https needs a TLS connector (for example hyper-rustls), set with Builder::connector")]
    HttpsNeedsConnector,
}

//! Typed errors: [`Error`] for the live set, [`RingError`] for building
//! rings from explicit input.
//!
//! A cause is given once: a variant that wraps another error returns it from
//! `source()` and does not print it in its message.

use serversets_core::{AddressError, HostPort};

use crate::SyncState;

/// Why a ring could not be built from an explicit node list, or a
/// `HOST:PORT[=WEIGHT]` entry was refused.
///
/// ```
/// use serversets_mcset::{RingError, WeightedNode};
///
/// let err = "cache01:11211=-2".parse::<WeightedNode>().unwrap_err();
/// assert!(matches!(err, RingError::InvalidWeight { .. }));
/// assert!(err.to_string().contains("cache01:11211=-2"));
///
/// // An address error is the source, not part of the message.
/// let err = "cache01".parse::<WeightedNode>().unwrap_err();
/// let cause = std::error::Error::source(&err).expect("the address error");
/// assert!(!err.to_string().contains(&cause.to_string()));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The `host:port` part of an entry is not a valid address.
    #[error("invalid node {entry:?}")]
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
        /// The node's address.
        node: HostPort,
        /// The weight that was asked for.
        weight: f64,
    },
}

/// Why a key could not be served by a [`McSet`](crate::McSet).
///
/// ```
/// use serversets_mcset::{Error, McSet};
/// use serversets_fixedset::FixedSet;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let set = McSet::new(FixedSet::empty())?;
/// assert!(matches!(set.pick("k"), Err(Error::NoMembers)));
/// # Ok::<(), Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set has no members (or none that owns part of the ring).
    #[error("no members in the memcache set")]
    NoMembers,
    /// [`McSet::new`](crate::McSet::new) was called outside a Tokio runtime,
    /// so the task that follows the watcher could not be started.
    #[error("McSet must be created inside a Tokio runtime (it follows the watcher on a task)")]
    NoRuntime,
    /// The task that follows the watcher has ended (the source closed, or the
    /// task failed); the last ring is still served, but it will not change.
    #[error("the McSet no longer follows its source ({state})")]
    NotFollowing {
        /// How the following ended: never [`SyncState::Following`].
        state: SyncState,
    },
    /// The memcached server at the member's address failed the request.
    #[cfg(feature = "client")]
    #[error("memcached at {addr} failed the request")]
    Memcache {
        /// The address of the member the key maps to.
        addr: HostPort,
        /// What the client reported.
        #[source]
        source: async_memcached::Error,
    },
    /// The memcached server at the member's address did not accept a
    /// connection within the connect timeout (a host that is down, or a
    /// full accept queue). The next request tries again.
    #[cfg(feature = "client")]
    #[error("memcached at {addr}: no connection within {after:?}")]
    ConnectTimeout {
        /// The address of the member the key maps to.
        addr: HostPort,
        /// The connect timeout that ran out.
        after: std::time::Duration,
    },
    /// The memcached server at the member's address did not answer within
    /// the request timeout. Its connection is closed, so a late reply is
    /// never read as another request's.
    #[cfg(feature = "client")]
    #[error("memcached at {addr}: no reply within {after:?}")]
    RequestTimeout {
        /// The address of the member the key maps to.
        addr: HostPort,
        /// The request timeout that ran out.
        after: std::time::Duration,
    },
}

impl Error {
    /// True for [`ConnectTimeout`](Error::ConnectTimeout) and
    /// [`RequestTimeout`](Error::RequestTimeout): the member did not
    /// answer in time, which a caller may treat as a cache miss.
    ///
    /// ```
    /// use serversets_mcset::Error;
    ///
    /// fn cache_miss_is_fine(err: &Error) -> bool {
    ///     err.is_timeout() || matches!(err, Error::NoMembers)
    /// }
    /// assert!(cache_miss_is_fine(&Error::NoMembers));
    /// assert!(!Error::NoRuntime.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        match self {
            #[cfg(feature = "client")]
            Error::ConnectTimeout { .. } | Error::RequestTimeout { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_wrapped_cause_is_the_source_and_not_in_the_message() {
        let err = "cache01".parse::<crate::WeightedNode>().unwrap_err();
        let RingError::InvalidAddress { source, .. } = &err else {
            panic!("expected InvalidAddress, got {err:?}");
        };
        let cause = source.to_string();
        assert!(!err.to_string().contains(&cause), "{err}");
        assert_eq!(err.source().map(|s| s.to_string()), Some(cause));
    }

    #[cfg(feature = "client")]
    #[test]
    fn a_memcache_failure_names_the_address_once_and_keeps_its_cause() {
        let source = async_memcached::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        let cause = source.to_string();
        let err = Error::Memcache {
            addr: HostPort::new("10.0.0.1", 11211).unwrap(),
            source,
        };
        assert!(err.to_string().contains("10.0.0.1:11211"), "{err}");
        assert!(!err.to_string().contains(&cause), "{err}");
        assert_eq!(err.source().map(|s| s.to_string()), Some(cause));
    }

    #[test]
    fn not_following_says_how_it_ended() {
        let err = Error::NotFollowing {
            state: SyncState::SourceClosed,
        };
        assert_eq!(
            err.to_string(),
            "the McSet no longer follows its source (the source closed)"
        );
        assert!(err.source().is_none());
    }
}

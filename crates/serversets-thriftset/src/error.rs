//! The errors of this crate: [`Error`] on the request path, [`BuildError`]
//! when a set cannot be built.
//!
//! A cause is given once: a variant that wraps another error keeps it as
//! its [`source`](std::error::Error::source) and does not repeat it in its
//! message, so a report that walks the chain prints each cause once.

use std::time::Duration;

use serversets_core::HostPort;

/// Why a [`ThriftSet`](crate::ThriftSet) could not hand out a connection.
///
/// ```
/// use serversets_thriftset::{Error, ThriftSet};
/// use serversets_fixedset::FixedSet;
///
/// let set = ThriftSet::new(FixedSet::empty())?;
/// assert!(matches!(set.get(), Err(Error::NoMembers)));
/// set.close();
/// assert!(matches!(set.get(), Err(Error::Closed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set was closed with [`ThriftSet::close`](crate::ThriftSet::close)
    /// (or dropped); it hands out nothing more.
    #[error("the thrift set is closed")]
    Closed,
    /// The member list is empty: there is no member to connect to.
    #[error("the server set has no members")]
    NoMembers,
    /// Every member was at its [`max_active`] limit of connections in
    /// flight for the whole checkout timeout (carried here).
    ///
    /// [`max_active`]: crate::ThriftSetBuilder::max_active
    #[error("no connection became free within {0:?}: every member is at its max_active limit")]
    Exhausted(Duration),
    /// Connecting failed on every member tried; this is the last failure.
    #[error("connecting to {addr}")]
    Connect {
        /// The address of the last attempt.
        addr: HostPort,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// An established connection could not be set up for Thrift (duplicating
    /// its socket failed).
    #[error("setting up the connection to {addr}")]
    Socket {
        /// The address of the connection.
        addr: HostPort,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// [`ThriftSet::get_async`](crate::ThriftSet::get_async) was called outside
    /// a tokio runtime.
    #[error("get_async needs a tokio runtime")]
    NoRuntime,
    /// The blocking checkout task of `get_async` did not finish (the runtime
    /// shut down, or the task was aborted or panicked).
    #[error("the blocking checkout task did not finish")]
    Task(#[source] tokio::task::JoinError),
}

/// Why [`ThriftSetBuilder::build`](crate::ThriftSetBuilder::build) (or
/// [`ThriftSet::new`](crate::ThriftSet::new)) could not build a set.
///
/// ```
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::{BuildError, ThriftSet};
///
/// let err = ThriftSet::builder().max_active(0).build(FixedSet::empty()).unwrap_err();
/// assert!(matches!(err, BuildError::InvalidOption { option: "max_active", .. }));
/// assert_eq!(err.to_string(), "invalid max_active: must be at least 1");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An option is out of range.
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// The builder method that set it, such as `"max_active"`.
        option: &'static str,
        /// What the value must be.
        reason: &'static str,
    },
    /// The runtime of the membership follower could not be built.
    #[error("building the membership follower's runtime")]
    Runtime(#[source] std::io::Error),
    /// The membership follower's thread could not be started.
    #[error("starting the membership follower thread")]
    Thread(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;

    /// A cause is printed once: by the chain, not again in the message.
    fn names_its_cause_once(err: &dyn std::error::Error) {
        let source = err.source().expect("a wrapping variant has a source");
        let (message, cause) = (err.to_string(), source.to_string());
        assert!(
            !message.contains(&cause),
            "{message:?} repeats its source {cause:?}"
        );
    }

    fn io_error() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused")
    }

    fn join_error() -> tokio::task::JoinError {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let task = tokio::spawn(std::future::pending::<()>());
            task.abort();
            task.await.unwrap_err()
        })
    }

    #[test]
    fn wrapping_variants_give_their_cause_once() {
        let addr = HostPort::new("10.0.0.1", 9090).unwrap();
        let wrapping: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(Error::Connect {
                addr: addr.clone(),
                source: io_error(),
            }),
            Box::new(Error::Socket {
                addr,
                source: io_error(),
            }),
            Box::new(Error::Task(join_error())),
            Box::new(BuildError::Runtime(io_error())),
            Box::new(BuildError::Thread(io_error())),
        ];
        for err in &wrapping {
            names_its_cause_once(err.as_ref());
        }
    }

    #[test]
    fn messages_name_what_failed() {
        let err = Error::Connect {
            addr: HostPort::new("10.0.0.1", 9090).unwrap(),
            source: io_error(),
        };
        assert_eq!(err.to_string(), "connecting to 10.0.0.1:9090");
        assert!(err.source().is_some());
        assert!(Error::NoMembers.source().is_none());
    }
}

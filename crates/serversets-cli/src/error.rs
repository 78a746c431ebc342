//! What can go wrong running a command, and the exit code each gets.

use std::time::Duration;

use serversets_core::zookeeper_client as zk;

/// Why a command failed. Every variant prints as one line; see
/// [`exit_code`](Error::exit_code) for the codes.
///
/// A variant that wraps another error gives it as its
/// [`source`](std::error::Error::source) and does not repeat it in its
/// message; [`report`](Error::report) is the whole chain on one line, as
/// the command prints it.
///
/// ```
/// use serversets_cli::Error;
///
/// let e = Error::Usage("--env needs --service".into());
/// assert_eq!(e.exit_code(), 2);
/// assert_eq!(e.to_string(), "--env needs --service");
///
/// let e = Error::Output(std::io::Error::other("disk full"));
/// assert_eq!(e.to_string(), "cannot write output");
/// assert_eq!(e.report(), "cannot write output: disk full");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// ZooKeeper could not be reached within the connect timeout (exit 1).
    #[error("could not connect to ZooKeeper at {servers} within {}: {reason}", crate::duration::show(*.timeout))]
    Unreachable {
        /// The servers tried.
        servers: String,
        /// How long was waited.
        timeout: Duration,
        /// The last error seen.
        reason: String,
    },
    /// An error from the serversets library (exit 2 for invalid names,
    /// paths and addresses, 1 otherwise).
    #[error(transparent)]
    Core(serversets_core::Error),
    /// A ZooKeeper request failed (exit 1).
    #[error("cannot {op} {path}")]
    ZooKeeper {
        /// What was being done: `list`, `read`, `write to`, ...
        op: String,
        /// The znode.
        path: String,
        /// ZooKeeper's error.
        #[source]
        source: zk::Error,
    },
    /// The connection broke while a write to `set` was on its way: it may
    /// or may not have been applied (exit 1).
    #[error(
        "the ZooKeeper connection broke while writing to {set}, so the change may or may not \
         have been applied (check with `serversets weights`)"
    )]
    MaybeWritten {
        /// The set written to.
        set: String,
        /// What broke the connection.
        #[source]
        source: zk::Error,
    },
    /// Anything else that stopped the command (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Writing the output failed (exit 1; a closed pipe, as with `| head`,
    /// ends the command quietly with exit 0). `register` never ends with
    /// this: its output is a log, and it carries on without it.
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
    /// Reading keys from stdin (`locate -`) failed (exit 1).
    #[error("cannot read keys from stdin")]
    ReadKeys(#[source] std::io::Error),
    /// The signal handlers could not be installed (exit 1).
    #[error("cannot handle signals")]
    Signals(#[source] std::io::Error),
    /// `--metrics-addr` could not be served: the address is in use or not
    /// local, or metrics were already set up in this process (exit 1).
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },
}

impl Error {
    /// The process exit code for this error: 2 for usage errors, 0 for a
    /// closed output pipe, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        use serversets_core::Error as E;
        match self {
            Error::Usage(_) => 2,
            Error::Core(
                E::InvalidServiceName(_)
                | E::InvalidEnvironment(_)
                | E::InvalidPath { .. }
                | E::NoZooKeeperHosts
                | E::Address(_),
            ) => 2,
            Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            _ => 1,
        }
    }

    /// True when nothing should be printed (the reader closed the pipe).
    pub(crate) fn is_quiet(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// This error and each of its causes, joined by `: ` on one line: what
    /// the command prints.
    pub fn report(&self) -> String {
        report(self)
    }
}

/// `error` and each of its causes, joined by `: `.
pub(crate) fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

impl From<serversets_core::Error> for Error {
    fn from(e: serversets_core::Error) -> Self {
        match e {
            serversets_core::Error::Connect {
                hosts,
                timeout,
                detail,
                source,
            } => Error::Unreachable {
                servers: hosts,
                timeout,
                // The client's last error, then what probing found.
                reason: match (source, detail) {
                    (Some(e), Some(d)) => format!("{e} ({d})"),
                    (Some(e), None) => e.to_string(),
                    (None, Some(d)) => d,
                    (None, None) => "no answer".into(),
                },
            },
            other => Error::Core(other),
        }
    }
}

/// Shorthand for a usage error.
pub(crate) fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(usage("x").exit_code(), 2);
        assert_eq!(Error::Failed("x".into()).exit_code(), 1);
        let bad_path = serversets_core::validate_path("rel").unwrap_err();
        assert_eq!(Error::from(bad_path).exit_code(), 2);
        let pipe = Error::Output(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(pipe.exit_code(), 0);
        assert!(pipe.is_quiet());
        let e = Error::Unreachable {
            servers: "127.0.0.1:1".into(),
            timeout: Duration::from_secs(2),
            reason: "refused".into(),
        };
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "could not connect to ZooKeeper at 127.0.0.1:1 within 2s: refused"
        );
    }
}

#[cfg(test)]
mod cause_once {
    use super::*;
    use std::error::Error as _;

    /// Every variant that wraps an error gives it once: as its source, not
    /// again in its message; the report names each once.
    #[test]
    fn wrapping_variants_do_not_repeat_their_source() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let taken = metrics_exporter_prometheus::BuildError::FailedToCreateHTTPListener(
            "address in use".into(),
        );
        let wrapping = [
            Error::ZooKeeper {
                op: "list".into(),
                path: "/discovery".into(),
                source: zk::Error::NoNode,
            },
            Error::MaybeWritten {
                set: "/discovery/prod/web".into(),
                source: zk::Error::ConnectionLoss,
            },
            Error::Output(std::io::Error::other("disk full")),
            Error::ReadKeys(std::io::Error::other("invalid UTF-8")),
            Error::Signals(std::io::Error::other("no signal driver")),
            Error::Metrics {
                addr,
                source: taken,
            },
        ];
        for e in wrapping {
            let source = e.source().expect("a wrapping variant has a source");
            let (message, cause) = (e.to_string(), source.to_string());
            assert!(!message.contains(&cause), "{message:?} repeats {cause:?}");
            assert_eq!(e.report(), format!("{message}: {cause}"));
        }
    }
}

//! What can go wrong running a command, and the exit code each gets.

use std::time::Duration;

/// Why a command failed. Every variant prints as one line; see
/// [`exit_code`](CliError::exit_code) for the codes.
///
/// ```
/// use serversets_cli::CliError;
///
/// let e = CliError::Usage("--env needs --service".into());
/// assert_eq!(e.exit_code(), 2);
/// assert_eq!(e.to_string(), "--env needs --service");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command line is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// ZooKeeper could not be reached within the connect timeout (exit 1).
    #[error("could not connect to ZooKeeper at {hosts} within {}: {reason}", crate::duration::show(*.timeout))]
    Unreachable {
        /// The servers tried.
        hosts: String,
        /// How long was waited.
        timeout: Duration,
        /// The last error seen.
        reason: String,
    },
    /// An error from the serversets library (exit 2 for invalid names,
    /// paths and addresses, 1 otherwise).
    #[error(transparent)]
    Core(serversets_core::Error),
    /// Anything else that stopped the command (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Writing the output failed (exit 1; a closed pipe, as with `| head`,
    /// ends the command quietly with exit 0). `register` never ends with
    /// this: its output is a log, and it carries on without it.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// `--metrics-addr` could not be served: the address is in use or not
    /// local, or metrics were already set up in this process (exit 1).
    #[error("cannot serve metrics on {addr}: {reason}")]
    Metrics {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
}

impl CliError {
    /// The process exit code for this error: 2 for usage errors, 0 for a
    /// closed output pipe, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        use serversets_core::Error as E;
        match self {
            CliError::Usage(_) => 2,
            CliError::Core(
                E::InvalidServiceName(_)
                | E::InvalidEnvironment(_)
                | E::InvalidPath { .. }
                | E::NoZooKeeperHosts
                | E::Address(_),
            ) => 2,
            CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            _ => 1,
        }
    }

    /// True when nothing should be printed (the reader closed the pipe).
    pub(crate) fn is_quiet(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<serversets_core::Error> for CliError {
    fn from(e: serversets_core::Error) -> Self {
        match e {
            serversets_core::Error::Connect {
                hosts,
                timeout,
                reason,
            } => CliError::Unreachable {
                hosts,
                timeout,
                reason,
            },
            other => CliError::Core(other),
        }
    }
}

/// Shorthand for a usage error.
pub(crate) fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(usage("x").exit_code(), 2);
        assert_eq!(CliError::Failed("x".into()).exit_code(), 1);
        let bad_path = serversets_core::validate_path("rel").unwrap_err();
        assert_eq!(CliError::from(bad_path).exit_code(), 2);
        let pipe = CliError::Output(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(pipe.exit_code(), 0);
        assert!(pipe.is_quiet());
        let e = CliError::Unreachable {
            hosts: "127.0.0.1:1".into(),
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

//! SIGINT and SIGTERM as one stream, so long-running commands can end
//! cleanly (a sidecar removes its member first).

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::error::CliError;

/// Both termination signals. Installing replaces the default action (exit
/// at once), so install before announcing anything a test or an operator
/// may react to with a signal.
pub(crate) struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub(crate) fn install() -> Result<Signals, CliError> {
        let install = |kind| {
            signal(kind).map_err(|e| CliError::Failed(format!("cannot handle signals: {e}")))
        };
        Ok(Signals {
            int: install(SignalKind::interrupt())?,
            term: install(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal and names it.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

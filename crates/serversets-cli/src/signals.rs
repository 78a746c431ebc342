//! SIGINT and SIGTERM as one stream, so long-running commands can end
//! cleanly (a sidecar removes its member first).
//!
//! The signals are caught by a task of their own, not by the command's
//! loop: installing a handler replaces the default action (exit at once),
//! so whatever catches them must never be stuck behind the command's
//! output. The task records that a signal arrived (see [`received`]),
//! which lets output waiting on a stalled reader give up, and forwards the
//! signal to the command.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::error::Error;

/// Set once SIGINT or SIGTERM has arrived after [`Signals::install`].
static RECEIVED: AtomicBool = AtomicBool::new(false);

/// True once this process received SIGINT or SIGTERM through [`Signals`].
pub(crate) fn received() -> bool {
    RECEIVED.load(Ordering::SeqCst)
}

/// Both termination signals, caught from the moment of [`install`](Signals::install).
pub(crate) struct Signals {
    names: mpsc::UnboundedReceiver<&'static str>,
}

impl Signals {
    /// Installs the handlers now (so a signal right after this call is
    /// not lost) and starts the task that catches them. Needs a tokio
    /// runtime.
    pub(crate) fn install() -> Result<Signals, Error> {
        let install = |kind| signal(kind).map_err(Error::Signals);
        let mut int = install(SignalKind::interrupt())?;
        let mut term = install(SignalKind::terminate())?;
        let (tx, names) = mpsc::unbounded_channel();
        // Ends when the command drops its `Signals` (nothing left to tell)
        // or the runtime shuts down; a signal stream cannot fail otherwise.
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = int.recv() => "SIGINT",
                    Some(()) = term.recv() => "SIGTERM",
                    else => break,
                };
                RECEIVED.store(true, Ordering::SeqCst);
                tracing::info!(signal = name, "received a termination signal");
                if tx.send(name).is_err() {
                    break;
                }
            }
        });
        Ok(Signals { names })
    }

    /// Waits for the next signal and names it. (Never returns if the
    /// catching task is gone, which only happens as the runtime shuts down.)
    pub(crate) async fn recv(&mut self) -> &'static str {
        match self.names.recv().await {
            Some(name) => name,
            None => std::future::pending().await,
        }
    }
}

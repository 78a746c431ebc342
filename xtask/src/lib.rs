//! What xtask's commands share with the demo (`crates/serversets-demo`):
//! terminal output, child processes, the system packages, and a ZooKeeper
//! server's mode. The commands themselves are xtask's binary (main.rs);
//! this library lets the demo use the same helpers (and the one list of
//! system packages) without xtask depending on the demo or on any
//! serversets crate.

pub mod proc;
pub mod provision;
pub mod ui;
pub mod zookeeper;

/// Errors in xtask are reported to a person and end the run; a boxed error
/// with a clear message is all that is needed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Shorthand for xtask results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

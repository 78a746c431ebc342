//! Real servers for integration tests: ZooKeeper (standalone or a 3-node
//! ensemble) and memcached, each on free loopback ports with its own temporary
//! directory, killed and cleaned up on drop, also when a test panics.
//!
//! Nothing here is a mock: tests talk to the same ZooKeeper that production
//! uses, started from Debian's `zookeeper` package (or `ZOOKEEPER_CLASSPATH`).
//! When a server is not installed, starting it fails with an error that says
//! exactly how to install it.
//!
//! ```no_run
//! let zk = testkit::ZkCluster::standalone().expect("zookeeper");
//! println!("connect to {}", zk.connect_string());
//! zk.pause(0).unwrap();   // SIGSTOP: looks like a network partition
//! zk.resume(0).unwrap();
//! ```
//!
//! Network faults (resets, stalls, a blackhole, lost replies) come from a
//! [`FaultProxy`] in front of each server: set [`ZkOptions::proxied`].

pub mod bench;
mod memcached;
mod pki;
mod ports;
mod process;
pub mod prometheus;
mod proxy;
pub mod recorder;
pub mod vectors;
mod wait;
pub mod znodes;
mod zookeeper;

pub use memcached::Memcached;
pub use pki::{TestPki, Validity, STORE_PASSWORD};
pub use ports::free_port;
pub use proxy::{zk_op, FaultCounts, FaultProxy};
pub use wait::{eventually, eventually_blocking};
pub use zookeeper::{four_letter_word, ClientAuth, ZkCluster, ZkOptions, ZkSasl, ZkTls};

/// What went wrong starting or controlling a test server.
#[derive(Debug)]
pub enum Error {
    /// The server software is not installed; the text says how to install it.
    NotInstalled(String),
    /// An I/O error, with what was being done.
    Io(String, std::io::Error),
    /// The server did not come up in time; the text includes its log tail.
    NotReady(String),
    /// A server index that does not exist, or a server in the wrong state.
    BadServer(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotInstalled(s) => write!(f, "not installed: {s}"),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::NotReady(s) => write!(f, "server not ready: {s}"),
            Error::BadServer(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for testkit results.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::Io(what, e)
}

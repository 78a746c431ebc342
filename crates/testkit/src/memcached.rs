//! A real memcached on a free loopback port.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{kill_and_reap, spawn};
use crate::{free_port, io, Error, Result};

/// A running memcached, killed on drop.
pub struct Memcached {
    port: u16,
    child: Child,
}

impl Memcached {
    /// Starts memcached (64 MB, loopback only) and waits until it accepts.
    pub fn start() -> Result<Memcached> {
        let bin = ["/usr/bin/memcached", "/usr/local/bin/memcached"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                Error::NotInstalled(
                    "memcached is needed to run this test. On Debian or Ubuntu: \
                     `sudo apt-get update && sudo apt-get install -y memcached` \
                     (or run `cargo xtask test`, which installs it when run as root)."
                        .into(),
                )
            })?;
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
            "-u",
            "root",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = spawn(cmd, true).map_err(io("start memcached"))?;
        let mut mc = Memcached { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = mc.child.try_wait() {
                return Err(Error::NotReady(format!("memcached exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady(format!(
                    "memcached on port {port} did not accept"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(mc)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills it now.
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

//! Raw loopback sockets that misbehave on purpose.
//!
//! Shared by the integration tests (through `support`) and by the unit
//! tests of `src/link.rs` (through `#[path]`), so it uses nothing else of
//! `support`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A loopback port whose accept queue is full: connects to it hang, as to
/// a server that is down. Keep the listener and fillers alive.
pub fn black_hole() -> (SocketAddr, TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // std listens with a long backlog; shorten it to 0.
    let fd = {
        use std::os::fd::AsRawFd;
        listener.as_raw_fd()
    };
    // SAFETY: `fd` is the listening socket `listener` owns and keeps open.
    let listened = unsafe { libc::listen(fd, 0) };
    assert_eq!(listened, 0);
    let mut fillers = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        fillers.push(s);
        assert!(fillers.len() < 16, "the accept queue never filled");
    }
    (addr, listener, fillers)
}

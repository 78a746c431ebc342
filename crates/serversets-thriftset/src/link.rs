//! One pooled TCP connection: dialing, Thrift protocol set-up, the liveness
//! probe, and closing.

use std::any::Any;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use serversets_core::HostPort;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TInputProtocol, TOutputProtocol,
};
use thrift::transport::{
    TBufferedReadTransport, TBufferedWriteTransport, TReadTransport, TWriteTransport,
};

use crate::framed::{FramedReader, FramedWriter};
use crate::{Protocol, Transport};

/// The input half handed to a generated client's constructor.
///
/// A generated client over the pool's protocols has the type
/// `XxxSyncClient<InputProtocol, OutputProtocol>`.
///
/// ```
/// use serversets_thriftset::{InputProtocol, OutputProtocol};
/// // Stands in for a generated client.
/// struct Client<I, O>(I, O);
/// type Pooled = Client<InputProtocol, OutputProtocol>;
/// fn is_send<T: Send>() {}
/// is_send::<Pooled>(); // can be cached on a pooled connection
/// ```
pub type InputProtocol = Box<dyn TInputProtocol + Send>;

/// The output half handed to a generated client's constructor; see
/// [`InputProtocol`].
///
/// ```
/// use serversets_thriftset::OutputProtocol;
/// use thrift::protocol::TOutputProtocol;
/// fn flush(out: &mut OutputProtocol) -> thrift::Result<()> {
///     out.flush()
/// }
/// # let _ = flush;
/// ```
pub type OutputProtocol = Box<dyn TOutputProtocol + Send>;

/// An open connection to one host, plus the client cached on it.
///
/// Every socket handle lives inside this struct (the cached client owns two
/// duplicates), so dropping it really closes the connection.
pub(crate) struct Link {
    /// Which incarnation of which host this belongs to.
    pub(crate) host_id: u64,
    pub(crate) addr: Arc<HostPort>,
    stream: TcpStream,
    client: Option<Box<dyn Any + Send>>,
}

impl Link {
    /// Dials `addr`, trying each resolved address within `connect_timeout`.
    pub(crate) fn connect(
        host_id: u64,
        addr: &Arc<HostPort>,
        connect_timeout: Duration,
        io_timeout: Option<Duration>,
    ) -> io::Result<Link> {
        let mut last = None;
        for sockaddr in (addr.host(), addr.port()).to_socket_addrs()? {
            match TcpStream::connect_timeout(&sockaddr, connect_timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(io_timeout)?;
                    stream.set_write_timeout(io_timeout)?;
                    return Ok(Link {
                        host_id,
                        addr: addr.clone(),
                        stream,
                        client: None,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                ErrorKind::NotFound,
                format!("{addr} resolves to no address"),
            )
        }))
    }

    /// True when the peer has neither closed the connection nor sent bytes
    /// nobody asked for: the socket would block on a read.
    pub(crate) fn looks_alive(&self) -> bool {
        peek_would_block(&self.stream)
    }

    /// The cached client if it is a `C`, else a new `C` built on fresh
    /// protocols over this connection (replacing any other cached client).
    pub(crate) fn client<C, F>(
        &mut self,
        transport: Transport,
        protocol: Protocol,
        make: F,
    ) -> io::Result<&mut C>
    where
        C: Send + 'static,
        F: FnOnce(InputProtocol, OutputProtocol) -> C,
    {
        let cached = self.client.as_ref().is_some_and(|c| c.is::<C>());
        if !cached {
            // Drop the old client (and its socket duplicates) first.
            self.client = None;
            let (input, output) = self.protocols(transport, protocol)?;
            self.client = Some(Box::new(make(input, output)));
        }
        self.client
            .as_mut()
            .and_then(|c| c.downcast_mut::<C>())
            .ok_or_else(|| io::Error::other("cached client vanished"))
    }

    fn protocols(
        &self,
        transport: Transport,
        protocol: Protocol,
    ) -> io::Result<(InputProtocol, OutputProtocol)> {
        let read = self.stream.try_clone()?;
        let write = self.stream.try_clone()?;
        Ok(match transport {
            Transport::Framed => wrap(FramedReader::new(read), FramedWriter::new(write), protocol),
            Transport::Buffered => wrap(
                TBufferedReadTransport::new(read),
                TBufferedWriteTransport::new(write),
                protocol,
            ),
        })
    }

    /// Closes the connection now, even if a caller kept a socket duplicate.
    pub(crate) fn close(self) {
        // Already closed by the peer is fine: the fd is released on drop.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn wrap<R, W>(read: R, write: W, protocol: Protocol) -> (InputProtocol, OutputProtocol)
where
    R: TReadTransport + Send + 'static,
    W: TWriteTransport + Send + 'static,
{
    match protocol {
        Protocol::Binary => (
            Box::new(TBinaryInputProtocol::new(read, true)),
            Box::new(TBinaryOutputProtocol::new(write, true)),
        ),
        Protocol::Compact => (
            Box::new(TCompactInputProtocol::new(read)),
            Box::new(TCompactOutputProtocol::new(write)),
        ),
    }
}

/// One `recv(MSG_PEEK | MSG_DONTWAIT)`: an idle connection must have nothing
/// to read. End of stream, stray bytes or an error all mean it is unusable.
#[cfg(unix)]
fn peek_would_block(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    // SAFETY: the fd is open for the lifetime of `stream`, and the buffer is a
    // valid, writable 1-byte region that outlives the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == ErrorKind::WouldBlock
}

/// Portable fallback: switch to non-blocking for one peek.
#[cfg(not(unix))]
fn peek_would_block(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let blocked = matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && blocked
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (Link, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let addr = Arc::new(HostPort::new("127.0.0.1", port).unwrap());
        let link = Link::connect(1, &addr, Duration::from_secs(1), None).unwrap();
        let (server, _) = listener.accept().unwrap();
        (link, server)
    }

    #[test]
    fn probe_sees_open_close_and_stray_bytes() {
        let (link, server) = pair();
        assert!(link.looks_alive());
        drop(server);
        // The FIN arrives on loopback almost at once; give it a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while link.looks_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!link.looks_alive());

        let (link, mut server) = pair();
        server.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while link.looks_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!link.looks_alive(), "unexpected bytes make a link unusable");
    }

    #[test]
    fn client_slot_is_typed() {
        let (mut link, _server) = pair();
        struct A(u32);
        let a = link
            .client(Transport::Framed, Protocol::Binary, |_, _| A(7))
            .unwrap();
        a.0 += 1;
        let a = link
            .client(Transport::Framed, Protocol::Binary, |_, _| A(0))
            .unwrap();
        assert_eq!(a.0, 8, "same type: the cached client is reused");
        let b = link
            .client(Transport::Buffered, Protocol::Compact, |_, _| "other")
            .unwrap();
        assert_eq!(*b, "other");
        let a = link
            .client(Transport::Framed, Protocol::Binary, |_, _| A(1))
            .unwrap();
        assert_eq!(a.0, 1, "another type replaced the slot");
    }

    #[test]
    fn connect_refused_is_an_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = Arc::new(HostPort::new("127.0.0.1", port).unwrap());
        assert!(Link::connect(1, &addr, Duration::from_secs(1), None).is_err());
    }
}

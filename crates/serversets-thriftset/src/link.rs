//! One pooled TCP connection: dialing, Thrift protocol set-up, the liveness
//! probe, and closing.

use std::any::Any;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serversets_core::HostPort;
use thrift::protocol::{
    TBinaryOutputProtocol, TCompactOutputProtocol, TInputProtocol, TOutputProtocol,
};
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport, TWriteTransport};

use crate::bounded::{Bounded, BoundedBinary, BoundedCompact, Unframed};
use crate::exchange::{Exchange, TrackedInput, TrackedOutput};
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

/// An open connection to one member, plus the client cached on it.
///
/// Every socket handle lives inside this struct (the cached client owns two
/// duplicates), so dropping it really closes the connection.
pub(crate) struct Link {
    pub(crate) addr: Arc<HostPort>,
    stream: TcpStream,
    client: Option<Box<dyn Any + Send>>,
    /// Where the calls on this connection stand, as its protocols saw them.
    exchange: Arc<Exchange>,
}

impl Link {
    /// Dials `addr` by `deadline`: name resolution and every resolved
    /// address share that one budget.
    pub(crate) fn connect(
        addr: &Arc<HostPort>,
        deadline: Instant,
        io_timeout: Option<Duration>,
    ) -> io::Result<Link> {
        Link::connect_to(addr, resolve(addr, deadline)?, deadline, io_timeout)
    }

    /// Dials `candidates` in turn until one answers or `deadline` passes.
    fn connect_to(
        addr: &Arc<HostPort>,
        candidates: Vec<SocketAddr>,
        deadline: Instant,
        io_timeout: Option<Duration>,
    ) -> io::Result<Link> {
        let mut last = None;
        for sockaddr in candidates {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                last = Some(timed_out(addr));
                break;
            }
            match TcpStream::connect_timeout(&sockaddr, left) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(io_timeout)?;
                    stream.set_write_timeout(io_timeout)?;
                    return Ok(Link {
                        addr: addr.clone(),
                        stream,
                        client: None,
                        exchange: Arc::default(),
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

    /// True when every call made on this connection was written and its
    /// reply read whole, with no error: it can serve the next borrower.
    pub(crate) fn in_step(&self) -> bool {
        self.exchange.in_step()
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
        let exchange = self.exchange.clone();
        Ok(match transport {
            Transport::Framed => wrap(
                FramedReader::new(read),
                FramedWriter::new(write),
                protocol,
                exchange,
            ),
            Transport::Buffered => wrap(
                Unframed(TBufferedReadTransport::new(read)),
                TBufferedWriteTransport::new(write),
                protocol,
                exchange,
            ),
        })
    }

    /// Closes the connection now, even if a caller kept a socket duplicate.
    pub(crate) fn close(self) {
        // Already closed by the peer is fine: the fd is released on drop.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The protocols handed to generated clients: thrift's output protocols,
/// our bounded input protocols (see `bounded`), both tracked (see
/// `exchange`).
fn wrap<R, W>(
    read: R,
    write: W,
    protocol: Protocol,
    exchange: Arc<Exchange>,
) -> (InputProtocol, OutputProtocol)
where
    R: Bounded + Send + 'static,
    W: TWriteTransport + Send + 'static,
{
    let (input, output): (InputProtocol, OutputProtocol) = match protocol {
        Protocol::Binary => (
            Box::new(BoundedBinary::new(read)),
            Box::new(TBinaryOutputProtocol::new(write, true)),
        ),
        Protocol::Compact => (
            Box::new(BoundedCompact::new(read)),
            Box::new(TCompactOutputProtocol::new(write)),
        ),
    };
    (
        Box::new(TrackedInput::new(input, exchange.clone())),
        Box::new(TrackedOutput::new(output, exchange)),
    )
}

fn timed_out(addr: &HostPort) -> io::Error {
    io::Error::new(
        ErrorKind::TimedOut,
        format!("connecting to {addr} took longer than the connect timeout"),
    )
}

/// The socket addresses of `addr`, resolved by `deadline`.
///
/// An IP address needs no lookup. A name is looked up on a thread of its
/// own, because the system resolver has no timeout of its own: a lookup
/// that outlives the deadline is left to finish there, unheard.
fn resolve(addr: &HostPort, deadline: Instant) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = addr.host().trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, addr.port())]);
    }
    resolve_with(addr, deadline, |host, port| {
        (host.as_str(), port).to_socket_addrs().map(|a| a.collect())
    })
}

/// [`resolve`] for a name, with the lookup given (tests pass a slow one).
fn resolve_with<F>(addr: &HostPort, deadline: Instant, lookup: F) -> io::Result<Vec<SocketAddr>>
where
    F: FnOnce(String, u16) -> io::Result<Vec<SocketAddr>> + Send + 'static,
{
    let (host, port) = (addr.host().to_string(), addr.port());
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("thriftset-resolve".into())
        .spawn(move || {
            // Nobody listens any more after a timeout; that is fine.
            let _ = tx.send(lookup(host, port));
        })?;
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(found) => found,
        Err(_) => Err(io::Error::new(
            ErrorKind::TimedOut,
            format!("resolving {addr} took longer than the connect timeout"),
        )),
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
#[path = "../tests/support/net.rs"]
mod net;

#[cfg(test)]
mod tests {
    use super::net::black_hole;
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (Link, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let addr = Arc::new(HostPort::new("127.0.0.1", port).unwrap());
        let link = Link::connect(&addr, Instant::now() + Duration::from_secs(1), None).unwrap();
        let (server, _) = listener.accept().unwrap();
        (link, server)
    }

    #[test]
    fn probe_sees_open_close_and_stray_bytes() {
        let (link, server) = pair();
        assert!(link.looks_alive());
        drop(server);
        // The FIN arrives on loopback almost at once; give it a moment.
        testkit::eventually_blocking(
            Duration::from_secs(2),
            "the probe to see the peer's close",
            || !link.looks_alive(),
        );

        let (link, mut server) = pair();
        server.write_all(b"x").unwrap();
        testkit::eventually_blocking(
            Duration::from_secs(2),
            "the probe to find unexpected bytes make a link unusable",
            || !link.looks_alive(),
        );
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
    fn every_address_and_the_lookup_share_one_deadline() {
        let (a, _la, _fa) = black_hole();
        let (b, _lb, _fb) = black_hole();
        let addr = Arc::new(HostPort::new("two-addresses.test", 1).unwrap());
        let start = std::time::Instant::now();
        let deadline = start + Duration::from_millis(400);
        let err = Link::connect_to(&addr, vec![a, b], deadline, None)
            .err()
            .expect("nothing answers");
        let took = start.elapsed();
        // One budget for both addresses, not 400 ms each.
        assert!(took < Duration::from_millis(600), "took {took:?}: {err}");

        // A lookup that hangs is given up at the deadline.
        let start = std::time::Instant::now();
        let deadline = start + Duration::from_millis(200);
        let err = resolve_with(&addr, deadline, |_, _| {
            std::thread::sleep(Duration::from_secs(3));
            Ok(Vec::new())
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn connect_refused_is_an_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = Arc::new(HostPort::new("127.0.0.1", port).unwrap());
        assert!(Link::connect(&addr, Instant::now() + Duration::from_secs(1), None).is_err());
    }
}

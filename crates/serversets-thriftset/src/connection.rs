//! The checked-out connection handed to callers.

use std::fmt;
use std::sync::Arc;

use serversets_core::HostPort;
use thrift::{ApplicationErrorKind, Error as ThriftError};

use crate::link::{InputProtocol, Link, OutputProtocol};
use crate::pool::{Lease, Outcome, Shared};
use crate::Error;

/// A connection checked out of a [`ThriftSet`](crate::ThriftSet).
///
/// Build your generated client on it with [`client`](Connection::client);
/// the client is cached on the connection and reused by the next caller that
/// gets it. Dropping the guard returns the connection to its member's idle
/// list; [`discard`](Connection::discard) (or a breaking error passed to
/// [`report_error`](Connection::report_error)) closes it instead and counts
/// a failure against the member.
///
/// The pool also watches the protocols it hands out: a connection whose
/// last call did not complete (a timeout, an I/O or protocol error, a reply
/// left unread) is closed on drop and counted as a failure even if nobody
/// reported it, so `conn.client(..)?.call(..)?` is safe.
///
/// ```
/// use std::net::TcpListener;
/// use serversets_fixedset::FixedSet;
/// use serversets_thriftset::ThriftSet;
///
/// // Any listening socket accepts the TCP connection; a real Thrift server
/// // would also answer calls.
/// let server = TcpListener::bind("127.0.0.1:0")?;
/// let set = ThriftSet::new(FixedSet::new([server.local_addr()?.to_string()])?)?;
///
/// let mut conn = set.get()?;
/// assert_eq!(conn.addr().port(), server.local_addr()?.port());
/// // A generated client would be `EchoSyncClient::new(input, output)`.
/// let (_input, _output) = conn.client(|input, output| (input, output))?;
/// drop(conn); // back to the pool
/// assert_eq!(set.members()[0].idle, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection {
    shared: Arc<Shared>,
    addr: Arc<HostPort>,
    /// `Some` until the guard is dropped.
    link: Option<Link>,
    /// The checkout's claim on its member, given back with the link.
    lease: Option<Lease>,
    broken: bool,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, link: Link, lease: Lease) -> Connection {
        Connection {
            shared,
            addr: link.addr.clone(),
            link: Some(link),
            lease: Some(lease),
            broken: false,
        }
    }

    /// The address of the member this connection goes to.
    ///
    /// ```
    /// # use std::net::TcpListener;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_thriftset::ThriftSet;
    /// # let server = TcpListener::bind("127.0.0.1:0")?;
    /// # let addr = server.local_addr()?.to_string();
    /// let set = ThriftSet::new(FixedSet::new([addr.as_str()])?)?;
    /// assert_eq!(set.get()?.addr().to_string(), addr);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    /// The client cached on this connection, or a new one built by `make`
    /// from the connection's input and output protocols (with the set's
    /// transport and protocol) and cached for whoever checks it out next.
    ///
    /// `make` is typically a generated constructor such as
    /// `EchoSyncClient::new`. The cache holds one client: asking for another
    /// type replaces it with a client on fresh protocols.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the connection's socket cannot be duplicated
    /// for the new client's protocols (the operating system's error is the
    /// source). A cached client of the same type is returned without error.
    ///
    /// ```
    /// # use std::net::TcpListener;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_thriftset::ThriftSet;
    /// # let server = TcpListener::bind("127.0.0.1:0")?;
    /// # let set = ThriftSet::new(FixedSet::new([server.local_addr()?.to_string()])?)?;
    /// struct Client { calls: u32 } // stands in for a generated client
    ///
    /// let mut conn = set.get()?;
    /// conn.client(|_input, _output| Client { calls: 0 })?.calls += 1;
    /// drop(conn);
    ///
    /// let mut conn = set.get()?; // the same, idle connection
    /// let cached = conn.client(|_input, _output| Client { calls: 0 })?;
    /// assert_eq!(cached.calls, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client<C, F>(&mut self, make: F) -> Result<&mut C, Error>
    where
        C: Send + 'static,
        F: FnOnce(InputProtocol, OutputProtocol) -> C,
    {
        let transport = self.shared.config.transport;
        let protocol = self.shared.config.protocol;
        let Some(link) = self.link.as_mut() else {
            // Only `Drop` takes the link; no method runs after it.
            return Err(Error::Closed);
        };
        link.client(transport, protocol, make)
            .map_err(|source| Error::Socket {
                addr: (*self.addr).clone(),
                source,
            })
    }

    /// Tells the pool how a call on this connection failed. Errors that leave
    /// the connection in an unknown state (transport and protocol errors, a
    /// timed-out or out-of-sequence reply) mark it broken: it is closed on
    /// drop and counts as a failure toward ejecting the member. Errors the
    /// server sent in good order (a declared exception, an unknown method)
    /// leave it reusable. Returns true when the connection is now broken.
    ///
    /// ```
    /// # use std::net::TcpListener;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_thriftset::ThriftSet;
    /// use thrift::{ApplicationError, ApplicationErrorKind, TransportError, TransportErrorKind};
    /// # let server = TcpListener::bind("127.0.0.1:0")?;
    /// # let set = ThriftSet::new(FixedSet::new([server.local_addr()?.to_string()])?)?;
    ///
    /// let mut conn = set.get()?;
    /// let remote = thrift::Error::Application(ApplicationError::new(
    ///     ApplicationErrorKind::UnknownMethod, "no such method"));
    /// assert!(!conn.report_error(&remote));
    /// let timeout = thrift::Error::Transport(TransportError::new(
    ///     TransportErrorKind::TimedOut, "read timed out"));
    /// assert!(conn.report_error(&timeout));
    /// drop(conn); // closed, not returned
    /// assert_eq!(set.members()[0].idle, 0);
    /// assert_eq!(set.members()[0].consecutive_failures, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report_error(&mut self, err: &ThriftError) -> bool {
        if breaks_connection(err) {
            self.broken = true;
        }
        self.broken
    }

    /// True once the connection is marked broken, or is no longer between
    /// calls: a call on it failed, or was left with its request half written
    /// or its reply not read to the end. Such a connection is closed when
    /// the guard is dropped, reported or not.
    ///
    /// ```
    /// # use std::net::TcpListener;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_thriftset::ThriftSet;
    /// # let server = TcpListener::bind("127.0.0.1:0")?;
    /// # let set = ThriftSet::new(FixedSet::new([server.local_addr()?.to_string()])?)?;
    /// assert!(!set.get()?.is_broken());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.broken || self.link.as_ref().is_some_and(|l| !l.in_step())
    }

    /// Closes the connection instead of returning it, and counts a failure
    /// against its member (enough in a row eject the member for a while).
    ///
    /// ```
    /// # use std::net::TcpListener;
    /// # use serversets_fixedset::FixedSet;
    /// # use serversets_thriftset::ThriftSet;
    /// # let server = TcpListener::bind("127.0.0.1:0")?;
    /// # let set = ThriftSet::new(FixedSet::new([server.local_addr()?.to_string()])?)?;
    /// set.get()?.discard();
    /// let member = &set.members()[0];
    /// assert_eq!((member.in_flight, member.idle, member.consecutive_failures), (0, 0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn discard(mut self) {
        self.broken = true;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let (Some(link), Some(lease)) = (self.link.take(), self.lease.take()) {
            // A connection dropped while panicking, or in the middle of a
            // call (half a request written, a reply unread or half read, an
            // I/O error seen: a `?` on a timed-out call drops the guard with
            // nothing reported, #12), would hand the next borrower someone
            // else's reply: never reuse it, whatever the guard was told.
            let outcome = if self.broken || std::thread::panicking() || !link.in_step() {
                Outcome::Failed
            } else {
                Outcome::Ok
            };
            self.shared.release(lease, Some(link), outcome);
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr.to_string())
            .field("broken", &self.broken)
            .finish()
    }
}

/// Whether a failed call leaves the connection unusable.
fn breaks_connection(err: &ThriftError) -> bool {
    match err {
        ThriftError::Transport(_) | ThriftError::Protocol(_) => true,
        ThriftError::Application(e) => !matches!(
            e.kind,
            // Sent by the server as a complete message, or found after the
            // whole reply was read: the stream is still in step.
            ApplicationErrorKind::Unknown
                | ApplicationErrorKind::UnknownMethod
                | ApplicationErrorKind::InternalError
                | ApplicationErrorKind::MissingResult
        ),
        ThriftError::User(_) => false,
    }
}

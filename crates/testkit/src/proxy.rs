//! A fault-injecting TCP proxy for ZooKeeper client connections.
//!
//! [`FaultProxy`] listens on a free loopback port and forwards every
//! connection to one upstream server, byte for byte, until a test asks for a
//! fault: connection resets (RST), stalls, a blackhole, refused connections,
//! or a request that reaches the server while its reply is lost. Those are the
//! faults production networks produce; stopping or killing a server (see
//! [`ZkCluster`](crate::ZkCluster)) only produces clean closes.
//!
//! It is plain `std`: two threads per connection and one accepting, no async
//! runtime, so it works under any test harness. Dropping the proxy stops every
//! thread it started.
//!
//! # Framing
//!
//! The proxy understands ZooKeeper's framing (a 4-byte big-endian length, then
//! the body) in both directions, and reads the request header `{xid, type}` of
//! each client frame after the first (the `ConnectRequest`) and the `xid` of
//! each server frame after the first (the `ConnectResponse`). Nothing is ever
//! changed: a fault decides, frame by frame, whether a whole frame is
//! forwarded or discarded, so switching faults on and off mid-stream never
//! leaves a peer with half a frame. Traffic that is not framed (a four-letter
//! word) passes through unchanged while no fault is active.
//!
//! # What zookeeper-client 0.11 reports for each fault
//!
//! Observed against a real ZooKeeper 3.8 by `crates/testkit/tests/proxy.rs`
//! (run it with `--nocapture` to see them printed):
//!
//! | fault | a request in flight fails with | then |
//! |---|---|---|
//! | [`reset_all`](FaultProxy::reset_all) | `Error::Custom` whose source is an `io::Error` of kind `ConnectionReset` ("Connection reset by peer (os error 104)"); **not** `ConnectionLoss` | the client reconnects at once, same session |
//! | [`stall`](FaultProxy::stall) longer than the client's connection timeout | `Error::Custom("no response from connection in {N}ms")` after N ms, N being the connection timeout (by default 2/5 of the session timeout) | the client reconnects; its new connections are stalled too, so requests succeed only after the stall, same session if the stall was shorter than it. Right after the stall one more request may fail (a reset or `ConnectionLoss`): the held bytes of connections the client gave up on are delivered, and their `ConnectRequest` makes ZooKeeper close the session's newer connection (`ZooKeeperServer.processConnectRequest` closes a session's other connections) |
//! | [`set_blackhole`](FaultProxy::set_blackhole) | `Error::Custom("no response from connection in {N}ms")`, as for a stall | every reconnect is accepted and starved; requests made meanwhile neither fail nor get answers until the blackhole ends (or the session expires); then every connection that lost bytes is reset |
//! | [`lose_replies`](FaultProxy::lose_replies) | `Error::Custom` over an `io::Error` of kind `ConnectionReset`, **although the server applied the request**: the node exists; retrying the create gives `NodeExists`, and retrying a sequential create makes a second node | the client reconnects at once, same session |
//! | [`refuse`](FaultProxy::refuse) | nothing by itself (open connections are kept); a request sent on a connection just reset fails as for `reset_all` | every reconnect is reset; requests made meanwhile wait, as in a blackhole, and are answered once refusing stops |
//! | server killed while idle (`ZkCluster::kill`) | `Error::ConnectionLoss` (the kernel closes the socket cleanly and the proxy passes the FIN on): the only fault that gives it | requests made while the server is down wait for it |
//! | server killed while paused with an unread request | `Error::Custom` over `ConnectionReset`: the kernel resets a socket closed with unread data, and the proxy passes the RST on | as above |
//!
//! In short: only a clean close (FIN) gives `ConnectionLoss`; every real
//! network fault gives `Error::Custom`, and none of them says whether the
//! request was applied.
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::{zk_op, ZkCluster, ZkOptions};
//!
//! # fn main() -> testkit::Result<()> {
//! let zk = ZkCluster::start(ZkOptions { proxied: true, ..ZkOptions::default() })?;
//! // Clients given zk.connect_string() go through the proxy;
//! // zk.direct_connect_string() reads ZooKeeper's truth.
//! let proxy = zk.proxy(0).ok_or_else(|| testkit::Error::BadServer("no proxy".into()))?;
//! proxy.lose_replies(&[zk_op::CREATE, zk_op::CREATE2], 1); // next create: applied, reply lost
//! proxy.stall(Duration::from_secs(3)); // nothing moves for 3 s
//! proxy.reset_all(); // RST every connection now
//! proxy.heal();
//! println!("{:?}", proxy.faults());
//! # Ok(())
//! # }
//! ```
//!
//! A proxy on its own: `FaultProxy::start(upstream_addr)?`, then clients
//! connect to [`FaultProxy::addr`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{io as io_err, Result};

/// How often a connection thread looks at the fault settings when no bytes
/// arrive (ends of stalls, resets, the proxy being dropped).
const POLL: Duration = Duration::from_millis(10);
/// How long a blocked write waits before looking at the settings again.
const WRITE_POLL: Duration = Duration::from_millis(50);
/// How long the accepting thread waits for a connection before looking again.
const ACCEPT_POLL_MS: libc::c_int = 25;
/// How long to wait for the upstream server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// ZooKeeper operation codes, as they appear in the `type` field of a
/// request header (`org.apache.zookeeper.ZooDefs.OpCode`), for
/// [`FaultProxy::lose_replies`].
///
/// zookeeper-client 0.11 sends `create` as [`CREATE2`](zk_op::CREATE2)
/// (servers from 3.5 on); pass both [`CREATE`](zk_op::CREATE) and
/// [`CREATE2`](zk_op::CREATE2) to catch every plain create.
pub mod zk_op {
    /// `notification`: not sent by clients (xid -1 marks watch events).
    pub const NOTIFICATION: i32 = 0;
    /// `create`: the pre-3.5 create, with no `Stat` in its reply.
    pub const CREATE: i32 = 1;
    /// `delete`.
    pub const DELETE: i32 = 2;
    /// `exists`.
    pub const EXISTS: i32 = 3;
    /// `getData`.
    pub const GET_DATA: i32 = 4;
    /// `setData`.
    pub const SET_DATA: i32 = 5;
    /// `getACL`.
    pub const GET_ACL: i32 = 6;
    /// `setACL`.
    pub const SET_ACL: i32 = 7;
    /// `getChildren`.
    pub const GET_CHILDREN: i32 = 8;
    /// `sync`.
    pub const SYNC: i32 = 9;
    /// `ping` (always xid -2).
    pub const PING: i32 = 11;
    /// `getChildren2`: children and the parent's `Stat`.
    pub const GET_CHILDREN2: i32 = 12;
    /// `check` (a version check inside a multi).
    pub const CHECK: i32 = 13;
    /// `multi`: a transaction.
    pub const MULTI: i32 = 14;
    /// `create2`: create with a `Stat` in the reply (what zookeeper-client sends).
    pub const CREATE2: i32 = 15;
    /// `reconfig`.
    pub const RECONFIG: i32 = 16;
    /// `checkWatches`.
    pub const CHECK_WATCHES: i32 = 17;
    /// `removeWatches`.
    pub const REMOVE_WATCHES: i32 = 18;
    /// `createContainer`.
    pub const CREATE_CONTAINER: i32 = 19;
    /// `deleteContainer`.
    pub const DELETE_CONTAINER: i32 = 20;
    /// `createTTL`.
    pub const CREATE_TTL: i32 = 21;
    /// `multiRead`: several reads in one request.
    pub const MULTI_READ: i32 = 22;
    /// `auth` (`setAuth`).
    pub const SET_AUTH: i32 = 100;
    /// `setWatches`: re-arming watches after a reconnect.
    pub const SET_WATCHES: i32 = 101;
    /// `sasl`.
    pub const SASL: i32 = 102;
    /// `getEphemerals`.
    pub const GET_EPHEMERALS: i32 = 103;
    /// `getAllChildrenNumber`.
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    /// `setWatches2`: re-arming watches, persistent ones included.
    pub const SET_WATCHES2: i32 = 105;
    /// `addWatch`: a persistent (recursive) watch.
    pub const ADD_WATCH: i32 = 106;
    /// `whoAmI`.
    pub const WHO_AM_I: i32 = 107;
    /// `createSession`: server-internal.
    pub const CREATE_SESSION: i32 = -10;
    /// `closeSession`: sent when a client closes its session.
    pub const CLOSE_SESSION: i32 = -11;
    /// `error`: server-internal.
    pub const ERROR: i32 = -1;
}

/// How many faults a [`FaultProxy`] injected since it started.
///
/// Counters only grow; take two snapshots and subtract to count the faults of
/// one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Client connections accepted (not a fault; refused ones included).
    pub accepted: u64,
    /// Connections reset (RST to client and server) by
    /// [`reset_all`](FaultProxy::reset_all).
    pub resets: u64,
    /// Connections reset on accept while [`refuse`](FaultProxy::refuse) was on.
    pub refused: u64,
    /// Calls to [`stall`](FaultProxy::stall).
    pub stalls: u64,
    /// Times [`set_blackhole`](FaultProxy::set_blackhole) switched the
    /// blackhole on (from off).
    pub blackholes: u64,
    /// Frames discarded by the blackhole, both directions.
    pub blackholed_frames: u64,
    /// Replies dropped by [`lose_replies`](FaultProxy::lose_replies); each was
    /// followed by a reset of its connection, not counted in `resets`.
    pub lost_replies: u64,
}

/// A TCP proxy on `127.0.0.1` in front of one ZooKeeper server, injecting
/// faults on demand.
///
/// Without faults every byte is forwarded unchanged in both directions, and a
/// close or reset by either side is passed on to the other. Faults apply to
/// open connections and to new ones alike. Every control method returns at
/// once; none blocks the caller for the duration of a fault.
///
/// Each accepted connection opens its own connection to the upstream server.
/// If the upstream does not accept it (server stopped), the client connection
/// is reset, except in a blackhole, which holds it.
///
/// Dropping the proxy stops accepting, resets every open connection (RST both
/// ways) and joins every thread it started.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free port of `127.0.0.1`.
    ///
    /// The upstream need not be running yet: each client connection connects
    /// to it when it is accepted.
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).map_err(io_err("bind the fault proxy"))?;
        let addr = listener
            .local_addr()
            .map_err(io_err("read the fault proxy's address"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("make the fault proxy's listener non-blocking"))?;
        let shared = Arc::new(Shared {
            upstream,
            stopping: AtomicBool::new(false),
            blackhole: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            threads: Mutex::new(Vec::new()),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &for_thread))
            .map_err(io_err("start the fault proxy's thread"))?;
        Ok(FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect: `127.0.0.1` and the proxy's port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server this proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Resets every open connection now: `SO_LINGER` 0, then close, on both
    /// the client and the server side, so both see an RST (`ECONNRESET`), not
    /// a clean close. The RST goes out when the connection's threads let go
    /// of the sockets, within milliseconds; nothing more is forwarded from
    /// now on, and bytes held by a stall die with the connection. New
    /// connections are still accepted. Returns how many connections were
    /// reset.
    pub fn reset_all(&self) -> usize {
        let conns: Vec<Arc<Conn>> = self.shared.lock().conns.values().cloned().collect();
        let reset = conns.iter().filter(|c| c.reset(&self.shared)).count();
        self.shared.lock().counts.resets += reset as u64;
        reset
    }

    /// Stalls every connection, open and new, for `d`: bytes are read from
    /// both sides and held, none is forwarded. After `d` the held bytes are
    /// forwarded in order and traffic carries on. A connection whose client
    /// gave up meanwhile still delivers its held requests, then its close, to
    /// the server, as TCP does when a partition heals. A second stall extends
    /// the first; [`heal`](Self::heal) ends it early. Returns at once.
    pub fn stall(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut state = self.shared.lock();
        state.stall_until = Some(state.stall_until.map_or(until, |u| u.max(until)));
        state.counts.stalls += 1;
    }

    /// Switches the blackhole on or off. While on, connections (open and new)
    /// are kept open but nothing is forwarded either way: every frame that
    /// starts is read and discarded, and a close by either side is not passed
    /// on. Connections are never closed while it lasts. When it is switched
    /// off, a connection that lost bytes in it is reset (TCP never delivers
    /// later bytes after losing earlier ones: it retransmits or gives the
    /// connection up, so resuming it would fake a fault no network makes);
    /// one that lost nothing carries on, and held closes are passed on.
    pub fn set_blackhole(&self, on: bool) {
        let was = self.shared.blackhole.swap(on, Ordering::SeqCst);
        if on && !was {
            self.shared.lock().counts.blackholes += 1;
        }
    }

    /// Makes the proxy lose replies: the next `count` client requests (over
    /// all connections) whose operation code is in `ops` (see [`zk_op`]) are
    /// forwarded to the server, but when the server's reply with the same xid
    /// arrives it is dropped and the connection is reset (RST both ways). The
    /// server has applied the request; the client never learns it. This
    /// replaces an earlier call's budget. A reply the blackhole discards is
    /// not counted as lost.
    pub fn lose_replies(&self, ops: &[i32], count: usize) {
        let mut state = self.shared.lock();
        state.lose_ops = ops.to_vec();
        state.lose_left = count;
    }

    /// While on, every new connection is accepted and reset at once (RST):
    /// the client's connect succeeds and its first read or write fails with
    /// `ECONNRESET` (not `ECONNREFUSED`). Open connections are not touched;
    /// follow with [`reset_all`](Self::reset_all) to cut them too.
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Ends every fault: the blackhole, refusing, a stall (held bytes are
    /// forwarded now) and lost replies, both the remaining budget and requests
    /// whose replies were still to be dropped.
    pub fn heal(&self) {
        self.shared.blackhole.store(false, Ordering::SeqCst);
        self.shared.refuse.store(false, Ordering::SeqCst);
        let conns: Vec<Arc<Conn>> = {
            let mut state = self.shared.lock();
            state.stall_until = None;
            state.lose_left = 0;
            state.conns.values().cloned().collect()
        };
        for conn in conns {
            conn.armed_lock().clear();
        }
    }

    /// Client connections currently open through the proxy (accepted and
    /// connected upstream, or held by a blackhole).
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// How many faults were injected so far.
    pub fn faults(&self) -> FaultCounts {
        self.shared.lock().counts
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let conns: Vec<Arc<Conn>> = self.shared.lock().conns.values().cloned().collect();
        for conn in conns {
            conn.reset(&self.shared);
        }
        // A connection thread pushes its second thread's handle before it
        // finishes, so joining until the list stays empty joins them all.
        loop {
            let handles = std::mem::take(&mut *self.shared.threads_lock());
            if handles.is_empty() {
                break;
            }
            for h in handles {
                let _ = h.join();
            }
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("faults", &self.faults())
            .finish()
    }
}

struct Shared {
    upstream: SocketAddr,
    stopping: AtomicBool,
    blackhole: AtomicBool,
    refuse: AtomicBool,
    state: Mutex<State>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    stall_until: Option<Instant>,
    lose_ops: Vec<i32>,
    lose_left: usize,
    conns: HashMap<u64, Arc<Conn>>,
    next_id: u64,
    counts: FaultCounts,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn threads_lock(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn blackholed(&self) -> bool {
        self.blackhole.load(Ordering::SeqCst)
    }

    fn stalled(&self) -> bool {
        let mut state = self.lock();
        match state.stall_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                state.stall_until = None;
                false
            }
            None => false,
        }
    }

    /// Whether requests may still be picked to lose their replies.
    fn lose_pending(&self) -> bool {
        self.lock().lose_left > 0
    }

    /// Takes one lost reply from the budget if `op` is to lose its reply.
    fn take_lose(&self, op: i32) -> bool {
        let mut state = self.lock();
        if state.lose_left > 0 && state.lose_ops.contains(&op) {
            state.lose_left -= 1;
            true
        } else {
            false
        }
    }

    fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let handle = std::thread::Builder::new().name(name).spawn(f)?;
        self.threads_lock().push(handle);
        Ok(())
    }

    /// Joins the threads that have finished, so a long-lived proxy does not
    /// pile up handles.
    fn reap(&self) {
        let finished: Vec<JoinHandle<()>> = {
            let mut threads = self.threads_lock();
            let (done, running) = std::mem::take(&mut *threads)
                .into_iter()
                .partition(|h| h.is_finished());
            *threads = running;
            done
        };
        for h in finished {
            let _ = h.join();
        }
    }
}

/// One proxied connection: the client's socket and ours to the server.
///
/// Both threads share it; the sockets close when the last `Arc` goes, which
/// with `SO_LINGER` 0 set by [`Conn::reset`] sends an RST.
struct Conn {
    id: u64,
    client: TcpStream,
    upstream: Option<TcpStream>,
    doomed: AtomicBool,
    /// The blackhole discarded some of its bytes: no longer a TCP stream a
    /// peer could trust. TCP never delivers later bytes after losing
    /// earlier ones (it retransmits, or gives the connection up), so when
    /// the blackhole ends the connection is reset rather than resumed.
    broken: AtomicBool,
    /// Threads still running for this connection.
    pumps: AtomicUsize,
    /// Xids of forwarded requests whose replies are to be lost.
    armed: Mutex<Vec<i32>>,
}

impl Conn {
    fn doomed(&self) -> bool {
        self.doomed.load(Ordering::SeqCst)
    }

    fn armed_lock(&self) -> MutexGuard<'_, Vec<i32>> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resets both sides: `SO_LINGER` 0 now, the RST when the threads drop
    /// the sockets (within [`POLL`]); `SHUT_RD` wakes a blocked reader without
    /// sending anything. Returns false if it was already reset.
    fn reset(&self, shared: &Shared) -> bool {
        if self.doomed.swap(true, Ordering::SeqCst) {
            return false;
        }
        for s in std::iter::once(&self.client).chain(self.upstream.as_ref()) {
            set_linger_zero(s);
            let _ = s.shutdown(Shutdown::Read);
        }
        shared.lock().conns.remove(&self.id);
        true
    }

    /// A thread of this connection ends; the last one unregisters it.
    fn pump_done(&self, shared: &Shared) {
        if self.pumps.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared.lock().conns.remove(&self.id);
        }
    }
}

fn set_linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger
    // value that outlives the call.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Resets a socket nobody else holds: RST on drop.
fn reset_now(s: TcpStream) {
    set_linger_zero(&s);
    drop(s);
}

/// Waits up to [`ACCEPT_POLL_MS`] for the listener to have a connection.
fn wait_readable(listener: &TcpListener) -> bool {
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut fds, 1, ACCEPT_POLL_MS) };
    rc > 0
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stopping() {
        shared.reap();
        if !wait_readable(listener) {
            continue;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => accepted(stream, shared),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // Out of descriptors or the like: try again later.
                    std::thread::sleep(POLL);
                    break;
                }
            }
        }
    }
}

fn accepted(stream: TcpStream, shared: &Arc<Shared>) {
    shared.lock().counts.accepted += 1;
    if shared.refuse.load(Ordering::SeqCst) {
        shared.lock().counts.refused += 1;
        reset_now(stream);
        return;
    }
    let for_thread = Arc::clone(shared);
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let peer = stream.peer_addr().map(|a| a.port()).unwrap_or(0);
    // The stream moves into the closure; if the thread cannot start, the
    // closure is dropped with it and the client sees a close.
    let _ = shared.spawn(format!("fault-proxy-{port}-{peer}"), move || {
        serve(stream, &for_thread, peer);
    });
}

/// Runs one connection: connects upstream, starts the server-to-client
/// thread and pumps client-to-server itself.
fn serve(client: TcpStream, shared: &Arc<Shared>, peer: u16) {
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(POLL))?;
        s.set_write_timeout(Some(WRITE_POLL))
    };
    if setup(&client).is_err() {
        reset_now(client);
        return;
    }
    let upstream = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT)
        .and_then(|s| setup(&s).map(|()| s));
    let upstream = match upstream {
        Ok(s) => Some(s),
        // Only a blackhole holds a connection that has no server.
        Err(_) if shared.blackholed() => None,
        Err(_) => {
            reset_now(client);
            return;
        }
    };
    let conn = {
        let mut state = shared.lock();
        state.next_id += 1;
        let conn = Arc::new(Conn {
            id: state.next_id,
            pumps: AtomicUsize::new(if upstream.is_some() { 2 } else { 1 }),
            client,
            upstream,
            doomed: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            armed: Mutex::new(Vec::new()),
        });
        state.conns.insert(conn.id, Arc::clone(&conn));
        conn
    };
    if shared.stopping() {
        conn.reset(shared);
        return;
    }
    if conn.upstream.is_some() {
        let (c, s) = (Arc::clone(&conn), Arc::clone(shared));
        let started = shared.spawn(format!("fault-proxy-reply-{peer}"), move || {
            pump(&s, &c, Dir::ToClient);
        });
        if started.is_err() {
            conn.reset(shared);
            return;
        }
    }
    pump(shared, &conn, Dir::ToServer);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// How a direction of a connection ended, passed on to the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A clean close (EOF): passed on as a FIN.
    Fin,
    /// A reset or another error: passed on as an RST.
    Reset,
}

/// One direction's frame tracking.
struct Framer {
    dir: Dir,
    /// Bytes read and not yet forwarded or discarded.
    pending: Vec<u8>,
    /// Where in a frame the next pending byte is.
    stage: Stage,
    /// Whether the current frame is discarded.
    discard: bool,
    /// Whether the first frame (connect request or response) has started.
    started: bool,
}

/// Where in a frame a direction is.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// At a frame boundary: the next byte starts a frame.
    Start,
    /// Inside the 4-byte length of a frame already decided on.
    Length { got: [u8; 4], n: usize },
    /// Inside a frame's body, with this many bytes to go.
    Body { left: u64 },
}

/// What became of the frames handled in one round.
enum Verdict {
    Carry,
    /// A reply to be lost came in: reset the connection.
    LoseReply,
}

impl Framer {
    fn new(dir: Dir) -> Framer {
        Framer {
            dir,
            pending: Vec::new(),
            stage: Stage::Start,
            discard: false,
            started: false,
        }
    }

    /// Decides what to do with the pending bytes, frame by frame, and writes
    /// the forwarded ones to `dst`.
    ///
    /// A frame is decided when it starts: discarded in a blackhole, else
    /// forwarded. Only while a reply may have to be lost does the decision
    /// wait for the frame's header: its length and request header `{xid,
    /// type}` (client to server, while the lost-reply budget lasts) or its
    /// reply xid (server to client, while this connection has a request whose
    /// reply is to be lost). Otherwise bytes go on as they come, even a lone
    /// byte of a length.
    fn process(&mut self, shared: &Shared, conn: &Conn, dst: &TcpStream) -> io::Result<Verdict> {
        let mut out = Vec::new();
        let mut used = 0;
        let mut verdict = Verdict::Carry;
        loop {
            let rest = self.pending.get(used..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            match self.stage {
                Stage::Body { left } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    if !self.discard {
                        out.extend_from_slice(rest.get(..n).unwrap_or_default());
                    }
                    used += n;
                    self.stage = match left - n as u64 {
                        0 => Stage::Start,
                        left => Stage::Body { left },
                    };
                }
                Stage::Length { mut got, mut n } => {
                    let take = (4 - n).min(rest.len());
                    for (i, &b) in rest.iter().take(take).enumerate() {
                        if let Some(slot) = got.get_mut(n + i) {
                            *slot = b;
                        }
                    }
                    if !self.discard {
                        out.extend_from_slice(rest.get(..take).unwrap_or_default());
                    }
                    used += take;
                    n += take;
                    self.stage = if n == 4 {
                        match u32::from_be_bytes(got) {
                            0 => Stage::Start,
                            len => Stage::Body {
                                left: u64::from(len),
                            },
                        }
                    } else {
                        Stage::Length { got, n }
                    };
                }
                Stage::Start => {
                    let blackhole = shared.blackholed();
                    let watch = self.started
                        && match self.dir {
                            Dir::ToServer => shared.lose_pending(),
                            Dir::ToClient => !conn.armed_lock().is_empty(),
                        };
                    if watch {
                        // Wait for the header, then look at it.
                        let Some(len) = be_i32(rest, 0) else { break };
                        let len = u64::from(len as u32);
                        let header: u64 = match self.dir {
                            Dir::ToServer => 8,
                            Dir::ToClient => 4,
                        };
                        if (rest.len() as u64) < 4 + len.min(header) {
                            break;
                        }
                        if len >= header && self.lose(shared, conn, rest, blackhole) {
                            verdict = Verdict::LoseReply;
                            break;
                        }
                        self.stage = Stage::Body { left: 4 + len };
                    } else {
                        self.stage = Stage::Length { got: [0; 4], n: 0 };
                    }
                    if blackhole {
                        shared.lock().counts.blackholed_frames += 1;
                        conn.broken.store(true, Ordering::SeqCst);
                    }
                    self.discard = blackhole;
                    self.started = true;
                }
            }
        }
        self.pending.drain(..used);
        write_all(dst, &out, shared, conn)?;
        Ok(verdict)
    }

    /// Looks at the header of a frame (not the first) that starts `rest`:
    /// arms a request whose reply is to be lost, or reports a reply to lose.
    fn lose(&self, shared: &Shared, conn: &Conn, rest: &[u8], blackhole: bool) -> bool {
        match self.dir {
            Dir::ToServer => {
                if let (Some(xid), Some(op)) = (be_i32(rest, 4), be_i32(rest, 8)) {
                    // A request the blackhole discards gets no reply to lose.
                    if !blackhole && shared.take_lose(op) {
                        conn.armed_lock().push(xid);
                    }
                }
                false
            }
            Dir::ToClient => {
                let Some(xid) = be_i32(rest, 4) else {
                    return false;
                };
                let mut armed = conn.armed_lock();
                match armed.iter().position(|&a| a == xid) {
                    Some(i) => {
                        armed.remove(i);
                        !blackhole
                    }
                    None => false,
                }
            }
        }
    }
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

/// Writes all of `data`, looking at the connection's state between blocked
/// writes so a reset or the proxy's drop never waits on a full peer.
fn write_all(mut dst: &TcpStream, data: &[u8], shared: &Shared, conn: &Conn) -> io::Result<()> {
    let mut at = 0;
    while at < data.len() {
        if conn.doomed() || shared.stopping() {
            return Err(io::Error::other("connection reset by the fault proxy"));
        }
        match dst.write(data.get(at..).unwrap_or_default()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves one direction of a connection until it ends, applying the faults.
fn pump(shared: &Shared, conn: &Conn, dir: Dir) {
    let (src, dst) = match dir {
        Dir::ToServer => (Some(&conn.client), conn.upstream.as_ref()),
        Dir::ToClient => (conn.upstream.as_ref(), Some(&conn.client)),
    };
    if let Some(src) = src {
        pump_from(shared, conn, dir, src, dst);
    }
    conn.pump_done(shared);
}

fn pump_from(shared: &Shared, conn: &Conn, dir: Dir, mut src: &TcpStream, dst: Option<&TcpStream>) {
    let mut framer = Framer::new(dir);
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = None;
    loop {
        if shared.stopping() {
            conn.reset(shared);
            return;
        }
        if conn.doomed() {
            return;
        }
        if end.is_none() {
            match src.read(&mut buf) {
                Ok(0) => end = Some(End::Fin),
                Ok(n) => framer
                    .pending
                    .extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => end = Some(End::Reset),
            }
        } else {
            std::thread::sleep(POLL);
        }
        if conn.doomed() || shared.stalled() {
            continue;
        }
        if !shared.blackholed() && conn.broken.load(Ordering::SeqCst) {
            // The blackhole is over and this stream lost bytes in it.
            conn.reset(shared);
            return;
        }
        let Some(dst) = dst else {
            // No server behind this connection: only a blackhole holds it.
            if shared.blackholed() {
                framer.pending.clear();
                continue;
            }
            conn.reset(shared);
            return;
        };
        match framer.process(shared, conn, dst) {
            Ok(Verdict::Carry) => {}
            Ok(Verdict::LoseReply) => {
                if conn.reset(shared) {
                    shared.lock().counts.lost_replies += 1;
                }
                return;
            }
            Err(_) => {
                // The other side went away: pass the reset on.
                conn.reset(shared);
                return;
            }
        }
        let Some(how) = end else { continue };
        if shared.blackholed() {
            // Hold the close; what is left of a frame is discarded.
            framer.pending.clear();
            continue;
        }
        // An unfinished frame is forwarded as it is.
        if write_all(dst, &framer.pending, shared, conn).is_err() {
            conn.reset(shared);
            return;
        }
        framer.pending.clear();
        match how {
            End::Fin => {
                let _ = dst.shutdown(Shutdown::Write);
            }
            End::Reset => {
                conn.reset(shared);
            }
        }
        return;
    }
}

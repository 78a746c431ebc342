//! The fault proxy on raw TCP, against small std servers that play the
//! upstream: byte-exact forwarding, whole-frame discards, resets as RST,
//! stalls, refusals, lost replies and clean-up on drop. No ZooKeeper needed;
//! `proxy.rs` runs the same faults against a real one.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use testkit::{zk_op, FaultProxy};

/// A listener whose accepted connections are handed to the test.
fn upstream() -> (SocketAddr, mpsc::Receiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for s in listener.incoming() {
            match s {
                Ok(s) => {
                    if tx.send(s).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    (addr, rx)
}

fn accept(rx: &mpsc::Receiver<TcpStream>) -> TcpStream {
    let s = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the proxy connects upstream");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn connect(p: &FaultProxy) -> TcpStream {
    let s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A request frame: RequestHeader {xid, type} and a body.
fn request(xid: i32, op: i32, body: &[u8]) -> Vec<u8> {
    let mut b = xid.to_be_bytes().to_vec();
    b.extend_from_slice(&op.to_be_bytes());
    b.extend_from_slice(body);
    frame(&b)
}

/// A reply frame: ReplyHeader {xid, zxid, err} and a body.
fn reply(xid: i32, body: &[u8]) -> Vec<u8> {
    let mut b = xid.to_be_bytes().to_vec();
    b.extend_from_slice(&7i64.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(body);
    frame(&b)
}

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// Reads until the peer closes or resets; what came, and how it ended.
fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn proxies_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<FaultProxy>();
    send_sync::<testkit::ZkCluster>();
}

#[test]
fn forwards_bytes_unchanged_both_ways_and_passes_closes_on() {
    let (addr, rx) = upstream();
    let p = FaultProxy::start(addr).unwrap();
    let mut c = connect(&p);
    let mut s = accept(&rx);
    wait_until("the connection to register", || p.connections() == 1);

    // Arbitrary bytes, not ZooKeeper frames, in uneven writes.
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (d2, mut c2) = (data.clone(), c.try_clone().unwrap());
    let writer = thread::spawn(move || {
        for chunk in d2.chunks(7919) {
            c2.write_all(chunk).unwrap();
        }
    });
    assert_eq!(read_exact(&mut s, data.len()), data, "client to server");
    writer.join().unwrap();
    s.write_all(&data).unwrap();
    assert_eq!(read_exact(&mut c, data.len()), data, "server to client");

    // The server closes cleanly: the client sees a clean close (EOF), not a reset.
    drop(s);
    let (rest, end) = read_to_end(&mut c);
    assert!(rest.is_empty());
    assert!(end.is_ok(), "clean close passed on as EOF, got {end:?}");
    drop(c);
    wait_until("the connection to go", || p.connections() == 0);
    assert_eq!(
        p.faults(),
        testkit::FaultCounts {
            accepted: 1,
            ..Default::default()
        }
    );
}

#[test]
fn reset_all_sends_rst_both_ways_and_keeps_accepting() {
    let (addr, rx) = upstream();
    let p = FaultProxy::start(addr).unwrap();
    let mut c = connect(&p);
    let mut s = accept(&rx);
    c.write_all(&frame(b"connect")).unwrap();
    read_exact(&mut s, 11);
    wait_until("the connection to register", || p.connections() == 1);

    assert_eq!(p.reset_all(), 1);
    let (_, end) = read_to_end(&mut c);
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    let (_, end) = read_to_end(&mut s);
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    wait_until("the connection to go", || p.connections() == 0);
    assert_eq!(p.faults().resets, 1);

    // New connections still work.
    let mut c = connect(&p);
    let mut s = accept(&rx);
    c.write_all(b"again").unwrap();
    assert_eq!(read_exact(&mut s, 5), b"again");
    assert_eq!(p.faults().accepted, 2);
}

#[test]
fn blackhole_discards_whole_frames_and_never_closes() {
    let (addr, rx) = upstream();
    let p = FaultProxy::start(addr).unwrap();
    let mut c = connect(&p);
    let mut s = accept(&rx);
    let connect_frame = frame(b"connect-request");
    c.write_all(&connect_frame).unwrap();
    assert_eq!(read_exact(&mut s, connect_frame.len()), connect_frame);
    // A second connection that stays quiet through the blackhole.
    let mut quiet_c = connect(&p);
    let mut quiet_s = accept(&rx);
    quiet_c.write_all(&connect_frame).unwrap();
    assert_eq!(read_exact(&mut quiet_s, connect_frame.len()), connect_frame);

    // A frame that starts before the blackhole is forwarded whole.
    let big = request(1, zk_op::SET_DATA, &[0xab; 1000]);
    c.write_all(&big[..500]).unwrap();
    assert_eq!(read_exact(&mut s, 500), &big[..500]);
    p.set_blackhole(true);
    c.write_all(&big[500..]).unwrap();
    assert_eq!(read_exact(&mut s, big.len() - 500), &big[500..]);

    // Frames that start in the blackhole vanish, both ways.
    c.write_all(&request(2, zk_op::GET_DATA, b"/lost")).unwrap();
    s.write_all(&reply(1, b"lost too")).unwrap();
    wait_until("two frames discarded", || p.faults().blackholed_frames == 2);
    // A close in the blackhole is held, not passed on.
    c.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut one = [0u8; 1];
    let held = s.read(&mut one);
    assert!(
        matches!(&held, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "nothing, not even the close, gets through: {held:?}"
    );
    assert_eq!(p.connections(), 2);

    // Out of the blackhole: the connection that lost frames is no stream a
    // peer can trust any more, so both its sides are reset; the quiet one
    // carries on.
    p.set_blackhole(false);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (rest, end) = read_to_end(&mut s);
    assert!(rest.is_empty(), "the discarded request never arrives");
    assert!(
        matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "a stream that lost bytes is reset: {end:?}"
    );
    let next = request(3, zk_op::GET_DATA, b"/after");
    quiet_c.write_all(&next).unwrap();
    assert_eq!(read_exact(&mut quiet_s, next.len()), next);
    let f = p.faults();
    assert_eq!((f.blackholes, f.blackholed_frames, f.resets), (1, 2, 0));
}

#[test]
fn stall_holds_bytes_then_delivers_them_in_order() {
    let (addr, rx) = upstream();
    let p = FaultProxy::start(addr).unwrap();
    let mut c = connect(&p);
    let mut s = accept(&rx);
    let start = Instant::now();
    p.stall(Duration::from_millis(600));
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "stall returns at once"
    );
    c.write_all(b"held ").unwrap();
    s.write_all(b"back").unwrap();
    c.write_all(b"bytes").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        s.read(&mut buf).is_err(),
        "nothing forwarded during a stall"
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_exact(&mut s, 10), b"held bytes");
    assert!(start.elapsed() >= Duration::from_millis(600));
    assert_eq!(read_exact(&mut c, 4), b"back");
    assert_eq!(p.faults().stalls, 1);

    // heal ends a stall early.
    p.stall(Duration::from_secs(60));
    c.write_all(b"x").unwrap();
    thread::sleep(Duration::from_millis(100));
    let healed = Instant::now();
    p.heal();
    assert_eq!(read_exact(&mut s, 1), b"x");
    assert!(healed.elapsed() < Duration::from_secs(2));
}

#[test]
fn lost_reply_reaches_the_server_and_the_client_is_reset() {
    let (addr, rx) = upstream();
    let p = FaultProxy::start(addr).unwrap();
    let mut c = connect(&p);
    let mut s = accept(&rx);
    // The connect frames are never taken for requests, whatever their bytes.
    let conn_req = frame(&[0, 0, 0, 1, 0, 0, 0, 15, 0, 0]);
    c.write_all(&conn_req).unwrap();
    assert_eq!(read_exact(&mut s, conn_req.len()), conn_req);
    let conn_resp = frame(&[0, 0, 0, 1, 0, 0, 0, 0]);
    s.write_all(&conn_resp).unwrap();
    assert_eq!(read_exact(&mut c, conn_resp.len()), conn_resp);

    p.lose_replies(&[zk_op::CREATE, zk_op::CREATE2], 1);
    // Other operations are untouched.
    let get = request(1, zk_op::GET_DATA, b"/a");
    c.write_all(&get).unwrap();
    assert_eq!(read_exact(&mut s, get.len()), get);
    let create = request(2, zk_op::CREATE2, b"/a/member_");
    c.write_all(&create).unwrap();
    assert_eq!(
        read_exact(&mut s, create.len()),
        create,
        "the create reaches the server"
    );
    // The server answers both; only the get's reply gets through.
    let (r1, r2) = (reply(1, b"data"), reply(2, b"/a/member_0000000001"));
    s.write_all(&[r1.clone(), r2].concat()).unwrap();
    let (got, end) = read_to_end(&mut c);
    assert_eq!(got, r1);
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    let (_, end) = read_to_end(&mut s);
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    let f = p.faults();
    assert_eq!((f.lost_replies, f.resets), (1, 0));

    // The budget is spent: the next create's reply arrives.
    let mut c = connect(&p);
    let mut s = accept(&rx);
    c.write_all(&conn_req).unwrap();
    s.write_all(&conn_resp).unwrap();
    read_exact(&mut s, conn_req.len());
    read_exact(&mut c, conn_resp.len());
    c.write_all(&request(3, zk_op::CREATE2, b"/b")).unwrap();
    read_exact(&mut s, 14);
    s.write_all(&reply(3, b"/b")).unwrap();
    assert_eq!(read_exact(&mut c, 22), reply(3, b"/b"));
}

#[test]
fn refuse_resets_new_connections_only() {
    let (addr, rx) = upstream();
    let p = FaultProxy::start(addr).unwrap();
    let mut open = connect(&p);
    let mut s = accept(&rx);
    p.refuse(true);
    let mut c = connect(&p);
    let (_, end) = read_to_end(&mut c);
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "a refused connection never reaches the server"
    );
    open.write_all(b"still").unwrap();
    assert_eq!(read_exact(&mut s, 5), b"still");
    p.refuse(false);
    let mut c = connect(&p);
    let mut s2 = accept(&rx);
    c.write_all(b"ok").unwrap();
    assert_eq!(read_exact(&mut s2, 2), b"ok");
    let f = p.faults();
    assert_eq!((f.accepted, f.refused), (3, 1));
}

#[test]
fn a_missing_upstream_resets_the_client_unless_blackholed() {
    // A port nobody listens on.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = FaultProxy::start(addr).unwrap();
    let mut c = connect(&p);
    let (_, end) = read_to_end(&mut c);
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));

    p.set_blackhole(true);
    let mut c = connect(&p);
    c.write_all(&frame(b"hello?")).unwrap();
    wait_until("the held connection to register", || p.connections() == 1);
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(c.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock));
    p.heal();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (_, end) = read_to_end(&mut c);
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
}

#[test]
fn drop_resets_connections_and_stops_listening() {
    let (addr, rx) = upstream();
    let p = FaultProxy::start(addr).unwrap();
    let proxy_addr = p.addr();
    let mut c = connect(&p);
    let mut s = accept(&rx);
    p.stall(Duration::from_secs(60));
    c.write_all(b"held").unwrap();
    wait_until("the connection to register", || p.connections() == 1);
    let start = Instant::now();
    drop(p);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "drop joins its threads promptly, took {:?}",
        start.elapsed()
    );
    let (_, end) = read_to_end(&mut c);
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    let (got, end) = read_to_end(&mut s);
    assert!(got.is_empty(), "held bytes die with the proxy");
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    assert!(
        TcpStream::connect(proxy_addr).is_err(),
        "no longer listening"
    );
}

#[test]
fn headers_split_into_single_bytes_are_still_recognised() {
    let (addr, rx) = upstream();
    let p = FaultProxy::start(addr).unwrap();
    let mut c = connect(&p);
    let mut s = accept(&rx);
    let trickle = |w: &mut TcpStream, bytes: &[u8]| {
        for b in bytes {
            w.write_all(&[*b]).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
    };
    // Connect frames, then a get and a create, all a byte at a time.
    trickle(&mut c, &frame(b"connect"));
    trickle(&mut s, &frame(b"connected"));
    assert_eq!(read_exact(&mut s, 11), frame(b"connect"));
    assert_eq!(read_exact(&mut c, 13), frame(b"connected"));
    p.lose_replies(&[zk_op::CREATE2], 1);
    let (get, create) = (
        request(5, zk_op::GET_DATA, b"/g"),
        request(6, zk_op::CREATE2, b"/c"),
    );
    trickle(&mut c, &get);
    trickle(&mut c, &create);
    assert_eq!(
        read_exact(&mut s, get.len() + create.len()),
        [get, create].concat()
    );
    let r5 = reply(5, b"g");
    trickle(&mut s, &r5);
    assert_eq!(read_exact(&mut c, r5.len()), r5);
    // The lost reply's first bytes never reach the client, and the server
    // is reset once the reply's xid is in.
    let lost = reply(6, b"/c");
    let sent = lost
        .iter()
        .take_while(|b| {
            thread::sleep(Duration::from_millis(2));
            s.write_all(&[**b]).is_ok()
        })
        .count();
    assert!(sent >= 8, "the proxy waited for the xid, sent {sent}");
    let (got, end) = read_to_end(&mut c);
    assert!(got.is_empty(), "not a byte of the lost reply: {got:?}");
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    assert_eq!(p.faults().lost_replies, 1);
}

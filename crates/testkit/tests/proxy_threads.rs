//! Dropping a fault proxy leaves no thread behind. Alone in its test binary,
//! so that no other test's threads come and go while it counts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use testkit::FaultProxy;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn drop_joins_every_thread_it_started() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let before = threads();
    let p = FaultProxy::start(upstream.local_addr().unwrap()).unwrap();
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for i in 0..6u8 {
        let mut c = TcpStream::connect(p.addr()).unwrap();
        let (mut s, _) = upstream.accept().unwrap();
        c.write_all(&[0, 0, 0, 1, i]).unwrap();
        let mut got = [0u8; 5];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, [0, 0, 0, 1, i]);
        clients.push(c);
        servers.push(s);
    }
    // Some connections closed normally, the rest left in a stall or a
    // blackhole with bytes held.
    drop(clients.drain(..2));
    drop(servers.drain(..2));
    p.set_blackhole(true);
    p.stall(Duration::from_secs(60));
    for c in &mut clients {
        c.write_all(b"held").unwrap();
    }
    // Upstream-less connections held by the blackhole.
    drop(upstream);
    let _held = TcpStream::connect(p.addr()).unwrap();
    assert!(threads() >= before + 1 + 2 * 4);
    drop(p);
    let deadline = Instant::now() + Duration::from_secs(2);
    while threads() != before {
        assert!(
            Instant::now() < deadline,
            "{} threads left behind",
            threads() - before
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

//! A connection must never carry one caller's trouble to the next, and a
//! checkout must keep its books and its deadline, against real Thrift
//! servers and raw loopback sockets.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serversets_fixedset::FixedSet;
use serversets_thriftset::{Error, Protocol, ThriftSet, Transport};
use support::echo::EchoSyncClient;
use support::net::black_hole;
use support::{with_client, Backend, BackendOptions, TEchoSyncClient};
use testkit::eventually_blocking;

/// A call the way application code often writes it: `?` on everything,
/// no `report_error`.
fn call_slow(set: &ThriftSet, ms: i32) -> Result<i32, Box<dyn std::error::Error>> {
    let mut conn = set.get()?;
    Ok(conn.client(EchoSyncClient::new)?.slow(ms)?)
}

fn abandoned_call_then_a_thousand(transport: Transport) {
    let backend = Backend::with(BackendOptions {
        transport,
        ..BackendOptions::default()
    });
    let set = ThriftSet::builder()
        .transport(transport)
        .io_timeout(Some(Duration::from_millis(100)))
        .build(FixedSet::new([backend.addr()]).unwrap())
        .unwrap();
    // The read times out after 100 ms; the reply comes at 300 ms.
    let err = call_slow(&set, 300).expect_err("the read times out");
    assert!(
        matches!(
            err.downcast_ref::<thrift::Error>(),
            Some(thrift::Error::Transport(_))
        ),
        "{err:?}"
    );
    let member = &set.members()[0];
    assert_eq!(
        member.idle, 0,
        "{transport:?}: the abandoned connection went back to the pool"
    );
    assert_eq!(member.consecutive_failures, 1);
    // Let the late reply arrive, so a reused connection would hold it.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..1000 {
        let mut conn = set.get().unwrap();
        let msg = format!("message {i}");
        let got = with_client(&mut conn, |c| c.echo(msg.clone()));
        assert_eq!(
            got.ok().as_deref(),
            Some(msg.as_str()),
            "{transport:?}: call {i}"
        );
    }
    assert_eq!(set.members()[0].consecutive_failures, 0);
}

#[test]
fn a_call_abandoned_with_question_mark_never_poisons_the_next_borrower_framed() {
    abandoned_call_then_a_thousand(Transport::Framed);
}

#[test]
fn a_call_abandoned_with_question_mark_never_poisons_the_next_borrower_buffered() {
    abandoned_call_then_a_thousand(Transport::Buffered);
}

/// A server that reads one framed request per connection and answers with
/// `reply` in a valid frame, then waits for the client to hang up; returns
/// its address and a receiver of "connection closed" events.
fn hostile_server(reply: Vec<u8>) -> (String, std::sync::mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (closed, closes) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (reply, closed) = (reply.clone(), closed.clone());
            std::thread::spawn(move || {
                let mut len = [0u8; 4];
                if stream.read_exact(&mut len).is_err() {
                    return;
                }
                let mut request = vec![0u8; u32::from_be_bytes(len) as usize];
                if stream.read_exact(&mut request).is_err() {
                    return;
                }
                let mut frame = (reply.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&reply);
                let _ = stream.write_all(&frame);
                // Until the client closes.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                let _ = closed.send(());
            });
        }
    });
    (addr, closes)
}

/// A binary `echo` reply header (sequence number 1, what a fresh client
/// expects) followed by `body`.
fn binary_reply(name_len: i32, body: &[u8]) -> Vec<u8> {
    let mut r = vec![0x80, 0x01, 0x00, 0x02];
    r.extend_from_slice(&name_len.to_be_bytes());
    if name_len == 4 {
        r.extend_from_slice(b"echo");
        r.extend_from_slice(&1i32.to_be_bytes());
    }
    r.extend_from_slice(body);
    r
}

/// The result struct's field 0 (a string) with the given length.
fn string_result(len: i32) -> Vec<u8> {
    let mut r = vec![0x0B, 0x00, 0x00];
    r.extend_from_slice(&len.to_be_bytes());
    r.extend_from_slice(b"short");
    r
}

#[test]
fn a_reply_with_a_hostile_length_fails_typed_without_a_panic_and_the_link_is_discarded() {
    let cases: Vec<(&str, Protocol, Vec<u8>, thrift::ProtocolErrorKind)> = vec![
        (
            "negative name length",
            Protocol::Binary,
            binary_reply(-1, &[]),
            thrift::ProtocolErrorKind::NegativeSize,
        ),
        (
            "negative string length",
            Protocol::Binary,
            binary_reply(4, &string_result(-2)),
            thrift::ProtocolErrorKind::NegativeSize,
        ),
        (
            "2 GiB string in a small frame",
            Protocol::Binary,
            binary_reply(4, &string_result(i32::MAX)),
            thrift::ProtocolErrorKind::SizeLimit,
        ),
        (
            "compact: 4 GiB name",
            Protocol::Compact,
            vec![0x82, 0x41, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
            thrift::ProtocolErrorKind::SizeLimit,
        ),
    ];
    for (what, protocol, reply, want) in cases {
        let (addr, closes) = hostile_server(reply);
        let set = ThriftSet::builder()
            .protocol(protocol)
            .build(FixedSet::new([addr]).unwrap())
            .unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut conn = set.get().unwrap();
            // No report_error: the pool must see it for itself.
            conn.client(EchoSyncClient::new).unwrap().echo("hi".into())
        }));
        let err = match outcome {
            Ok(result) => result.expect_err(what),
            Err(_) => panic!("{what}: the calling thread panicked"),
        };
        match &err {
            thrift::Error::Protocol(e) => assert_eq!(e.kind, want, "{what}: {err}"),
            other => panic!("{what}: expected a protocol error, got {other:?}"),
        }
        let member = &set.members()[0];
        assert_eq!(
            (member.idle, member.in_flight),
            (0, 0),
            "{what}: the link was discarded"
        );
        assert_eq!(member.consecutive_failures, 1, "{what}");
        closes
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{what}: the connection was not closed"));
    }
}

#[test]
fn a_checkout_ends_by_its_deadline_however_many_members_hang() {
    let (a, _la, _fa) = black_hole();
    let (b, _lb, _fb) = black_hole();
    let set = ThriftSet::builder()
        .connect_timeout(Duration::from_millis(400))
        .checkout_timeout(Duration::from_millis(100))
        .build(FixedSet::new([a.to_string(), b.to_string()]).unwrap())
        .unwrap();
    let start = Instant::now();
    let err = set.get().expect_err("no member answers");
    let took = start.elapsed();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    // checkout_timeout + connect_timeout = 500 ms, not 400 ms per member.
    assert!(took < Duration::from_millis(700), "took {took:?}");
}

#[test]
fn closing_the_set_during_a_connect_leaves_no_phantom_active_count() {
    let (addr, listener, fillers) = black_hole();
    let set = std::sync::Arc::new(
        ThriftSet::builder()
            .connect_timeout(Duration::from_secs(5))
            .build(FixedSet::new([addr.to_string()]).unwrap())
            .unwrap(),
    );
    let getter = {
        let set = set.clone();
        std::thread::spawn(move || set.get().map(|_| ()))
    };
    eventually_blocking(Duration::from_secs(2), "the connect to start", || {
        set.members()[0].in_flight == 1
    });
    std::thread::sleep(Duration::from_millis(100)); // well into the connect
    set.close();
    // Free the accept queue: the pending connect now completes (on the
    // client's next SYN), after the close.
    drop(fillers);
    let accepted = listener.accept();
    let result = getter.join().expect("get does not panic");
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    assert!(accepted.is_ok());
    let member = &set.members()[0];
    assert_eq!(
        (member.in_flight, member.idle),
        (0, 0),
        "a phantom checkout: {member:?}"
    );
}

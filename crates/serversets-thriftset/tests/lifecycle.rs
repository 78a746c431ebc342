//! Waiting, closing, async checkout, protocol options and timeouts, against
//! real Thrift servers.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serversets_fixedset::FixedSet;
use serversets_thriftset::{BuildError, Error, Protocol, ThriftSet, Transport};
use support::backend::start_tserver;
use support::{assert_echo, with_client, Backend, BackendOptions, TEchoSyncClient};
use testkit::eventually_blocking;

#[test]
fn closed_set_refuses_get_and_closes_connections() {
    let backend = Backend::start();
    let set = ThriftSet::new(FixedSet::new([backend.addr()]).unwrap()).unwrap();
    let mut held = set.get().unwrap();
    with_client(&mut held, |c| c.echo("held".into())).unwrap();
    {
        let mut a = set.get().unwrap();
        let mut b = set.get().unwrap();
        with_client(&mut a, |c| c.echo("a".into())).unwrap();
        with_client(&mut b, |c| c.echo("b".into())).unwrap();
    }
    assert_eq!(set.members()[0].idle, 2);
    eventually_blocking(
        Duration::from_secs(5),
        "the server to see 3 connections",
        || backend.stats.open() == 3,
    );

    set.close();
    set.close(); // idempotent
    assert!(set.is_closed());
    assert!(matches!(set.get(), Err(Error::Closed)));
    assert_eq!(set.members()[0].idle, 0);
    eventually_blocking(
        Duration::from_secs(5),
        "idle connections to close with the set",
        || backend.stats.open() == 1,
    );
    // A connection checked out before the close still works, and is closed
    // (not pooled) when returned.
    assert_echo(&mut held, "still");
    drop(held);
    eventually_blocking(
        Duration::from_secs(5),
        "the returned connection to close",
        || backend.stats.open() == 0,
    );
    assert_eq!(set.members()[0].idle, 0);
}

#[test]
fn dropping_the_set_closes_it() {
    let backend = Backend::start();
    let set = ThriftSet::new(FixedSet::new([backend.addr()]).unwrap()).unwrap();
    let mut conn = set.get().unwrap();
    with_client(&mut conn, |c| c.echo("x".into())).unwrap();
    drop(conn);
    eventually_blocking(
        Duration::from_secs(5),
        "the server to see the connection",
        || backend.stats.open() == 1,
    );
    drop(set);
    eventually_blocking(
        Duration::from_secs(5),
        "the dropped set's connection to close",
        || backend.stats.open() == 0,
    );
}

#[test]
fn get_waits_for_a_freed_slot_then_times_out() {
    let backend = Backend::start();
    let set = Arc::new(
        ThriftSet::builder()
            .max_active(1)
            .checkout_timeout(Duration::from_secs(10))
            .build(FixedSet::new([backend.addr()]).unwrap())
            .unwrap(),
    );
    let held = set.get().unwrap();
    let waiter = {
        let set = set.clone();
        std::thread::spawn(
            move || -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
                let mut conn = set.get()?;
                Ok(with_client(&mut conn, |c| c.echo("waited".into()))?)
            },
        )
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !waiter.is_finished(),
        "get must wait while the member is full"
    );
    drop(held);
    assert_eq!(waiter.join().unwrap().unwrap(), "waited");

    // Closing the set wakes a waiting caller with a typed error.
    let _held = set.get().unwrap();
    let waiter = {
        let set = set.clone();
        std::thread::spawn(move || set.get().map(|_| ()))
    };
    std::thread::sleep(Duration::from_millis(50));
    set.close();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));

    let quick = ThriftSet::builder()
        .max_active(1)
        .checkout_timeout(Duration::from_millis(30))
        .build(FixedSet::new([backend.addr()]).unwrap())
        .unwrap();
    let _held = quick.get().unwrap();
    assert!(matches!(quick.get(), Err(Error::Exhausted(_))));
}

/// A full member sends callers to another member with room instead of
/// waiting.
#[test]
fn full_member_is_passed_over() {
    let a = Backend::start();
    let b = Backend::start();
    let set = ThriftSet::builder()
        .max_active(2)
        .checkout_timeout(Duration::ZERO)
        .build(FixedSet::new([a.addr(), b.addr()]).unwrap())
        .unwrap();
    let held: Vec<_> = (0..4).map(|_| set.get().unwrap()).collect();
    let on_a = held
        .iter()
        .filter(|c| c.addr().to_string() == a.addr())
        .count();
    assert_eq!(on_a, 2);
    assert!(matches!(set.get(), Err(Error::Exhausted(_))));
}

/// Many more callers than slots (one per member) make progress: the Condvar
/// hand-off neither deadlocks nor loses wake-ups.
#[test]
fn tiny_pool_with_many_callers_never_deadlocks() {
    let a = Backend::start();
    let b = Backend::start();
    let set = Arc::new(
        ThriftSet::builder()
            .max_active(1)
            .max_idle(1)
            .checkout_timeout(Duration::from_secs(30))
            .build(FixedSet::new([a.addr(), b.addr()]).unwrap())
            .unwrap(),
    );
    let callers: Vec<_> = (0..16)
        .map(|i| {
            let set = set.clone();
            std::thread::spawn(move || {
                for j in 0..25 {
                    let mut conn = set.get().unwrap();
                    let msg = format!("{i}/{j}");
                    assert_echo(&mut conn, &msg);
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    assert_eq!(a.stats.requests() + b.stats.requests(), 16 * 25);
    assert_eq!(a.stats.max_in_flight(), 1);
    assert_eq!(b.stats.max_in_flight(), 1);
    assert_eq!(a.stats.accepted(), 1, "one connection per member, reused");
    assert_eq!(b.stats.accepted(), 1, "one connection per member, reused");
}

#[test]
fn get_async_checks_out_off_the_runtime_threads() {
    let backends = [Backend::start(), Backend::start()];
    let set = Arc::new(
        ThriftSet::builder()
            .max_active(2)
            .checkout_timeout(Duration::from_secs(10))
            .build(FixedSet::new(backends.iter().map(|b| b.addr())).unwrap())
            .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let replies = runtime.block_on(async {
        // Eight tasks on one runtime thread, four slots: tasks that must wait
        // for a slot wait on the blocking pool, so the others keep running.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let set = set.clone();
                tokio::spawn(async move {
                    let mut conn = set.get_async().await.unwrap();
                    tokio::task::spawn_blocking(move || {
                        with_client(&mut conn, |c| {
                            c.slow(20)?;
                            c.echo(format!("task {i}"))
                        })
                    })
                    .await
                    .unwrap()
                    .unwrap()
                })
            })
            .collect();
        let mut replies = Vec::new();
        for t in tasks {
            replies.push(t.await.unwrap());
        }
        replies
    });
    assert_eq!(replies.len(), 8);
    assert_eq!(replies[7], "task 7");
    for b in &backends {
        assert!(b.stats.max_in_flight() <= 2);
    }
}

#[test]
fn get_async_outside_a_runtime_is_a_typed_error() {
    let set = ThriftSet::new(FixedSet::new(["127.0.0.1:9"]).unwrap()).unwrap();
    let mut fut = std::pin::pin!(set.get_async());
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Err(Error::NoRuntime)) => {}
        other => panic!("expected NoRuntime, got {other:?}"),
    }
}

/// The thrift crate's own TServer, speaking buffered compact: the pool's
/// transport and protocol options must match it, and a mismatched client
/// fails with an error that breaks (closes) the connection.
#[test]
fn buffered_compact_against_the_thrift_tserver() {
    let opts = BackendOptions {
        transport: Transport::Buffered,
        protocol: Protocol::Compact,
        ..BackendOptions::default()
    };
    let (port, stats) = start_tserver(opts, 8);
    let addr = format!("127.0.0.1:{port}");
    let set = ThriftSet::builder()
        .transport(Transport::Buffered)
        .protocol(Protocol::Compact)
        .build(FixedSet::new([addr.clone()]).unwrap())
        .unwrap();
    for i in 0..20 {
        let mut conn = set.get().unwrap();
        let msg = format!("compact {i}");
        assert_echo(&mut conn, &msg);
    }
    assert_eq!(stats.requests(), 20);
    assert_eq!(set.members()[0].idle, 1, "one connection served every call");

    let wrong = ThriftSet::builder()
        .io_timeout(Some(Duration::from_millis(300)))
        .build(FixedSet::new([addr]).unwrap())
        .unwrap();
    let mut conn = wrong.get().unwrap();
    assert!(with_client(&mut conn, |c| c.echo("framed binary".into())).is_err());
    assert!(conn.is_broken());
    drop(conn);
    assert_eq!(wrong.members()[0].idle, 0);
    assert_eq!(wrong.members()[0].consecutive_failures, 1);
}

/// A call that stalls past the I/O timeout fails with a transport error
/// that breaks the connection; the next call gets a fresh one.
#[test]
fn io_timeout_breaks_the_connection() {
    let backend = Backend::start();
    let set = ThriftSet::builder()
        .io_timeout(Some(Duration::from_millis(50)))
        .build(FixedSet::new([backend.addr()]).unwrap())
        .unwrap();
    let mut conn = set.get().unwrap();
    let err = with_client(&mut conn, |c| c.slow(1_000)).unwrap_err();
    assert!(matches!(err, thrift::Error::Transport(_)), "{err:?}");
    assert!(conn.is_broken());
    drop(conn);
    let mut conn = set.get().unwrap();
    assert_echo(&mut conn, "fresh");
    assert_eq!(backend.stats.accepted(), 2);
}

/// When the membership source closes, the set keeps serving its last
/// members.
#[test]
fn closed_source_keeps_the_last_members() {
    let backend = Backend::start();
    let members = FixedSet::new([backend.addr()]).unwrap();
    let set = ThriftSet::new(members.feed()).unwrap();
    members.close();
    std::thread::sleep(Duration::from_millis(50));
    let mut conn = set.get().unwrap();
    assert_echo(&mut conn, "still");
    assert!(!set.is_closed());
}

#[test]
fn empty_set_and_bad_options_are_typed_errors() {
    let set = ThriftSet::new(FixedSet::empty()).unwrap();
    assert!(matches!(set.get(), Err(Error::NoMembers)));
    for bad in [
        ThriftSet::builder().max_active(0),
        ThriftSet::builder().connect_timeout(Duration::ZERO),
        ThriftSet::builder().io_timeout(Some(Duration::ZERO)),
        ThriftSet::builder().idle_timeout(Some(Duration::ZERO)),
    ] {
        assert!(matches!(
            bad.build(FixedSet::empty()),
            Err(BuildError::InvalidOption { .. })
        ));
    }
}

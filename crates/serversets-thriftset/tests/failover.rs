//! Crashed backends, error-based ejection and membership changes, against
//! real Thrift servers.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serversets_fixedset::FixedSet;
use serversets_thriftset::{Error, ThriftSet};
use support::{assert_echo, with_client, Backend, TEchoSyncClient};
use testkit::eventually_blocking;

struct Call {
    addr: String,
    /// When the caller asked for a connection.
    started: Instant,
    ok: bool,
}

/// Kill one of three backends while callers hammer the set: the only calls
/// that fail are ones to it that started before it died; every call started
/// afterwards succeeds on the other two.
#[test]
fn killed_backend_fails_only_in_flight_calls() {
    let a = Backend::start();
    let mut b = Backend::start();
    let c = Backend::start();
    let set = Arc::new(
        ThriftSet::builder()
            .eject_after(3)
            .eject_for(Duration::from_secs(30))
            .build(FixedSet::new([a.addr(), b.addr(), c.addr()]).unwrap())
            .unwrap(),
    );

    // Pin one long call to `b`, so at least one call is surely in flight
    // to it when it dies.
    let pinned = {
        let mut held = Vec::new();
        let conn = loop {
            let conn = set.get().unwrap();
            if conn.addr().to_string() == b.addr() {
                break conn;
            }
            held.push(conn);
        };
        drop(held);
        std::thread::spawn(move || {
            let mut conn = conn;
            with_client(&mut conn, |c| c.slow(5_000))
        })
    };
    eventually_blocking(Duration::from_secs(5), "a call in flight on b", || {
        b.stats.in_flight.load(Ordering::SeqCst) >= 1
    });

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let callers: Vec<_> = (0..6)
        .map(|_| {
            let (set, stop, calls) = (set.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let mut conn = set.get().expect("get never fails while two members live");
                    let addr = conn.addr().to_string();
                    let ok = with_client(&mut conn, |c| c.slow(3)).is_ok();
                    calls.lock().unwrap().push(Call { addr, started, ok });
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(150));
    b.kill();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_millis(250));
    stop.store(true, Ordering::SeqCst);
    for t in callers {
        t.join().unwrap();
    }

    let pinned = pinned.join().unwrap();
    assert!(
        pinned.is_err(),
        "the in-flight call to the killed backend must fail"
    );

    let calls = calls.lock().unwrap();
    let failed: Vec<_> = calls.iter().filter(|c| !c.ok).collect();
    let after: Vec<_> = calls.iter().filter(|c| c.started > killed).collect();
    eprintln!(
        "{} calls, {} failed, {} checked out after the kill",
        calls.len(),
        failed.len(),
        after.len()
    );
    for f in &failed {
        assert_eq!(f.addr, b.addr(), "only the killed backend's calls may fail");
        assert!(f.started <= killed, "a call started after the kill failed");
    }
    assert!(after.len() > 20, "callers kept going after the kill");
    assert!(after.iter().all(|c| c.ok && c.addr != b.addr()));
    assert!(a.stats.requests() > 0 && c.stats.requests() > 0);

    // The dead member collected failures (the cut calls, refused connects)
    // and is ejected; the other two are fine.
    let members = set.members();
    let dead = members
        .iter()
        .find(|m| m.addr.to_string() == b.addr())
        .unwrap();
    assert!(dead.ejected_for.is_some(), "{dead:?}");
    assert!(members.iter().filter(|m| m.ejected_for.is_none()).count() == 2);
}

/// A member that refuses connections is tried, counted, and after
/// `eject_after` failures skipped; callers never notice. After the cool-down
/// it is tried once more and, failing again, ejected at once.
#[test]
fn refusing_member_is_ejected_and_retried_after_cool_down() {
    let live = Backend::start();
    let dead_addr = format!("127.0.0.1:{}", testkit::free_port()); // nothing listens
    let set = ThriftSet::builder()
        .eject_after(3)
        .eject_for(Duration::from_secs(1))
        .build(FixedSet::new([live.addr(), dead_addr.clone()]).unwrap())
        .unwrap();
    let dead = |set: &ThriftSet| {
        set.members()
            .into_iter()
            .find(|m| m.addr.to_string() == dead_addr)
            .unwrap()
    };

    // Every call succeeds: a refused connect moves on to the live member.
    for _ in 0..40 {
        let mut conn = set.get().unwrap();
        assert_eq!(conn.addr().to_string(), live.addr());
        with_client(&mut conn, |c| c.echo("hi".into())).unwrap();
    }
    let d = dead(&set);
    assert_eq!(d.consecutive_failures, 3, "skipped once ejected: {d:?}");
    assert!(d.ejected_for.is_some());

    // Cool-down over: one probe attempt, which fails and re-ejects.
    eventually_blocking(Duration::from_secs(5), "the ejection to end", || {
        dead(&set).ejected_for.is_none()
    });
    for _ in 0..40 {
        let conn = set.get().unwrap();
        assert_eq!(conn.addr().to_string(), live.addr());
    }
    let d = dead(&set);
    assert_eq!(d.consecutive_failures, 4, "{d:?}");
    assert!(d.ejected_for.is_some());
}

/// Failures on the only member never eject it: callers keep getting the
/// real connect error, and it is used again as soon as it comes back.
#[test]
fn last_member_is_never_ejected() {
    let port = testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let set = ThriftSet::builder()
        .eject_after(1)
        .build(FixedSet::new([addr.clone()]).unwrap())
        .unwrap();
    for _ in 0..5 {
        match set.get() {
            Err(Error::Connect { addr: a, .. }) => assert_eq!(a.to_string(), addr),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
    let m = &set.members()[0];
    assert_eq!(m.consecutive_failures, 5);
    assert_eq!(m.ejected_for, None);
    assert_eq!(m.in_flight, 0);

    // Discarded connections count too, and a good return resets the count.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    set.get().unwrap().discard();
    assert_eq!(set.members()[0].consecutive_failures, 6);
    drop(set.get().unwrap());
    assert_eq!(set.members()[0].consecutive_failures, 0);
    drop(listener);
}

/// Membership changes: a removed member's idle connections close at once
/// and its in-flight one when returned; new requests never go to it; a new
/// member joins; a member that comes back gets fresh connections.
#[test]
fn membership_changes_close_and_open_the_right_connections() {
    let a = Backend::start();
    let b = Backend::start();
    let c = Backend::start();
    let members = FixedSet::new([a.addr(), b.addr()]).unwrap();
    let set = ThriftSet::new(members.feed()).unwrap();

    // Four at once: two per member (least in flight). Return one per member.
    let mut held: Vec<_> = (0..4).map(|_| set.get().unwrap()).collect();
    for conn in &mut held {
        with_client(conn, |c| c.echo("warm".into())).unwrap();
    }
    let on = |addr: String, held: &Vec<serversets_thriftset::Connection>| {
        held.iter().filter(|c| c.addr().to_string() == addr).count()
    };
    assert_eq!((on(a.addr(), &held), on(b.addr(), &held)), (2, 2));
    let pos = held
        .iter()
        .position(|c| c.addr().to_string() == a.addr())
        .unwrap();
    held.remove(pos);
    let pos = held
        .iter()
        .position(|c| c.addr().to_string() == b.addr())
        .unwrap();
    held.remove(pos);
    let mut in_flight_b = held
        .into_iter()
        .find(|c| c.addr().to_string() == b.addr())
        .unwrap();
    eventually_blocking(Duration::from_secs(5), "b to see 2 connections", || {
        b.stats.open() == 2
    });

    // Replace b with c.
    members.set_addresses([a.addr(), c.addr()]).unwrap();
    eventually_blocking(Duration::from_secs(5), "b to leave the pool", || {
        set.members().iter().all(|m| m.addr.to_string() != b.addr())
    });
    eventually_blocking(
        Duration::from_secs(5),
        "b's idle connection to close at once (its checked-out one stays)",
        || b.stats.open() == 1,
    );
    // The checked-out connection still works until it is returned...
    assert_echo(&mut in_flight_b, "late");
    let b_requests = b.stats.requests();
    drop(in_flight_b);
    // ...and is then closed, not pooled.
    eventually_blocking(
        Duration::from_secs(5),
        "b's returned connection to close",
        || b.stats.open() == 0,
    );

    for _ in 0..30 {
        let mut conn = set.get().unwrap();
        assert_ne!(conn.addr().to_string(), b.addr());
        with_client(&mut conn, |c| c.echo("x".into())).unwrap();
    }
    assert_eq!(b.stats.requests(), b_requests, "no new request reached b");
    assert!(c.stats.requests() > 0, "the new member joined");

    // b comes back: it gets new connections, never the old ones.
    let b_accepted = b.stats.accepted();
    members
        .set_addresses([a.addr(), b.addr(), c.addr()])
        .unwrap();
    eventually_blocking(Duration::from_secs(5), "b to rejoin the pool", || {
        set.members().len() == 3
    });
    let mut held: Vec<_> = (0..3).map(|_| set.get().unwrap()).collect();
    let back = held
        .iter_mut()
        .find(|c| c.addr().to_string() == b.addr())
        .unwrap();
    assert_echo(back, "back");
    assert_eq!(b.stats.accepted(), b_accepted + 1);
}

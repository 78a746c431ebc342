//! Least-outstanding choice and pool limits against real Thrift servers.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serversets_fixedset::FixedSet;
use serversets_thriftset::ThriftSet;
use support::{assert_echo, slow_calls, with_client, Backend, TEchoSyncClient};
use testkit::eventually_blocking;

/// One of three backends answers `slow` ten times slower; with concurrent
/// callers it must get well under the third that round robin would give it.
#[test]
fn least_outstanding_sends_little_to_a_slow_backend() {
    let fast1 = Backend::slow(1);
    let fast2 = Backend::slow(1);
    let slow = Backend::slow(10);
    let set = Arc::new(
        ThriftSet::builder()
            .max_active(16)
            .build(FixedSet::new([fast1.addr(), fast2.addr(), slow.addr()]).unwrap())
            .unwrap(),
    );
    let callers = 8;
    let per_caller = 40;
    slow_calls(&set, callers, per_caller, 2);
    let total = fast1.stats.requests() + fast2.stats.requests() + slow.stats.requests();
    assert_eq!(total, callers * per_caller);
    let share = slow.stats.requests() as f64 / total as f64;
    eprintln!(
        "slow backend share {share:.3} (fast {} / {}, slow {})",
        fast1.stats.requests(),
        fast2.stats.requests(),
        slow.stats.requests()
    );
    assert!(share < 0.2, "slow backend got {share:.3} of requests");
    assert!(slow.stats.requests() > 0, "a slow member is still a member");
}

/// 32 callers against 3 members with 4 in flight / 2 idle allowed per
/// member: no member ever serves more than 4 calls at once, the pool never
/// reports more than 4 in flight or 2 idle, and every call succeeds.
#[test]
fn pool_limits_hold_under_32_callers() {
    let backends = [Backend::start(), Backend::start(), Backend::start()];
    let set = Arc::new(
        ThriftSet::builder()
            .max_active(4)
            .max_idle(2)
            .checkout_timeout(Duration::from_secs(20))
            .build(FixedSet::new(backends.iter().map(|b| b.addr())).unwrap())
            .unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let worst = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let monitor = {
        let (set, done, worst) = (set.clone(), done.clone(), worst.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                for m in set.members() {
                    worst.0.fetch_max(m.in_flight, Ordering::SeqCst);
                    worst.1.fetch_max(m.idle, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let callers: Vec<_> = (0..32)
        .map(|i| {
            let set = set.clone();
            std::thread::spawn(move || {
                for j in 0..15 {
                    let mut conn = set.get().unwrap();
                    if j % 3 == 0 {
                        with_client(&mut conn, |c| c.slow(1)).unwrap();
                    } else {
                        let msg = format!("caller {i} call {j}");
                        assert_echo(&mut conn, &msg);
                    }
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    monitor.join().unwrap();

    let requests: usize = backends.iter().map(|b| b.stats.requests()).sum();
    assert_eq!(requests, 32 * 15);
    for b in &backends {
        assert!(b.stats.requests() > 0, "every member served some calls");
        assert!(
            b.stats.max_in_flight() <= 4,
            "{} served {} calls at once",
            b.addr(),
            b.stats.max_in_flight()
        );
    }
    assert!(worst.0.load(Ordering::SeqCst) <= 4);
    assert!(worst.1.load(Ordering::SeqCst) <= 2);
    for m in set.members() {
        assert_eq!(m.in_flight, 0);
        assert!(m.idle <= 2);
    }
    // The servers agree: at most the idle connections stay open.
    for b in &backends {
        eventually_blocking(
            Duration::from_secs(5),
            &format!("{} to have at most 2 connections open", b.addr()),
            || b.stats.open() <= 2,
        );
    }
}

/// Idle connections past the idle timeout are closed by the pool without
/// any further traffic, and the next call dials a new one.
#[test]
fn idle_timeout_closes_connections() {
    let backend = Backend::start();
    let set = ThriftSet::builder()
        .idle_timeout(Some(Duration::from_millis(300)))
        .build(FixedSet::new([backend.addr()]).unwrap())
        .unwrap();
    {
        let mut held: Vec<_> = (0..4).map(|_| set.get().unwrap()).collect();
        for conn in &mut held {
            with_client(conn, |c| c.echo("x".into())).unwrap();
        }
    }
    assert_eq!(set.members()[0].idle, 4, "returned connections stay open");
    eventually_blocking(
        Duration::from_secs(5),
        "the server to see 4 connections",
        || backend.stats.open() == 4,
    );

    eventually_blocking(
        Duration::from_secs(5),
        "idle connections to be reaped",
        || set.members()[0].idle == 0,
    );
    eventually_blocking(
        Duration::from_secs(5),
        "the server to see every connection closed",
        || backend.stats.open() == 0,
    );
    let mut conn = set.get().unwrap();
    assert_echo(&mut conn, "again");
    assert_eq!(backend.stats.accepted(), 5);
}

/// Four real Echo servers of weights 1, 2, 3 and 0: over 30,000 calls made
/// one at a time (every member idle at each checkout, so the weighted
/// tie-break alone decides), each serves its weight's share within ±5% of
/// that share (relative: the weight-2 server must serve 10,000 ± 500), and
/// the weight-0 server none.
#[test]
fn weighted_backends_share_30000_calls_by_weight() {
    use serversets_core::{HostPort, Member};
    // Checkouts draw on this thread's generator: a fixed seed, a fixed run.
    fastrand::seed(13);
    let weights = [1.0, 2.0, 3.0, 0.0];
    let backends: Vec<Backend> = weights.iter().map(|_| Backend::start()).collect();
    let members = backends
        .iter()
        .zip(weights)
        .map(|(b, w)| Member::from_addr(b.addr().parse::<HostPort>().unwrap()).with_weight(w));
    let set = ThriftSet::new(FixedSet::from_members(members)).unwrap();
    let calls = 30_000;
    for i in 0..calls {
        let mut conn = set.get().unwrap();
        assert_eq!(
            with_client(&mut conn, |c| c.slow(0)).unwrap(),
            0,
            "call {i}"
        );
    }
    let served: Vec<usize> = backends.iter().map(|b| b.stats.requests()).collect();
    assert_eq!(served.iter().sum::<usize>(), calls);
    for (got, w) in served.iter().zip(weights) {
        let want = calls as f64 * w / 6.0;
        assert!(
            (*got as f64 - want).abs() <= 0.05 * want,
            "weight {w} served {got} of {calls}, want {want:.0} ± 5% ({served:?})"
        );
    }
    // Idle members with room were never dialled for weight 0.
    assert_eq!(backends[3].stats.accepted(), 0);
}

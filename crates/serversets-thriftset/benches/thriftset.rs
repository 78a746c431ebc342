//! `cargo xtask bench` measurements for serversets-thriftset (harness-less;
//! records go through `testkit::bench`).
//!
//! - `thriftset.checkout`: nanoseconds per `get()` + drop with 1, 10, 100 and 1000
//!   members, every member holding a warm idle connection, so it measures the
//!   pool (choice, bookkeeping, the idle liveness peek), not the network.
//!   Reported with the idle check on (the default) and off, and 1000 members
//!   with it on.
//! - `thriftset.checkout_weighted`: the same from 10 members on, over members of
//!   unequal weights (1, 2, 3, 0.5 cycled), its baseline
//!   `thriftset.checkout`; samples of the two alternate in one run.
//! - `thriftset.request`: median microseconds per `echo` call (checkout,
//!   call, return) through the pool for one caller, against
//!   `thriftset.request_direct`, one directly held generated client,
//!   measured interleaved in the same run. Two baselines, by the
//!   `direct_transport` param: the thrift crate's own framed transport (what
//!   an application holds without the pool) and the pool's framed transport
//!   (so the ratio is the pool's own cost).
//! - `thriftset.slow_share`: the fraction of calls that went to the one
//!   backend of three that is ten times slower, with 8 concurrent callers
//!   (round robin would give it a third).

#[path = "../tests/support/mod.rs"]
mod support;

/// The pool's framed transport, for the same-transport baseline.
#[path = "../src/framed.rs"]
#[allow(dead_code, unused_imports)]
mod framed;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use serversets_core::{HostPort, Member};
use serversets_fixedset::FixedSet;
use serversets_thriftset::ThriftSet;
use support::echo::{EchoSyncClient, TEchoSyncClient};
use support::{slow_calls, with_client, Backend};
use testkit::bench::{emit, time_per_call, wanted, Record};
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{TFramedReadTransport, TFramedWriteTransport};

fn main() {
    if wanted("thriftset.checkout") {
        checkout();
    }
    if wanted("thriftset.request") {
        request();
    }
    if wanted("thriftset.slow_share") {
        slow_share();
    }
}

/// Weights for the weighted checkout bench: four unequal values, cycled.
const WEIGHTS: [f64; 4] = [1.0, 2.0, 3.0, 0.5];

/// A set over `backends` with every member holding one warm idle connection;
/// weighted with [`WEIGHTS`] when `weighted`.
fn warm_set(backends: &[Backend], check_idle: bool, weighted: bool) -> ThriftSet {
    let members = backends.iter().zip(WEIGHTS.iter().cycle()).map(|(b, &w)| {
        let m = Member::from_addr(b.addr().parse::<HostPort>().unwrap());
        if weighted {
            m.with_weight(w)
        } else {
            m
        }
    });
    let set = ThriftSet::builder()
        .check_idle(check_idle)
        .idle_timeout(None)
        .build(FixedSet::from_members(members))
        .unwrap();
    // One warm connection per member: as many checkouts at once land one
    // per member (an idle member has no load, whatever its weight).
    let warm: Vec<_> = (0..backends.len()).map(|_| set.get().unwrap()).collect();
    drop(warm);
    assert!(set.members().iter().all(|m| m.idle == 1));
    set
}

fn checkout() {
    for members in [1usize, 10, 100, 1000] {
        let backends: Vec<Backend> = (0..members).map(|_| Backend::start()).collect();
        // 1000 members only with the default idle check (each set holds a
        // connection, and a server thread, per member).
        let checks: &[bool] = if members >= 1000 {
            &[true]
        } else {
            &[true, false]
        };
        for &check_idle in checks {
            let plain = warm_set(&backends, check_idle, false);
            // Weights change nothing for one member; from 10 on, a set over
            // the same backends with weights alternates with the plain one.
            let heavy = (members > 1).then(|| warm_set(&backends, check_idle, true));
            let (mut samples, mut weighted) = (Vec::new(), Vec::new());
            for _ in 0..10 {
                samples.extend(time_per_call(3, 20_000, || drop(plain.get().unwrap())));
                if let Some(heavy) = &heavy {
                    weighted.extend(time_per_call(3, 20_000, || drop(heavy.get().unwrap())));
                }
            }
            let params = json!({ "members": members, "check_idle": check_idle });
            let base =
                Record::from_samples("thriftset.checkout", params.clone(), "ns", &samples, None);
            emit(&base);
            if heavy.is_some() && wanted("thriftset.checkout_weighted") {
                let w = Record::from_samples(
                    "thriftset.checkout_weighted",
                    params,
                    "ns",
                    &weighted,
                    Some("thriftset.checkout"),
                );
                emit(&w);
                eprintln!(
                    "thriftset.checkout_weighted / thriftset.checkout, {members} members, check_idle {check_idle}: {:.3}",
                    w.median / base.median
                );
            }
            let accepted: usize = backends.iter().map(|b| b.stats.accepted()).sum();
            assert!(
                accepted <= 4 * members,
                "checkouts must reuse warm connections"
            );
        }
    }
}

type StockClient = EchoSyncClient<
    TBinaryInputProtocol<TFramedReadTransport<TcpStream>>,
    TBinaryOutputProtocol<TFramedWriteTransport<TcpStream>>,
>;

type SameTransportClient = EchoSyncClient<
    TBinaryInputProtocol<framed::FramedReader<TcpStream>>,
    TBinaryOutputProtocol<framed::FramedWriter<TcpStream>>,
>;

fn connect(addr: &str) -> (TcpStream, TcpStream) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    (stream.try_clone().unwrap(), stream)
}

/// A generated client on the thrift crate's own framed transport: what an
/// application holds without a pool.
fn stock_client(addr: &str) -> StockClient {
    let (read, write) = connect(addr);
    EchoSyncClient::new(
        TBinaryInputProtocol::new(TFramedReadTransport::new(read), true),
        TBinaryOutputProtocol::new(TFramedWriteTransport::new(write), true),
    )
}

/// A generated client on the same framed transport the pool uses, so the
/// difference is the pool alone.
fn same_transport_client(addr: &str) -> SameTransportClient {
    let (read, write) = connect(addr);
    EchoSyncClient::new(
        TBinaryInputProtocol::new(framed::FramedReader::new(read), true),
        TBinaryOutputProtocol::new(framed::FramedWriter::new(write), true),
    )
}

/// Microseconds per call over `batch` calls of `call`.
fn per_call(batch: usize, mut call: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..batch {
        call();
    }
    start.elapsed().as_secs_f64() * 1e6 / batch as f64
}

fn request() {
    // Client and server threads share one CPU for this measurement: on a
    // small VM, whether a server thread happens to wake on the caller's CPU
    // or another one moves a loopback round trip between ~14 and ~80 us,
    // which would swamp the difference being measured. Threads started
    // from here on inherit the mask.
    let _pinned = cpu::PinToCurrent::new();
    let backend = Backend::start();
    let set = ThriftSet::new(FixedSet::new([backend.addr()]).unwrap()).unwrap();
    let mut stock = stock_client(&backend.addr());
    let mut same = same_transport_client(&backend.addr());
    let message = "hello, serversets".to_string();

    let batch = 200;
    let (mut pooled, mut stock_us, mut same_us) = (Vec::new(), Vec::new(), Vec::new());
    // Round 0 warms up; then alternate batches so drift hits all equally.
    for round in 0..41 {
        let p = per_call(batch, || {
            let mut conn = set.get().unwrap();
            with_client(&mut conn, |c| c.echo(message.clone())).unwrap();
        });
        let s = per_call(batch, || {
            stock.echo(message.clone()).unwrap();
        });
        let t = per_call(batch, || {
            same.echo(message.clone()).unwrap();
        });
        if round > 0 {
            pooled.push(p);
            stock_us.push(s);
            same_us.push(t);
        }
    }
    for (transport, direct) in [("thrift-crate", &stock_us), ("same-as-pool", &same_us)] {
        let params = json!({ "callers": 1, "direct_transport": transport });
        emit(&Record::from_samples(
            "thriftset.request_direct",
            params.clone(),
            "us",
            direct,
            None,
        ));
        emit(&Record::from_samples(
            "thriftset.request",
            params,
            "us",
            &pooled,
            Some("thriftset.request_direct"),
        ));
    }
    assert_eq!(
        backend.stats.accepted(),
        3,
        "the pool reused one connection"
    );
}

fn slow_share() {
    let callers = 8;
    let per_caller = 50;
    let mut shares = Vec::new();
    for _ in 0..5 {
        let fast = [Backend::slow(1), Backend::slow(1)];
        let slow = Backend::slow(10);
        let addrs = [fast[0].addr(), fast[1].addr(), slow.addr()];
        let set = Arc::new(ThriftSet::new(FixedSet::new(addrs).unwrap()).unwrap());
        slow_calls(&set, callers, per_caller, 2);
        let total: usize =
            fast.iter().map(|b| b.stats.requests()).sum::<usize>() + slow.stats.requests();
        shares.push(slow.stats.requests() as f64 / total as f64);
    }
    emit(&Record::from_samples(
        "thriftset.slow_share",
        json!({ "callers": callers, "slowdown": 10, "backends": 3 }),
        "fraction",
        &shares,
        None,
    ));
}

/// Pinning the calling thread (and threads it starts) to one CPU.
mod cpu {
    /// Restores the previous CPU mask of this thread on drop.
    pub struct PinToCurrent {
        #[cfg(target_os = "linux")]
        saved: Option<libc::cpu_set_t>,
    }

    impl PinToCurrent {
        #[cfg(target_os = "linux")]
        pub fn new() -> PinToCurrent {
            let size = std::mem::size_of::<libc::cpu_set_t>();
            // SAFETY: plain libc calls on the current thread (pid 0) with
            // properly sized, zero-initialised cpu_set_t values.
            unsafe {
                let mut saved: libc::cpu_set_t = std::mem::zeroed();
                if libc::sched_getaffinity(0, size, &mut saved) != 0 {
                    eprintln!("bench: cannot read the CPU mask; running unpinned");
                    return PinToCurrent { saved: None };
                }
                let cpu = libc::sched_getcpu().max(0) as usize;
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                if libc::sched_setaffinity(0, size, &one) != 0 {
                    eprintln!("bench: cannot pin to CPU {cpu}; running unpinned");
                    return PinToCurrent { saved: None };
                }
                PinToCurrent { saved: Some(saved) }
            }
        }

        #[cfg(not(target_os = "linux"))]
        pub fn new() -> PinToCurrent {
            PinToCurrent {}
        }
    }

    impl Drop for PinToCurrent {
        fn drop(&mut self) {
            #[cfg(target_os = "linux")]
            if let Some(saved) = self.saved.take() {
                // SAFETY: as above; restores the mask read in `new`.
                unsafe {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &saved);
                }
            }
        }
    }
}

//! What a ThriftSet reports through the `metrics` facade, read back from
//! the Prometheus recorder (what `serversets --metrics-addr` installs).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serversets_fixedset::FixedSet;
use serversets_thriftset::{Error, ThriftSet};
use testkit::prometheus;

fn sum(name: &str, labels: &[(&str, &str)]) -> f64 {
    prometheus::scrape().sum(name, labels)
}

fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn in_flight_idle_checkouts_and_timeouts_are_counted_per_member() {
    prometheus::install();
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (
        a.local_addr().unwrap().to_string(),
        b.local_addr().unwrap().to_string(),
    );
    let set = ThriftSet::builder()
        .metrics_set("/t/thrift")
        .max_active(1)
        .checkout_timeout(Duration::from_millis(50))
        .build(FixedSet::new([a.clone(), b.clone()]).unwrap())
        .unwrap();
    let on = |ep: &str| {
        [
            ("set", "/t/thrift".to_string()),
            ("endpoint", ep.to_string()),
        ]
    };
    let (la, lb) = (on(&a), on(&b));
    let la = [(la[0].0, la[0].1.as_str()), (la[1].0, la[1].1.as_str())];
    let lb = [(lb[0].0, lb[0].1.as_str()), (lb[1].0, lb[1].1.as_str())];
    let set_label = [("set", "/t/thrift")];
    assert_eq!(sum("serversets_thrift_hosts", &set_label), 2.0);

    let first = set.get().unwrap();
    let second = set.get().unwrap();
    for l in [&la, &lb] {
        assert_eq!(sum("serversets_thrift_active", l), 1.0);
        assert_eq!(sum("serversets_thrift_checkouts_total", l), 1.0);
        assert_eq!(sum("serversets_thrift_idle", l), 0.0);
    }
    // Both members full: the checkout times out.
    assert!(matches!(set.get(), Err(Error::Exhausted(_))));
    assert_eq!(
        sum("serversets_thrift_checkout_timeouts_total", &set_label),
        1.0
    );
    assert_eq!(sum("serversets_thrift_waiting", &set_label), 0.0);

    drop(first);
    drop(second);
    for l in [&la, &lb] {
        assert_eq!(sum("serversets_thrift_active", l), 0.0);
        assert_eq!(sum("serversets_thrift_idle", l), 1.0);
    }
}

#[test]
fn waiting_callers_are_counted_while_they_wait() {
    prometheus::install();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let set = std::sync::Arc::new(
        ThriftSet::builder()
            .metrics_set("/t/thrift-wait")
            .max_active(1)
            .checkout_timeout(Duration::from_secs(10))
            .build(FixedSet::new([server.local_addr().unwrap().to_string()]).unwrap())
            .unwrap(),
    );
    let set_label = [("set", "/t/thrift-wait")];
    let held = set.get().unwrap();
    let waiter = {
        let set = set.clone();
        std::thread::spawn(move || set.get().map(|c| c.addr().clone()))
    };
    until("one waiter", || {
        sum("serversets_thrift_waiting", &set_label) == 1.0
    });
    drop(held);
    waiter.join().unwrap().unwrap();
    assert_eq!(sum("serversets_thrift_waiting", &set_label), 0.0);
}

#[test]
fn connect_failures_and_ejections_are_counted() {
    prometheus::install();
    let live = TcpListener::bind("127.0.0.1:0").unwrap();
    let live = live.local_addr().unwrap().to_string();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let set = ThriftSet::builder()
        .metrics_set("/t/thrift-eject")
        .eject_after(1)
        .eject_for(Duration::from_secs(60))
        .build(FixedSet::new([dead.clone(), live.clone()]).unwrap())
        .unwrap();
    let dead_labels = [("set", "/t/thrift-eject"), ("endpoint", dead.as_str())];
    // Checkouts go to the live member, after the dead one is tried once.
    for _ in 0..20 {
        let conn = set.get().unwrap();
        assert_eq!(conn.addr().to_string(), live);
    }
    assert_eq!(
        sum("serversets_thrift_connect_failures_total", &dead_labels),
        1.0
    );
    assert_eq!(sum("serversets_thrift_ejections_total", &dead_labels), 1.0);
    assert_eq!(sum("serversets_thrift_checkouts_total", &dead_labels), 0.0);
    assert_eq!(sum("serversets_thrift_active", &dead_labels), 0.0);
}

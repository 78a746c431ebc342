//! What an HttpSet reports through the `metrics` facade, read back from the
//! Prometheus recorder (what `serversets --metrics-addr` installs).

mod support;

use std::sync::Arc;
use std::time::Duration;

use serversets_fixedset::FixedSet;
use serversets_httpset::{Error, HttpSet};
use support::{dead_addr, Mode, TestServer};
use testkit::eventually;
use testkit::prometheus;

fn sum(name: &str, labels: &[(&str, &str)]) -> f64 {
    prometheus::scrape().sum(name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_attempts_retries_ejections_and_latency_are_counted_per_member() {
    prometheus::install();
    let live = TestServer::start("live", Mode::Normal).await;
    let dead = dead_addr();
    let live_addr = live.addr();
    let members = Arc::new(FixedSet::new([dead.clone(), live_addr.clone()]).unwrap());
    let set = HttpSet::builder()
        .metrics_set("/t/http")
        .eject_after(1)
        .eject_for(Duration::from_secs(60))
        .build(members.clone())
        .unwrap();
    let labels =
        |addr: &str| [("set", "/t/http"), ("endpoint", addr)].map(|(k, v)| (k, v.to_string()));
    assert_eq!(sum("serversets_http_endpoints", &[("set", "/t/http")]), 2.0);

    for _ in 0..10 {
        let resp = set.get("/").await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let l = labels(&live_addr);
    let live_labels = [(l[0].0, l[0].1.as_str()), (l[1].0, l[1].1.as_str())];
    let d = labels(&dead);
    let dead_labels = [(d[0].0, d[0].1.as_str()), (d[1].0, d[1].1.as_str())];
    let response = [("set", "/t/http"), ("outcome", "response")];
    assert_eq!(sum("serversets_http_requests_total", &response), 10.0);
    assert_eq!(sum("serversets_http_attempts_total", &live_labels), 10.0);
    assert_eq!(
        sum("serversets_http_attempt_seconds_count", &live_labels),
        10.0
    );
    // The dead member was tried once, failed to connect, the request was
    // retried on the live one, and the failure ejected it.
    assert_eq!(sum("serversets_http_attempts_total", &dead_labels), 1.0);
    assert_eq!(sum("serversets_http_retries_total", &dead_labels), 1.0);
    assert_eq!(sum("serversets_http_ejections_total", &dead_labels), 1.0);
    let connect = [dead_labels[0], dead_labels[1], ("kind", "connect")];
    assert_eq!(sum("serversets_http_attempt_failures_total", &connect), 1.0);
    assert_eq!(sum("serversets_http_retries_total", &live_labels), 0.0);
    assert_eq!(
        sum("serversets_http_attempt_seconds_count", &dead_labels),
        0.0
    );

    // Membership changes move the member gauge.
    members.set_addresses([live_addr.clone()]).unwrap();
    eventually(
        Duration::from_secs(10),
        "the member gauge to drop to 1",
        || async { sum("serversets_http_endpoints", &[("set", "/t/http")]) == 1.0 },
    )
    .await;
    members.set_addresses(Vec::<String>::new()).unwrap();
    assert!(matches!(set.get("/").await, Err(Error::NoMembers { .. })));
    let none = [("set", "/t/http"), ("outcome", "no_servers")];
    assert_eq!(sum("serversets_http_requests_total", &none), 1.0);
    assert_eq!(sum("serversets_http_endpoints", &[("set", "/t/http")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_set_is_labelled_unnamed() {
    prometheus::install();
    let live = TestServer::start("live", Mode::Normal).await;
    let set = HttpSet::new(FixedSet::new([live.addr()]).unwrap());
    set.get("/").await.unwrap();
    let addr = live.addr();
    let labels = [("set", "unnamed"), ("endpoint", addr.as_str())];
    assert!(sum("serversets_http_attempts_total", &labels) >= 1.0);
}

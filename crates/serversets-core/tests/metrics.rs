//! What core reports through the `metrics` facade, read back from a
//! recorder installed for this test binary, against a real ZooKeeper.

mod support;

use std::time::Duration;

use serversets_core::zookeeper_client as zk;
use serversets_core::{Health, RegistrationState};

use support::{ping_while, put, raw, set, wait_for};
use testkit::eventually;

const T: Duration = Duration::from_secs(30);

/// The Prometheus recorder of this test binary (what `serversets
/// --metrics-addr` installs), installed before anything registers a metric.
struct Recorded;

fn recorded() -> Recorded {
    testkit::prometheus::install();
    Recorded
}

impl Recorded {
    /// The sum of the samples named `name` whose labels include `labels`
    /// (histograms render as summaries: `_count`, `_sum`, quantiles).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        testkit::prometheus::scrape().sum(name, labels)
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    eventually(T, what, || {
        let ok = cond();
        async move { ok }
    })
    .await;
}

const GOOD: &[u8] = br#"{"serviceEndpoint":{"host":"10.9.0.1","port":80},"additionalEndpoints":{},"status":"ALIVE"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_reports_its_members_rejected_children_reads_and_propagation_time() {
    let m = recorded();
    let zk = testkit::ZkCluster::standalone().unwrap();
    let cs = zk.connect_string();
    let s = set(&cs, "metrics_watch", Duration::from_secs(10));
    let path = s.path().to_string();
    let labels = [("set", path.as_str())];
    let writer = raw(&cs).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let seq = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    put(
        &writer,
        &format!("{path}/member_"),
        GOOD,
        zk::CreateMode::PersistentSequential,
    )
    .await;

    let watch = s.watch().await.unwrap();
    assert_eq!(m.sum("serversets_watch_members", &labels), 1.0);
    assert!(m.sum("serversets_watch_resyncs_total", &labels) >= 1.0);
    let reads = m.sum("serversets_watch_reads_total", &labels);
    assert!(reads >= 1.0, "the first member was read: {reads}");

    // A member arrives: counted, with one propagation sample.
    let _registration = s.register_endpoint("10.9.0.2", 80, None).await.unwrap();
    wait_for(&watch, T, "2 members", |snap| snap.len() == 2).await;
    until("2 members counted", || {
        m.sum("serversets_watch_members", &labels) == 2.0
    })
    .await;
    let changes = m.sum("serversets_watch_propagation_seconds_count", &labels);
    assert_eq!(changes, 1.0, "one propagation time recorded");
    let took = m.sum("serversets_watch_propagation_seconds_sum", &labels);
    assert!((0.0..5.0).contains(&took), "{took} s");
    let most = [("set", path.as_str()), ("quantile", "1")];
    assert_eq!(
        m.sum("serversets_watch_reads_per_change", &most),
        1.0,
        "one read for one new member"
    );

    // Children that are not served, each under its reason.
    writer
        .create(&format!("{path}/member_"), b"{not json", &seq)
        .await
        .unwrap();
    writer
        .create(&format!("{path}/lock"), b"", &open)
        .await
        .unwrap();
    let stopping = br#"{"serviceEndpoint":{"host":"10.9.0.3","port":80},"additionalEndpoints":{},"status":"STOPPING"}"#;
    writer
        .create(&format!("{path}/member_"), stopping, &seq)
        .await
        .unwrap();
    let reason = |r: &'static str| [("set", path.as_str()), ("reason", r)];
    until("rejected children by reason", || {
        m.sum("serversets_watch_rejected", &reason("malformed")) == 1.0
            && m.sum("serversets_watch_rejected", &reason("not_a_member")) == 1.0
            && m.sum("serversets_watch_rejected", &reason("not_served")) == 1.0
    })
    .await;
    assert_eq!(m.sum("serversets_watch_rejected", &reason("drained")), 0.0);
    assert_eq!(m.sum("serversets_watch_malformed_total", &labels), 1.0);
    assert_eq!(watch.rejected().len(), 3);
    assert_eq!(m.sum("serversets_watch_members", &labels), 2.0);

    // A member leaves.
    drop(_registration);
    wait_for(&watch, T, "1 member", |snap| snap.len() == 1).await;
    until("1 member counted", || {
        m.sum("serversets_watch_members", &labels) == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_reports_its_state_creates_and_health_checks() {
    let m = recorded();
    let zk = testkit::ZkCluster::standalone().unwrap();
    let cs = zk.connect_string();
    let s = set(&cs, "metrics_registration", Duration::from_secs(10));
    let path = s.path().to_string();
    let labels = [("set", path.as_str()), ("endpoint", "10.9.1.1:80")];
    let state = |st: &'static str| {
        [
            ("set", path.as_str()),
            ("endpoint", "10.9.1.1:80"),
            ("state", st),
        ]
    };

    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let registration = s
        .registration("10.9.1.1", 80)
        .ping(ping_while(&healthy))
        .ping_interval(Duration::from_millis(50))
        .register()
        .await
        .unwrap();
    assert!(matches!(
        registration.state(),
        RegistrationState::Registered(_)
    ));
    assert_eq!(m.sum("serversets_registrations", &state("registered")), 1.0);
    assert_eq!(m.sum("serversets_registrations", &state("pending")), 0.0);
    assert_eq!(m.sum("serversets_registration_creates_total", &labels), 1.0);
    assert_eq!(
        m.sum("serversets_registration_reregistrations_total", &labels),
        0.0
    );
    until("health checks timed", || {
        m.sum("serversets_registration_ping_seconds_count", &labels) >= 2.0
    })
    .await;

    // Someone deletes the member: it is created again.
    let first = registration.path().unwrap();
    let writer = raw(&cs).await;
    writer.delete(&first, None).await.unwrap();
    until("re-registered", || {
        m.sum("serversets_registration_reregistrations_total", &labels) == 1.0
            && m.sum("serversets_registrations", &state("registered")) == 1.0
    })
    .await;
    assert_eq!(m.sum("serversets_registration_creates_total", &labels), 2.0);

    // The check fails: unhealthy, and each failure counted.
    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    until("unhealthy", || {
        m.sum("serversets_registrations", &state("unhealthy")) == 1.0
            && m.sum("serversets_registrations", &state("registered")) == 0.0
    })
    .await;
    assert!(m.sum("serversets_registration_ping_failures_total", &labels) >= 1.0);
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    until("registered again", || {
        m.sum("serversets_registrations", &state("registered")) == 1.0
    })
    .await;
    assert_eq!(
        m.sum("serversets_registration_reregistrations_total", &labels),
        2.0
    );

    registration.close().await.unwrap();
    assert_eq!(m.sum("serversets_registrations", &state("closed")), 1.0);
    assert_eq!(m.sum("serversets_registrations", &state("registered")), 0.0);
    // Once the registration is gone, it is counted in no state.
    drop(registration);
    until("nothing counted", || {
        STATES
            .iter()
            .all(|st| m.sum("serversets_registrations", &state(st)) == 0.0)
    })
    .await;
}

const STATES: [&str; 4] = ["pending", "registered", "unhealthy", "closed"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_state_follows_zookeeper_stopping_coming_back_and_expiring() {
    let m = recorded();
    let zk = testkit::ZkCluster::standalone().unwrap();
    let cs = zk.connect_string();
    let s = set(&cs, "metrics_session", Duration::from_secs(4));
    let session = s.session().unwrap();
    session.wait_connected().await.unwrap();
    let hosts = session.hosts().to_string();
    let zk_label = [("zk", hosts.as_str())];
    let state = |st: &'static str| [("zk", hosts.as_str()), ("state", st)];
    assert_eq!(m.sum("serversets_session_state", &state("connected")), 1.0);
    assert_eq!(m.sum("serversets_session_state", &state("connecting")), 0.0);
    assert_eq!(
        m.sum("serversets_session_established_total", &zk_label),
        1.0
    );

    zk.stop(0).unwrap();
    until("disconnected", || {
        m.sum("serversets_session_state", &state("disconnected")) == 1.0
            && m.sum("serversets_session_state", &state("connected")) == 0.0
    })
    .await;
    assert_ne!(session.health(), Health::Connected);
    zk.restart(0).unwrap();
    until("connected again", || {
        m.sum("serversets_session_state", &state("connected")) == 1.0
    })
    .await;
    // Back within the session timeout: the same session, reconnected; or,
    // on a slow machine, a new one after an expiry. Either is counted.
    assert!(
        m.sum("serversets_session_reconnects_total", &zk_label)
            + m.sum("serversets_session_expiries_total", &zk_label)
            >= 1.0
    );

    let before = m.sum("serversets_session_expiries_total", &zk_label);
    session.expire_for_testing().await.unwrap();
    until("expired and replaced", || {
        m.sum("serversets_session_expiries_total", &zk_label) > before
            && m.sum("serversets_session_state", &state("connected")) == 1.0
    })
    .await;
    assert!(m.sum("serversets_session_established_total", &zk_label) >= 2.0);
    let total: f64 = [
        "connecting",
        "connected",
        "disconnected",
        "expired",
        "auth_failed",
    ]
    .iter()
    .map(|st| m.sum("serversets_session_state", &state(st)))
    .sum();
    assert_eq!(total, 1.0, "exactly one state is current");
}

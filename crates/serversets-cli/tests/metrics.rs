//! `--metrics-addr` on `watch` and `register`, scraped with a real HTTP
//! client (hyper) during a real session: member counts and registration
//! state move as members come and go, and session state moves when
//! ZooKeeper stops and comes back.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serversets_core::zookeeper_client as zk;
use support::{command, put_member, Running, T};
use testkit::prometheus::Samples;
use testkit::ZkCluster;

/// A scraper: hyper-util's client, as Prometheus would be.
struct Scraper {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

impl Scraper {
    fn new() -> Scraper {
        Scraper {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// GET http://ADDR/metrics; `None` while nothing answers yet.
    async fn scrape(&self, addr: &str) -> Option<Samples> {
        let uri: http::Uri = format!("http://{addr}/metrics").parse().ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(5), self.client.get(uri))
            .await
            .ok()?
            .ok()?;
        assert_eq!(resp.status(), 200);
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(Samples::parse(&String::from_utf8_lossy(&body)))
    }

    /// Scrapes `addr` until `cond` holds on what it serves; on a timeout
    /// the last scrape is printed with the failure.
    async fn until(&self, addr: &str, what: &str, cond: impl Fn(&Samples) -> bool) -> Samples {
        /// Prints the last scrape when the wait fails (it panics).
        struct ShowLast<'a>(&'a str, Mutex<Option<Samples>>);
        impl Drop for ShowLast<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    eprintln!("{}: last scrape: {:#?}", self.0, self.1.lock().unwrap());
                }
            }
        }
        let last = ShowLast(addr, Mutex::new(None));
        let what = format!("{addr}: {what}");
        testkit::eventually(T, &what, || async {
            let Some(samples) = self.scrape(addr).await else {
                return false;
            };
            let done = cond(&samples);
            *last.1.lock().unwrap() = Some(samples);
            done
        })
        .await;
        let samples = last.1.lock().unwrap().take();
        samples.expect("the scrape that held")
    }
}

fn local_addr() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_follow_members_registration_state_and_zookeeper_outages() {
    let zk = ZkCluster::standalone().unwrap();
    let cs = zk.connect_string();
    let hosts = cs.clone();
    let set = "/discovery/test/metrics-cli";
    let (watch_addr, register_addr) = (local_addr(), local_addr());
    let dir = tempfile::tempdir().unwrap();
    let healthy = dir.path().join("healthy");
    std::fs::write(&healthy, b"").unwrap();
    let check = format!("test -f '{}'", healthy.display());
    let common = ["--zk", cs.as_str(), "--session-timeout", "10s"];

    let watch = Running::spawn(
        &[
            &common[..],
            &["watch", "--path", set, "--metrics-addr", &watch_addr],
        ]
        .concat(),
    );
    let mut register = Running::spawn(
        &[
            &common[..],
            &[
                "register",
                "--path",
                set,
                "--host",
                "10.7.0.1",
                "--port",
                "8080",
                "--check-cmd",
                &check,
                "--check-interval",
                "100ms",
                "--metrics-addr",
                &register_addr,
            ],
        ]
        .concat(),
    );
    register
        .expect("registered", |l| l.contains(" registered "))
        .await;

    let scraper = Scraper::new();
    let set_label = [("set", set)];
    let members = |n: f64| move |s: &Samples| s.sum("serversets_watch_members", &set_label) == n;
    let state = |st: &'static str| [("set", set), ("endpoint", "10.7.0.1:8080"), ("state", st)];
    // One session per process: its `zk` label is the hosts as given.
    let session = |st: &'static str| [("zk", hosts.as_str()), ("state", st)];

    // Both processes: connected; the watch serves the sidecar's member.
    let w = scraper.until(&watch_addr, "1 member", members(1.0)).await;
    assert_eq!(
        w.sum("serversets_session_state", &session("connected")),
        1.0
    );
    assert!(w.sum("serversets_watch_resyncs_total", &set_label) >= 1.0);
    let r = scraper
        .until(&register_addr, "registered", |s| {
            s.sum("serversets_registrations", &state("registered")) == 1.0
        })
        .await;
    assert_eq!(
        r.sum("serversets_session_state", &session("connected")),
        1.0
    );
    assert_eq!(r.sum("serversets_registrations", &state("pending")), 0.0);
    assert!(
        r.sum(
            "serversets_registration_ping_seconds_count",
            &[("set", set)]
        ) >= 1.0
    );
    assert!(r.sum("serversets_registration_creates_total", &[("set", set)]) >= 1.0);

    // Another writer's member comes and goes.
    let writer = testkit::znodes::connect(&cs).await.unwrap();
    let other = put_member(
        &writer,
        set,
        r#"{"serviceEndpoint":{"host":"10.7.0.2","port":8080},"additionalEndpoints":{},"status":"ALIVE"}"#,
    )
    .await;
    let w = scraper.until(&watch_addr, "2 members", members(2.0)).await;
    assert!(w.sum("serversets_watch_propagation_seconds_count", &set_label) >= 1.0);
    assert!(w.sum("serversets_watch_reads_total", &set_label) >= 2.0);
    writer.delete(&other, None).await.unwrap();
    scraper
        .until(&watch_addr, "1 member again", members(1.0))
        .await;

    // A malformed child is counted under its reason.
    let bad = writer
        .create(
            &format!("{set}/member_"),
            b"{oops",
            &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let malformed = [("set", set), ("reason", "malformed")];
    scraper
        .until(&watch_addr, "1 malformed", |s| {
            s.sum("serversets_watch_rejected", &malformed) == 1.0
        })
        .await;
    writer
        .delete(&format!("{set}/member_{}", bad.1), None)
        .await
        .unwrap();
    drop(writer);

    // The sidecar's check fails: unhealthy, and its member leaves the watch.
    std::fs::remove_file(&healthy).unwrap();
    scraper
        .until(&register_addr, "unhealthy", |s| {
            s.sum("serversets_registrations", &state("unhealthy")) == 1.0
                && s.sum("serversets_registrations", &state("registered")) == 0.0
        })
        .await;
    scraper.until(&watch_addr, "0 members", members(0.0)).await;
    std::fs::write(&healthy, b"").unwrap();
    scraper
        .until(&register_addr, "registered again", |s| {
            s.sum("serversets_registrations", &state("registered")) == 1.0
        })
        .await;
    let r = scraper
        .until(&watch_addr, "1 member back", members(1.0))
        .await;
    drop(r);
    let r = scraper.scrape(&register_addr).await.unwrap();
    assert!(
        r.sum(
            "serversets_registration_reregistrations_total",
            &[("set", set)]
        ) >= 1.0
    );
    assert!(
        r.sum(
            "serversets_registration_ping_failures_total",
            &[("set", set)]
        ) >= 1.0
    );

    // ZooKeeper stops: both sessions show it; the watch keeps its member.
    zk.stop(0).unwrap();
    for addr in [&watch_addr, &register_addr] {
        scraper
            .until(addr, "disconnected", |s| {
                s.sum("serversets_session_state", &session("disconnected")) == 1.0
                    && s.sum("serversets_session_state", &session("connected")) == 0.0
            })
            .await;
    }
    let w = scraper.scrape(&watch_addr).await.unwrap();
    assert_eq!(w.sum("serversets_watch_members", &set_label), 1.0);

    // ...and comes back: connected again, counted as a reconnect (or, if
    // it took longer than the session, an expiry and a new session).
    zk.restart(0).unwrap();
    for addr in [&watch_addr, &register_addr] {
        let s = scraper
            .until(addr, "connected again", |s| {
                s.sum("serversets_session_state", &session("connected")) == 1.0
            })
            .await;
        let zk_label = [("zk", hosts.as_str())];
        let reconnects = s.sum("serversets_session_reconnects_total", &zk_label);
        let expiries = s.sum("serversets_session_expiries_total", &zk_label);
        let later_sessions = s.sum("serversets_session_established_total", &zk_label) - 1.0;
        assert!(
            reconnects + expiries + later_sessions >= 1.0,
            "the outage left no trace: reconnects {reconnects}, expiries {expiries}, sessions after the first {later_sessions}"
        );
    }
    scraper
        .until(&register_addr, "still registered", |s| {
            s.sum("serversets_registrations", &state("registered")) == 1.0
        })
        .await;
    scraper
        .until(&watch_addr, "1 member after the outage", members(1.0))
        .await;

    for r in [&watch, &register] {
        r.signal(libc::SIGTERM);
    }
    let (status, _) = register.wait().await;
    assert_eq!(status.code(), Some(0));
    let (status, _) = watch.wait().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_fails_with_one_line_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = command(&[
        "--zk",
        "127.0.0.1:1",
        "watch",
        "--path",
        "/discovery/test/x",
        "--metrics-addr",
        &addr,
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_that_is_not_host_port_is_a_usage_error() {
    let out = support::run(&[
        "--zk",
        "127.0.0.1:1",
        "register",
        "--path",
        "/discovery/test/x",
        "--host",
        "10.0.0.1",
        "--port",
        "80",
        "--metrics-addr",
        "nowhere",
    ])
    .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--metrics-addr"), "{}", out.stderr);
}

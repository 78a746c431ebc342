//! The span each request attempt runs in. Alone in its binary: a span's
//! callsite interest is cached process-wide, and a test on another thread
//! without a subscriber could settle it while this one installs its own.

mod support;

use serversets_fixedset::FixedSet;
use serversets_httpset::HttpSet;
use support::{dead_addr, Captured, Mode, TestServer};

#[test]
fn each_attempt_runs_in_a_span_naming_the_set_endpoint_and_attempt() {
    let captured = Captured::default();
    let _guard = captured.install();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let live = TestServer::start("live", Mode::Normal).await;
        let dead = dead_addr();
        let set = HttpSet::builder()
            .metrics_set("/t/spans")
            .build(FixedSet::new([dead.clone(), live.addr()]).unwrap())
            .unwrap();
        // Round-robin: one of two requests starts at the dead member
        // (members are in address order, so which one depends on ports).
        set.get("/").await.unwrap();
        set.get("/").await.unwrap();
        let text = captured.text();
        let span = format!("http_attempt{{set=/t/spans endpoint={dead} attempt=1 method=GET}}");
        assert!(
            text.lines()
                .any(|l| l.contains(&span) && l.contains("connect failed; retrying")),
            "{text}"
        );
    });
}

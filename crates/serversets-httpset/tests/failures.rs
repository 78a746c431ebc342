//! Dead, hanging and misbehaving servers: retries, body replay rules,
//! passive ejection and timeouts.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Empty, Full};
use serversets_fixedset::FixedSet;
use serversets_httpset::{Error, HttpSet};
use support::bodies::Frames;
use support::{dead_addr, text, Captured, Mode, TestServer};
use testkit::eventually;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test]
async fn killed_server_is_retried_around_ejected_and_followed_back() {
    let log = Captured::default();
    let _log = log.install();
    let a = TestServer::start("a", Mode::Normal).await;
    let mut b = TestServer::start("b", Mode::Normal).await;
    let c = TestServer::start("c", Mode::Normal).await;
    let members = Arc::new(FixedSet::new([a.addr(), b.addr(), c.addr()]).unwrap());
    let set = HttpSet::builder()
        .eject_after(3)
        .eject_for(Duration::from_millis(1500))
        .build(members.clone())
        .unwrap();

    // Warm up: every server has a pooled connection.
    for _ in 0..30 {
        text(set.get("/").await.unwrap()).await;
    }
    assert_eq!((a.hits(), b.hits(), c.hits()), (10, 10, 10));

    b.kill().await;
    for i in 0..300 {
        let resp = set
            .get("/")
            .await
            .unwrap_or_else(|e| panic!("GET {i} failed: {e:?}"));
        assert_eq!(resp.status(), StatusCode::OK);
        text(resp).await;
    }
    assert_eq!(b.hits(), 10);
    assert_eq!(a.hits() + c.hits(), 20 + 300);
    let health = set.health();
    let hb = health.iter().find(|h| h.addr.port() == b.port()).unwrap();
    assert!(hb.is_ejected(), "dead member not ejected: {hb:?}");
    assert!(hb.consecutive_failures >= 3);
    assert!(hb.ejections >= 1);
    assert!(health
        .iter()
        .filter(|h| h.addr.port() != b.port())
        .all(|h| !h.is_ejected()));
    assert!(
        log.text()
            .contains("ejecting member after consecutive failures"),
        "{}",
        log.text()
    );

    // It comes back: after the cool-down, live traffic re-admits it.
    b.restart().await;
    eventually(
        Duration::from_secs(5),
        "the cool-down to end, every member back in rotation",
        || async { set.health().iter().all(|h| !h.is_ejected()) },
    )
    .await;
    for _ in 0..30 {
        text(set.get("/").await.unwrap()).await;
    }
    assert!(
        b.hits() >= 19,
        "restarted server got {} hits",
        b.hits() - 10
    );
    let hb = set
        .health()
        .into_iter()
        .find(|h| h.addr.port() == b.port())
        .unwrap();
    assert_eq!((hb.consecutive_failures, hb.is_ejected()), (0, false));
    assert!(log.text().contains("back in rotation"), "{}", log.text());

    // It dies again and is dropped from the set: the set follows at once.
    b.kill().await;
    members.set_addresses([a.addr(), c.addr()]).unwrap();
    let ports: Vec<u16> = set.health().iter().map(|h| h.addr.port()).collect();
    assert_eq!(ports.len(), 2);
    assert!(!ports.contains(&b.port()));
    for _ in 0..30 {
        text(set.get("/").await.unwrap()).await;
    }
}

#[tokio::test]
async fn a_late_answer_to_a_request_sent_before_the_ejection_does_not_end_it() {
    let a = TestServer::start("a", Mode::Normal).await;
    let b = TestServer::start("b", Mode::Normal).await;
    let mut servers = [a, b];
    let set = HttpSet::builder()
        .eject_after(2)
        .eject_for(Duration::from_secs(60))
        .build(FixedSet::new([servers[0].addr(), servers[1].addr()]).unwrap())
        .unwrap();
    // Round-robin over two: the request after `next_addr` goes to the
    // other one, the target.
    let skipped = set.next_addr().unwrap().port();
    let t = servers.iter().position(|s| s.port() != skipped).unwrap();

    // A slow request goes to the target...
    let slow = tokio::spawn({
        let set = set.clone();
        async move { text(set.get("/sleep/800").await.unwrap()).await }
    });
    eventually(
        Duration::from_secs(5),
        "the slow request to reach the target",
        || async { servers[t].hits() == 1 },
    )
    .await;
    // ...which then stops taking connections while it answers it. Requests
    // rotated to it fail to connect (its one connection is busy), move to
    // the other server, and get the target ejected.
    servers[t].close_listener().await;
    for _ in 0..6 {
        text(set.get("/").await.unwrap()).await;
    }
    let target = |set: &HttpSet| {
        set.health()
            .into_iter()
            .find(|h| h.addr.port() == servers[t].port())
            .unwrap()
    };
    let before = target(&set);
    assert!(before.is_ejected(), "{before:?}");

    // The old request's answer arrives: it predates the ejection, so it
    // does not end it.
    assert_eq!(slow.await.unwrap(), servers[t].name);
    let after = target(&set);
    assert!(
        after.is_ejected(),
        "a stale answer ended the ejection: {after:?}"
    );
    assert_eq!(after.consecutive_failures, before.consecutive_failures);
    for _ in 0..4 {
        assert_ne!(text(set.get("/").await.unwrap()).await, servers[t].name);
    }
}

#[tokio::test]
async fn connect_failures_retry_any_method_with_the_untouched_body() {
    let live = TestServer::start("live", Mode::Normal).await;
    let set = HttpSet::builder()
        .eject_after(0)
        .build(FixedSet::new([dead_addr(), live.addr()]).unwrap())
        .unwrap();
    // Round-robin alternates, so some of these start on the dead member.
    for i in 0..6 {
        let body = format!("order-{i}");
        let req = Request::post("/echo")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let resp = set.request(req).await.expect("retried on the live member");
        assert_eq!(text(resp).await, body);
    }
    // Each body arrived exactly once.
    let bodies: Vec<Bytes> = live.bodies();
    let expected: Vec<Bytes> = (0..6).map(|i| Bytes::from(format!("order-{i}"))).collect();
    assert_eq!(bodies, expected);

    // All members dead: a typed error after the bound, nothing sent.
    let set = HttpSet::builder()
        .retries(4)
        .eject_after(0)
        .build(FixedSet::new([dead_addr(), dead_addr()]).unwrap())
        .unwrap();
    let req = Request::post("/echo")
        .body(Full::new(Bytes::from("x")))
        .unwrap();
    match set.request(req).await {
        Err(e @ Error::Connect { attempts: 5, .. }) => {
            assert!(e.is_unsent());
            assert!(e.addr().is_some());
        }
        other => panic!("expected Connect after 5 attempts, got {other:?}"),
    }
}

#[tokio::test]
async fn the_last_member_is_never_ejected() {
    let set = HttpSet::builder()
        .eject_after(2)
        .retries(0)
        .build(FixedSet::new([dead_addr()]).unwrap())
        .unwrap();
    for _ in 0..5 {
        assert!(matches!(
            set.get("/").await,
            Err(Error::Connect { attempts: 1, .. })
        ));
    }
    let h = &set.health()[0];
    assert_eq!(h.consecutive_failures, 5);
    assert!(!h.is_ejected());
    assert_eq!(h.ejections, 0);
}

#[tokio::test]
async fn requests_already_sent_are_not_retried_unless_idempotent_and_replayable() {
    // "swallow" reads each whole request, then hangs up without answering.
    let swallow = TestServer::start("swallow", Mode::Swallow).await;
    let only_swallow = || FixedSet::new([swallow.addr()]).unwrap();

    // POST: sent once, failed, not retried.
    let set = HttpSet::builder().retries(2).build(only_swallow()).unwrap();
    let req = Request::post("/echo")
        .body(Full::new(Bytes::from("pay")))
        .unwrap();
    match set.request(req).await {
        Err(e @ Error::Request { attempts: 1, .. }) => assert!(!e.is_unsent()),
        other => panic!("expected Request after 1 attempt, got {other:?}"),
    }
    assert_eq!(swallow.hits(), 1);

    // GET (empty body): idempotent, retried up to the bound.
    match set.get("/").await {
        Err(Error::Request { attempts: 3, .. }) => {}
        other => panic!("expected Request after 3 attempts, got {other:?}"),
    }
    assert_eq!(swallow.hits(), 4);

    // PUT with a streamed body inside the replay bound: replayed whole.
    let req = Request::put("/echo")
        .body(Frames::chunks(&["ab", "cd", "ef"]))
        .unwrap();
    assert!(matches!(
        set.request(req).await,
        Err(Error::Request { attempts: 3, .. })
    ));
    assert_eq!(swallow.hits(), 7);
    let bodies = swallow.bodies();
    let heads = swallow.heads();
    // Sent chunked first, then replayed the same way (a replay keeps the
    // original's framing, and so its trailers): same payload each time.
    for (body, head) in bodies[4..7].iter().zip(&heads[4..7]) {
        assert_eq!(body, "abcdef");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
    }

    // PUT with a streamed body over the bound: sent once, not replayed.
    let set = HttpSet::builder()
        .retries(2)
        .replay_limit(4)
        .build(only_swallow())
        .unwrap();
    let req = Request::put("/echo")
        .body(Frames::chunks(&["ab", "cd", "ef"]))
        .unwrap();
    assert!(matches!(
        set.request(req).await,
        Err(Error::Request { attempts: 1, .. })
    ));
    assert_eq!(swallow.hits(), 8);

    // Idempotent retries switched off.
    let set = HttpSet::builder()
        .retry_idempotent(false)
        .build(only_swallow())
        .unwrap();
    assert!(matches!(
        set.get("/").await,
        Err(Error::Request { attempts: 1, .. })
    ));
    assert_eq!(swallow.hits(), 9);
}

#[tokio::test]
async fn idempotent_requests_move_to_a_healthy_member_with_their_body() {
    let swallow = TestServer::start("swallow", Mode::Swallow).await;
    let live = TestServer::start("live", Mode::Normal).await;
    let set = HttpSet::new(FixedSet::new([swallow.addr(), live.addr()]).unwrap());
    for i in 0..4 {
        let body = format!("put-{i}");
        let req = Request::put("/echo")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        assert_eq!(text(set.request(req).await.expect("retried")).await, body);
    }
    assert_eq!(live.bodies().len(), 4);
    assert!(
        swallow.hits() >= 2,
        "round-robin should have tried the bad one"
    );
}

#[tokio::test]
async fn chosen_statuses_are_retried_for_idempotent_requests_only() {
    let busy = TestServer::start("busy", Mode::Status(503)).await;
    let live = TestServer::start("live", Mode::Normal).await;
    let set = HttpSet::builder()
        .retry_status(StatusCode::SERVICE_UNAVAILABLE)
        .build(FixedSet::new([busy.addr(), live.addr()]).unwrap())
        .unwrap();
    for _ in 0..6 {
        assert_eq!(set.get("/").await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(live.hits(), 6);
    assert!(busy.hits() >= 5, "busy got {}", busy.hits());
    // A POST takes whatever it gets.
    let statuses: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            let req = Request::post("/")
                .body(Full::new(Bytes::from("x")))
                .unwrap();
            v.push(set.request(req).await.unwrap().status());
        }
        v
    };
    assert!(statuses.contains(&StatusCode::SERVICE_UNAVAILABLE));
    // An answer, even a 503, is not a health failure.
    assert!(set.health().iter().all(|h| h.consecutive_failures == 0));
}

#[tokio::test]
async fn hanging_servers_are_covered_by_timeouts() {
    let hang = TestServer::start("hang", Mode::Hang).await;
    let live = TestServer::start("live", Mode::Normal).await;

    // Attempt timeout: idempotent requests move on, and the hanging member
    // is ejected after two silent attempts.
    let set = HttpSet::builder()
        .attempt_timeout(Duration::from_millis(150))
        .eject_after(2)
        .eject_for(Duration::from_secs(60))
        .build(FixedSet::new([hang.addr(), live.addr()]).unwrap())
        .unwrap();
    for _ in 0..10 {
        assert_eq!(text(set.get("/").await.unwrap()).await, "live");
    }
    let hh = set
        .health()
        .into_iter()
        .find(|h| h.addr.port() == hang.port())
        .unwrap();
    assert!(hh.is_ejected(), "{hh:?}");
    assert_eq!(hh.in_flight, 0);

    // A POST to a hanging member gets a Timeout naming it, not a retry.
    let set = HttpSet::builder()
        .attempt_timeout(Duration::from_millis(150))
        .build(FixedSet::new([hang.addr()]).unwrap())
        .unwrap();
    let started = Instant::now();
    let req = Request::post("/")
        .body(Full::new(Bytes::from("x")))
        .unwrap();
    match set.request(req).await {
        Err(Error::Timeout {
            addr: Some(e),
            after,
        }) => {
            assert_eq!(e.port(), hang.port());
            assert_eq!(after, Duration::from_millis(150));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // Overall request timeout.
    let set = HttpSet::builder()
        .request_timeout(Duration::from_millis(200))
        .build(FixedSet::new([hang.addr()]).unwrap())
        .unwrap();
    assert!(matches!(
        set.get("/").await,
        Err(Error::Timeout { addr: None, .. })
    ));

    // Or a tower timeout layer over a set with no timeouts of its own.
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .service(HttpSet::new(FixedSet::new([hang.addr()]).unwrap()));
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err:?}");
}

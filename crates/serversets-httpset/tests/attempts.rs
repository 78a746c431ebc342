//! What a request's attempts add up to, against real hyper servers: the
//! error tells whether any attempt may have reached a server, and bodies
//! of every shape are replayed on a retry as documented.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use serversets_fixedset::FixedSet;
use serversets_httpset::{Error, HttpSet};
use support::bodies::Frames;
use support::{dead_addr, text, Mode, TestServer};

/// A loopback address with nothing listening that sorts after every test
/// server (they listen on 127.0.0.1; snapshots sort by host, then port).
fn dead_after_servers() -> String {
    format!("127.0.0.2:{}", testkit::free_port())
}

/// An idempotent GET whose first attempt reaches `first` and fails there,
/// and whose retry finds nothing listening.
async fn reached_then_refused(first: &TestServer, attempt_timeout: Option<Duration>) -> Error {
    // Round-robin starts at the first member in snapshot order.
    let members = FixedSet::new([first.addr(), dead_after_servers()]).unwrap();
    let mut builder = HttpSet::builder().retries(1);
    if let Some(t) = attempt_timeout {
        builder = builder.attempt_timeout(t);
    }
    let set = builder.build(Arc::new(members)).unwrap();
    let err = set.get("/").await.expect_err("no attempt can succeed");
    assert_eq!(
        first.accepted(),
        1,
        "the first attempt reached {}",
        first.name
    );
    err
}

#[tokio::test]
async fn a_request_that_timed_out_on_a_server_is_not_reported_unsent_when_its_retry_cannot_connect()
{
    let hang = TestServer::start("hang", Mode::Hang).await;
    let err = reached_then_refused(&hang, Some(Duration::from_millis(200))).await;
    assert!(
        !err.is_unsent(),
        "the first attempt was sent to {}: {err:?}",
        hang.addr()
    );
    match &err {
        Error::ConnectAfterSent {
            reached, attempts, ..
        } => {
            assert_eq!(reached.to_string(), hang.addr());
            assert_eq!(*attempts, 2);
        }
        other => panic!("expected ConnectAfterSent, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&hang.addr()), "{text}");
}

#[tokio::test]
async fn a_request_a_server_read_is_not_reported_unsent_when_its_retry_cannot_connect() {
    let swallow = TestServer::start("swallow", Mode::Swallow).await;
    let err = reached_then_refused(&swallow, None).await;
    assert_eq!(swallow.hits(), 1, "the server read the whole request");
    assert!(!err.is_unsent(), "{err:?}");
    assert!(
        matches!(err, Error::ConnectAfterSent { .. }),
        "expected ConnectAfterSent, got {err:?}"
    );
}

#[tokio::test]
async fn a_request_no_server_saw_is_still_reported_unsent() {
    let members = FixedSet::new([dead_addr(), dead_addr()]).unwrap();
    let set = HttpSet::builder().retries(1).build(members).unwrap();
    let err = set.get("/").await.unwrap_err();
    assert!(matches!(err, Error::Connect { attempts: 2, .. }), "{err:?}");
    assert!(err.is_unsent());
}

#[tokio::test]
async fn an_exact_length_body_that_never_reports_its_end_is_replayed_on_retry() {
    // The first server reads the whole request and hangs up; the retry
    // goes to a real hyper server that echoes the body.
    let (swallow, echo) = loop {
        let swallow = TestServer::start("swallow", Mode::Swallow).await;
        let echo = TestServer::start("echo", Mode::Normal).await;
        // Round-robin starts at the first member in snapshot order (by port).
        if swallow.port() < echo.port() {
            break (swallow, echo);
        }
    };
    let members = FixedSet::new([swallow.addr(), echo.addr()]).unwrap();
    let set = HttpSet::builder().retries(1).build(members).unwrap();
    // Known length, several frames, never reports its end.
    let body = Frames::exact(&["put ", "the ", "same ", "thing"]);
    let req = Request::put("/echo").body(body).unwrap();
    let resp = set
        .request(req)
        .await
        .expect("replayed to the second server");
    assert_eq!(resp.status(), 200);
    assert_eq!(text(resp).await, "put the same thing");
    assert_eq!(
        swallow.bodies(),
        [Bytes::from_static(b"put the same thing")]
    );
    assert_eq!(echo.bodies(), [Bytes::from_static(b"put the same thing")]);
    // Content-Length both times, as the original asked.
    assert!(
        swallow.heads()[0].contains("content-length: 18"),
        "{:?}",
        swallow.heads()
    );
}

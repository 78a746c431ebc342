//! Races between a membership change and requests that arrive with it, on
//! a multi-threaded runtime, many times over: the follower applying the
//! change must never make a request see the old, empty set.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serversets_fixedset::FixedSet;
use serversets_httpset::{Error, HttpSet};
use support::{Mode, TestServer};

const ROUNDS: usize = 300;

/// The set a round publishes: the real server, plus enough members that a
/// rebuild (one connection pool per member) takes a moment, as a large
/// production set does, so the window is wide enough to hit.
fn members(server: &TestServer) -> Vec<String> {
    let mut all = vec![server.addr()];
    all.extend((1..=200).map(|i| format!("127.0.{}.{}:9", i / 250, i % 250 + 1)));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_servers_gets_one_as_soon_as_they_arrive() {
    let server = TestServer::start("s0", Mode::Normal).await;
    let wait = Duration::from_secs(5);
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        let source = Arc::new(FixedSet::empty());
        let set = HttpSet::builder()
            .wait_for_members(wait)
            .retries(0)
            .build(source.clone())
            .unwrap();
        // Any outcome but NoMembers shows a member was picked: most
        // members refuse connections, and that is fine here.
        let req = {
            let set = set.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let out = set.get("/").await;
                (out, start.elapsed())
            })
        };
        tokio::task::yield_now().await;
        source.set_addresses(members(&server)).unwrap();
        let (out, took) = tokio::time::timeout(wait * 2, req).await.unwrap().unwrap();
        assert!(
            !matches!(out, Err(Error::NoMembers { .. })),
            "round {round}: {out:?} after {took:?}"
        );
        slowest = slowest.max(took);
        assert!(
            took < Duration::from_secs(1),
            "round {round}: waited {took:?} with servers present ({out:?})"
        );
    }
    eprintln!("slowest wait over {ROUNDS} rounds: {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_right_after_a_publish_never_sees_the_old_empty_set() {
    let server = TestServer::start("s0", Mode::Normal).await;
    for round in 0..ROUNDS {
        let source = Arc::new(FixedSet::empty());
        let set = HttpSet::builder().retries(0).build(source.clone()).unwrap();
        // Let the follower start and settle on the empty set.
        tokio::task::yield_now().await;
        source.set_addresses([server.addr()]).unwrap();
        // Published: a request from here on must see the member, whether
        // or not the follower is rebuilding at this very moment.
        let set2 = set.clone();
        let (a, b) = tokio::join!(
            tokio::spawn(async move { set2.get("/").await.map(|_| ()) }),
            async { set.get("/").await.map(|_| ()) },
        );
        for out in [a.unwrap(), b] {
            assert!(
                !matches!(out, Err(Error::NoMembers { .. })),
                "round {round}: {out:?}"
            );
        }
    }
}

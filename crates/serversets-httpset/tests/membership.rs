//! Following membership changes: under traffic, and for pooled connections
//! when there is no traffic at all.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serversets_fixedset::FixedSet;
use serversets_httpset::HttpSet;
use support::{text, Mode, TestServer};
use testkit::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_mid_traffic_fail_no_request() {
    let mut servers = Vec::new();
    for name in ["s0", "s1", "s2", "s3"] {
        servers.push(TestServer::start(name, Mode::Normal).await);
    }
    let addrs: Vec<String> = servers.iter().map(|s| s.addr()).collect();
    let addr = |i: usize| addrs[i].clone();
    let members = Arc::new(FixedSet::new([addr(0), addr(1), addr(2)]).unwrap());
    let set = HttpSet::new(members.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (set, stop, done) = (set.clone(), stop.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match set.get("/").await {
                    Ok(resp) if resp.status() == 200 => {
                        text(resp).await;
                    }
                    Ok(resp) => failures.push(format!("status {}", resp.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let pause = || tokio::time::sleep(Duration::from_millis(60));

    pause().await;
    members
        .set_addresses([addr(0), addr(1), addr(2), addr(3)])
        .unwrap(); // grow
    pause().await;
    members.set_addresses([addr(1), addr(2), addr(3)]).unwrap(); // s0 deregisters...
    pause().await;
    servers[0].kill().await; // ...then shuts down
    let s0_hits = servers[0].hits();
    pause().await;
    members.set_addresses([addr(2), addr(3)]).unwrap(); // shrink again
    servers[1].kill().await; // and s1 goes away right after
    pause().await;
    let (s2_before, s3_before) = (servers[2].hits(), servers[3].hits());
    pause().await;
    stop.store(true, Ordering::Relaxed);

    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        done.load(Ordering::Relaxed) > 100,
        "too little traffic to mean anything"
    );
    assert_eq!(servers[0].hits(), s0_hits);
    assert!(servers[2].hits() > s2_before && servers[3].hits() > s3_before);
    let ports: Vec<u16> = set.health().iter().map(|h| h.addr.port()).collect();
    assert_eq!(ports.len(), 2);
    assert!(ports.contains(&servers[2].port()) && ports.contains(&servers[3].port()));
}

#[tokio::test]
async fn departed_members_close_their_idle_connections_without_traffic() {
    let a = TestServer::start("a", Mode::Normal).await;
    let b = TestServer::start("b", Mode::Normal).await;
    let members = Arc::new(FixedSet::new([a.addr(), b.addr()]).unwrap());
    let set = HttpSet::new(members.clone());
    for _ in 0..4 {
        text(set.get("/").await.unwrap()).await;
    }
    assert_eq!((a.open_connections(), b.open_connections()), (1, 1));

    // No request is made after this: only the membership change acts.
    members.set_addresses([b.addr()]).unwrap();
    eventually(
        Duration::from_secs(3),
        "the departed member's idle connection to close",
        || async { a.open_connections() == 0 },
    )
    .await;
    // The member that stayed keeps its pooled connection.
    assert_eq!(b.open_connections(), 1);
    text(set.get("/").await.unwrap()).await;
    assert_eq!(b.accepted(), 1);

    // Dropping the set closes the rest.
    drop(set);
    eventually(
        Duration::from_secs(3),
        "the dropped set's connections to close",
        || async { b.open_connections() == 0 },
    )
    .await;
}

#[tokio::test]
async fn a_returning_member_gets_a_fresh_state_and_a_closed_source_keeps_the_last_set() {
    let a = TestServer::start("a", Mode::Normal).await;
    let b = TestServer::start("b", Mode::Normal).await;
    let members = Arc::new(FixedSet::new([a.addr(), b.addr()]).unwrap());
    let set = HttpSet::new(members.clone());
    members.set_addresses([a.addr()]).unwrap();
    for _ in 0..4 {
        assert_eq!(text(set.get("/").await.unwrap()).await, "a");
    }
    members.set_addresses([a.addr(), b.addr()]).unwrap();
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(text(set.get("/").await.unwrap()).await);
    }
    assert_eq!(names.iter().filter(|n| *n == "b").count(), 2);

    members.close();
    for _ in 0..4 {
        assert_eq!(set.get("/").await.unwrap().status(), 200);
    }
    assert_eq!(set.health().len(), 2);
}

#[test]
/// The policy every balancer shares for a follower that dies (core's
/// `balance::Follower`): it is not restarted, and requests keep the set in
/// step. Before the shared follower, httpset restarted it on the next
/// request, and this test waited for the departed member's connection to
/// close with no request at all; now it checks that no follower acts, and
/// that the next request applies the change, which closes it.
fn a_follower_lost_with_its_runtime_is_not_restarted_and_requests_keep_the_set_in_step() {
    // The servers run on a runtime of their own that outlives the others.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = servers.block_on(async {
        (
            TestServer::start("a", Mode::Normal).await,
            TestServer::start("b", Mode::Normal).await,
        )
    });
    let members = Arc::new(FixedSet::new([a.addr(), b.addr()]).unwrap());

    // The set is built, and its follower spawned, on a runtime that then
    // shuts down, taking the follower task with it.
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let set = first.block_on(async { HttpSet::new(members.clone()) });
    drop(first);

    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        // Traffic on the new runtime is served...
        for _ in 0..4 {
            text(set.get("/").await.unwrap()).await;
        }
        assert_eq!((a.open_connections(), b.open_connections()), (1, 1));
        // ...but starts no new follower: a change with no request is not
        // applied, so the departed member keeps its idle connection...
        members.set_addresses([b.addr()]).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            a.open_connections(),
            1,
            "a follower applied the change: the lost follower was restarted"
        );
        // ...until the next request, which applies it and goes to the
        // member that stayed; then the departed member's pool closes.
        assert_eq!(text(set.get("/").await.unwrap()).await, "b");
        eventually(
            Duration::from_secs(3),
            "the departed member's idle connection to close once a request applied the change",
            || async { a.open_connections() == 0 },
        )
        .await;
        assert_eq!(b.open_connections(), 1);
        drop(set);
    });
}

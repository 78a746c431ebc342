//! A registration's life through misbehaving health checks, ZooKeeper
//! outages and refusals, against a real ZooKeeper: it reports the truth about
//! its member, never leaves two behind, and ends only when closed.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serversets_core::zookeeper_client as zk;
use serversets_core::{Error, Ping, RegistrationState};
use support::*;
use testkit::eventually;

const T: Duration = Duration::from_secs(20);

async fn wait_state(
    ep: &serversets_core::Registration,
    what: &str,
    pred: impl Fn(&RegistrationState) -> bool,
) -> RegistrationState {
    let mut rx = ep.state_changes();
    let seen = tokio::time::timeout(T, rx.wait_for(|s| pred(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match seen {
        Ok(Ok(s)) => s,
        _ => panic!("timed out waiting for {what}; state is {:?}", ep.state()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_async_check_counts_as_failed() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "panicky", Duration::from_secs(30));
    let watch = set.watch().await.unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    let ep = set
        .registration("127.0.0.1", 4001)
        .ping(Ping::new(move || {
            let down = d.load(Ordering::SeqCst);
            async move {
                // What `get(url).await.unwrap()` does when the backend is down.
                let answer: Result<(), String> = if down {
                    Err("connection refused".into())
                } else {
                    Ok(())
                };
                answer.unwrap();
                Ok::<(), String>(())
            }
        }))
        .ping_interval(Duration::from_millis(50))
        .register()
        .await
        .unwrap();
    wait_for(&watch, T, "registered", |s| s.len() == 1).await;

    down.store(true, Ordering::SeqCst);
    wait_for(&watch, T, "removed while the check panics", |s| {
        s.is_empty()
    })
    .await;
    match wait_state(&ep, "unhealthy", |s| {
        matches!(s, RegistrationState::Unhealthy(_))
    })
    .await
    {
        RegistrationState::Unhealthy(why) => assert!(why.contains("panicked"), "{why}"),
        other => unreachable!("{other:?}"),
    }

    down.store(false, Ordering::SeqCst);
    wait_for(&watch, T, "back once it passes", |s| s.len() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_blocking_check_never_runs_twice_at_once() {
    let zk = standalone();
    let set = set(
        &zk.connect_string(),
        "hung-blocking",
        Duration::from_secs(30),
    );
    let watch = set.watch().await.unwrap();
    let hang = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (h, s, r, m) = (hang.clone(), started.clone(), running.clone(), most.clone());
    let _ep = set
        .registration("127.0.0.1", 4002)
        .ping(Ping::blocking(move || {
            s.fetch_add(1, Ordering::SeqCst);
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            while h.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<(), String>(())
        }))
        .ping_interval(Duration::from_millis(20))
        .ping_timeout(Duration::from_millis(50))
        .register()
        .await
        .unwrap();
    wait_for(&watch, T, "registered", |s| s.len() == 1).await;

    hang.store(true, Ordering::SeqCst);
    wait_for(&watch, T, "removed while the check hangs", |s| s.is_empty()).await;
    let before = started.load(Ordering::SeqCst);
    // Fifty intervals and ten timeouts pass while the one check hangs.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        before,
        "no new check may start while one is still running"
    );
    assert_eq!(most.load(Ordering::SeqCst), 1, "two checks ran at once");

    hang.store(false, Ordering::SeqCst);
    wait_for(&watch, T, "back once the check returns", |s| s.len() == 1).await;
    assert_eq!(most.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_stops_claiming_a_member_its_session_lost_and_no_duplicate_follows() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "honest", Duration::from_secs(4));
    let ep = register_local(&set, 4003).await;
    let first = ep.path().expect("registered");

    // ZooKeeper goes away for longer than the session: the client gives the
    // session up, and the member cannot be claimed to exist any more.
    zk.stop(0).unwrap();
    let state = wait_state(&ep, "not registered", |s| *s == RegistrationState::Pending).await;
    assert_eq!(state, RegistrationState::Pending);
    assert_eq!(
        ep.path(),
        None,
        "path() must not name a member that is gone"
    );

    // The restarted server restores the old session (and its member) for a
    // session timeout; the registration must not show twice meanwhile.
    zk.restart(0).unwrap();
    let second = match wait_state(&ep, "registered again", |s| {
        matches!(s, RegistrationState::Registered(_))
    })
    .await
    {
        RegistrationState::Registered(p) => p,
        other => unreachable!("{other:?}"),
    };
    assert_ne!(second, first);
    let raw = raw(&zk.connect_string()).await;
    let name = |p: &str| p.rsplit('/').next().unwrap_or_default().to_string();
    assert_eq!(
        members_in_zk(&raw, set.path()).await,
        [name(&second)],
        "the old session's member must be gone before the new one is reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_health_changes_do_not_wait_out_the_error_backoff() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "backoff", Duration::from_secs(30));
    let ep = register_local(&set, 4004).await;
    let path = ep.path().unwrap();

    // Someone may delete members here but nobody may create them: every
    // re-create fails and the back-off grows.
    let raw = raw(&zk.connect_string()).await;
    let read_delete = zk::Acl::new(
        zk::Permission::READ | zk::Permission::DELETE,
        zk::AuthId::anyone(),
    );
    raw.set_acl(set.path(), &[read_delete], None).await.unwrap();
    raw.delete(&path, None).await.unwrap();
    eventually(T, "the re-create failing", || async {
        ep.last_error()
            .is_some_and(|e| e.contains("not authorized"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await; // back-off now several seconds

    let started = Instant::now();
    ep.close().await.unwrap();
    assert_eq!(ep.state(), RegistrationState::Closed);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "close waited {:?} for the back-off",
        started.elapsed()
    );
    assert!(members_in_zk(&raw, set.path()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_registration_fails_fast_and_leaves_nothing_running() {
    let zk = standalone();
    let set = set(&zk.connect_string(), "refused", Duration::from_secs(30));
    let raw = raw(&zk.connect_string()).await;
    testkit::znodes::put(&raw, set.path(), b"", zk::CreateMode::Persistent)
        .await
        .unwrap();
    let read_only = zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone());
    raw.set_acl(set.path(), &[read_only], None).await.unwrap();

    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    let started = Instant::now();
    let err = set
        .registration("127.0.0.1", 4005)
        .ping(Ping::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        }))
        .ping_interval(Duration::from_millis(20))
        .register()
        .await
        .expect_err("ZooKeeper refuses the create");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refusal must not wait out the connect budget ({:?})",
        started.elapsed()
    );
    // ZooKeeper's answer is the cause, given once: in `source()`.
    assert!(
        matches!(&err, Error::ZooKeeper { .. }),
        "a refusal is ZooKeeper's answer: {err:?}"
    );
    let shown = chain(&err);
    assert!(shown.contains("not authorized"), "{shown}");
    // The failed registration's health check stops with it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = checks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        checks.load(Ordering::SeqCst),
        after,
        "the check kept running"
    );
}

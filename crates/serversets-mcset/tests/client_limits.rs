//! Real memcached (feature `client`): the client keeps memcached's expiry
//! rules, and a cache host that never accepts or never answers fails its
//! own keys within the timeouts while every other server's keys go on
//! being served.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serversets_fixedset::FixedSet;
use serversets_mcset::{Error, McSet};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

fn memcached() -> testkit::Memcached {
    testkit::Memcached::start().expect("memcached (apt-get install memcached)")
}

/// The remaining TTL memcached reports for `key` (meta get `t` flag):
/// `Some(-1)` for an item that never expires, `None` when there is none.
async fn ttl_left(addr: &str, key: &str) -> Option<i64> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("mg {key} t\r\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await.unwrap();
    let line = line.trim_end();
    if line == "EN" {
        return None;
    }
    let flag = line
        .strip_prefix("HD ")
        .and_then(|f| f.strip_prefix('t'))
        .unwrap_or_else(|| panic!("unexpected meta reply {line:?}"));
    Some(flag.parse().unwrap())
}

fn one_server(m: &testkit::Memcached) -> McSet {
    McSet::new(FixedSet::new([m.address()]).unwrap()).unwrap()
}

#[tokio::test]
async fn a_sub_second_ttl_lives_one_second_not_forever() {
    let m = memcached();
    let set = one_server(&m);
    set.set("lock", b"held", Some(Duration::from_millis(500)))
        .await
        .unwrap();
    let left = ttl_left(&m.address(), "lock").await;
    assert!(
        matches!(left, Some(0..=1)),
        "500 ms must be sent as 1 s, memcached reports {left:?} (-1: never expires)"
    );
    // memcached's clock ticks once a second: gone within two.
    testkit::eventually(
        Duration::from_secs(3),
        "the 500 ms item to expire",
        || async { set.get("lock").await.unwrap().is_none() },
    )
    .await;
}

#[tokio::test]
async fn a_zero_ttl_expires_the_item_at_once() {
    let m = memcached();
    let set = one_server(&m);
    set.set("k", b"old", None).await.unwrap();
    set.set("k", b"new", Some(Duration::ZERO)).await.unwrap();
    assert_eq!(set.get("k").await.unwrap(), None, "ZERO means expired now");
    assert_eq!(ttl_left(&m.address(), "k").await, None);
}

#[tokio::test]
async fn no_ttl_never_expires() {
    let m = memcached();
    let set = one_server(&m);
    set.set("k", b"v", None).await.unwrap();
    assert_eq!(ttl_left(&m.address(), "k").await, Some(-1));
}

#[tokio::test]
async fn ttls_past_thirty_days_are_sent_as_absolute_times_and_the_item_lives() {
    let m = memcached();
    let set = one_server(&m);
    let day = 86_400;
    for (key, days) in [("exactly-30", 30), ("past-30", 31), ("a-year", 365)] {
        set.set(key, b"v", Some(Duration::from_secs(days * day)))
            .await
            .unwrap();
        assert_eq!(
            set.get(key).await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "{key}: a {days}-day item must not expire at once"
        );
        let left = ttl_left(&m.address(), key).await.expect("stored") as u64;
        let want = days * day;
        assert!(
            left <= want && left + 5 >= want,
            "{key}: memcached reports {left} s left, want about {want}"
        );
    }
    // Past 2038 memcached cannot say it; the latest time it takes is used.
    let far = Duration::from_secs(100 * 365 * day);
    set.set("far", b"v", Some(far)).await.unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = ttl_left(&m.address(), "far").await.expect("stored") as u64;
    let want = i32::MAX as u64 - now;
    assert!(left <= want && left + 5 >= want, "{left} vs {want}");
}

/// A loopback port whose accept queue is full, as a powered-off host looks
/// to a client: a SYN gets no answer and connect hangs. Keep the returned
/// values alive.
async fn never_accepts() -> (String, TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = socket.listen(0).unwrap();
    // Fill the queue until a connect stops completing.
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("connect to the full listener: {e}"),
            Err(_) => break,
        }
        assert!(fillers.len() < 16, "the accept queue never filled");
    }
    // Nobody calls accept on it.
    (addr.to_string(), listener, fillers)
}

/// A port that accepts and reads requests but never answers.
async fn never_answers() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            }));
        }
    });
    (addr, task)
}

/// Keys that `set` places on server `addr`.
fn keys_on(set: &McSet, addr: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key:{i}"))
        .filter(|k| set.pick(k).unwrap().addr().to_string() == addr)
        .take(n)
        .collect()
}

/// Runs `gets` concurrently, with every request on the healthy server
/// `good` meanwhile; returns each bad request's error and how long it took.
/// Every healthy request must be done before the first bad one fails: none
/// of them waited behind the bad server.
async fn storm(set: &McSet, bad: &[String], good: &[String]) -> Vec<(Error, Duration)> {
    let start = Instant::now();
    let bad_calls = bad.iter().map(|k| async move {
        let err = set.get(k).await.expect_err("the bad server cannot answer");
        (err, start.elapsed())
    });
    let good_calls = async {
        for k in good {
            set.set(k, b"v", None).await.unwrap();
            assert_eq!(set.get(k).await.unwrap().as_deref(), Some(&b"v"[..]));
        }
        start.elapsed()
    };
    let (errors, good_done) = tokio::time::timeout(WAIT, async {
        tokio::join!(futures::future::join_all(bad_calls), good_calls)
    })
    .await
    .expect("requests to a dead server must fail within their timeouts, not hang");
    let first_bad = errors.iter().map(|(_, took)| *took).min().unwrap_or(WAIT);
    assert!(
        good_done < first_bad,
        "healthy requests took {good_done:?}, the first bad one failed after {first_bad:?}: they waited behind it"
    );
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_accepts_fails_its_keys_within_the_default_connect_timeout() {
    let m = memcached();
    let (dead, _socket, _fillers) = never_accepts().await;
    let set = McSet::new(FixedSet::new([m.address(), dead.clone()]).unwrap()).unwrap();
    let bad = keys_on(&set, &dead, 8);
    let good = keys_on(&set, &m.address(), 20);
    // Eight requests at once: none waits behind another's connect.
    for (err, took) in storm(&set, &bad, &good).await {
        assert!(
            matches!(&err, Error::ConnectTimeout { addr, .. } if addr.to_string() == dead),
            "{err:?}"
        );
        assert!(err.is_timeout());
        assert!(
            took < Duration::from_millis(3000),
            "took {took:?} (default 1 s)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_configurable_and_a_stalled_server_holds_up_no_one_else() {
    let m = memcached();
    let (dead, _socket, _fillers) = never_accepts().await;
    let (stalled, _task) = never_answers().await;
    let set = McSet::builder()
        .connect_timeout(Duration::from_millis(200))
        .request_timeout(Duration::from_millis(300))
        .build(FixedSet::new([m.address(), dead.clone(), stalled.clone()]).unwrap())
        .unwrap();

    let bad = keys_on(&set, &dead, 4);
    let good = keys_on(&set, &m.address(), 10);
    for (err, took) in storm(&set, &bad, &good).await {
        assert!(matches!(err, Error::ConnectTimeout { .. }), "{err:?}");
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_millis(2000),
            "{took:?}"
        );
    }

    // The stalled server accepts, so its requests wait for replies that
    // never come: each fails by the request timeout. They queue on its one
    // connection, and a queued request's wait counts too.
    let bad = keys_on(&set, &stalled, 4);
    for (err, took) in storm(&set, &bad, &good).await {
        assert!(
            matches!(&err, Error::RequestTimeout { addr, .. } if addr.to_string() == stalled),
            "{err:?}"
        );
        assert!(took < Duration::from_millis(2000), "{took:?}");
    }
    // Still failing the same way, not stuck: the timed-out connection was
    // closed and a new one opened.
    let err = set.get(&bad[0]).await.unwrap_err();
    assert!(matches!(err, Error::RequestTimeout { .. }), "{err:?}");
    assert_eq!(set.get(&good[0]).await.unwrap().as_deref(), Some(&b"v"[..]));
}

//! The HTTP part: three tiny backends registered in ZooKeeper behind a
//! health check, a client's watch on their set, httpset balancing over it,
//! a failing health check, and deregistration.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serversets_core::{Ping, Snapshot, Watch, Watcher};
use xtask::ui::human;

use crate::context::Demo;
use crate::{Result, StepFuture};

/// A tiny HTTP backend whose health the demo controls.
pub struct Backend {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// Its port.
    pub port: u16,
    /// What its health check reports.
    pub healthy: Arc<AtomicBool>,
    /// Requests it answered.
    pub served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a minimal HTTP/1.1 server that answers every request with its name.
pub async fn start_backend(name: usize) -> Result<Backend> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut have = 0;
                loop {
                    match conn.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let body = format!("backend {name}\n");
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                    if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
    Ok(Backend {
        addr: format!("127.0.0.1:{port}"),
        port,
        healthy: Arc::new(AtomicBool::new(true)),
        served,
        task,
    })
}

pub fn register_backends(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let set = demo.server_set("demo-http")?;
        demo.say(&format!("server set {}", demo.ui.bold(set.path())));
        for i in 1..=3 {
            let backend = start_backend(i).await?;
            let healthy = backend.healthy.clone();
            let addr = backend.addr.clone();
            // The health check: the backend's own flag, and a TCP connect.
            let ping = Ping::new(move || {
                let healthy = healthy.load(Ordering::SeqCst);
                let addr = addr.clone();
                async move {
                    if !healthy {
                        return Err("reports unhealthy".to_string());
                    }
                    tokio::net::TcpStream::connect(&addr)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            });
            let registration = set
                .registration("127.0.0.1", backend.port)
                .additional_endpoint("http", "127.0.0.1", backend.port)
                .metadata("name", &format!("backend-{i}"))
                .ping(ping)
                .ping_interval(Duration::from_millis(100))
                .ping_timeout(Duration::from_millis(500))
                .register()
                .await?;
            let path = registration.path().ok_or("registered without a path")?;
            demo.say(&format!("backend {i} on {} -> {}", backend.addr, path));
            if i == 1 {
                demo.say(&format!(
                    "its data, as Finagle reads it: {}",
                    String::from_utf8_lossy(registration.data())
                ));
            }
            demo.backends.push(backend);
            demo.registrations.push(registration);
        }
        let session = set.session()?;
        demo.say(&format!(
            "all three share one ZooKeeper session: {:#x}",
            session.session_id().unwrap_or_default()
        ));
        demo.set = Some(set);
        demo.check(demo.registrations.len() == 3, "three members registered")
    })
}

pub fn watch_set(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let set = demo
            .set
            .as_ref()
            .ok_or("no server set (the register step did not run)")?;
        let t = Instant::now();
        let watch = set.watch().await?;
        let snap = watch.snapshot();
        demo.say(&format!(
            "watch() returned in {} with v{}: {}",
            human(t.elapsed()),
            snap.version(),
            demo.members(&snap)
        ));
        demo.say(&format!("connection health: {}", watch.health()));
        let want: Vec<String> = {
            let mut v: Vec<String> = demo.backends.iter().map(|b| b.addr.clone()).collect();
            v.sort();
            v
        };
        let got: Vec<String> = snap.iter().map(|m| m.addr().to_string()).collect();
        demo.watch = Some(watch);
        demo.check(got == want, "the watch holds exactly the three backends")
    })
}

pub fn http_spread(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let watch = demo.watch()?;
        // The client follows the same watch: any Watcher will do.
        let client = serversets_httpset::HttpSet::new(watch.feed());
        let before: Vec<usize> = demo
            .backends
            .iter()
            .map(|b| b.served.load(Ordering::Relaxed))
            .collect();
        let t = Instant::now();
        let total = 300;
        for _ in 0..total {
            let response = client.get("/").await?;
            if !response.status().is_success() {
                return Err(format!("a request failed with {}", response.status()).into());
            }
        }
        let took = t.elapsed();
        let counts: Vec<usize> = demo
            .backends
            .iter()
            .zip(&before)
            .map(|(b, was)| b.served.load(Ordering::Relaxed) - was)
            .collect();
        for (i, n) in counts.iter().enumerate() {
            let bar = "#".repeat(n / 5);
            demo.say(&format!("backend {}: {n:>4} {}", i + 1, demo.ui.cyan(&bar)));
        }
        demo.say(&format!(
            "{total} requests in {} ({} per request)",
            human(took),
            human(took / total as u32)
        ));
        demo.check(
            counts.iter().sum::<usize>() == total && counts.iter().all(|&n| n == total / 3),
            "round-robin: exactly a third to each backend",
        )
    })
}

/// Waits until the watch's members satisfy `pred`, returning how long it took.
pub async fn wait_members(
    watch: &Watch,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Result<(Snapshot, Duration)> {
    let t = Instant::now();
    let mut changes = watch.subscribe();
    let mut snap = watch.snapshot();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if pred(&snap) {
                return Some(snap);
            }
            snap = changes.changed().await?;
        }
    })
    .await
    .map_err(|_| format!("timed out waiting until {what}"))?;
    let snap = found.ok_or_else(|| format!("the watch closed while waiting until {what}"))?;
    Ok((snap, t.elapsed()))
}

pub fn health_flip(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let watch = demo.watch()?;
        let sick = demo.backends.get(1).ok_or("no second backend")?;
        let addr = sick.addr.clone();
        demo.say(&format!(
            "backend 2 ({addr}) starts failing its health check"
        ));
        sick.healthy.store(false, Ordering::SeqCst);
        let (snap, took) = wait_members(watch, "backend 2 left", |s| {
            s.len() == 2 && s.iter().all(|m| m.addr().to_string() != addr)
        })
        .await?;
        demo.ok(&format!(
            "left the set after {}: {}",
            human(took),
            demo.members(&snap)
        ));
        demo.say("its health check passes again");
        sick.healthy.store(true, Ordering::SeqCst);
        let (snap, took) = wait_members(watch, "backend 2 is back", |s| {
            s.len() == 3 && s.iter().any(|m| m.addr().to_string() == addr)
        })
        .await?;
        demo.ok(&format!(
            "back after {} as a new member: {}",
            human(took),
            demo.members(&snap)
        ));
        Ok(())
    })
}

pub fn deregister(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        for (i, b) in demo.backends.iter().enumerate() {
            demo.say(&format!(
                "backend {} answered {} HTTP requests",
                i + 1,
                b.served.load(Ordering::Relaxed)
            ));
        }
        let registrations = std::mem::take(&mut demo.registrations);
        let watch = demo.watch()?;
        let t = Instant::now();
        for registration in &registrations {
            registration.close().await?;
        }
        let (_, _) = wait_members(watch, "the set is empty", |s| s.is_empty()).await?;
        demo.ok(&format!(
            "all three gone from every watcher in {} (no session timeout to wait for)",
            human(t.elapsed())
        ));
        Ok(())
    })
}

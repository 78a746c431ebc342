//! Health checks guarding a registration: [`Ping`], and the task that runs
//! one check at a time and tells the control loop whether the member is
//! wanted.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;

use super::control::Problem;
use super::Ctx;

type PingFuture = Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>>;

/// A health check guarding a registration: while it fails, the member is
/// removed from ZooKeeper; when it passes again, the member is re-created.
///
/// A check that panics, or that is still running at its timeout, has
/// failed. At most one check of a registration runs at a time: an async
/// check still running at its timeout is cancelled, and a blocking one
/// (which cannot be cancelled) is waited for before the next starts, so a
/// hung check never piles up threads.
///
/// ```
/// use serversets_core::Ping;
///
/// // An async check...
/// let http_ok = Ping::new(|| async { Ok::<(), std::io::Error>(()) });
/// // ...or a blocking one (run on tokio's blocking pool).
/// let file_ok = Ping::blocking(|| {
///     std::fs::metadata("/").map(|_| ())
/// });
/// # let _ = (http_ok, file_ok);
/// ```
#[derive(Clone)]
pub struct Ping {
    check: Arc<dyn Fn() -> PingFuture + Send + Sync>,
    /// Blocking checks run on a thread that a timeout cannot stop.
    cancellable: bool,
}

impl Ping {
    /// An async check; an `Err`, a panic or a run longer than the ping
    /// timeout is a failure.
    pub fn new<F, Fut, E>(f: F) -> Ping
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        Ping {
            check: Arc::new(move || {
                // Calling the closure can panic too, before any future exists.
                let fut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&f));
                Box::pin(async move {
                    let fut = fut.map_err(|p| format!("check panicked: {}", panic_text(&*p)))?;
                    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(p) => Err(format!("check panicked: {}", panic_text(&*p))),
                    }
                })
            }),
            cancellable: true,
        }
    }

    /// A blocking check, run on tokio's blocking thread pool. An `Err`, a
    /// panic or a run longer than the ping timeout is a failure; a run that
    /// outlasts its timeout is waited for before the next one starts.
    pub fn blocking<F, E>(f: F) -> Ping
    where
        F: Fn() -> std::result::Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        let f = Arc::new(f);
        Ping {
            check: Arc::new(move || {
                let f = f.clone();
                Box::pin(async move {
                    match tokio::task::spawn_blocking(move || f().map_err(|e| e.to_string())).await
                    {
                        Ok(r) => r,
                        Err(e) if e.is_panic() => {
                            Err(format!("check panicked: {}", panic_text(&*e.into_panic())))
                        }
                        Err(e) => Err(format!("check did not finish: {e}")),
                    }
                })
            }),
            cancellable: false,
        }
    }
}

/// Runs a registration's checks one at a time.
pub(super) struct Checker {
    ping: Ping,
    timeout: Duration,
    /// A blocking check that outlived its timeout, still to be waited for.
    running: Option<PingFuture>,
}

impl Checker {
    /// One round: a new check, or more waiting for the one still running.
    async fn round(&mut self) -> std::result::Result<(), String> {
        let mut check = match self.running.take() {
            Some(running) => running,
            None => (self.ping.check)(),
        };
        match tokio::time::timeout(self.timeout, &mut check).await {
            Ok(r) => r,
            Err(_) => {
                if !self.ping.cancellable {
                    self.running = Some(check);
                    return Err(format!(
                        "still running after {:?} (a blocking check cannot be stopped; \
                         no new one starts until it returns)",
                        self.timeout
                    ));
                }
                Err(format!("no answer within {:?}", self.timeout))
            }
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string payload".into()
    }
}

impl fmt::Debug for Ping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ping")
    }
}

#[tracing::instrument(name = "registration_ping", level = "info", skip_all, fields(
    set = %ctx.set_path,
    addr = %ctx.addr,
))]
pub(super) async fn run_ping(
    ctx: Arc<Ctx>,
    ping: Ping,
    healthy: Arc<watch::Sender<Option<bool>>>,
    interval: Duration,
    timeout: Duration,
) {
    let mut close = ctx.close.subscribe();
    let mut checker = Checker {
        ping,
        timeout,
        running: None,
    };
    loop {
        if *close.borrow_and_update() {
            return;
        }
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = checker.round() => r,
            _ = close.changed() => return,
        };
        ctx.metrics.ping.record(started.elapsed().as_secs_f64());
        if result.is_err() {
            ctx.metrics.ping_failures.increment(1);
        }
        let ok = result.is_ok();
        let was = *healthy.borrow();
        if was != Some(ok) {
            match &result {
                Ok(()) => tracing::info!(addr = %ctx.addr, "health check passes; registering"),
                Err(e) => {
                    tracing::warn!(addr = %ctx.addr, error = %e, "health check fails; deregistering");
                    ctx.ledger().last_error = Some(Problem::Check(e.clone()));
                }
            }
            healthy.send_replace(Some(ok));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = close.changed() => {}
        }
    }
}

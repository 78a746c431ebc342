//! Background tasks that cannot die silently.
//!
//! Every long-lived task in this crate runs under [`spawn_supervised`]: if
//! its body panics (a bug, or a panic inside a dependency), the panic is
//! logged and the body is started again after a back-off. Task state lives
//! in shared structures, so a restart resumes rather than forgets.

use std::future::Future;
use std::time::Duration;

use crate::zookeeper::backoff::Backoff;

/// Spawns `make()` on the current runtime and restarts it whenever it panics.
/// A body that returns normally ends the supervision.
pub(crate) fn spawn_supervised<F, Fut>(name: &'static str, make: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            match tokio::spawn(make()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    tracing::error!(task = name, "background task panicked; restarting it");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_body_is_restarted() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let handle = spawn_supervised("test", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("finishes")
            .expect("supervisor itself never panics");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}

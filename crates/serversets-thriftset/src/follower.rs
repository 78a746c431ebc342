//! The background thread that keeps the pool's members in step with the
//! watcher and closes idle connections past their timeout.
//!
//! It cannot die silently: a panic is caught and logged, and `get` then
//! applies membership changes itself (see `Shared::follower_alive`). When the
//! source closes, the pool keeps its last members and the thread keeps
//! reaping.

use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;

use serversets_core::{Snapshot, Subscription};

use crate::pool::Shared;
use crate::BuildError;

/// Starts the follower on its own thread with a one-thread tokio runtime
/// (the watcher's change notifications are async).
pub(crate) fn spawn(shared: Arc<Shared>, sub: Subscription) -> Result<JoinHandle<()>, BuildError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(BuildError::Runtime)?;
    std::thread::Builder::new()
        .name("thriftset-follower".into())
        .spawn(move || {
            let run = catch_unwind(AssertUnwindSafe(|| runtime.block_on(follow(&shared, sub))));
            if run.is_err() {
                shared.follower_alive.store(false, Ordering::Release);
                tracing::error!(
                    "thriftset: membership follower panicked; get() now applies changes itself \
                     and idle connections are no longer reaped in the background"
                );
            }
        })
        .map_err(BuildError::Thread)
}

enum Event {
    Changed(Snapshot),
    SourceClosed,
    Tick,
    Stop,
}

async fn follow(shared: &Shared, mut sub: Subscription) {
    let mut source_open = true;
    while !shared.is_closed() {
        match next_event(shared, &mut sub, source_open).await {
            Event::Stop => break,
            Event::Changed(snap) => shared.apply(&snap),
            Event::SourceClosed => {
                tracing::warn!("thriftset: the membership source closed; keeping its last members");
                source_open = false;
            }
            Event::Tick => {}
        }
        shared.reap();
    }
    tracing::debug!("thriftset: follower stopped");
}

/// Waits for the first of: a membership change, the source closing, the reap
/// timer, or the set closing.
async fn next_event(shared: &Shared, sub: &mut Subscription, source_open: bool) -> Event {
    let mut changed = pin!(sub.changed());
    let mut stop = pin!(shared.stop.notified());
    let mut tick = pin!(async {
        match shared.reap_interval() {
            Some(every) => tokio::time::sleep(every).await,
            None => std::future::pending().await,
        }
    });
    poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Stop);
        }
        if source_open {
            if let Poll::Ready(next) = changed.as_mut().poll(cx) {
                return Poll::Ready(match next {
                    Some(snap) => Event::Changed(snap),
                    None => Event::SourceClosed,
                });
            }
        }
        if tick.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Tick);
        }
        Poll::Pending
    })
    .await
}

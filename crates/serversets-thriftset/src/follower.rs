//! The background thread that keeps the pool's members in step with the
//! watcher and closes idle connections past their timeout.
//!
//! Following is core's [`Follower`](serversets_core::balance::Follower),
//! with its one policy for every balancer: when the source closes the pool
//! keeps its last members (and this thread keeps reaping); when the
//! follower dies (a panic) that is logged, and every `get` then catches up
//! with the source itself (see `Shared::catch_up`). The thread is ours
//! because the pool is blocking code that may run outside any tokio
//! runtime: it runs the follower and the reaper on a one-thread runtime of
//! its own.

use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;

use crate::pool::Shared;
use crate::BuildError;

/// Starts the follower on its own thread with a one-thread tokio runtime
/// (the watcher's change notifications are async).
pub(crate) fn spawn(shared: Arc<Shared>) -> Result<JoinHandle<()>, BuildError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(BuildError::Runtime)?;
    std::thread::Builder::new()
        .name("thriftset-follower".into())
        .spawn(move || {
            let run = catch_unwind(AssertUnwindSafe(|| runtime.block_on(follow(&shared))));
            if run.is_err() {
                // Core's follower logged the death and `get` now catches up
                // itself; what only this thread did stops with it.
                tracing::error!(
                    "thriftset: the follower thread died; idle connections are no longer \
                     reaped in the background"
                );
            }
        })
        .map_err(BuildError::Thread)
}

enum Event {
    SourceClosed,
    Tick,
    Stop,
}

async fn follow(shared: &Shared) {
    let follower = shared.follower.clone();
    let mut changes = pin!(follower.run(|snap| {
        shared.apply(&snap);
        shared.reap();
        std::future::ready(())
    }));
    let mut source_open = true;
    while !shared.is_closed() {
        match next_event(shared, changes.as_mut(), source_open).await {
            Event::Stop => break,
            // Core's follower logged it and keeps the last members.
            Event::SourceClosed => source_open = false,
            Event::Tick => {}
        }
        shared.reap();
    }
    tracing::debug!("thriftset: follower stopped");
}

/// Waits for the first of: the source closing (membership changes are
/// applied inside `changes` meanwhile), the reap timer, or the set closing.
async fn next_event(
    shared: &Shared,
    mut changes: std::pin::Pin<&mut impl Future<Output = ()>>,
    source_open: bool,
) -> Event {
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
        if source_open && changes.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::SourceClosed);
        }
        if tick.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Tick);
        }
        Poll::Pending
    })
    .await
}

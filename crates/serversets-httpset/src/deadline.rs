//! An optional deadline around a future, costing nothing when unset.
//!
//! `tokio::time::timeout` always embeds a timer entry in the future; the
//! request path instead keeps a boxed timer only when a timeout is
//! configured, and arms it on first poll (so futures can be created outside
//! a runtime).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

/// An optional timer, armed on first poll. The duration is passed to
/// each poll (it lives in the set's configuration), keeping this small.
pub(crate) enum Timer {
    Off,
    Unarmed,
    Armed(Pin<Box<Sleep>>),
}

impl Timer {
    pub(crate) fn new(on: bool) -> Timer {
        if on {
            Timer::Unarmed
        } else {
            Timer::Off
        }
    }

    /// True once `after` has passed since the first poll; registers for a
    /// wake-up otherwise.
    #[inline]
    pub(crate) fn poll_expired(&mut self, after: Duration, cx: &mut Context<'_>) -> bool {
        match self {
            Timer::Off => false,
            Timer::Unarmed => {
                let mut sleep = Box::pin(tokio::time::sleep(after));
                let fired = sleep.as_mut().poll(cx).is_ready();
                *self = Timer::Armed(sleep);
                fired
            }
            Timer::Armed(sleep) => sleep.as_mut().poll(cx).is_ready(),
        }
    }
}

/// A future with an optional deadline: `Some(output)`, or `None` when the
/// deadline passed first.
pub(crate) struct WithDeadline<F> {
    fut: F,
    timer: Timer,
}

impl<F: Future + Unpin> WithDeadline<F> {
    pub(crate) fn new(fut: F, timed: bool) -> WithDeadline<F> {
        WithDeadline {
            fut,
            timer: Timer::new(timed),
        }
    }

    /// Polls the future, then the deadline (`after` from the first poll).
    pub(crate) fn poll_within(
        &mut self,
        after: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<Option<F::Output>> {
        if let Poll::Ready(out) = Pin::new(&mut self.fut).poll(cx) {
            return Poll::Ready(Some(out));
        }
        if self.timer.poll_expired(after, cx) {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run<F: Future + Unpin>(mut w: WithDeadline<F>, after: Duration) -> Option<F::Output> {
        std::future::poll_fn(|cx| w.poll_within(after, cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn fires_only_when_set() {
        let started = tokio::time::Instant::now();
        let never = WithDeadline::new(std::future::pending::<()>(), true);
        assert_eq!(run(never, Duration::from_secs(5)).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let ready = WithDeadline::new(std::future::ready(7), true);
        assert_eq!(run(ready, Duration::ZERO).await, Some(7));
        let slow = Box::pin(tokio::time::sleep(Duration::from_secs(60)));
        assert_eq!(
            run(WithDeadline::new(slow, false), Duration::ZERO).await,
            Some(())
        );
    }
}

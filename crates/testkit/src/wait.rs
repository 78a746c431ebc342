//! Waiting for background effects without fixed sleeps.
//!
//! One meaning everywhere: poll a condition every few milliseconds until it
//! holds, and fail the test, naming what was awaited, when it has not held
//! within the limit. A wait that returns quietly on timeout would let a test
//! pass without checking anything.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// Polls the async condition `cond` until it holds; panics naming `what`
/// once `within` has passed without it holding.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// let polls = AtomicU32::new(0);
/// testkit::eventually(Duration::from_secs(1), "three polls", || async {
///     polls.fetch_add(1, Ordering::Relaxed) == 2
/// })
/// .await;
/// assert_eq!(polls.load(Ordering::Relaxed), 3);
/// # }
/// ```
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() >= deadline {
            // Failing the calling test is this helper's job (see the module
            // docs): a wait that returned quietly would let it pass unchecked.
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for tests without an async runtime (the thread sleeps
/// between polls).
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// testkit::eventually_blocking(Duration::from_secs(1), "20 ms to pass", || {
///     start.elapsed() >= Duration::from_millis(20)
/// });
/// ```
pub fn eventually_blocking(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            // Failing the calling test is this helper's job (see the module
            // docs): a wait that returned quietly would let it pass unchecked.
            panic!("timed out after {within:?} waiting for: {what}");
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "waiting for: never")]
    fn a_condition_that_never_holds_fails_the_test() {
        eventually_blocking(Duration::from_millis(30), "never", || false);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: never")]
    async fn the_async_form_fails_the_same_way() {
        eventually(Duration::from_millis(30), "never", || async { false }).await;
    }
}

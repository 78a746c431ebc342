//! Requests in flight per member: the load that least-loaded choices
//! compare.
//!
//! The count goes up when a request is sent and down when its guard is
//! dropped, whatever way the request ends: answered, failed, timed out, or
//! its future dropped half-way. A counter decremented by hand leaks on the
//! paths nobody thought of, and a leaked count steers traffic away from a
//! healthy member for good.

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests in flight to one member.
///
/// ```
/// use std::sync::Arc;
/// use serversets_core::balance::InFlight;
///
/// let load = Arc::new(InFlight::default());
/// let a = InFlight::enter(load.clone());
/// let b = InFlight::enter(load.clone());
/// assert_eq!(load.get(), 2);
/// drop(a);
/// assert_eq!(load.get(), 1);
/// drop(b);
/// assert_eq!(load.get(), 0);
/// ```
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    /// Counts one more request on the counter `owner` holds; it is counted
    /// until the returned guard is dropped. `owner` is whatever keeps the
    /// counter alive (an `Arc` of it, or of a member's state that contains
    /// it: anything that dereferences to an `AsRef<InFlight>`), so the
    /// guard can outlive the balancer's table.
    pub fn enter<T>(owner: T) -> InFlightGuard<T>
    where
        T: Deref,
        T::Target: AsRef<InFlight>,
    {
        (*owner).as_ref().0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { owner }
    }

    /// Requests in flight now.
    #[inline]
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl AsRef<InFlight> for InFlight {
    fn as_ref(&self) -> &InFlight {
        self
    }
}

/// One request in flight; dropping it ends the count.
///
/// ```
/// use std::sync::Arc;
/// use serversets_core::balance::InFlight;
///
/// // A member's state can hold the counter; the guard keeps the state.
/// struct Member { load: InFlight, name: &'static str }
/// impl AsRef<InFlight> for Member {
///     fn as_ref(&self) -> &InFlight { &self.load }
/// }
///
/// let member = Arc::new(Member { load: InFlight::default(), name: "a" });
/// let guard = InFlight::enter(member.clone());
/// assert_eq!(guard.owner().name, "a");
/// assert_eq!(member.load.get(), 1);
/// drop(guard);
/// assert_eq!(member.load.get(), 0);
/// ```
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct InFlightGuard<T>
where
    T: Deref,
    T::Target: AsRef<InFlight>,
{
    owner: T,
}

impl<T> InFlightGuard<T>
where
    T: Deref,
    T::Target: AsRef<InFlight>,
{
    /// What holds the counter.
    pub fn owner(&self) -> &T {
        &self.owner
    }
}

impl<T> Drop for InFlightGuard<T>
where
    T: Deref,
    T::Target: AsRef<InFlight>,
{
    fn drop(&mut self) {
        (*self.owner).as_ref().0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_dropped_future_releases_its_count() {
        let load = Arc::new(InFlight::default());
        let request = {
            let guard = InFlight::enter(load.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            }
        };
        assert_eq!(load.get(), 1);
        drop(request); // cancelled before it was ever polled
        assert_eq!(load.get(), 0);
    }

    #[test]
    fn a_panic_releases_its_count() {
        let load = Arc::new(InFlight::default());
        let l = load.clone();
        let result = std::panic::catch_unwind(move || {
            let _guard = InFlight::enter(l);
            panic!("request handler bug");
        });
        assert!(result.is_err());
        assert_eq!(load.get(), 0);
    }

    #[test]
    fn borrowed_counters_work_too() {
        let load = InFlight::default();
        {
            let _a = InFlight::enter(&load);
            let _b = InFlight::enter(&load);
            assert_eq!(load.get(), 2);
        }
        assert_eq!(load.get(), 0);
    }
}

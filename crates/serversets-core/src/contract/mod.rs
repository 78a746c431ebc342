//! The ZooKeeper-free contract every source and balancer shares: addresses,
//! members, snapshots of a set, the [`Watcher`](watcher::Watcher) trait with
//! its [`Publisher`](watcher::Publisher), and the Finagle data formats
//! (member JSON, `vector_` weights) with the rules a watch reads them by.
//!
//! Nothing here imports from the ZooKeeper layer (`crate::zookeeper`), so
//! balancers built with `default-features = false` get all of it and none of
//! ZooKeeper.

pub(crate) mod address;
pub(crate) mod classify;
pub mod codec;
pub(crate) mod member;
pub(crate) mod snapshot;
pub mod vector;
pub(crate) mod watcher;

/// An error and its causes on one line (`what: why: why`), the way this
/// crate shows an error whose cause is its `source()` (in
/// `Watch::rejected()` and in logs).
#[cfg_attr(not(feature = "zookeeper"), allow(dead_code))]
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut shown = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        shown.push_str(": ");
        shown.push_str(&c.to_string());
        cause = c.source();
    }
    shown
}

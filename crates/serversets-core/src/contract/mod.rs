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

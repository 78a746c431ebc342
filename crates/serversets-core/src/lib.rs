//! Finagle-compatible ServerSet service discovery on ZooKeeper, and the
//! [`Watcher`] contract every serversets balancer consumes.
//!
//! A server set is a ZooKeeper path whose ephemeral `member_` children each
//! describe one live server in the JSON format Finagle, Twitter commons,
//! Aurora and go.serversets share. This crate registers servers there and
//! watches the set for clients.
//!
//! Balancers (`serversets-mcset`, `-httpset`, `-thriftset`) and the fixed-list
//! source (`serversets-fixedset`) depend only on the ZooKeeper-free part of
//! this crate: build it with `default-features = false` to get [`Watcher`],
//! [`Snapshot`], [`Member`] and [`HostPort`] without any ZooKeeper code.
//!
//! ```
//! use serversets_core::{HostPort, Member, Publisher, Watcher};
//!
//! // Any source publishes member lists; any consumer reads snapshots.
//! let source = Publisher::new();
//! source.publish([Member::from_addr("10.0.0.1:8080".parse::<HostPort>()?)]);
//! let watcher = source.feed();
//! for member in &watcher.snapshot() {
//!     println!("{} -> {}", member.id(), member.addr());
//! }
//! # Ok::<(), serversets_core::AddressError>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod balance;
mod contract;
#[cfg(feature = "zookeeper")]
mod zookeeper;

pub use contract::address::{AddressError, HostPort};
pub use contract::classify::{classify, MemberFilter, Reading, Verdict};
pub use contract::codec;
pub use contract::member::{Member, MemberBuilder, MemberId, Status};
pub use contract::snapshot::{Diff, Snapshot};
pub use contract::vector;
pub use contract::watcher::{Feed, Publisher, Subscription, Watcher};

#[cfg(feature = "zookeeper")]
pub use zookeeper::error::{Error, Result};
#[cfg(feature = "zookeeper")]
pub use zookeeper::namespace::{validate_path, Environment, PathFn};
#[cfg(feature = "zookeeper")]
pub use zookeeper::registration::{Ping, Registration, RegistrationBuilder, RegistrationState};
#[cfg(feature = "zookeeper")]
pub use zookeeper::security::TlsProblem;
#[cfg(feature = "tls")]
pub use zookeeper::security::ZkTls;
#[cfg(feature = "zookeeper")]
pub use zookeeper::serverset::{AclPolicy, ServerSet, ServerSetBuilder};
#[cfg(feature = "zookeeper")]
pub use zookeeper::session::{Health, Session, SessionBuilder};
#[cfg(feature = "zookeeper")]
pub use zookeeper::watch::{Watch, WatchBuilder, WatchStats, WatchStrategy};
/// The ZooKeeper client this crate is built on, for [`AclPolicy::Custom`].
#[cfg(feature = "zookeeper")]
pub use zookeeper_client;

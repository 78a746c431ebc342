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

mod address;
pub mod balance;
mod classify;
pub mod codec;
mod member;
mod snapshot;
pub mod vector;
mod watcher;

#[cfg(feature = "zookeeper")]
mod backoff;
#[cfg(feature = "zookeeper")]
mod error;
#[cfg(feature = "zookeeper")]
mod namespace;
#[cfg(feature = "zookeeper")]
mod read;
#[cfg(feature = "zookeeper")]
mod registration;
#[cfg(feature = "zookeeper")]
mod security;
#[cfg(feature = "zookeeper")]
mod serverset;
#[cfg(feature = "zookeeper")]
mod session;
#[cfg(feature = "zookeeper")]
mod supervise;
#[cfg(feature = "zookeeper")]
mod watch;

#[cfg(feature = "zookeeper")]
pub use error::{Error, Result};
#[cfg(feature = "zookeeper")]
pub use namespace::{validate_path, Environment, PathFn};
#[cfg(feature = "zookeeper")]
pub use registration::{Ping, Registration, RegistrationBuilder, RegistrationState};
#[cfg(feature = "zookeeper")]
pub use security::TlsProblem;
#[cfg(feature = "tls")]
pub use security::ZkTls;
#[cfg(feature = "zookeeper")]
pub use serverset::{AclPolicy, ServerSet, ServerSetBuilder};
#[cfg(feature = "zookeeper")]
pub use session::{Health, Session, SessionBuilder};
#[cfg(feature = "zookeeper")]
pub use watch::{Watch, WatchBuilder, WatchStats, WatchStrategy};
/// The ZooKeeper client this crate is built on, for [`AclPolicy::Custom`].
#[cfg(feature = "zookeeper")]
pub use zookeeper_client;

pub use address::{AddressError, HostPort};
pub use classify::{classify, MemberFilter, Reading, Verdict};
pub use member::{Member, MemberBuilder, MemberId, Status};
pub use snapshot::{Diff, Snapshot};
pub use watcher::{Feed, Publisher, Subscription, Watcher};

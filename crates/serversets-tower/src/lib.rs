//! tower and tonic over serversets: a tower `Discover` for any
//! [`Watcher`](serversets_core::Watcher) (a ZooKeeper server set, a fixed
//! list, your own), the load tower's p2c balancer compares (weighted, and
//! wary of failing members), a fail-fast layer for empty sets, and, with
//! the `tonic` feature, a tonic `Channel` whose endpoints follow a set.
//!
//! Like the other serversets balancers it depends only on the ZooKeeper-free
//! part of `serversets-core`, and shares its
//! [`balance`](serversets_core::balance) parts: the diff of two snapshots
//! into keyed changes and the in-flight counter released on drop. It does
//! not eject: [`MemberLoad`] raises a failing member's load for p2c
//! instead, and says why that differs.
//!
//! - [`WatcherDiscover`]: a `Stream` of [`tower::discover::Change`]s keyed by
//!   [`MemberId`](serversets_core::MemberId), each member's service built by
//!   a function; [`MakeDiscover`] builds them with a `MakeService`
//!   (asynchronously, retrying failures).
//! - [`MemberLoad`]: in-flight requests divided by the member's weight, and
//!   infinite for a second after a failure; tower's `PendingRequests` and
//!   `PeakEwma` work too, unweighted.
//! - [`FailFast`] / [`FailFastLayer`]: [`NoMembers`] after a bounded wait
//!   when the balancer has no member (tower's `Balance` would wait for
//!   ever); [`MemberCount`] is what it looks at.
//! - `tonic::BalanceChannel` (feature `tonic`): keeps
//!   `Channel::balance_channel`'s sender in step with a watcher.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use serversets_core::Member;
//! use serversets_fixedset::FixedSet;
//! use serversets_tower::{FailFastLayer, MemberLoad, WatcherDiscover};
//! use tower::balance::p2c::Balance;
//! use tower::buffer::Buffer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let set = FixedSet::new(["10.0.0.1:80", "10.0.0.2:80"])?;
//! let discover = WatcherDiscover::new(set, |member: &Member| {
//!     let addr = member.addr().to_string();
//!     // Stands in for a client of `addr` (a tonic Channel, a hyper client).
//!     let client = service_fn(move |req: String| {
//!         let addr = addr.clone();
//!         async move { Ok::<_, Infallible>(format!("{addr} got {req}")) }
//!     });
//!     MemberLoad::new(client, member)
//! });
//! let members = discover.member_count();
//! // Shared by clones through a buffer; fails fast when the set is empty.
//! let client = ServiceBuilder::new()
//!     .layer(FailFastLayer::new(members, Duration::from_secs(1)))
//!     .service(Buffer::new(Balance::new(discover), 1024));
//! let answer = client.clone().oneshot("ping".to_string()).await?;
//! assert!(answer.ends_with("got ping"));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod discover;
mod error;
mod fail_fast;
mod follow;
mod load;
mod make;
mod member_count;
#[cfg(feature = "tonic")]
pub mod tonic;

pub use discover::{MakeMember, WatcherDiscover};
pub use error::{Error, NoMembers};
pub use fail_fast::{FailFast, FailFastFuture, FailFastLayer};
pub use load::{LoadFuture, MemberLoad, Score, DEFAULT_FAILURE_COOLDOWN};
pub use make::{MakeDiscover, DEFAULT_RETRY_MAX, DEFAULT_RETRY_MIN};
pub use member_count::MemberCount;

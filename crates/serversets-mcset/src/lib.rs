//! Consistent hashing over a memcache pool that follows a server set,
//! byte-compatible with Finagle's memcached client and libmemcached.
//!
//! Rust, Scala and C clients sharing one memcache pool must agree on which
//! server holds each key. This crate builds the same ketama ring they do
//! (MD5, 160 points per server at equal weight, weighted point counts, the
//! same server identifiers) and keeps it in sync with any
//! [`serversets_core::Watcher`]: a ZooKeeper watch, a `FixedSet`, your own.
//!
//! * [`McSet`]: the live pool. `pick(key)` returns the member a key lives
//!   on; `each()` lists every member. Rebuilds run on a background task and
//!   are swapped in atomically; readers never wait.
//! * [`Ring`]: the pure, synchronous ring, for tools that map keys over a
//!   fixed list (`--node HOST:PORT[=WEIGHT]`, see [`WeightedNode`]).
//! * [`RingKind::GoMcset`]: go.serversets' mcset ring (groupcache
//!   consistent hash, 32-bit MurmurHash3, 150 replicas) for clients
//!   migrating from Go, selected explicitly.
//! * Feature `client`: `McSet::get`, `set` and `delete` talk to the chosen
//!   member's memcached through `async-memcached`, one connection per
//!   member.
//! * Feature `test-util`: hooks for tests (`McSet::client_count`).
//!
//! Words: a *member* is an entry of the watched set; a *node* is an entry
//! of a ring (one per member); a ring's *points* are the hashes its nodes
//! own.
//!
//! ```
//! use serversets_mcset::{McSet, Ring, WeightedNode};
//! use serversets_fixedset::FixedSet;
//!
//! // A fixed list, no runtime needed: what a `locate` command does.
//! let ring = Ring::ketama(["10.0.1.1:11211=2", "10.0.1.2:11211"]
//!     .map(|n| n.parse::<WeightedNode>().unwrap()));
//! let at = ring.locate("user:42").expect("non-empty ring");
//! println!("user:42 -> {} (hash {}, point {})", at.node.addr(), at.key_hash, at.point);
//!
//! // A watched set (here a FixedSet; a ZooKeeper watch works the same).
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let set = McSet::new(FixedSet::new(["10.0.1.1:11211", "10.0.1.2:11211"])?)?;
//! let member = set.pick("user:42")?;
//! assert!(ring.nodes().iter().any(|n| n.addr() == member.addr()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

// The pure ring: hashes, points, the sorted continuum, nodes.
mod continuum;
mod hash;
mod node;
mod points;
mod ring;

// The live set: the McSet handle, the routing table readers load, the
// follower that rebuilds it, memcached clients, metrics.
#[cfg(feature = "client")]
mod client;
mod follow;
mod mcset;
mod metrics;
mod routing;

mod error;

pub use error::{Error, RingError};
pub use follow::SyncState;
pub use mcset::{McSet, McSetBuilder, Members};
pub use node::{NodeIdentity, WeightedNode};
pub use ring::{Location, Node, Ring, RingBuilder, RingKind};

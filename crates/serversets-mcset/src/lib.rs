//! Consistent hashing over a memcache pool that follows a server set,
//! byte-compatible with Finagle's memcached client and libmemcached.
//!
//! Rust, Scala and C clients sharing one memcache pool must agree on which
//! server holds each key. This crate builds the same ketama ring they do
//! (MD5, 160 points per server at equal weight, weighted point counts, the
//! same server identifiers) and keeps it in sync with any
//! [`serversets_core::Watcher`]: a ZooKeeper watch, a `FixedSet`, your own.
//!
//! * [`McSet`]: the live pool. `pick_server(key)` returns the member a key
//!   lives on; `each()` lists every server. Rebuilds run on a background
//!   task and are swapped in atomically; readers never wait.
//! * [`Ring`]: the pure, synchronous ring, for tools that map keys over a
//!   fixed list (`--node HOST:PORT[=WEIGHT]`, see [`WeightedNode`]).
//! * [`RingKind::GoMcset`]: go.serversets' mcset ring (groupcache
//!   consistent hash, 32-bit MurmurHash3, 150 replicas) for clients
//!   migrating from Go, selected explicitly.
//! * Feature `client`: `McSet::get`, `set` and `delete` talk to the chosen
//!   server through `async-memcached`, one connection per server.
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
//! let server = set.pick_server("user:42")?;
//! assert!(ring.nodes().iter().any(|n| n.addr() == server.addr()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "client")]
mod client;
mod continuum;
mod error;
mod hash;
mod mcset;
mod md5x;
mod node;
mod points;
mod ring;

pub use error::{McSetError, RingError};
pub use mcset::{McSet, McSetBuilder, Servers, SyncState};
pub use node::{NodeIdentity, WeightedNode};
pub use ring::{Location, Node, Ring, RingBuilder, RingKind};

//! Public test vectors for the hash rings, kept once for every crate that
//! checks against them (mcset's rings and the CLI's `locate`).
//!
//! ```
//! // Every vector file is "key server" lines after an optional header.
//! assert!(testkit::vectors::FINAGLE_KETAMA.lines().count() > 10);
//! ```

/// Ketama (libmemcached-compatible, as Finagle uses) key-to-node vectors
/// over eight weighted nodes; the header lists them.
pub const FINAGLE_KETAMA: &str = include_str!("../data/finagle-ketama-vectors.txt");

/// go.serversets' mcset ring over three nodes.
pub const GO_3_NODES: &str = include_str!("../data/vectors-3-nodes.txt");

/// go.serversets' mcset ring where points collide (ties go to the larger
/// endpoint).
pub const GO_COLLISIONS: &str = include_str!("../data/vectors-collisions.txt");

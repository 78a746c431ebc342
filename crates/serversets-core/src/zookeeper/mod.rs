//! The ZooKeeper layer: a supervised [`Session`](session::Session) per
//! ensemble, server sets on it, registrations that keep a member in a set
//! and watches that follow one, all built on the ZooKeeper-free contract
//! (`crate::contract`) and never the other way round.

pub(crate) mod backoff;
pub(crate) mod error;
pub(crate) mod namespace;
pub(crate) mod read;
pub(crate) mod registration;
pub(crate) mod security;
pub(crate) mod serverset;
pub(crate) mod session;
pub(crate) mod supervise;
pub(crate) mod watch;

//! A connection pool for Apache Thrift clients over a live server set that
//! sends each call to the member with the fewest requests in flight (least
//! outstanding requests).
//!
//! [`ThriftSet`] follows any [`serversets_core::Watcher`] (a ZooKeeper watch,
//! a `FixedSet`, your own) and keeps a pool of TCP connections per member.
//! [`ThriftSet::get`] hands out a [`Connection`] to the member with the
//! fewest requests in flight; you build your generated client on it with
//! [`Connection::client`], which caches the client on the connection for the
//! next caller. Dropping the guard returns the connection; a transport error
//! reported with [`Connection::report_error`] (or
//! [`Connection::discard`]) closes it and counts against the member, and a
//! member that keeps failing is skipped for a while (ejected).
//!
//! ```
//! use std::net::TcpListener;
//! use serversets_fixedset::FixedSet;
//! use serversets_thriftset::{Protocol, ThriftSet, Transport};
//!
//! # let server = TcpListener::bind("127.0.0.1:0")?;
//! # let addr = server.local_addr()?.to_string();
//! let set = ThriftSet::builder()
//!     .transport(Transport::Framed)
//!     .protocol(Protocol::Binary)
//!     .max_active(8)
//!     .build(FixedSet::new([addr])?)?;
//!
//! let mut conn = set.get()?;
//! // With code from `thrift --gen rs`, this would be:
//! //   let client = conn.client(EchoSyncClient::new)?;
//! //   match client.echo("hi".into()) {
//! //       Ok(reply) => { /* use it */ }
//! //       Err(e) => { conn.report_error(&e); }
//! //   }
//! let (_input, _output) = conn.client(|input, output| (input, output))?;
//! drop(conn); // returned to the pool, client and all
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate's `examples/echo.rs` runs the whole cycle against real Thrift
//! servers.
#![deny(missing_docs)]

mod bounded;
mod config;
mod connection;
mod error;
mod exchange;
mod follower;
mod framed;
mod link;
mod metrics;
mod pool;
mod set;

pub use config::{
    Protocol, ThriftSetBuilder, Transport, DEFAULT_CHECKOUT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_EJECT_AFTER, DEFAULT_EJECT_FOR, DEFAULT_IDLE_TIMEOUT, DEFAULT_IO_TIMEOUT,
    DEFAULT_MAX_ACTIVE, DEFAULT_MAX_IDLE,
};
pub use connection::Connection;
pub use error::{BuildError, Error};
pub use link::{InputProtocol, OutputProtocol};
pub use set::{MemberStats, ThriftSet};

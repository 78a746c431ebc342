//! An HTTP client that balances over a live server set.
//!
//! [`HttpSet`] takes ordinary [`http::Request`]s whose URI names only a path,
//! and sends each to the next member of any [`serversets_core::Watcher`]: a
//! ZooKeeper server set watched through `serversets-core`, a
//! `serversets-fixedset` list, or your own source. It is built on hyper 1 and
//! hyper-util's pooled client, and is a [`tower::Service`], so tower layers
//! compose with it.
//!
//! ```
//! use serversets_fixedset::FixedSet;
//! use serversets_httpset::HttpSet;
//! # use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let live = listener.local_addr()?;
//! # tokio::spawn(async move {
//! #     let (mut sock, _) = listener.accept().await.unwrap();
//! #     let mut buf = [0u8; 1024];
//! #     let _ = sock.read(&mut buf).await;
//! #     sock.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
//! # });
//! # let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?; // closed at once
//! // One member refuses connections; the request is retried on the other.
//! let members = FixedSet::new([dead.to_string(), live.to_string()])?;
//! let set = HttpSet::new(members);
//! let response = set.get("/ping").await?;
//! assert_eq!(response.status(), 204);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Balancing
//! Round-robin by default: an atomic counter over the members of the
//! current snapshot, no lock on the request path. [`Balance::LeastOutstanding`]
//! instead draws two members at random and takes the one with fewer
//! requests in flight (awaiting a response head). Both are O(1) per request.
//!
//! Members' weights ([`serversets_core::Member::weight`], from Finagle
//! `vector_` nodes) set their shares: round-robin follows a smooth weighted
//! schedule precomputed on each membership change (still one atomic
//! increment per pick), and least-outstanding draws in proportion to weight
//! and compares requests in flight divided by weight. Weight 0 gets no
//! traffic while another member has weight; equal weights (or all 0) run
//! the unweighted path. See [`Balance`].
//!
//! # HTTPS
//! The default connector is hyper-util's plain TCP `HttpConnector`. With the
//! `rustls` feature, [`HttpSetBuilder::rustls`] sends every request over
//! TLS through hyper-rustls and speaks HTTP/2 to servers that pick `h2` by
//! ALPN (HTTP/1.1 to the others); [`HttpSetBuilder::rustls_for_name`] verifies one
//! service name instead of each member's host. Any other TLS connector fits
//! [`HttpSetBuilder::connector`] with [`HttpSetBuilder::https`].
//!
//! # Membership
//! Every request reads the watcher's current snapshot (an atomic load) and
//! uses the members of exactly that snapshot. Each member has its own
//! hyper-util connection pool; when a member leaves the set its pool is
//! dropped as soon as its in-flight requests finish, closing its idle
//! connections then rather than at the idle timeout. A request that finds a
//! rebuild of the member table under way on another thread uses the
//! previous table rather than wait for it. A background task (core's
//! shared follower, [`serversets_core::balance::Follower`]) applies changes
//! as they happen, so this does not wait for traffic; it ends when the set
//! is dropped or the source closes (logged). Should it die any other way
//! (its runtime shut down, or a panic), it is logged at error level and not
//! restarted, as in every balancer of this workspace: requests keep the set
//! in step on their own, and a departed member's idle connections then
//! close at the next request.
//!
//! # Retries and bodies
//! An attempt that fails before a connection exists (refused, connect
//! timeout, reset on connect: hyper-util's `is_connect()`) is retried on the
//! next member for any method, at most [`HttpSetBuilder::retries`] times. The
//! request body is handed to hyper only when hyper first polls it, which it
//! does only on an established connection, so such a retry sends the
//! caller's untouched body, whatever its type.
//!
//! Idempotent requests (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are also
//! retried when the connection fails mid-exchange or an
//! [`attempt_timeout`](HttpSetBuilder::attempt_timeout) expires
//! ([`HttpSetBuilder::retry_idempotent`]), and on chosen statuses
//! ([`HttpSetBuilder::retry_status`]). Once a body has been sent it is replayed only
//! if it was recorded whole while streaming: bodies up to
//! [`HttpSetBuilder::replay_limit`] bytes are kept as reference-counted `Bytes`.
//! Empty bodies are always replayable, and so is a recorded body of exact
//! length once that many bytes are in, even if it never reports its end. A
//! body is never sent twice otherwise; the call fails with [`Error::Request`]
//! instead.
//!
//! Errors describe the whole request: [`Error::Connect`] means no attempt
//! reached a server; when an earlier one may have and only the last could
//! not connect, the error is [`Error::ConnectAfterSent`].
//!
//! # Passive health
//! [`HttpSetBuilder::eject_after`] consecutive failures (connect failures and
//! attempt timeouts; default [`DEFAULT_EJECT_AFTER`], 5) eject a member for
//! [`HttpSetBuilder::eject_for`] (default [`DEFAULT_EJECT_FOR`], 10 s): the
//! rule and defaults of every balancer of this workspace, implemented once
//! in [`serversets_core::balance::health`]. After the cool-down,
//! live traffic goes to it again: an answer re-admits it, one more failure
//! ejects it again. A late answer to a request sent before the ejection does
//! not count. The last member in service is never ejected, and if
//! concurrent ejections leave none, all are used anyway. Ejections and
//! re-admissions are `tracing` events at warn and info level;
//! [`HttpSet::health`] reads the current state.
//!
//! # Timeouts
//! [`HttpSetBuilder::connect_timeout`] (default 1 s), [`HttpSetBuilder::attempt_timeout`]
//! and [`HttpSetBuilder::request_timeout`] (both off by default), or any tower
//! timeout layer over the service. Timeouts need a Tokio runtime with its
//! time driver enabled.
//!
//! # Runtime
//! Requests must run on a Tokio runtime with its time driver enabled
//! (`enable_time()` or `enable_all()` on a `tokio::runtime::Builder`;
//! `#[tokio::main]` and `#[tokio::test]` enable it). This holds even with
//! no timeout configured: the default connect timeout and the connection
//! pool's idle timer are Tokio timers, and Tokio panics when a timer is used
//! on a runtime built without time.
//!
//! # Empty sets
//! With no members a call fails at once with [`Error::NoMembers`], or waits
//! up to [`HttpSetBuilder::wait_for_members`] for the first one.

#![deny(missing_docs)]

mod body;
mod builder;
mod call;
mod deadline;
mod error;
mod follower;
mod health;
mod inner;
mod metrics;
mod select;
mod service;
mod set;
mod table;
#[cfg(feature = "rustls")]
mod tls;
mod weights;

pub use builder::{
    HttpSetBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EJECT_AFTER, DEFAULT_EJECT_FOR,
    DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_REPLAY_LIMIT, DEFAULT_RETRIES,
};
pub use call::ResponseFuture;
pub use error::{BuildError, Error};
pub use health::MemberHealth;
pub use select::Balance;
pub use set::HttpSet;
#[cfg(feature = "rustls")]
pub use tls::RustlsConnector;

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

//! Shared by the integration tests, the benchmark and the example: the
//! generated `Echo` service, real Thrift servers on loopback, raw sockets
//! that misbehave on purpose, and the code generator invocation.
//!
//! Each test binary uses a different part of this module.
#![allow(dead_code, unused_imports)]

#[allow(clippy::all, clippy::pedantic)]
pub mod echo;

pub mod backend;
pub mod codegen;
pub mod net;

pub use backend::{Backend, BackendOptions, Stats};

use serversets_thriftset::{Connection, InputProtocol, OutputProtocol};

pub use echo::TEchoSyncClient;

/// The generated client over the pool's protocols.
pub type Client = echo::EchoSyncClient<InputProtocol, OutputProtocol>;

/// Runs `f` with the client cached on `conn` (building it on first use), and
/// reports any error to the pool, as an application would.
pub fn with_client<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Client) -> thrift::Result<T>,
) -> thrift::Result<T> {
    let client = conn
        .client(echo::EchoSyncClient::new)
        .map_err(|e| thrift::Error::from(std::io::Error::other(e.to_string())))?;
    let out = f(client);
    if let Err(e) = &out {
        conn.report_error(e);
    }
    out
}

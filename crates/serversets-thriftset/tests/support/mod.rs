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

use std::sync::Arc;

use serversets_thriftset::{Connection, InputProtocol, OutputProtocol, ThriftSet};

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

/// Makes one `echo` call on `conn` and checks that `msg` comes back.
pub fn assert_echo(conn: &mut Connection, msg: &str) {
    let reply = with_client(conn, |c| c.echo(msg.to_string())).unwrap();
    assert_eq!(reply, msg);
}

/// Runs `callers` threads at once, each making `per_caller` calls of
/// `slow(ms)` through `set` one after the other, and waits for them all.
/// Every call must succeed.
pub fn slow_calls(set: &Arc<ThriftSet>, callers: usize, per_caller: usize, ms: i32) {
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let set = set.clone();
            std::thread::spawn(move || {
                for _ in 0..per_caller {
                    let mut conn = set.get().unwrap();
                    assert_eq!(with_client(&mut conn, |c| c.slow(ms)).unwrap(), ms);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

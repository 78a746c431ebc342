//! The whole cycle with a generated client: two real Thrift `Echo` servers
//! on loopback, a `ThriftSet` over them, and callers that cache the client
//! on each pooled connection and report errors back to the pool.
//!
//! Run with `cargo run -p serversets-thriftset --example echo`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use serversets_fixedset::FixedSet;
use serversets_thriftset::ThriftSet;
use support::echo::{EchoSyncClient, TEchoSyncClient};
use support::Backend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = [Backend::start(), Backend::start()];
    let members = FixedSet::new(servers.iter().map(|s| s.addr()))?;
    let set = Arc::new(ThriftSet::builder().max_active(4).build(members)?);

    let callers: Vec<_> = (0..4)
        .map(|caller| {
            let set = set.clone();
            std::thread::spawn(move || -> Result<(), serversets_thriftset::Error> {
                for call in 0..5 {
                    let mut conn = set.get()?;
                    let addr = conn.addr().clone();
                    // Built once per connection, then reused from the cache.
                    let client = conn.client(EchoSyncClient::new)?;
                    match client.echo(format!("caller {caller} call {call}")) {
                        Ok(reply) => println!("{addr} answered {reply:?}"),
                        Err(e) => {
                            // Transport errors close the connection and count
                            // against the member.
                            conn.report_error(&e);
                            eprintln!("{addr} failed: {e}");
                        }
                    }
                    // Dropping `conn` returns it (and its client) to the pool.
                }
                Ok(())
            })
        })
        .collect();
    for caller in callers {
        caller.join().map_err(|_| "caller panicked")??;
    }
    for member in set.members() {
        println!(
            "{}: {} idle, {} in flight",
            member.addr, member.idle, member.in_flight
        );
    }
    Ok(())
}

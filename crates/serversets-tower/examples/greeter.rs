//! A greeter client over a watched server set.
//!
//! Starts three greeter servers on loopback, puts them in a set, and sends
//! requests through a tonic channel that follows the set, then through
//! tower's p2c balancer with weighted load. With `SERVERSETS_ZK` set (see
//! `cargo xtask zk start`) the servers register in that ZooKeeper and the
//! client watches it; otherwise the set is a `FixedSet`.
//!
//! ```sh
//! cargo run -p serversets-tower --features tonic --example greeter
//! eval "$(cargo xtask zk start | grep '^export')"   # optional: real ZooKeeper
//! cargo run -p serversets-tower --features tonic --example greeter
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serversets_core::{Environment, Member, ServerSet, Watcher};
use serversets_fixedset::FixedSet;
use serversets_tower::tonic::BalanceChannel;
use serversets_tower::{FailFastLayer, MemberLoad, WatcherDiscover};
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::{Layer, ServiceBuilder};

/// The code tonic-build generates from `proto/greeter.proto`.
#[allow(clippy::all, clippy::pedantic)]
mod greeter {
    include!("../tests/support/greeter.rs");
}

use greeter::greeter_client::GreeterClient;
use greeter::greeter_server::{Greeter, GreeterServer};
use greeter::{HelloReply, HelloRequest};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Three servers, as three processes would be.
    let mut addrs = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        addrs.push(serve(name).await?);
    }

    // The set: registered in ZooKeeper and watched, or a fixed list.
    let (watcher, _registrations): (Arc<dyn Watcher>, _) = match std::env::var("SERVERSETS_ZK") {
        Ok(zk) => {
            let set = ServerSet::new(Environment::Test, "greeter", zk.split(','))?;
            let mut registrations = Vec::new();
            for addr in &addrs {
                registrations.push(
                    set.register_endpoint("127.0.0.1", addr.port(), None)
                        .await?,
                );
            }
            let watch = set.watch().await?;
            let mut changes = watch.subscribe();
            while watch.snapshot().len() < addrs.len() {
                changes.changed().await.ok_or("watch closed")?;
            }
            println!("watching {} members in ZooKeeper", watch.snapshot().len());
            (Arc::new(watch), registrations)
        }
        Err(_) => {
            let set = FixedSet::new(addrs.iter().map(|a| a.to_string()))?;
            println!(
                "a fixed set of {} members (set SERVERSETS_ZK for ZooKeeper)",
                set.snapshot().len()
            );
            (Arc::new(set), Vec::new())
        }
    };

    // 1. A tonic channel whose endpoints follow the set, failing fast with
    //    `Unavailable` when the set has been empty for a second.
    let (channel, sync) = BalanceChannel::new(watcher.clone())
        .configure(|_member, endpoint| {
            Ok::<_, Error>(endpoint.timeout(Duration::from_secs(2)).tcp_nodelay(true))
        })
        .build()?;
    let channel = sync.fail_fast(Duration::from_secs(1)).layer(channel);
    let answered = ask(GreeterClient::new(channel), 30).await?;
    println!("through the tonic channel: {answered:?}");

    // 2. tower's p2c over the same set: a lazily connecting channel per
    //    member, its load weighted by the member's weight.
    let discover = WatcherDiscover::new(watcher, |member: &Member| {
        let endpoint = Endpoint::from_shared(format!("http://{}", member.addr()))
            .expect("a host:port makes a valid URI")
            .timeout(Duration::from_secs(2));
        MemberLoad::new(endpoint.connect_lazy(), member)
    });
    let service = ServiceBuilder::new()
        .layer(
            FailFastLayer::new(discover.member_count(), Duration::from_secs(1)).grpc_unavailable(),
        )
        .service(Buffer::new(Balance::new(discover), 1024));
    let answered = ask(GreeterClient::new(service), 30).await?;
    println!("through tower's p2c: {answered:?}");
    Ok(())
}

/// Sends `n` requests through `client`, one after the other, and counts the
/// answers by the server that gave them.
async fn ask<T>(mut client: GreeterClient<T>, n: usize) -> Result<BTreeMap<String, usize>, Error>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut answered = BTreeMap::new();
    for i in 0..n {
        let reply = client
            .say_hello(HelloRequest {
                name: format!("request {i}"),
            })
            .await?;
        *answered.entry(reply.into_inner().server).or_insert(0) += 1;
    }
    Ok(answered)
}

/// A greeter that says who it is.
struct Greet(&'static str);

#[tonic::async_trait]
impl Greeter for Greet {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: format!("hello {}", request.into_inner().name),
            server: self.0.to_string(),
        }))
    }
}

/// Serves a greeter on a free loopback port, in the background.
async fn serve(name: &'static str) -> Result<std::net::SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(Greet(name)))
            .serve_with_incoming(incoming),
    );
    Ok(addr)
}

//! Shared by the integration tests (the benchmark and the example include
//! only the generated greeter code): real tonic gRPC servers on loopback
//! (each on its own runtime, so it can be killed abruptly), the clients the
//! tests build over them, the request loops and the checks the tests share,
//! and an example retry policy.
//!
//! Each test binary uses a different part of this module. Waiting for a
//! background effect is `testkit::eventually`.
#![allow(dead_code, unused_imports)]

/// The code tonic-build generates from `proto/greeter.proto` (see
/// `codegen`). Included rather than a module file so rustfmt leaves the
/// generated text as it is.
#[allow(clippy::all, clippy::pedantic)]
pub mod greeter {
    include!("greeter.rs");
}

pub mod codegen;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greeter::greeter_client::GreeterClient;
use greeter::greeter_server::{Greeter, GreeterServer};
use greeter::{HelloReply, HelloRequest};
use serversets_core::Member;
use serversets_fixedset::FixedSet;
use serversets_tower::{FailFastLayer, MemberLoad, NoMembers};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Discover;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// The greeter: answers `hello NAME` with its own name; a request named
/// `invalid` gets `InvalidArgument` (an answer, not a transport failure).
struct Greet {
    name: String,
    hits: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Greeter for Greet {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let name = request.into_inner().name;
        if name == "invalid" {
            return Err(Status::invalid_argument("invalid name"));
        }
        Ok(Response::new(HelloReply {
            message: format!("hello {name}"),
            server: self.name.clone(),
        }))
    }
}

/// One greeter server on 127.0.0.1, on a runtime of its own (one worker
/// thread), so killing it drops every connection at once, as a crash would.
pub struct TestServer {
    pub name: String,
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    pub fn start(name: &str) -> TestServer {
        TestServer::start_on(name, 0)
    }

    /// One server per name, in order.
    pub fn start_all<const N: usize>(names: [&str; N]) -> [TestServer; N] {
        names.map(TestServer::start)
    }

    /// Starts on a given port (0: any free one).
    pub fn start_on(name: &str, port: u16) -> TestServer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("greeter-{name}"))
            .enable_all()
            .build()
            .expect("server runtime");
        let hits = Arc::new(AtomicUsize::new(0));
        let service = GreeterServer::new(Greet {
            name: name.to_string(),
            hits: hits.clone(),
        });
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = served {
                eprintln!("greeter server failed: {e}");
            }
        });
        TestServer {
            name: name.to_string(),
            addr,
            hits,
            runtime: Some(runtime),
        }
    }

    /// `127.0.0.1:port`, the address a set member has.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops the server abruptly: its runtime is shut down, which closes the
    /// listener and every connection without a goodbye.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        // Give the kernel a moment to close the sockets.
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Dropping a runtime from async code panics; this does not block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The addresses of `servers`, as a `FixedSet` takes them.
pub fn addrs<'a>(servers: impl IntoIterator<Item = &'a TestServer>) -> Vec<String> {
    servers.into_iter().map(TestServer::addr).collect()
}

/// Counts requests by the server that answered them.
pub fn tally<'a>(servers: impl IntoIterator<Item = &'a TestServer>) -> Vec<(String, usize)> {
    servers
        .into_iter()
        .map(|s| (s.name.clone(), s.hits()))
        .collect()
}

/// The requests each server answered between two tallies.
pub fn since(before: &[(String, usize)], after: Vec<(String, usize)>) -> Vec<(String, usize)> {
    after
        .into_iter()
        .zip(before)
        .map(|((name, a), (_, b))| (name, a - b))
        .collect()
}

/// A greeter client whose service is boxed with this crate's error: every
/// client of the tests, whatever path, discover and load feed it (a tonic
/// client over a plain `BoxError` service could not be spawned), so the
/// helpers below take one type.
pub type BoxedClient = GreeterClient<
    BoxCloneService<http::Request<Body>, http::Response<Body>, serversets_tower::Error>,
>;

/// The tonic endpoint of a member: `http://` its address.
pub fn member_endpoint(member: &Member) -> Endpoint {
    Endpoint::from_shared(format!("http://{}", member.addr())).expect("uri")
}

/// A greeter client over `service` (a tonic channel behind `FailFast`, a
/// p2c balancer, ...).
pub fn boxed<S>(service: S) -> BoxedClient
where
    S: tower::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = serversets_tower::Error,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    GreeterClient::new(BoxCloneService::new(service))
}

/// One lazily connecting channel per member, weighted, wary of failures.
pub fn member_channel(member: &Member) -> MemberLoad<Channel> {
    MemberLoad::new(member_endpoint(member).connect_lazy(), member)
}

/// A greeter client over tower's p2c: buffered so clones share one
/// balancer, behind `fail_fast`.
pub fn p2c<D>(discover: D, fail_fast: FailFastLayer) -> BoxedClient
where
    D: Discover + Unpin + Send + 'static,
    D::Key: std::hash::Hash + Clone + Send,
    D::Error: Into<BoxError>,
    D::Service: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + tower::load::Load
        + Send,
    <D::Service as tower::Service<http::Request<Body>>>::Error: Into<BoxError>,
    <D::Service as tower::Service<http::Request<Body>>>::Future: Send,
    <D::Service as tower::load::Load>::Metric: std::fmt::Debug,
{
    boxed(
        ServiceBuilder::new()
            .layer(fail_fast)
            .service(Buffer::new(Balance::new(discover), 1024)),
    )
}

/// `n` requests, `concurrency` at a time; panics on any failure.
pub async fn send(client: &BoxedClient, n: usize, concurrency: usize) {
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let mut client = client.clone();
        let count = n / concurrency + usize::from(t < n % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                client.say_hello(hello("you")).await.expect("answered");
            }
        }));
    }
    for t in tasks {
        t.await.expect("request task");
    }
}

/// With no members, a request fails after `wait` with `NoMembers` (not
/// sooner, and not much later); then a member arriving within the wait
/// answers a request that is waiting. Returns the first request's status.
pub async fn fails_fast_until_a_member_arrives(
    client: &BoxedClient,
    wait: Duration,
    set: &FixedSet,
    member: &TestServer,
) -> Status {
    let started = Instant::now();
    let status = client.clone().say_hello(hello("you")).await.unwrap_err();
    let took = started.elapsed();
    let no_servers =
        NoMembers::find(&status).unwrap_or_else(|| panic!("no NoMembers in {status:?}"));
    assert_eq!(no_servers.waited(), wait);
    assert!(
        took >= wait && took < wait + Duration::from_millis(1700),
        "{took:?}"
    );

    let waiting = {
        let mut client = client.clone();
        tokio::spawn(async move { client.say_hello(hello("you")).await })
    };
    tokio::time::sleep(wait / 3).await;
    set.set_addresses([member.addr()]).unwrap();
    let reply = waiting
        .await
        .unwrap()
        .expect("answered once a member arrived");
    assert_eq!(reply.into_inner().server, member.name);
    status
}

/// What [`retry_around`] saw.
#[derive(Debug)]
pub struct RetriedAround {
    /// Attempts retried, over all requests.
    pub retried: usize,
    /// Requests that gave up.
    pub failed: usize,
}

/// Sends `requests` requests, each retried on `Unavailable` up to
/// `attempts` attempts in all, while the server named `dead` is down but
/// still in the set. Checks each request: an answer never comes from the
/// dead server, and a request fails only as the policy says (with
/// `Unavailable`, after retrying every attempt).
pub async fn retry_around(
    client: &BoxedClient,
    dead: &str,
    attempts: usize,
    requests: usize,
) -> RetriedAround {
    let mut seen = RetriedAround {
        retried: 0,
        failed: 0,
    };
    for _ in 0..requests {
        let policy = RetryUnavailable::new(attempts);
        let log = policy.log.clone();
        match tower::retry::Retry::new(policy, hello_service(client.clone()))
            .oneshot(hello("you"))
            .await
        {
            Ok(reply) => {
                assert_ne!(reply.server, dead);
                assert_eq!(log.gave_up.load(Ordering::SeqCst), 0);
            }
            Err(status) => {
                // The policy's verdict: only after every attempt failed
                // with Unavailable.
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert_eq!(log.retried.load(Ordering::SeqCst), attempts - 1);
                assert_eq!(log.gave_up.load(Ordering::SeqCst), 1);
                seen.failed += 1;
            }
        }
        seen.retried += log.retried.load(Ordering::SeqCst);
    }
    seen
}

/// An example retry policy for tower's `Retry`: a request that fails with
/// `Unavailable` (the server could not be reached: refused, reset, no
/// servers) is sent again, up to `attempts` times in all. Any other status
/// is an answer and is returned as is. Every attempt is counted in `log`, so
/// tests can check the policy was followed.
#[derive(Clone)]
pub struct RetryUnavailable {
    left: usize,
    pub log: Arc<AttemptLog>,
}

/// What a `RetryUnavailable` saw.
#[derive(Default)]
pub struct AttemptLog {
    /// Attempts that failed and were retried.
    pub retried: AtomicUsize,
    /// Requests that gave up after their last attempt failed.
    pub gave_up: AtomicUsize,
}

impl RetryUnavailable {
    pub fn new(attempts: usize) -> RetryUnavailable {
        RetryUnavailable {
            left: attempts.saturating_sub(1),
            log: Arc::default(),
        }
    }
}

impl<Res> tower::retry::Policy<HelloRequest, Res, Status> for RetryUnavailable {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut HelloRequest,
        result: &mut Result<Res, Status>,
    ) -> Option<Self::Future> {
        match result {
            Err(status) if status.code() == Code::Unavailable => {
                if self.left == 0 {
                    self.log.gave_up.fetch_add(1, Ordering::SeqCst);
                    return None;
                }
                self.left -= 1;
                self.log.retried.fetch_add(1, Ordering::SeqCst);
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &HelloRequest) -> Option<HelloRequest> {
        Some(req.clone())
    }
}

/// A greeter client as a tower service of `HelloRequest`s, so it can go
/// under tower's `Retry`.
pub fn hello_service(
    client: BoxedClient,
) -> impl tower::Service<
    HelloRequest,
    Response = HelloReply,
    Error = Status,
    Future = impl Future<Output = Result<HelloReply, Status>> + Send,
> + Clone {
    tower::service_fn(move |req: HelloRequest| {
        let mut client = client.clone();
        async move { client.say_hello(req).await.map(Response::into_inner) }
    })
}

/// `hello NAME`.
pub fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_string(),
    }
}

/// Asserts each server's share of `total` requests is within `tolerance`
/// of an even split.
pub fn assert_even(counts: &[(String, usize)], tolerance: f64) {
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let even = 1.0 / counts.len() as f64;
    for (name, n) in counts {
        let share = *n as f64 / total as f64;
        assert!(
            (share - even).abs() <= tolerance,
            "{name}: {share:.3} of {total} ({counts:?})"
        );
    }
}

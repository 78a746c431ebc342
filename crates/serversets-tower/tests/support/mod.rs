//! Shared by the integration tests, the benchmark and the example: the
//! generated greeter service, real tonic gRPC servers on loopback (each on
//! its own runtime, so it can be killed abruptly), an example retry policy,
//! and waiting helpers.
//!
//! Each test binary uses a different part of this module.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greeter::greeter_client::GreeterClient;
use greeter::greeter_server::{Greeter, GreeterServer};
use greeter::{HelloReply, HelloRequest};
use tonic::{Code, Request, Response, Status};

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

    /// `127.0.0.1:port`, as a set member.
    pub fn endpoint(&self) -> String {
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

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// Counts requests by the server that answered them.
pub fn tally<'a>(servers: impl IntoIterator<Item = &'a TestServer>) -> Vec<(String, usize)> {
    servers
        .into_iter()
        .map(|s| (s.name.clone(), s.hits()))
        .collect()
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
pub fn hello_service<T>(
    client: GreeterClient<T>,
) -> impl tower::Service<
    HelloRequest,
    Response = HelloReply,
    Error = Status,
    Future = impl Future<Output = Result<HelloReply, Status>> + Send,
> + Clone
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
    T::Future: Send,
{
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

/// Polls `cond` until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
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

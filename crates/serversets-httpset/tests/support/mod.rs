//! Real HTTP servers on loopback for the integration tests: a hyper server
//! that answers with its name (and echoes, sleeps or fails on request), one
//! that accepts and never answers, and one that reads whole requests and
//! hangs up without answering. Each can be killed abruptly and restarted on
//! its port.
#![allow(dead_code)]

pub mod bodies;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// How a server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// hyper, answering 200 with its name (see `handle` for special paths).
    Normal,
    /// hyper, answering every request with this status.
    Status(u16),
    /// Accepts connections and never reads or answers.
    Hang,
    /// Reads each whole request, then closes the connection without a word.
    Swallow,
}

#[derive(Default)]
struct State {
    hits: AtomicUsize,
    open: AtomicUsize,
    accepted: AtomicUsize,
    bodies: Mutex<Vec<Bytes>>,
    heads: Mutex<Vec<String>>,
}

/// One server on 127.0.0.1.
pub struct TestServer {
    pub name: String,
    mode: Mode,
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl TestServer {
    pub async fn start(name: &str, mode: Mode) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(name, mode, listener, Arc::default())
    }

    fn serve(name: &str, mode: Mode, listener: TcpListener, state: Arc<State>) -> TestServer {
        let addr = listener.local_addr().expect("local addr");
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(
            name.to_string(),
            mode,
            listener,
            state.clone(),
            conns.clone(),
        ));
        TestServer {
            name: name.to_string(),
            mode,
            addr,
            state,
            accept: Some(accept),
            conns,
        }
    }

    /// `127.0.0.1:port`, as a set member.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests answered (or, for Swallow, read) so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Request bodies received (Normal `/echo` and Swallow).
    pub fn bodies(&self) -> Vec<Bytes> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// Request heads received, lower-cased (Swallow only).
    pub fn heads(&self) -> Vec<String> {
        self.state.heads.lock().unwrap().clone()
    }

    /// Closes the listener, so new connections are refused, but keeps the
    /// open ones serving (a server draining before it exits).
    pub async fn close_listener(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }

    /// Closes the listener and every connection at once, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        let conns: Vec<AbortHandle> = std::mem::take(&mut *self.conns.lock().unwrap());
        for c in &conns {
            c.abort();
        }
        // Give the aborted tasks a moment to drop their sockets.
        for _ in 0..100 {
            if self.open_connections() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            self.open_connections(),
            0,
            "{}: connections survived kill",
            self.name
        );
    }

    /// Starts again on the same port, keeping the counters.
    pub async fn restart(&mut self) {
        assert!(self.accept.is_none(), "restart of a running server");
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        let mut again = Self::serve(&self.name, self.mode, listener, self.state.clone());
        self.accept = again.accept.take();
        self.conns = again.conns.clone();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// Counts a connection as open until dropped (also when its task is aborted).
struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(
    name: String,
    mode: Mode,
    listener: TcpListener,
    state: Arc<State>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        state.accepted.fetch_add(1, Ordering::SeqCst);
        state.open.fetch_add(1, Ordering::SeqCst);
        let guard = OpenGuard(state.clone());
        let name = name.clone();
        let state = state.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            match mode {
                Mode::Normal | Mode::Status(_) => {
                    let svc = service_fn(move |req| handle(req, name.clone(), mode, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                }
                Mode::Hang => {
                    let _stream = stream;
                    std::future::pending::<()>().await;
                }
                Mode::Swallow => swallow(stream, state).await,
            }
        });
        let mut conns = conns.lock().unwrap();
        conns.retain(|c| !c.is_finished());
        conns.push(task.abort_handle());
    }
}

/// Paths: `/echo` answers the request body; `/host` the Host header; `/uri`
/// the request target; `/sleep/<ms>` waits, then answers the name; anything
/// else the name.
async fn handle(
    req: Request<Incoming>,
    name: String,
    mode: Mode,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if let Mode::Status(code) = mode {
        let mut resp = Response::new(Full::new(Bytes::from(name)));
        *resp.status_mut() = StatusCode::from_u16(code).unwrap();
        return Ok(resp);
    }
    let path = req.uri().path().to_string();
    let body = match path.as_str() {
        "/echo" => {
            let bytes = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            state.bodies.lock().unwrap().push(bytes.clone());
            bytes
        }
        // Every Host value, so a duplicate would show.
        "/host" => Bytes::from(
            req.headers()
                .get_all(http::header::HOST)
                .iter()
                .map(|h| h.to_str().unwrap())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        "/uri" => Bytes::from(req.uri().to_string()),
        p if p.starts_with("/sleep/") => {
            let ms: u64 = p["/sleep/".len()..].parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Bytes::from(name)
        }
        _ => Bytes::from(name),
    };
    Ok(Response::new(Full::new(body)))
}

/// Reads whole requests (Content-Length or chunked) and closes after the
/// first, answering nothing.
async fn swallow(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &buf[head_end..];
        let done = match (length, chunked) {
            (Some(n), _) => body.len() >= n,
            (None, true) => find(body, b"0\r\n\r\n").is_some(),
            (None, false) => true,
        };
        if done {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.heads.lock().unwrap().push(head);
    let body = &buf[head_end..];
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    state.bodies.lock().unwrap().push(Bytes::from(body));
    let _ = stream.shutdown().await;
}

/// The payload of a chunked body (no extensions, no trailers).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(raw, b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(n) = size.filter(|&n| n > 0 && raw.len() >= eol + 2 + n) else {
            break;
        };
        out.extend_from_slice(&raw[eol + 2..eol + 2 + n]);
        raw = &raw[(eol + 4 + n).min(raw.len())..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A loopback port with nothing listening: connections are refused.
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

/// Reads a whole response body as text.
pub async fn text(resp: Response<Incoming>) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// Captures `tracing` output of the current thread into a buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Installs a subscriber for this thread; keep the guard alive.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

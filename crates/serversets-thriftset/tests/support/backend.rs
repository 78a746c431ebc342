//! Real Thrift `Echo` servers on loopback.
//!
//! [`Backend`] is our own accept loop driving the generated processor, one
//! thread per connection, so a test can kill it (stop accepting and cut every
//! open connection, as a crashed server would). [`start_tserver`] runs the
//! thrift crate's own `TServer`, which cannot be stopped.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serversets_thriftset::{Protocol, Transport};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryInputProtocolFactory, TBinaryOutputProtocol,
    TBinaryOutputProtocolFactory, TCompactInputProtocol, TCompactInputProtocolFactory,
    TCompactOutputProtocol, TCompactOutputProtocolFactory, TInputProtocol, TInputProtocolFactory,
    TOutputProtocol, TOutputProtocolFactory,
};
use thrift::server::{TProcessor, TServer};
use thrift::transport::{
    TBufferedReadTransport, TBufferedReadTransportFactory, TBufferedWriteTransport,
    TBufferedWriteTransportFactory, TFramedReadTransport, TFramedReadTransportFactory,
    TFramedWriteTransport, TFramedWriteTransportFactory, TReadTransportFactory,
    TWriteTransportFactory,
};

use super::echo::{EchoSyncHandler, EchoSyncProcessor};

/// What a backend counts; all of it readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls answered (or started).
    pub requests: AtomicUsize,
    /// Calls running now.
    pub in_flight: AtomicUsize,
    /// Most calls ever running at once.
    pub max_in_flight: AtomicUsize,
    /// Connections open now (counted down when the client closes).
    pub open: AtomicUsize,
    /// Most connections ever open at once.
    pub max_open: AtomicUsize,
    /// Connections accepted in total.
    pub accepted: AtomicUsize,
}

impl Stats {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

/// How a backend behaves.
#[derive(Debug, Clone, Copy)]
pub struct BackendOptions {
    /// `slow(ms)` sleeps `ms * slow_factor` milliseconds.
    pub slow_factor: u32,
    pub transport: Transport,
    pub protocol: Protocol,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            slow_factor: 1,
            transport: Transport::Framed,
            protocol: Protocol::Binary,
        }
    }
}

struct Handler {
    stats: Arc<Stats>,
    slow_factor: u32,
}

impl Handler {
    fn track<T>(&self, f: impl FnOnce() -> T) -> T {
        self.stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let out = f();
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl EchoSyncHandler for Handler {
    fn handle_echo(&self, message: String) -> thrift::Result<String> {
        self.track(|| Ok(message))
    }

    fn handle_slow(&self, ms: i32) -> thrift::Result<i32> {
        self.track(|| {
            let sleep = u64::try_from(ms).unwrap_or(0) * u64::from(self.slow_factor);
            std::thread::sleep(Duration::from_millis(sleep));
            Ok(ms)
        })
    }
}

/// A stoppable Echo server: our accept loop, the generated processor, a
/// thread per connection.
pub struct Backend {
    pub port: u16,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

type Processor = EchoSyncProcessor<Handler>;

impl Backend {
    /// A framed, binary backend answering at full speed.
    pub fn start() -> Backend {
        Backend::with(BackendOptions::default())
    }

    /// A framed, binary backend whose `slow` calls take `factor` times longer.
    pub fn slow(factor: u32) -> Backend {
        Backend::with(BackendOptions {
            slow_factor: factor,
            ..BackendOptions::default()
        })
    }

    pub fn with(opts: BackendOptions) -> Backend {
        let port = testkit::free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind backend");
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let processor = Arc::new(EchoSyncProcessor::new(Handler {
            stats: stats.clone(),
            slow_factor: opts.slow_factor,
        }));
        let acceptor = {
            let (stats, stop, conns) = (stats.clone(), stop.clone(), conns.clone());
            std::thread::Builder::new()
                .name(format!("echo-accept-{port}"))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let _ = stream.set_nodelay(true);
                        if let Ok(clone) = stream.try_clone() {
                            conns.lock().unwrap().push(clone);
                        }
                        stats.accepted.fetch_add(1, Ordering::SeqCst);
                        let (processor, stats) = (processor.clone(), stats.clone());
                        std::thread::spawn(move || serve(stream, &processor, &stats, opts));
                    }
                    // `listener` drops here: new connects are refused.
                })
                .expect("spawn acceptor")
        };
        Backend {
            port,
            stats,
            stop,
            conns,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Crashes the server: stops accepting (later connects are refused) and
    /// cuts every open connection, including ones with a call in progress.
    pub fn kill(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept so the loop sees the flag and drops the
        // listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        acceptor.join().expect("acceptor thread");
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(stream: TcpStream, processor: &Processor, stats: &Stats, opts: BackendOptions) {
    let now = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_open.fetch_max(now, Ordering::SeqCst);
    if let Ok((mut input, mut output)) = server_protocols(&stream, opts) {
        // Until the client closes or the connection is cut.
        while processor.process(&mut *input, &mut *output).is_ok() {}
    }
    stats.open.fetch_sub(1, Ordering::SeqCst);
}

type In = Box<dyn TInputProtocol + Send>;
type Out = Box<dyn TOutputProtocol + Send>;

fn server_protocols(stream: &TcpStream, opts: BackendOptions) -> io::Result<(In, Out)> {
    let (r, w) = (stream.try_clone()?, stream.try_clone()?);
    let wrap = |r: Box<dyn io::Read + Send>, w: Box<dyn io::Write + Send>| -> (In, Out) {
        match opts.protocol {
            Protocol::Binary => (
                Box::new(TBinaryInputProtocol::new(r, true)),
                Box::new(TBinaryOutputProtocol::new(w, true)),
            ),
            Protocol::Compact => (
                Box::new(TCompactInputProtocol::new(r)),
                Box::new(TCompactOutputProtocol::new(w)),
            ),
        }
    };
    Ok(match opts.transport {
        Transport::Framed => wrap(
            Box::new(TFramedReadTransport::new(r)),
            Box::new(TFramedWriteTransport::new(w)),
        ),
        Transport::Buffered => wrap(
            Box::new(TBufferedReadTransport::new(r)),
            Box::new(TBufferedWriteTransport::new(w)),
        ),
    })
}

/// Runs the thrift crate's `TServer` with `workers` connection threads on a
/// fresh loopback port, on a thread of its own (it cannot be stopped; it ends
/// with the test process). Returns once the port accepts connections.
pub fn start_tserver(opts: BackendOptions, workers: usize) -> (u16, Arc<Stats>) {
    let port = testkit::free_port();
    let stats = Arc::new(Stats::default());
    let processor = EchoSyncProcessor::new(Handler {
        stats: stats.clone(),
        slow_factor: opts.slow_factor,
    });
    let (rtf, wtf): (
        Box<dyn TReadTransportFactory + Send>,
        Box<dyn TWriteTransportFactory + Send>,
    ) = match opts.transport {
        Transport::Framed => (
            Box::new(TFramedReadTransportFactory::new()),
            Box::new(TFramedWriteTransportFactory::new()),
        ),
        Transport::Buffered => (
            Box::new(TBufferedReadTransportFactory::new()),
            Box::new(TBufferedWriteTransportFactory::new()),
        ),
    };
    let (ipf, opf): (
        Box<dyn TInputProtocolFactory + Send>,
        Box<dyn TOutputProtocolFactory + Send>,
    ) = match opts.protocol {
        Protocol::Binary => (
            Box::new(TBinaryInputProtocolFactory::new()),
            Box::new(TBinaryOutputProtocolFactory::new()),
        ),
        Protocol::Compact => (
            Box::new(TCompactInputProtocolFactory::new()),
            Box::new(TCompactOutputProtocolFactory::new()),
        ),
    };
    std::thread::Builder::new()
        .name(format!("tserver-{port}"))
        .spawn(move || {
            let mut server = TServer::new(rtf, ipf, wtf, opf, processor, workers);
            let _ = server.listen(("127.0.0.1", port));
        })
        .expect("spawn tserver");
    testkit::eventually_blocking(
        Duration::from_secs(5),
        &format!("the TServer on port {port} to come up"),
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    (port, stats)
}

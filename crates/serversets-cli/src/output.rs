//! Output for the long-running commands (`watch`, `register`), written by a
//! thread of its own.
//!
//! Writing to a pipe nobody reads blocks. Done on the command's own task,
//! that would stall everything behind it: the loop that notices signals
//! and, for `register`, the deregistration on SIGTERM. So the command hands
//! finished chunks (one per flush) to a bounded queue, and a dedicated
//! thread writes them out. When the queue is full the command either waits
//! until there is room (giving up as soon as a signal arrives), or drops
//! the chunk; which one is a [`WhenFull`] choice.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much finished output may wait for the writer thread.
pub(crate) const QUEUE_BYTES: usize = 1024 * 1024;

/// How often a writer waiting for room looks for a signal.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// What to do with output when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Wait for room; fail with [`io::ErrorKind::Interrupted`] once a
    /// SIGINT/SIGTERM has arrived. For `watch`, whose output is the point.
    Wait,
    /// Drop the chunk and carry on. For `register`, whose job is the
    /// registration: a log nobody reads must not hold it up.
    Drop,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Vec<u8>>,
    queued: usize,
    /// The command has finished writing.
    closed: bool,
    /// The thread has stopped (queue written out, or an error).
    done: bool,
    /// Why writing stopped, if it failed (e.g. the reader closed the pipe).
    failed: Option<(io::ErrorKind, String)>,
    /// Chunks thrown away under [`WhenFull::Drop`].
    dropped: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the
        // state is plain data and still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`Write`] whose flushed chunks are written by a dedicated thread.
pub(crate) struct Detached {
    shared: Arc<Shared>,
    pending: Vec<u8>,
    when_full: WhenFull,
    limit: usize,
    thread: Option<JoinHandle<()>>,
}

/// How a [`Detached`] writer ended, for a closing note on stderr.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Finished {
    /// Chunks dropped because the queue was full.
    pub(crate) dropped: u64,
    /// Chunks still queued when the time to write them ran out.
    pub(crate) unwritten: usize,
}

impl Detached {
    /// Starts the writer thread over `sink`, queueing at most `limit` bytes.
    pub(crate) fn spawn(
        sink: impl Write + Send + 'static,
        when_full: WhenFull,
        limit: usize,
    ) -> io::Result<Detached> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("serversets-output".into())
            .spawn(move || write_out(&theirs, sink))?;
        Ok(Detached {
            shared,
            pending: Vec::new(),
            when_full,
            limit,
            thread: Some(thread),
        })
    }

    /// Queues what is pending, then waits up to `grace` for the thread to
    /// write the queue out (a stalled reader must not keep the process
    /// alive).
    pub(crate) fn finish(mut self, grace: Duration) -> Finished {
        let _ = self.flush();
        let deadline = Instant::now() + grace;
        let mut state = self.shared.lock();
        state.closed = true;
        self.shared.changed.notify_all();
        while !state.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
        let finished = Finished {
            dropped: state.dropped,
            unwritten: state.queue.len(),
        };
        let done = state.done;
        drop(state);
        if done {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        finished
    }

    fn failure(state: &State) -> Option<io::Error> {
        state
            .failed
            .as_ref()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }
}

impl Write for Detached {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = Detached::failure(&self.shared.lock()) {
            return Err(e);
        }
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= self.limit {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Detached::failure(&self.shared.lock()).map_or(Ok(()), Err);
        }
        let chunk = std::mem::take(&mut self.pending);
        let mut state = self.shared.lock();
        loop {
            if let Some(e) = Detached::failure(&state) {
                return Err(e);
            }
            // An empty queue takes any chunk, however big: nothing else
            // would ever make room for it.
            if state.queue.is_empty() || state.queued + chunk.len() <= self.limit {
                break;
            }
            match self.when_full {
                WhenFull::Drop => {
                    state.dropped += 1;
                    return Ok(());
                }
                WhenFull::Wait if crate::signals::received() => {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "stdout is not being read and a signal arrived",
                    ));
                }
                WhenFull::Wait => {
                    state = match self.shared.changed.wait_timeout(state, SIGNAL_POLL) {
                        Ok((s, _)) => s,
                        Err(e) => e.into_inner().0,
                    };
                }
            }
        }
        state.queued += chunk.len();
        state.queue.push_back(chunk);
        self.shared.changed.notify_all();
        Ok(())
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        self.shared.changed.notify_all();
    }
}

/// Writes one line to stderr, ignoring failure: with stderr gone there is
/// nowhere left to report to, and `eprintln!` would panic.
pub(crate) fn stderr_line(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// The writer thread: writes queued chunks until the command is done or a
/// write fails.
fn write_out(shared: &Shared, mut sink: impl Write) {
    loop {
        let chunk = {
            let mut state = shared.lock();
            loop {
                if let Some(chunk) = state.queue.pop_front() {
                    state.queued -= chunk.len();
                    shared.changed.notify_all();
                    break chunk;
                }
                if state.closed {
                    state.done = true;
                    shared.changed.notify_all();
                    return;
                }
                state = match shared.changed.wait(state) {
                    Ok(s) => s,
                    Err(e) => e.into_inner(),
                };
            }
        };
        if let Err(e) = sink.write_all(&chunk).and_then(|()| sink.flush()) {
            let mut state = shared.lock();
            state.failed = Some((e.kind(), e.to_string()));
            state.queued = 0;
            state.queue.clear();
            state.done = true;
            shared.changed.notify_all();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that blocks every write until the test lets it go.
    struct Gate(mpsc::Receiver<()>, Arc<Mutex<Vec<u8>>>);

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .recv()
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_sink_drops_instead_of_blocking() {
        let (open, gate) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut out = Detached::spawn(Gate(gate, seen.clone()), WhenFull::Drop, 8).unwrap();
        // The first chunk is taken by the thread (and blocks there), the
        // second fills the queue, the rest are dropped without waiting.
        writeln!(out, "line0").unwrap();
        out.flush().unwrap();
        while !out.shared.lock().queue.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 1..5 {
            writeln!(out, "line{i}").unwrap();
            out.flush().unwrap();
        }
        open.send(()).unwrap();
        open.send(()).unwrap();
        let finished = out.finish(Duration::from_secs(5));
        assert_eq!(finished.unwritten, 0);
        assert_eq!(finished.dropped, 3, "{finished:?}");
        assert_eq!(&*seen.lock().unwrap(), b"line0\nline1\n");
    }

    #[test]
    fn a_failed_sink_is_reported_to_the_next_write() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Detached::spawn(Broken, WhenFull::Wait, 1024).unwrap();
        writeln!(out, "x").unwrap();
        out.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            match writeln!(out, "y").and_then(|()| out.flush()) {
                Err(e) => break e,
                Ok(()) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Ok(()) => panic!("the broken pipe was never reported"),
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn finish_does_not_wait_for_a_stalled_sink_past_the_grace() {
        let (_open, gate) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut out = Detached::spawn(Gate(gate, seen), WhenFull::Wait, 1024).unwrap();
        writeln!(out, "a").unwrap();
        out.flush().unwrap();
        writeln!(out, "b").unwrap();
        let finished = out.finish(Duration::from_millis(100));
        assert!(finished.unwritten >= 1, "{finished:?}");
    }
}

//! The framed transport (4-byte big-endian length, then the message), with
//! fewer system calls than the thrift crate's own.
//!
//! `TFramedWriteTransport` writes the length and the payload with separate
//! writes, which with `TCP_NODELAY` (which a request/response client needs)
//! sends two segments per message; `TFramedReadTransport` reads every frame
//! with two reads and trusts any length the peer sends. Ours writes a whole
//! frame in one write, reads through a buffer, and refuses frames larger than
//! [`MAX_FRAME`] or negative ones (as when a port speaks another protocol).
//! The bytes on the wire are the same.

use std::io::{self, ErrorKind, Read, Write};

/// The largest frame accepted from a server: 64 MiB.
pub(crate) const MAX_FRAME: usize = 64 << 20;

const READ_BUFFER: usize = 8 << 10;
const WRITE_BUFFER: usize = 4 << 10;
/// A write buffer grown beyond this by a large message is shrunk back.
const WRITE_BUFFER_KEEP: usize = 64 << 10;

/// Reads frames through a buffer; `read` never crosses a frame boundary.
pub(crate) struct FramedReader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes of the current frame not yet handed out.
    frame_left: usize,
}

impl<R: Read> FramedReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        FramedReader {
            inner,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            frame_left: 0,
        }
    }

    /// Refills the empty buffer with one read; end of stream is an error
    /// (a frame or its header was expected).
    fn fill(&mut self) -> io::Result<()> {
        let n = loop {
            match self.inner.read(&mut self.buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        self.start = 0;
        self.end = n;
        Ok(())
    }

    /// Bytes of the current frame not yet handed out: the most that any
    /// length read from it can still claim.
    pub(crate) fn frame_left(&self) -> usize {
        self.frame_left
    }

    fn read_header(&mut self) -> io::Result<usize> {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            if self.start == self.end {
                self.fill()?;
            }
            let n = (4 - got).min(self.end - self.start);
            header[got..got + n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            got += n;
        }
        let size = i32::from_be_bytes(header);
        usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_FRAME)
            .ok_or_else(|| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("frame size {size} is negative or above {MAX_FRAME} bytes"),
                )
            })
    }
}

impl<R: Read> Read for FramedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.frame_left == 0 {
            // Empty frames carry nothing; move on to the next one.
            self.frame_left = self.read_header()?;
        }
        let want = out.len().min(self.frame_left);
        if self.start == self.end {
            if want >= self.buf.len() {
                // A large read: skip the buffer.
                let n = self.inner.read(&mut out[..want])?;
                if n == 0 {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
                self.frame_left -= n;
                return Ok(n);
            }
            self.fill()?;
        }
        let n = want.min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        self.frame_left -= n;
        Ok(n)
    }
}

/// Buffers a message and writes it, length first, in one write on flush.
pub(crate) struct FramedWriter<W> {
    inner: W,
    /// Four bytes reserved for the length, then the message.
    buf: Vec<u8>,
}

impl<W: Write> FramedWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        let mut buf = Vec::with_capacity(WRITE_BUFFER);
        buf.extend_from_slice(&[0; 4]);
        FramedWriter { inner, buf }
    }
}

impl<W: Write> Write for FramedWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let size = self.buf.len() - 4;
        if size > 0 {
            let result = i32::try_from(size)
                .map_err(|_| {
                    io::Error::new(ErrorKind::InvalidInput, "message too large for a frame")
                })
                .and_then(|size| {
                    self.buf[..4].copy_from_slice(&size.to_be_bytes());
                    self.inner.write_all(&self.buf)
                });
            // Written or failed, this message is done (a failed connection
            // is closed, not retried).
            self.buf.truncate(4);
            if self.buf.capacity() > WRITE_BUFFER_KEEP {
                self.buf.shrink_to(WRITE_BUFFER);
            }
            result?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thrift::transport::{TFramedReadTransport, TFramedWriteTransport};

    /// Hands out at most one byte per read, to exercise every boundary.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn frames(msgs: &[&[u8]]) -> Vec<u8> {
        let mut w = FramedWriter::new(Vec::new());
        for m in msgs {
            w.write_all(m).unwrap();
            w.flush().unwrap();
        }
        w.inner
    }

    #[test]
    fn writes_what_the_thrift_reader_reads() {
        let big = vec![7u8; 100_000];
        let wire = frames(&[b"hello", b"", &big, b"x"]);
        let mut r = TFramedReadTransport::new(&wire[..]);
        let mut out = [0u8; 5];
        r.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"hello");
        let mut out = vec![0u8; big.len()];
        r.read_exact(&mut out).unwrap();
        assert_eq!(out, big);
    }

    #[test]
    fn reads_what_the_thrift_writer_writes_in_any_pieces() {
        #[derive(Clone, Default)]
        struct Sink(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let mut w = TFramedWriteTransport::new(sink.clone());
        w.write_all(b"first").unwrap();
        w.flush().unwrap();
        w.write_all(&[1u8; 20_000]).unwrap();
        w.flush().unwrap();
        let wire = sink.0.borrow().clone();
        assert_eq!(
            wire,
            frames(&[b"first", &[1u8; 20_000]]),
            "same bytes on the wire"
        );

        let mut r = FramedReader::new(Trickle(&wire));
        let mut out = [0u8; 5];
        r.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"first");
        let mut out = vec![0u8; 20_000];
        r.read_exact(&mut out).unwrap();
        assert!(out.iter().all(|b| *b == 1));
        assert_eq!(
            r.read(&mut [0u8; 1]).unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );

        let mut r = FramedReader::new(&wire[..]);
        let mut out = [0u8; 64];
        assert_eq!(
            r.read(&mut out).unwrap(),
            5,
            "a read stops at the frame end"
        );
    }

    #[test]
    fn refuses_bad_frame_sizes_and_truncation() {
        for header in [(-1i32).to_be_bytes(), (MAX_FRAME as i32 + 1).to_be_bytes()] {
            let mut r = FramedReader::new(&header[..]);
            let err = r.read(&mut [0u8; 4]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidData);
        }
        // "HTTP" read as a length is far above the limit.
        let mut r = FramedReader::new(&b"HTTP/1.1 400"[..]);
        assert_eq!(
            r.read(&mut [0u8; 4]).unwrap_err().kind(),
            ErrorKind::InvalidData
        );

        let mut wire = frames(&[b"abcdef"]);
        wire.truncate(7);
        let mut r = FramedReader::new(&wire[..]);
        let mut out = [0u8; 6];
        assert_eq!(
            r.read_exact(&mut out).unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn one_write_per_frame() {
        struct Count(Vec<usize>);
        impl Write for Count {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.push(b.len());
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = FramedWriter::new(Count(Vec::new()));
        w.write_all(b"abc").unwrap();
        w.write_all(b"de").unwrap();
        w.flush().unwrap();
        w.flush().unwrap(); // nothing buffered: nothing written
        assert_eq!(w.inner.0, [9]);
    }
}

//! Request bodies of the shapes the replay rules tell apart: frames of
//! unknown total length (sent chunked, maybe ending in trailers) and frames
//! of an exact length that never report their end. One type for the unit
//! tests of `src/body.rs` (which include this file by path) and for the
//! integration tests (through `support`), so each shape is written once.
// Each includer uses its own subset.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// Frames handed out one per poll, each ready at once.
pub struct Frames {
    frames: VecDeque<Frame<Bytes>>,
    /// The exact length reported by `size_hint`, or none (the default
    /// hint: nothing known).
    exact: Option<u64>,
}

impl Frames {
    /// Data frames with no length known up front: hyper sends them chunked.
    pub fn chunks(parts: &[&'static str]) -> Frames {
        Frames {
            frames: parts
                .iter()
                .map(|p| Frame::data(Bytes::from_static(p.as_bytes())))
                .collect(),
            exact: None,
        }
    }

    /// Data frames whose total length is known exactly, that never say they
    /// have ended (the `Body` trait's default `is_end_stream`), as a
    /// hand-written body often does: hyper stops polling once the declared
    /// length is written.
    pub fn exact(parts: &[&'static str]) -> Frames {
        Frames {
            exact: Some(parts.iter().map(|p| p.len() as u64).sum()),
            ..Frames::chunks(parts)
        }
    }

    /// The same frames followed by `trailers`.
    pub fn with_trailers(mut self, trailers: HeaderMap) -> Frames {
        self.frames.push_back(Frame::trailers(trailers));
        self
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn size_hint(&self) -> SizeHint {
        self.exact.map(SizeHint::with_exact).unwrap_or_default()
    }
}

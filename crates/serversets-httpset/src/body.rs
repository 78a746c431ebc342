//! Request bodies that can be handed to a second attempt without ever being
//! sent twice.
//!
//! The caller's body goes into a shared cell and each attempt gets a
//! [`SendBody`] that takes it out of the cell only when hyper first polls it,
//! that is, once a connection exists and the head has been written. So:
//!
//! - If an attempt fails before that (connect refused, connect timeout, reset
//!   on connect), the body is still in the cell, untouched, and the next
//!   attempt sends it. This works for every body type and every method.
//!   Each attempt's body carries a turn number, and only the latest attempt
//!   may take the original: an abandoned attempt that hyper polls late (its
//!   connection task can outlive the attempt) gets an error instead of
//!   stealing the body from the retry.
//! - Once taken, the original cannot be sent again. For idempotent requests
//!   whose retry on later failures is enabled, the frames are recorded as they
//!   stream (reference-counted `Bytes`, no copy when the body's data already
//!   is `Bytes`) up to a size bound; a later attempt replays the recording
//!   only if the whole body was recorded, with the original's size hint (so
//!   the same framing, and trailers still go out). Anything else is not
//!   retried.
//!
//! Bodies that report end-of-stream up front (empty bodies, typical of GET)
//! skip all of this: they are always replayable and cost nothing.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;

/// Errors crossing the body boundary, as hyper expects them.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Boxed = UnsyncBoxBody<Bytes, BoxError>;

/// The one body type the per-member hyper clients are built for.
///
/// One pointer wide (`None` is the empty body): hyper moves requests through
/// several channels and futures, and a small body type keeps those moves
/// cheap on the common empty-body path.
pub struct SendBody {
    kind: Option<Box<Kind>>,
}

enum Kind {
    Fresh {
        cell: Arc<Cell>,
        /// The attempt's turn: it may take the original only while no later
        /// attempt has been handed a body.
        turn: u64,
        active: Option<Boxed>,
        recording: bool,
    },
    Replay {
        frames: VecDeque<Recorded>,
        /// The original body's hint, so the replay is framed the same way
        /// (chunked stays chunked, and keeps its trailers).
        hint: SizeHint,
        /// Data bytes replayed so far.
        sent: u64,
    },
}

struct Cell {
    state: Mutex<State>,
    hint: SizeHint,
}

struct State {
    original: Option<Boxed>,
    /// The turn of the latest attempt handed a fresh body.
    turn: u64,
    recording: Option<Recording>,
}

struct Recording {
    frames: Vec<Recorded>,
    bytes: usize,
    limit: usize,
    complete: bool,
}

#[derive(Clone)]
enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Cell {
    /// The state stays consistent under any panic (each update is a single
    /// assignment), so a poisoned lock is recovered rather than propagated.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Owns the caller's body for the duration of one request and hands out a
/// [`SendBody`] per attempt while the body can still be sent whole.
pub(crate) struct BodySource {
    cell: Option<Arc<Cell>>,
}

impl BodySource {
    /// Wraps the caller's body. `record_limit` enables recording for replay
    /// after the body was (partly) sent; `None` never records.
    pub(crate) fn new<B>(body: B, record_limit: Option<usize>) -> BodySource
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            return BodySource { cell: None };
        }
        let hint = body.size_hint();
        // Do not even start recording a body known to exceed the bound.
        let record_limit = record_limit.filter(|&limit| hint.lower() <= limit as u64);
        let boxed = body
            .map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            .map_err(Into::into)
            .boxed_unsync();
        let cell = Arc::new(Cell {
            state: Mutex::new(State {
                original: Some(boxed),
                turn: 0,
                recording: record_limit.map(|limit| Recording {
                    frames: Vec::new(),
                    bytes: 0,
                    limit,
                    complete: false,
                }),
            }),
            hint,
        });
        BodySource { cell: Some(cell) }
    }

    /// A body for the next attempt, or `None` when the body was (partly)
    /// sent and cannot be replayed. Bodies handed out earlier can no longer
    /// take the original.
    pub(crate) fn next(&self) -> Option<SendBody> {
        match &self.cell {
            None => Some(SendBody { kind: None }),
            Some(cell) => {
                let mut state = cell.lock();
                if state.original.is_some() {
                    state.turn += 1;
                    return Some(SendBody {
                        kind: Some(Box::new(Kind::Fresh {
                            cell: cell.clone(),
                            turn: state.turn,
                            active: None,
                            recording: state.recording.is_some(),
                        })),
                    });
                }
                let rec = state.recording.as_ref().filter(|r| r.complete)?;
                Some(SendBody {
                    kind: Some(Box::new(Kind::Replay {
                        frames: rec.frames.iter().cloned().collect(),
                        hint: cell.hint,
                        sent: 0,
                    })),
                })
            }
        }
    }

    /// True when [`next`](Self::next) would return a body.
    #[cfg(test)]
    pub(crate) fn replayable(&self) -> bool {
        match &self.cell {
            None => true,
            Some(cell) => {
                let state = cell.lock();
                state.original.is_some() || state.recording.as_ref().is_some_and(|r| r.complete)
            }
        }
    }
}

/// Records one frame; drops the recording when it outgrows its bound.
fn record(cell: &Cell, frame: &Frame<Bytes>, end: bool) -> bool {
    let mut state = cell.lock();
    let Some(rec) = state.recording.as_mut() else {
        return false;
    };
    if let Some(data) = frame.data_ref() {
        if rec.bytes + data.len() > rec.limit {
            state.recording = None;
            return false;
        }
        rec.bytes += data.len();
        rec.frames.push(Recorded::Data(data.clone()));
    } else if let Some(trailers) = frame.trailers_ref() {
        rec.frames.push(Recorded::Trailers(trailers.clone()));
    }
    // A body of exact length is whole once that many bytes are in, even if
    // it never says so: hyper stops polling it at the declared length, so
    // neither `is_end_stream` (false by the trait's default) nor a final
    // `None` may ever come (#12).
    rec.complete = end || cell.hint.exact() == Some(rec.bytes as u64);
    true
}

fn mark_complete(cell: &Cell) {
    if let Some(rec) = cell.lock().recording.as_mut() {
        rec.complete = true;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body was already handed to another attempt")]
struct BodyTaken;

impl Body for SendBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(kind) = self.kind.as_deref_mut() else {
            return Poll::Ready(None);
        };
        match kind {
            Kind::Replay { frames, sent, .. } => Poll::Ready(frames.pop_front().map(|f| {
                Ok(match f {
                    Recorded::Data(d) => {
                        *sent = sent.saturating_add(d.len() as u64);
                        Frame::data(d)
                    }
                    Recorded::Trailers(t) => Frame::trailers(t),
                })
            })),
            Kind::Fresh {
                cell,
                turn,
                active,
                recording,
            } => {
                if active.is_none() {
                    let mut state = cell.lock();
                    let original = if state.turn == *turn {
                        state.original.take()
                    } else {
                        None // a later attempt owns it now
                    };
                    drop(state);
                    match original {
                        Some(body) => *active = Some(body),
                        None => return Poll::Ready(Some(Err(Box::new(BodyTaken)))),
                    }
                }
                let Some(body) = active.as_mut() else {
                    // Set just above; unreachable, but end the body rather than panic.
                    return Poll::Ready(None);
                };
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if *recording {
                            *recording = record(cell, &frame, body.is_end_stream());
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(None) => {
                        if *recording {
                            mark_complete(cell);
                        }
                        Poll::Ready(None)
                    }
                    other => other,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.kind.as_deref() {
            None => true,
            Some(Kind::Replay { frames, .. }) => frames.is_empty(),
            Some(Kind::Fresh { active, .. }) => active.as_ref().is_some_and(|b| b.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.kind.as_deref() {
            None => SizeHint::with_exact(0),
            Some(Kind::Replay { hint, sent, .. }) => remaining(hint, *sent),
            Some(Kind::Fresh { cell, active, .. }) => match active {
                Some(body) => body.size_hint(),
                None => cell.hint,
            },
        }
    }
}

/// What is left of a body with hint `hint` after `sent` bytes: exact only
/// when the original was exact.
fn remaining(hint: &SizeHint, sent: u64) -> SizeHint {
    if let Some(exact) = hint.exact() {
        return SizeHint::with_exact(exact.saturating_sub(sent));
    }
    let mut left = SizeHint::new();
    left.set_lower(hint.lower().saturating_sub(sent));
    if let Some(upper) = hint.upper() {
        // Keeps upper above lower: both lose the same amount, and a body
        // that outgrew its hint ends up unbounded rather than exact.
        let upper = upper.saturating_sub(sent);
        if upper > left.lower() {
            left.set_upper(upper);
        }
    }
    left
}

/// The test bodies the integration tests use too (one of each shape).
#[cfg(test)]
#[path = "../tests/support/bodies.rs"]
mod test_bodies;

#[cfg(test)]
mod tests {
    use super::test_bodies::Frames;
    use super::*;
    use http_body_util::{BodyExt, Empty, Full};

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    async fn drain(body: SendBody) -> Result<Bytes, BoxError> {
        Ok(body.collect().await?.to_bytes())
    }

    #[test]
    fn empty_bodies_are_always_replayable() {
        let src = BodySource::new(Empty::<Bytes>::new(), None);
        assert!(src.cell.is_none());
        for _ in 0..3 {
            let b = src.next().unwrap();
            assert!(b.is_end_stream());
            assert_eq!(block(drain(b)).unwrap(), "");
        }
    }

    #[test]
    fn an_unpolled_body_goes_to_the_next_attempt_untouched() {
        let src = BodySource::new(Full::new(Bytes::from_static(b"payload")), None);
        let first = src.next().unwrap();
        assert_eq!(first.size_hint().exact(), Some(7));
        drop(first); // as hyper does when the connect fails
        assert!(src.replayable());
        let second = src.next().unwrap();
        assert_eq!(block(drain(second)).unwrap(), "payload");
        // Sent once, not recorded: no third attempt.
        assert!(!src.replayable());
        assert!(src.next().is_none());
    }

    #[test]
    fn only_the_latest_attempt_can_take_the_original() {
        let src = BodySource::new(Full::new(Bytes::from_static(b"x")), None);
        let abandoned = src.next().unwrap();
        let retry = src.next().unwrap();
        // hyper polls the abandoned attempt's body late: it must not win.
        assert!(
            block(drain(abandoned)).is_err(),
            "an abandoned attempt must fail, not take the retry's body"
        );
        assert_eq!(block(drain(retry)).unwrap(), "x");
        // Once the latest taker has it, nobody else gets it.
        assert!(src.next().is_none());
    }

    #[test]
    fn replays_keep_the_original_size_hint_and_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        // A chunked body (no length known) that ends with trailers.
        let body = Frames::chunks(&["ab", "cd"]).with_trailers(trailers.clone());
        let src = BodySource::new(body, Some(1024));
        let first = block(src.next().unwrap().collect()).unwrap();
        assert_eq!(first.trailers(), Some(&trailers));
        let replay = src.next().unwrap();
        // Unknown length, as the original: hyper sends it chunked again,
        // which is what lets the trailers go out.
        assert_eq!(replay.size_hint().exact(), None);
        let again = block(replay.collect()).unwrap();
        assert_eq!(again.trailers(), Some(&trailers));
        assert_eq!(again.to_bytes(), "abcd");

        // A known length stays exact, and shrinks as the replay streams.
        let src = BodySource::new(Full::new(Bytes::from_static(b"payload")), Some(1024));
        block(drain(src.next().unwrap())).unwrap();
        let mut replay = src.next().unwrap();
        assert_eq!(replay.size_hint().exact(), Some(7));
        block(replay.frame()).unwrap().unwrap();
        assert_eq!(replay.size_hint().exact(), Some(0));
    }

    #[test]
    fn remaining_hints_never_become_exact_by_accident() {
        let mut hint = SizeHint::new();
        hint.set_lower(4);
        hint.set_upper(10);
        let left = remaining(&hint, 3);
        assert_eq!((left.lower(), left.upper()), (1, Some(7)));
        // A body that outgrew its hint is unbounded, not exactly 0.
        let left = remaining(&hint, 12);
        assert_eq!((left.lower(), left.upper()), (0, None));
        assert_eq!(remaining(&SizeHint::new(), 5).exact(), None);
        assert_eq!(remaining(&SizeHint::with_exact(9), 4).exact(), Some(5));
    }

    #[test]
    fn recorded_bodies_replay_whole() {
        let src = BodySource::new(Frames::chunks(&["ab", "cd", "ef"]), Some(1024));
        assert_eq!(block(drain(src.next().unwrap())).unwrap(), "abcdef");
        assert!(src.replayable());
        for _ in 0..2 {
            let replay = src.next().unwrap();
            // Unknown length, as the original's.
            assert_eq!(replay.size_hint().exact(), None);
            assert_eq!(block(drain(replay)).unwrap(), "abcdef");
        }
    }

    #[test]
    fn an_exact_length_body_is_complete_at_its_length_without_an_end_signal() {
        let src = BodySource::new(Frames::exact(&["ab", "cd"]), Some(1024));
        let mut first = src.next().unwrap();
        // Read only as far as the declared length, as hyper does.
        for want in ["ab", "cd"] {
            let frame = block(first.frame()).unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), want);
        }
        drop(first);
        assert!(src.replayable());
        let replay = src.next().unwrap();
        assert_eq!(replay.size_hint().exact(), Some(4));
        assert_eq!(block(drain(replay)).unwrap(), "abcd");

        // One frame short of the length: not whole, not replayed.
        let src = BodySource::new(Frames::exact(&["ab", "cd"]), Some(1024));
        let mut first = src.next().unwrap();
        block(first.frame()).unwrap().unwrap();
        drop(first);
        assert!(!src.replayable());
    }

    #[test]
    fn partly_sent_or_oversized_bodies_are_not_replayed() {
        // Partly sent: one frame read, then the attempt dies.
        let src = BodySource::new(Frames::chunks(&["ab", "cd"]), Some(1024));
        let mut first = src.next().unwrap();
        let frame = block(first.frame()).unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ab");
        drop(first);
        assert!(!src.replayable());
        assert!(src.next().is_none());

        // Over the bound: streamed fine, but not kept.
        let src = BodySource::new(Frames::chunks(&["abc", "def"]), Some(4));
        assert_eq!(block(drain(src.next().unwrap())).unwrap(), "abcdef");
        assert!(!src.replayable());

        // Known too large up front: never recorded.
        let src = BodySource::new(Full::new(Bytes::from_static(b"0123456789")), Some(4));
        assert_eq!(block(drain(src.next().unwrap())).unwrap(), "0123456789");
        assert!(!src.replayable());
    }
}

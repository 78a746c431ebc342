//! Knowing, from the pool's side, whether a connection is between calls.
//!
//! A caller may drop a [`Connection`](crate::Connection) in the middle of a
//! call without reporting anything (a `?` on a timed-out read does just
//! that). Its socket may then still carry a late reply, or half a request,
//! and the next borrower would read the wrong answer or write into a broken
//! frame (#12). So the protocols the pool hands to generated clients record
//! where each exchange stands, and a connection that is not between calls
//! when it comes back is closed, whatever the guard was told.
//!
//! A generated client brackets every request with `write_message_begin` and
//! `flush`, and every reply with `read_message_begin` and `read_message_end`;
//! a call (not a oneway) expects one reply. Any error from either protocol
//! means the stream may be out of step.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier,
    TMessageType, TOutputProtocol, TSetIdentifier, TStructIdentifier,
};

/// Where the exchanges on one connection stand. Shared by its input and
/// output protocols; the connection is used by one thread at a time, so
/// relaxed atomics suffice (the pool's lock orders hand-overs).
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    /// An operation failed: the stream may be anywhere.
    poisoned: AtomicBool,
    /// A request was begun and not yet flushed.
    writing: AtomicBool,
    /// A reply was begun and not yet read to its end.
    reading: AtomicBool,
    /// Calls sent whose replies have not been read.
    awaiting: AtomicU32,
}

impl Exchange {
    /// True when the connection is between calls: nothing half written,
    /// half read or unanswered, and no error seen.
    pub(crate) fn in_step(&self) -> bool {
        !self.poisoned.load(Ordering::Relaxed)
            && !self.writing.load(Ordering::Relaxed)
            && !self.reading.load(Ordering::Relaxed)
            && self.awaiting.load(Ordering::Relaxed) == 0
    }

    fn track<T>(&self, result: thrift::Result<T>) -> thrift::Result<T> {
        if result.is_err() {
            self.poisoned.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// An input protocol that reports reply boundaries and errors to an
/// [`Exchange`].
pub(crate) struct TrackedInput<P> {
    inner: P,
    exchange: Arc<Exchange>,
}

impl<P> TrackedInput<P> {
    pub(crate) fn new(inner: P, exchange: Arc<Exchange>) -> Self {
        TrackedInput { inner, exchange }
    }
}

/// Delegates each listed method to `inner`, recording an error.
macro_rules! tracked {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(&mut self, $($arg: $ty),*) -> thrift::Result<$ret> {
            let result = self.inner.$name($($arg),*);
            self.exchange.track(result)
        })*
    };
}

impl<P: TInputProtocol> TInputProtocol for TrackedInput<P> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        self.exchange.reading.store(true, Ordering::Relaxed);
        let result = self.inner.read_message_begin();
        self.exchange.track(result)
    }

    fn read_message_end(&mut self) -> thrift::Result<()> {
        let result = self.inner.read_message_end();
        if result.is_ok() {
            let e = &self.exchange;
            e.reading.store(false, Ordering::Relaxed);
            let left = e.awaiting.load(Ordering::Relaxed).saturating_sub(1);
            e.awaiting.store(left, Ordering::Relaxed);
        }
        self.exchange.track(result)
    }

    tracked! {
        read_struct_begin() -> Option<TStructIdentifier>;
        read_struct_end() -> ();
        read_field_begin() -> TFieldIdentifier;
        read_field_end() -> ();
        read_bool() -> bool;
        read_bytes() -> Vec<u8>;
        read_i8() -> i8;
        read_i16() -> i16;
        read_i32() -> i32;
        read_i64() -> i64;
        read_double() -> f64;
        read_string() -> String;
        read_list_begin() -> TListIdentifier;
        read_list_end() -> ();
        read_set_begin() -> TSetIdentifier;
        read_set_end() -> ();
        read_map_begin() -> TMapIdentifier;
        read_map_end() -> ();
        read_byte() -> u8;
    }
}

/// An output protocol that reports request boundaries and errors to an
/// [`Exchange`].
pub(crate) struct TrackedOutput<P> {
    inner: P,
    exchange: Arc<Exchange>,
}

impl<P> TrackedOutput<P> {
    pub(crate) fn new(inner: P, exchange: Arc<Exchange>) -> Self {
        TrackedOutput { inner, exchange }
    }
}

impl<P: TOutputProtocol> TOutputProtocol for TrackedOutput<P> {
    fn write_message_begin(&mut self, identifier: &TMessageIdentifier) -> thrift::Result<()> {
        let e = &self.exchange;
        e.writing.store(true, Ordering::Relaxed);
        if identifier.message_type == TMessageType::Call {
            let n = e.awaiting.load(Ordering::Relaxed).saturating_add(1);
            e.awaiting.store(n, Ordering::Relaxed);
        }
        let result = self.inner.write_message_begin(identifier);
        self.exchange.track(result)
    }

    fn flush(&mut self) -> thrift::Result<()> {
        let result = self.inner.flush();
        if result.is_ok() {
            self.exchange.writing.store(false, Ordering::Relaxed);
        }
        self.exchange.track(result)
    }

    tracked! {
        write_message_end() -> ();
        write_struct_begin(identifier: &TStructIdentifier) -> ();
        write_struct_end() -> ();
        write_field_begin(identifier: &TFieldIdentifier) -> ();
        write_field_end() -> ();
        write_field_stop() -> ();
        write_bool(b: bool) -> ();
        write_bytes(b: &[u8]) -> ();
        write_i8(i: i8) -> ();
        write_i16(i: i16) -> ();
        write_i32(i: i32) -> ();
        write_i64(i: i64) -> ();
        write_double(d: f64) -> ();
        write_string(s: &str) -> ();
        write_list_begin(identifier: &TListIdentifier) -> ();
        write_list_end() -> ();
        write_set_begin(identifier: &TSetIdentifier) -> ();
        write_set_end() -> ();
        write_map_begin(identifier: &TMapIdentifier) -> ();
        write_map_end() -> ();
        write_byte(b: u8) -> ();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};

    fn message(kind: TMessageType) -> TMessageIdentifier {
        TMessageIdentifier::new("echo", kind, 1)
    }

    #[test]
    fn a_call_is_in_step_only_once_its_reply_is_read_to_the_end() {
        let exchange = Arc::new(Exchange::default());
        let mut out = TrackedOutput::new(
            TBinaryOutputProtocol::new(Vec::new(), true),
            exchange.clone(),
        );
        assert!(exchange.in_step());
        out.write_message_begin(&message(TMessageType::Call))
            .unwrap();
        assert!(!exchange.in_step(), "half written");
        out.write_message_end().unwrap();
        out.flush().unwrap();
        assert!(!exchange.in_step(), "sent, reply not read");

        let mut reply = TBinaryOutputProtocol::new(Vec::new(), true);
        reply
            .write_message_begin(&message(TMessageType::Reply))
            .unwrap();
        reply.write_message_end().unwrap();
        let mut input = TrackedInput::new(
            TBinaryInputProtocol::new(&reply.transport[..], true),
            exchange.clone(),
        );
        input.read_message_begin().unwrap();
        assert!(!exchange.in_step(), "half read");
        input.read_message_end().unwrap();
        assert!(exchange.in_step());

        // A oneway expects no reply.
        out.write_message_begin(&message(TMessageType::OneWay))
            .unwrap();
        out.flush().unwrap();
        assert!(exchange.in_step());
    }

    #[test]
    fn any_error_puts_the_connection_out_of_step_for_good() {
        let exchange = Arc::new(Exchange::default());
        let mut input =
            TrackedInput::new(TBinaryInputProtocol::new(&[][..], true), exchange.clone());
        assert!(input.read_i32().is_err());
        assert!(!exchange.in_step());
    }
}

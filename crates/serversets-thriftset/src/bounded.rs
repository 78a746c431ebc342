//! Input protocols that check every length a server sends before anything
//! is allocated for it.
//!
//! thrift 0.17's binary and compact input protocols read a string's length
//! and then allocate `vec![0u8; len as usize]`: a negative length (an `i32`
//! cast to `usize`) panics with "capacity overflow", and a huge one asks
//! for gigabytes (#12). Collections pass their count to generated code that
//! calls `Vec::with_capacity(count as usize)`. A garbled or hostile reply in
//! a perfectly valid frame thus panics the calling thread.
//!
//! These are the same protocols, byte for byte (ported from thrift 0.17,
//! Apache-2.0), except that:
//!
//! * a string or binary length must not be negative nor exceed what is left
//!   of the message ([`Bounded::limit`]: the rest of the frame, or
//!   [`MAX_UNFRAMED`] without frames), and its bytes are read as they
//!   arrive rather than into a buffer allocated up front;
//! * a collection count must not be negative, and count times the smallest
//!   encoding of its element type must fit in what is left, so generated
//!   code never reserves room for elements that cannot be there.
//!
//! Violations are `thrift::Error::Protocol` errors (`NegativeSize` or
//! `SizeLimit`), which break the connection like any protocol error.

use std::io::{self, Read};

use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier,
    TMessageType, TSetIdentifier, TStructIdentifier, TType,
};
use thrift::{ProtocolError, ProtocolErrorKind};

use crate::framed::{FramedReader, MAX_FRAME};

/// The most one length may claim on a connection without frames, where
/// nothing else bounds it: the frame limit.
pub(crate) const MAX_UNFRAMED: usize = MAX_FRAME;

/// A read transport that knows how many bytes the current message can
/// still hold.
pub(crate) trait Bounded: Read {
    /// Bytes left in the current message, at most.
    fn limit(&self) -> usize;
}

impl<R: Read> Bounded for FramedReader<R> {
    fn limit(&self) -> usize {
        self.frame_left()
    }
}

/// A transport without frames (buffered): lengths are bounded by
/// [`MAX_UNFRAMED`] alone.
pub(crate) struct Unframed<R>(pub(crate) R);

impl<R: Read> Read for Unframed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Bounded for Unframed<R> {
    fn limit(&self) -> usize {
        MAX_UNFRAMED
    }
}

fn protocol_error(kind: ProtocolErrorKind, message: String) -> thrift::Error {
    thrift::Error::Protocol(ProtocolError { kind, message })
}

/// Checks a length or count read from the wire: `units` items of at least
/// `unit_size` bytes each must fit in `limit` bytes.
fn check_size(what: &str, units: i64, unit_size: usize, limit: usize) -> thrift::Result<usize> {
    if units < 0 {
        return Err(protocol_error(
            ProtocolErrorKind::NegativeSize,
            format!("negative {what} {units} in a reply"),
        ));
    }
    let n = usize::try_from(units).unwrap_or(usize::MAX);
    if n.saturating_mul(unit_size.max(1)) > limit {
        return Err(protocol_error(
            ProtocolErrorKind::SizeLimit,
            format!("{what} {units} does not fit in the {limit} bytes left of the reply"),
        ));
    }
    Ok(n)
}

/// Reads exactly `len` bytes, growing the buffer as they arrive: memory
/// follows what the server really sent, not what it claimed.
fn read_len<R: Read>(transport: &mut R, len: usize) -> thrift::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len.min(64 << 10));
    let got = transport.take(len as u64).read_to_end(&mut buf)?;
    if got < len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(buf)
}

fn read_array<R: Read, const N: usize>(transport: &mut R) -> thrift::Result<[u8; N]> {
    let mut b = [0u8; N];
    transport.read_exact(&mut b)?;
    Ok(b)
}

/// Binary protocol element types and the fewest bytes each takes.
fn binary_type(b: u8) -> thrift::Result<TType> {
    Ok(match b {
        0x00 => TType::Stop,
        0x01 => TType::Void,
        0x02 => TType::Bool,
        0x03 => TType::I08,
        0x04 => TType::Double,
        0x06 => TType::I16,
        0x08 => TType::I32,
        0x0A => TType::I64,
        0x0B => TType::String,
        0x0C => TType::Struct,
        0x0D => TType::Map,
        0x0E => TType::Set,
        0x0F => TType::List,
        0x10 => TType::Utf8,
        0x11 => TType::Utf16,
        other => {
            return Err(protocol_error(
                ProtocolErrorKind::InvalidData,
                format!("cannot convert {other} to TType"),
            ))
        }
    })
}

fn binary_min_size(t: TType) -> usize {
    match t {
        TType::I16 => 2,
        TType::I32 | TType::String | TType::Utf7 | TType::Utf8 | TType::Utf16 => 4,
        TType::I64 | TType::Double => 8,
        // Key type, value type, count.
        TType::Map => 6,
        // Element type, count.
        TType::Set | TType::List => 5,
        TType::Stop | TType::Void | TType::Bool | TType::I08 | TType::Struct => 1,
    }
}

/// The strict binary protocol (`TBinaryInputProtocol::new(_, true)`) with
/// bounded lengths.
pub(crate) struct BoundedBinary<R> {
    transport: R,
}

impl<R: Bounded> BoundedBinary<R> {
    pub(crate) fn new(transport: R) -> Self {
        BoundedBinary { transport }
    }

    fn read_len(&mut self, what: &str, unit_size: usize) -> thrift::Result<usize> {
        let n = self.read_i32()?;
        check_size(what, i64::from(n), unit_size, self.transport.limit())
    }
}

impl<R: Bounded> TInputProtocol for BoundedBinary<R> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        let first: [u8; 4] = read_array(&mut self.transport)?;
        // Strict mode: the version header comes first (its sign bit set).
        if first[0..2] != [0x80, 0x01] {
            return Err(protocol_error(
                ProtocolErrorKind::BadVersion,
                format!("received bad version: {:?}", &first[0..2]),
            ));
        }
        let message_type = TMessageType::try_from(first[3])?;
        let name = self.read_string()?;
        let sequence_number = self.read_i32()?;
        Ok(TMessageIdentifier::new(name, message_type, sequence_number))
    }

    fn read_message_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        Ok(None)
    }

    fn read_struct_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        let field_type = binary_type(self.read_byte()?)?;
        let id = match field_type {
            TType::Stop => 0,
            _ => self.read_i16()?,
        };
        Ok(TFieldIdentifier::new::<Option<String>, String, i16>(
            None, field_type, id,
        ))
    }

    fn read_field_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_bool(&mut self) -> thrift::Result<bool> {
        Ok(self.read_i8()? != 0)
    }

    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        let len = self.read_len("string length", 1)?;
        read_len(&mut self.transport, len)
    }

    fn read_i8(&mut self) -> thrift::Result<i8> {
        Ok(self.read_byte()? as i8)
    }

    fn read_i16(&mut self) -> thrift::Result<i16> {
        Ok(i16::from_be_bytes(read_array(&mut self.transport)?))
    }

    fn read_i32(&mut self) -> thrift::Result<i32> {
        Ok(i32::from_be_bytes(read_array(&mut self.transport)?))
    }

    fn read_i64(&mut self) -> thrift::Result<i64> {
        Ok(i64::from_be_bytes(read_array(&mut self.transport)?))
    }

    fn read_double(&mut self) -> thrift::Result<f64> {
        Ok(f64::from_be_bytes(read_array(&mut self.transport)?))
    }

    fn read_string(&mut self) -> thrift::Result<String> {
        let bytes = self.read_bytes()?;
        Ok(String::from_utf8(bytes)?)
    }

    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let element_type = binary_type(self.read_byte()?)?;
        let size = self.read_len("list size", binary_min_size(element_type))?;
        Ok(TListIdentifier::new(element_type, size as i32))
    }

    fn read_list_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let element_type = binary_type(self.read_byte()?)?;
        let size = self.read_len("set size", binary_min_size(element_type))?;
        Ok(TSetIdentifier::new(element_type, size as i32))
    }

    fn read_set_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let key_type = binary_type(self.read_byte()?)?;
        let value_type = binary_type(self.read_byte()?)?;
        let entry = binary_min_size(key_type) + binary_min_size(value_type);
        let size = self.read_len("map size", entry)?;
        Ok(TMapIdentifier::new(key_type, value_type, size as i32))
    }

    fn read_map_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_byte(&mut self) -> thrift::Result<u8> {
        Ok(read_array::<_, 1>(&mut self.transport)?[0])
    }
}

/// Compact protocol element types (in fields and collections) and the
/// fewest bytes each takes.
fn compact_type(b: u8) -> thrift::Result<TType> {
    Ok(match b {
        0x00 => TType::Stop,
        // In a collection header; fields encode bools as 0x01 / 0x02.
        0x01 | 0x02 => TType::Bool,
        0x03 => TType::I08,
        0x04 => TType::I16,
        0x05 => TType::I32,
        0x06 => TType::I64,
        0x07 => TType::Double,
        0x08 => TType::String,
        0x09 => TType::List,
        0x0A => TType::Set,
        0x0B => TType::Map,
        0x0C => TType::Struct,
        other => {
            return Err(protocol_error(
                ProtocolErrorKind::InvalidData,
                format!("cannot convert {other} into TType"),
            ))
        }
    })
}

fn compact_min_size(t: TType) -> usize {
    match t {
        TType::Double => 8,
        // A varint, a length, a header or a stop byte: one byte at least.
        _ => 1,
    }
}

const COMPACT_PROTOCOL_ID: u8 = 0x82;
const COMPACT_VERSION: u8 = 0x01;
const COMPACT_VERSION_MASK: u8 = 0x1F;

/// The compact protocol (`TCompactInputProtocol`) with bounded lengths.
pub(crate) struct BoundedCompact<R> {
    transport: R,
    /// The id of the last field read in the current struct.
    last_read_field_id: i16,
    /// The ids of the enclosing structs.
    read_field_id_stack: Vec<i16>,
    /// A bool field's value, carried in its field header.
    pending_read_bool_value: Option<bool>,
}

impl<R: Bounded> BoundedCompact<R> {
    pub(crate) fn new(transport: R) -> Self {
        BoundedCompact {
            transport,
            last_read_field_id: 0,
            read_field_id_stack: Vec::new(),
            pending_read_bool_value: None,
        }
    }

    /// An unsigned LEB128 varint of at most 10 bytes.
    fn read_varint(&mut self) -> thrift::Result<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.read_byte()?;
            value |= u64::from(byte & 0x7F).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(protocol_error(
            ProtocolErrorKind::InvalidData,
            "varint longer than 10 bytes".into(),
        ))
    }

    fn read_varint_u32(&mut self) -> thrift::Result<u32> {
        let v = self.read_varint()?;
        u32::try_from(v).map_err(|_| {
            protocol_error(
                ProtocolErrorKind::InvalidData,
                format!("varint {v} does not fit in 32 bits"),
            )
        })
    }

    fn read_zigzag(&mut self) -> thrift::Result<i64> {
        let v = self.read_varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn read_list_set_begin(&mut self, what: &str) -> thrift::Result<(TType, i32)> {
        let header = self.read_byte()?;
        let element_type = compact_type(header & 0x0F)?;
        let short = (header & 0xF0) >> 4;
        let count = if short != 15 {
            i64::from(short)
        } else {
            i64::from(self.read_varint_u32()? as i32)
        };
        let count = check_size(
            what,
            count,
            compact_min_size(element_type),
            self.transport.limit(),
        )?;
        Ok((element_type, count as i32))
    }
}

impl<R: Bounded> TInputProtocol for BoundedCompact<R> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        let compact_id = self.read_byte()?;
        if compact_id != COMPACT_PROTOCOL_ID {
            return Err(protocol_error(
                ProtocolErrorKind::BadVersion,
                format!("invalid compact protocol header {compact_id:?}"),
            ));
        }
        let type_and_version = self.read_byte()?;
        let version = type_and_version & COMPACT_VERSION_MASK;
        if version != COMPACT_VERSION {
            return Err(protocol_error(
                ProtocolErrorKind::BadVersion,
                format!("cannot process compact protocol version {version:?}"),
            ));
        }
        let message_type = TMessageType::try_from(type_and_version >> 5)?;
        // Written as a u32 varint, not zigzag.
        let sequence_number = self.read_varint_u32()? as i32;
        let name = self.read_string()?;
        self.last_read_field_id = 0;
        Ok(TMessageIdentifier::new(name, message_type, sequence_number))
    }

    fn read_message_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        self.read_field_id_stack.push(self.last_read_field_id);
        self.last_read_field_id = 0;
        Ok(None)
    }

    fn read_struct_end(&mut self) -> thrift::Result<()> {
        // An unbalanced end is the caller's bug; 0 keeps going, as a new
        // struct would.
        self.last_read_field_id = self.read_field_id_stack.pop().unwrap_or(0);
        Ok(())
    }

    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        let header = self.read_byte()?;
        let delta = (header & 0xF0) >> 4;
        let field_type = match header & 0x0F {
            0x01 => {
                self.pending_read_bool_value = Some(true);
                TType::Bool
            }
            0x02 => {
                self.pending_read_bool_value = Some(false);
                TType::Bool
            }
            t => compact_type(t)?,
        };
        if field_type == TType::Stop {
            return Ok(
                TFieldIdentifier::new::<Option<String>, String, Option<i16>>(
                    None,
                    TType::Stop,
                    None,
                ),
            );
        }
        self.last_read_field_id = if delta != 0 {
            self.last_read_field_id.wrapping_add(i16::from(delta))
        } else {
            self.read_i16()?
        };
        Ok(TFieldIdentifier {
            name: None,
            field_type,
            id: Some(self.last_read_field_id),
        })
    }

    fn read_field_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_bool(&mut self) -> thrift::Result<bool> {
        if let Some(b) = self.pending_read_bool_value.take() {
            return Ok(b);
        }
        match self.read_byte()? {
            0x01 => Ok(true),
            0x02 => Ok(false),
            other => Err(protocol_error(
                ProtocolErrorKind::InvalidData,
                format!("cannot convert {other} into bool"),
            )),
        }
    }

    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        let len = self.read_varint()?;
        let len = check_size(
            "string length",
            i64::try_from(len).unwrap_or(i64::MAX),
            1,
            self.transport.limit(),
        )?;
        read_len(&mut self.transport, len)
    }

    fn read_i8(&mut self) -> thrift::Result<i8> {
        Ok(self.read_byte()? as i8)
    }

    fn read_i16(&mut self) -> thrift::Result<i16> {
        Ok(self.read_zigzag()? as i16)
    }

    fn read_i32(&mut self) -> thrift::Result<i32> {
        Ok(self.read_zigzag()? as i32)
    }

    fn read_i64(&mut self) -> thrift::Result<i64> {
        self.read_zigzag()
    }

    fn read_double(&mut self) -> thrift::Result<f64> {
        Ok(f64::from_le_bytes(read_array(&mut self.transport)?))
    }

    fn read_string(&mut self) -> thrift::Result<String> {
        let bytes = self.read_bytes()?;
        Ok(String::from_utf8(bytes)?)
    }

    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let (element_type, count) = self.read_list_set_begin("list size")?;
        Ok(TListIdentifier::new(element_type, count))
    }

    fn read_list_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let (element_type, count) = self.read_list_set_begin("set size")?;
        Ok(TSetIdentifier::new(element_type, count))
    }

    fn read_set_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let count = i64::from(self.read_varint_u32()? as i32);
        if count == 0 {
            return Ok(TMapIdentifier::new(None, None, 0));
        }
        let types = self.read_byte()?;
        let key_type = compact_type((types & 0xF0) >> 4)?;
        let value_type = compact_type(types & 0x0F)?;
        let entry = compact_min_size(key_type) + compact_min_size(value_type);
        let count = check_size("map size", count, entry, self.transport.limit())?;
        Ok(TMapIdentifier::new(key_type, value_type, count as i32))
    }

    fn read_map_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_byte(&mut self) -> thrift::Result<u8> {
        Ok(read_array::<_, 1>(&mut self.transport)?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thrift::protocol::{TBinaryOutputProtocol, TCompactOutputProtocol, TOutputProtocol};

    /// Writes one message with every kind of value through `out`.
    fn write_everything(out: &mut dyn TOutputProtocol) {
        out.write_message_begin(&TMessageIdentifier::new("call", TMessageType::Reply, -7))
            .unwrap();
        out.write_struct_begin(&TStructIdentifier::new("s"))
            .unwrap();
        let mut id = 0;
        let mut field = |out: &mut dyn TOutputProtocol, t: TType, gap: i16| {
            id += gap;
            out.write_field_begin(&TFieldIdentifier::new("f", t, id))
                .unwrap();
        };
        field(out, TType::Bool, 1);
        out.write_bool(true).unwrap();
        field(out, TType::Bool, 1);
        out.write_bool(false).unwrap();
        field(out, TType::I08, 20); // a gap too large for a delta
        out.write_i8(-3).unwrap();
        field(out, TType::I16, 1);
        out.write_i16(-300).unwrap();
        field(out, TType::I32, 1);
        out.write_i32(i32::MIN).unwrap();
        field(out, TType::I64, 1);
        out.write_i64(i64::MAX).unwrap();
        field(out, TType::Double, 1);
        out.write_double(-2.5).unwrap();
        field(out, TType::String, 1);
        out.write_string("héllo").unwrap();
        field(out, TType::List, 1);
        out.write_list_begin(&TListIdentifier::new(TType::I32, 20))
            .unwrap();
        for i in 0..20 {
            out.write_i32(i).unwrap();
        }
        out.write_list_end().unwrap();
        field(out, TType::Map, 1);
        out.write_map_begin(&TMapIdentifier::new(TType::String, TType::Bool, 2))
            .unwrap();
        for (k, v) in [("a", true), ("b", false)] {
            out.write_string(k).unwrap();
            out.write_bool(v).unwrap();
        }
        out.write_map_end().unwrap();
        field(out, TType::Struct, 1);
        out.write_struct_begin(&TStructIdentifier::new("inner"))
            .unwrap();
        out.write_field_begin(&TFieldIdentifier::new("x", TType::Set, 3))
            .unwrap();
        out.write_set_begin(&TSetIdentifier::new(TType::Bool, 1))
            .unwrap();
        out.write_bool(true).unwrap();
        out.write_set_end().unwrap();
        out.write_field_end().unwrap();
        out.write_field_stop().unwrap();
        out.write_struct_end().unwrap();
        out.write_field_end().unwrap();
        field(out, TType::Map, 1);
        out.write_map_begin(&TMapIdentifier::new(TType::I32, TType::I32, 0))
            .unwrap();
        out.write_map_end().unwrap();
        out.write_field_stop().unwrap();
        out.write_struct_end().unwrap();
        out.write_message_end().unwrap();
        out.flush().unwrap();
    }

    /// Reads back what `write_everything` wrote, using `skip` for the
    /// nested struct so the generic path is covered too.
    fn read_everything(input: &mut dyn TInputProtocol) -> Vec<String> {
        let mut seen = Vec::new();
        let m = input.read_message_begin().unwrap();
        seen.push(format!(
            "{} {:?} {}",
            m.name, m.message_type, m.sequence_number
        ));
        input.read_struct_begin().unwrap();
        loop {
            let f = input.read_field_begin().unwrap();
            if f.field_type == TType::Stop {
                break;
            }
            let v = match f.field_type {
                TType::Bool => input.read_bool().unwrap().to_string(),
                TType::I08 => input.read_i8().unwrap().to_string(),
                TType::I16 => input.read_i16().unwrap().to_string(),
                TType::I32 => input.read_i32().unwrap().to_string(),
                TType::I64 => input.read_i64().unwrap().to_string(),
                TType::Double => input.read_double().unwrap().to_string(),
                TType::String => input.read_string().unwrap(),
                TType::List => {
                    let l = input.read_list_begin().unwrap();
                    let items: Vec<i32> = (0..l.size).map(|_| input.read_i32().unwrap()).collect();
                    input.read_list_end().unwrap();
                    format!("{items:?}")
                }
                TType::Map => {
                    let m = input.read_map_begin().unwrap();
                    let mut s = String::new();
                    for _ in 0..m.size {
                        s += &input.read_string().unwrap();
                        s += &input.read_bool().unwrap().to_string();
                    }
                    input.read_map_end().unwrap();
                    s
                }
                other => {
                    input.skip(other).unwrap();
                    "skipped".into()
                }
            };
            seen.push(format!("{:?}={v}", f.id));
            input.read_field_end().unwrap();
        }
        input.read_struct_end().unwrap();
        input.read_message_end().unwrap();
        seen
    }

    /// Frames `payload` as the framed transport does.
    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut wire = (payload.len() as i32).to_be_bytes().to_vec();
        wire.extend_from_slice(payload);
        wire
    }

    #[test]
    fn read_what_thrifts_own_protocols_write() {
        let mut binary = TBinaryOutputProtocol::new(Vec::new(), true);
        write_everything(&mut binary);
        let compact_sink = Shared::default();
        let mut compact = TCompactOutputProtocol::new(compact_sink.clone());
        write_everything(&mut compact);
        let reference = {
            let mut input =
                thrift::protocol::TBinaryInputProtocol::new(&binary.transport[..], true);
            read_everything(&mut input)
        };
        assert!(reference.len() > 10, "{reference:?}");

        let wire = framed(&binary.transport);
        let mut input = BoundedBinary::new(FramedReader::new(&wire[..]));
        assert_eq!(read_everything(&mut input), reference);
        let mut input = BoundedBinary::new(Unframed(&binary.transport[..]));
        assert_eq!(read_everything(&mut input), reference);

        let compact_bytes = compact_sink.0.lock().unwrap().clone();
        let wire = framed(&compact_bytes);
        let mut input = BoundedCompact::new(FramedReader::new(&wire[..]));
        assert_eq!(read_everything(&mut input), reference);
        let mut input = BoundedCompact::new(Unframed(&compact_bytes[..]));
        assert_eq!(read_everything(&mut input), reference);
    }

    /// A writer whose bytes stay readable after the protocol that owns it
    /// (the compact protocol keeps its transport private).
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn kind(err: thrift::Error) -> ProtocolErrorKind {
        match err {
            thrift::Error::Protocol(e) => e.kind,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn negative_and_oversized_lengths_fail_before_allocating() {
        // A reply header then a string of length -1, in a valid frame.
        let mut payload = vec![0x80, 0x01, 0x00, 0x02];
        payload.extend_from_slice(&(-1i32).to_be_bytes());
        let wire = framed(&payload);
        let mut input = BoundedBinary::new(FramedReader::new(&wire[..]));
        assert_eq!(
            kind(input.read_message_begin().unwrap_err()),
            ProtocolErrorKind::NegativeSize
        );

        // A name claiming 2 GiB in a frame of 12 bytes.
        let mut payload = vec![0x80, 0x01, 0x00, 0x02];
        payload.extend_from_slice(&i32::MAX.to_be_bytes());
        payload.extend_from_slice(b"abcd");
        let wire = framed(&payload);
        let mut input = BoundedBinary::new(FramedReader::new(&wire[..]));
        assert_eq!(
            kind(input.read_message_begin().unwrap_err()),
            ProtocolErrorKind::SizeLimit
        );

        // Unframed: bounded by MAX_UNFRAMED.
        let mut input = BoundedBinary::new(Unframed(&payload[..]));
        assert_eq!(
            kind(input.read_message_begin().unwrap_err()),
            ProtocolErrorKind::SizeLimit
        );

        // A list of i64 claiming more elements than 8-byte slots left.
        let mut payload = vec![0x0A];
        payload.extend_from_slice(&3i32.to_be_bytes());
        payload.extend_from_slice(&[0; 16]);
        let wire = framed(&payload);
        let mut input = BoundedBinary::new(FramedReader::new(&wire[..]));
        assert_eq!(
            kind(input.read_list_begin().unwrap_err()),
            ProtocolErrorKind::SizeLimit
        );
        let mut payload = vec![0x0A];
        payload.extend_from_slice(&(-5i32).to_be_bytes());
        let wire = framed(&payload);
        let mut input = BoundedBinary::new(FramedReader::new(&wire[..]));
        assert_eq!(
            kind(input.read_list_begin().unwrap_err()),
            ProtocolErrorKind::NegativeSize
        );

        // Compact: a varint length far beyond the frame, a negative map
        // count (a u32 varint above i32::MAX), a long list count.
        let wire = framed(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
        let mut input = BoundedCompact::new(FramedReader::new(&wire[..]));
        assert_eq!(
            kind(input.read_bytes().unwrap_err()),
            ProtocolErrorKind::SizeLimit
        );
        let wire = framed(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x88]);
        let mut input = BoundedCompact::new(FramedReader::new(&wire[..]));
        assert_eq!(
            kind(input.read_map_begin().unwrap_err()),
            ProtocolErrorKind::NegativeSize
        );
        let wire = framed(&[0xF5, 0xE8, 0x07]);
        let mut input = BoundedCompact::new(FramedReader::new(&wire[..]));
        assert_eq!(
            kind(input.read_list_begin().unwrap_err()),
            ProtocolErrorKind::SizeLimit
        );
    }
}

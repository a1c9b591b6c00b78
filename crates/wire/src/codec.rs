//! Byte-level reading and writing shared by every message and parameter.
//!
//! The reader works on a `Bytes` so that opaque fields (pool handles, cookies,
//! reported parameters) are cheap slices of the input instead of copies.

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::limits::{MAX_MESSAGE_LEN, MAX_NESTING_DEPTH, MAX_REPORTS};
use crate::param::ParamType;
use bytes::Bytes;

/// Rounds `n` up to a multiple of four.
pub(crate) const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// State carried through the decoding of one message.
#[derive(Debug, Default)]
pub(crate) struct Context {
    depth: usize,
    /// Unknown parameters with high bits `11`: skipped, to be reported.
    pub(crate) reports: Vec<Bytes>,
}

/// A cursor over a window `[pos, end)` of the message.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

/// One parameter as found in the input, its value not yet interpreted.
#[derive(Debug)]
pub(crate) struct RawParam<'a> {
    pub(crate) param_type: u16,
    /// Offset of the parameter's type field.
    pub(crate) offset: usize,
    /// A reader over the value only (without header and padding).
    pub(crate) value: Reader<'a>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes, end: usize) -> Self {
        Self { buf, pos: 0, end }
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.pos, kind)
    }

    fn take(&mut self, n: usize) -> Result<usize, DecodeError> {
        if self.remaining() < n {
            return Err(self.error(DecodeErrorKind::Truncated {
                needed: n,
                available: self.remaining(),
            }));
        }
        let at = self.pos;
        self.pos += n;
        Ok(at)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let at = self.take(2)?;
        Ok(u16::from_be_bytes([self.buf[at], self.buf[at + 1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.take(4)?;
        let b = &self.buf[at..at + 4];
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let at = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[at..at + N]);
        Ok(out)
    }

    /// Shrinks the window to the next `n` bytes (or fewer, if fewer are left).
    pub(crate) fn truncate(&mut self, n: usize) {
        self.end = (self.pos + n).min(self.end);
    }

    /// Skips `n` bytes (or fewer, if fewer are left).
    pub(crate) fn skip(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    /// The rest of the window as a zero-copy slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }

    /// Fails unless the window is used up.
    pub(crate) fn expect_end(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(DecodeErrorKind::BadLength {
                what,
                found: self.end - self.pos,
                min: 0,
                max: 0,
            }))
        }
    }

    /// Reads the next TLV header and returns the parameter, advancing past its padding.
    ///
    /// Padding is clamped to the window: the last parameter of a message or of a
    /// nested parameter may legitimately lack it (RFC 5354 §2 excludes trailing
    /// padding from the enclosing length). Padding bytes are ignored, not checked.
    fn raw(&mut self) -> Result<RawParam<'a>, DecodeError> {
        let offset = self.pos;
        let param_type = self.u16()?;
        let len = self.u16()? as usize;
        let available = self.end - offset;
        if len < 4 || len > available {
            return Err(DecodeError::new(
                offset + 2,
                DecodeErrorKind::BadLength {
                    what: "parameter",
                    found: len,
                    min: 4,
                    max: available,
                },
            ));
        }
        self.pos = (offset + pad4(len)).min(self.end);
        Ok(RawParam {
            param_type,
            offset,
            value: Reader {
                buf: self.buf,
                pos: offset + 4,
                end: offset + len,
            },
        })
    }

    /// Returns the type of the next known parameter without consuming it.
    ///
    /// Unknown parameters in front of it are handled here by the two high bits
    /// of their type (RFC 5354 §3): skipped (and queued for a report when asked)
    /// or turned into an error that stops decoding.
    pub(crate) fn peek(&mut self, ctx: &mut Context) -> Result<Option<u16>, DecodeError> {
        loop {
            if self.is_empty() {
                return Ok(None);
            }
            let save = self.pos;
            let raw = self.raw()?;
            if ParamType::from_u16(raw.param_type).is_some() {
                self.pos = save;
                return Ok(Some(raw.param_type));
            }
            let tlv = self.buf.slice(raw.offset..raw.value.end);
            match raw.param_type >> 14 {
                0b00 | 0b01 => {
                    return Err(DecodeError::new(
                        raw.offset,
                        DecodeErrorKind::UnrecognizedParameter {
                            param_type: raw.param_type,
                            report: raw.param_type >> 14 == 0b01,
                            tlv,
                        },
                    ));
                }
                0b10 => {}
                _ => {
                    if ctx.reports.len() >= MAX_REPORTS {
                        return Err(DecodeError::new(
                            raw.offset,
                            DecodeErrorKind::TooMany {
                                what: "unrecognized parameters",
                                limit: MAX_REPORTS,
                            },
                        ));
                    }
                    ctx.reports.push(tlv);
                }
            }
        }
    }

    /// Consumes the next known parameter, whatever its type.
    pub(crate) fn next_param(
        &mut self,
        ctx: &mut Context,
    ) -> Result<Option<RawParam<'a>>, DecodeError> {
        match self.peek(ctx)? {
            Some(_) => self.raw().map(Some),
            None => Ok(None),
        }
    }

    /// Consumes the next parameter, which must be of type `ty`.
    pub(crate) fn expect(
        &mut self,
        ctx: &mut Context,
        ty: ParamType,
    ) -> Result<RawParam<'a>, DecodeError> {
        match self.peek(ctx)? {
            Some(t) if t == ty as u16 => self.raw(),
            Some(found) => Err(self.error(DecodeErrorKind::UnexpectedParameter {
                expected: ty.name(),
                found,
            })),
            None => Err(self.error(DecodeErrorKind::MissingParameter {
                expected: ty.name(),
            })),
        }
    }

    /// Consumes the next parameter if it is of type `ty`.
    pub(crate) fn optional(
        &mut self,
        ctx: &mut Context,
        ty: ParamType,
    ) -> Result<Option<RawParam<'a>>, DecodeError> {
        self.next_if(ctx, |t| t == ty as u16)
    }

    /// Consumes the next parameter if its type satisfies `pred`.
    pub(crate) fn next_if(
        &mut self,
        ctx: &mut Context,
        pred: impl Fn(u16) -> bool,
    ) -> Result<Option<RawParam<'a>>, DecodeError> {
        match self.peek(ctx)? {
            Some(t) if pred(t) => self.raw().map(Some),
            _ => Ok(None),
        }
    }

    /// Fails if a known parameter is left (unknown skippable ones are handled).
    pub(crate) fn finish(&mut self, ctx: &mut Context) -> Result<(), DecodeError> {
        match self.peek(ctx)? {
            None => Ok(()),
            Some(found) => Err(self.error(DecodeErrorKind::UnexpectedParameter {
                expected: "end of message",
                found,
            })),
        }
    }
}

impl Context {
    /// Runs `f` one nesting level deeper, failing beyond the limit.
    pub(crate) fn nested<T>(
        &mut self,
        offset: usize,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if self.depth >= MAX_NESTING_DEPTH {
            return Err(DecodeError::new(offset, DecodeErrorKind::TooDeep));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }
}

/// Appends big-endian fields and length-prefixed structures to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Writes a TLV: header, the value written by `f`, then zero padding.
    pub(crate) fn tlv(
        &mut self,
        ty: u16,
        f: impl FnOnce(&mut Self) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let start = self.buf.len();
        self.u16(ty);
        self.u16(0);
        f(self)?;
        let len = self.buf.len() - start;
        let len16 = u16::try_from(len).map_err(|_| EncodeError::TooLong {
            what: "parameter",
            len,
        })?;
        self.buf[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
        self.buf.resize(start + pad4(len), 0);
        Ok(())
    }
}

/// Encodes a message: common header, the body written by `f`, then padding.
pub(crate) fn encode_message(
    msg_type: u8,
    flags: u8,
    out: &mut Vec<u8>,
    f: impl FnOnce(&mut Writer) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut w = Writer {
        buf: std::mem::take(out),
    };
    let start = w.buf.len();
    w.u8(msg_type);
    w.u8(flags);
    w.u16(0);
    let result = f(&mut w);
    let len = w.buf.len() - start;
    let outcome = result.and_then(|()| {
        u16::try_from(len).map_err(|_| EncodeError::TooLong {
            what: "message",
            len,
        })
    });
    match outcome {
        Ok(len16) => {
            w.buf[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
            w.buf.resize(start + pad4(len), 0);
            *out = w.buf;
            Ok(())
        }
        Err(e) => {
            w.buf.truncate(start);
            *out = w.buf;
            Err(e)
        }
    }
}

/// Splits a message into (type, flags, body reader) after checking the common header.
pub(crate) fn decode_header(buf: &Bytes) -> Result<(u8, u8, Reader<'_>), DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::new(
            0,
            DecodeErrorKind::Truncated {
                needed: 4,
                available: buf.len(),
            },
        ));
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if len < 4 || len > buf.len() {
        return Err(DecodeError::new(
            2,
            DecodeErrorKind::BadLength {
                what: "message",
                found: len,
                min: 4,
                max: buf.len(),
            },
        ));
    }
    // This crate counts the last parameter's padding in the length it sends
    // (as rsplib does), so a length whose padded size passes 16 bits decodes to
    // a message that cannot be encoded again, and a cookie could not be echoed.
    if pad4(len) > MAX_MESSAGE_LEN {
        return Err(DecodeError::new(
            2,
            DecodeErrorKind::BadLength {
                what: "message",
                found: len,
                min: 4,
                max: MAX_MESSAGE_LEN & !3,
            },
        ));
    }
    if buf.len() > pad4(len) {
        return Err(DecodeError::new(
            pad4(len),
            DecodeErrorKind::TrailingBytes {
                count: buf.len() - pad4(len),
            },
        ));
    }
    let mut r = Reader::new(buf, len);
    r.pos = 4;
    Ok((buf[0], buf[1], r))
}

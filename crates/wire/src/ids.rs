//! Identifiers: pool element IDs, registrar (ENRP server) IDs and pool handles.

use crate::codec::{Context, RawParam, Writer};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::limits::MAX_POOL_HANDLE_LEN;
use crate::param::ParamType;
use bytes::Bytes;
use std::fmt;
use std::num::NonZeroU32;

/// A pool element identifier (RFC 5352 §2.2.1), chosen at random by the PE.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeId(pub u32);

impl fmt::Debug for PeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeId({:#010x})", self.0)
    }
}

impl fmt::Display for PeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A registrar's (ENRP server's) identifier (RFC 5353 §2): random, non-zero.
///
/// Zero means "no server" on the wire (an unknown home registrar, a
/// group-cast receiver); those fields are `Option<PrId>` in this crate.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrId(NonZeroU32);

impl PrId {
    /// The ID with this value; `None` for zero, which is not a valid ID.
    pub const fn new(v: u32) -> Option<Self> {
        match NonZeroU32::new(v) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The raw 32-bit value.
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// The wire value of an optional ID: zero for none.
    pub fn raw(id: Option<Self>) -> u32 {
        id.map_or(0, Self::get)
    }
}

impl fmt::Debug for PrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrId({:#010x})", self.get())
    }
}

impl fmt::Display for PrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.get())
    }
}

/// A pool handle (RFC 5354 §3.9): an opaque, non-empty byte string.
///
/// Held as [`Bytes`], so decoding one is a slice of the input, not a copy.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolHandle(Bytes);

impl PoolHandle {
    /// A pool handle with these bytes; fails if empty or longer than
    /// [`MAX_POOL_HANDLE_LEN`].
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, EncodeError> {
        let b = bytes.into();
        if b.is_empty() {
            return Err(EncodeError::Invalid {
                what: "pool handle",
                why: "empty",
            });
        }
        if b.len() > MAX_POOL_HANDLE_LEN {
            return Err(EncodeError::Invalid {
                what: "pool handle",
                why: "longer than MAX_POOL_HANDLE_LEN",
            });
        }
        Ok(Self(b))
    }

    /// The handle's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The handle's bytes as a shared buffer.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub(crate) fn decode(p: RawParam<'_>) -> Result<Self, DecodeError> {
        let mut v = p.value;
        let len = v.remaining();
        if len == 0 || len > MAX_POOL_HANDLE_LEN {
            return Err(DecodeError::new(
                p.offset + 2,
                DecodeErrorKind::BadLength {
                    what: "pool handle",
                    found: len + 4,
                    min: 5,
                    max: MAX_POOL_HANDLE_LEN + 4,
                },
            ));
        }
        Ok(Self(v.rest()))
    }

    pub(crate) fn read(
        r: &mut crate::codec::Reader<'_>,
        ctx: &mut Context,
    ) -> Result<Self, DecodeError> {
        Self::decode(r.expect(ctx, ParamType::PoolHandle)?)
    }

    pub(crate) fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.tlv(ParamType::PoolHandle as u16, |w| {
            w.bytes(&self.0);
            Ok(())
        })
    }
}

impl TryFrom<&str> for PoolHandle {
    type Error = EncodeError;
    fn try_from(s: &str) -> Result<Self, EncodeError> {
        Self::new(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Display for PoolHandle {
    /// Printable ASCII handles print as text, others as hex (`0x...`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            f.write_str(&String::from_utf8_lossy(&self.0))
        } else {
            f.write_str("0x")?;
            for b in self.0.iter() {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolHandle({self})")
    }
}

pub(crate) fn decode_pe_id(p: RawParam<'_>) -> Result<PeId, DecodeError> {
    let mut v = p.value;
    let id = v.u32()?;
    v.expect_end("PE identifier")?;
    Ok(PeId(id))
}

pub(crate) fn encode_pe_id(id: PeId, w: &mut Writer) -> Result<(), EncodeError> {
    w.tlv(ParamType::PeIdentifier as u16, |w| {
        w.u32(id.0);
        Ok(())
    })
}

/// Reads a server ID that must be non-zero (a sender or a target).
pub(crate) fn read_pr_id(
    r: &mut crate::codec::Reader<'_>,
    what: &'static str,
) -> Result<PrId, DecodeError> {
    let at = r.offset();
    let v = r.u32()?;
    PrId::new(v).ok_or(DecodeError::new(
        at,
        DecodeErrorKind::InvalidValue { what, found: 0 },
    ))
}

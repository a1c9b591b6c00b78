//! ASAP and ENRP on the wire: every message of RFC 5352 and RFC 5353, every
//! parameter of RFC 5354, the policies of RFC 5356 and the delay-sensitive
//! policies draft, the Handle Resolution Option draft, and the Takeover
//! Suggestion (T) flag of ENRP_HANDLE_UPDATE.
//!
//! Decoding is total: any byte string yields either a message or a
//! [`DecodeError`] saying what is wrong and at which offset. Nothing panics,
//! recursion and counts are bounded by [`limits`], and opaque fields are
//! zero-copy slices of the input when decoding from [`bytes::Bytes`].
//! Unknown parameters are handled by the two high bits of their type as RFC
//! 5354 §3 requires; those the sender wants reported are returned in
//! [`Decoded::unrecognized`] (skipped ones) or as the error (stopping ones),
//! and [`Decoded::report`] / [`DecodeError::report`] build the error cause to
//! send back.
//!
//! ```
//! use rserpool_wire::{AsapMessage, PoolHandle};
//!
//! let msg = AsapMessage::HandleResolution {
//!     subscribe: false,
//!     pool_handle: PoolHandle::try_from("EchoPool").unwrap(),
//!     items: Some(3),
//! };
//! let bytes = msg.to_vec().unwrap();
//! assert_eq!(AsapMessage::decode(&bytes).unwrap().message, msg);
//! assert_eq!(msg.to_string(), "ASAP_HANDLE_RESOLUTION handle=EchoPool items=3");
//! ```

mod addrs;
mod asap;
mod cause;
pub mod checksum;
mod codec;
mod enrp;
mod error;
mod ids;
pub mod limits;
mod param;
mod policy;
mod pool_element;
mod server_info;
mod transport;

pub use addrs::IpAddrs;
pub use asap::{AsapMessage, AsapType};
pub use cause::{CauseCode, ErrorCause, MAX_ECHOED};
pub use checksum::PeChecksum;
pub use enrp::{EnrpMessage, EnrpType, PoolEntry, Servers, UpdateAction};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use ids::{PeId, PoolHandle, PrId};
pub use param::ParamType;
pub use policy::{Policy, PolicyType};
pub use pool_element::{PoolElement, RegistrationLife};
pub use server_info::ServerInformation;
pub use transport::{Protocol, TransportAddress, TransportUse, UserTransport};

use bytes::Bytes;
use std::fmt;

/// SCTP payload protocol identifier of ASAP (RFC 5352 §8.3).
pub const PPID_ASAP: u32 = 11;
/// SCTP payload protocol identifier of ENRP (RFC 5353 §5.4).
pub const PPID_ENRP: u32 = 12;
/// Well-known ASAP port (RFC 5352 §8.2).
pub const ASAP_PORT: u16 = 3863;
/// Well-known ENRP port (RFC 5353 §5.3).
pub const ENRP_PORT: u16 = 9901;

/// A decoded message with the unknown parameters the sender wants reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<M> {
    /// The message.
    pub message: M,
    /// Unknown parameters with high bits `11` (skipped, to be reported), in order.
    pub unrecognized: Vec<Bytes>,
}

impl<M> Decoded<M> {
    /// The error causes to send back for the skipped-but-reported parameters
    /// (one Unrecognized Parameter cause each, RFC 5354 §3), if any.
    pub fn report(&self) -> Option<Vec<ErrorCause>> {
        (!self.unrecognized.is_empty()).then(|| {
            self.unrecognized
                .iter()
                .cloned()
                .map(ErrorCause::unrecognized_parameter)
                .collect()
        })
    }
}

pub(crate) fn unknown_type(t: u8, buf: &Bytes) -> DecodeError {
    DecodeError::new(
        0,
        DecodeErrorKind::UnknownMessageType {
            msg_type: t,
            report: t >> 6 == 0b01,
            message: buf.clone(),
        },
    )
}

/// An ASAP or an ENRP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// An ASAP message.
    Asap(AsapMessage),
    /// An ENRP message.
    Enrp(EnrpMessage),
}

impl Message {
    /// Decodes a message whose protocol is given by its SCTP PPID; `None` for other PPIDs.
    pub fn decode_ppid(ppid: u32, buf: &Bytes) -> Option<Result<Decoded<Self>, DecodeError>> {
        match ppid {
            PPID_ASAP => Some(AsapMessage::decode_bytes(buf).map(|d| Decoded {
                message: Self::Asap(d.message),
                unrecognized: d.unrecognized,
            })),
            PPID_ENRP => Some(EnrpMessage::decode_bytes(buf).map(|d| Decoded {
                message: Self::Enrp(d.message),
                unrecognized: d.unrecognized,
            })),
            _ => None,
        }
    }

    /// The SCTP PPID the message is sent with.
    pub fn ppid(&self) -> u32 {
        match self {
            Self::Asap(_) => PPID_ASAP,
            Self::Enrp(_) => PPID_ENRP,
        }
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Self::Asap(m) => m.encode(out),
            Self::Enrp(m) => m.encode(out),
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Asap(m) => m.fmt(f),
            Self::Enrp(m) => m.fmt(f),
        }
    }
}

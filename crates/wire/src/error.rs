//! Decoding and encoding errors.

use bytes::Bytes;
use std::fmt;

/// Why a byte string is not a valid message, and where.
///
/// `offset` is counted from the first byte of the message (the message type).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at offset {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset, from the start of the message, of the field found wrong.
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        Self { offset, kind }
    }

    /// The error cause the RFCs ask a receiver to send back for this error, if any.
    ///
    /// An unknown message type whose two high bits are `01` is answered with an
    /// Unrecognized Message cause carrying the message, an unknown parameter whose
    /// high bits are `01` with an Unrecognized Parameter cause carrying the
    /// parameter (RFC 5354 §3 and §4). Other errors have no mandated reply; a
    /// registrar may still answer them with Invalid Values where it chooses to.
    pub fn report(&self) -> Option<crate::ErrorCause> {
        match &self.kind {
            DecodeErrorKind::UnknownMessageType {
                report: true,
                message,
                ..
            } => Some(crate::ErrorCause::unrecognized_message(message.clone())),
            DecodeErrorKind::UnrecognizedParameter {
                report: true, tlv, ..
            } => Some(crate::ErrorCause::unrecognized_parameter(tlv.clone())),
            _ => None,
        }
    }
}

/// The kinds of decoding error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended before a field or parameter was complete.
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A length field is smaller than its own header or larger than its container.
    BadLength {
        /// What carries the length.
        what: &'static str,
        /// The length found.
        found: usize,
        /// Smallest acceptable length.
        min: usize,
        /// Largest acceptable length.
        max: usize,
    },
    /// Bytes follow the message beyond its length and padding.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The message type is not defined for this protocol.
    UnknownMessageType {
        /// The type byte.
        msg_type: u8,
        /// Whether the sender asked for an Unrecognized Message report (high bits `01`).
        report: bool,
        /// The whole message, for the report.
        message: Bytes,
    },
    /// An unknown parameter whose high bits say "stop processing".
    UnrecognizedParameter {
        /// The parameter type.
        param_type: u16,
        /// Whether the sender asked for an Unrecognized Parameter report (high bits `01`).
        report: bool,
        /// The complete parameter, for the report.
        tlv: Bytes,
    },
    /// A known parameter appears where another one was expected.
    UnexpectedParameter {
        /// What the message format has at this place.
        expected: &'static str,
        /// The parameter type found.
        found: u16,
    },
    /// A mandatory parameter is missing.
    MissingParameter {
        /// The parameter the message format requires here.
        expected: &'static str,
    },
    /// A field holds a value the specification does not allow.
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value found.
        found: u64,
    },
    /// A count exceeds one of the limits in [`crate::limits`].
    TooMany {
        /// What is counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Parameters are nested deeper than [`crate::limits::MAX_NESTING_DEPTH`].
    TooDeep,
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind::*;
        match self {
            Truncated { needed, available } => {
                write!(f, "truncated: expected {needed} bytes, found {available}")
            }
            BadLength {
                what,
                found,
                min,
                max,
            } => write!(
                f,
                "bad {what} length: expected {min}..={max}, found {found}"
            ),
            TrailingBytes { count } => write!(f, "{count} bytes after the end of the message"),
            UnknownMessageType {
                msg_type, report, ..
            } => write!(
                f,
                "unknown message type 0x{msg_type:02x} ({})",
                if *report { "report" } else { "discard" }
            ),
            UnrecognizedParameter {
                param_type, report, ..
            } => write!(
                f,
                "unrecognized parameter type 0x{param_type:04x} (stop{})",
                if *report { " and report" } else { "" }
            ),
            UnexpectedParameter { expected, found } => write!(
                f,
                "expected {expected}, found parameter {}",
                crate::param::ParamType::describe(*found)
            ),
            MissingParameter { expected } => write!(f, "expected {expected}, found end of message"),
            InvalidValue { what, found } => write!(f, "invalid {what}: {found:#x}"),
            TooMany { what, limit } => write!(f, "too many {what} (limit {limit})"),
            TooDeep => write!(
                f,
                "parameters nested deeper than {}",
                crate::limits::MAX_NESTING_DEPTH
            ),
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A message or parameter would exceed the 16-bit length field.
    #[error("{what} would be {len} bytes, more than the 65535 a length field holds")]
    TooLong {
        /// What overflowed.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A value breaks a rule of the wire format (for example a TCP transport with two addresses).
    #[error("cannot encode {what}: {why}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// The rule it breaks.
        why: &'static str,
    },
}

//! The Operation Error parameter and its error causes (RFC 5354 §3.12).

use crate::codec::{Context, RawParam, Writer, pad4};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::limits::MAX_CAUSES;
use crate::param::ParamType;
use crate::policy::Policy;
use crate::transport::UserTransport;
use bytes::Bytes;
use std::fmt;

/// An error cause code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CauseCode {
    /// Unspecified Error (0x0000).
    Unspecified,
    /// Unrecognized Parameter (0x0001): carries the parameter.
    UnrecognizedParameter,
    /// Unrecognized Message (0x0002): carries the message.
    UnrecognizedMessage,
    /// Invalid Values (0x0003): carries the offending parameter.
    InvalidValues,
    /// Non-unique PE Identifier (0x0004).
    NonUniquePeId,
    /// Inconsistent Pooling Policy (0x0005): carries the pool's policy parameter.
    InconsistentPoolingPolicy,
    /// Lack of Resources (0x0006).
    LackOfResources,
    /// Inconsistent Transport Type (0x0007): carries the pool's transport parameter.
    InconsistentTransportType,
    /// Inconsistent Data/Control Configuration (0x0008).
    InconsistentDataControl,
    /// Unknown Pool Handle (0x0009).
    UnknownPoolHandle,
    /// Rejected due to security considerations (0x000A).
    RejectedSecurity,
    /// A code this crate does not know.
    Other(u16),
}

impl CauseCode {
    /// The 16-bit code.
    pub fn code(self) -> u16 {
        use CauseCode::*;
        match self {
            Unspecified => 0,
            UnrecognizedParameter => 1,
            UnrecognizedMessage => 2,
            InvalidValues => 3,
            NonUniquePeId => 4,
            InconsistentPoolingPolicy => 5,
            LackOfResources => 6,
            InconsistentTransportType => 7,
            InconsistentDataControl => 8,
            UnknownPoolHandle => 9,
            RejectedSecurity => 10,
            Other(c) => c,
        }
    }

    /// The cause with this code.
    pub fn from_code(c: u16) -> Self {
        use CauseCode::*;
        match c {
            0 => Unspecified,
            1 => UnrecognizedParameter,
            2 => UnrecognizedMessage,
            3 => InvalidValues,
            4 => NonUniquePeId,
            5 => InconsistentPoolingPolicy,
            6 => LackOfResources,
            7 => InconsistentTransportType,
            8 => InconsistentDataControl,
            9 => UnknownPoolHandle,
            10 => RejectedSecurity,
            c => Other(c),
        }
    }

    /// The RFC's name for the cause.
    pub fn name(self) -> &'static str {
        use CauseCode::*;
        match self {
            Unspecified => "Unspecified Error",
            UnrecognizedParameter => "Unrecognized Parameter",
            UnrecognizedMessage => "Unrecognized Message",
            InvalidValues => "Invalid Values",
            NonUniquePeId => "Non-unique PE Identifier",
            InconsistentPoolingPolicy => "Inconsistent Pooling Policy",
            LackOfResources => "Lack of Resources",
            InconsistentTransportType => "Inconsistent Transport Type",
            InconsistentDataControl => "Inconsistent Data/Control Configuration",
            UnknownPoolHandle => "Unknown Pool Handle",
            RejectedSecurity => "Rejected due to security considerations",
            Other(_) => "Unknown cause",
        }
    }
}

impl fmt::Display for CauseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:04x})", self.name(), self.code())
    }
}

/// One error cause: a code and its cause-specific information.
///
/// The information is kept as raw bytes (an embedded parameter or message),
/// which is what the receiver needs to relay or log it; the constructors
/// build it from typed values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorCause {
    /// The cause code.
    pub code: CauseCode,
    /// The cause-specific information (may be empty).
    pub info: Bytes,
}

/// Most bytes of an offending message or parameter an error cause echoes.
pub const MAX_ECHOED: usize = 1024;

impl ErrorCause {
    /// A cause without information.
    pub fn new(code: CauseCode) -> Self {
        Self {
            code,
            info: Bytes::new(),
        }
    }

    /// Unrecognized Parameter, carrying the complete parameter.
    pub fn unrecognized_parameter(tlv: Bytes) -> Self {
        Self {
            code: CauseCode::UnrecognizedParameter,
            info: tlv.slice(..tlv.len().min(MAX_ECHOED)),
        }
    }

    /// Unrecognized Message, carrying the message (its first
    /// [`MAX_ECHOED`] bytes: an echo must fit a message, and must not let a
    /// sender amplify its traffic).
    pub fn unrecognized_message(message: Bytes) -> Self {
        Self {
            code: CauseCode::UnrecognizedMessage,
            info: message.slice(..message.len().min(MAX_ECHOED)),
        }
    }

    /// Inconsistent Pooling Policy, carrying the pool's policy parameter.
    pub fn inconsistent_policy(pool_policy: &Policy) -> Self {
        let mut w = Writer::default();
        // A policy parameter is at most 24 bytes, or an unknown policy's relayed
        // bytes, which were decoded from a parameter and so fit one.
        let info = match pool_policy.encode(&mut w) {
            Ok(()) => Bytes::from(w.buf),
            Err(_) => Bytes::new(),
        };
        Self {
            code: CauseCode::InconsistentPoolingPolicy,
            info,
        }
    }

    /// Inconsistent Transport Type, carrying the pool's transport parameter.
    pub fn inconsistent_transport(pool_transport: &UserTransport) -> Self {
        let mut w = Writer::default();
        let info = match pool_transport.encode(&mut w) {
            Ok(()) => Bytes::from(w.buf),
            Err(_) => Bytes::new(),
        };
        Self {
            code: CauseCode::InconsistentTransportType,
            info,
        }
    }

    fn decode(r: &mut crate::codec::Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.offset();
        let code = CauseCode::from_code(r.u16()?);
        let len = r.u16()? as usize;
        let available = r.remaining() + 4;
        if len < 4 || len > available {
            return Err(DecodeError::new(
                at + 2,
                DecodeErrorKind::BadLength {
                    what: "error cause",
                    found: len,
                    min: 4,
                    max: available,
                },
            ));
        }
        let mut info_reader = r.clone();
        info_reader.truncate(len - 4);
        let info = info_reader.rest();
        r.skip((pad4(len) - 4).min(r.remaining()));
        Ok(Self { code, info })
    }

    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.tlv(self.code.code(), |w| {
            w.bytes(&self.info);
            Ok(())
        })
    }
}

impl fmt::Display for ErrorCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.info.is_empty() {
            write!(f, "[{} bytes]", self.info.len())?;
        }
        Ok(())
    }
}

/// Decodes the causes of an Operation Error parameter (at least one).
pub(crate) fn decode_operation_error(
    p: RawParam<'_>,
    _ctx: &mut Context,
) -> Result<Vec<ErrorCause>, DecodeError> {
    let mut v = p.value;
    let mut causes = Vec::new();
    while !v.is_empty() {
        if causes.len() == MAX_CAUSES {
            return Err(v.error(DecodeErrorKind::TooMany {
                what: "error causes",
                limit: MAX_CAUSES,
            }));
        }
        causes.push(ErrorCause::decode(&mut v)?);
    }
    if causes.is_empty() {
        return Err(DecodeError::new(
            p.offset,
            DecodeErrorKind::MissingParameter {
                expected: "error cause",
            },
        ));
    }
    Ok(causes)
}

/// Encodes an Operation Error parameter.
pub(crate) fn encode_operation_error(
    causes: &[ErrorCause],
    w: &mut Writer,
) -> Result<(), EncodeError> {
    if causes.is_empty() {
        return Err(EncodeError::Invalid {
            what: "operation error",
            why: "needs at least one cause",
        });
    }
    // The decoder refuses more (a bound on hostile input); sending more
    // would produce a message this crate itself cannot read.
    if causes.len() > MAX_CAUSES {
        return Err(EncodeError::Invalid {
            what: "operation error",
            why: "more than MAX_CAUSES causes",
        });
    }
    w.tlv(ParamType::OperationError as u16, |w| {
        for c in causes {
            c.encode(w)?;
        }
        Ok(())
    })
}

/// Formats a list of causes separated by commas.
pub(crate) fn fmt_causes(f: &mut fmt::Formatter<'_>, causes: &[ErrorCause]) -> fmt::Result {
    for (i, c) in causes.iter().enumerate() {
        f.write_str(if i == 0 { "" } else { ", " })?;
        write!(f, "{c}")?;
    }
    Ok(())
}

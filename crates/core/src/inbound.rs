//! Decoding what arrives from the network, and the error replies the RFCs
//! require for what cannot be decoded.

use bytes::Bytes;
use rserpool_wire::{
    AsapMessage, AsapType, CauseCode, DecodeError, Decoded, EnrpMessage, ErrorCause, Message,
    PPID_ASAP, PPID_ENRP, ParamType, PeId, PoolHandle, PrId, Servers,
};

/// The outcome of looking at one inbound SCTP message.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message, plus the causes to report for skipped parameters (if any).
    Message(Message, Option<Vec<ErrorCause>>),
    /// Undecodable; `reply` is the cause to report, when the RFCs ask for one.
    Invalid {
        /// The decoder's verdict.
        error: DecodeError,
        /// What to send back in an ASAP_ERROR / ENRP_ERROR.
        reply: Option<ErrorCause>,
    },
    /// A PPID that is neither ASAP nor ENRP.
    ForeignPpid(u32),
}

pub(crate) fn decode(ppid: u32, data: &Bytes) -> Inbound {
    match Message::decode_ppid(ppid, data) {
        None => Inbound::ForeignPpid(ppid),
        Some(Ok(Decoded {
            message,
            unrecognized,
        })) => {
            let d = Decoded {
                message: (),
                unrecognized,
            };
            Inbound::Message(message, d.report())
        }
        Some(Err(error)) => {
            let reply = error.report();
            Inbound::Invalid { error, reply }
        }
    }
}

/// The error message that carries `causes` back in the protocol of `ppid`.
pub(crate) fn error_reply(
    ppid: u32,
    own_id: Option<PrId>,
    causes: Vec<ErrorCause>,
) -> Option<Message> {
    match (ppid, own_id) {
        (PPID_ASAP, _) => Some(Message::Asap(AsapMessage::Error { causes })),
        (PPID_ENRP, Some(sender)) => Some(Message::Enrp(EnrpMessage::Error {
            servers: Servers {
                sender,
                receiver: None,
            },
            causes,
        })),
        _ => None,
    }
}

/// The answer a registrar owes an ASAP message it could not decode
/// (RFC 5352 §3.1, RFC 5354 §4): the decoder's report where it has one
/// (unknown type or parameter); for a known request type that is malformed
/// further in, a REGISTRATION_RESPONSE with R set (when the pool handle and
/// PE ID can still be read) or an ASAP_ERROR with Invalid Values. Unknown
/// types without the report bit, and bytes too short for a header, are
/// discarded silently.
pub(crate) fn asap_refusal(data: &Bytes, report: Option<ErrorCause>) -> Option<AsapMessage> {
    let known = data.len() >= 4 && data.first().and_then(|t| AsapType::from_u8(*t)).is_some();
    let cause = match report {
        Some(c) => c,
        None if known => ErrorCause::new(CauseCode::InvalidValues),
        None => return None,
    };
    if data.first() == Some(&(AsapType::Registration as u8)) {
        if let Some((pool_handle, pe_id)) = registration_identity(data) {
            return Some(AsapMessage::RegistrationResponse {
                rejected: true,
                pool_handle,
                pe_id,
                error: Some(vec![cause]),
            });
        }
    }
    Some(AsapMessage::Error {
        causes: vec![cause],
    })
}

/// The pool handle and PE ID of a registration that failed to decode
/// further in, read leniently from the top-level parameters.
fn registration_identity(data: &Bytes) -> Option<(PoolHandle, PeId)> {
    let mut at = 4;
    let (mut handle, mut pe) = (None, None);
    while at + 4 <= data.len() && (handle.is_none() || pe.is_none()) {
        let t = u16::from_be_bytes([data[at], data[at + 1]]);
        let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        if len < 4 || at + len > data.len() {
            break;
        }
        let value = data.slice(at + 4..at + len);
        if t == ParamType::PoolHandle as u16 {
            handle = PoolHandle::new(Bytes::copy_from_slice(&value)).ok();
        } else if t == ParamType::PoolElement as u16 && value.len() >= 4 {
            pe = Some(PeId(u32::from_be_bytes([
                value[0], value[1], value[2], value[3],
            ])));
        }
        at += (len + 3) & !3;
    }
    Some((handle?, pe?))
}

//! Decoding what arrives from the network, and the error replies the RFCs
//! require for what cannot be decoded.

use bytes::Bytes;
use rserpool_wire::{
    AsapMessage, DecodeError, Decoded, EnrpMessage, ErrorCause, Message, PPID_ASAP, PPID_ENRP,
    PrId, Servers,
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

//! Screening what arrives on an ASAP client's associations: decode the
//! untrusted bytes, answer what RFC 5354 says must be answered, count the
//! rest, and pass on only well-formed ASAP messages.

use crate::inbound::{Inbound, decode, error_reply};
use crate::io::{AssocId, Destination, Transmit};
use crate::outbox::Outbox;
use bytes::Bytes;
use rserpool_wire::{AsapMessage, Message};

/// Counters of inbound SCTP messages, shared by the pool element and the pool user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// SCTP user messages received.
    pub messages: u64,
    /// Messages that did not decode.
    pub undecodable: u64,
    /// Messages with a PPID other than ASAP's or ENRP's.
    pub foreign_ppid: u64,
    /// Well-formed ENRP messages, which an ASAP client does not take.
    pub not_asap: u64,
    /// ASAP_ERROR messages sent back (unrecognized message or parameters).
    pub error_replies_sent: u64,
    /// ASAP_ERROR messages received.
    pub errors_received: u64,
    /// Well-formed ASAP messages this role or state has no use for.
    pub unexpected: u64,
}

/// Decodes one inbound message; returns it when it is ASAP and well formed.
///
/// Undecodable messages are answered with ASAP_ERROR when RFC 5354 asks for a
/// report (unknown message type or parameter with high bits `01`), and
/// skipped-but-reported parameters (`11`) are reported while the message is
/// still processed.
pub(crate) fn screen<E>(
    assoc: AssocId,
    ppid: u32,
    data: &Bytes,
    outbox: &mut Outbox<E>,
    stats: &mut InboundStats,
) -> Option<AsapMessage> {
    stats.messages += 1;
    match decode(ppid, data) {
        Inbound::ForeignPpid(ppid) => {
            stats.foreign_ppid += 1;
            tracing::debug!(?assoc, ppid, "message with a foreign PPID dropped");
            None
        }
        Inbound::Invalid { error, reply } => {
            stats.undecodable += 1;
            tracing::debug!(?assoc, ppid, %error, len = data.len(), "undecodable message");
            if let Some(cause) = reply {
                reply_error(assoc, ppid, vec![cause], outbox, stats);
            }
            None
        }
        Inbound::Message(Message::Enrp(m), _) => {
            stats.not_asap += 1;
            tracing::debug!(?assoc, %m, "ENRP message to an ASAP client dropped");
            None
        }
        Inbound::Message(Message::Asap(m), report) => {
            if let Some(causes) = report {
                reply_error(assoc, ppid, causes, outbox, stats);
            }
            Some(m)
        }
    }
}

fn reply_error<E>(
    assoc: AssocId,
    ppid: u32,
    causes: Vec<rserpool_wire::ErrorCause>,
    outbox: &mut Outbox<E>,
    stats: &mut InboundStats,
) {
    if let Some(message) = error_reply(ppid, None, causes) {
        stats.error_replies_sent += 1;
        outbox.send(Transmit::Send {
            to: Destination::Association(assoc),
            message,
        });
    }
}

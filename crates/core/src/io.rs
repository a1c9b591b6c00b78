//! The vocabulary between a state machine and whatever drives it (the tokio
//! runtime in `rserpool-net`, or the simulator): associations, destinations
//! and the outputs a state machine asks its driver to carry out.

use rserpool_wire::{AsapMessage, EnrpMessage, Message};
use std::fmt;
use std::net::SocketAddr;

/// An SCTP association, named by the driver.
///
/// The driver allocates these (for associations it accepted and for those it
/// opened on a [`Destination::Addresses`] send) and reports them with
/// [`AssociationEvent::Up`] before any message on them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssocId(pub u64);

impl fmt::Debug for AssocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "assoc#{}", self.0)
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// On an existing association.
    Association(AssocId),
    /// To the endpoint at these addresses (one SCTP endpoint, possibly
    /// multi-homed): the driver uses its association to that endpoint, or
    /// opens one (reporting it with [`AssociationEvent::Up`]), the way a
    /// one-to-many SCTP socket does for `sendmsg` to a new address.
    ///
    /// If the association cannot be opened, the message is dropped and the
    /// driver reports [`AssociationEvent::Down`] with
    /// [`DownReason::HandshakeFailed`] on a fresh [`AssocId`] that was never
    /// reported up; machines that open one association at a time attribute it
    /// to their pending attempt, the others rely on their timers.
    Addresses(Vec<SocketAddr>),
}

/// Why an association went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownReason {
    /// Orderly SHUTDOWN by either side.
    Graceful,
    /// ABORT by either side.
    Aborted,
    /// The peer stopped answering (retransmissions or heartbeats exhausted).
    Lost,
    /// The association never came up.
    HandshakeFailed,
}

/// Association state changes the driver reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssociationEvent {
    /// The association is up; `peer` are the peer's addresses (with its port).
    Up {
        /// The association.
        assoc: AssocId,
        /// The peer's transport addresses.
        peer: Vec<SocketAddr>,
    },
    /// The association is gone.
    Down {
        /// The association.
        assoc: AssocId,
        /// Why.
        reason: DownReason,
    },
}

/// Something a state machine wants its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// Send an ASAP or ENRP message (the PPID follows from the protocol).
    Send {
        /// Where.
        to: Destination,
        /// What.
        message: Message,
    },
    /// Send application data: the payload of a session between a pool
    /// user and a pool element, carried beside ASAP on the same
    /// association under the application's own payload protocol.
    Data {
        /// Where.
        to: Destination,
        /// The application's payload protocol identifier (never ASAP's or ENRP's).
        ppid: u32,
        /// Deliver unordered (ASAP_SCTP_UNORDER).
        unordered: bool,
        /// The message.
        data: bytes::Bytes,
    },
    /// Open an association to the endpoint at these addresses without
    /// sending anything yet (reported with [`AssociationEvent::Up`]); does
    /// nothing if one is already up or opening.
    Connect {
        /// The peer's addresses.
        to: Vec<SocketAddr>,
    },
    /// Send a datagram to the announce channel (multicast or configured unicast list).
    Announce {
        /// The ASAP_SERVER_ANNOUNCE or ENRP_PRESENCE to announce.
        message: Message,
    },
    /// Close an association.
    Close {
        /// The association.
        assoc: AssocId,
        /// ABORT instead of SHUTDOWN.
        abort: bool,
    },
    /// Give up an association still being opened to these addresses (by a
    /// [`Destination::Addresses`] send): the messages queued for it are
    /// dropped and, should its handshake complete later, it is aborted
    /// without being reported up. Without this, a request the machine gave
    /// up on (a registration after T5) would still arrive once a partition
    /// heals.
    Abandon {
        /// The addresses the association was being opened to.
        to: Vec<SocketAddr>,
    },
}

impl Transmit {
    pub(crate) fn asap(to: Destination, m: AsapMessage) -> Self {
        Self::Send {
            to,
            message: Message::Asap(m),
        }
    }

    pub(crate) fn enrp(to: Destination, m: EnrpMessage) -> Self {
        Self::Send {
            to,
            message: Message::Enrp(m),
        }
    }
}

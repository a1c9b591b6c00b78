//! What a registrar reports: events for its user and metrics, and counters.

use super::balance::{DeclineReason, Withheld};
use rserpool_wire::{Message, PeId, PoolHandle, PrId};
use std::collections::BTreeMap;

/// Why a PE left the handlespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemovalReason {
    /// The PE deregistered.
    Deregistered,
    /// Its registration life ran out.
    LifetimeExpired,
    /// It did not answer an ENDPOINT_KEEP_ALIVE.
    KeepAliveTimeout,
    /// Too many ENDPOINT_UNREACHABLE reports.
    Unreachable,
    /// Its home registrar announced its removal (DEL_PE).
    PeerDeleted,
    /// A resynchronisation with its home registrar did not confirm it.
    Resynchronised,
}

/// Something that happened inside a registrar.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrarEvent {
    /// Start-up is complete; the registrar serves.
    Ready,
    /// A peer was heard for the first time (or again after it was dropped).
    PeerUp(PrId),
    /// A peer was declared dead.
    PeerDown(PrId),
    /// A PE registered here (new) or re-registered (not new).
    Registered {
        /// Pool.
        pool: PoolHandle,
        /// PE.
        pe: PeId,
        /// First registration of this PE in the handlespace.
        new: bool,
        /// The previous home, if ownership moved here.
        from: Option<PrId>,
    },
    /// A registration was rejected.
    RegistrationRejected {
        /// Pool.
        pool: PoolHandle,
        /// PE.
        pe: PeId,
        /// The Operation Error cause code sent back.
        cause: u16,
    },
    /// A PE left the handlespace.
    Removed {
        /// Pool.
        pool: PoolHandle,
        /// PE.
        pe: PeId,
        /// Why.
        reason: RemovalReason,
    },
    /// A PE this registrar owned is now owned by `to`.
    OwnershipLost {
        /// Pool.
        pool: PoolHandle,
        /// PE.
        pe: PeId,
        /// The new home.
        to: PrId,
    },
    /// A takeover of a failed peer started.
    TakeoverStarted(PrId),
    /// A takeover completed; this registrar claimed the target's PEs.
    TakeoverCompleted {
        /// The failed peer.
        target: PrId,
        /// PEs claimed.
        pes: usize,
    },
    /// A takeover was abandoned (target alive again, lost arbitration, or expired).
    TakeoverAbandoned(PrId),
    /// A takeover suggestion (T flag) was sent.
    SuggestionSent {
        /// Pool.
        pool: PoolHandle,
        /// PE.
        pe: PeId,
        /// The peer asked to take it.
        to: PrId,
    },
    /// A takeover suggestion was received and honoured (ENDPOINT_KEEP_ALIVE with H sent).
    SuggestionAccepted {
        /// Pool.
        pool: PoolHandle,
        /// PE.
        pe: PeId,
        /// The suggesting peer.
        from: PrId,
    },
    /// A takeover suggestion was received and declined.
    SuggestionDeclined {
        /// Pool.
        pool: PoolHandle,
        /// PE.
        pe: PeId,
        /// The suggesting peer.
        from: PrId,
        /// Why.
        reason: DeclineReason,
    },
    /// A resynchronisation with a peer started (checksum mismatch).
    ResyncStarted(PrId),
    /// A message could not be decoded.
    BadMessage {
        /// Where it came from (None for announces).
        assoc: Option<crate::io::AssocId>,
        /// The decoder's error.
        error: String,
    },
}

/// Counters of a registrar.
#[derive(Debug, Clone, Default)]
pub struct RegistrarStats {
    /// Messages received, by name.
    pub received: BTreeMap<&'static str, u64>,
    /// Messages sent, by name.
    pub sent: BTreeMap<&'static str, u64>,
    /// Undecodable or misaddressed messages.
    pub invalid_messages: u64,
    /// Takeover suggestions sent.
    pub suggestions_sent: u64,
    /// Takeover suggestions withheld, by reason.
    pub suggestions_withheld: BTreeMap<String, u64>,
    /// Takeover suggestions received.
    pub suggestions_received: u64,
    /// Takeover suggestions honoured.
    pub suggestions_accepted: u64,
    /// Takeover suggestions declined.
    pub suggestions_declined: u64,
    /// PEs whose ownership moved here.
    pub ownership_gained: u64,
    /// PEs whose ownership moved away.
    pub ownership_lost: u64,
}

fn name(m: &Message) -> &'static str {
    match m {
        Message::Asap(m) => m.message_type().name(),
        Message::Enrp(m) => m.message_type().name(),
    }
}

impl RegistrarStats {
    pub(crate) fn count_sent(&mut self, m: &Message) {
        *self.sent.entry(name(m)).or_default() += 1;
    }

    pub(crate) fn count_received(&mut self, m: &Message) {
        *self.received.entry(name(m)).or_default() += 1;
    }

    pub(crate) fn withheld(&mut self, w: Withheld) {
        *self
            .suggestions_withheld
            .entry(format!("{w:?}"))
            .or_default() += 1;
    }
}

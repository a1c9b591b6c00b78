//! What a registrar reports: events for its user and metrics, and counters.

use super::balance::{DeclineReason, Withheld};
use rserpool_wire::{AsapType, EnrpType, Message, PeId, PoolHandle, PrId};

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
        /// What conflicted, in words (for logs).
        detail: String,
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

/// Messages counted by type code, ASAP and ENRP apart.
///
/// Fixed arrays rather than maps keyed by name: counting is on the path of
/// every message.
#[derive(Debug, Clone, Default)]
pub struct MessageCounts {
    asap: [u64; 16],
    enrp: [u64; 16],
}

impl MessageCounts {
    fn count(&mut self, m: &Message) {
        match m {
            Message::Asap(m) => self.asap[usize::from(m.message_type() as u8) & 15] += 1,
            Message::Enrp(m) => self.enrp[usize::from(m.message_type() as u8) & 15] += 1,
        }
    }

    /// The count of the message type with this RFC name (`"ASAP_REGISTRATION"`).
    pub fn get(&self, name: &str) -> u64 {
        self.iter().find(|(n, _)| *n == name).map_or(0, |(_, c)| c)
    }

    /// Every message type seen at least once, with its RFC name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let asap = (0u8..16).filter_map(|code| {
            let t = AsapType::from_u8(code)?;
            Some((t.name(), self.asap[usize::from(code)]))
        });
        let enrp = (0u8..16).filter_map(|code| {
            let t = EnrpType::from_u8(code)?;
            Some((t.name(), self.enrp[usize::from(code)]))
        });
        asap.chain(enrp).filter(|(_, c)| *c > 0)
    }
}

/// Why a request was refused under the trust model (RFC 5355) or a
/// per-source limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// ENRP over an association outside the peer scope.
    EnrpStranger,
    /// ENRP naming another server than the one that speaks over the
    /// association.
    EnrpImpersonation,
    /// ENRP from one more registrar than the peer table may hold.
    PeerTableFull,
    /// A deregistration, re-registration or keep-alive acknowledgement for a
    /// PE registered over another association.
    ForeignPe,
    /// A registration beyond the association's PE limit.
    AssociationFull,
    /// Handle resolutions beyond the association's rate.
    ResolutionRate,
    /// Unreachability reports beyond the association's rate.
    UnreachableRate,
    /// A takeover naming this registrar or a peer that is alive.
    TakeoverOfLive,
}

impl Refusal {
    /// A short explanation for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::EnrpStranger => "ENRP from outside the peer scope refused",
            Self::EnrpImpersonation => {
                "ENRP naming another registrar than the association's refused"
            }
            Self::PeerTableFull => "ENRP from a new registrar refused: peer table full",
            Self::ForeignPe => "request for a PE registered over another association refused",
            Self::AssociationFull => "registration refused: association's PE limit reached",
            Self::ResolutionRate => "handle resolutions beyond the association's rate dropped",
            Self::UnreachableRate => "unreachability reports beyond the association's rate dropped",
            Self::TakeoverOfLive => "takeover of a live registrar refused",
        }
    }
}

/// Refused requests, by reason (see [`Refusal`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RefusalCounts {
    /// [`Refusal::EnrpStranger`].
    pub enrp_stranger: u64,
    /// [`Refusal::EnrpImpersonation`].
    pub enrp_impersonation: u64,
    /// [`Refusal::PeerTableFull`].
    pub peer_table_full: u64,
    /// [`Refusal::ForeignPe`].
    pub foreign_pe: u64,
    /// [`Refusal::AssociationFull`].
    pub association_full: u64,
    /// [`Refusal::ResolutionRate`].
    pub resolution_rate: u64,
    /// [`Refusal::UnreachableRate`].
    pub unreachable_rate: u64,
    /// [`Refusal::TakeoverOfLive`].
    pub takeover_of_live: u64,
}

impl RefusalCounts {
    pub(crate) fn count(&mut self, r: Refusal) {
        *match r {
            Refusal::EnrpStranger => &mut self.enrp_stranger,
            Refusal::EnrpImpersonation => &mut self.enrp_impersonation,
            Refusal::PeerTableFull => &mut self.peer_table_full,
            Refusal::ForeignPe => &mut self.foreign_pe,
            Refusal::AssociationFull => &mut self.association_full,
            Refusal::ResolutionRate => &mut self.resolution_rate,
            Refusal::UnreachableRate => &mut self.unreachable_rate,
            Refusal::TakeoverOfLive => &mut self.takeover_of_live,
        } += 1;
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.enrp_stranger
            + self.enrp_impersonation
            + self.peer_table_full
            + self.foreign_pe
            + self.association_full
            + self.resolution_rate
            + self.unreachable_rate
            + self.takeover_of_live
    }
}

/// Takeover suggestions withheld, by reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct WithheldCounts {
    /// The own share is within tolerance of the fair share.
    pub balanced: u64,
    /// No peer was below its share.
    pub no_target: u64,
    /// The rate limit was exhausted.
    pub rate_limited: u64,
    /// A suggestion for the PE was already in flight.
    pub in_flight: u64,
    /// The PE had just arrived by a suggestion.
    pub cooldown: u64,
}

/// Counters of a registrar.
#[derive(Debug, Clone, Default)]
pub struct RegistrarStats {
    /// Messages received.
    pub received: MessageCounts,
    /// Messages sent.
    pub sent: MessageCounts,
    /// Undecodable or misaddressed messages.
    pub invalid_messages: u64,
    /// Requests refused under the trust model or a per-source limit.
    pub refused: RefusalCounts,
    /// Takeover suggestions sent.
    pub suggestions_sent: u64,
    /// Takeover suggestions withheld, by reason.
    pub suggestions_withheld: WithheldCounts,
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

impl RegistrarStats {
    pub(crate) fn count_sent(&mut self, m: &Message) {
        self.sent.count(m);
    }

    pub(crate) fn count_received(&mut self, m: &Message) {
        self.received.count(m);
    }

    pub(crate) fn withheld(&mut self, w: Withheld) {
        let c = &mut self.suggestions_withheld;
        *match w {
            Withheld::Balanced => &mut c.balanced,
            Withheld::NoTarget => &mut c.no_target,
            Withheld::RateLimited => &mut c.rate_limited,
            Withheld::InFlight => &mut c.in_flight,
            Withheld::Cooldown => &mut c.cooldown,
        } += 1;
    }
}

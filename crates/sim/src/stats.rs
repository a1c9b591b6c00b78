//! Counters of what crossed the simulated network.

use rserpool_core::DownReason;
use rserpool_wire::{AsapType, EnrpType, Message};
use std::fmt;

/// An ASAP or ENRP message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// An ASAP message type.
    Asap(AsapType),
    /// An ENRP message type.
    Enrp(EnrpType),
}

impl MessageKind {
    /// The type of `message`.
    pub fn of(message: &Message) -> Self {
        match message {
            Message::Asap(m) => Self::Asap(m.message_type()),
            Message::Enrp(m) => Self::Enrp(m.message_type()),
        }
    }

    /// The RFC's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Asap(t) => t.name(),
            Self::Enrp(t) => t.name(),
        }
    }

    fn slot(self) -> usize {
        match self {
            Self::Asap(t) => t as usize,
            Self::Enrp(t) => SLOTS / 2 + t as usize,
        }
    }

    fn from_slot(slot: usize) -> Option<Self> {
        let code = u8::try_from(slot % (SLOTS / 2)).ok()?;
        if slot < SLOTS / 2 {
            AsapType::from_u8(code).map(Self::Asap)
        } else {
            EnrpType::from_u8(code).map(Self::Enrp)
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Type codes are below 16 in both protocols.
const SLOTS: usize = 32;

/// Messages and their encoded bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// How many.
    pub messages: u64,
    /// Their encoded size in total.
    pub bytes: u64,
}

impl Counter {
    fn add(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }
}

/// What the world has counted since it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    sent: [Counter; SLOTS],
    announced: [Counter; SLOTS],
    /// Messages handed to a machine.
    pub delivered: u64,
    /// Announce datagrams handed to a machine.
    pub announces_delivered: u64,
    /// Announce datagrams lost on a link.
    pub announces_lost: u64,
    /// Retransmissions: packet losses on associations, and retries while a path was broken.
    pub retransmissions: u64,
    /// Messages discarded because their association went away first.
    pub dropped: u64,
    /// Sends and closes on associations the sender did not have (unknown,
    /// closing or down), and sends to addresses that were already failing.
    pub refused: u64,
    /// Associations opened (including ones that never came up).
    pub associations_opened: u64,
    /// Associations that came up.
    pub associations_up: u64,
    down: [u64; 4],
    /// Application messages of sessions sent on associations.
    pub app_data: Counter,
}

impl Stats {
    pub(crate) fn count_data(&mut self, bytes: usize) {
        self.app_data.add(bytes);
    }

    pub(crate) fn count_sent(&mut self, kind: MessageKind, bytes: usize) {
        self.sent[kind.slot()].add(bytes);
    }

    pub(crate) fn count_announced(&mut self, kind: MessageKind, bytes: usize) {
        self.announced[kind.slot()].add(bytes);
    }

    pub(crate) fn count_down(&mut self, reason: DownReason) {
        self.down[reason_slot(reason)] += 1;
    }

    /// Messages of `kind` sent on associations.
    pub fn sent(&self, kind: MessageKind) -> Counter {
        self.sent[kind.slot()]
    }

    /// Announces of `kind` sent (once per announce, not per receiver).
    pub fn announced(&self, kind: MessageKind) -> Counter {
        self.announced[kind.slot()]
    }

    /// All messages sent on associations.
    pub fn sent_total(&self) -> Counter {
        self.sent.iter().fold(Counter::default(), |a, c| Counter {
            messages: a.messages + c.messages,
            bytes: a.bytes + c.bytes,
        })
    }

    /// `Down` notifications handed to machines for `reason` (one per end).
    pub fn down(&self, reason: DownReason) -> u64 {
        self.down[reason_slot(reason)]
    }

    /// Every message type seen, with its sent and announced counters.
    pub fn by_kind(&self) -> impl Iterator<Item = (MessageKind, Counter, Counter)> + '_ {
        (0..SLOTS).filter_map(|slot| {
            let kind = MessageKind::from_slot(slot)?;
            let (s, a) = (self.sent[slot], self.announced[slot]);
            (s.messages + a.messages > 0).then_some((kind, s, a))
        })
    }
}

fn reason_slot(reason: DownReason) -> usize {
    match reason {
        DownReason::Graceful => 0,
        DownReason::Aborted => 1,
        DownReason::Lost => 2,
        DownReason::HandshakeFailed => 3,
    }
}

impl fmt::Display for Stats {
    /// A table: one row per message type, then the transport counters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<34} {:>10} {:>12} {:>10} {:>12}",
            "message", "sent", "bytes", "announced", "bytes"
        )?;
        for (kind, s, a) in self.by_kind() {
            writeln!(
                f,
                "{:<34} {:>10} {:>12} {:>10} {:>12}",
                kind.name(),
                s.messages,
                s.bytes,
                a.messages,
                a.bytes
            )?;
        }
        write!(
            f,
            "events {} delivered {} announces delivered {} lost {} retransmissions {} \
             dropped {} refused {} associations opened {} up {} down graceful {} aborted {} \
             lost {} handshake-failed {}",
            self.events,
            self.delivered,
            self.announces_delivered,
            self.announces_lost,
            self.retransmissions,
            self.dropped,
            self.refused,
            self.associations_opened,
            self.associations_up,
            self.down[0],
            self.down[1],
            self.down[2],
            self.down[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_for_every_type() {
        for code in 1..=14 {
            let k = MessageKind::Asap(AsapType::from_u8(code).unwrap());
            assert_eq!(MessageKind::from_slot(k.slot()), Some(k));
        }
        for code in 1..=10 {
            let k = MessageKind::Enrp(EnrpType::from_u8(code).unwrap());
            assert_eq!(MessageKind::from_slot(k.slot()), Some(k));
        }
        assert_eq!(MessageKind::from_slot(0), None);
    }
}

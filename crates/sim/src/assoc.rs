//! Associations as the world keeps them: two ends, and one ordered lane of
//! messages in flight per direction.

use bytes::Bytes;
use rserpool_core::{AssocId, Instant};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

use crate::node::NodeId;

/// What travels on a lane.
#[derive(Debug)]
pub(crate) enum Item {
    Data {
        ppid: u32,
        data: Bytes,
    },
    /// The sender closes gracefully: everything before it is delivered first.
    Shutdown,
    /// The receiver of a `Shutdown` confirms it after its own queued data.
    ShutdownAck,
}

#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) ready_at: Instant,
    pub(crate) item: Item,
}

/// One direction of an association: FIFO, and only its head has an event
/// in the queue, so nothing overtakes.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    pub(crate) queue: VecDeque<InFlight>,
    pub(crate) scheduled: bool,
    /// Arrival time of the last message queued; later ones arrive no earlier.
    pub(crate) last_ready: Instant,
    /// A `Shutdown` or `ShutdownAck` is queued: no more data.
    pub(crate) shut: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndState {
    /// Handshake under way; the machine has not been told.
    Pending,
    Up,
    /// The machine asked for a graceful close; it still receives.
    Closing,
    /// Detached: told (or about to be told) `Down`, or its process is gone.
    Closed,
}

#[derive(Debug)]
pub(crate) struct End {
    pub(crate) node: NodeId,
    /// The incarnation of the node's machine this end belongs to.
    pub(crate) incarnation: u32,
    pub(crate) id: AssocId,
    pub(crate) state: EndState,
    /// This end's machine sent on the association before it was up, so it
    /// is owed a `HandshakeFailed` if it never comes up.
    pub(crate) opened: bool,
    /// Its machine gave the open up (`Transmit::Abandon`): should the
    /// handshake complete, the end is aborted instead of reported up.
    pub(crate) abandoned: bool,
}

impl End {
    pub(crate) fn live(&self) -> bool {
        self.state != EndState::Closed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Opening { started: Instant },
    Established,
}

/// `ends[0]` opened the association; `lanes[i]` carries what `ends[i]` sends.
#[derive(Debug)]
pub(crate) struct Assoc {
    pub(crate) ends: [End; 2],
    pub(crate) lanes: [Lane; 2],
    pub(crate) phase: Phase,
    /// Since when the path has been found broken (loss detection is armed).
    pub(crate) broken_since: Option<Instant>,
}

impl Assoc {
    /// The end index of `node`'s side.
    pub(crate) fn side_of(&self, node: NodeId) -> usize {
        usize::from(self.ends[0].node != node)
    }
}

/// The key of the association between two nodes, the same from both sides.
pub(crate) fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    if a <= b { (a, b) } else { (b, a) }
}

/// Every association in the world, by serial (never reused); every live
/// end by its `AssocId` (ids are unique world-wide); and the current
/// association of each pair of nodes: like SCTP endpoints, two nodes have at
/// most one association that new sends use (an older one may still be
/// finishing its shutdown).
///
/// `map` is a hash map (looked up two or three times per message); nothing
/// may depend on its iteration order: walk it by sorted serial instead.
#[derive(Debug, Default)]
pub(crate) struct Associations {
    pub(crate) map: FxHashMap<u64, Assoc>,
    pub(crate) by_id: FxHashMap<AssocId, u64>,
    pub(crate) pairs: FxHashMap<(NodeId, NodeId), u64>,
    next_serial: u64,
    next_id: u64,
}

impl Associations {
    pub(crate) fn new_id(&mut self) -> AssocId {
        self.next_id += 1;
        AssocId(self.next_id)
    }

    pub(crate) fn insert(&mut self, assoc: Assoc) -> u64 {
        self.next_serial += 1;
        for end in &assoc.ends {
            if end.live() {
                self.by_id.insert(end.id, self.next_serial);
            }
        }
        self.pairs.insert(
            pair(assoc.ends[0].node, assoc.ends[1].node),
            self.next_serial,
        );
        self.map.insert(self.next_serial, assoc);
        self.next_serial
    }
}

//! The trace: what the machines reported and what happened to the nodes
//! and their associations, with the virtual time.

use crate::node::{CrashMode, NodeId};
use rserpool_core::{AssocId, DownReason, Instant};

/// One line of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<E> {
    /// When.
    pub at: Instant,
    /// Where.
    pub node: NodeId,
    /// What.
    pub what: Happening<E>,
}

/// What a trace entry records.
#[derive(Debug, Clone, PartialEq)]
pub enum Happening<E> {
    /// The node's machine reported this event.
    Event(E),
    /// The node's machine was told an association came up, to `peer`.
    Up {
        /// The association, as the node knows it.
        assoc: AssocId,
        /// The node at the other end.
        peer: NodeId,
    },
    /// The node's machine was told an association went down.
    Down {
        /// The association, as the node knows it.
        assoc: AssocId,
        /// Why.
        reason: DownReason,
    },
    /// A machine was started on the node (incarnation 0 is the first start).
    Started {
        /// How many starts came before.
        incarnation: u32,
    },
    /// The node crashed.
    Crashed(CrashMode),
}

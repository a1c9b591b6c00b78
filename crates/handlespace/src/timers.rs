//! Per-PE deadlines (registration life and keep-alive) in one binary heap
//! with lazy deletion: arming pushes, re-arming leaves the old item to be
//! discarded when it surfaces, and the top is kept valid after every change
//! so the next deadline is a peek.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Which of a PE's two deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// The registration life ran out (the owner removes the PE; non-owners
    /// drop their copy).
    Lifetime = 0,
    /// The next keep-alive event of a PE the local registrar owns (send the
    /// next ASAP_ENDPOINT_KEEP_ALIVE, or give up waiting for its ACK).
    KeepAlive = 1,
}

impl TimerKind {
    pub(crate) fn from_index(i: u8) -> Self {
        if i == 0 {
            Self::Lifetime
        } else {
            Self::KeepAlive
        }
    }
}

/// Marks "no deadline" in an entry.
pub(crate) const NEVER: u64 = u64::MAX;

/// One armed deadline as queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Armed {
    pub deadline: u64,
    pub entry: u32,
    pub kind: u8,
}

/// The heap of armed deadlines.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<Armed>>,
    /// Deadlines currently set in entries (the valid heap items).
    live: usize,
}

/// Below this many stale items the heap is never rebuilt.
const COMPACT_SLACK: usize = 1024;

impl TimerQueue {
    pub(crate) fn push(&mut self, a: Armed) {
        self.heap.push(Reverse(a));
    }

    pub(crate) fn armed(&mut self) {
        self.live += 1;
    }

    pub(crate) fn disarmed(&mut self, n: usize) {
        self.live -= n;
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn peek(&self) -> Option<Armed> {
        self.heap.peek().map(|r| r.0)
    }

    pub(crate) fn pop(&mut self) -> Option<Armed> {
        self.heap.pop().map(|r| r.0)
    }

    /// Drops stale items from the top so [`Self::peek`] shows a live deadline.
    pub(crate) fn clean(&mut self, valid: impl Fn(&Armed) -> bool) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if valid(top) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Whether stale items outnumber live ones enough to rebuild.
    pub(crate) fn needs_compaction(&self) -> bool {
        self.heap.len() > 2 * self.live + COMPACT_SLACK
    }

    /// Replaces the heap by the live deadlines (O(n)).
    pub(crate) fn rebuild(&mut self, live: impl Iterator<Item = Armed>) {
        let v: Vec<Reverse<Armed>> = live.map(Reverse).collect();
        self.live = v.len();
        self.heap = BinaryHeap::from(v);
    }
}

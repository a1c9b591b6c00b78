//! Per-PE deadlines (registration life and keep-alive) in one binary heap.
//!
//! Each armed timer has at most one live heap item, queued at or before its
//! deadline. Re-arming to a later deadline (the keep-alive case: every
//! acknowledgement pushes the deadline out) only writes the new deadline;
//! when the old item reaches the top it is moved to the current deadline.
//! Re-arming earlier pushes a new item and leaves the old one stale; stale
//! items are dropped when they surface. After every change the top item is
//! exact (live, and equal to its timer's deadline), so the next deadline is
//! a peek.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;

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
    fn from_index(i: u8) -> Self {
        if i == 0 {
            Self::Lifetime
        } else {
            Self::KeepAlive
        }
    }
}

/// Marks "no deadline".
pub(crate) const NEVER: u64 = u64::MAX;

/// One queued item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    deadline: u64,
    entry: u32,
    kind: u8,
}

/// One timer of one entry.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The armed deadline, or [`NEVER`].
    deadline: u64,
    /// The deadline of the heap item standing for this timer, or [`NEVER`].
    queued: u64,
}

const IDLE: Slot = Slot {
    deadline: NEVER,
    queued: NEVER,
};

/// The deadlines of all entries, indexed like the entries.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<Item>>,
    slots: Vec<[Slot; 2]>,
    /// Timers with a deadline.
    armed: usize,
    /// Timers with a live heap item (the rest of the heap is stale).
    queued: usize,
}

/// Below this many stale items the heap is never rebuilt.
const COMPACT_SLACK: usize = 1024;

impl TimerQueue {
    /// Makes room for entry `i` (whose timers start disarmed).
    pub(crate) fn ensure(&mut self, i: u32) {
        if self.slots.len() <= i as usize {
            self.slots.resize(i as usize + 1, [IDLE; 2]);
        }
    }

    /// The deadline of a timer, if armed.
    pub(crate) fn deadline(&self, i: u32, kind: TimerKind) -> Option<u64> {
        let d = self.slots.get(i as usize)?[kind as usize].deadline;
        (d != NEVER).then_some(d)
    }

    /// Arms, re-arms ([`NEVER`]: disarms) a timer of entry `i`.
    pub(crate) fn set(&mut self, i: u32, kind: TimerKind, deadline: u64) {
        let s = &mut self.slots[i as usize][kind as usize];
        let old = std::mem::replace(&mut s.deadline, deadline);
        if old == deadline {
            return;
        }
        match (old == NEVER, deadline == NEVER) {
            (true, false) => self.armed += 1,
            (false, true) => self.armed -= 1,
            _ => {}
        }
        if deadline != NEVER && s.queued > deadline {
            // No item, or one that would surface too late: queue a new one.
            if s.queued == NEVER {
                self.queued += 1;
            }
            s.queued = deadline;
            self.heap.push(Reverse(Item {
                deadline,
                entry: i,
                kind: kind as u8,
            }));
        }
        self.settle();
    }

    /// Starts loading entry `i`'s timer slots into the cache.
    pub(crate) fn prefetch(&self, i: u32) {
        if let Some(s) = self.slots.get(i as usize) {
            crate::handlespace::prefetch(s);
        }
    }

    /// Disarms both timers of a removed entry.
    pub(crate) fn clear(&mut self, i: u32) {
        let Some(slots) = self.slots.get_mut(i as usize) else {
            return;
        };
        for s in slots.iter_mut() {
            self.armed -= usize::from(s.deadline != NEVER);
            self.queued -= usize::from(s.queued != NEVER);
            *s = IDLE;
        }
        self.settle();
    }

    /// The earliest deadline: O(1).
    pub(crate) fn next(&self) -> Option<(u64, u32, TimerKind)> {
        self.heap
            .peek()
            .map(|Reverse(t)| (t.deadline, t.entry, TimerKind::from_index(t.kind)))
    }

    /// Disarms and returns the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u64, u32, TimerKind)> {
        let Reverse(top) = *self.heap.peek()?;
        if top.deadline > now {
            return None;
        }
        self.heap.pop();
        self.slots[top.entry as usize][top.kind as usize] = IDLE;
        self.armed -= 1;
        self.queued -= 1;
        self.settle();
        Some((top.deadline, top.entry, TimerKind::from_index(top.kind)))
    }

    /// Number of armed timers.
    pub(crate) fn armed(&self) -> usize {
        self.armed
    }

    /// Restores "the top item is exact": drops stale items, forgets
    /// disarmed ones and moves late-re-armed ones to their deadline.
    fn settle(&mut self) {
        if self.heap.len() > 2 * self.queued + COMPACT_SLACK {
            self.rebuild();
        }
        while let Some(mut top) = self.heap.peek_mut() {
            let Reverse(t) = *top;
            let s = &mut self.slots[t.entry as usize][t.kind as usize];
            if s.queued != t.deadline {
                PeekMut::pop(top);
            } else if s.deadline == NEVER {
                s.queued = NEVER;
                self.queued -= 1;
                PeekMut::pop(top);
            } else if s.deadline > t.deadline {
                s.queued = s.deadline;
                top.0.deadline = s.deadline;
            } else {
                break;
            }
        }
    }

    /// Replaces the heap by one exact item per armed timer (O(n)).
    fn rebuild(&mut self) {
        let mut items = Vec::with_capacity(self.armed);
        for (i, slots) in self.slots.iter_mut().enumerate() {
            for (k, s) in slots.iter_mut().enumerate() {
                s.queued = s.deadline;
                if s.deadline != NEVER {
                    items.push(Reverse(Item {
                        deadline: s.deadline,
                        entry: i as u32,
                        kind: k as u8,
                    }));
                }
            }
        }
        self.queued = items.len();
        self.heap = BinaryHeap::from(items);
    }

    /// Checks the bookkeeping (for tests): counts, every armed timer queued
    /// no later than its deadline, and an exact top.
    pub(crate) fn check(&self, live: impl Fn(u32) -> bool) -> Result<(), String> {
        let mut armed = 0;
        let mut queued = 0;
        let mut earliest = None::<u64>;
        for (i, slots) in self.slots.iter().enumerate() {
            for s in slots {
                if s.deadline != NEVER {
                    if !live(i as u32) {
                        return Err(format!("timer of dead entry {i}"));
                    }
                    armed += 1;
                    earliest = Some(earliest.map_or(s.deadline, |e| e.min(s.deadline)));
                    if s.queued > s.deadline {
                        return Err(format!("entry {i}: timer queued after its deadline"));
                    }
                }
                queued += usize::from(s.queued != NEVER);
            }
        }
        if armed != self.armed || queued != self.queued {
            return Err(format!(
                "timer counts: armed {armed}/{} queued {queued}/{}",
                self.armed, self.queued
            ));
        }
        if self.next().map(|n| n.0) != earliest {
            return Err("next deadline is not the earliest armed one".into());
        }
        Ok(())
    }
}

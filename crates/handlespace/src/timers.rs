//! Per-PE deadlines (registration life and keep-alive) in a radix heap.
//!
//! Deadlines are popped in time order and time only moves forward, so a
//! monotone priority queue fits: items later than the last popped key
//! (`floor`) wait in buckets by the highest bit in which they differ from
//! it, and only when nothing at or below the floor is left does the lowest
//! bucket get spread out below a new floor. An item moves a few times over
//! its life, each time as part of a sequential pass over one bucket. A
//! binary heap instead walks some twenty levels of a million-item array
//! for every keep-alive, and at 10^6 PEs each level is a cache miss; that
//! was a third of the registrar's keep-alive cost.
//!
//! Each armed timer has at most one live item, queued at or before its
//! deadline. Re-arming to a later deadline (the keep-alive case: every
//! acknowledgement pushes the deadline out) only writes the new deadline;
//! when the old item comes up it is queued again at the current deadline.
//! Re-arming earlier queues a new item and leaves the old one stale; stale
//! items are dropped when they come up. After every change the top item is
//! exact (live, and equal to its timer's deadline), so the next deadline is
//! a peek.

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
    heap: RadixHeap,
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
            self.heap.push(Item {
                deadline,
                entry: i,
                kind: kind as u8,
            });
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
            .map(|t| (t.deadline, t.entry, TimerKind::from_index(t.kind)))
    }

    /// Disarms and returns the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u64, u32, TimerKind)> {
        let top = self.heap.peek()?;
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
        while let Some(t) = self.heap.peek() {
            let s = &mut self.slots[t.entry as usize][t.kind as usize];
            if s.queued != t.deadline {
                self.heap.pop();
            } else if s.deadline == NEVER {
                s.queued = NEVER;
                self.queued -= 1;
                self.heap.pop();
            } else if s.deadline > t.deadline {
                s.queued = s.deadline;
                self.heap.pop();
                self.heap.push(Item {
                    deadline: s.deadline,
                    ..t
                });
            } else {
                break;
            }
        }
    }

    /// Replaces the heap by one exact item per armed timer (O(n)).
    fn rebuild(&mut self) {
        self.heap.clear();
        self.queued = 0;
        for (i, slots) in self.slots.iter_mut().enumerate() {
            for (k, s) in slots.iter_mut().enumerate() {
                s.queued = s.deadline;
                if s.deadline != NEVER {
                    self.queued += 1;
                    self.heap.push(Item {
                        deadline: s.deadline,
                        entry: i as u32,
                        kind: k as u8,
                    });
                }
            }
        }
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

/// A monotone priority queue of items (a radix heap).
///
/// Items at or below `floor` (the deadline of the last item popped, or
/// earlier) are in `low`; every later item is in `buckets[b]`, where `b` is
/// the highest bit in which its deadline differs from the floor. Popping
/// the first item of a bucket makes its deadline the floor and spreads the
/// rest of that bucket over the buckets below. `top` is the earliest item,
/// kept up to date so that a peek costs nothing.
#[derive(Debug)]
struct RadixHeap {
    floor: u64,
    /// Items due at or before the floor, in exact order (normally only
    /// those due at the floor itself; a timer armed in the past also lands
    /// here).
    low: BinaryHeap<Reverse<Item>>,
    buckets: [Vec<Item>; 64],
    top: Option<Item>,
    len: usize,
}

impl Default for RadixHeap {
    fn default() -> Self {
        Self {
            floor: 0,
            low: BinaryHeap::new(),
            buckets: std::array::from_fn(|_| Vec::new()),
            top: None,
            len: 0,
        }
    }
}

impl RadixHeap {
    fn len(&self) -> usize {
        self.len
    }

    fn bucket(&self, deadline: u64) -> usize {
        63 - (deadline ^ self.floor).leading_zeros() as usize
    }

    fn push(&mut self, item: Item) {
        self.len += 1;
        if item.deadline <= self.floor {
            self.low.push(Reverse(item));
        } else {
            let b = self.bucket(item.deadline);
            self.buckets[b].push(item);
        }
        if self.top.is_none_or(|t| item < t) {
            self.top = Some(item);
        }
    }

    /// The earliest item.
    fn peek(&self) -> Option<Item> {
        self.top
    }

    fn pop(&mut self) -> Option<Item> {
        let top = self.top?;
        if self.low.is_empty() {
            self.raise_floor_to(top.deadline);
        }
        let Reverse(t) = self.low.pop()?;
        debug_assert_eq!(t, top);
        self.len -= 1;
        self.top = match self.low.peek() {
            Some(Reverse(next)) => Some(*next),
            None => self
                .buckets
                .iter()
                .find(|v| !v.is_empty())
                .and_then(|v| v.iter().min().copied()),
        };
        Some(t)
    }

    fn clear(&mut self) {
        self.low.clear();
        for b in &mut self.buckets {
            b.clear();
        }
        self.top = None;
        self.len = 0;
    }

    /// Moves the floor up to `floor`, the earliest deadline of the lowest
    /// non-empty bucket (`low` is empty): that bucket's items at `floor`
    /// go to `low`, the rest to the buckets below it. Items of higher
    /// buckets keep their bucket, because the new floor agrees with the old
    /// one in every bit above the lowest bucket's.
    fn raise_floor_to(&mut self, floor: u64) {
        let Some(b) = self.buckets.iter().position(|v| !v.is_empty()) else {
            return;
        };
        let mut items = std::mem::take(&mut self.buckets[b]);
        self.floor = floor;
        for t in items.drain(..) {
            if t.deadline <= floor {
                self.low.push(Reverse(t));
            } else {
                let nb = self.bucket(t.deadline);
                self.buckets[nb].push(t);
            }
        }
        // Keep the allocation: this bucket fills again as the floor moves.
        self.buckets[b] = items;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        /// Push at `now + delta` (a negative delta arms in the past).
        Push(i64, u32),
        /// Advance time and pop everything due.
        Advance(u64),
        /// Pop the earliest item whether due or not.
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (-50i64..5_000_000, 0u32..64).prop_map(|(d, e)| Op::Push(d, e)),
            4 => (-3i64..20, 0u32..64).prop_map(|(d, e)| Op::Push(d, e)),
            2 => (0u64..3_000_000).prop_map(Op::Advance),
            1 => Just(Op::Pop),
        ]
    }

    proptest! {
        /// The radix heap pops exactly what an ordered set pops.
        #[test]
        fn radix_heap_pops_in_order(ops in proptest::collection::vec(op(), 1..400)) {
            let mut heap = RadixHeap::default();
            let mut model = BTreeSet::new();
            let mut now = 1_000u64;
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push(d, e) => {
                        // Distinct items (the model is a set) that often
                        // share a deadline.
                        let deadline = now.saturating_add_signed(d);
                        let item = Item { deadline, entry: e * 1000 + n as u32, kind: (e % 2) as u8 };
                        heap.push(item);
                        model.insert(item);
                    }
                    Op::Advance(d) => {
                        now += d;
                        while heap.peek().is_some_and(|t| t.deadline <= now) {
                            let t = heap.pop();
                            prop_assert_eq!(t, model.pop_first());
                        }
                    }
                    Op::Pop => {
                        prop_assert_eq!(heap.pop(), model.pop_first());
                    }
                }
                prop_assert_eq!(heap.peek(), model.first().copied());
                prop_assert_eq!(heap.len(), model.len());
            }
        }
    }
}

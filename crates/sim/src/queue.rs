//! The event queue: earliest first, and in insertion order among events due
//! at the same instant, so runs do not depend on heap internals.

use rserpool_core::Instant;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A min-queue of `T` keyed by (time, insertion sequence).
///
/// The heap holds only small keys; the events themselves wait in a slab,
/// so sifting moves 24 bytes instead of whole events.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    heap: BinaryHeap<Key>,
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct Key {
    /// Nanoseconds since the epoch (enough for 584 years).
    at: u64,
    seq: u64,
    slot: u32,
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

fn nanos(at: Instant) -> u64 {
    u64::try_from(at.since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<T> Queue<T> {
    pub(crate) fn push(&mut self, at: Instant, item: T) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(item);
                slot
            }
            None => {
                self.slots.push(Some(item));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        self.heap.push(Key {
            at: nanos(at),
            seq: self.seq,
            slot,
        });
    }

    pub(crate) fn pop(&mut self) -> Option<(Instant, T)> {
        let key = self.heap.pop()?;
        let item = self.slots[key.slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(key.slot);
        Some((Instant::from_epoch(Duration::from_nanos(key.at)), item))
    }

    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|k| Instant::from_epoch(Duration::from_nanos(k.at)))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_fifo() {
        let mut q = Queue::default();
        let t = Instant::from_micros;
        q.push(t(5), "c");
        q.push(t(1), "a");
        q.push(t(5), "d");
        q.push(t(1), "b");
        assert_eq!(q.next_at(), Some(t(1)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, x)| x)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }
}

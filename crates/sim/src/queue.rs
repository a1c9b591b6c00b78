//! The event queue: earliest first, and in insertion order among events due
//! at the same instant, so runs do not depend on heap internals.

use rserpool_core::Instant;
use std::time::Duration;

/// A min-queue of `T` keyed by (time, insertion sequence).
///
/// The heap holds only small keys; the events themselves wait in a slab,
/// so sifting moves 24 bytes instead of whole events. The heap is 4-ary
/// (half the levels of a binary heap, and a node's children share a cache
/// line or two); as the keys are unique and totally ordered, the order of
/// pops does not depend on the heap's shape.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    heap: Vec<Key>,
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    /// Nanoseconds since the epoch (enough for 584 years).
    at: u64,
    seq: u64,
    slot: u32,
}

impl Key {
    #[inline]
    fn before(&self, other: &Self) -> bool {
        (self.at, self.seq) < (other.at, other.seq)
    }
}

const ARITY: usize = 4;

fn nanos(at: Instant) -> u64 {
    u64::try_from(at.since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            heap: Vec::new(),
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
        let key = Key {
            at: nanos(at),
            seq: self.seq,
            slot,
        };
        // Sift up from a new leaf, moving parents down into the hole.
        let heap = &mut self.heap;
        let mut pos = heap.len();
        heap.push(key);
        while pos > 0 {
            let parent = (pos - 1) / ARITY;
            if !key.before(&heap[parent]) {
                break;
            }
            heap[pos] = heap[parent];
            pos = parent;
        }
        heap[pos] = key;
    }

    pub(crate) fn pop(&mut self) -> Option<(Instant, T)> {
        let top = *self.heap.first()?;
        let last = self.heap.pop().expect("not empty");
        if !self.heap.is_empty() {
            // Sift the last leaf down from the root, moving the least
            // child up into the hole.
            let heap = &mut self.heap[..];
            let n = heap.len();
            let mut pos = 0;
            loop {
                let first = pos * ARITY + 1;
                if first >= n {
                    break;
                }
                let mut least = first;
                for c in first + 1..(first + ARITY).min(n) {
                    if heap[c].before(&heap[least]) {
                        least = c;
                    }
                }
                if !heap[least].before(&last) {
                    break;
                }
                heap[pos] = heap[least];
                pos = least;
            }
            heap[pos] = last;
        }
        let item = self.slots[top.slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(top.slot);
        Some((Instant::from_epoch(Duration::from_nanos(top.at)), item))
    }

    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.heap
            .first()
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

    /// Against a sort by (time, insertion), with pops interleaved.
    #[test]
    fn matches_a_stable_sort() {
        let mut q = Queue::default();
        let mut expected = Vec::new();
        let mut popped = Vec::new();
        let mut x: u64 = 12345;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut floor = 0;
        for i in 0..20_000u64 {
            let at = floor + next() % 50;
            q.push(Instant::from_micros(at), i);
            expected.push((at, i));
            if next() % 3 == 0 {
                let (t, v) = q.pop().expect("not empty");
                floor = t.since_epoch().as_micros() as u64;
                popped.push((floor, v));
            }
        }
        while let Some((t, v)) = q.pop() {
            popped.push((t.since_epoch().as_micros() as u64, v));
        }
        // Pops never go back in time, and every event comes out once, in
        // (time, insertion) order among those pending at each pop.
        assert!(popped.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(
            popped
                .windows(2)
                .all(|w| w[0].0 < w[1].0 || w[0].1 < w[1].1)
        );
        expected.sort();
        popped.sort();
        assert_eq!(popped, expected);
    }
}

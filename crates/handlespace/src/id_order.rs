//! A pool's PE IDs in ascending order, for paged handle table transfers.
//!
//! Paging is rare next to registrations and removals, so the order is kept
//! lazily: a registration or removal appends the ID to a log (one write to
//! a pool-local array instead of a B-tree descent, which misses the cache
//! once the handlespace outgrows it), and the log is merged into the sorted
//! array when a page asks for it or when the log outgrows the array
//! (amortised O(log n) per change, in sequential memory).

use std::ops::Bound;

/// A set of PE IDs as a sorted array plus the changes not yet merged.
///
/// The set is `sorted + added - removed` counted as multisets: every
/// removal follows the addition of the same ID (in `sorted` or `added`), so
/// each live ID ends with a count of one and each removed ID with zero.
#[derive(Debug, Default)]
pub(crate) struct IdOrder {
    sorted: Vec<u32>,
    added: Vec<u32>,
    removed: Vec<u32>,
}

/// Logs shorter than this are never merged on the registration path.
const MIN_LOG: usize = 64;

/// A page merges the log first once it exceeds 1/LOG_READ of the array.
const LOG_READ: usize = 8;

impl IdOrder {
    /// Records that `id` joined the set.
    #[inline]
    pub(crate) fn add(&mut self, id: u32) {
        self.added.push(id);
        self.merge_if_long();
    }

    /// Records that `id`, a member, left the set.
    #[inline]
    pub(crate) fn remove(&mut self, id: u32) {
        self.removed.push(id);
        self.merge_if_long();
    }

    #[inline]
    fn merge_if_long(&mut self) {
        if self.added.len() + self.removed.len() > self.sorted.len().max(MIN_LOG) {
            self.merge();
        }
    }

    /// Calls `f` with the IDs from `start` on in ascending order while it
    /// returns true; false if `f` stopped the walk.
    ///
    /// A short log is sorted in place and read alongside the array rather
    /// than merged into it, so paging through a large pool that changes
    /// between pages costs O(log n + changes + page) per page, not O(n).
    pub(crate) fn walk(&mut self, start: Bound<u32>, mut f: impl FnMut(u32) -> bool) -> bool {
        if (self.added.len() + self.removed.len()) * LOG_READ > self.sorted.len() {
            self.merge();
        } else {
            // Usually sorted already (no change since the last page): O(k).
            self.added.sort_unstable();
            self.removed.sort_unstable();
        }
        let from = |v: &[u32]| match start {
            Bound::Included(id) => v.partition_point(|&x| x < id),
            Bound::Excluded(id) => v.partition_point(|&x| x <= id),
            Bound::Unbounded => 0,
        };
        let mut a = self.sorted[from(&self.sorted)..].iter().copied().peekable();
        let mut b = self.added[from(&self.added)..].iter().copied().peekable();
        let mut gone = self.removed[from(&self.removed)..]
            .iter()
            .copied()
            .peekable();
        loop {
            let Some(id) = (match (a.peek(), b.peek()) {
                (Some(&x), Some(&y)) => Some(x.min(y)),
                (Some(&x), None) => Some(x),
                (None, y) => y.copied(),
            }) else {
                return true;
            };
            // The ID's count in `sorted + added - removed` (0 or 1).
            let mut count = 0i64;
            while a.next_if_eq(&id).is_some() {
                count += 1;
            }
            while b.next_if_eq(&id).is_some() {
                count += 1;
            }
            while gone.next_if(|&r| r < id).is_some() {
                debug_assert!(false, "id order: removal of an absent ID");
            }
            while gone.next_if_eq(&id).is_some() {
                count -= 1;
            }
            if count > 0 && !f(id) {
                return false;
            }
        }
    }

    /// The IDs in ascending order (for tests).
    #[cfg(test)]
    fn collect_all(&mut self) -> Vec<u32> {
        let mut v = Vec::new();
        self.walk(Bound::Unbounded, |id| {
            v.push(id);
            true
        });
        v
    }

    /// Folds the log into the sorted array.
    fn merge(&mut self) {
        self.added.sort_unstable();
        self.removed.sort_unstable();
        let mut out = Vec::with_capacity(self.sorted.len() + self.added.len());
        let (mut a, mut b) = (
            self.sorted.iter().copied().peekable(),
            self.added.iter().copied().peekable(),
        );
        let mut gone = self.removed.iter().copied().peekable();
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&x), Some(&y)) if x <= y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, _) => b.next(),
            };
            let Some(id) = next else { break };
            // Removals still pending sort before `id` name IDs that were
            // never added: they cannot occur, but must not stall the merge.
            while gone.next_if(|&r| r < id).is_some() {
                debug_assert!(false, "id order: removal of an absent ID");
            }
            if gone.next_if_eq(&id).is_none() {
                out.push(id);
            }
        }
        self.sorted = out;
        self.added.clear();
        self.removed.clear();
        // The logs' capacity stays for the next round, within the array's size.
        self.added.shrink_to(self.sorted.len().max(MIN_LOG));
        self.removed.shrink_to(self.sorted.len().max(MIN_LOG));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Adds and removes like a pool does (removing only members, re-adding
    /// removed IDs) and compares with a B-tree set after every step.
    #[test]
    fn matches_a_set_through_adds_removes_and_readds() {
        let mut order = IdOrder::default();
        let mut model = BTreeSet::new();
        let mut x: u32 = 12345;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // A small ID space so IDs are removed and re-added often.
            let id = x % 300;
            if model.contains(&id) {
                order.remove(id);
                model.remove(&id);
            } else {
                order.add(id);
                model.insert(id);
            }
            if step % 97 == 0 {
                let want: Vec<u32> = model.iter().copied().collect();
                assert_eq!(order.collect_all(), want, "step {step}");
                // A walk from a cursor sees what follows it, whether the
                // log is read alongside the array or merged first.
                let after = id;
                let mut got = Vec::new();
                order.walk(Bound::Excluded(after), |x| {
                    got.push(x);
                    got.len() < 10
                });
                let want: Vec<u32> = model.range(after + 1..).take(10).copied().collect();
                assert_eq!(got, want, "step {step} after {after}");
            }
        }
        let want: Vec<u32> = model.iter().copied().collect();
        assert_eq!(order.collect_all(), want);
    }

    #[test]
    fn the_log_stays_within_the_array_size() {
        let mut order = IdOrder::default();
        for id in 0..10_000 {
            order.add(id);
            assert!(order.added.len() <= order.sorted.len().max(MIN_LOG) + 1);
        }
        for id in 0..10_000 {
            order.remove(id);
            assert!(order.removed.len() <= order.sorted.len().max(MIN_LOG) + 1);
        }
        assert!(order.collect_all().is_empty());
    }
}

//! Weighted random selection over a Fenwick (binary indexed) tree of
//! weights, indexed by the PE's position in its pool's member array: O(log n)
//! to add, remove, reweigh and draw.

use rand::{Rng, RngCore};

/// Prefix sums of the member weights.
#[derive(Debug, Default)]
pub(crate) struct Fenwick {
    /// 1-based Fenwick array; `tree[0]` is unused.
    tree: Vec<u64>,
    total: u64,
    /// Members with a non-zero weight (the only ones that can be drawn).
    positive: u32,
}

#[inline]
fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Fenwick {
    /// The sum of all weights.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// How many members have a non-zero weight.
    pub(crate) fn positive(&self) -> u32 {
        self.positive
    }

    fn prefix(&self, mut i: usize) -> u64 {
        let mut s = 0;
        while i > 0 {
            s += self.tree[i];
            i -= lowbit(i);
        }
        s
    }

    /// Appends a member with weight `w` at position `len`.
    pub(crate) fn push(&mut self, w: u64) {
        if self.tree.is_empty() {
            self.tree.push(0);
        }
        let i = self.tree.len();
        let v = w + self.prefix(i - 1) - self.prefix(i - lowbit(i));
        self.tree.push(v);
        self.total += w;
        self.positive += u32::from(w > 0);
    }

    fn add(&mut self, pos: usize, delta: i128) {
        let mut i = pos + 1;
        while i < self.tree.len() {
            self.tree[i] = (i128::from(self.tree[i]) + delta) as u64;
            i += lowbit(i);
        }
    }

    /// Changes the weight at `pos` from `old` to `new`.
    pub(crate) fn set(&mut self, pos: usize, old: u64, new: u64) {
        if old == new {
            return;
        }
        self.add(pos, i128::from(new) - i128::from(old));
        self.total = self.total - old + new;
        self.positive = self.positive + u32::from(new > 0) - u32::from(old > 0);
    }

    /// Removes position `pos` (weight `w`) by moving the last position
    /// (weight `w_last`) into it, mirroring `Vec::swap_remove`.
    pub(crate) fn swap_remove(&mut self, pos: usize, w: u64, w_last: u64) {
        let last = self.tree.len() - 2;
        if pos != last {
            self.add(pos, i128::from(w_last) - i128::from(w));
            self.add(last, -i128::from(w_last));
        } else {
            self.add(pos, -i128::from(w));
        }
        // Node `last` covers only positions up to `last`, which is now empty
        // of weight; no remaining node covers it, so it can simply go.
        self.tree.pop();
        self.total -= w;
        self.positive -= u32::from(w > 0);
    }

    /// The position whose weight interval contains `r` (`r < total`).
    fn find(&self, mut r: u64) -> usize {
        let n = self.tree.len() - 1;
        let mut pos = 0;
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            step >>= 1;
        }
        pos
    }

    /// Draws a position with probability proportional to its weight; `None`
    /// if every weight is zero.
    pub(crate) fn draw<R: RngCore + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        (self.total > 0).then(|| self.find(rng.random_range(0..self.total)))
    }

    /// The weight at `pos` (O(log n); for invariant checks).
    pub(crate) fn weight_at(&self, pos: usize) -> u64 {
        self.prefix(pos + 1) - self.prefix(pos)
    }

    /// Number of positions.
    pub(crate) fn len(&self) -> usize {
        self.tree.len().saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_set_remove_keep_prefix_sums() {
        let mut f = Fenwick::default();
        let mut w: Vec<u64> = (0..37).map(|i| (i * 7 % 5) as u64).collect();
        for &x in &w {
            f.push(x);
        }
        for (i, &x) in w.iter().enumerate() {
            assert_eq!(f.weight_at(i), x);
        }
        f.set(3, w[3], 100);
        w[3] = 100;
        let last = *w.last().unwrap();
        f.swap_remove(5, w[5], last);
        w.swap_remove(5);
        for (i, &x) in w.iter().enumerate() {
            assert_eq!(f.weight_at(i), x, "pos {i}");
        }
        assert_eq!(f.total(), w.iter().sum::<u64>());
        assert_eq!(f.positive() as usize, w.iter().filter(|&&x| x > 0).count());
        while let Some(&l) = w.last() {
            f.swap_remove(w.len() - 1, l, l);
            w.pop();
            assert_eq!(f.total(), w.iter().sum::<u64>());
        }
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn find_maps_intervals() {
        let mut f = Fenwick::default();
        for w in [2u64, 0, 3, 1] {
            f.push(w);
        }
        let got: Vec<usize> = (0..6).map(|r| f.find(r)).collect();
        assert_eq!(got, vec![0, 0, 2, 2, 2, 3]);
    }
}

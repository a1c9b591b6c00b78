//! The index from `(pool slot, PE ID)` to entry: an open-addressing table
//! of 8-byte slots holding the entry number and 32 bits of the key's hash.
//!
//! A general hash map keeps the key beside the value and its control bytes
//! in a second array, so a look-up at 10^6 PEs costs two cache misses (the
//! control group, then the slot) before the entry itself, the third. Here
//! a slot holds no key: the entry has it, and the caller reads the entry
//! anyway. The hash bits in the slot both place it (its home index) and
//! filter: a look-up reads an entry only when its bits match. One miss for
//! the slot, and at 8 bytes per slot about half the memory.
//!
//! Linear probing, at most 3/4 full, with backward-shift deletion (no
//! tombstones). The hash is seeded per table, as in [`crate::hashing`]:
//! PE IDs are chosen by senders, who must not be able to build long probe
//! runs.

use std::hash::BuildHasher;

const EMPTY: u64 = u64::MAX;

#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    /// `(hash bits << 32) | entry`, or [`EMPTY`].
    slots: Vec<u64>,
    len: usize,
    hasher: foldhash::fast::RandomState,
}

impl KeyIndex {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The hash bits kept in a slot: the high half of the key's hash.
    fn bits(&self, key: u64) -> u32 {
        (self.hasher.hash_one(key) >> 32) as u32
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, bits: u32) -> usize {
        bits as usize & self.mask()
    }

    /// The entry whose key is `key`; `key_of` gives an entry's key.
    #[inline]
    pub(crate) fn get(&self, key: u64, key_of: impl Fn(u32) -> u64) -> Option<u32> {
        self.find(key, key_of).map(|at| self.slots[at] as u32)
    }

    /// Where the slot of `key` is.
    fn find(&self, key: u64, key_of: impl Fn(u32) -> u64) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let bits = self.bits(key);
        let mut at = self.home(bits);
        loop {
            let s = self.slots[at];
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == bits && key_of(s as u32) == key {
                return Some(at);
            }
            at = (at + 1) & self.mask();
        }
    }

    /// Adds `key -> entry`; the key must not be present.
    pub(crate) fn insert(&mut self, key: u64, entry: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let bits = self.bits(key);
        self.place(bits, entry);
        self.len += 1;
    }

    fn place(&mut self, bits: u32, entry: u32) {
        let mut at = self.home(bits);
        while self.slots[at] != EMPTY {
            at = (at + 1) & self.mask();
        }
        self.slots[at] = (u64::from(bits) << 32) | u64::from(entry);
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        for s in old.into_iter().filter(|s| *s != EMPTY) {
            self.place((s >> 32) as u32, s as u32);
        }
    }

    /// Removes `key`, returning its entry.
    pub(crate) fn remove(&mut self, key: u64, key_of: impl Fn(u32) -> u64) -> Option<u32> {
        let mut hole = self.find(key, key_of)?;
        let entry = self.slots[hole] as u32;
        self.slots[hole] = EMPTY;
        self.len -= 1;
        // Backward shift: move up every later slot of the run that may
        // live in the hole, so that no probe sequence is cut short.
        let mask = self.mask();
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let s = self.slots[at];
            if s == EMPTY {
                break;
            }
            let home = self.home((s >> 32) as u32);
            // The slot may move to the hole unless its home lies cyclically
            // in (hole, at].
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.slots[hole] = s;
                self.slots[at] = EMPTY;
                hole = at;
            }
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// The index answers like a map, with entries holding their keys.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..300), 1..2000)) {
            let mut index = KeyIndex::default();
            let mut model: HashMap<u64, u32> = HashMap::new();
            // Entry n has key keys[n]; entries are never reused here.
            let mut keys: Vec<u64> = Vec::new();
            for (add, k) in ops {
                let key = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let key_of = |e: u32| keys[e as usize];
                if add {
                    if let std::collections::hash_map::Entry::Vacant(v) = model.entry(key) {
                        let e = keys.len() as u32;
                        keys.push(key);
                        index.insert(key, e);
                        v.insert(e);
                    }
                } else {
                    prop_assert_eq!(index.remove(key, key_of), model.remove(&key));
                }
                let key_of = |e: u32| keys[e as usize];
                prop_assert_eq!(index.len(), model.len());
                for (&k, &e) in &model {
                    prop_assert_eq!(index.get(k, key_of), Some(e));
                }
                prop_assert_eq!(index.get(key ^ 1, key_of), model.get(&(key ^ 1)).copied());
            }
        }
    }
}

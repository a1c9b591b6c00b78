//! The ownership index: for every home registrar, the PEs it owns and the
//! PE checksum over them (RFC 5353 §3.6.2), maintained incrementally.

use crate::hashing::Map;
use rserpool_wire::{PeChecksum, PrId};

/// The PEs one registrar owns.
#[derive(Debug)]
pub(crate) struct OwnerSet {
    pub pr: PrId,
    pub members: Vec<u32>,
    pub checksum: PeChecksum,
    /// `checksum.value()`, folded once per change rather than per query.
    pub value: u16,
}

/// All owner sets. There are few registrars, so small sets are found by a
/// linear scan (cheaper than hashing); the map serves large scopes.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    sets: Vec<OwnerSet>,
    index: Map<PrId, u32>,
}

const LINEAR: usize = 8;

impl Owners {
    #[inline]
    pub(crate) fn slot(&self, pr: PrId) -> Option<usize> {
        if self.sets.len() <= LINEAR {
            self.sets.iter().position(|s| s.pr == pr)
        } else {
            self.index.get(&pr).map(|&s| s as usize)
        }
    }

    #[inline]
    pub(crate) fn get(&self, pr: PrId) -> Option<&OwnerSet> {
        self.slot(pr).map(|s| &self.sets[s])
    }

    pub(crate) fn sets(&self) -> &[OwnerSet] {
        &self.sets
    }

    /// Adds entry `i` to `pr`'s set; returns its position there.
    pub(crate) fn add(&mut self, pr: PrId, i: u32, contribution: u32) -> u32 {
        let s = match self.slot(pr) {
            Some(s) => s,
            None => {
                self.index.insert(pr, self.sets.len() as u32);
                self.sets.push(OwnerSet {
                    pr,
                    members: Vec::new(),
                    checksum: PeChecksum::EMPTY,
                    value: PeChecksum::EMPTY.value(),
                });
                self.sets.len() - 1
            }
        };
        let set = &mut self.sets[s];
        set.checksum.add(contribution);
        set.value = set.checksum.value();
        set.members.push(i);
        (set.members.len() - 1) as u32
    }

    /// Removes the entry at `pos` of `pr`'s set; returns the entry moved into
    /// `pos` (whose position the caller must update), if any.
    pub(crate) fn remove(&mut self, pr: PrId, pos: u32, contribution: u32) -> Option<u32> {
        let s = self.slot(pr)?;
        let set = &mut self.sets[s];
        set.checksum.remove(contribution);
        set.value = set.checksum.value();
        set.members.swap_remove(pos as usize);
        let moved = set.members.get(pos as usize).copied();
        if set.members.is_empty() {
            self.drop_set(s);
        }
        moved
    }

    /// The PE checksum of `pr`'s set (that of the empty set if it owns nothing).
    #[inline]
    pub(crate) fn checksum(&self, pr: PrId) -> u16 {
        match self.get(pr) {
            Some(s) => s.value,
            // PeChecksum::EMPTY.value(): RFC 1071 over nothing.
            None => 0xFFFF,
        }
    }

    /// Takes `pr`'s whole set out of the index.
    pub(crate) fn take(&mut self, pr: PrId) -> Option<OwnerSet> {
        let s = self.slot(pr)?;
        Some(self.drop_set(s))
    }

    fn drop_set(&mut self, s: usize) -> OwnerSet {
        let set = self.sets.swap_remove(s);
        self.index.remove(&set.pr);
        if let Some(moved) = self.sets.get(s) {
            self.index.insert(moved.pr, s as u32);
        }
        set
    }
}

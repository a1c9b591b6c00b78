//! Ownership by home registrar: counts, sets, moves, PE checksums and the
//! mark/sweep of a resynchronisation (RFC 5353 §3.6).

use super::{Handlespace, OwnerChange, Removed};
use crate::EntryId;
use rserpool_wire::{PeChecksum, PeId, PoolHandle, PrId};

impl Handlespace {
    /// How many PEs `pr` owns.
    pub fn owned_count(&self, pr: PrId) -> usize {
        self.owners.get(pr).map_or(0, |s| s.members.len())
    }

    /// The PEs `pr` owns (in no particular order).
    pub fn owned(&self, pr: PrId) -> impl ExactSizeIterator<Item = EntryId> + '_ {
        self.owners
            .get(pr)
            .map_or(&[][..], |s| &s.members[..])
            .iter()
            .map(|&i| EntryId(i))
    }

    /// Every registrar that owns PEs, with its count.
    pub fn owner_counts(&self) -> impl Iterator<Item = (PrId, usize)> + '_ {
        self.owners.sets().iter().map(|s| (s.pr, s.members.len()))
    }

    /// Makes `to` the home registrar of PE `pe` of pool `handle`
    /// (TAKEOVER_SERVER, or a takeover completing); clears its
    /// resynchronisation mark. `None` if the PE is unknown.
    pub fn set_owner(
        &mut self,
        handle: &PoolHandle,
        pe: PeId,
        to: Option<PrId>,
    ) -> Option<OwnerChange> {
        let id = self.lookup(handle, pe)?;
        self.set_entry_owner(id, to)
    }

    /// [`Self::set_owner`] by entry.
    pub fn set_entry_owner(&mut self, id: EntryId, to: Option<PrId>) -> Option<OwnerChange> {
        let from = self.entry(id)?.element.home_registrar;
        if from != to {
            self.move_owner(id.0, from, to);
        }
        self.e_mut(id.0).marked = false;
        Some(OwnerChange { from, to })
    }

    /// Makes `to` the home registrar of every PE `from` owns (a peer taking
    /// over a failed registrar); returns how many moved.
    pub fn reassign_owner(&mut self, from: PrId, to: PrId) -> usize {
        if from == to {
            return self.owned_count(from);
        }
        let Some(set) = self.owners.take(from) else {
            return 0;
        };
        for &i in &set.members {
            let contribution = self.e(i).contribution;
            self.pos[i as usize].owner = self.owners.add(to, i, contribution);
            let e = self.entries[i as usize].as_mut().expect("live entry");
            e.element.home_registrar = Some(to);
            e.marked = false;
        }
        set.members.len()
    }

    /// The PE checksum over the PEs `pr` owns (RFC 5353 §3.6.2), kept
    /// incrementally: O(1).
    #[inline]
    pub fn checksum(&self, pr: PrId) -> u16 {
        self.owners.checksum(pr)
    }

    /// [`Self::checksum`] computed from scratch over all entries (a cross-check).
    pub fn recompute_checksum(&self, pr: PrId) -> u16 {
        PeChecksum::compute(
            self.iter()
                .filter(|(_, e)| e.element.home_registrar == Some(pr))
                .map(|(_, e)| (&self.pool_ref(e.pool).handle, e.element.id)),
        )
        .value()
    }

    /// The checksum over every PE regardless of owner, from scratch.
    pub fn recompute_total_checksum(&self) -> u16 {
        PeChecksum::compute(
            self.iter()
                .map(|(_, e)| (&self.pool_ref(e.pool).handle, e.element.id)),
        )
        .value()
    }

    /// Marks every PE `pr` owns (RFC 5353 §3.6.3 step 1); returns how many.
    pub fn mark_owned(&mut self, pr: PrId) -> usize {
        let Self {
            owners, entries, ..
        } = self;
        let Some(set) = owners.get(pr) else { return 0 };
        for &i in &set.members {
            entries[i as usize].as_mut().expect("live entry").marked = true;
        }
        set.members.len()
    }

    /// Marks one PE (any registration or update of it clears the mark);
    /// false if not live.
    pub fn mark_entry(&mut self, id: EntryId) -> bool {
        if self.entry(id).is_none() {
            return false;
        }
        self.e_mut(id.0).marked = true;
        true
    }

    /// Clears the mark of one PE (re-registration clears it too); false if unknown.
    pub fn unmark(&mut self, handle: &PoolHandle, pe: PeId) -> bool {
        match self.lookup(handle, pe) {
            Some(id) => {
                self.e_mut(id.0).marked = false;
                true
            }
            None => false,
        }
    }

    /// Removes the PEs `pr` owns that are still marked and returns them.
    pub fn sweep_marked(&mut self, pr: PrId) -> Vec<Removed> {
        let marked: Vec<u32> = self
            .owned(pr)
            .filter(|id| self.e(id.0).marked)
            .map(|id| id.0)
            .collect();
        marked
            .into_iter()
            .filter_map(|i| self.remove(EntryId(i)))
            .collect()
    }
}

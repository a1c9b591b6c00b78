//! The per-PE deadlines as the registrar sees them.

use super::{Expired, Handlespace};
use crate::EntryId;
use crate::timers::{NEVER, TimerKind};
use rserpool_wire::{PeId, PoolHandle};

impl Handlespace {
    /// Arms (or re-arms) a deadline of PE `pe` of pool `handle`; false if the
    /// PE is unknown. `u64::MAX` means "never" and cancels.
    pub fn set_timer(
        &mut self,
        handle: &PoolHandle,
        pe: PeId,
        kind: TimerKind,
        deadline: u64,
    ) -> bool {
        match self.lookup(handle, pe) {
            Some(id) => {
                // A looked-up entry is live: no second check.
                self.timers.set(id.0, kind, deadline);
                true
            }
            None => false,
        }
    }

    /// [`Self::set_timer`] by entry.
    pub fn set_timer_entry(&mut self, id: EntryId, kind: TimerKind, deadline: u64) -> bool {
        if self.entry(id).is_none() {
            return false;
        }
        self.timers.set(id.0, kind, deadline);
        true
    }

    /// Disarms a deadline; false if the PE is unknown.
    pub fn cancel_timer(&mut self, handle: &PoolHandle, pe: PeId, kind: TimerKind) -> bool {
        self.set_timer(handle, pe, kind, NEVER)
    }

    /// [`Self::cancel_timer`] by entry.
    pub fn cancel_timer_entry(&mut self, id: EntryId, kind: TimerKind) -> bool {
        self.set_timer_entry(id, kind, NEVER)
    }

    /// The armed deadline of this kind of an entry, if any.
    pub fn deadline(&self, id: EntryId, kind: TimerKind) -> Option<u64> {
        self.entry(id)?;
        self.timers.deadline(id.0, kind)
    }

    /// The earliest armed deadline with its entry and kind: O(1).
    #[inline]
    pub fn next_deadline(&self) -> Option<(u64, EntryId, TimerKind)> {
        self.timers.next().map(|(d, i, k)| (d, EntryId(i), k))
    }

    /// Takes the earliest deadline if it is at or before `now`, disarming it
    /// (the entry itself stays). Call until `None`.
    pub fn pop_expired(&mut self, now: u64) -> Option<Expired> {
        let (deadline, EntryId(i), kind) = self.pop_due(now)?;
        let e = self.e(i);
        Some(Expired {
            entry: EntryId(i),
            pool: self.pool_ref(e.pool).handle.clone(),
            pe: e.element.id,
            kind,
            deadline,
        })
    }

    /// [`Self::pop_expired`] without naming the PE: the deadline, its entry
    /// and kind (the registrar's path, which works by entry).
    #[inline]
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, EntryId, TimerKind)> {
        self.timers.pop_due(now).map(|(d, i, k)| (d, EntryId(i), k))
    }

    /// Number of armed deadlines.
    pub fn armed_timers(&self) -> usize {
        self.timers.armed()
    }
}

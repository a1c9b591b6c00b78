//! The home registrar's per-PE custody: the association a PE registered
//! over, reports against it and its outstanding keep-alive. See
//! [`crate::custody`] for the structure.

use super::Handlespace;
use crate::EntryId;

impl Handlespace {
    /// Records that the PE registered over association `assoc` (a driver's
    /// association number); replaces an earlier one. False if not live.
    pub fn bind_association(&mut self, id: EntryId, assoc: u64) -> bool {
        if self.entry(id).is_none() {
            return false;
        }
        self.custody.bind(id.0, assoc);
        true
    }

    /// Forgets the PE's association (it is no longer owned here).
    pub fn unbind_association(&mut self, id: EntryId) {
        if self.entry(id).is_some() {
            self.custody.unbind(id.0);
        }
    }

    /// The association the PE registered over, if recorded.
    pub fn association(&self, id: EntryId) -> Option<u64> {
        self.entry(id)?;
        self.custody.assoc(id.0)
    }

    /// The PEs registered over `assoc`, each unbound from it (the
    /// association went down). O(number of those PEs).
    pub fn take_association(&mut self, assoc: u64) -> Vec<EntryId> {
        self.custody.take(assoc).into_iter().map(EntryId).collect()
    }

    /// Number of PEs bound to `assoc` (O(1)).
    pub fn association_load(&self, assoc: u64) -> usize {
        self.custody.count(assoc)
    }

    /// Associations with at least one PE bound.
    pub fn bound_associations(&self) -> usize {
        self.custody.associations()
    }

    /// Counts an ENDPOINT_UNREACHABLE report against the PE; returns the
    /// reports since its last sign of life (0 if not live).
    pub fn report_unreachable(&mut self, id: EntryId) -> u32 {
        if self.entry(id).is_none() {
            return 0;
        }
        u32::from(self.custody.report(id.0))
    }

    /// Reports counted against the PE since its last sign of life.
    pub fn unreachable_reports(&self, id: EntryId) -> u32 {
        match self.entry(id) {
            Some(_) => u32::from(self.custody.reports(id.0)),
            None => 0,
        }
    }

    /// A sign of life (registration, keep-alive acknowledgement): clears
    /// the reports and the outstanding keep-alive.
    pub fn heard_from(&mut self, id: EntryId) {
        if self.entry(id).is_some() {
            self.custody.clear_reports(id.0);
            self.custody.set_awaiting_ack(id.0, false);
        }
    }

    /// Marks a keep-alive as sent (`true`) and waiting for its
    /// acknowledgement, or no longer waited for (`false`).
    pub fn set_awaiting_ack(&mut self, id: EntryId, on: bool) {
        if self.entry(id).is_some() {
            self.custody.set_awaiting_ack(id.0, on);
        }
    }

    /// Whether a keep-alive to the PE waits for its acknowledgement.
    pub fn awaiting_ack(&self, id: EntryId) -> bool {
        self.entry(id).is_some() && self.custody.awaiting_ack(id.0)
    }
}

//! What a home registrar keeps per PE while it looks after it: the
//! association the PE registered over (with every association's PEs as an
//! intrusive list, so that an association going down finds its PEs without a
//! scan), the ENDPOINT_UNREACHABLE reports against it, and whether a
//! keep-alive is waiting for its acknowledgement.
//!
//! Kept beside the entries, indexed like them, so that a PE's whole state
//! has one home and leaves with it.

use crate::hashing::Map;

/// No association / end of a list.
const NONE: u32 = u32::MAX;
const NO_ASSOC: u64 = u64::MAX;

/// The custody record of one entry (24 bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Custody {
    /// The association it registered over, or [`NO_ASSOC`].
    assoc: u64,
    prev: u32,
    next: u32,
    /// ENDPOINT_UNREACHABLE reports since the last sign of life.
    reports: u16,
    /// A keep-alive was sent and its acknowledgement is outstanding.
    awaiting_ack: bool,
}

impl Default for Custody {
    fn default() -> Self {
        Self {
            assoc: NO_ASSOC,
            prev: NONE,
            next: NONE,
            reports: 0,
            awaiting_ack: false,
        }
    }
}

/// The custody records and the list heads of the associations.
#[derive(Debug, Default)]
pub(crate) struct Custodies {
    records: Vec<Custody>,
    /// Association -> (first entry registered over it, entries in its list).
    heads: Map<u64, (u32, u32)>,
}

impl Custodies {
    /// Makes room for entry `i` (with a fresh record).
    pub(crate) fn ensure(&mut self, i: u32) {
        if self.records.len() <= i as usize {
            self.records.resize(i as usize + 1, Custody::default());
        }
    }

    /// Forgets everything about entry `i` (it left the handlespace).
    pub(crate) fn clear(&mut self, i: u32) {
        self.unbind(i);
        self.records[i as usize] = Custody::default();
    }

    pub(crate) fn prefetch(&self, i: u32) {
        if let Some(c) = self.records.get(i as usize) {
            crate::handlespace::prefetch(c);
        }
    }

    /// Records that entry `i` registered over `assoc`.
    pub(crate) fn bind(&mut self, i: u32, assoc: u64) {
        debug_assert_ne!(assoc, NO_ASSOC);
        if self.records[i as usize].assoc == assoc {
            return;
        }
        self.unbind(i);
        let head = self.heads.entry(assoc).or_insert((NONE, 0));
        let next = std::mem::replace(&mut head.0, i);
        head.1 += 1;
        if next != NONE {
            self.records[next as usize].prev = i;
        }
        let c = &mut self.records[i as usize];
        c.assoc = assoc;
        c.prev = NONE;
        c.next = next;
    }

    /// Takes entry `i` out of its association's list.
    pub(crate) fn unbind(&mut self, i: u32) {
        let Custody {
            assoc, prev, next, ..
        } = self.records[i as usize];
        if assoc == NO_ASSOC {
            return;
        }
        if next != NONE {
            self.records[next as usize].prev = prev;
        }
        if prev != NONE {
            self.records[prev as usize].next = next;
        }
        if let Some(head) = self.heads.get_mut(&assoc) {
            if prev == NONE {
                head.0 = next;
            }
            head.1 -= 1;
            if head.1 == 0 {
                self.heads.remove(&assoc);
            }
        }
        let c = &mut self.records[i as usize];
        c.assoc = NO_ASSOC;
        c.prev = NONE;
        c.next = NONE;
    }

    /// Unbinds and returns every entry registered over `assoc`.
    pub(crate) fn take(&mut self, assoc: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = self.heads.remove(&assoc).map_or(NONE, |h| h.0);
        while i != NONE {
            out.push(i);
            let c = &mut self.records[i as usize];
            i = c.next;
            c.assoc = NO_ASSOC;
            c.prev = NONE;
            c.next = NONE;
        }
        out
    }

    /// Number of entries registered over `assoc`.
    pub(crate) fn count(&self, assoc: u64) -> usize {
        self.heads.get(&assoc).map_or(0, |h| h.1 as usize)
    }

    /// The association of entry `i`.
    pub(crate) fn assoc(&self, i: u32) -> Option<u64> {
        let a = self.records.get(i as usize)?.assoc;
        (a != NO_ASSOC).then_some(a)
    }

    /// Counts one more unreachability report; returns the count.
    pub(crate) fn report(&mut self, i: u32) -> u16 {
        let c = &mut self.records[i as usize];
        c.reports = c.reports.saturating_add(1);
        c.reports
    }

    pub(crate) fn reports(&self, i: u32) -> u16 {
        self.records[i as usize].reports
    }

    /// A sign of life: the reports against entry `i` are void.
    pub(crate) fn clear_reports(&mut self, i: u32) {
        self.records[i as usize].reports = 0;
    }

    pub(crate) fn set_awaiting_ack(&mut self, i: u32, on: bool) {
        self.records[i as usize].awaiting_ack = on;
    }

    pub(crate) fn awaiting_ack(&self, i: u32) -> bool {
        self.records[i as usize].awaiting_ack
    }

    /// Number of associations with PEs.
    pub(crate) fn associations(&self) -> usize {
        self.heads.len()
    }

    /// Checks the lists (for tests): every bound entry is reachable from its
    /// association's head, links are mutual, and no list has a dead entry.
    pub(crate) fn check(&self, live: impl Fn(u32) -> bool) -> Result<(), String> {
        let mut seen = 0usize;
        for (&assoc, &(head, count)) in &self.heads {
            let mut prev = NONE;
            let mut i = head;
            let mut n = 0;
            while i != NONE {
                let c = self.records[i as usize];
                if !live(i) || c.assoc != assoc || c.prev != prev {
                    return Err(format!("association {assoc}: broken list at entry {i}"));
                }
                seen += 1;
                n += 1;
                prev = i;
                i = c.next;
            }
            if n != count {
                return Err(format!("association {assoc}: {n} entries, counted {count}"));
            }
        }
        let bound = self.records.iter().filter(|c| c.assoc != NO_ASSOC).count();
        if bound != seen {
            return Err(format!("{bound} entries bound, {seen} in lists"));
        }
        Ok(())
    }
}

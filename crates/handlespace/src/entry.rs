//! A pool element as the handlespace holds it.

use rserpool_wire::{PeId, PoolElement, PrId};

/// A handle on an entry, valid until that entry is removed (then the slot
/// may be reused). Cheap to copy; what [`crate::Handlespace::resolve`] and
/// the iterators hand out instead of cloning pool elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub(crate) u32);

impl EntryId {
    /// The slot number (for diagnostics).
    pub fn index(self) -> u32 {
        self.0
    }
}

/// A registered pool element with the registrar's bookkeeping.
#[derive(Debug, Clone)]
pub struct PeEntry {
    pub(crate) element: PoolElement,
    pub(crate) pool: u32,
    pub(crate) registered_at: u64,
    pub(crate) last_update: u64,
    /// Times handed out since the last (re-)registration (degradation policies).
    pub(crate) counter: u32,
    /// The entry's share of its owner's PE checksum.
    pub(crate) contribution: u32,
    pub(crate) marked: bool,
}

impl PeEntry {
    /// The pool element as last registered (home registrar included).
    pub fn element(&self) -> &PoolElement {
        &self.element
    }

    /// The PE's identifier.
    pub fn id(&self) -> PeId {
        self.element.id
    }

    /// The PE's home registrar (its owner), if known.
    pub fn owner(&self) -> Option<PrId> {
        self.element.home_registrar
    }

    /// When the PE was first registered (caller's time unit).
    pub fn registered_at(&self) -> u64 {
        self.registered_at
    }

    /// When the PE was last registered or updated.
    pub fn last_update(&self) -> u64 {
        self.last_update
    }

    /// How often the PE was handed out since its last (re-)registration.
    pub fn selection_count(&self) -> u32 {
        self.counter
    }

    /// Whether the PE is marked for a resynchronisation sweep.
    pub fn is_marked(&self) -> bool {
        self.marked
    }
}

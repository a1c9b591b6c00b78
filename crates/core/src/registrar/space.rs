//! The handlespace as the registrar uses it: pool elements by entry, results
//! as wire values, deadlines in the registrar's time.

use super::PeKey;
use crate::time::Instant;
use rand::RngCore;
use rserpool_handlespace::{Config, EntryId, Handlespace, RegisterOutcome, Removed, TimerKind};
use rserpool_wire::{
    CauseCode, ErrorCause, PeId, Policy, PoolElement, PoolEntry, PoolHandle, PrId,
};

#[derive(Debug)]
pub(super) struct Space {
    hs: Handlespace,
    scratch: Vec<EntryId>,
}

impl std::ops::Deref for Space {
    type Target = Handlespace;

    fn deref(&self) -> &Handlespace {
        &self.hs
    }
}

impl std::ops::DerefMut for Space {
    fn deref_mut(&mut self) -> &mut Handlespace {
        &mut self.hs
    }
}

/// A pool element as a pool user may see it: without the ASAP transport,
/// which is the registrar's business.
fn public_view(e: &PoolElement) -> PoolElement {
    PoolElement {
        id: e.id,
        home_registrar: e.home_registrar,
        registration_life: e.registration_life,
        user_transport: e.user_transport.clone(),
        policy: e.policy.clone(),
        asap_transport: None,
    }
}

impl Space {
    pub(super) fn new(max_pes: usize, default_items: u32, max_items: u32) -> Self {
        Self {
            hs: Handlespace::new(Config {
                max_pes,
                default_items,
                max_items,
                ..Config::default()
            }),
            scratch: Vec::new(),
        }
    }

    pub(super) fn inner(&self) -> &Handlespace {
        &self.hs
    }

    pub(super) fn register(
        &mut self,
        pool: &PoolHandle,
        pe: PoolElement,
        now: Instant,
    ) -> Result<RegisterOutcome, ErrorCause> {
        self.hs
            .register(pool, pe, now.as_micros())
            .map_err(|e| e.cause())
    }

    /// The PE's home, if the PE is known.
    pub(super) fn home_of(&self, id: EntryId) -> Option<PrId> {
        self.hs.entry(id).and_then(|e| e.owner())
    }

    /// `(pool, PE)` of a live entry.
    pub(super) fn key_of(&self, id: EntryId) -> Option<PeKey> {
        Some((self.hs.handle_of(id)?.clone(), self.hs.entry(id)?.id()))
    }

    pub(super) fn remove_entry(&mut self, id: EntryId) -> Option<Removed> {
        self.hs.remove(id)
    }

    /// Arms (`Some`) or disarms a deadline of an entry.
    pub(super) fn set_deadline(&mut self, id: EntryId, kind: TimerKind, at: Option<Instant>) {
        let at = at.map_or(u64::MAX, Instant::as_micros);
        self.hs.set_timer_entry(id, kind, at);
    }

    /// The earliest per-PE deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.hs
            .next_deadline()
            .map(|(at, _, _)| Instant::from_micros(at))
    }

    /// Takes a per-PE deadline due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(EntryId, TimerKind)> {
        self.hs
            .pop_due(now.as_micros())
            .map(|(_, entry, kind)| (entry, kind))
    }

    /// Handle resolution by the pool's policy; the overall policy goes in the response.
    pub(super) fn resolve<R: RngCore + ?Sized>(
        &mut self,
        pool: &PoolHandle,
        items: Option<u32>,
        rng: &mut R,
    ) -> Result<(Policy, Vec<PoolElement>), ErrorCause> {
        let mut ids = std::mem::take(&mut self.scratch);
        let result = match self.hs.resolve(pool, items, rng, &mut ids) {
            Ok(policy_type) => Ok((
                Policy::from_type_default(policy_type),
                ids.iter()
                    .filter_map(|id| self.hs.entry(*id))
                    .map(|e| public_view(e.element()))
                    .collect(),
            )),
            Err(_) => Err(ErrorCause::new(CauseCode::UnknownPoolHandle)),
        };
        self.scratch = ids;
        result
    }

    /// The entries `pr` owns, collected (the caller changes them).
    pub(super) fn owned_entries(&self, pr: PrId) -> Vec<EntryId> {
        self.hs.owned(pr).collect()
    }

    /// The PEs `pr` owns by name (for a resynchronisation's bookkeeping).
    pub(super) fn owned_keys(&self, pr: PrId) -> Vec<PeKey> {
        self.hs.owned(pr).filter_map(|id| self.key_of(id)).collect()
    }

    /// One page of a handle table: up to `max` PEs after `after`, grouped by
    /// pool; the last PE taken (the next cursor) and whether more follow.
    pub(super) fn page(
        &self,
        after: Option<&PeKey>,
        owner: Option<PrId>,
        max: usize,
    ) -> (Vec<PoolEntry>, Option<PeKey>, bool) {
        let mut ids = Vec::new();
        let more = self
            .hs
            .page(after.map(|(h, p)| (h, *p)), owner, max, &mut ids);
        let mut pools: Vec<PoolEntry> = Vec::new();
        let mut last = None;
        for id in ids {
            let (Some(handle), Some(e)) = (self.hs.handle_of(id), self.hs.entry(id)) else {
                continue;
            };
            last = Some((handle.clone(), e.id()));
            match pools.last_mut() {
                Some(p) if &p.pool_handle == handle => p.pool_elements.push(e.element().clone()),
                _ => pools.push(PoolEntry {
                    pool_handle: handle.clone(),
                    pool_elements: vec![e.element().clone()],
                }),
            }
        }
        (pools, last, more)
    }

    /// The entry of a PE by name.
    pub(super) fn find(&self, pool: &PoolHandle, pe: PeId) -> Option<EntryId> {
        self.hs.lookup(pool, pe)
    }
}

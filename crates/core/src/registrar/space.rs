//! The handlespace as the registrar uses it: pool elements by (pool, PE ID),
//! results as wire values.

use super::PeKey;
use crate::time::Instant;
use rand::RngCore;
use rserpool_handlespace::{Config, EntryId, Handlespace};
use rserpool_wire::{
    CauseCode, ErrorCause, PeId, Policy, PoolElement, PoolEntry, PoolHandle, PrId,
};

/// What an accepted registration or update did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Registered {
    /// The PE was not in the handlespace before.
    pub(super) new: bool,
    /// Its home registrar before this registration, if it was known.
    pub(super) previous_home: Option<PrId>,
}

#[derive(Debug)]
pub(super) struct Space {
    hs: Handlespace,
    scratch: Vec<EntryId>,
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
    ) -> Result<Registered, ErrorCause> {
        let previous_home = self.hs.get(pool, pe.id).and_then(|e| e.owner());
        match self.hs.register(pool, pe, now.as_micros()) {
            Ok(o) => Ok(Registered {
                new: o.new_pe,
                previous_home,
            }),
            Err(e) => Err(e.cause()),
        }
    }

    pub(super) fn remove(&mut self, pool: &PoolHandle, pe: PeId) -> Option<PoolElement> {
        self.hs.deregister(pool, pe).map(|r| r.element)
    }

    pub(super) fn get(&self, pool: &PoolHandle, pe: PeId) -> Option<PoolElement> {
        self.hs.get(pool, pe).map(|e| e.element().clone())
    }

    /// `Some(home)` for a known PE (home `None` if unknown to it), `None` for an unknown PE.
    pub(super) fn home(&self, pool: &PoolHandle, pe: PeId) -> Option<Option<PrId>> {
        self.hs.get(pool, pe).map(|e| e.owner())
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
                    .map(|e| e.element().clone())
                    .collect(),
            )),
            Err(_) => Err(ErrorCause::new(CauseCode::UnknownPoolHandle)),
        };
        self.scratch = ids;
        result
    }

    pub(super) fn owned_count(&self, pr: PrId) -> usize {
        self.hs.owned_count(pr)
    }

    pub(super) fn owned_by(&self, pr: PrId) -> Vec<PeKey> {
        self.hs
            .owned(pr)
            .filter_map(|id| Some((self.hs.handle_of(id)?.clone(), self.hs.entry(id)?.id())))
            .collect()
    }

    /// Makes `pr` the PE's home; false if the PE is unknown.
    pub(super) fn set_owner(&mut self, pool: &PoolHandle, pe: PeId, pr: PrId) -> bool {
        self.hs.set_owner(pool, pe, Some(pr)).is_some()
    }

    pub(super) fn checksum(&self, pr: PrId) -> u16 {
        self.hs.checksum(pr)
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
}

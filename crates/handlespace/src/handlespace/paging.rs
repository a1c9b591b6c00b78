//! Paged iteration in (pool handle, PE ID) order for handle table transfers.

use super::Handlespace;
use crate::EntryId;
use rserpool_wire::{PeId, PoolHandle, PrId};
use std::ops::Bound;

impl Handlespace {
    /// Appends to `out` (not cleared) up to `max` PEs in (pool handle, PE ID)
    /// order, starting after `after`, only those owned by `owner` if given;
    /// returns whether more follow (the M flag of a handle table response).
    /// The cursor stays valid while the handlespace changes between pages.
    pub fn page(
        &self,
        after: Option<(&PoolHandle, PeId)>,
        owner: Option<PrId>,
        max: usize,
        out: &mut Vec<EntryId>,
    ) -> bool {
        let mut taken = 0;
        // Takes entry `i` if wanted; false once the page is full and another
        // wanted entry follows.
        let mut take = |i: u32| -> bool {
            if owner.is_some() && self.e(i).element.home_registrar != owner {
                return true;
            }
            if taken == max {
                return false;
            }
            out.push(EntryId(i));
            taken += 1;
            true
        };
        let rest: Box<dyn Iterator<Item = &u32>> = match after {
            Some((h, pe)) => {
                if let Some(&p) = self.pool_order.get(h) {
                    if !self.walk_in_order(p, Bound::Excluded(pe.0), &mut take) {
                        return true;
                    }
                }
                Box::new(
                    self.pool_order
                        .range::<PoolHandle, _>((Bound::Excluded(h), Bound::Unbounded))
                        .map(|(_, p)| p),
                )
            }
            None => Box::new(self.pool_order.values()),
        };
        for &p in rest {
            if !self.walk_in_order(p, Bound::Unbounded, &mut take) {
                return true;
            }
        }
        false
    }
}

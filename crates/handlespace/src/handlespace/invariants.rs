//! Consistency checks of every index against the entries (for tests).

use super::{Handlespace, key};
use rserpool_wire::PeId;
use rserpool_wire::checksum::pe_sum;
use std::ops::Bound;

impl Handlespace {
    /// Checks every index against the entries and the checksums against a
    /// full recomputation; a description of the first disagreement found.
    /// O(n log n): for tests and debugging.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let live = self.entries.iter().filter(|e| e.is_some()).count();
        if live != self.len || self.by_key.len() != self.len {
            return Err(format!(
                "len {} live {live} by_key {}",
                self.len,
                self.by_key.len()
            ));
        }
        for &f in &self.free {
            if self.entries[f as usize].is_some() {
                return Err(format!("free slot {f} is live"));
            }
        }
        let mut owned = 0;
        let mut per_pool = vec![0usize; self.pools.len()];
        for (id, e) in self.iter() {
            let i = id.0;
            let Some(Some(pool)) = self.pools.get(e.pool as usize) else {
                return Err(format!("entry {i} in dead pool"));
            };
            per_pool[e.pool as usize] += 1;
            let at = self.pos[i as usize];
            let in_members = !pool.selection.draws_from_members()
                || pool.members.get(at.pool as usize) == Some(&i);
            if !in_members || self.lookup_key(key(e.pool, e.element.id)) != Some(i) {
                return Err(format!("entry {i}: pool indices disagree"));
            }
            if e.contribution != pe_sum(&pool.handle, e.element.id) {
                return Err(format!("entry {i}: stale checksum contribution"));
            }
            if e.element.policy.policy_type() != pool.policy_type {
                return Err(format!("entry {i}: policy differs from pool"));
            }
            if let Some(pr) = e.element.home_registrar {
                owned += 1;
                let ok = self
                    .owners
                    .get(pr)
                    .and_then(|s| s.members.get(at.owner as usize))
                    == Some(&i);
                if !ok {
                    return Err(format!("entry {i}: owner index disagrees"));
                }
            }
        }
        let owner_total: usize = self.owners.sets().iter().map(|s| s.members.len()).sum();
        if owner_total != owned {
            return Err(format!(
                "owner sets hold {owner_total}, {owned} owned entries"
            ));
        }
        for s in self.owners.sets() {
            if s.members.is_empty() {
                return Err(format!("empty owner set for {}", s.pr));
            }
            if s.value != s.checksum.value() || s.value != self.recompute_checksum(s.pr) {
                return Err(format!("checksum of {} differs from recomputation", s.pr));
            }
        }
        let pools = self.pools.iter().filter(|p| p.is_some()).count();
        if pools != self.pool_index.len() || pools != self.pool_order.len() {
            return Err("pool indices disagree on the pool count".into());
        }
        for (p, pool) in self.pools.iter().enumerate() {
            let Some(pool) = pool else { continue };
            let p = p as u32;
            let ordered_ok = {
                let mut sorted = Vec::new();
                pool.ids().walk(Bound::Unbounded, |id| {
                    sorted.push(id);
                    true
                });
                sorted.len() == pool.len
                    && per_pool.get(p as usize) == Some(&pool.len)
                    && sorted.windows(2).all(|w| w[0] < w[1])
                    && sorted.iter().all(|&id| {
                        self.lookup_key(key(p, PeId(id)))
                            .is_some_and(|i| self.e(i).pool == p)
                    })
            };
            if !ordered_ok {
                return Err(format!("pool {}: PE ID order disagrees", pool.handle));
            }
            let members: Vec<u32> = if pool.selection.draws_from_members() {
                pool.members.clone()
            } else {
                let mut ids = Vec::new();
                self.walk_in_order(p, Bound::Unbounded, |i| {
                    ids.push(i);
                    true
                });
                ids
            };
            let members_ok = if pool.selection.draws_from_members() {
                pool.members.len() == pool.len
            } else {
                pool.members.is_empty()
            };
            if pool.len == 0
                || !members_ok
                || self.pool_index.get(&pool.handle) != Some(&p)
                || self.pool_order.get(&pool.handle) != Some(&p)
            {
                return Err(format!("pool {}: indices disagree", pool.handle));
            }
            pool.selection
                .check(&self.nodes, &members, |m| {
                    let e = self.e(m);
                    (e.element.policy.clone(), e.counter)
                })
                .map_err(|s| format!("pool {}: {s}", pool.handle))?;
        }
        let live = |i: u32| matches!(self.entries.get(i as usize), Some(Some(_)));
        self.timers.check(live)?;
        self.custody.check(live)?;
        Ok(())
    }
}

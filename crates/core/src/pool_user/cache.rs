//! The pool user's cache of handle resolutions (RFC 5352 §3.3 C1-C4) and
//! the PU side of member selection (RFC 5356): what a PU does with the list
//! a registrar returned.

use crate::time::Instant;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rserpool_wire::{self as wire, PeId, Policy, PolicyType};
use std::time::Duration;

/// One pool as the last handle resolution described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPool {
    /// The pool's overall policy type (absent in the response means Round
    /// Robin; per-PE policy parameters do not count, RFC 5352 §2.2.6).
    pub policy: PolicyType,
    /// The PEs in the order the registrar returned them, minus those
    /// reported unreachable since.
    pub elements: Vec<wire::PoolElement>,
    /// When the resolution arrived.
    pub fetched: Instant,
    /// Round-robin position.
    rr_next: usize,
}

impl CachedPool {
    pub(crate) fn new(
        policy: Option<Policy>,
        elements: Vec<wire::PoolElement>,
        now: Instant,
    ) -> Self {
        Self {
            policy: policy.map_or(PolicyType::RoundRobin, |p| p.policy_type()),
            elements,
            fetched: now,
            rr_next: 0,
        }
    }

    /// Whether the entry is younger than `stale_cache_value`.
    pub fn is_fresh(&self, now: Instant, stale_cache_value: Duration) -> bool {
        now.saturating_since(self.fetched) < stale_cache_value
    }

    /// Drops a PE; returns whether it was there.
    pub(crate) fn remove(&mut self, pe_id: PeId) -> bool {
        let Some(i) = self.elements.iter().position(|p| p.id == pe_id) else {
            return false;
        };
        self.elements.remove(i);
        if i < self.rr_next {
            self.rr_next -= 1;
        }
        true
    }

    /// Picks a PE by the pool's policy, PU side (RFC 5356 §4):
    ///
    /// * Round Robin and Weighted Round Robin walk the list (the registrar
    ///   already spread WRR weights over it); unknown policies too, as Round
    ///   Robin is what every component must support.
    /// * Random picks uniformly.
    /// * Weighted Random (and its delay-penalty variant) picks with
    ///   probability proportional to each PE's weight; the randomized
    ///   least-used variants likewise with weight `u32::MAX - load
    ///   (- degradation)`, as RFC 5356 defines RLU. All weights zero: uniform.
    /// * Priority takes the highest priority (the first of equals).
    /// * The least-used family takes the list in the registrar's order (it
    ///   sorted by load), that is the first PE.
    pub(crate) fn select(&mut self, rng: &mut ChaCha8Rng) -> Option<&wire::PoolElement> {
        let n = self.elements.len();
        if n == 0 {
            return None;
        }
        use PolicyType as T;
        let i = match self.policy {
            T::Random => rng.random_range(0..n),
            T::WeightedRandom
            | T::WeightedRandomDpf
            | T::RandomizedLeastUsed
            | T::RandomizedPriorityLeastUsed
            | T::RandomizedLeastUsedWithDegradation
            | T::RandomizedPriorityLeastUsedWithDegradation => {
                weighted(&self.elements, rng, |p| selection_weight(&p.policy))
            }
            T::Priority => {
                let prio = |p: &wire::PoolElement| match p.policy {
                    Policy::Priority { priority } => priority,
                    _ => 0,
                };
                // max_by_key keeps the last of equals; the first is wanted.
                let best = self.elements.iter().map(prio).max().unwrap_or(0);
                self.elements
                    .iter()
                    .position(|p| prio(p) == best)
                    .unwrap_or(0)
            }
            T::LeastUsed
            | T::LeastUsedWithDegradation
            | T::PriorityLeastUsed
            | T::PriorityLeastUsedWithDegradation
            | T::LeastUsedDpf
            | T::LeastUsedWithDegradationDpf => 0,
            T::RoundRobin | T::WeightedRoundRobin | T::Unknown(_) => {
                let i = self.rr_next % n;
                self.rr_next = (i + 1) % n;
                i
            }
        };
        self.elements.get(i)
    }
}

/// The weight a randomized policy gives a PE.
fn selection_weight(p: &Policy) -> u64 {
    use Policy::*;
    match *p {
        WeightedRandom { weight } | WeightedRandomDpf { weight, .. } => weight.into(),
        RandomizedLeastUsed { load } => (u32::MAX - load).into(),
        RandomizedPriorityLeastUsed { load, degradation }
        | RandomizedLeastUsedWithDegradation { load, degradation }
        | RandomizedPriorityLeastUsedWithDegradation { load, degradation } => {
            u64::from(u32::MAX).saturating_sub(u64::from(load) + u64::from(degradation))
        }
        // A PE registered with another policy type than the pool's counts as
        // weight 1, so it is neither favoured nor starved.
        _ => 1,
    }
}

/// An index drawn with probability proportional to `weight`; uniform if all are zero.
fn weighted<T>(items: &[T], rng: &mut ChaCha8Rng, weight: impl Fn(&T) -> u64) -> usize {
    let total: u64 = items.iter().map(&weight).sum();
    if total == 0 {
        return rng.random_range(0..items.len());
    }
    let mut x = rng.random_range(0..total);
    for (i, item) in items.iter().enumerate() {
        let w = weight(item);
        if x < w {
            return i;
        }
        x -= w;
    }
    items.len() - 1
}

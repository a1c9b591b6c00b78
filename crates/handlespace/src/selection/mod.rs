//! Pool member selection (RFC 5356 §4-5, draft-dreibholz-rserpool-delay and
//! the reference implementation's private policies): which structure each
//! policy keeps per pool and how a handle resolution reads it.
//!
//! | structure | policies |
//! |---|---|
//! | [`Ordered`] by key, round robin within ties | RR (one key), PRIO, LU, LUD, PLU, PLUD, LU-DPF, LUD-DPF, WRR (key = virtual time) |
//! | member array | RAND |
//! | [`Fenwick`] tree of weights | WRAND, WRAND-DPF, RLU, RLUD, RPLU, RPLUD |

mod ordered;
mod weighted;

pub(crate) use ordered::Ordered;
pub(crate) use weighted::Fenwick;

use crate::EntryId;
use rand::{Rng, RngCore};
use rserpool_wire::{Policy, PolicyType};

/// Per-entry selection state, kept in an array parallel to the entries so
/// that walking a selection list touches only these 16-byte nodes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Node {
    pub next: u32,
    pub prev: u32,
    /// The sort key (ordered policies) or effective weight (weighted ones).
    pub key: u64,
}

/// Key of a WRR entry with weight zero: it cannot serve and is not linked.
const UNLINKED: u64 = u64::MAX;

/// Virtual time above which WRR rebases its keys to stay far from overflow.
const WRR_REBASE: u64 = 1 << 62;

/// What selection needs to know about entries beyond its own nodes.
pub(crate) trait EntryView {
    /// The entry's current effective weight.
    fn weight(&self, c: u32) -> u64;
    /// The entry's position in its pool's member array.
    fn pos(&self, c: u32) -> usize;
}

/// How a policy type selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    RoundRobin,
    WeightedRoundRobin,
    Ordered,
    Random,
    Weighted,
}

/// The strategy for a policy type; `None` for types this crate cannot select by.
pub(crate) fn strategy(t: PolicyType) -> Option<Strategy> {
    use PolicyType as T;
    Some(match t {
        T::RoundRobin => Strategy::RoundRobin,
        T::WeightedRoundRobin => Strategy::WeightedRoundRobin,
        T::Random => Strategy::Random,
        T::Priority
        | T::LeastUsed
        | T::LeastUsedWithDegradation
        | T::PriorityLeastUsed
        | T::PriorityLeastUsedWithDegradation
        | T::LeastUsedDpf
        | T::LeastUsedWithDegradationDpf => Strategy::Ordered,
        T::WeightedRandom
        | T::WeightedRandomDpf
        | T::RandomizedLeastUsed
        | T::RandomizedLeastUsedWithDegradation
        | T::RandomizedPriorityLeastUsed
        | T::RandomizedPriorityLeastUsedWithDegradation => Strategy::Weighted,
        T::Unknown(_) => return None,
    })
}

/// Whether selecting a PE of this policy raises its degradation counter.
pub(crate) fn degrades(t: PolicyType) -> bool {
    use PolicyType as T;
    matches!(
        t,
        T::LeastUsedWithDegradation
            | T::PriorityLeastUsedWithDegradation
            | T::LeastUsedWithDegradationDpf
            | T::RandomizedLeastUsedWithDegradation
            | T::RandomizedPriorityLeastUsedWithDegradation
    )
}

const MAX32: u64 = u32::MAX as u64;

/// `distance * dpf` as a load or weight fraction: the DPF is a fraction of
/// `u32::MAX` per millisecond (WIRE.md §6).
fn penalty(dpf: u32, distance: u32) -> u64 {
    u64::from(dpf).saturating_mul(u64::from(distance))
}

/// The sort key of an ordered policy (smaller is served first).
///
/// LUD adds the degradation once per time the PE was handed out (RFC 5356
/// §5.2); PLU adds it once (the load the next user would cause, §5.3); PLUD
/// does both; the DPF variants add `distance x DPF` and cap at 100 % load.
pub(crate) fn order_key(p: &Policy, counter: u32) -> u64 {
    let c = u64::from(counter);
    match *p {
        Policy::RoundRobin => 0,
        Policy::Priority { priority } => MAX32 - u64::from(priority),
        Policy::LeastUsed { load } => u64::from(load),
        Policy::LeastUsedWithDegradation { load, degradation } => {
            u64::from(load).saturating_add(c.saturating_mul(u64::from(degradation)))
        }
        Policy::PriorityLeastUsed { load, degradation } => u64::from(load) + u64::from(degradation),
        Policy::PriorityLeastUsedWithDegradation { load, degradation } => {
            u64::from(load).saturating_add((c + 1).saturating_mul(u64::from(degradation)))
        }
        Policy::LeastUsedDpf {
            load,
            load_dpf,
            distance,
        } => u64::from(load)
            .saturating_add(penalty(load_dpf, distance))
            .min(MAX32),
        Policy::LeastUsedWithDegradationDpf {
            load,
            degradation,
            load_dpf,
            distance,
        } => u64::from(load)
            .saturating_add(c.saturating_mul(u64::from(degradation)))
            .saturating_add(penalty(load_dpf, distance))
            .min(MAX32),
        _ => 0,
    }
}

/// `u32::MAX - min(u32::MAX, used) + 1`: the weight of a randomized
/// least-used policy. RFC 5356 §5.4 says weight `0xFFFFFFFF - load`; the
/// `+ 1` keeps a fully loaded PE selectable (with negligible probability)
/// instead of making a pool of fully loaded PEs unresolvable.
fn free_capacity(used: u64) -> u64 {
    MAX32 - used.min(MAX32) + 1
}

/// The effective weight of a weighted policy (zero: never selected).
pub(crate) fn weight(p: &Policy, counter: u32) -> u64 {
    let c = u64::from(counter);
    match *p {
        Policy::WeightedRandom { weight } | Policy::WeightedRoundRobin { weight } => {
            u64::from(weight)
        }
        Policy::WeightedRandomDpf {
            weight,
            weight_dpf,
            distance,
        } => {
            if weight == 0 {
                return 0;
            }
            // weight x distance x dpf / 0xFFFFFFFF, rounded (WIRE.md §6).
            let w = u128::from(weight);
            let cut = (w * u128::from(distance) * u128::from(weight_dpf) + u128::from(MAX32 / 2))
                / u128::from(MAX32);
            (w.saturating_sub(cut).max(1)) as u64
        }
        Policy::RandomizedLeastUsed { load } => free_capacity(u64::from(load)),
        Policy::RandomizedPriorityLeastUsed { load, degradation } => {
            free_capacity(u64::from(load) + u64::from(degradation))
        }
        Policy::RandomizedLeastUsedWithDegradation { load, degradation } => {
            free_capacity(u64::from(load).saturating_add(c.saturating_mul(u64::from(degradation))))
        }
        Policy::RandomizedPriorityLeastUsedWithDegradation { load, degradation } => free_capacity(
            u64::from(load).saturating_add((c + 1).saturating_mul(u64::from(degradation))),
        ),
        _ => 0,
    }
}

/// WRR's virtual-time step per selection: inversely proportional to weight.
fn stride(weight: u64) -> u64 {
    (1u64 << 32) / weight.max(1)
}

/// The selection structure of one pool.
#[derive(Debug)]
pub(crate) enum Selection {
    /// RR (all keys 0), PRIO and the LU family.
    Ordered(Ordered),
    /// WRR as stride scheduling: key = virtual time of the next turn.
    Wrr(Ordered),
    /// RAND: draws from the pool's member array.
    Random,
    /// Weighted draws, indexed like the pool's member array.
    Weighted(Fenwick),
}

impl Selection {
    /// The empty structure for a strategy.
    pub(crate) fn new(s: Strategy) -> Self {
        match s {
            Strategy::RoundRobin | Strategy::Ordered => Self::Ordered(Ordered::default()),
            Strategy::WeightedRoundRobin => Self::Wrr(Ordered::default()),
            Strategy::Random => Self::Random,
            Strategy::Weighted => Self::Weighted(Fenwick::default()),
        }
    }

    /// Whether the pool must keep its member array (positions index it).
    #[inline]
    pub(crate) fn draws_from_members(&self) -> bool {
        matches!(self, Self::Random | Self::Weighted(_))
    }

    /// Adds entry `i` (appended to the member array if the policy draws from it).
    pub(crate) fn insert(&mut self, nodes: &mut [Node], i: u32, p: &Policy, counter: u32) {
        match self {
            Self::Ordered(o) => o.insert(nodes, i, order_key(p, counter)),
            Self::Wrr(o) => {
                let w = weight(p, counter);
                if w == 0 {
                    nodes[i as usize].key = UNLINKED;
                } else {
                    // A newcomer's first turn is one stride after the current
                    // virtual time, as if it had just been served.
                    let now = o.first_key().unwrap_or(0);
                    o.insert(nodes, i, now + stride(w));
                }
            }
            Self::Random => {}
            Self::Weighted(f) => {
                let w = weight(p, counter);
                nodes[i as usize].key = w;
                f.push(w);
            }
        }
    }

    /// Removes entry `i` at member position `pos`; `last` is the entry at the
    /// last member position, which the caller moves into `pos`.
    pub(crate) fn remove(&mut self, nodes: &mut [Node], i: u32, pos: usize, last: u32) {
        match self {
            Self::Ordered(o) => o.remove(nodes, i),
            Self::Wrr(o) => {
                if nodes[i as usize].key != UNLINKED {
                    o.remove(nodes, i);
                }
            }
            Self::Random => {}
            Self::Weighted(f) => {
                f.swap_remove(pos, nodes[i as usize].key, nodes[last as usize].key)
            }
        }
    }

    /// Brings entry `i` (member position `pos`) up to date after its policy
    /// values or degradation counter changed. Round Robin keeps the PE's
    /// place in the circle.
    pub(crate) fn update(
        &mut self,
        nodes: &mut [Node],
        i: u32,
        pos: usize,
        p: &Policy,
        counter: u32,
    ) {
        match self {
            Self::Ordered(o) => o.rekey(nodes, i, order_key(p, counter)),
            Self::Wrr(o) => {
                let linked = nodes[i as usize].key != UNLINKED;
                let w = weight(p, counter);
                match (linked, w > 0) {
                    (true, false) => {
                        o.remove(nodes, i);
                        nodes[i as usize].key = UNLINKED;
                    }
                    (false, true) => {
                        let now = o.first_key().unwrap_or(0);
                        o.insert(nodes, i, now + stride(w));
                    }
                    _ => {}
                }
            }
            Self::Random => {}
            Self::Weighted(f) => {
                let w = weight(p, counter);
                f.set(pos, nodes[i as usize].key, w);
                nodes[i as usize].key = w;
            }
        }
    }

    /// Appends up to `k` distinct entries to `out` by the pool's policy.
    /// Degradation counters are the caller's business; WRR's turn moves here.
    pub(crate) fn select<R: RngCore + ?Sized>(
        &mut self,
        nodes: &mut [Node],
        members: &[u32],
        k: usize,
        rng: &mut R,
        out: &mut Vec<EntryId>,
        view: &impl EntryView,
    ) {
        match self {
            Self::Ordered(o) => o.select(nodes, k, out),
            Self::Wrr(o) => {
                let start = out.len();
                o.select(nodes, k, out);
                // The head took its turn: its next one is one stride later.
                if let Some(&EntryId(first)) = out.get(start) {
                    let next = nodes[first as usize].key + stride(view.weight(first));
                    o.rekey(nodes, first, next);
                    if let Some(base) = o.first_key().filter(|&b| b > WRR_REBASE) {
                        o.rebase(nodes, base);
                    }
                }
            }
            Self::Random => select_random(members, k, rng, out),
            Self::Weighted(f) => select_weighted(f, nodes, members, k, rng, out, view),
        }
    }
}

impl Selection {
    /// Checks the structure against the members and their policies (for tests).
    pub(crate) fn check(
        &self,
        nodes: &[Node],
        members: &[u32],
        policy: impl Fn(u32) -> (Policy, u32),
    ) -> Result<(), String> {
        match self {
            Self::Ordered(o) => {
                if o.count() != members.len() {
                    return Err(format!(
                        "ordered: {} linked, {} members",
                        o.count(),
                        members.len()
                    ));
                }
                for &m in members {
                    let (p, c) = policy(m);
                    if nodes[m as usize].key != order_key(&p, c) {
                        return Err(format!("ordered: entry {m} has a stale key"));
                    }
                }
            }
            Self::Wrr(o) => {
                let serving = members.iter().filter(|&&m| {
                    let (p, c) = policy(m);
                    weight(&p, c) > 0
                });
                let n = serving.count();
                if o.count() != n {
                    return Err(format!("wrr: {} linked, {n} with weight", o.count()));
                }
            }
            Self::Random => {}
            Self::Weighted(f) => {
                if f.len() != members.len() {
                    return Err(format!(
                        "weighted: {} slots, {} members",
                        f.len(),
                        members.len()
                    ));
                }
                let mut total = 0;
                for (pos, &m) in members.iter().enumerate() {
                    let (p, c) = policy(m);
                    let w = weight(&p, c);
                    total += w;
                    if nodes[m as usize].key != w || f.weight_at(pos) != w {
                        return Err(format!("weighted: entry {m} at {pos} has a stale weight"));
                    }
                }
                if f.total() != total {
                    return Err("weighted: total differs".into());
                }
            }
        }
        Ok(())
    }
}

/// `k` distinct members uniformly at random, in random order.
fn select_random<R: RngCore + ?Sized>(
    members: &[u32],
    k: usize,
    rng: &mut R,
    out: &mut Vec<EntryId>,
) {
    let n = members.len();
    let start = out.len();
    if k >= n {
        out.extend(members.iter().map(|&i| EntryId(i)));
        shuffle(&mut out[start..], rng);
    } else if k * 2 <= n {
        // Fewer than half: rejecting repeats costs less than two draws per pick.
        while out.len() - start < k {
            let c = EntryId(members[rng.random_range(0..n)]);
            if !out[start..].contains(&c) {
                out.push(c);
            }
        }
    } else {
        // Floyd's algorithm: a uniform k-subset with exactly k draws.
        for j in n - k..n {
            let t = EntryId(members[rng.random_range(0..=j)]);
            let c = if out[start..].contains(&t) {
                EntryId(members[j])
            } else {
                t
            };
            out.push(c);
        }
        shuffle(&mut out[start..], rng);
    }
}

fn shuffle<R: RngCore + ?Sized>(v: &mut [EntryId], rng: &mut R) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
}

/// Draws a PE before falling back to exact removal when it was already chosen.
const REJECTION_TRIES: usize = 8;

/// Up to `k` distinct members, each drawn with probability proportional to
/// its weight among those not yet drawn (successive sampling without
/// replacement; zero weights are never drawn).
///
/// A repeat is rejected and redrawn: conditioned on missing the chosen set,
/// a draw from all weights is a draw from the remaining ones, so this is
/// exact. When one PE dominates the weight, rejection would loop, so after
/// a few misses the chosen weights are removed from the tree for the rest
/// of the request and restored afterwards.
fn select_weighted<R: RngCore + ?Sized>(
    f: &mut Fenwick,
    nodes: &[Node],
    members: &[u32],
    k: usize,
    rng: &mut R,
    out: &mut Vec<EntryId>,
    view: &impl EntryView,
) {
    let k = k.min(f.positive() as usize);
    let start = out.len();
    let mut removed = false;
    while out.len() - start < k {
        if !removed {
            let mut got = None;
            for _ in 0..REJECTION_TRIES {
                let Some(pos) = f.draw(rng) else { break };
                let c = EntryId(members[pos]);
                if !out[start..].contains(&c) {
                    got = Some(c);
                    break;
                }
            }
            if let Some(c) = got {
                out.push(c);
                continue;
            }
            removed = true;
            for &EntryId(c) in &out[start..] {
                f.set(view.pos(c), nodes[c as usize].key, 0);
            }
        }
        let Some(pos) = f.draw(rng) else { break };
        let c = members[pos];
        f.set(pos, nodes[c as usize].key, 0);
        out.push(EntryId(c));
    }
    if removed {
        for &EntryId(c) in &out[start..] {
            f.set(view.pos(c), 0, nodes[c as usize].key);
        }
    }
}

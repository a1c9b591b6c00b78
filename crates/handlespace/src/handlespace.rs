//! The handlespace: storage, registration rules, indices and their upkeep.

use crate::custody::Custodies;
use crate::entry::{EntryId, PeEntry};
use crate::error::RegisterError;
use crate::hashing::Map;
use crate::key_index::KeyIndex;
use crate::owners::Owners;
use crate::pool::{Pool, PoolInfo, classify};
use crate::selection::{self, Node, Selection};
use crate::timers::{TimerKind, TimerQueue};
use rand::RngCore;
use rserpool_wire::checksum::pe_sum;
use rserpool_wire::{PeId, PolicyType, PoolElement, PoolHandle, PrId, UserTransport};
use std::collections::BTreeMap;
use std::ops::Bound;

mod custody;
mod deadlines;
mod invariants;
mod ownership;
mod paging;

/// Limits and defaults of a handlespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// PEs returned by a handle resolution without (or with a zero) item count.
    pub default_items: u32,
    /// Upper bound on the PEs one handle resolution returns (0xFFFFFFFF asks for this many).
    pub max_items: u32,
    /// Most PEs in the handlespace.
    pub max_pes: usize,
    /// Most pools.
    pub max_pools: usize,
    /// Most PEs in one pool.
    pub max_pes_per_pool: usize,
    /// Refuse a re-registration whose user transport shares no address with
    /// the registered one (another PE drew the same random ID) with cause 0x4.
    pub reject_id_collisions: bool,
}

impl Default for Config {
    /// The reference implementation's defaults (3 items, at most 128) and
    /// limits well above what one registrar holds.
    fn default() -> Self {
        Self {
            default_items: 3,
            max_items: 128,
            max_pes: 16_000_000,
            max_pools: 4_000_000,
            max_pes_per_pool: 16_000_000,
            reject_id_collisions: true,
        }
    }
}

/// An ownership move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerChange {
    /// The previous home registrar.
    pub from: Option<PrId>,
    /// The new home registrar.
    pub to: Option<PrId>,
}

/// What an accepted registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// The PE's entry.
    pub entry: EntryId,
    /// The PE was not known before (otherwise: re-registration / update).
    pub new_pe: bool,
    /// The pool was created by this registration.
    pub new_pool: bool,
    /// Set when a known PE's home registrar changed.
    pub owner_change: Option<OwnerChange>,
    /// The PE's home registrar before this registration (`None` for a new PE).
    pub previous_owner: Option<PrId>,
}

/// A PE taken out of the handlespace, with what a DEL_PE announcement needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its pool's handle.
    pub pool: PoolHandle,
    /// The pool element as last registered.
    pub element: PoolElement,
    /// The pool became empty and was removed.
    pub pool_removed: bool,
}

/// A deadline that passed, as returned by [`Handlespace::pop_expired`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The PE's entry (still in the handlespace: the caller decides).
    pub entry: EntryId,
    /// Its pool's handle.
    pub pool: PoolHandle,
    /// The PE's ID.
    pub pe: PeId,
    /// Which deadline.
    pub kind: TimerKind,
    /// The deadline as armed.
    pub deadline: u64,
}

/// The pool handle was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown pool handle")]
pub struct UnknownPool;

/// Everything a registrar knows about pools and pool elements.
///
/// Entries live in a slab addressed by [`EntryId`]; pools in a second slab
/// found by hash (lookups) and in handle order (paging). Selection state per
/// entry sits in a parallel array of 16-byte nodes.
#[derive(Debug)]
pub struct Handlespace {
    config: Config,
    entries: Vec<Option<PeEntry>>,
    nodes: Vec<Node>,
    pos: Vec<Pos>,
    free: Vec<u32>,
    len: usize,
    /// `(pool slot, PE ID)` -> entry.
    by_key: KeyIndex,
    pools: Vec<Option<Pool>>,
    pool_free: Vec<u32>,
    pool_index: Map<PoolHandle, u32>,
    pool_order: BTreeMap<PoolHandle, u32>,
    owners: Owners,
    timers: TimerQueue,
    /// What the home registrar keeps per PE (association, reports, acks).
    custody: Custodies,
}

#[inline]
fn key(pool: u32, pe: PeId) -> u64 {
    (u64::from(pool) << 32) | u64::from(pe.0)
}

/// The key of live entry `i` (what the key index compares).
#[inline]
fn entry_key(entries: &[Option<PeEntry>], i: u32) -> u64 {
    entries[i as usize]
        .as_ref()
        .map_or(u64::MAX, |e| key(e.pool, e.element.id))
}

/// Whether two user transports can belong to the same PE: they share an
/// address (or are not comparable).
fn same_endpoint(a: &UserTransport, b: &UserTransport) -> bool {
    match (a, b) {
        (UserTransport::Address(a), UserTransport::Address(b)) => {
            a.addresses.iter().any(|x| b.addresses.contains(x))
        }
        _ => true,
    }
}

/// A private copy of a handle, so the handlespace never keeps a received
/// message buffer alive through a slice of it.
fn own_handle(h: &PoolHandle) -> PoolHandle {
    PoolHandle::new(bytes::Bytes::copy_from_slice(h.as_bytes())).unwrap_or_else(|_| h.clone())
}

/// Hints the CPU to load the cache line holding `p` (no effect elsewhere).
#[inline(always)]
pub(crate) fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it does not access memory
    // architecturally and cannot fault, and `p` is a valid reference anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Where an entry sits in its pool's member array and its owner's set.
///
/// Kept apart from the entries: removing a PE moves another into its
/// place in both arrays, and updating these 8-byte records instead of two
/// further entries saves two cache misses per removal.
#[derive(Debug, Clone, Copy, Default)]
struct Pos {
    pool: u32,
    /// Meaningless without an owner.
    owner: u32,
}

/// The entries as selection sees them.
struct View<'a>(&'a [Option<PeEntry>], &'a [Pos]);

impl selection::EntryView for View<'_> {
    fn weight(&self, c: u32) -> u64 {
        let e = self.0[c as usize].as_ref().expect("live entry");
        selection::weight(&e.element.policy, e.counter)
    }

    fn pos(&self, c: u32) -> usize {
        self.1[c as usize].pool as usize
    }
}

impl Default for Handlespace {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Handlespace {
    /// An empty handlespace.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            entries: Vec::new(),
            nodes: Vec::new(),
            pos: Vec::new(),
            free: Vec::new(),
            len: 0,
            by_key: KeyIndex::default(),
            pools: Vec::new(),
            pool_free: Vec::new(),
            pool_index: Map::default(),
            pool_order: BTreeMap::new(),
            owners: Owners::default(),
            timers: TimerQueue::default(),
            custody: Custodies::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of PEs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no PEs.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pools.
    pub fn pool_count(&self) -> usize {
        self.pool_index.len()
    }

    #[inline]
    fn e(&self, i: u32) -> &PeEntry {
        self.entries[i as usize].as_ref().expect("live entry")
    }

    #[inline]
    fn e_mut(&mut self, i: u32) -> &mut PeEntry {
        self.entries[i as usize].as_mut().expect("live entry")
    }

    #[inline]
    fn pool_ref(&self, p: u32) -> &Pool {
        self.pools[p as usize].as_ref().expect("live pool")
    }

    // ---- registration ----------------------------------------
    /// Registers or re-registers `pe` in pool `handle` at time `now`
    /// (ASAP_REGISTRATION after the registrar set the home registrar, or an
    /// ENRP_HANDLE_UPDATE ADD_PE / handle table entry from a peer).
    ///
    /// A new pool takes the PE's policy type, transport protocol and
    /// transport use; a PE that disagrees with an existing pool is refused
    /// (RFC 5352 §3.1 rules 1-3). A re-registration replaces the PE's
    /// attributes, resets its degradation counter (RFC 5356 §5.2), clears a
    /// resynchronisation mark and moves ownership to `pe.home_registrar`.
    pub fn register(
        &mut self,
        handle: &PoolHandle,
        pe: PoolElement,
        now: u64,
    ) -> Result<RegisterOutcome, RegisterError> {
        let policy_type = pe.policy.policy_type();
        let Some(strategy) = selection::strategy(policy_type) else {
            return Err(RegisterError::UnsupportedPolicy(policy_type));
        };
        let (kind, transport_use) = classify(&pe.user_transport);
        let (p, new_pool) = match self.pool_index.get(handle) {
            Some(&p) => {
                let pool = self.pool_ref(p);
                if pool.policy_type != policy_type {
                    return Err(RegisterError::InconsistentPolicy {
                        pool: pool.policy.clone(),
                        pe: policy_type,
                    });
                }
                if pool.kind != kind {
                    return Err(RegisterError::InconsistentTransportType {
                        pool: pool.transport.clone(),
                    });
                }
                if pool.transport_use != transport_use {
                    return Err(RegisterError::InconsistentDataControl);
                }
                if let Some(i) = self
                    .by_key
                    .get(key(p, pe.id), |i| entry_key(&self.entries, i))
                {
                    return self.update(i, pe, now);
                }
                if pool.len >= self.config.max_pes_per_pool {
                    return Err(RegisterError::LackOfResources("PEs per pool"));
                }
                if self.len >= self.config.max_pes {
                    return Err(RegisterError::LackOfResources("PEs"));
                }
                (p, false)
            }
            None => {
                if self.pool_index.len() >= self.config.max_pools {
                    return Err(RegisterError::LackOfResources("pools"));
                }
                if self.len >= self.config.max_pes {
                    return Err(RegisterError::LackOfResources("PEs"));
                }
                let handle = own_handle(handle);
                let pool = Pool {
                    handle: handle.clone(),
                    policy_type,
                    policy: rserpool_wire::Policy::from_type_default(policy_type),
                    transport: pe.user_transport.clone(),
                    kind,
                    transport_use,
                    degrades: selection::degrades(policy_type),
                    members: Vec::new(),
                    len: 0,
                    ids: Default::default(),
                    selection: Selection::new(strategy),
                };
                let p = match self.pool_free.pop() {
                    Some(p) => {
                        self.pools[p as usize] = Some(pool);
                        p
                    }
                    None => {
                        self.pools.push(Some(pool));
                        (self.pools.len() - 1) as u32
                    }
                };
                self.pool_index.insert(handle.clone(), p);
                self.pool_order.insert(handle, p);
                (p, true)
            }
        };
        let i = self.insert(p, pe, now);
        Ok(RegisterOutcome {
            entry: EntryId(i),
            new_pe: true,
            new_pool,
            owner_change: None,
            previous_owner: None,
        })
    }

    fn insert(&mut self, p: u32, mut pe: PoolElement, now: u64) -> u32 {
        if let UserTransport::Opaque(b) = &pe.user_transport {
            // Own the bytes rather than a slice of the received message.
            pe.user_transport = UserTransport::Opaque(bytes::Bytes::copy_from_slice(b));
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(None);
                self.nodes.push(Node::default());
                self.pos.push(Pos::default());
                let i = (self.entries.len() - 1) as u32;
                self.timers.ensure(i);
                self.custody.ensure(i);
                i
            }
        };
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        let contribution = pe_sum(&pool.handle, pe.id);
        let pool_pos = if pool.selection.draws_from_members() {
            pool.members.push(i);
            (pool.members.len() - 1) as u32
        } else {
            0
        };
        pool.len += 1;
        pool.ids_mut().add(pe.id.0);
        pool.selection.insert(&mut self.nodes, i, &pe.policy, 0);
        self.by_key.insert(key(p, pe.id), i);
        let owner_pos = match pe.home_registrar {
            Some(pr) => self.owners.add(pr, i, contribution),
            None => 0,
        };
        self.pos[i as usize] = Pos {
            pool: pool_pos,
            owner: owner_pos,
        };
        self.entries[i as usize] = Some(PeEntry {
            element: pe,
            pool: p,
            registered_at: now,
            last_update: now,
            counter: 0,
            contribution,
            marked: false,
        });
        self.len += 1;
        i
    }

    fn update(
        &mut self,
        i: u32,
        pe: PoolElement,
        now: u64,
    ) -> Result<RegisterOutcome, RegisterError> {
        let check = self.config.reject_id_collisions;
        let entry = self.e_mut(i);
        if entry.element == pe {
            // Identical attributes (the periodic re-registration): keep the
            // stored element. Addresses are inline, so the comparison reads
            // only the entry's own cache lines.
            drop(pe);
            let previous_owner = entry.element.home_registrar;
            entry.last_update = now;
            entry.marked = false;
            if std::mem::take(&mut entry.counter) != 0 {
                let p = entry.pool;
                let pos = self.pos[i as usize].pool as usize;
                let Self {
                    pools,
                    nodes,
                    entries,
                    ..
                } = self;
                let entry = entries[i as usize].as_ref().expect("live entry");
                let pool = pools[p as usize].as_mut().expect("live pool");
                pool.selection
                    .update(nodes, i, pos, &entry.element.policy, 0);
            }
            return Ok(RegisterOutcome {
                entry: EntryId(i),
                new_pe: false,
                new_pool: false,
                owner_change: None,
                previous_owner,
            });
        }
        let same_transport = entry.element.user_transport == pe.user_transport;
        if check
            && !same_transport
            && !same_endpoint(&entry.element.user_transport, &pe.user_transport)
        {
            return Err(RegisterError::NonUniquePeId);
        }
        let entry = self.entries[i as usize].as_mut().expect("live entry");
        let from = entry.element.home_registrar;
        let to = pe.home_registrar;
        let reselect = entry.counter != 0 || entry.element.policy != pe.policy;
        // Field by field: a transport that did not change stays, so that an
        // opaque one keeps its private copy (below).
        let PoolElement {
            id: _,
            home_registrar,
            registration_life,
            user_transport,
            policy,
            asap_transport,
        } = pe;
        entry.element.home_registrar = home_registrar;
        entry.element.registration_life = registration_life;
        entry.element.policy = policy;
        if !same_transport {
            entry.element.user_transport = match user_transport {
                UserTransport::Opaque(b) => {
                    UserTransport::Opaque(bytes::Bytes::copy_from_slice(&b))
                }
                t => t,
            };
        }
        if entry.element.asap_transport != asap_transport {
            entry.element.asap_transport = asap_transport;
        }
        entry.last_update = now;
        entry.marked = false;
        entry.counter = 0;
        let p = entry.pool;
        let pos = self.pos[i as usize].pool as usize;
        if reselect {
            let Self {
                pools,
                nodes,
                entries,
                ..
            } = self;
            let entry = entries[i as usize].as_ref().expect("live entry");
            let pool = pools[p as usize].as_mut().expect("live pool");
            pool.selection
                .update(nodes, i, pos, &entry.element.policy, 0);
        }
        let owner_change = (from != to).then(|| {
            self.move_owner(i, from, to);
            OwnerChange { from, to }
        });
        Ok(RegisterOutcome {
            entry: EntryId(i),
            new_pe: false,
            new_pool: false,
            owner_change,
            previous_owner: from,
        })
    }

    /// Moves entry `i` between owner sets (its element already says `to`, or is set here).
    fn move_owner(&mut self, i: u32, from: Option<PrId>, to: Option<PrId>) {
        let pos = self.pos[i as usize].owner;
        let contribution = self.e(i).contribution;
        if let Some(from) = from {
            if let Some(moved) = self.owners.remove(from, pos, contribution) {
                self.pos[moved as usize].owner = pos;
            }
        }
        self.pos[i as usize].owner = match to {
            Some(to) => self.owners.add(to, i, contribution),
            None => 0,
        };
        let e = self.entries[i as usize].as_mut().expect("live entry");
        e.element.home_registrar = to;
    }

    /// Removes PE `pe` of pool `handle`; `None` if it is not registered.
    pub fn deregister(&mut self, handle: &PoolHandle, pe: PeId) -> Option<Removed> {
        let &p = self.pool_index.get(handle)?;
        let entries = &self.entries;
        let i = self.by_key.remove(key(p, pe), |i| entry_key(entries, i))?;
        Some(self.detach(i))
    }

    /// Removes an entry; `None` if the ID is not live.
    pub fn remove(&mut self, id: EntryId) -> Option<Removed> {
        let e = self.entry(id)?;
        let k = key(e.pool, e.element.id);
        let entries = &self.entries;
        self.by_key.remove(k, |i| entry_key(entries, i));
        Some(self.detach(id.0))
    }

    /// Takes live entry `i`, already out of `by_key`, out of everything else.
    fn detach(&mut self, i: u32) -> Removed {
        // The side arrays are touched much later in this function; asking
        // for their lines now overlaps those cache misses with the work
        // on the entry itself.
        prefetch(&self.pos[i as usize]);
        prefetch(&self.nodes[i as usize]);
        self.timers.prefetch(i);
        self.custody.prefetch(i);
        let entry = self.entries[i as usize].take().expect("live entry");
        self.len -= 1;
        self.free.push(i);
        let p = entry.pool;
        let Pos {
            pool: pool_pos,
            owner: owner_pos,
        } = self.pos[i as usize];
        let pos = pool_pos as usize;
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        let moved = if pool.selection.draws_from_members() {
            let last = *pool.members.last().expect("member of its pool");
            pool.selection.remove(&mut self.nodes, i, pos, last);
            pool.members.swap_remove(pos);
            (last != i).then_some(last)
        } else {
            pool.selection.remove(&mut self.nodes, i, 0, i);
            None
        };
        pool.len -= 1;
        let pool_removed = pool.len == 0;
        if !pool_removed {
            pool.ids_mut().remove(entry.element.id.0);
        }
        if let Some(m) = moved {
            self.pos[m as usize].pool = pool_pos;
        }
        if let Some(pr) = entry.element.home_registrar {
            if let Some(m) = self.owners.remove(pr, owner_pos, entry.contribution) {
                self.pos[m as usize].owner = owner_pos;
            }
        }
        self.timers.clear(i);
        self.custody.clear(i);
        let pool_handle = if pool_removed {
            let pool = self.pools[p as usize].take().expect("live pool");
            self.pool_index.remove(&pool.handle);
            self.pool_order.remove(&pool.handle);
            self.pool_free.push(p);
            pool.handle
        } else {
            self.pool_ref(p).handle.clone()
        };
        Removed {
            pool: pool_handle,
            element: entry.element,
            pool_removed,
        }
    }

    // ---- lookups ----------------------------------------
    /// The entry of PE `pe` in pool `handle`.
    #[inline]
    pub fn lookup(&self, handle: &PoolHandle, pe: PeId) -> Option<EntryId> {
        let &p = self.pool_index.get(handle)?;
        self.by_key
            .get(key(p, pe), |i| entry_key(&self.entries, i))
            .map(EntryId)
    }

    /// PE `pe` of pool `handle`.
    pub fn get(&self, handle: &PoolHandle, pe: PeId) -> Option<&PeEntry> {
        self.lookup(handle, pe).map(|id| self.e(id.0))
    }

    /// The entry with key `k` (see [`key`]).
    fn lookup_key(&self, k: u64) -> Option<u32> {
        self.by_key.get(k, |i| entry_key(&self.entries, i))
    }

    /// The entry with this ID, if live.
    #[inline]
    pub fn entry(&self, id: EntryId) -> Option<&PeEntry> {
        self.entries.get(id.0 as usize)?.as_ref()
    }

    /// The pool handle of a live entry.
    pub fn handle_of(&self, id: EntryId) -> Option<&PoolHandle> {
        self.entry(id).map(|e| &self.pool_ref(e.pool).handle)
    }

    /// The pool with this handle.
    pub fn pool(&self, handle: &PoolHandle) -> Option<PoolInfo<'_>> {
        let &p = self.pool_index.get(handle)?;
        Some(PoolInfo {
            pool: self.pool_ref(p),
        })
    }

    /// All pools in handle order.
    pub fn pools(&self) -> impl Iterator<Item = PoolInfo<'_>> {
        self.pool_order.values().map(|&p| PoolInfo {
            pool: self.pool_ref(p),
        })
    }

    /// The PEs of a pool in PE ID order (empty if the pool is unknown).
    pub fn pool_entries(&self, handle: &PoolHandle) -> impl Iterator<Item = (EntryId, &PeEntry)> {
        let mut ids = Vec::new();
        if let Some(&p) = self.pool_index.get(handle) {
            self.walk_in_order(p, Bound::Unbounded, |i| {
                ids.push(i);
                true
            });
        }
        ids.into_iter().map(|i| (EntryId(i), self.e(i)))
    }

    /// Calls `f` with the entries of pool slot `p` in PE ID order from
    /// `start` on while it returns true; false if `f` stopped the walk.
    fn walk_in_order(&self, p: u32, start: Bound<u32>, mut f: impl FnMut(u32) -> bool) -> bool {
        self.pool_ref(p).ids().walk(start, |id| {
            let i = self
                .by_key
                .get(key(p, PeId(id)), |i| entry_key(&self.entries, i))
                .expect("an ordered PE ID has an entry");
            f(i)
        })
    }

    /// Every PE, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (EntryId, &PeEntry)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (EntryId(i as u32), e)))
    }

    // ---- selection ----------------------------------------
    /// The number of PEs a resolution asking for `items` returns at most:
    /// the configured default when absent or zero, else capped by `max_items`.
    pub fn items_wanted(&self, items: Option<u32>) -> usize {
        match items {
            None | Some(0) => self.config.default_items,
            Some(n) => n.min(self.config.max_items),
        }
        .min(self.config.max_items) as usize
    }

    /// Handle resolution: writes up to `items` (see [`Self::items_wanted`])
    /// distinct PEs of the pool into `out` (cleared first) in the order the
    /// pool's policy gives, applying the policy's side effects (round robin
    /// heads advance, degradation counters grow). Returns the pool's policy
    /// type, which the response must carry when it is not Round Robin.
    pub fn resolve<R: RngCore + ?Sized>(
        &mut self,
        handle: &PoolHandle,
        items: Option<u32>,
        rng: &mut R,
        out: &mut Vec<EntryId>,
    ) -> Result<PolicyType, UnknownPool> {
        out.clear();
        let k = self.items_wanted(items);
        let &p = self.pool_index.get(handle).ok_or(UnknownPool)?;
        let Self {
            pools,
            nodes,
            entries,
            pos,
            ..
        } = self;
        let pool = pools[p as usize].as_mut().expect("live pool");
        let Pool {
            selection,
            members,
            degrades,
            policy_type,
            ..
        } = pool;
        selection.select(nodes, members, k, rng, out, &View(entries, pos));
        if *degrades {
            for &EntryId(c) in out.iter() {
                let e = entries[c as usize].as_mut().expect("live entry");
                e.counter = e.counter.saturating_add(1);
                let at = pos[c as usize].pool as usize;
                selection.update(nodes, c, at, &e.element.policy, e.counter);
            }
        }
        Ok(*policy_type)
    }
}

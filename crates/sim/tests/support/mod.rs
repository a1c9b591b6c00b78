//! A scope of registrars, pool elements and pool users in the simulator,
//! with the measurements the scenario tests need.

#![allow(dead_code)] // each test file uses a different part

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rserpool_core::registrar::{Registrar, RegistrarConfig, RegistrarEvent};
use rserpool_core::{Instant, PoolElement};
use rserpool_sim::{NodeId, ScenarioBuilder, World, WorldConfig};
pub use rserpool_sim::{Role, RoleEvent};
use rserpool_wire::{PeId, Policy, PoolHandle, PrId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// The tests' settings of a scope; [`Scope::build`] hands them to the
/// library's [`ScenarioBuilder`], so the tests and the experiments lay out
/// worlds the same way.
#[derive(Clone)]
pub struct ScopeConfig {
    /// World seed.
    pub seed: u64,
    /// Registrars.
    pub registrars: usize,
    /// Pool elements.
    pub pes: usize,
    /// Pool users.
    pub pus: usize,
    /// Registrar configuration template (ID and peers are filled in).
    pub registrar: RegistrarConfig,
    /// PE registration life.
    pub pe_life: Duration,
    /// PE re-registration interval (T4).
    pub pe_reregistration: Duration,
    /// The pool's policy.
    pub policy: Policy,
    /// Spread of PE start times (PEs start uniformly within it).
    pub pe_start_spread: Duration,
    /// The world.
    pub world: WorldConfig,
}

impl ScopeConfig {
    /// A scope with the registrar and PE defaults.
    pub fn new(seed: u64, registrars: usize, pes: usize, pus: usize) -> Self {
        Self {
            seed,
            registrars,
            pes,
            pus,
            registrar: RegistrarConfig {
                announce: false,
                ..RegistrarConfig::default()
            },
            pe_life: Duration::from_secs(60),
            pe_reregistration: Duration::from_secs(30),
            policy: Policy::RoundRobin,
            pe_start_spread: Duration::from_secs(5),
            world: WorldConfig::default(),
        }
    }
}

/// A running scope.
pub struct Scope {
    /// The world.
    pub world: World<Role>,
    /// Registrar nodes.
    pub prs: Vec<NodeId>,
    /// Pool element nodes.
    pub pes: Vec<NodeId>,
    /// Pool user nodes.
    pub pus: Vec<NodeId>,
    /// The pool.
    pub pool: PoolHandle,
}

/// The pool every PE joins.
pub fn pool() -> PoolHandle {
    PoolHandle::try_from("EchoPool").unwrap()
}

/// A registrar ID per (seed, index): random-looking, as real IDs are (the
/// XOR rule's shares depend on them), and the same for every run of a seed.
pub fn pr_id(seed: u64, i: usize) -> PrId {
    id32(seed, 0x5052_0000 + i as u64).unwrap_or(PrId::new(1).unwrap())
}

/// A PE ID per (seed, index), stable across restarts of the node.
pub fn pe_id(seed: u64, i: usize) -> PeId {
    PeId(id32(seed, 0x5045_0000_0000 + i as u64).map_or(1, PrId::get))
}

fn id32(seed: u64, salt: u64) -> Option<PrId> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    PrId::new((x ^ (x >> 31)) as u32)
}

impl Scope {
    /// Builds the world (nothing has run yet) with the library's
    /// [`ScenarioBuilder`], the one the experiments use: the settings of
    /// `cfg` go in through its closures.
    pub fn build(cfg: &ScopeConfig) -> Self {
        let mut b = ScenarioBuilder::new(cfg.seed);
        *b.config_mut() = cfg.world.clone();
        let seed = cfg.seed;
        let prs = b.registrars(cfg.registrars, |pr| {
            // The builder's addresses and peers, the template's rest.
            let built = std::mem::replace(&mut pr.config, cfg.registrar.clone());
            pr.config.asap_addresses = built.asap_addresses;
            pr.config.enrp_addresses = built.enrp_addresses;
            pr.config.peers = built.peers;
            pr.config.id = Some(pr_id(seed, pr.index));
        });
        // In index order: the PEs shuffle this list, not the builder's
        // rotated one, so each seed keeps the orders it always had.
        let pr_addrs: Vec<Vec<SocketAddr>> = prs
            .iter()
            .map(|n| b.world_mut().addrs(*n).to_vec())
            .collect();
        let mut order = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let m = cfg.pes;
        let pes = b.pool_elements(m, &pool(), |pe| {
            let mut list = pr_addrs.clone();
            // Each PE knows the registrars in its own order, as deployments do.
            list.shuffle(&mut order);
            pe.config.hunt.registrars = list;
            pe.config.policy = cfg.policy.clone();
            pe.config.registration_life = Some(cfg.pe_life);
            pe.config.t4_reregistration = Some(cfg.pe_reregistration);
            // In the configuration, so a restarted PE keeps its ID.
            pe.config.pe_id = Some(pe_id(seed, pe.index));
            let start = Duration::from_secs_f64(
                cfg.pe_start_spread.as_secs_f64() * (pe.index as f64 + 0.5) / m.max(1) as f64,
            );
            pe.start = Some(Instant::from_epoch(Duration::from_secs(1) + start));
        });
        let pus = b.pool_users(cfg.pus, None, |pu| {
            pu.config.hunt.registrars = pr_addrs.clone();
            pu.config.stale_cache_value = Duration::ZERO;
            pu.config.handle_resolution_items = Some(128);
        });
        Self {
            world: b.build().world,
            prs,
            pes,
            pus,
            pool: pool(),
        }
    }

    /// The registrar running on `node`, if it runs.
    pub fn registrar(&self, node: NodeId) -> Option<&Registrar> {
        self.world.machine(node)?.registrar()
    }

    /// The PE running on `node`, if it runs.
    pub fn pe(&self, node: NodeId) -> Option<&PoolElement> {
        self.world.machine(node)?.pool_element()
    }

    /// IDs of the PEs that run and are registered.
    pub fn live_pe_ids(&self) -> BTreeSet<PeId> {
        self.pes
            .iter()
            .filter_map(|n| self.pe(*n))
            .filter(|p| p.is_registered())
            .map(|p| p.pe_id())
            .collect()
    }

    /// IDs of the PEs that run (registered or not).
    pub fn running_pe_ids(&self) -> BTreeSet<PeId> {
        self.pes
            .iter()
            .filter_map(|n| self.pe(*n))
            .map(|p| p.pe_id())
            .collect()
    }

    /// The PEs in a registrar's handlespace.
    pub fn known_pes(&self, pr: NodeId) -> BTreeSet<PeId> {
        self.registrar(pr)
            .map(|r| {
                r.handlespace()
                    .pool_entries(&self.pool)
                    .map(|(_, e)| e.id())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ownership as the PEs see it: registered PEs per home registrar ID.
    pub fn homes(&self) -> BTreeMap<PrId, usize> {
        let mut m = BTreeMap::new();
        for p in self.pes.iter().filter_map(|n| self.pe(*n)) {
            if let (true, Some(h)) = (p.is_registered(), p.home_server_id()) {
                *m.entry(h).or_default() += 1;
            }
        }
        m
    }

    /// Ownership per running registrar (by the PEs' own view), zero included.
    pub fn ownership(&self) -> Vec<(PrId, usize)> {
        let homes = self.homes();
        self.prs
            .iter()
            .filter_map(|n| self.registrar(*n))
            .map(|r| (r.id(), homes.get(&r.id()).copied().unwrap_or(0)))
            .collect()
    }

    /// max/mean of the ownership counts over the running registrars.
    pub fn imbalance(&self) -> f64 {
        let o = self.ownership();
        let total: usize = o.iter().map(|(_, c)| c).sum();
        if o.is_empty() || total == 0 {
            return 1.0;
        }
        let max = o.iter().map(|(_, c)| *c).max().unwrap_or(0) as f64;
        max / (total as f64 / o.len() as f64)
    }

    /// Whether every running, ready registrar holds exactly `expected`.
    pub fn all_registrars_hold(&self, expected: &BTreeSet<PeId>) -> bool {
        self.prs
            .iter()
            .filter(|n| self.registrar(**n).is_some_and(|r| r.is_ready()))
            .all(|n| &self.known_pes(*n) == expected)
    }

    /// Runs until `done` holds (checked every `step`) or `limit` passes;
    /// returns the time it first held.
    pub fn run_until(
        &mut self,
        step: Duration,
        limit: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<Instant> {
        let end = self.world.now() + limit;
        while self.world.now() < end {
            if done(self) {
                return Some(self.world.now());
            }
            let next = self.world.now() + step;
            self.world.run_until(next);
        }
        done(self).then(|| self.world.now())
    }

    /// Registrar events in the trace, with the registrar node.
    pub fn registrar_events(&self) -> Vec<(Instant, NodeId, RegistrarEvent)> {
        self.world
            .trace()
            .iter()
            .filter_map(|e| match &e.what {
                rserpool_sim::Happening::Event(RoleEvent::Registrar(ev)) => {
                    Some((e.at, e.node, ev.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

/// Seeds for multi-seed tests: `RSERPOOL_SEEDS=n` runs more (default `default`).
pub fn seeds(default: u64) -> Vec<u64> {
    let n = std::env::var("RSERPOOL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    match std::env::var("RSERPOOL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(one) => vec![one],
        None => (1..=n).collect(),
    }
}

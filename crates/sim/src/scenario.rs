//! Scenarios of the real roles: N registrars, M pool elements and K pool
//! users, laid out and configured with closures, and accessors for what the
//! experiments measure.

use crate::WorldConfig;
use crate::builder::WorldBuilder;
use crate::node::{Announces, NodeId, NodeSpec};
use crate::roles::{Role, UserApp, Workload};
use crate::world::World;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_core::registrar::{Registrar, RegistrarConfig};
use rserpool_core::{Instant, PoolElement, PoolElementConfig, PoolUser, PoolUserConfig};
use rserpool_wire::{
    ASAP_PORT, Policy, PoolHandle, PrId, TransportAddress, TransportUse, UserTransport,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The port pool elements offer their service on (their user transport).
pub const PE_PORT: u16 = 7000;
/// The port pool users' endpoints use.
pub const PU_PORT: u16 = 4000;

/// One node of a group being laid out: the closures passed to
/// [`ScenarioBuilder`] may change any of it.
#[derive(Debug, Clone)]
pub struct Setup<C> {
    /// Position in the group.
    pub index: usize,
    /// The node's address (one SCTP endpoint; for registrars both ASAP and ENRP).
    pub addr: SocketAddr,
    /// The role's configuration, prefilled (addresses, peers, registrars).
    pub config: C,
    /// When the node starts (`None`: stays down until restarted).
    pub start: Option<Instant>,
}

/// Lays out a scenario. Add registrars first: pool elements and users are
/// configured with the registrars added before them.
pub struct ScenarioBuilder {
    world: WorldBuilder<Role>,
    registrars: Vec<NodeId>,
    registrar_addrs: Vec<SocketAddr>,
    pool_elements: Vec<NodeId>,
    pool_users: Vec<NodeId>,
}

/// The most nodes of one role [`ScenarioBuilder`] can address.
pub const MAX_PER_ROLE: usize = (1 << 20) - 1;

/// The address of the `i`-th node of the role numbered `role` (1 to 15):
/// 10.(role + 16 k).x.y, where k.x.y is the 20-bit number `i + 1`. The
/// first 65,535 nodes of a role keep the 10.role.x.y they always had, so a
/// seed's runs stay the same; beyond them a role takes every 16th second
/// octet, which no other role uses.
fn plan(role: u8, i: usize, port: u16) -> SocketAddr {
    assert!((1..16).contains(&role), "role numbers are 1 to 15");
    assert!(i < MAX_PER_ROLE, "at most {MAX_PER_ROLE} nodes per role");
    let n = (i + 1) as u32;
    let high = role + 16 * (n >> 16) as u8;
    let ip = Ipv4Addr::new(10, high, (n >> 8) as u8, n as u8);
    SocketAddr::new(IpAddr::V4(ip), port)
}

impl ScenarioBuilder {
    /// An empty scenario seeded `seed`, default world configuration.
    pub fn new(seed: u64) -> Self {
        Self {
            world: WorldBuilder::new(seed),
            registrars: Vec::new(),
            registrar_addrs: Vec::new(),
            pool_elements: Vec::new(),
            pool_users: Vec::new(),
        }
    }

    /// The world configuration, to change links or the simulated SCTP.
    pub fn config_mut(&mut self) -> &mut WorldConfig {
        self.world.config_mut()
    }

    /// The world builder underneath (for links or extra nodes).
    pub fn world_mut(&mut self) -> &mut WorldBuilder<Role> {
        &mut self.world
    }

    /// Adds `n` registrars at 10.1.x.y:3863, each configured with its own
    /// address for ASAP and ENRP and with every other registrar of this call
    /// as a static peer; `tweak` may change that.
    pub fn registrars(
        &mut self,
        n: usize,
        mut tweak: impl FnMut(&mut Setup<RegistrarConfig>),
    ) -> Vec<NodeId> {
        let first = self.registrar_addrs.len();
        let addrs: Vec<SocketAddr> = (first..first + n).map(|i| plan(1, i, ASAP_PORT)).collect();
        let mut ids = Vec::with_capacity(n);
        for (i, &addr) in addrs.iter().enumerate() {
            let mut setup = Setup {
                index: i,
                addr,
                config: RegistrarConfig {
                    asap_addresses: vec![addr],
                    enrp_addresses: vec![addr],
                    peers: addrs
                        .iter()
                        .filter(|a| **a != addr)
                        .map(|a| vec![*a])
                        .collect(),
                    ..RegistrarConfig::default()
                },
                start: Some(Instant::ZERO),
            };
            tweak(&mut setup);
            let cfg = setup.config;
            let spec = spec(format!("pr{}", first + i), addr, setup.start).announces(Announces {
                asap: false,
                enrp: true,
            });
            ids.push(self.world.node(spec, move |s| {
                let r = Registrar::new(cfg.clone(), s.seed, s.now)
                    .unwrap_or_else(|e| panic!("{}: bad registrar configuration: {e}", s.name));
                Role::Registrar(Box::new(r))
            }));
        }
        self.registrar_addrs.extend(addrs);
        self.registrars.extend(&ids);
        ids
    }

    /// The registrars' ASAP addresses in the order the `i`-th client tries
    /// them: rotated, so clients spread over the registrars.
    fn hunt_order(&self, i: usize) -> Vec<Vec<SocketAddr>> {
        let n = self.registrar_addrs.len();
        (0..n)
            .map(|k| vec![self.registrar_addrs[(i + k) % n]])
            .collect()
    }

    /// Adds `m` pool elements of `pool` at 10.2.x.y:7000 (round robin, the
    /// RFC 5352 timers), the `i`-th trying registrar `i mod N` first; `tweak`
    /// may change that.
    pub fn pool_elements(
        &mut self,
        m: usize,
        pool: &PoolHandle,
        mut tweak: impl FnMut(&mut Setup<PoolElementConfig>),
    ) -> Vec<NodeId> {
        let first = self.pool_elements.len();
        let mut ids = Vec::with_capacity(m);
        for i in 0..m {
            let addr = plan(2, first + i, PE_PORT);
            let transport = UserTransport::Address(TransportAddress::sctp(
                PE_PORT,
                TransportUse::DataOnly,
                vec![addr.ip()],
            ));
            let mut config = PoolElementConfig::new(pool.clone(), transport, Policy::RoundRobin);
            config.hunt.registrars = self.hunt_order(first + i);
            let mut setup = Setup {
                index: i,
                addr,
                config,
                start: Some(Instant::ZERO),
            };
            tweak(&mut setup);
            let cfg = setup.config;
            let spec = spec(format!("pe{}", first + i), addr, setup.start).announces(Announces {
                asap: true,
                enrp: false,
            });
            ids.push(self.world.node(spec, move |s| {
                let pe = PoolElement::new(cfg.clone(), ChaCha8Rng::seed_from_u64(s.seed), s.now)
                    .unwrap_or_else(|e| panic!("{}: bad pool element configuration: {e}", s.name));
                Role::PoolElement(Box::new(pe))
            }));
        }
        self.pool_elements.extend(&ids);
        ids
    }

    /// Adds `k` pool users at 10.3.x.y:4000, each running `workload` (if
    /// any), the `i`-th trying registrar `i mod N` first; `tweak` may change
    /// that.
    pub fn pool_users(
        &mut self,
        k: usize,
        workload: Option<Workload>,
        mut tweak: impl FnMut(&mut Setup<PoolUserConfig>),
    ) -> Vec<NodeId> {
        let first = self.pool_users.len();
        let mut ids = Vec::with_capacity(k);
        for i in 0..k {
            let addr = plan(3, first + i, PU_PORT);
            let mut config = PoolUserConfig::default();
            config.hunt.registrars = self.hunt_order(first + i);
            let mut setup = Setup {
                index: i,
                addr,
                config,
                start: Some(Instant::ZERO),
            };
            tweak(&mut setup);
            let cfg = setup.config;
            let workload = workload.clone();
            let spec = spec(format!("pu{}", first + i), addr, setup.start).announces(Announces {
                asap: true,
                enrp: false,
            });
            ids.push(self.world.node(spec, move |s| {
                let pu = PoolUser::new(cfg.clone(), ChaCha8Rng::seed_from_u64(s.seed), s.now)
                    .unwrap_or_else(|e| panic!("{}: bad pool user configuration: {e}", s.name));
                Role::PoolUser(Box::new(UserApp::new(pu, workload.clone(), s.now)))
            }));
        }
        self.pool_users.extend(&ids);
        ids
    }

    /// The scenario, every node's start scheduled.
    pub fn build(self) -> Scenario {
        Scenario {
            world: self.world.build(),
            registrars: self.registrars,
            pool_elements: self.pool_elements,
            pool_users: self.pool_users,
        }
    }
}

fn spec(name: String, addr: SocketAddr, start: Option<Instant>) -> NodeSpec {
    let spec = NodeSpec::new(name, addr.port()).addrs(vec![addr]);
    match start {
        Some(at) => spec.start_at(at),
        None => spec.stopped(),
    }
}

/// A world of registrars, pool elements and pool users.
pub struct Scenario {
    /// The world: run it, disturb it, read its trace.
    pub world: World<Role>,
    /// The registrars, in order of creation.
    pub registrars: Vec<NodeId>,
    /// The pool elements, in order of creation.
    pub pool_elements: Vec<NodeId>,
    /// The pool users, in order of creation.
    pub pool_users: Vec<NodeId>,
}

impl Scenario {
    /// The registrar on `node`, if it runs.
    pub fn registrar(&self, node: NodeId) -> Option<&Registrar> {
        self.world.machine(node)?.registrar()
    }

    /// The pool element on `node`, if it runs.
    pub fn pool_element(&self, node: NodeId) -> Option<&PoolElement> {
        self.world.machine(node)?.pool_element()
    }

    /// The pool user (with its application) on `node`, if it runs.
    pub fn pool_user(&self, node: NodeId) -> Option<&UserApp> {
        self.world.machine(node)?.pool_user()
    }

    /// Every running registrar with its ID, the PEs it owns (by its own
    /// handlespace) and the size of its handlespace.
    pub fn ownership(&self) -> Vec<(NodeId, PrId, usize, usize)> {
        self.registrars
            .iter()
            .filter_map(|&n| {
                let r = self.registrar(n)?;
                Some((n, r.id(), r.owned_count(r.id()), r.handlespace().len()))
            })
            .collect()
    }

    /// How many running pool elements are registered.
    pub fn registered(&self) -> usize {
        self.pool_elements
            .iter()
            .filter(|&&n| self.pool_element(n).is_some_and(PoolElement::is_registered))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_up_to_a_million_nodes_per_role() {
        let indices: std::collections::BTreeSet<usize> = (0..1_000_000)
            .step_by(7)
            .chain(65_530..65_540)
            .chain([999_999])
            .collect();
        let mut seen = std::collections::HashSet::new();
        for role in 1..=3 {
            for &i in &indices {
                assert!(seen.insert(plan(role, i, 1)), "role {role} node {i}");
            }
        }
        assert_eq!(plan(2, 0, 7000), "10.2.0.1:7000".parse().unwrap());
        assert_eq!(plan(2, 65_534, 7000), "10.2.255.255:7000".parse().unwrap());
        assert_eq!(plan(2, 65_535, 7000), "10.18.0.0:7000".parse().unwrap());
        assert_eq!(plan(3, 999_999, 1), "10.243.66.64:1".parse().unwrap());
    }
}

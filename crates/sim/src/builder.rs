//! Building a world: nodes with their addresses and machine factories,
//! links, configuration.

use crate::config::{LinkConfig, WorldConfig};
use crate::network::Network;
use crate::node::{Factory, Node, NodeId, NodeSpec, Spawn};
use crate::world::{Ev, World};
use rserpool_core::{Instant, Machine};
use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

struct Planned<M> {
    spec: NodeSpec,
    index: usize,
    addrs: Vec<SocketAddr>,
    factory: Factory<M>,
}

/// Lays out a world: add nodes (each with a factory that builds its
/// machine), tune links, then [`WorldBuilder::build`].
///
/// ```
/// # use rserpool_sim::{WorldBuilder, NodeSpec};
/// # fn demo<M: rserpool_core::Machine + 'static>(make: impl Fn(u64) -> M + Clone + 'static) {
/// let mut b = WorldBuilder::<M>::new(42);
/// let server = b.node(NodeSpec::new("server", 3863), { let make = make.clone(); move |s| make(s.seed) });
/// let clients = b.group(10, |i| NodeSpec::new(format!("client{i}"), 4000), move |s| make(s.seed));
/// let mut world = b.build();
/// world.run_for(std::time::Duration::from_secs(60));
/// # let _ = (server, clients);
/// # }
/// ```
pub struct WorldBuilder<M: Machine> {
    seed: u64,
    config: WorldConfig,
    nodes: Vec<Planned<M>>,
    links: Vec<(NodeId, NodeId, LinkConfig)>,
    by_addr: FxHashMap<SocketAddr, NodeId>,
    hosts: u32,
}

impl<M: Machine + 'static> WorldBuilder<M> {
    /// A world seeded `seed` with the default configuration.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            config: WorldConfig::default(),
            nodes: Vec::new(),
            links: Vec::new(),
            by_addr: FxHashMap::default(),
            hosts: 0,
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: WorldConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration, to change a part of it.
    pub fn config_mut(&mut self) -> &mut WorldConfig {
        &mut self.config
    }

    /// Adds a node whose machine `factory` builds (on start and on every restart).
    pub fn node(&mut self, spec: NodeSpec, factory: impl Fn(&Spawn<'_>) -> M + 'static) -> NodeId {
        self.add(spec, 0, Rc::new(factory))
    }

    /// Adds `count` nodes sharing one factory; `spec(i)` lays out the i-th,
    /// and the factory sees `i` as [`Spawn::index`].
    pub fn group(
        &mut self,
        count: usize,
        mut spec: impl FnMut(usize) -> NodeSpec,
        factory: impl Fn(&Spawn<'_>) -> M + 'static,
    ) -> Vec<NodeId> {
        let factory: Factory<M> = Rc::new(factory);
        (0..count)
            .map(|i| self.add(spec(i), i, factory.clone()))
            .collect()
    }

    fn add(&mut self, spec: NodeSpec, index: usize, factory: Factory<M>) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).expect("fewer than 2^32 nodes"));
        let addrs = match &spec.addrs {
            Some(addrs) => addrs.clone(),
            None => (0..spec.homes)
                .map(|_| {
                    self.hosts += 1;
                    let ip = Ipv4Addr::from(0x0a00_0000 + self.hosts);
                    SocketAddr::new(IpAddr::V4(ip), spec.port)
                })
                .collect(),
        };
        assert!(!addrs.is_empty(), "node {} has no address", spec.name);
        for addr in &addrs {
            if let Some(other) = self.by_addr.insert(*addr, id) {
                panic!(
                    "address {addr} of node {} is taken by node {}",
                    spec.name,
                    self.nodes[other.index()].spec.name
                );
            }
        }
        self.nodes.push(Planned {
            spec,
            index,
            addrs,
            factory,
        });
        id
    }

    /// Sets delay and loss of the link between two nodes (both directions).
    pub fn link(&mut self, a: NodeId, b: NodeId, link: LinkConfig) -> &mut Self {
        self.links.push((a, b, link));
        self
    }

    /// The addresses given to a node already added (to configure others with).
    pub fn addrs(&self, node: NodeId) -> &[SocketAddr] {
        &self.nodes[node.index()].addrs
    }

    /// The world, with every node's start scheduled (nothing has run yet).
    pub fn build(self) -> World<M> {
        let mut net = Network::new(self.config.link.clone());
        for _ in &self.nodes {
            net.add_node();
        }
        for (a, b, link) in self.links {
            net.set_link(a, b, link);
        }
        let mut starts = Vec::new();
        let nodes = self
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                if let Some(at) = p.spec.start {
                    starts.push((at, NodeId(i as u32)));
                }
                Node {
                    name: p.spec.name,
                    index: p.index,
                    addrs: p.addrs,
                    announces: p.spec.announces,
                    factory: p.factory,
                    machine: None,
                    incarnation: 0,
                    host_up: false,
                    timer: None,
                    timer_gen: 0,
                    assocs: Default::default(),
                    unresolved: Default::default(),
                    zombies: Vec::new(),
                }
            })
            .collect();
        let mut world = World::new(self.seed, self.config, net, nodes, self.by_addr);
        for (at, node) in starts {
            world.queue.push(at.max(Instant::ZERO), Ev::Start { node });
        }
        world
    }
}

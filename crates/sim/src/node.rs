//! Nodes: a host with addresses that runs one machine, which can crash and
//! be restarted from its factory.

use rserpool_core::{AssocId, Instant};
use rserpool_wire::{PPID_ASAP, PPID_ENRP};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

/// A node of the world, numbered in the order the builder added them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The position of the node in the world (0-based, in order of creation).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node#{}", self.0)
    }
}

/// How a node goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrashMode {
    /// The whole host stops: packets to it vanish, and its peers see their
    /// associations go `Down{Lost}` after the failure-detection time.
    Host,
    /// Only the process dies; the host's kernel aborts its associations, so
    /// peers see `Down{Aborted}` one packet later and new associations fail at once.
    Process,
}

/// Which announce datagrams a node's machine is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Announces {
    /// ASAP announces (ASAP_SERVER_ANNOUNCE), which PEs and PUs listen to.
    pub asap: bool,
    /// ENRP announces (ENRP_PRESENCE), which registrars listen to.
    pub enrp: bool,
}

impl Announces {
    /// Both kinds.
    pub const ALL: Self = Self {
        asap: true,
        enrp: true,
    };
    /// None: the node is configured with its peers' addresses instead.
    pub const NONE: Self = Self {
        asap: false,
        enrp: false,
    };

    pub(crate) fn wants(self, ppid: u32) -> bool {
        match ppid {
            PPID_ASAP => self.asap,
            PPID_ENRP => self.enrp,
            _ => false,
        }
    }
}

/// How to lay out a node: its name, addresses, announce subscription and start time.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) homes: u8,
    pub(crate) addrs: Option<Vec<SocketAddr>>,
    pub(crate) announces: Announces,
    pub(crate) start: Option<Instant>,
}

impl NodeSpec {
    /// A node named `name` with one automatically assigned IPv4 address
    /// (10.x.y.z, in order of creation) and SCTP port `port`, hearing all
    /// announces, started at time zero.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            port,
            homes: 1,
            addrs: None,
            announces: Announces::ALL,
            start: Some(Instant::ZERO),
        }
    }

    /// Multi-homed: `homes` automatically assigned addresses, all with the port.
    pub fn homes(mut self, homes: u8) -> Self {
        self.homes = homes.max(1);
        self
    }

    /// These addresses instead of assigned ones (primary first).
    pub fn addrs(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.addrs = Some(addrs);
        self
    }

    /// Which announces the node hears.
    pub fn announces(mut self, announces: Announces) -> Self {
        self.announces = announces;
        self
    }

    /// Starts the node at `at` instead of time zero.
    pub fn start_at(mut self, at: Instant) -> Self {
        self.start = Some(at);
        self
    }

    /// Leaves the node down until [`crate::World::restart`] starts it.
    pub fn stopped(mut self) -> Self {
        self.start = None;
        self
    }
}

/// What a factory is told when it builds a node's machine.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    /// The node.
    pub node: NodeId,
    /// The node's name.
    pub name: &'a str,
    /// Position of the node in the group it was added with (0 for single nodes).
    pub index: usize,
    /// The node's addresses, primary first.
    pub addrs: &'a [SocketAddr],
    /// The machine's own seed, derived from the world seed, the node and the incarnation.
    pub seed: u64,
    /// How many times the node has been started before (0 on the first start).
    pub incarnation: u32,
    /// The current virtual time.
    pub now: Instant,
}

/// Builds a node's machine; called on the first start and on every restart.
pub(crate) type Factory<M> = Rc<dyn Fn(&Spawn<'_>) -> M>;

pub(crate) struct Node<M> {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) announces: Announces,
    pub(crate) factory: Factory<M>,
    pub(crate) machine: Option<M>,
    /// Starts so far; the running machine is number `incarnation - 1`.
    pub(crate) incarnation: u32,
    /// The host (its kernel) is up; false after a host crash and before the first start.
    pub(crate) host_up: bool,
    /// The deadline the queue holds a timer event for, and that event's generation.
    pub(crate) timer: Option<Instant>,
    pub(crate) timer_gen: u64,
    /// Every association with a live end here (serials), for crash handling.
    pub(crate) assocs: BTreeSet<u64>,
    /// Opens to addresses no node has: the id handed out, failing at the timeout.
    pub(crate) unresolved: BTreeMap<SocketAddr, AssocId>,
    /// Associations whose peers were not told of this node's crash; the
    /// restarted node answers their next packet with ABORT.
    pub(crate) zombies: Vec<u64>,
}

impl<M> Node<M> {
    pub(crate) fn running(&self) -> bool {
        self.machine.is_some()
    }
}

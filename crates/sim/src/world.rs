//! The world: nodes running machines on virtual time, the run loop that
//! feeds them, and what can be observed of them.

use crate::assoc::Associations;
use crate::config::WorldConfig;
use crate::network::Network;
use crate::node::{Node, NodeId};
use crate::queue::Queue;
use crate::rng::NetRng;
use crate::stats::{MessageKind, Stats};
use crate::trace::{Entry, Happening};
use bytes::Bytes;
use rserpool_core::{AssocId, DownReason, Instant, Machine, Transmit};
use rserpool_wire::Message;
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// What the event queue holds.
#[derive(Debug)]
pub(crate) enum Ev {
    /// Start the node's machine (first start at its configured time).
    Start { node: NodeId },
    /// The node's machine timer, valid while `generation` is current.
    Timer { node: NodeId, generation: u64 },
    /// An association's handshake completes, or its INIT is retried.
    Handshake { serial: u64 },
    /// The head of an association's lane has arrived.
    Lane { serial: u64, side: usize },
    /// The failure-detection time of a path broken since `since` is over.
    LossCheck { serial: u64, since: Instant },
    /// Tell an end its association is down.
    Down {
        node: NodeId,
        incarnation: u32,
        assoc: AssocId,
        reason: DownReason,
    },
    /// An announce datagram arrives.
    Announce {
        from: NodeId,
        to: NodeId,
        ppid: u32,
        data: Bytes,
    },
    /// An open to addresses no node has times out.
    Unresolved {
        node: NodeId,
        incarnation: u32,
        addr: SocketAddr,
    },
}

/// A simulated world of nodes, each running a machine `M`, on virtual time.
///
/// Built with [`crate::WorldBuilder`]; driven with [`World::step`],
/// [`World::run_until`] and [`World::run_for`]; disturbed with the node and
/// network controls (crash, restart, partition, ...); observed through
/// [`World::machine`], [`World::trace`] and [`World::stats`].
pub struct World<M: Machine> {
    pub(crate) seed: u64,
    pub(crate) config: WorldConfig,
    pub(crate) now: Instant,
    pub(crate) queue: Queue<Ev>,
    pub(crate) rng: NetRng,
    pub(crate) net: Network,
    pub(crate) nodes: Vec<Node<M>>,
    pub(crate) by_addr: FxHashMap<SocketAddr, NodeId>,
    pub(crate) assocs: Associations,
    pub(crate) stats: Stats,
    pub(crate) trace: Vec<Entry<M::Event>>,
    /// Events processed at the current instant (the livelock guard).
    at_this_instant: u64,
    /// The nodes that hear ASAP and ENRP announces, in node order (fixed
    /// when built), so an announce does not scan every node.
    pub(crate) asap_listeners: Vec<NodeId>,
    pub(crate) enrp_listeners: Vec<NodeId>,
    /// Reused buffer messages are encoded into.
    scratch: Vec<u8>,
    /// Wall-clock time the world was built, for the `RSERPOOL_SIM_SPEED` report.
    built: std::time::Instant,
}

/// With `RSERPOOL_SIM_SPEED` set in the environment, a world reports on
/// stderr, when dropped, the events it processed and how fast (wall clock
/// since it was built). Off by default: it changes no output.
impl<M: Machine> Drop for World<M> {
    fn drop(&mut self) {
        if std::env::var_os("RSERPOOL_SIM_SPEED").is_none() {
            return;
        }
        let wall = self.built.elapsed().as_secs_f64();
        eprintln!(
            "sim speed: {} events in {:.3} s wall ({:.3} M events/s), virtual time {}, {} nodes",
            self.stats.events,
            wall,
            self.stats.events as f64 / wall.max(1e-9) / 1e6,
            self.now,
            self.nodes.len()
        );
    }
}

impl<M: Machine + 'static> World<M> {
    pub(crate) fn new(
        seed: u64,
        config: WorldConfig,
        net: Network,
        nodes: Vec<Node<M>>,
        by_addr: FxHashMap<SocketAddr, NodeId>,
    ) -> Self {
        let listeners = |wants: fn(&Node<M>) -> bool| {
            (0..nodes.len() as u32)
                .map(NodeId)
                .filter(|id| wants(&nodes[id.index()]))
                .collect::<Vec<_>>()
        };
        let asap_listeners = listeners(|n| n.announces.asap);
        let enrp_listeners = listeners(|n| n.announces.enrp);
        Self {
            seed,
            now: Instant::ZERO,
            asap_listeners,
            enrp_listeners,
            scratch: Vec::with_capacity(1024),
            queue: Queue::default(),
            rng: NetRng::new(seed),
            net,
            nodes,
            by_addr,
            assocs: Associations::default(),
            stats: Stats::default(),
            trace: Vec::new(),
            at_this_instant: 0,
            built: std::time::Instant::now(),
            config,
        }
    }

    /// Processes the next event; false if there is none.
    pub fn step(&mut self) -> bool {
        let Some((at, ev)) = self.queue.pop() else {
            return false;
        };
        if at > self.now {
            self.now = at;
            self.at_this_instant = 0;
        }
        self.at_this_instant += 1;
        if self.at_this_instant > self.config.max_events_per_instant {
            panic!(
                "seed {}: more than {} events at {}: livelock (a machine keeps asking to be \
                 woken at or before now, or messages loop without delay); last event {ev:?}",
                self.seed, self.config.max_events_per_instant, self.now
            );
        }
        self.stats.events += 1;
        self.dispatch(ev);
        true
    }

    /// Processes every event due at or before `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.queue.next_at().is_some_and(|at| at <= t) {
            self.step();
        }
        if t > self.now {
            self.now = t;
            self.at_this_instant = 0;
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Start { node } => self.start(node),
            Ev::Timer { node, generation } => self.fire_timer(node, generation),
            Ev::Handshake { serial } => self.handshake(serial),
            Ev::Lane { serial, side } => self.lane_ready(serial, side),
            Ev::LossCheck { serial, since } => self.loss_check(serial, since),
            Ev::Down {
                node,
                incarnation,
                assoc,
                reason,
            } => self.tell_down(node, incarnation, assoc, reason),
            Ev::Announce {
                from,
                to,
                ppid,
                data,
            } => self.deliver_announce(from, to, ppid, data),
            Ev::Unresolved {
                node,
                incarnation,
                addr,
            } => self.unresolved_timeout(node, incarnation, addr),
        }
    }

    fn fire_timer(&mut self, id: NodeId, generation: u64) {
        let now = self.now;
        let node = &mut self.nodes[id.index()];
        if node.timer_gen != generation {
            return;
        }
        node.timer = None;
        if let Some(m) = node.machine.as_mut() {
            m.handle_timeout(now);
            self.drain(id);
        }
    }

    /// Takes everything the node's machine has produced: transmits are
    /// carried out (never by calling another machine, so the machine is
    /// simply borrowed again for each), events go to the trace, and the
    /// timer is re-armed if its deadline moved.
    pub(crate) fn drain(&mut self, id: NodeId) {
        let now = self.now;
        loop {
            let Some(m) = self.nodes[id.index()].machine.as_mut() else {
                return;
            };
            let Some(t) = m.poll_transmit() else {
                break;
            };
            self.apply(id, t);
        }
        let node = &mut self.nodes[id.index()];
        let Some(m) = node.machine.as_mut() else {
            return;
        };
        while let Some(e) = m.poll_event() {
            if self.config.trace {
                self.trace.push(Entry {
                    at: now,
                    node: id,
                    what: Happening::Event(e),
                });
            }
        }
        let deadline = m.poll_timeout();
        if deadline != node.timer {
            node.timer = deadline;
            node.timer_gen += 1;
            if let Some(at) = deadline {
                let generation = node.timer_gen;
                self.queue.push(
                    at.max(now),
                    Ev::Timer {
                        node: id,
                        generation,
                    },
                );
            }
        }
    }

    fn apply(&mut self, id: NodeId, t: Transmit) {
        match t {
            Transmit::Send { to, message } => {
                let data = self.encode(id, &message);
                self.stats.count_sent(MessageKind::of(&message), data.len());
                self.send(id, to, message.ppid(), data);
            }
            Transmit::Announce { message } => {
                let data = self.encode(id, &message);
                self.stats
                    .count_announced(MessageKind::of(&message), data.len());
                self.announce(id, message.ppid(), data);
            }
            Transmit::Data { to, ppid, data, .. } => {
                self.stats.count_data(data.len());
                self.send(id, to, ppid, data);
            }
            Transmit::Connect { to } => self.connect(id, &to),
            Transmit::Close { assoc, abort } => self.close(id, assoc, abort),
            Transmit::Abandon { to } => self.abandon(id, &to),
        }
    }

    /// Messages travel encoded, so every run exercises the codec; a machine
    /// producing a message the codec refuses is a bug the run must not hide.
    ///
    /// Encoded into a reused buffer, then copied into a `Bytes` of exactly
    /// its size: one allocation per message.
    fn encode(&mut self, id: NodeId, message: &Message) -> Bytes {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        if let Err(e) = message.encode(&mut buf) {
            panic!(
                "seed {}: at {} {} ({}) sent a message that does not encode ({e}): {message}",
                self.seed,
                self.now,
                id,
                self.nodes[id.index()].name
            );
        }
        let data = Bytes::copy_from_slice(&buf);
        self.scratch = buf;
        data
    }

    pub(crate) fn trace_entry(&mut self, node: NodeId, what: Happening<M::Event>) {
        if self.config.trace {
            self.trace.push(Entry {
                at: self.now,
                node,
                what,
            });
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The seed the world was built with (print it when a test fails).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The configuration the world runs with.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// Counters since the world was built.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The trace recorded so far (empty if tracing is off).
    pub fn trace(&self) -> &[Entry<M::Event>] {
        &self.trace
    }

    /// Takes the trace recorded so far, leaving it empty (for long runs).
    pub fn take_trace(&mut self) -> Vec<Entry<M::Event>> {
        std::mem::take(&mut self.trace)
    }

    /// Events waiting in the queue.
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// When the next event is due, if any.
    pub fn next_event_at(&self) -> Option<Instant> {
        self.queue.next_at()
    }

    /// Every node, in order of creation.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + use<M> {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// The node's name.
    pub fn name(&self, node: NodeId) -> &str {
        &self.nodes[node.index()].name
    }

    /// The node with this name, if any (a linear search).
    pub fn node_named(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| NodeId(i as u32))
    }

    /// The node's addresses, primary first.
    pub fn addrs(&self, node: NodeId) -> &[SocketAddr] {
        &self.nodes[node.index()].addrs
    }

    /// The node that has this address.
    pub fn node_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.by_addr.get(&addr).copied()
    }

    /// Whether a machine runs on the node.
    pub fn is_running(&self, node: NodeId) -> bool {
        self.nodes[node.index()].running()
    }

    /// How many times the node has been started.
    pub fn starts(&self, node: NodeId) -> u32 {
        self.nodes[node.index()].incarnation
    }

    /// The node's machine, if it runs.
    pub fn machine(&self, node: NodeId) -> Option<&M> {
        self.nodes[node.index()].machine.as_ref()
    }

    /// Every running machine with its node.
    pub fn machines(&self) -> impl Iterator<Item = (NodeId, &M)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((NodeId(i as u32), n.machine.as_ref()?)))
    }

    /// Calls `f` on the node's running machine with the current time (to
    /// issue a command, such as a deregistration), then carries out what the
    /// machine produced. `None` if the node is down.
    pub fn act<R>(&mut self, node: NodeId, f: impl FnOnce(&mut M, Instant) -> R) -> Option<R> {
        let now = self.now;
        let m = self.nodes[node.index()].machine.as_mut()?;
        let r = f(m, now);
        self.drain(node);
        Some(r)
    }

    /// Associations the node's machine currently has (up, opening or closing).
    pub fn associations(&self, node: NodeId) -> usize {
        self.nodes[node.index()].assocs.len()
    }
}

//! What a scenario does to the world: start, crash and restart nodes;
//! partition, cut and heal the network; change links.

use crate::assoc::{End, Phase};
use crate::config::LinkConfig;
use crate::node::{CrashMode, NodeId, Spawn};
use crate::rng::machine_seed;
use crate::trace::Happening;
use crate::transport::reachable;
use crate::world::{Ev, World};
use rserpool_core::{DownReason, Machine};

impl<M: Machine + 'static> World<M> {
    /// Starts a fresh machine on the node (no-op if one runs).
    pub(crate) fn start(&mut self, id: NodeId) {
        let now = self.now;
        let node = &mut self.nodes[id.index()];
        if node.running() {
            return;
        }
        let incarnation = node.incarnation;
        let factory = node.factory.clone();
        let machine = factory(&Spawn {
            node: id,
            name: &node.name,
            index: node.index,
            addrs: &node.addrs,
            seed: machine_seed(self.seed, id.0, incarnation),
            incarnation,
            now,
        });
        node.machine = Some(machine);
        node.incarnation += 1;
        node.host_up = true;
        let zombies = std::mem::take(&mut node.zombies);
        self.trace_entry(id, Happening::Started { incarnation });
        self.abort_zombies(id, zombies);
        self.drain(id);
    }

    /// The peers of associations that died with the node's previous
    /// incarnation learn it from the ABORT their next packet draws, instead
    /// of waiting for failure detection (unless the path is still broken).
    fn abort_zombies(&mut self, id: NodeId, zombies: Vec<u64>) {
        let now = self.now;
        for serial in zombies {
            let Some(a) = self.assocs.map.get(&serial) else {
                continue;
            };
            let peer = 1 - a.side_of(id);
            let peer_node = a.ends[peer].node;
            if a.ends[peer].live() && reachable(&self.nodes, &self.net, id, peer_node) {
                let d = self.net.one_way(&mut self.rng, id, peer_node);
                self.detach_and_schedule_down(serial, peer, now + d, DownReason::Aborted);
                self.remove_if_done(serial);
            }
        }
    }

    /// Starts a fresh machine (new seed, no associations) on a node that is
    /// down: crashed, or not started yet.
    ///
    /// # Panics
    /// If the node runs: crash it first.
    pub fn restart(&mut self, node: NodeId) {
        assert!(
            !self.is_running(node),
            "seed {}: restart of {} ({}), which is running; crash it first",
            self.seed,
            node,
            self.name(node)
        );
        self.start(node);
    }

    /// Crashes the node: its machine is dropped with all its timers and
    /// associations. With [`CrashMode::Host`] its peers see `Down{Lost}`
    /// after the failure-detection time; with [`CrashMode::Process`] the
    /// kernel aborts the associations, and peers see `Down{Aborted}` when
    /// the ABORT arrives. Returns false if the node was not running.
    pub fn crash(&mut self, id: NodeId, mode: CrashMode) -> bool {
        let now = self.now;
        let node = &mut self.nodes[id.index()];
        if !node.running() {
            return false;
        }
        node.machine = None;
        node.timer = None;
        node.timer_gen += 1;
        node.host_up = mode == CrashMode::Process;
        node.unresolved.clear();
        let serials = std::mem::take(&mut node.assocs);
        self.trace_entry(id, Happening::Crashed(mode));
        for serial in serials {
            let Some(a) = self.assocs.map.get_mut(&serial) else {
                continue;
            };
            let side = a.side_of(id);
            let peer = 1 - side;
            // What the dead end had queued dies with it.
            self.stats.dropped += a.lanes[side].queue.len() as u64;
            a.lanes[side].queue.clear();
            let phase = a.phase;
            let peer_node = a.ends[peer].node;
            let peer_live = a.ends[peer].live();
            self.detach(serial, side);
            match phase {
                // The opener died: only a responder that also sent is owed an answer.
                Phase::Opening { .. } if side == 0 => self.fail_handshake(serial),
                // The responder died: the opener's handshake finds out.
                Phase::Opening { .. } => {}
                Phase::Established if !peer_live => {}
                Phase::Established => match mode {
                    CrashMode::Process if reachable(&self.nodes, &self.net, id, peer_node) => {
                        let d = self.net.one_way(&mut self.rng, id, peer_node);
                        self.detach_and_schedule_down(serial, peer, now + d, DownReason::Aborted);
                    }
                    _ => {
                        self.arm_failure_detection(serial);
                        self.nodes[id.index()].zombies.push(serial);
                    }
                },
            }
            self.remove_if_done(serial);
        }
        true
    }

    /// Puts each group of nodes on a network side of its own: nodes on
    /// different sides cannot exchange anything. Nodes not named stay where
    /// they were.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        self.net.partition(groups);
        self.paths_changed();
    }

    /// Cuts the node off from every other node.
    pub fn isolate(&mut self, node: NodeId) {
        self.partition(&[&[node]]);
    }

    /// Cuts the link between two nodes only.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.net.cut(a, b);
        self.paths_changed();
    }

    /// Restores a link cut with [`World::cut`].
    pub fn restore(&mut self, a: NodeId, b: NodeId) {
        self.net.restore(a, b);
        self.paths_changed();
    }

    /// Ends all partitions and restores all cut links.
    pub fn heal(&mut self) {
        self.net.heal();
        self.paths_changed();
    }

    /// Sets delay and loss of the link between two nodes (both directions).
    pub fn set_link(&mut self, a: NodeId, b: NodeId, link: LinkConfig) {
        self.net.set_link(a, b, link);
    }

    /// Arms failure detection on every association whose path just broke,
    /// and disarms it where the path came back (a scan, but topology
    /// changes are rare next to messages).
    fn paths_changed(&mut self) {
        let now = self.now;
        let detection = self.config.transport.failure_detection;
        // In serial order, as the queue's tie-break depends on push order.
        let mut serials: Vec<u64> = self.assocs.map.keys().copied().collect();
        serials.sort_unstable();
        for serial in serials {
            let a = self.assocs.map.get_mut(&serial).expect("listed above");
            if a.phase != Phase::Established {
                continue;
            }
            let ok = a.ends.iter().all(End::live)
                && reachable(&self.nodes, &self.net, a.ends[0].node, a.ends[1].node);
            match (ok, a.broken_since) {
                (false, None) => {
                    a.broken_since = Some(now);
                    self.queue
                        .push(now + detection, Ev::LossCheck { serial, since: now });
                }
                (true, Some(_)) => a.broken_since = None,
                _ => {}
            }
        }
    }
}

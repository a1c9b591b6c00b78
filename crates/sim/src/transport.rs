//! The simulated SCTP: associations opened on first send, handshakes that
//! cost a round trip, reliable ordered lanes, graceful and aborting closes,
//! failure detection on broken paths.

use crate::assoc::{Assoc, End, EndState, InFlight, Item, Lane, Phase, pair};
use crate::network::Network;
use crate::node::{Node, NodeId};
use crate::trace::Happening;
use crate::world::{Ev, World};
use bytes::Bytes;
use rserpool_core::{AssocId, AssociationEvent, Destination, DownReason, Instant, Machine};
use std::net::SocketAddr;

/// Whether packets pass between the hosts of `a` and `b` now.
pub(crate) fn reachable<M>(nodes: &[Node<M>], net: &Network, a: NodeId, b: NodeId) -> bool {
    nodes[a.index()].host_up && nodes[b.index()].host_up && net.connected(a, b)
}

fn data_items(lane: &Lane) -> u64 {
    lane.queue
        .iter()
        .filter(|f| matches!(f.item, Item::Data { .. }))
        .count() as u64
}

impl<M: Machine + 'static> World<M> {
    pub(crate) fn send(&mut self, id: NodeId, to: Destination, ppid: u32, data: Bytes) {
        match to {
            Destination::Association(assoc) => self.send_on(id, assoc, ppid, data),
            Destination::Addresses(addrs) => self.send_to(id, &addrs, ppid, data),
        }
    }

    fn refuse(&mut self, id: NodeId, what: &str, assoc: Option<AssocId>) {
        self.stats.refused += 1;
        tracing::debug!(node = %id, ?assoc, "sim: refused {what}");
    }

    fn send_on(&mut self, id: NodeId, assoc: AssocId, ppid: u32, data: Bytes) {
        let Some(&serial) = self.assocs.by_id.get(&assoc) else {
            return self.refuse(id, "send on an unknown association", Some(assoc));
        };
        let a = &self.assocs.map[&serial];
        let side = a.side_of(id);
        let end = &a.ends[side];
        if end.node != id || end.id != assoc || end.state != EndState::Up || a.lanes[side].shut {
            return self.refuse(id, "send on an association not up", Some(assoc));
        }
        self.enqueue(serial, side, Item::Data { ppid, data });
    }

    /// Like `sendmsg` on a one-to-many socket: the association to the
    /// endpoint that has one of `addrs`, opened if there is none.
    fn send_to(&mut self, id: NodeId, addrs: &[SocketAddr], ppid: u32, data: Bytes) {
        if let Some((serial, side)) = self.association_to(id, addrs) {
            self.enqueue(serial, side, Item::Data { ppid, data });
        }
    }

    /// `Transmit::Connect`: the association to the endpoint at `addrs`,
    /// opened if there is none, with nothing sent yet.
    pub(crate) fn connect(&mut self, id: NodeId, addrs: &[SocketAddr]) {
        self.association_to(id, addrs);
    }

    /// The association (serial, this node's side) to the node that has one
    /// of `addrs`, opened if there is none; `None` if no node has them.
    fn association_to(&mut self, id: NodeId, addrs: &[SocketAddr]) -> Option<(u64, usize)> {
        let Some(target) = addrs.iter().find_map(|a| self.by_addr.get(a).copied()) else {
            self.send_nowhere(id, addrs);
            return None;
        };
        if target == id {
            self.refuse(id, "send to its own addresses", None);
            return None;
        }
        let current = self.assocs.pairs.get(&pair(id, target)).copied();
        let serial = match current {
            Some(serial) => {
                let a = &self.assocs.map[&serial];
                let side = a.side_of(id);
                match (a.ends[side].state, a.phase) {
                    // Given up by this node: a fresh open.
                    (EndState::Pending, _) if a.ends[side].abandoned => self.open(id, target),
                    // Up, or in the handshake (either side's open): use it.
                    (EndState::Pending | EndState::Up, _) => serial,
                    // The responder restarted during the handshake.
                    (EndState::Closed, Phase::Opening { .. }) => {
                        self.rebind(serial, side);
                        serial
                    }
                    _ => {
                        self.supersede(serial, side);
                        self.open(id, target)
                    }
                }
            }
            None => self.open(id, target),
        };
        let a = self
            .assocs
            .map
            .get_mut(&serial)
            .expect("just found or opened");
        let side = a.side_of(id);
        if a.ends[side].state == EndState::Pending {
            a.ends[side].opened = true;
        }
        Some((serial, side))
    }

    /// Addresses of no node: the INITs go unanswered until the handshake
    /// timeout. One pending open per address, as a socket would have.
    fn send_nowhere(&mut self, id: NodeId, addrs: &[SocketAddr]) {
        let Some(&addr) = addrs.first() else {
            return self.refuse(id, "send to an empty address list", None);
        };
        self.stats.dropped += 1;
        let node = &mut self.nodes[id.index()];
        if node.unresolved.contains_key(&addr) {
            return;
        }
        let assoc = self.assocs.new_id();
        node.unresolved.insert(addr, assoc);
        self.stats.associations_opened += 1;
        let incarnation = node.incarnation;
        self.queue.push(
            self.now + self.config.transport.handshake_timeout,
            Ev::Unresolved {
                node: id,
                incarnation,
                addr,
            },
        );
    }

    pub(crate) fn unresolved_timeout(&mut self, id: NodeId, incarnation: u32, addr: SocketAddr) {
        let node = &mut self.nodes[id.index()];
        if node.incarnation != incarnation {
            return;
        }
        if let Some(assoc) = node.unresolved.remove(&addr) {
            self.tell_down(id, incarnation, assoc, DownReason::HandshakeFailed);
        }
    }

    /// Starts an association from `id` to `target`; the handshake completes
    /// one round trip later if the target answers.
    fn open(&mut self, id: NodeId, target: NodeId) -> u64 {
        let now = self.now;
        let target_running = self.nodes[target.index()].running();
        let ends = [
            End {
                node: id,
                incarnation: self.nodes[id.index()].incarnation,
                id: self.assocs.new_id(),
                state: EndState::Pending,
                opened: true,
                abandoned: false,
            },
            End {
                node: target,
                incarnation: self.nodes[target.index()].incarnation,
                id: self.assocs.new_id(),
                // Nobody to bind to yet; a process started before the
                // handshake completes takes it (see `handshake`).
                state: if target_running {
                    EndState::Pending
                } else {
                    EndState::Closed
                },
                opened: false,
                abandoned: false,
            },
        ];
        let serial = self.assocs.insert(Assoc {
            ends,
            lanes: Default::default(),
            phase: Phase::Opening { started: now },
            broken_since: None,
        });
        self.nodes[id.index()].assocs.insert(serial);
        if target_running {
            self.nodes[target.index()].assocs.insert(serial);
        }
        self.stats.associations_opened += 1;
        let t = &self.config.transport;
        let (there, l1) =
            self.net
                .reliable(&mut self.rng, id, target, t.rto, t.max_retransmissions);
        let (back, l2) = self
            .net
            .reliable(&mut self.rng, target, id, t.rto, t.max_retransmissions);
        self.stats.retransmissions += u64::from(l1 + l2);
        self.queue
            .push(now + there + back, Ev::Handshake { serial });
        serial
    }

    /// Gives the dead responder end of an association in its handshake to
    /// the process now running on its node.
    fn rebind(&mut self, serial: u64, side: usize) {
        let end = &mut self
            .assocs
            .map
            .get_mut(&serial)
            .expect("caller checked")
            .ends[side];
        let node = &mut self.nodes[end.node.index()];
        end.incarnation = node.incarnation;
        end.state = EndState::Pending;
        self.assocs.by_id.insert(end.id, serial);
        node.assocs.insert(serial);
    }

    /// A node whose end of the pair's current association is closing or gone
    /// opens a new one. A closing association finishes on its own; one the
    /// peer still has up (this node crashed, or aborted while cut off) is
    /// reset when the new INIT reaches the peer, as SCTP does when a peer
    /// restarts.
    fn supersede(&mut self, serial: u64, side: usize) {
        let a = &self.assocs.map[&serial];
        let (me, peer) = (a.ends[side].node, a.ends[1 - side].node);
        let stale = a.ends[side].state == EndState::Closed
            && matches!(a.ends[1 - side].state, EndState::Pending | EndState::Up);
        if stale && reachable(&self.nodes, &self.net, me, peer) {
            let d = self.net.one_way(&mut self.rng, me, peer);
            self.detach_and_schedule_down(serial, 1 - side, self.now + d, DownReason::Aborted);
            self.remove_if_done(serial);
        }
    }

    pub(crate) fn handshake(&mut self, serial: u64) {
        let now = self.now;
        let Some(a) = self.assocs.map.get_mut(&serial) else {
            return;
        };
        let Phase::Opening { started } = a.phase else {
            return;
        };
        let (opener, target) = (a.ends[0].node, a.ends[1].node);
        if reachable(&self.nodes, &self.net, opener, target) {
            let t = &self.nodes[target.index()];
            if !t.running() {
                // The host is up but nothing listens: its kernel answers with ABORT.
                return self.fail_handshake(serial);
            }
            if !a.ends[1].live() {
                self.rebind(serial, 1);
            }
            self.establish(serial);
        } else if now >= started + self.config.transport.handshake_timeout {
            self.fail_handshake(serial);
        } else {
            // INIT retransmission.
            self.stats.retransmissions += 1;
            let at = (now + self.config.transport.rto)
                .min(started + self.config.transport.handshake_timeout);
            self.queue.push(at, Ev::Handshake { serial });
        }
    }

    fn establish(&mut self, serial: u64) {
        let now = self.now;
        let t = &self.config.transport;
        let a = self.assocs.map.get_mut(&serial).expect("caller checked");
        a.phase = Phase::Established;
        for end in &mut a.ends {
            if end.state == EndState::Pending {
                end.state = EndState::Up;
            }
        }
        // What was sent during the handshake leaves now (bundled with COOKIE-ECHO).
        for side in 0..2 {
            let (from, to) = (a.ends[side].node, a.ends[1 - side].node);
            let lane = &mut a.lanes[side];
            let mut ready = now;
            for f in lane.queue.iter_mut() {
                let (d, losses) =
                    self.net
                        .reliable(&mut self.rng, from, to, t.rto, t.max_retransmissions);
                self.stats.retransmissions += u64::from(losses);
                ready = ready.max(now + d);
                f.ready_at = ready;
            }
            lane.last_ready = ready;
            if let Some(head) = lane.queue.front() {
                lane.scheduled = true;
                self.queue.push(head.ready_at, Ev::Lane { serial, side });
            }
        }
        self.stats.associations_up += 1;
        let ups = [(1, 0), (0, 1)].map(|(me, peer)| {
            (
                a.ends[me].node,
                a.ends[me].incarnation,
                a.ends[me].id,
                a.ends[peer].node,
            )
        });
        let abandoned = [0, 1].map(|side| a.ends[side].abandoned);
        // The responder learns first (on COOKIE-ECHO), then the opener.
        for ((node, incarnation, assoc, peer), side) in ups.into_iter().zip([1, 0]) {
            if !abandoned[side] {
                self.tell_up(node, incarnation, assoc, peer);
            }
        }
        if let Some(side) = (0..2).find(|s| abandoned[*s]) {
            self.abort(serial, side);
        }
    }

    /// `Transmit::Abandon`: the association `id` is still opening to the
    /// endpoint at `addrs` is given up. Its queued data is dropped; it is
    /// never reported up nor failed to `id` (whose machine never learned its
    /// id), and if the handshake completes, it is aborted.
    pub(crate) fn abandon(&mut self, id: NodeId, addrs: &[SocketAddr]) {
        let node = &mut self.nodes[id.index()];
        for a in addrs {
            node.unresolved.remove(a);
        }
        let Some(target) = addrs.iter().find_map(|a| self.by_addr.get(a).copied()) else {
            return;
        };
        let Some(&serial) = self.assocs.pairs.get(&pair(id, target)) else {
            return;
        };
        let Some(a) = self.assocs.map.get_mut(&serial) else {
            return;
        };
        let side = a.side_of(id);
        let end = &mut a.ends[side];
        if end.node != id || end.state != EndState::Pending {
            return;
        }
        end.abandoned = true;
        end.opened = false;
        let lane = &mut a.lanes[side];
        self.stats.dropped += data_items(lane);
        lane.queue.clear();
    }

    fn tell_up(&mut self, id: NodeId, incarnation: u32, assoc: AssocId, peer: NodeId) {
        let now = self.now;
        let peer_addrs = self.nodes[peer.index()].addrs.clone();
        let node = &mut self.nodes[id.index()];
        if node.incarnation != incarnation {
            return;
        }
        let Some(m) = node.machine.as_mut() else {
            return;
        };
        m.handle_association(
            now,
            AssociationEvent::Up {
                assoc,
                peer: peer_addrs,
            },
        );
        self.trace_entry(id, Happening::Up { assoc, peer });
        self.drain(id);
    }

    pub(crate) fn tell_down(
        &mut self,
        id: NodeId,
        incarnation: u32,
        assoc: AssocId,
        reason: DownReason,
    ) {
        let now = self.now;
        let node = &mut self.nodes[id.index()];
        if node.incarnation != incarnation {
            return;
        }
        let Some(m) = node.machine.as_mut() else {
            return;
        };
        m.handle_association(now, AssociationEvent::Down { assoc, reason });
        self.stats.count_down(reason);
        self.trace_entry(id, Happening::Down { assoc, reason });
        self.drain(id);
    }

    /// Removes the end on `side` from every lookup; the association stays
    /// for the other end. Returns the end's address for a `Down`.
    pub(crate) fn detach(&mut self, serial: u64, side: usize) -> Option<(NodeId, u32, AssocId)> {
        let end = &mut self.assocs.map.get_mut(&serial)?.ends[side];
        if !end.live() {
            return None;
        }
        end.state = EndState::Closed;
        self.assocs.by_id.remove(&end.id);
        self.nodes[end.node.index()].assocs.remove(&serial);
        Some((end.node, end.incarnation, end.id))
    }

    /// Detaches the end on `side` and tells it `reason` at `at`.
    pub(crate) fn detach_and_schedule_down(
        &mut self,
        serial: u64,
        side: usize,
        at: Instant,
        reason: DownReason,
    ) {
        if let Some((node, incarnation, assoc)) = self.detach(serial, side) {
            self.queue.push(
                at,
                Ev::Down {
                    node,
                    incarnation,
                    assoc,
                    reason,
                },
            );
        }
    }

    /// Forgets the association once neither end is left.
    pub(crate) fn remove_if_done(&mut self, serial: u64) {
        let Some(a) = self.assocs.map.get(&serial) else {
            return;
        };
        if a.ends.iter().any(End::live) {
            return;
        }
        let a = self.assocs.map.remove(&serial).expect("just looked up");
        let key = pair(a.ends[0].node, a.ends[1].node);
        if self.assocs.pairs.get(&key) == Some(&serial) {
            self.assocs.pairs.remove(&key);
        }
        self.stats.dropped += a.lanes.iter().map(data_items).sum::<u64>();
    }

    pub(crate) fn fail_handshake(&mut self, serial: u64) {
        let mut owed = Vec::new();
        for side in 0..2 {
            let opened = self.assocs.map[&serial].ends[side].opened;
            if let Some(end) = self.detach(serial, side)
                && opened
            {
                owed.push(end);
            }
        }
        self.remove_if_done(serial);
        for (node, incarnation, assoc) in owed {
            self.tell_down(node, incarnation, assoc, DownReason::HandshakeFailed);
        }
    }

    /// Queues `item` on the lane of `side`; on an established association
    /// it arrives after the link's delay (plus retransmissions), never
    /// before what was queued earlier.
    pub(crate) fn enqueue(&mut self, serial: u64, side: usize, item: Item) {
        let now = self.now;
        let t = &self.config.transport;
        let a = self.assocs.map.get_mut(&serial).expect("caller checked");
        let (from, to) = (a.ends[side].node, a.ends[1 - side].node);
        let lane = &mut a.lanes[side];
        if matches!(item, Item::Shutdown | Item::ShutdownAck) {
            lane.shut = true;
        }
        if a.phase != Phase::Established {
            lane.queue.push_back(InFlight {
                ready_at: now,
                item,
            });
            return;
        }
        let (d, losses) = self
            .net
            .reliable(&mut self.rng, from, to, t.rto, t.max_retransmissions);
        self.stats.retransmissions += u64::from(losses);
        let ready_at = (now + d).max(lane.last_ready);
        lane.last_ready = ready_at;
        lane.queue.push_back(InFlight { ready_at, item });
        if !lane.scheduled {
            lane.scheduled = true;
            self.queue.push(ready_at, Ev::Lane { serial, side });
        }
    }

    /// The head of a lane is due: deliver it if the path works, else retry
    /// after an RTO and arm failure detection.
    pub(crate) fn lane_ready(&mut self, serial: u64, side: usize) {
        let now = self.now;
        let Some(a) = self.assocs.map.get_mut(&serial) else {
            return;
        };
        let (src, dst) = (a.ends[side].node, a.ends[1 - side].node);
        let dst_live = a.ends[1 - side].live();
        let lane = &mut a.lanes[side];
        lane.scheduled = false;
        let Some(head) = lane.queue.front() else {
            return;
        };
        if head.ready_at > now {
            lane.scheduled = true;
            self.queue.push(head.ready_at, Ev::Lane { serial, side });
            return;
        }
        if !dst_live {
            self.stats.dropped += data_items(lane);
            lane.queue.clear();
            return;
        }
        if !reachable(&self.nodes, &self.net, src, dst) {
            self.stats.retransmissions += 1;
            lane.scheduled = true;
            self.queue
                .push(now + self.config.transport.rto, Ev::Lane { serial, side });
            self.arm_failure_detection(serial);
            return;
        }
        a.broken_since = None;
        let head = lane.queue.pop_front().expect("checked above");
        if let Some(next) = lane.queue.front() {
            lane.scheduled = true;
            self.queue
                .push(next.ready_at.max(now), Ev::Lane { serial, side });
        }
        let receiver = 1 - side;
        let (dst_incarnation, dst_id) = (a.ends[receiver].incarnation, a.ends[receiver].id);
        match head.item {
            Item::Data { ppid, data } => {
                self.stats.delivered += 1;
                let node = &mut self.nodes[dst.index()];
                debug_assert_eq!(node.incarnation, dst_incarnation);
                if let Some(m) = node.machine.as_mut() {
                    m.handle_data(now, dst_id, ppid, data);
                    self.drain(dst);
                }
            }
            Item::Shutdown => {
                // The receiver answers after what it still has queued,
                // unless it is shutting down itself.
                if !a.lanes[receiver].shut {
                    self.enqueue(serial, receiver, Item::ShutdownAck);
                }
                self.graceful_down(serial, receiver);
            }
            Item::ShutdownAck => self.graceful_down(serial, receiver),
        }
    }

    fn graceful_down(&mut self, serial: u64, side: usize) {
        if let Some((node, incarnation, assoc)) = self.detach(serial, side) {
            self.tell_down(node, incarnation, assoc, DownReason::Graceful);
        }
        self.remove_if_done(serial);
    }

    pub(crate) fn close(&mut self, id: NodeId, assoc: AssocId, abort: bool) {
        let Some(&serial) = self.assocs.by_id.get(&assoc) else {
            return self.refuse(id, "close of an unknown association", Some(assoc));
        };
        let a = self.assocs.map.get_mut(&serial).expect("by_id only live");
        let side = a.side_of(id);
        let end = &mut a.ends[side];
        if end.node != id || end.id != assoc || end.state == EndState::Pending {
            return self.refuse(id, "close of an association not up", Some(assoc));
        }
        if abort {
            return self.abort(serial, side);
        }
        if end.state == EndState::Up {
            end.state = EndState::Closing;
            self.enqueue(serial, side, Item::Shutdown);
        }
    }

    /// ABORT from `side`: queued data is gone, the aborting end learns at
    /// once, the other when the ABORT arrives (or by failure detection if it
    /// cannot arrive).
    pub(crate) fn abort(&mut self, serial: u64, side: usize) {
        let now = self.now;
        let a = self.assocs.map.get_mut(&serial).expect("caller checked");
        for lane in &mut a.lanes {
            self.stats.dropped += data_items(lane);
            lane.queue.clear();
        }
        let (me, peer) = (a.ends[side].node, a.ends[1 - side].node);
        let peer_live = a.ends[1 - side].live();
        self.detach_and_schedule_down(serial, side, now, DownReason::Aborted);
        if peer_live {
            if reachable(&self.nodes, &self.net, me, peer) {
                let d = self.net.one_way(&mut self.rng, me, peer);
                self.detach_and_schedule_down(serial, 1 - side, now + d, DownReason::Aborted);
            } else {
                self.arm_failure_detection(serial);
            }
        }
        self.remove_if_done(serial);
    }

    pub(crate) fn arm_failure_detection(&mut self, serial: u64) {
        let now = self.now;
        let Some(a) = self.assocs.map.get_mut(&serial) else {
            return;
        };
        if a.broken_since.is_none() {
            a.broken_since = Some(now);
            self.queue.push(
                now + self.config.transport.failure_detection,
                Ev::LossCheck { serial, since: now },
            );
        }
    }

    /// Whether both ends are there and can reach each other.
    pub(crate) fn path_ok(&self, a: &Assoc) -> bool {
        a.ends.iter().all(End::live)
            && reachable(&self.nodes, &self.net, a.ends[0].node, a.ends[1].node)
    }

    pub(crate) fn loss_check(&mut self, serial: u64, since: Instant) {
        let Some(a) = self.assocs.map.get(&serial) else {
            return;
        };
        if a.broken_since != Some(since) {
            return;
        }
        if self.path_ok(a) {
            self.assocs
                .map
                .get_mut(&serial)
                .expect("exists")
                .broken_since = None;
            return;
        }
        let lost: Vec<_> = (0..2)
            .filter_map(|side| self.detach(serial, side))
            .collect();
        self.remove_if_done(serial);
        for (node, incarnation, assoc) in lost {
            self.tell_down(node, incarnation, assoc, DownReason::Lost);
        }
    }
}

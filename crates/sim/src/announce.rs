//! The announce channel: unreliable datagrams (ASAP_SERVER_ANNOUNCE,
//! ENRP_PRESENCE) to every node that listens, as multicast would carry them.

use crate::node::NodeId;
use crate::transport::reachable;
use crate::world::{Ev, World};
use bytes::Bytes;
use rserpool_core::Machine;

impl<M: Machine + 'static> World<M> {
    /// Sends an announce datagram to every node that listens for its kind:
    /// each copy may be lost, and none crosses a partition.
    pub(crate) fn announce(&mut self, from: NodeId, ppid: u32, data: Bytes) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let to = NodeId(i as u32);
            if to == from
                || !self.nodes[i].announces.wants(ppid)
                || !reachable(&self.nodes, &self.net, from, to)
            {
                continue;
            }
            if self.net.lost(&mut self.rng, from, to) {
                self.stats.announces_lost += 1;
                continue;
            }
            let d = self.net.one_way(&mut self.rng, from, to);
            self.queue.push(
                now + d,
                Ev::Announce {
                    from,
                    to,
                    ppid,
                    data: data.clone(),
                },
            );
        }
    }

    pub(crate) fn deliver_announce(&mut self, from: NodeId, to: NodeId, ppid: u32, data: Bytes) {
        if !reachable(&self.nodes, &self.net, from, to) {
            self.stats.announces_lost += 1;
            return;
        }
        let now = self.now;
        let source = self.nodes[from.index()].addrs[0];
        let Some(m) = self.nodes[to.index()].machine.as_mut() else {
            return;
        };
        self.stats.announces_delivered += 1;
        m.handle_announce(now, source, ppid, data);
        self.drain(to);
    }
}

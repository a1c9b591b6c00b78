//! The announce channel: unreliable datagrams (ASAP_SERVER_ANNOUNCE,
//! ENRP_PRESENCE) to every node that listens, as multicast would carry them.

use crate::node::NodeId;
use crate::transport::reachable;
use crate::world::{Ev, World};
use bytes::Bytes;
use rserpool_core::Machine;
use rserpool_wire::{PPID_ASAP, PPID_ENRP};

impl<M: Machine + 'static> World<M> {
    /// Sends an announce datagram to every node that listens for its kind:
    /// each copy may be lost, and none crosses a partition.
    pub(crate) fn announce(&mut self, from: NodeId, ppid: u32, data: Bytes) {
        let now = self.now;
        let listeners = match ppid {
            PPID_ASAP => std::mem::take(&mut self.asap_listeners),
            PPID_ENRP => std::mem::take(&mut self.enrp_listeners),
            _ => return,
        };
        for &to in &listeners {
            debug_assert!(self.nodes[to.index()].announces.wants(ppid));
            if to == from || !reachable(&self.nodes, &self.net, from, to) {
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
        match ppid {
            PPID_ASAP => self.asap_listeners = listeners,
            _ => self.enrp_listeners = listeners,
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

//! Who can reach whom, and how long a packet takes: per-link delay and loss,
//! partitions and cut links. Whether a host is up is the world's business.

use crate::config::LinkConfig;
use crate::node::NodeId;
use crate::rng::NetRng;
use rustc_hash::{FxHashMap, FxHashSet};
use std::time::Duration;

/// The links between nodes.
#[derive(Debug)]
pub(crate) struct Network {
    default: LinkConfig,
    links: FxHashMap<(NodeId, NodeId), LinkConfig>,
    /// Nodes talk only within the same side; all start on side 0.
    sides: Vec<u32>,
    next_side: u32,
    cuts: FxHashSet<(NodeId, NodeId)>,
}

/// The pair in canonical order, so a link is one entry for both directions.
fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Network {
    pub(crate) fn new(default: LinkConfig) -> Self {
        Self {
            default,
            links: FxHashMap::default(),
            sides: Vec::new(),
            next_side: 1,
            cuts: FxHashSet::default(),
        }
    }

    pub(crate) fn add_node(&mut self) {
        self.sides.push(0);
    }

    pub(crate) fn set_link(&mut self, a: NodeId, b: NodeId, link: LinkConfig) {
        self.links.insert(pair(a, b), link);
    }

    pub(crate) fn link(&self, a: NodeId, b: NodeId) -> &LinkConfig {
        if self.links.is_empty() {
            return &self.default;
        }
        self.links.get(&pair(a, b)).unwrap_or(&self.default)
    }

    /// Whether packets pass between `a` and `b` (hosts assumed up).
    pub(crate) fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.sides[a.index()] == self.sides[b.index()]
            && (self.cuts.is_empty() || !self.cuts.contains(&pair(a, b)))
    }

    /// Puts each group on a side of its own; nodes not named keep theirs.
    pub(crate) fn partition(&mut self, groups: &[&[NodeId]]) {
        for group in groups {
            let side = self.next_side;
            self.next_side += 1;
            for n in *group {
                self.sides[n.index()] = side;
            }
        }
    }

    pub(crate) fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cuts.insert(pair(a, b));
    }

    pub(crate) fn restore(&mut self, a: NodeId, b: NodeId) {
        self.cuts.remove(&pair(a, b));
    }

    /// Ends every partition and restores every cut link.
    pub(crate) fn heal(&mut self) {
        self.sides.fill(0);
        self.cuts.clear();
    }

    /// One packet's one-way delay from `a` to `b`.
    pub(crate) fn one_way(&self, rng: &mut NetRng, a: NodeId, b: NodeId) -> Duration {
        let link = self.link(a, b);
        link.delay + rng.up_to(link.jitter)
    }

    /// Whether one datagram from `a` to `b` is lost.
    pub(crate) fn lost(&self, rng: &mut NetRng, a: NodeId, b: NodeId) -> bool {
        rng.chance(self.link(a, b).loss)
    }

    /// The delay of a reliable transfer from `a` to `b`: one way, plus `rto`
    /// for each loss (at most `max_losses` counted). Returns the delay and
    /// the losses.
    pub(crate) fn reliable(
        &self,
        rng: &mut NetRng,
        a: NodeId,
        b: NodeId,
        rto: Duration,
        max_losses: u32,
    ) -> (Duration, u32) {
        let link = self.link(a, b);
        let mut losses = 0;
        while losses < max_losses && rng.chance(link.loss) {
            losses += 1;
        }
        (link.delay + rng.up_to(link.jitter) + rto * losses, losses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(n: u32) -> Network {
        let mut net = Network::new(LinkConfig::default());
        for _ in 0..n {
            net.add_node();
        }
        net
    }

    #[test]
    fn partitions_cuts_and_heal() {
        let mut net = net(4);
        let [a, b, c, d] = [0, 1, 2, 3].map(NodeId);
        assert!(net.connected(a, b));
        net.partition(&[&[a, b], &[c]]);
        assert!(net.connected(a, b));
        assert!(!net.connected(a, c));
        assert!(!net.connected(c, d), "d stayed on the old side");
        net.heal();
        net.cut(b, a);
        assert!(!net.connected(a, b));
        assert!(net.connected(a, c));
        net.restore(a, b);
        assert!(net.connected(a, b));
    }

    #[test]
    fn per_link_override_applies_both_ways() {
        let mut net = net(3);
        let slow = LinkConfig {
            delay: Duration::from_millis(50),
            jitter: Duration::ZERO,
            loss: 0.0,
        };
        net.set_link(NodeId(2), NodeId(0), slow.clone());
        let mut rng = NetRng::new(1);
        assert_eq!(
            net.one_way(&mut rng, NodeId(0), NodeId(2)),
            Duration::from_millis(50)
        );
        assert_eq!(net.link(NodeId(2), NodeId(0)), &slow);
        assert_eq!(net.link(NodeId(0), NodeId(1)), &LinkConfig::default());
    }
}

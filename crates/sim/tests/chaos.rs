//! The world's association guarantees under random faults, checked by a
//! machine that audits everything it is told: Up before data and at most
//! once, Down at most once and only after Up (HandshakeFailed only for ids
//! never up), messages on each association delivered as a gap-free prefix
//! in order, and after the faults end, every association up at both ends.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_core::{
    AssocId, AssociationEvent, Destination, DownReason, Instant, Machine, Transmit,
};
use rserpool_sim::{CrashMode, LinkConfig, NodeId, NodeSpec, World, WorldBuilder, WorldConfig};
use rserpool_wire::{AsapMessage, Message, PeId, PoolHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

struct Auditor {
    name: String,
    peers: Vec<SocketAddr>,
    rng: ChaCha8Rng,
    next: Instant,
    /// No closes of its own (the quiet phase).
    calm: bool,
    up: BTreeMap<AssocId, SocketAddr>,
    closing: BTreeSet<AssocId>,
    by_peer: BTreeMap<SocketAddr, AssocId>,
    sent: BTreeMap<AssocId, u32>,
    received: BTreeMap<AssocId, u32>,
    ever_up: BTreeSet<AssocId>,
    down: BTreeSet<AssocId>,
    outbox: Vec<Transmit>,
}

fn message(seq: u32) -> Message {
    Message::Asap(AsapMessage::EndpointKeepAliveAck {
        pool_handle: PoolHandle::try_from("audit").unwrap(),
        pe_id: PeId(seq),
    })
}

impl Auditor {
    fn new(name: &str, peers: Vec<SocketAddr>, seed: u64, now: Instant) -> Self {
        Self {
            name: name.to_string(),
            peers,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next: now,
            calm: false,
            up: BTreeMap::new(),
            closing: BTreeSet::new(),
            by_peer: BTreeMap::new(),
            sent: BTreeMap::new(),
            received: BTreeMap::new(),
            ever_up: BTreeSet::new(),
            down: BTreeSet::new(),
            outbox: Vec::new(),
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!("{}: {what}", self.name)
    }
}

impl Machine for Auditor {
    type Event = ();

    fn handle_data(&mut self, _now: Instant, assoc: AssocId, ppid: u32, data: Bytes) {
        if !self.up.contains_key(&assoc) {
            self.fail(format!("data on {assoc:?}, which is not up"));
        }
        let Some(Ok(d)) = Message::decode_ppid(ppid, &data) else {
            self.fail("undecodable data".into());
        };
        let Message::Asap(AsapMessage::EndpointKeepAliveAck { pe_id, .. }) = d.message else {
            self.fail("unexpected message".into());
        };
        let last = self.received.entry(assoc).or_default();
        let ok = if pe_id.0 == 0 {
            *last == 0
        } else {
            pe_id.0 == *last + 1
        };
        if !ok {
            let last = *last;
            self.fail(format!("{assoc:?}: message {} after {last}", pe_id.0));
        }
        *last = pe_id.0.max(*last);
    }

    fn handle_association(&mut self, _now: Instant, event: AssociationEvent) {
        match event {
            AssociationEvent::Up { assoc, peer } => {
                if !self.ever_up.insert(assoc) {
                    self.fail(format!("{assoc:?} up twice"));
                }
                self.up.insert(assoc, peer[0]);
                self.by_peer.insert(peer[0], assoc);
            }
            AssociationEvent::Down { assoc, reason } => {
                if !self.down.insert(assoc) {
                    self.fail(format!("{assoc:?} down twice"));
                }
                let was_up = self.up.remove(&assoc);
                match (reason, was_up) {
                    (DownReason::HandshakeFailed, None) if !self.ever_up.contains(&assoc) => {}
                    (DownReason::HandshakeFailed, _) => {
                        self.fail(format!("{assoc:?} failed its handshake after being up"))
                    }
                    (_, None) => self.fail(format!("{assoc:?} down ({reason:?}) but never up")),
                    (_, Some(peer)) => {
                        if self.by_peer.get(&peer) == Some(&assoc) {
                            self.by_peer.remove(&peer);
                        }
                    }
                }
                self.closing.remove(&assoc);
            }
        }
    }

    fn handle_announce(&mut self, _: Instant, _: SocketAddr, _: u32, _: Bytes) {}

    fn handle_timeout(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + Duration::from_millis(self.rng.random_range(50..300));
        let peer = self.peers[self.rng.random_range(0..self.peers.len())];
        match self.by_peer.get(&peer).copied() {
            Some(assoc) if !self.closing.contains(&assoc) => {
                if !self.calm && self.rng.random_bool(0.02) {
                    let abort = self.rng.random_bool(0.5);
                    self.closing.insert(assoc);
                    self.by_peer.remove(&peer);
                    self.outbox.push(Transmit::Close { assoc, abort });
                } else {
                    let seq = self.sent.entry(assoc).or_default();
                    *seq += 1;
                    let m = message(*seq);
                    self.outbox.push(Transmit::Send {
                        to: Destination::Association(assoc),
                        message: m,
                    });
                }
            }
            _ => self.outbox.push(Transmit::Send {
                to: Destination::Addresses(vec![peer]),
                message: message(0),
            }),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        (!self.outbox.is_empty()).then(|| self.outbox.remove(0))
    }

    fn poll_event(&mut self) -> Option<()> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next)
    }
}

fn world(seed: u64, n: usize) -> World<Auditor> {
    let mut b = WorldBuilder::new(seed).with_config(WorldConfig {
        link: LinkConfig {
            delay: MS,
            jitter: 4 * MS,
            loss: 0.02,
        },
        ..WorldConfig::default()
    });
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|i| format!("10.7.0.{}:5000", i + 1).parse().unwrap())
        .collect();
    for (i, &addr) in addrs.iter().enumerate() {
        let peers: Vec<SocketAddr> = addrs.iter().copied().filter(|a| *a != addr).collect();
        b.node(
            NodeSpec::new(format!("n{i}"), 0).addrs(vec![addr]),
            move |s| Auditor::new(s.name, peers.clone(), s.seed, s.now),
        );
    }
    b.build()
}

fn pick(rng: &mut ChaCha8Rng, nodes: &[NodeId]) -> Option<NodeId> {
    (!nodes.is_empty()).then(|| nodes[rng.random_range(0..nodes.len())])
}

/// Runs one seed; returns the world's counters.
fn chaos(seed: u64) -> rserpool_sim::Stats {
    eprintln!("chaos seed {seed}");
    let n = 8;
    let mut w = world(seed, n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc4a05);
    let all: Vec<NodeId> = w.nodes().collect();
    for step in 1..=60 {
        w.run_until(Instant::from_epoch(step * 2 * S));
        let running: Vec<NodeId> = all.iter().copied().filter(|&x| w.is_running(x)).collect();
        let down: Vec<NodeId> = all.iter().copied().filter(|&x| !w.is_running(x)).collect();
        match rng.random_range(0..100) {
            0..15 => {
                if let Some(x) = pick(&mut rng, &running) {
                    let mode = if rng.random_bool(0.5) {
                        CrashMode::Host
                    } else {
                        CrashMode::Process
                    };
                    w.crash(x, mode);
                }
            }
            15..35 => {
                if let Some(x) = pick(&mut rng, &down) {
                    w.restart(x);
                }
            }
            35..45 => {
                let group: Vec<NodeId> = all
                    .iter()
                    .copied()
                    .filter(|_| rng.random_bool(0.4))
                    .collect();
                w.partition(&[&group]);
            }
            45..55 => w.heal(),
            55..65 => {
                let (a, b) = (pick(&mut rng, &all).unwrap(), pick(&mut rng, &all).unwrap());
                if a != b {
                    w.cut(a, b);
                }
            }
            _ => {}
        }
    }
    // The faults end: everything heals, every node runs, nobody closes.
    w.heal();
    for &x in &all {
        if !w.is_running(x) {
            w.restart(x);
        }
        w.act(x, |m, _| m.calm = true);
    }
    w.run_for(60 * S);
    for &x in &all {
        let m = w.machine(x).unwrap();
        assert_eq!(
            m.up.len(),
            n - 1,
            "seed {seed}: {} has associations to every peer: {:?}",
            m.name,
            m.up
        );
        assert_eq!(
            w.associations(x),
            n - 1,
            "seed {seed}: world and {} agree",
            m.name
        );
        for peer in m.up.values() {
            let y = w.node_at(*peer).unwrap();
            let back = w.machine(y).unwrap();
            assert!(
                back.up.values().any(|p| *p == w.addrs(x)[0]),
                "seed {seed}: {} up to {} but not back",
                m.name,
                back.name
            );
        }
    }
    w.stats().clone()
}

#[test]
fn association_guarantees_hold_under_random_faults() {
    let n: u64 = std::env::var("RSERPOOL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut downs = [0; 4];
    let reasons = [
        DownReason::Graceful,
        DownReason::Aborted,
        DownReason::Lost,
        DownReason::HandshakeFailed,
    ];
    for seed in 0..n {
        let stats = chaos(seed);
        for (count, reason) in downs.iter_mut().zip(reasons) {
            *count += stats.down(reason);
        }
    }
    // The faults did reach every way an association can end.
    for (count, reason) in downs.iter().zip(reasons) {
        assert!(*count > 0, "no {reason:?} in {n} seeds");
    }
}

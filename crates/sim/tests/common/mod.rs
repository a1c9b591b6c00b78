//! A small test machine for exercising the world without the real roles:
//! it pings, echoes and announces with real ASAP messages.

#![allow(dead_code)]

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_core::{
    AssocId, AssociationEvent, Destination, DownReason, Instant, Machine, Transmit,
};
use rserpool_wire::{AsapMessage, Message, PeId, PoolHandle, PrId};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// What a probe does.
#[derive(Debug, Clone, Default)]
pub struct ProbeConfig {
    /// Ping these addresses every `interval` (plus up to a tenth of it of
    /// jitter drawn from the probe's own seed), `count` times at most.
    pub ping: Option<Ping>,
    /// Answer pings with pongs.
    pub echo: bool,
    /// Announce (ASAP_SERVER_ANNOUNCE) this often.
    pub announce: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Ping {
    pub to: Vec<SocketAddr>,
    pub interval: Duration,
    pub count: u32,
    /// When the first ping goes out.
    pub first: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// Started with this seed.
    Born {
        seed: u64,
    },
    Up {
        assoc: AssocId,
        peer: SocketAddr,
    },
    Down {
        assoc: AssocId,
        reason: DownReason,
    },
    /// A ping arrived (echo side).
    Pinged {
        assoc: AssocId,
        seq: u32,
    },
    /// A pong arrived, this long after its ping left.
    Pong {
        seq: u32,
        rtt: Duration,
    },
    /// An announce arrived.
    Heard {
        from: SocketAddr,
        id: u32,
    },
}

pub struct Probe {
    cfg: ProbeConfig,
    rng: ChaCha8Rng,
    id: PrId,
    outbox: VecDeque<Transmit>,
    events: VecDeque<ProbeEvent>,
    next_ping: Option<Instant>,
    next_announce: Option<Instant>,
    sent: u32,
    in_flight: BTreeMap<u32, Instant>,
    pub up: BTreeMap<AssocId, SocketAddr>,
}

fn handle() -> PoolHandle {
    PoolHandle::new(Bytes::from_static(b"probe")).unwrap()
}

impl Probe {
    pub fn new(cfg: ProbeConfig, seed: u64, now: Instant) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let id = PrId::new(rng.random_range(1..=u32::MAX)).unwrap();
        let next_ping = cfg.ping.as_ref().map(|p| now + p.first);
        let next_announce = cfg.announce.map(|_| now);
        let mut events = VecDeque::new();
        events.push_back(ProbeEvent::Born { seed });
        Self {
            cfg,
            rng,
            id,
            outbox: VecDeque::new(),
            events,
            next_ping,
            next_announce,
            sent: 0,
            in_flight: BTreeMap::new(),
            up: BTreeMap::new(),
        }
    }

    /// Sends one ping now (to the configured addresses).
    pub fn ping(&mut self, now: Instant) {
        let to = self.cfg.ping.as_ref().expect("a pinging probe").to.clone();
        self.sent += 1;
        self.in_flight.insert(self.sent, now);
        self.outbox.push_back(Transmit::Send {
            to: Destination::Addresses(to),
            message: Message::Asap(AsapMessage::EndpointKeepAliveAck {
                pool_handle: handle(),
                pe_id: PeId(self.sent),
            }),
        });
    }

    pub fn close(&mut self, assoc: AssocId, abort: bool) {
        self.outbox.push_back(Transmit::Close { assoc, abort });
    }

    /// Queues an arbitrary transmit.
    pub fn push(&mut self, t: Transmit) {
        self.outbox.push_back(t);
    }

    pub fn pings_sent(&self) -> u32 {
        self.sent
    }
}

impl Machine for Probe {
    type Event = ProbeEvent;

    fn handle_data(&mut self, now: Instant, assoc: AssocId, ppid: u32, data: Bytes) {
        let Some(Ok(d)) = Message::decode_ppid(ppid, &data) else {
            panic!("probe got undecodable data");
        };
        match d.message {
            Message::Asap(AsapMessage::EndpointKeepAliveAck { pe_id, .. }) => {
                self.events.push_back(ProbeEvent::Pinged {
                    assoc,
                    seq: pe_id.0,
                });
                if self.cfg.echo {
                    self.outbox.push_back(Transmit::Send {
                        to: Destination::Association(assoc),
                        message: Message::Asap(AsapMessage::EndpointUnreachable {
                            pool_handle: handle(),
                            pe_id,
                        }),
                    });
                }
            }
            Message::Asap(AsapMessage::EndpointUnreachable { pe_id, .. }) => {
                let sent = self
                    .in_flight
                    .remove(&pe_id.0)
                    .expect("pong of a ping sent");
                self.events.push_back(ProbeEvent::Pong {
                    seq: pe_id.0,
                    rtt: now.saturating_since(sent),
                });
            }
            other => panic!("probe got {other}"),
        }
    }

    fn handle_association(&mut self, _now: Instant, event: AssociationEvent) {
        match event {
            AssociationEvent::Up { assoc, peer } => {
                self.up.insert(assoc, peer[0]);
                self.events.push_back(ProbeEvent::Up {
                    assoc,
                    peer: peer[0],
                });
            }
            AssociationEvent::Down { assoc, reason } => {
                self.up.remove(&assoc);
                self.events.push_back(ProbeEvent::Down { assoc, reason });
            }
        }
    }

    fn handle_announce(&mut self, _now: Instant, from: SocketAddr, ppid: u32, data: Bytes) {
        let Some(Ok(d)) = Message::decode_ppid(ppid, &data) else {
            panic!("probe got an undecodable announce");
        };
        let Message::Asap(AsapMessage::ServerAnnounce { server_id, .. }) = d.message else {
            panic!("probe got a strange announce");
        };
        self.events.push_back(ProbeEvent::Heard {
            from,
            id: server_id.get(),
        });
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.next_announce.is_some_and(|t| t <= now) {
            self.outbox.push_back(Transmit::Announce {
                message: Message::Asap(AsapMessage::ServerAnnounce {
                    server_id: self.id,
                    transports: vec![],
                }),
            });
            self.next_announce = self.cfg.announce.map(|every| now + every);
        }
        if self.next_ping.is_some_and(|t| t <= now) {
            self.ping(now);
            let p = self.cfg.ping.as_ref().expect("pinging");
            self.next_ping = (self.sent < p.count).then(|| {
                let jitter = self
                    .rng
                    .random_range(0..=p.interval.as_micros() as u64 / 10);
                now + p.interval + Duration::from_micros(jitter)
            });
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    fn poll_event(&mut self) -> Option<ProbeEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_ping, self.next_announce) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// An echo server.
pub fn echo() -> ProbeConfig {
    ProbeConfig {
        echo: true,
        ..Default::default()
    }
}

/// A pinger of `to`, first ping at time zero.
pub fn pinger(to: &[SocketAddr], interval: Duration, count: u32) -> ProbeConfig {
    ProbeConfig {
        ping: Some(Ping {
            to: to.to_vec(),
            interval,
            count,
            first: Duration::ZERO,
        }),
        ..Default::default()
    }
}

/// A factory closure for the world builder.
pub fn probe(cfg: ProbeConfig) -> impl Fn(&rserpool_sim::Spawn<'_>) -> Probe + 'static {
    move |s| Probe::new(cfg.clone(), s.seed, s.now)
}

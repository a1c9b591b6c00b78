//! The pool registrar (ENRP server): the ASAP server side for pool elements
//! and users, ENRP replication with its peers, takeover of failed peers, and
//! the Takeover Suggestion.
//!
//! Work is split by protocol: `asap` handles pool elements and users, `enrp`
//! the peers; `space` adapts the handlespace to what both need.

mod admission;
mod asap;
mod association;
pub mod balance;
mod config;
mod enrp;
mod events;
mod peers;
mod space;

pub use balance::{BalancePolicy, BalancedConfig, DeclineReason, OwnershipView, Withheld};
pub use config::{
    AddrRange, ConfigError, LifeUnit, PeerScope, RateLimit, RegistrarConfig, TakeoverArbitration,
};
pub use events::{
    MessageCounts, Refusal, RefusalCounts, RegistrarEvent, RegistrarStats, RemovalReason,
    WithheldCounts,
};
pub use peers::{Peer, PeerStatus};

use crate::Machine;
use crate::inbound::{self, Inbound};
use crate::io::{AssocId, AssociationEvent, Destination, Transmit};
use crate::outbox::Outbox;
use crate::time::Instant;
use crate::timer::Timers;
use balance::Balancer;
use bytes::Bytes;
use peers::Peers;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_handlespace::TimerKind;
use rserpool_wire::{Message, PeId, PoolHandle, PrId};
use space::Space;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

/// A pool element as the registrar's timers and indices name it.
pub type PeKey = (PoolHandle, PeId);

/// The registrar's own timers (per-PE deadlines live in the handlespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// Send PRESENCE to all peers.
    Heartbeat,
    /// Send ASAP_SERVER_ANNOUNCE.
    Announce,
    /// Stop waiting for a mentor and start alone.
    MentorDiscovery,
    /// Contact configured peers missing from the peer table.
    Rediscover,
    /// Retry the initial download (mentor busy or silent).
    DownloadRetry,
    /// A peer has been silent for MAX-TIME-LAST-HEARD.
    PeerSilent(PrId),
    /// A probed peer did not answer within MAX-TIME-NO-RESPONSE.
    PeerNoResponse(PrId),
    /// Give up a takeover.
    TakeoverExpiry(PrId),
    /// Forget an outgoing handle table session nobody continued.
    TableSession(PrId),
}

/// Where the registrar is in its start-up (RFC 5353 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Waiting for a configured peer to answer, to make it the mentor.
    Discovering,
    /// Downloading the handlespace from the mentor.
    Downloading {
        /// The mentor.
        mentor: PrId,
        /// Download attempts so far (a mentor that is itself starting rejects).
        attempts: u32,
    },
    /// Serving.
    Ready,
}

/// A takeover of a failed peer this registrar initiated (RFC 5353 §3.5).
#[derive(Debug, Clone)]
struct Takeover {
    /// Peers whose INIT_TAKEOVER_ACK is still missing.
    awaiting: BTreeSet<PrId>,
}

/// A handlespace download from a peer: the initial one (from the mentor) or
/// a resynchronisation after a checksum mismatch (own-children-only).
#[derive(Debug, Clone)]
struct Sync {
    own_children_only: bool,
    /// PEs owned by the peer that the download has not confirmed yet.
    unconfirmed: HashSet<PeKey>,
    /// When the last page was asked for (a download whose answers stopped
    /// is abandoned, not left to block every later audit of the peer).
    asked: Instant,
}

/// A pool registrar.
pub struct Registrar {
    cfg: RegistrarConfig,
    id: PrId,
    rng: ChaCha8Rng,
    space: Space,
    peers: Peers,
    balancer: Balancer,
    timers: Timers<Timer>,
    out: Outbox<RegistrarEvent>,
    stats: RegistrarStats,
    phase: Phase,
    /// Every association that is up.
    associations: Associations,
    /// Who may speak ENRP.
    admission: admission::Admission,
    /// Hosts that reported a PE unreachable, until the PE shows life or
    /// leaves (transient, bounded: [`MAX_REPORTED_PES`]).
    reporters: HashMap<rserpool_handlespace::EntryId, Vec<std::net::IpAddr>>,
    /// When a refusal from a source address was last logged.
    refusal_log: HashMap<std::net::IpAddr, Instant>,
    /// Takeovers this registrar initiated, by target.
    takeovers: BTreeMap<PrId, Takeover>,
    /// Outgoing handle table sessions: requesting peer -> (own-children-only, resume after).
    table_sessions: HashMap<PrId, (bool, Option<PeKey>)>,
    /// Incoming handle table downloads, by peer.
    syncs: HashMap<PrId, Sync>,
    /// Second-hand claims (from a table page) that a PE is homed elsewhere
    /// than where this registrar records it, held until the recorded home
    /// confirms or denies it: PE -> (recorded home, the claimed element).
    contested: HashMap<PeKey, (PrId, rserpool_wire::PoolElement)>,
    /// When a contested claim last made this registrar ask a peer.
    contest_resyncs: HashMap<PrId, Instant>,
    /// PEs that recently moved between two peers: entry -> (the home they
    /// left, when this registrar learnt of the move). A claim by the home a
    /// PE just left is most likely an update that was overtaken by the
    /// move (bounded: [`MAX_RECENT_MOVES`]).
    recent_moves: HashMap<rserpool_handlespace::EntryId, (PrId, Instant)>,
}

impl Registrar {
    /// A registrar starting at `now`, its randomness drawn from `seed`.
    pub fn new(cfg: RegistrarConfig, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let id = match cfg.id {
            Some(id) => id,
            None => loop {
                if let Some(id) = PrId::new(rng.random()) {
                    break id;
                }
            },
        };
        let balancer = Balancer::new(cfg.balance.clone(), cfg.move_grace, cfg.move_cooldown, now);
        let admission = admission::Admission::new(&cfg.peer_scope, &cfg.enrp_addresses, &cfg.peers);
        let mut r = Self {
            space: Space::new(
                cfg.max_pool_elements,
                cfg.default_handle_resolution_items,
                cfg.max_handle_resolution_items,
            ),
            cfg,
            id,
            rng,
            peers: Peers::default(),
            balancer,
            timers: Timers::default(),
            out: Outbox::default(),
            stats: RegistrarStats::default(),
            phase: Phase::Discovering,
            associations: Associations::default(),
            admission,
            reporters: HashMap::new(),
            refusal_log: HashMap::new(),
            takeovers: BTreeMap::new(),
            table_sessions: HashMap::new(),
            syncs: HashMap::new(),
            contested: HashMap::new(),
            contest_resyncs: HashMap::new(),
            recent_moves: HashMap::new(),
        };
        r.start(now);
        Ok(r)
    }

    /// The registrar's server ID.
    pub fn id(&self) -> PrId {
        self.id
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Counters since start.
    pub fn stats(&self) -> &RegistrarStats {
        &self.stats
    }

    /// Whether start-up (mentor discovery and download) is complete.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The peers this registrar knows.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter()
    }

    /// Associations up now (PEs, pool users and peers alike).
    pub fn association_count(&self) -> usize {
        self.associations.len()
    }

    /// The handlespace.
    pub fn handlespace(&self) -> &rserpool_handlespace::Handlespace {
        self.space.inner()
    }

    /// PEs owned by `pr` in this registrar's handlespace.
    pub fn owned_count(&self, pr: PrId) -> usize {
        self.space.owned_count(pr)
    }

    /// The checksum over the PEs `pr` owns, as this registrar computes it.
    pub fn checksum(&self, pr: PrId) -> u16 {
        self.space.checksum(pr)
    }

    fn start(&mut self, now: Instant) {
        let jitter = self.jittered(self.cfg.peer_heartbeat_cycle);
        self.timers.set(Timer::Heartbeat, now + jitter);
        if self.cfg.announce || self.cfg.announce_presence {
            self.timers.set(Timer::Announce, now);
        }
        if self.cfg.peers.is_empty() {
            self.become_ready(now);
        } else {
            for addrs in self.cfg.peers.clone() {
                self.send_presence(Destination::Addresses(addrs), None, true);
            }
            self.timers.set(
                Timer::MentorDiscovery,
                now + self.cfg.mentor_discovery_timeout,
            );
            self.timers
                .set(Timer::Rediscover, now + self.cfg.peer_rediscovery_interval);
        }
    }

    fn become_ready(&mut self, _now: Instant) {
        if self.phase != Phase::Ready {
            self.phase = Phase::Ready;
            self.timers.cancel(&Timer::MentorDiscovery);
            self.timers.cancel(&Timer::DownloadRetry);
            self.out.event(RegistrarEvent::Ready);
        }
    }

    /// `d` scaled uniformly by 0.5..1.5, so that periodic work spreads out.
    fn jittered(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.rng.random_range(0.5..1.5))
    }

    fn send(&mut self, t: Transmit) {
        if let Transmit::Send { message, .. } = &t {
            self.stats.count_sent(message);
        }
        self.out.send(t);
    }

    /// The ownership picture for balance decisions: this registrar and the
    /// peers that are alive, reachable over an association that is up, have
    /// been so for their settle time, and are not being taken over.
    fn ownership_view(&self, now: Instant) -> OwnershipView {
        OwnershipView {
            own: self.id,
            own_count: self.space.owned_count(self.id),
            peers: self
                .peers
                .iter()
                .filter(|p| {
                    p.status == PeerStatus::Alive
                        && p.assoc.is_some_and(|a| self.associations.contains_key(&a))
                        && p.settled(now)
                        && !self.takeovers.contains_key(&p.id)
                })
                .map(|p| (p.id, self.space.owned_count(p.id)))
                .collect(),
        }
    }

    fn damping(&self) -> peers::Damping {
        peers::Damping {
            base: self.cfg.peer_settle_time,
            max: self.cfg.peer_settle_time_max,
            stable: self.cfg.peer_stable_time,
        }
    }
}

impl Machine for Registrar {
    type Event = RegistrarEvent;

    fn handle_data(&mut self, now: Instant, assoc: AssocId, ppid: u32, data: Bytes) {
        match inbound::decode(ppid, &data) {
            Inbound::Message(message, report) => {
                self.stats.count_received(&message);
                if let Some(causes) = report {
                    if let Some(reply) = inbound::error_reply(ppid, Some(self.id), causes) {
                        self.send(Transmit::Send {
                            to: Destination::Association(assoc),
                            message: reply,
                        });
                    }
                }
                match message {
                    Message::Asap(m) => self.handle_asap(now, assoc, m),
                    Message::Enrp(m) => {
                        if self.admit_enrp(now, assoc, m.servers().sender) {
                            self.handle_enrp(now, Some(assoc), m);
                        }
                    }
                }
            }
            Inbound::Invalid { error, reply } => {
                self.stats.invalid_messages += 1;
                tracing::debug!(registrar = %self.id, ?assoc, ppid, %error, "undecodable message");
                self.out.event(RegistrarEvent::BadMessage {
                    assoc: Some(assoc),
                    error: error.to_string(),
                });
                let answer = if ppid == rserpool_wire::PPID_ASAP {
                    // PEs and PUs are owed an answer to every request.
                    inbound::asap_refusal(&data, reply).map(Message::Asap)
                } else {
                    reply.and_then(|c| inbound::error_reply(ppid, Some(self.id), vec![c]))
                };
                if let Some(m) = answer {
                    self.send(Transmit::Send {
                        to: Destination::Association(assoc),
                        message: m,
                    });
                }
            }
            Inbound::ForeignPpid(p) => {
                self.stats.invalid_messages += 1;
                tracing::debug!(registrar = %self.id, ?assoc, ppid = p, "message with a foreign PPID");
            }
        }
    }

    fn handle_association(&mut self, now: Instant, event: AssociationEvent) {
        match event {
            AssociationEvent::Up { assoc, peer } => {
                let a = association::Association::new(
                    peer,
                    now,
                    self.cfg.resolution_limit,
                    self.cfg.unreachable_limit,
                );
                self.associations.insert(assoc, a);
            }
            AssociationEvent::Down { assoc, reason } => {
                self.associations.remove(&assoc);
                let damping = self.damping();
                self.peers.association_down(now, assoc, damping);
                self.pe_association_down(now, assoc, reason);
            }
        }
    }

    fn handle_announce(&mut self, now: Instant, from: SocketAddr, ppid: u32, data: Bytes) {
        // Registrars listen to announces only for ENRP presences of peers
        // (the reference implementation's multicast peer discovery).
        match inbound::decode(ppid, &data) {
            Inbound::Message(message, _) => {
                self.stats.count_received(&message);
                if let Message::Enrp(m @ rserpool_wire::EnrpMessage::Presence { .. }) = message {
                    self.handle_announced_presence(now, from, m);
                }
            }
            _ => self.stats.invalid_messages += 1,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        // The registrar's timers and the PEs' deadlines, earliest first.
        loop {
            let pe_first = match (self.timers.next(), self.space.next_deadline()) {
                (Some(a), Some(b)) => b < a,
                (None, Some(_)) => true,
                _ => false,
            };
            if pe_first {
                match self.space.pop_due(now) {
                    Some((entry, kind)) => self.on_deadline(now, entry, kind),
                    None => break,
                }
            } else {
                match self.timers.pop_due(now) {
                    Some(timer) => self.on_timer(now, timer),
                    None => break,
                }
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.out.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.space.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Registrar {
    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Heartbeat => {
                self.heartbeat(now);
                let next = self.jittered(self.cfg.peer_heartbeat_cycle);
                self.timers.set(Timer::Heartbeat, now + next);
            }
            Timer::Announce => {
                if self.cfg.announce {
                    self.server_announce();
                }
                if self.cfg.announce_presence {
                    self.announce_presence();
                }
                let n = self.peers.active().count() as u32 + 1;
                self.timers
                    .set(Timer::Announce, now + self.cfg.server_announce_cycle * n);
            }
            Timer::MentorDiscovery => {
                if self.phase == Phase::Discovering {
                    tracing::info!(registrar = %self.id, "no mentor answered: starting alone");
                    self.become_ready(now);
                }
            }
            Timer::DownloadRetry => self.retry_download(now),
            Timer::Rediscover => {
                self.rediscover();
                self.timers
                    .set(Timer::Rediscover, now + self.cfg.peer_rediscovery_interval);
            }
            Timer::PeerSilent(id) => self.peer_silent(now, id),
            Timer::PeerNoResponse(id) => self.peer_no_response(now, id),
            Timer::TakeoverExpiry(id) => self.takeover_expired(now, id),
            Timer::TableSession(id) => {
                self.table_sessions.remove(&id);
            }
        }
    }

    fn on_deadline(&mut self, now: Instant, entry: rserpool_handlespace::EntryId, kind: TimerKind) {
        match kind {
            TimerKind::Lifetime => self.lifetime_expired(now, entry),
            TimerKind::KeepAlive => self.keep_alive_due(now, entry),
        }
    }
}

/// Every association that is up (per-association state; a PE's association
/// is recorded with the PE in the handlespace).
type Associations = HashMap<AssocId, association::Association, foldhash::fast::RandomState>;

/// Most PEs with unreachability reports pending; beyond, the oldest
/// evidence is forgotten (reports start over).
const MAX_REPORTED_PES: usize = 65_536;

/// Most contested ownership claims held at once (beyond, the recorded home
/// simply stays until the next audit).
const MAX_CONTESTED: usize = 65_536;
/// Most moves between peers remembered; beyond, the oldest are forgotten.
const MAX_RECENT_MOVES: usize = 65_536;

/// Refusals from one source address are logged at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Registrar {
    /// Counts a refusal and logs it, once per source address per
    /// [`REFUSAL_LOG_INTERVAL`].
    fn refuse(&mut self, now: Instant, assoc: AssocId, what: Refusal) {
        self.stats.refused.count(what);
        let source = self.associations.get(&assoc).and_then(|a| a.peer.first());
        let ip = source.map(|s| s.ip());
        let due = ip.is_none_or(|ip| {
            self.refusal_log
                .get(&ip)
                .is_none_or(|t| now.saturating_since(*t) >= REFUSAL_LOG_INTERVAL)
        });
        if due {
            if let Some(ip) = ip {
                if self.refusal_log.len() >= 1024 {
                    self.refusal_log.clear();
                }
                self.refusal_log.insert(ip, now);
            }
            tracing::warn!(
                registrar = %self.id,
                source = ?source,
                "{} (further refusals from this source are counted, logged again in {}s)",
                what.describe(),
                REFUSAL_LOG_INTERVAL.as_secs()
            );
        }
    }

    /// Whether `assoc` may act for the PE of `entry`: it is the association
    /// the PE registered over, or, once that one is gone, one from an
    /// address the PE registered from (a PE that reconnected, or one taken
    /// over by this registrar).
    fn speaks_for(&self, assoc: AssocId, entry: rserpool_handlespace::EntryId) -> bool {
        // Bound means bound to an association that is up (see
        // `pe_association_down`).
        if let Some(a) = self.space.association(entry) {
            return AssocId(a) == assoc;
        }
        let (Some(a), Some(e)) = (self.associations.get(&assoc), self.space.entry(entry)) else {
            return false;
        };
        e.element()
            .asap_transport
            .as_ref()
            .is_some_and(|t| a.peer.iter().any(|p| t.addresses.contains(&p.ip())))
    }
}

#[cfg(test)]
mod tests;

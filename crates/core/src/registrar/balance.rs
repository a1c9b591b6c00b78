//! Takeover Suggestion policy: which peer, if any, should take over a PE
//! this registrar owns (sending side), and whether to honour a suggestion
//! received from a peer (receiving side).
//!
//! The draft (draft-dreibholz-rserpool-enrp-takeover) only defines the T flag
//! and that a receiver "with the resources" is recommended to take the PE
//! over; how a sender chooses is left to the implementation. Three policies:
//!
//! * `Off`: never suggest.
//! * `Xor`: the reference implementation's rule (the peer whose ID XOR the PE
//!   ID is largest, if larger than the own ID XOR the PE ID), kept for
//!   comparison and interworking. Its steady state depends only on IDs and is
//!   uneven for three or more registrars (`docs/spec/TAKEOVER-SUGGESTION.md` §7).
//! * `Balanced` (default): each live registrar's fair share of the owned PEs
//!   follows its configured capacity. A registrar above its share (beyond a
//!   tolerance: hysteresis) hands over only its excess, minus suggestions
//!   still in flight, to peers below their share, choosing among them by
//!   deficit-weighted rendezvous hashing so that several overloaded senders
//!   spread their PEs over the under-loaded peers instead of all picking the
//!   same one; a token bucket limits the rate. Receivers admit a PE only while
//!   their own count (plus accepted moves in flight) is below their share, so
//!   a transient disagreement between views cannot pile PEs onto one peer.

use crate::time::Instant;
use rserpool_handlespace::EntryId;
use rserpool_wire::{PeId, PrId};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The balancer's maps: keyed by handlespace entries, which the registrar
/// settles when a PE leaves, so a reused entry never inherits a move.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which rule chooses takeover suggestions.
#[derive(Debug, Clone, PartialEq)]
pub enum BalancePolicy {
    /// Never suggest.
    Off,
    /// The reference implementation's XOR rule.
    Xor,
    /// Load-aware balancing by capacity with hysteresis and a rate limit.
    Balanced(BalancedConfig),
}

impl Default for BalancePolicy {
    fn default() -> Self {
        Self::Balanced(BalancedConfig::default())
    }
}

/// Parameters of the `Balanced` policy.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancedConfig {
    /// No suggestion while the own count is within this fraction above the fair share.
    pub tolerance: f64,
    /// Sustained suggestions per second a registrar may send.
    pub rate: f64,
    /// Suggestions that may be sent in a burst.
    pub burst: f64,
    /// Capacity of each registrar; registrars not listed have `default_capacity`.
    pub capacities: BTreeMap<PrId, u32>,
    /// Capacity of registrars not listed in `capacities`.
    pub default_capacity: u32,
}

impl Default for BalancedConfig {
    fn default() -> Self {
        Self {
            tolerance: 0.05,
            rate: 50.0,
            burst: 100.0,
            capacities: BTreeMap::new(),
            default_capacity: 1,
        }
    }
}

impl BalancedConfig {
    fn capacity(&self, pr: PrId) -> f64 {
        f64::from(*self.capacities.get(&pr).unwrap_or(&self.default_capacity))
    }
}

/// The ownership picture a decision is taken on: who is alive and how many
/// PEs each owns in the local handlespace.
#[derive(Debug, Clone)]
pub struct OwnershipView {
    /// This registrar.
    pub own: PrId,
    /// PEs this registrar owns.
    pub own_count: usize,
    /// Live peers (not suspected, not being taken over) with the PEs each owns.
    pub peers: Vec<(PrId, usize)>,
}

/// Why a received suggestion was not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeclineReason {
    /// This registrar does not accept suggestions (configuration).
    Disabled,
    /// The PE is not in the handlespace.
    UnknownPe,
    /// The sender is not the PE's home registrar.
    NotHome,
    /// This registrar already is the PE's home.
    AlreadyHome,
    /// Taking the PE would exceed this registrar's capacity or fair share.
    NoResources,
    /// This registrar is still initialising or synchronising.
    NotReady,
}

/// Why no suggestion was made for a PE (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Withheld {
    /// The own share is within tolerance of the fair share.
    Balanced,
    /// No peer is below its share.
    NoTarget,
    /// The rate limit is exhausted.
    RateLimited,
    /// A suggestion for this PE is already in flight.
    InFlight,
    /// The PE moved here by a suggestion a moment ago.
    Cooldown,
}

/// State of the suggestion logic of one registrar.
///
/// Only moves in flight are kept (bounded by the rate limit and the
/// admission rule), keyed by the PE's handlespace entry.
#[derive(Debug)]
pub struct Balancer {
    policy: BalancePolicy,
    grace: Duration,
    tokens: f64,
    last_refill: Instant,
    /// Suggestions sent and not yet resolved: PE -> (target, expiry).
    outgoing: Map<EntryId, (PrId, Instant)>,
    /// Suggestions sent and not yet resolved, per target.
    outgoing_to: BTreeMap<PrId, usize>,
    /// Suggestions accepted and not yet completed by a registration: PE -> expiry.
    incoming: Map<EntryId, Instant>,
    /// PEs that arrived by an accepted suggestion: PE -> end of its cooldown.
    cooling: Map<EntryId, Instant>,
    cooldown: Duration,
    /// No move expires before this.
    next_expiry: Instant,
}

impl Balancer {
    /// A balancer; a move not completed within `grace` is forgotten, and a
    /// PE that arrived by a suggestion is not suggested onwards for
    /// `cooldown`.
    pub fn new(policy: BalancePolicy, grace: Duration, cooldown: Duration, now: Instant) -> Self {
        let tokens = match &policy {
            BalancePolicy::Balanced(c) => c.burst,
            _ => 0.0,
        };
        Self {
            policy,
            grace,
            tokens,
            last_refill: now,
            outgoing: Map::default(),
            outgoing_to: BTreeMap::new(),
            incoming: Map::default(),
            cooling: Map::default(),
            cooldown,
            next_expiry: Instant::ZERO,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BalancePolicy {
        &self.policy
    }

    /// Forgets moves whose grace period ended; a no-op until the earliest
    /// one is due.
    fn expire(&mut self, now: Instant) {
        if now < self.next_expiry {
            return;
        }
        let mut next = None::<Instant>;
        let mut earliest = |until: Instant| {
            next = Some(next.map_or(until, |n| n.min(until)));
        };
        let to = &mut self.outgoing_to;
        self.outgoing.retain(|_, (target, until)| {
            let keep = *until > now;
            if keep {
                earliest(*until);
            } else {
                release(to, *target);
            }
            keep
        });
        for map in [&mut self.incoming, &mut self.cooling] {
            map.retain(|_, until| {
                let keep = *until > now;
                if keep {
                    earliest(*until);
                }
                keep
            });
        }
        self.next_expiry = next.unwrap_or(now + self.grace);
    }

    /// Whether a suggestion for this PE was sent and is still within its grace period.
    pub fn move_pending(&self, now: Instant, pe: EntryId) -> bool {
        self.outgoing
            .get(&pe)
            .is_some_and(|(_, until)| *until > now)
    }

    /// Forgets a PE's pending moves (it re-registered or moved away).
    pub fn settle(&mut self, pe: EntryId) {
        if let Some((target, _)) = self.outgoing.remove(&pe) {
            release(&mut self.outgoing_to, target);
        }
        self.incoming.remove(&pe);
    }

    /// Forgets everything about a PE that left the handlespace (its entry
    /// may be reused).
    pub fn forget(&mut self, pe: EntryId) {
        self.settle(pe);
        self.cooling.remove(&pe);
    }

    /// A PE registered here from another home: if that was a suggested move
    /// this registrar accepted, the PE cools down before it may be suggested
    /// onwards (two registrars with different views must not bounce it).
    pub fn arrived(&mut self, now: Instant, pe: EntryId) {
        let suggested = self.incoming.remove(&pe).is_some();
        if let Some((target, _)) = self.outgoing.remove(&pe) {
            release(&mut self.outgoing_to, target);
        }
        if suggested && !self.cooldown.is_zero() {
            let until = now + self.cooldown;
            self.cooling.insert(pe, until);
            self.next_expiry = self.next_expiry.min(until);
        }
    }

    /// Accepted moves whose registration has not arrived yet.
    pub fn incoming_pending(&self) -> usize {
        self.incoming.len()
    }

    /// Sending side: the peer to suggest PE `pe` (entry `entry`) to, right
    /// after announcing it.
    pub fn suggest(
        &mut self,
        now: Instant,
        entry: EntryId,
        pe: PeId,
        view: &OwnershipView,
    ) -> Result<PrId, Withheld> {
        self.expire(now);
        match &self.policy {
            BalancePolicy::Off => Err(Withheld::Balanced),
            BalancePolicy::Xor => xor_target(view.own, pe, view.peers.iter().map(|(p, _)| *p))
                .ok_or(Withheld::NoTarget),
            BalancePolicy::Balanced(_) => self.suggest_balanced(now, entry, pe, view),
        }
    }

    fn suggest_balanced(
        &mut self,
        now: Instant,
        entry: EntryId,
        pe: PeId,
        view: &OwnershipView,
    ) -> Result<PrId, Withheld> {
        let BalancePolicy::Balanced(cfg) = &self.policy else {
            return Err(Withheld::Balanced);
        };
        if self.outgoing.contains_key(&entry) {
            return Err(Withheld::InFlight);
        }
        if self.cooling.get(&entry).is_some_and(|until| *until > now) {
            return Err(Withheld::Cooldown);
        }
        let shares = FairShares::new(cfg, view);
        let own_fair = shares.fair(view.own);
        let in_flight = self.outgoing.len() as f64;
        let own = view.own_count as f64;
        // Hysteresis: leave a registrar alone while it is close to its share.
        if own <= own_fair * (1.0 + cfg.tolerance) || own - in_flight - own_fair < 1.0 {
            return Err(Withheld::Balanced);
        }
        let target = view
            .peers
            .iter()
            .filter_map(|&(peer, count)| {
                let pending = self.outgoing_to.get(&peer).copied().unwrap_or(0);
                let deficit = shares.fair(peer) - (count + pending) as f64;
                (deficit >= 1.0).then_some((peer, deficit))
            })
            .min_by(|a, b| {
                let sa = rendezvous_score(a.0, pe, a.1);
                let sb = rendezvous_score(b.0, pe, b.1);
                sa.total_cmp(&sb).then(a.0.cmp(&b.0))
            })
            .map(|(peer, _)| peer)
            .ok_or(Withheld::NoTarget)?;
        let dt = now.saturating_since(self.last_refill).as_secs_f64();
        self.tokens = (self.tokens + dt * cfg.rate).min(cfg.burst);
        self.last_refill = now;
        if self.tokens < 1.0 {
            return Err(Withheld::RateLimited);
        }
        self.tokens -= 1.0;
        let until = now + self.grace;
        self.outgoing.insert(entry, (target, until));
        *self.outgoing_to.entry(target).or_default() += 1;
        self.next_expiry = self.next_expiry.min(until);
        Ok(target)
    }

    /// Receiving side: whether to take over a PE a peer suggested, by capacity.
    ///
    /// `max_owned` is the configured hard limit; for the `Balanced` policy the
    /// own fair share (with its tolerance) is a further limit. The caller has
    /// already checked that the PE is known and homed at the sender.
    pub fn admit(
        &mut self,
        now: Instant,
        entry: EntryId,
        view: &OwnershipView,
        max_owned: Option<usize>,
    ) -> Result<(), DeclineReason> {
        self.expire(now);
        if self.incoming.contains_key(&entry) {
            // A repeated suggestion for a move already under way (the reference
            // implementation sends the update twice): honour it again.
            return Ok(());
        }
        let projected = view.own_count + self.incoming.len();
        if max_owned.is_some_and(|max| projected >= max) {
            return Err(DeclineReason::NoResources);
        }
        if let BalancePolicy::Balanced(cfg) = &self.policy {
            let fair = FairShares::new(cfg, view).fair(view.own);
            if projected as f64 + 1.0 > (fair * (1.0 + cfg.tolerance)).ceil() {
                return Err(DeclineReason::NoResources);
            }
        }
        let until = now + self.grace;
        self.incoming.insert(entry, until);
        self.next_expiry = self.next_expiry.min(until);
        Ok(())
    }
}

/// One suggestion to `target` fewer in flight.
fn release(to: &mut BTreeMap<PrId, usize>, target: PrId) {
    if let Some(n) = to.get_mut(&target) {
        *n -= 1;
        if *n == 0 {
            to.remove(&target);
        }
    }
}

/// Fair shares of the owned PEs among the live registrars, by capacity.
struct FairShares<'a> {
    cfg: &'a BalancedConfig,
    per_capacity: f64,
}

impl<'a> FairShares<'a> {
    fn new(cfg: &'a BalancedConfig, view: &OwnershipView) -> Self {
        let total: usize = view.own_count + view.peers.iter().map(|(_, c)| c).sum::<usize>();
        let capacity: f64 = cfg.capacity(view.own)
            + view
                .peers
                .iter()
                .map(|(p, _)| cfg.capacity(*p))
                .sum::<f64>();
        Self {
            cfg,
            per_capacity: if capacity > 0.0 {
                total as f64 / capacity
            } else {
                0.0
            },
        }
    }

    fn fair(&self, pr: PrId) -> f64 {
        self.cfg.capacity(pr) * self.per_capacity
    }
}

/// The reference implementation's rule: the peer maximising `peer XOR pe`,
/// if it beats `own XOR pe`.
pub fn xor_target(own: PrId, pe: PeId, peers: impl IntoIterator<Item = PrId>) -> Option<PrId> {
    let mut best = own.get() ^ pe.0;
    let mut target = None;
    for p in peers {
        let m = p.get() ^ pe.0;
        if m > best {
            best = m;
            target = Some(p);
        }
    }
    target
}

/// Weighted rendezvous score (smaller wins): `-ln(u) / weight` with `u`
/// uniform in (0, 1) from a hash of (peer, PE), so that each PE has a stable
/// preferred peer and peers win in proportion to their weight.
fn rendezvous_score(peer: PrId, pe: PeId, weight: f64) -> f64 {
    let h = splitmix64((u64::from(peer.get()) << 32) | u64::from(pe.0));
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -u.ln() / weight
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(v: u32) -> PrId {
        PrId::new(v).unwrap()
    }

    fn e(i: u32) -> EntryId {
        // Entry IDs are only made by a handlespace: register PEs to get them.
        entries()[i as usize]
    }

    /// Entries 0..1000 of a handlespace, once.
    fn entries() -> &'static [EntryId] {
        static ENTRIES: std::sync::OnceLock<Vec<EntryId>> = std::sync::OnceLock::new();
        ENTRIES.get_or_init(|| {
            let mut hs = rserpool_handlespace::Handlespace::default();
            let pool = rserpool_wire::PoolHandle::try_from("pool").unwrap();
            (0..1000u32)
                .map(|i| {
                    let pe = rserpool_wire::PoolElement {
                        id: PeId(i),
                        home_registrar: None,
                        registration_life: rserpool_wire::RegistrationLife(1),
                        user_transport: rserpool_wire::UserTransport::Opaque(
                            bytes::Bytes::from_static(b"x"),
                        ),
                        policy: rserpool_wire::Policy::RoundRobin,
                        asap_transport: None,
                    };
                    hs.register(&pool, pe, 0).unwrap().entry
                })
                .collect()
        })
    }

    fn t(s: u64) -> Instant {
        Instant::from_epoch(Duration::from_secs(s))
    }

    #[test]
    fn xor_matches_reference_rule() {
        // T- golden vectors from the reference pseudo-code
        // (TAKEOVER-SUGGESTION.md §4): own 0x10, PE 0x0F.
        assert_eq!(
            xor_target(pr(0x10), PeId(0x0F), [pr(0x20), pr(0x01)]),
            Some(pr(0x20))
        );
        assert_eq!(xor_target(pr(0xF0), PeId(0x0F), [pr(0x20), pr(0x01)]), None);
        assert_eq!(
            xor_target(pr(1), PeId(0xFFFF_FFFF), [pr(2), pr(3)]),
            None,
            "own 1 ^ pe beats 2 ^ pe and 3 ^ pe"
        );
    }

    #[test]
    fn balanced_hands_over_only_the_excess() {
        let mut b = Balancer::new(
            BalancePolicy::default(),
            Duration::from_secs(30),
            Duration::ZERO,
            t(0),
        );
        let mut view = OwnershipView {
            own: pr(1),
            own_count: 300,
            peers: vec![(pr(2), 300), (pr(3), 0)],
        };
        // Fair share is 200 each: 100 excess, and pr(3) is the only one short.
        let mut sent = 0;
        for i in 0..300u32 {
            match b.suggest(t(1000), e(i), PeId(i), &view) {
                Ok(target) => {
                    assert_eq!(target, pr(3));
                    sent += 1;
                }
                Err(w) => assert_eq!(w, Withheld::Balanced),
            }
        }
        assert_eq!(sent, 100);
        // Once those moved, nothing more is suggested (no oscillation).
        view.own_count = 200;
        view.peers[1].1 = 100;
        b.outgoing.clear();
        b.outgoing_to.clear();
        assert_eq!(
            b.suggest(t(2000), e(999), PeId(9999), &view),
            Err(Withheld::Balanced)
        );
    }

    #[test]
    fn balanced_spreads_over_several_short_peers_by_deficit() {
        let mut b = Balancer::new(
            BalancePolicy::Balanced(BalancedConfig {
                rate: 1e9,
                burst: 1e9,
                ..BalancedConfig::default()
            }),
            Duration::from_secs(30),
            Duration::ZERO,
            t(0),
        );
        let view = OwnershipView {
            own: pr(1),
            own_count: 1000,
            peers: vec![(pr(2), 0), (pr(3), 0), (pr(4), 0), (pr(5), 0)],
        };
        let mut per = BTreeMap::new();
        for i in 0..1000u32 {
            if let Ok(p) = b.suggest(t(1), e(i), PeId(i.wrapping_mul(2_654_435_761)), &view) {
                *per.entry(p).or_insert(0) += 1;
            }
        }
        assert_eq!(per.values().sum::<i32>(), 800);
        for (&p, &n) in &per {
            assert_eq!(n, 200, "{p}");
        }
    }

    #[test]
    fn rate_limit_and_hysteresis() {
        let cfg = BalancedConfig {
            rate: 1.0,
            burst: 2.0,
            ..BalancedConfig::default()
        };
        let mut b = Balancer::new(
            BalancePolicy::Balanced(cfg),
            Duration::from_secs(30),
            Duration::ZERO,
            t(0),
        );
        let view = OwnershipView {
            own: pr(1),
            own_count: 100,
            peers: vec![(pr(2), 0)],
        };
        assert!(b.suggest(t(0), e(1), PeId(1), &view).is_ok());
        assert!(b.suggest(t(0), e(2), PeId(2), &view).is_ok());
        assert_eq!(
            b.suggest(t(0), e(3), PeId(3), &view),
            Err(Withheld::RateLimited)
        );
        assert!(b.suggest(t(1), e(3), PeId(3), &view).is_ok());
        assert_eq!(
            b.suggest(t(1), e(3), PeId(3), &view),
            Err(Withheld::InFlight)
        );
        let near = OwnershipView {
            own: pr(1),
            own_count: 52,
            peers: vec![(pr(2), 48)],
        };
        let mut b = Balancer::new(
            BalancePolicy::default(),
            Duration::from_secs(30),
            Duration::ZERO,
            t(0),
        );
        assert_eq!(
            b.suggest(t(0), e(1), PeId(1), &near),
            Err(Withheld::Balanced)
        );
    }

    #[test]
    fn admission_caps_at_fair_share_and_capacity() {
        let mut b = Balancer::new(
            BalancePolicy::default(),
            Duration::from_secs(30),
            Duration::ZERO,
            t(0),
        );
        let view = OwnershipView {
            own: pr(3),
            own_count: 0,
            peers: vec![(pr(1), 150), (pr(2), 150)],
        };
        let mut admitted = 0;
        for i in 0..300 {
            if b.admit(t(0), e(i), &view, None).is_ok() {
                admitted += 1;
            }
        }
        // Fair share 100, 5 % tolerance.
        assert_eq!(admitted, 105);
        let mut b = Balancer::new(
            BalancePolicy::Off,
            Duration::from_secs(30),
            Duration::ZERO,
            t(0),
        );
        assert!(b.admit(t(0), e(1), &view, Some(1)).is_ok());
        assert_eq!(
            b.admit(t(0), e(2), &view, Some(1)),
            Err(DeclineReason::NoResources)
        );
        // Pending moves expire after the grace period.
        assert!(b.admit(t(31), e(2), &view, Some(1)).is_ok());
    }
}

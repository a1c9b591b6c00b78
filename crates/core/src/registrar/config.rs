//! Registrar configuration: every timer and constant of RFC 5352/5353 with
//! the RFC's default, and the project's own knobs.

pub use super::admission::{AddrRange, PeerScope};
use super::balance::BalancePolicy;
use rserpool_wire::PrId;
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::life::LifeUnit;

/// Who wins when two registrars try to take over the same failed peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TakeoverArbitration {
    /// RFC 5353 §3.5.2: a registrar whose ID is smaller than the other
    /// initiator's aborts, so the highest ID wins.
    #[default]
    HighestIdWins,
    /// The reference implementation aborts when the other ID is smaller, so
    /// the lowest ID wins. Mixing the two rules in one scope can leave a
    /// failed peer untaken (both abort) or deadlock (neither acknowledges);
    /// choose the reference rule only in a scope with reference registrars.
    LowestIdWins,
}

/// Everything a [`super::Registrar`] is configured with.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// The registrar's ID; chosen at random (non-zero) when `None`.
    pub id: Option<PrId>,
    /// Where pool elements and users reach the ASAP side (for SERVER_ANNOUNCE).
    pub asap_addresses: Vec<SocketAddr>,
    /// Where peers reach the ENRP side (for Server Information).
    pub enrp_addresses: Vec<SocketAddr>,
    /// Statically configured peers (each one SCTP endpoint's addresses); the
    /// first to answer becomes the mentor (RFC 5353 §3.2).
    pub peers: Vec<Vec<SocketAddr>>,
    /// How long to wait for a mentor before starting alone.
    pub mentor_discovery_timeout: Duration,
    /// How often configured peers that are not in the peer table (never
    /// heard, or dropped after a takeover) are sent a PRESENCE again, so that
    /// a healed partition or a restarted peer is found.
    pub peer_rediscovery_interval: Duration,
    /// Unit of Registration Life.
    pub life_unit: LifeUnit,
    /// PEs returned by a handle resolution without the HR option (reference default 3).
    pub default_handle_resolution_items: u32,
    /// Most PEs returned by one handle resolution (reference cap 128).
    pub max_handle_resolution_items: u32,
    /// Interval between ENDPOINT_KEEP_ALIVEs to an owned PE (±50 % jitter, RFC 5352 §3.5).
    pub keep_alive_interval: Duration,
    /// How long to wait for ENDPOINT_KEEP_ALIVE_ACK before removing the PE.
    pub keep_alive_timeout: Duration,
    /// ENDPOINT_UNREACHABLE reports after which a PE is removed (MAX-BAD-PE-REPORT).
    pub max_bad_pe_reports: u32,
    /// Put the PE Identifier into ENDPOINT_KEEP_ALIVE (reference implementation
    /// extension; an RFC-strict PE may reject it).
    pub keep_alive_with_pe_id: bool,
    /// Send ASAP_SERVER_ANNOUNCE on the announce channel.
    pub announce: bool,
    /// Send ENRP_PRESENCE on the announce channel too, at start and then
    /// with each server announce, so that registrars of one scope find
    /// each other by multicast (RFC 5353 §3.1; admitted by the peer scope).
    pub announce_presence: bool,
    /// T6-Serverannounce: announce spacing (sent every (N+1)·T6).
    pub server_announce_cycle: Duration,
    /// PEER-HEARTBEAT-CYCLE: PRESENCE period.
    pub peer_heartbeat_cycle: Duration,
    /// MAX-TIME-LAST-HEARD: silence before a peer is probed.
    pub max_time_last_heard: Duration,
    /// MAX-TIME-NO-RESPONSE: wait for a probe's or request's answer.
    pub max_time_no_response: Duration,
    /// Give up a takeover whose acknowledgements did not all arrive (not in the RFC).
    pub takeover_expiry: Duration,
    /// Rule for competing takeovers.
    pub takeover_arbitration: TakeoverArbitration,
    /// Most PEs per ENRP_HANDLE_TABLE_RESPONSE page (reference default 128).
    pub max_elements_per_table_response: usize,
    /// Which peer, if any, to suggest an owned PE to.
    pub balance: BalancePolicy,
    /// Honour received takeover suggestions (when resources allow).
    pub accept_suggestions: bool,
    /// Most PEs this registrar will own through suggestions (`None`: no hard limit).
    pub max_owned: Option<usize>,
    /// How long a suggested or accepted move may take before it is forgotten;
    /// also how long an owned PE whose association went down is kept while it
    /// is probed.
    pub move_grace: Duration,
    /// Most PEs in the handlespace (registrations beyond get Lack of Resources).
    pub max_pool_elements: usize,
    /// How long a peer must be reachable before it counts for balancing
    /// (suggestions to it, and its fair share).
    pub peer_settle_time: Duration,
    /// The settle time of a flapping peer doubles at each flap up to this.
    pub peer_settle_time_max: Duration,
    /// A peer that drops off after being reachable for less than this is
    /// flapping.
    pub peer_stable_time: Duration,
    /// A PE that moved here by an accepted suggestion is not suggested
    /// onwards for this long.
    pub move_cooldown: Duration,
    /// Which registrars may speak ENRP to this one (RFC 5355 trust model).
    pub peer_scope: PeerScope,
    /// Most registrars in the peer table; ENRP from further server IDs is
    /// refused.
    pub max_peers: usize,
    /// Most PEs registered over one association (further registrations get
    /// Lack of Resources).
    pub max_pes_per_association: usize,
    /// Handle resolutions one association may send (RFC 5352 §3.3 asks for
    /// a limit; beyond it requests are dropped and counted).
    pub resolution_limit: RateLimit,
    /// ENDPOINT_UNREACHABLE reports one association may send.
    pub unreachable_limit: RateLimit,
}

/// A token bucket: `rate` per second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub rate: f64,
    /// Requests allowed at once.
    pub burst: f64,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            id: None,
            asap_addresses: Vec::new(),
            enrp_addresses: Vec::new(),
            peers: Vec::new(),
            mentor_discovery_timeout: Duration::from_secs(5),
            peer_rediscovery_interval: Duration::from_secs(5),
            life_unit: LifeUnit::Milliseconds,
            default_handle_resolution_items: 3,
            max_handle_resolution_items: 128,
            keep_alive_interval: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(5),
            max_bad_pe_reports: 3,
            keep_alive_with_pe_id: true,
            announce: true,
            announce_presence: false,
            server_announce_cycle: Duration::from_secs(1),
            peer_heartbeat_cycle: Duration::from_secs(30),
            max_time_last_heard: Duration::from_secs(61),
            max_time_no_response: Duration::from_secs(5),
            takeover_expiry: Duration::from_secs(30),
            takeover_arbitration: TakeoverArbitration::HighestIdWins,
            max_elements_per_table_response: 128,
            balance: BalancePolicy::default(),
            accept_suggestions: true,
            max_owned: None,
            move_grace: Duration::from_secs(15),
            max_pool_elements: 10_000_000,
            peer_settle_time: Duration::from_secs(10),
            peer_settle_time_max: Duration::from_secs(600),
            peer_stable_time: Duration::from_secs(120),
            move_cooldown: Duration::from_secs(120),
            peer_scope: PeerScope::Configured,
            max_peers: 64,
            max_pes_per_association: 1_000,
            resolution_limit: RateLimit {
                rate: 2_000.0,
                burst: 4_000.0,
            },
            unreachable_limit: RateLimit {
                rate: 10.0,
                burst: 20.0,
            },
        }
    }
}

/// A configuration value that cannot work, reported at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl RegistrarConfig {
    /// Checks the values that would make the registrar misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: &str| Err(ConfigError(s.to_string()));
        if self.keep_alive_interval.is_zero() || self.keep_alive_timeout.is_zero() {
            return err("keep-alive interval and timeout must be positive");
        }
        if self.peer_heartbeat_cycle.is_zero()
            || self.server_announce_cycle.is_zero()
            || self.peer_rediscovery_interval.is_zero()
        {
            return err("heartbeat and announce cycles must be positive");
        }
        if self.max_time_last_heard < self.peer_heartbeat_cycle {
            return err("max-time-last-heard must not be shorter than the peer heartbeat cycle");
        }
        if self.default_handle_resolution_items == 0 || self.max_handle_resolution_items == 0 {
            return err("handle resolution item counts must be at least 1");
        }
        if self.max_elements_per_table_response == 0 {
            return err("handle table pages must hold at least one PE");
        }
        if self.max_peers == 0 || self.max_pes_per_association == 0 {
            return err("max-peers and max-pes-per-association must be at least 1");
        }
        for l in [self.resolution_limit, self.unreachable_limit] {
            if !(l.rate > 0.0 && l.burst >= 1.0) {
                return err("rate limits need a rate > 0 and a burst >= 1");
            }
        }
        if let super::balance::BalancePolicy::Balanced(b) = &self.balance {
            if !(b.tolerance >= 0.0 && b.rate > 0.0 && b.burst >= 1.0) {
                return err("balance tolerance must be >= 0, rate > 0 and burst >= 1");
            }
        }
        Ok(())
    }
}

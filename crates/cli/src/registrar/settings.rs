//! The registrar's settings: flags, a TOML file whose keys are the long
//! flag names (transport flags in a `[transport]` table, `--transport` as
//! its `kind`), and the checks that turn them into a configuration.

use crate::node::addr::EndpointSpec;
use crate::node::duration::Dur;
use crate::node::transport::TransportArgs;
use rserpool_core::registrar::{
    AddrRange, BalancePolicy, BalancedConfig, LifeUnit, PeerScope, RateLimit, RegistrarConfig,
    TakeoverArbitration,
};
use rserpool_net::transport::TransportConfig;
use rserpool_net::transport::udp::{SCTP_UDP_PORT, UdpConfig};
use rserpool_wire::PrId;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The ASAP port of a registrar (RFC 5352 §5: 3863).
pub const ASAP_PORT: u16 = 3863;
/// The ENRP port of a registrar (RFC 5353 §6: 9901).
pub const ENRP_PORT: u16 = 9901;

/// A registrar ID: hex (`0x1a`) or decimal, not zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdArg(pub PrId);

impl FromStr for IdArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16),
            None => s.parse(),
        }
        .map_err(|_| format!("`{s}` is not a 32-bit registrar ID (hex 0x... or decimal)"))?;
        PrId::new(v)
            .map(IdArg)
            .ok_or_else(|| "registrar ID 0 is reserved".to_string())
    }
}

impl<'de> serde::Deserialize<'de> for IdArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string().parse(),
            Raw::S(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Another registrar's capacity for balancing: `ID=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityOf(pub PrId, pub u32);

impl FromStr for CapacityOf {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, n) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not ID=CAPACITY"))?;
        let id: IdArg = id.trim().parse()?;
        let n = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` is not a capacity (a whole number)"))?;
        Ok(Self(id.0, n))
    }
}

impl<'de> serde::Deserialize<'de> for CapacityOf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The Takeover Suggestion policy (`--balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Never suggest takeovers.
    Off,
    /// The reference implementation's XOR rule.
    Xor,
    /// Balance owned PEs by capacity.
    Balanced,
}

/// Unit of the Registration Life field (`--life-unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifeUnitArg {
    /// Milliseconds (reference implementation, Wireshark).
    Ms,
    /// Seconds (RFC 5354 §3.10).
    S,
}

/// Who wins competing takeovers (`--takeover-arbitration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arbitration {
    /// RFC 5353 §3.5.2: the highest ID wins.
    Highest,
    /// The reference implementation: the lowest ID wins.
    Lowest,
}

/// Every registrar setting; unset ones take the file's value, then the default.
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// TOML file with settings; flags override it. Keys are the long flag
    /// names (`keep-alive-interval = "2s"`, `peer = ["10.0.0.2"]`).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Registrar ID, hex or decimal [default: random].
    #[arg(long, value_name = "ID")]
    pub id: Option<IdArg>,
    /// IP address of the ASAP endpoint; repeat for multi-homing [default: 127.0.0.1].
    #[arg(long = "addr", value_name = "IP")]
    pub addr: Vec<IpAddr>,
    /// SCTP port of the ASAP endpoint [default: 3863].
    #[arg(long, value_name = "PORT")]
    pub asap_port: Option<u16>,
    /// IP address of the ENRP endpoint; repeatable [default: the --addr addresses].
    #[arg(long = "enrp-addr", value_name = "IP")]
    pub enrp_addr: Vec<IpAddr>,
    /// SCTP port of the ENRP endpoint [default: 9901].
    #[arg(long, value_name = "PORT")]
    pub enrp_port: Option<u16>,
    /// UDP port of the ENRP endpoint over SCTP over UDP, here and at the
    /// peers [default: the --udp-port]. Lets ASAP and ENRP share one IP.
    #[arg(long, value_name = "PORT")]
    pub enrp_udp_port: Option<u16>,
    /// A peer registrar's ENRP endpoint (IP or IP:PORT, comma-separated for a
    /// multi-homed peer; port default 9901); repeatable.
    #[arg(long = "peer", value_name = "ADDR")]
    pub peer: Vec<EndpointSpec>,
    /// Send ASAP_SERVER_ANNOUNCE to this address: one multicast group
    /// (also listened on) or unicast IP:PORT destinations; repeatable
    /// [default: 239.0.0.50:3863, unless every --addr is a loopback address].
    #[arg(long = "announce", value_name = "ADDR")]
    pub announce: Vec<SocketAddr>,
    /// Send ENRP_PRESENCE to this address and listen there for other
    /// registrars' (admitted by --enrp-allow); like --announce [default:
    /// 239.0.0.51:9901, unless every --enrp-addr is a loopback address].
    #[arg(long = "enrp-announce", value_name = "ADDR")]
    pub enrp_announce: Vec<SocketAddr>,
    /// Announce nothing (no ASAP_SERVER_ANNOUNCE, no ENRP_PRESENCE by multicast).
    #[arg(long, conflicts_with_all = ["announce", "enrp_announce"])]
    pub no_announce: bool,
    /// Print a status line this often (PEs, pools, owned per registrar, peers, refusals).
    #[arg(long, value_name = "DUR")]
    pub status_interval: Option<Dur>,
    /// Serve Prometheus metrics at http://ADDR/metrics (IP:PORT, for
    /// example 127.0.0.1:9464): handlespace, peers, messages, refusals,
    /// takeover suggestions [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Seed of the registrar's randomness (jitter, IDs) [default: random].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// How long to wait for a mentor peer before starting alone [default: 5s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub mentor_discovery_timeout: Option<Dur>,
    /// Interval of ENDPOINT_KEEP_ALIVE to owned PEs, ±50 % jitter [default: 5s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub keep_alive_interval: Option<Dur>,
    /// Wait for ENDPOINT_KEEP_ALIVE_ACK before removing a PE [default: 5s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub keep_alive_timeout: Option<Dur>,
    /// T6-Serverannounce [default: 1s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub server_announce_cycle: Option<Dur>,
    /// PEER-HEARTBEAT-CYCLE: ENRP_PRESENCE period [default: 30s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub peer_heartbeat_cycle: Option<Dur>,
    /// MAX-TIME-LAST-HEARD: peer silence before it is probed [default: 61s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub max_time_last_heard: Option<Dur>,
    /// MAX-TIME-NO-RESPONSE: wait for a probed peer [default: 5s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub max_time_no_response: Option<Dur>,
    /// Give up a takeover whose acknowledgements did not all arrive [default: 30s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub takeover_expiry: Option<Dur>,
    /// How long a suggested move may take [default: 15s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub move_grace: Option<Dur>,
    /// How long a peer must be reachable before it counts for balancing;
    /// doubles for a flapping peer [default: 10s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub peer_settle_time: Option<Dur>,
    /// A PE that arrived by a suggestion is not suggested onwards for this
    /// long [default: 120s].
    #[arg(long, value_name = "DUR", help_heading = "Timers")]
    pub move_cooldown: Option<Dur>,

    /// Unit of the Registration Life field [default: ms].
    #[arg(long, value_enum, value_name = "UNIT", help_heading = "Protocol")]
    pub life_unit: Option<LifeUnitArg>,
    /// PEs per handle resolution without the HR option [default: 3].
    #[arg(long, value_name = "N", help_heading = "Protocol")]
    pub handle_resolution_items: Option<u32>,
    /// Most PEs per handle resolution [default: 128].
    #[arg(long, value_name = "N", help_heading = "Protocol")]
    pub max_handle_resolution_items: Option<u32>,
    /// ENDPOINT_UNREACHABLE reports that remove a PE [default: 3].
    #[arg(long, value_name = "N", help_heading = "Protocol")]
    pub max_bad_pe_reports: Option<u32>,
    /// Put the PE ID into ENDPOINT_KEEP_ALIVE [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Protocol")]
    pub keep_alive_with_pe_id: Option<bool>,
    /// Rule for competing takeovers [default: highest].
    #[arg(long, value_enum, value_name = "RULE", help_heading = "Protocol")]
    pub takeover_arbitration: Option<Arbitration>,
    /// Most PEs per ENRP_HANDLE_TABLE_RESPONSE [default: 128].
    #[arg(long, value_name = "N", help_heading = "Protocol")]
    pub max_elements_per_table_response: Option<usize>,
    /// Most PEs in the handlespace [default: 10000000].
    #[arg(long, value_name = "N", help_heading = "Protocol")]
    pub max_pool_elements: Option<usize>,

    /// Takeover Suggestion policy [default: balanced].
    #[arg(
        long,
        value_enum,
        value_name = "POLICY",
        help_heading = "Takeover suggestion"
    )]
    pub balance: Option<Balance>,
    /// Fraction above the fair share tolerated before suggesting [default: 0.05].
    #[arg(long, value_name = "F", help_heading = "Takeover suggestion")]
    pub tolerance: Option<f64>,
    /// Suggestions per second [default: 50].
    #[arg(long, value_name = "N", help_heading = "Takeover suggestion")]
    pub suggestion_rate: Option<f64>,
    /// Suggestions in a burst [default: 100].
    #[arg(long, value_name = "N", help_heading = "Takeover suggestion")]
    pub suggestion_burst: Option<f64>,
    /// This registrar's capacity [default: 1].
    #[arg(long, value_name = "N", help_heading = "Takeover suggestion")]
    pub capacity: Option<u32>,
    /// Capacity of registrars not given by --capacity-of [default: 1].
    #[arg(long, value_name = "N", help_heading = "Takeover suggestion")]
    pub default_capacity: Option<u32>,
    /// Another registrar's capacity, ID=N; repeatable.
    #[arg(
        long = "capacity-of",
        value_name = "ID=N",
        help_heading = "Takeover suggestion"
    )]
    pub capacity_of: Vec<CapacityOf>,
    /// Honour takeover suggestions from peers [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Takeover suggestion")]
    pub accept_suggestions: Option<bool>,
    /// Decline takeover suggestions (same as --accept-suggestions=false).
    #[arg(
        long,
        conflicts_with = "accept_suggestions",
        help_heading = "Takeover suggestion"
    )]
    #[serde(skip)]
    pub no_accept_suggestions: bool,
    /// Most PEs to own through suggestions [default: no limit].
    #[arg(long, value_name = "N", help_heading = "Takeover suggestion")]
    pub max_owned: Option<usize>,

    /// Registrars that may peer (speak ENRP): an address range
    /// (10.1.0.0/16, fd00::/8, one IP) or `any`; repeatable. The configured
    /// --peer addresses, this host's --enrp-addr and registrars they
    /// introduce are always admitted [default: only those].
    #[arg(long = "enrp-allow", value_name = "RANGE", help_heading = "Security")]
    pub enrp_allow: Vec<String>,
    /// Most peer registrars [default: 64].
    #[arg(long, value_name = "N", help_heading = "Security")]
    pub max_peers: Option<usize>,
    /// Most PEs registered over one association [default: 1000].
    #[arg(long, value_name = "N", help_heading = "Security")]
    pub max_pes_per_association: Option<usize>,
    /// Handle resolutions per second one association may send (bursts of
    /// twice that) [default: 2000].
    #[arg(long, value_name = "N", help_heading = "Security")]
    pub resolution_rate: Option<f64>,

    #[command(flatten, next_help_heading = "Transport")]
    #[allow(missing_docs)]
    pub transport: TransportArgs,
}

/// What the registrar runs with, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The machine's configuration.
    pub config: RegistrarConfig,
    /// Seed of its randomness.
    pub seed: u64,
    /// The transport settings (backend choice).
    pub transport: TransportArgs,
    /// SCTP tunables.
    pub tunables: TransportConfig,
    /// SCTP-over-UDP options of the ASAP endpoint.
    pub asap_udp: UdpConfig,
    /// SCTP-over-UDP options of the ENRP endpoint.
    pub enrp_udp: UdpConfig,
    /// Announce channel: where to listen and where to send.
    pub announce: Option<(SocketAddr, Vec<SocketAddr>)>,
    /// ENRP presence channel: where to listen and where to send.
    pub enrp_announce: Option<(SocketAddr, Vec<SocketAddr>)>,
    /// The announce channels are the defaults: failing to open them
    /// (no multicast route) is not a reason to stop.
    pub announce_by_default: bool,
    /// Status line period.
    pub status_interval: Option<Duration>,
    /// Where to serve metrics (`--metrics`), unchecked.
    pub metrics: Option<String>,
}

fn pick<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(file)
}

fn pick_list<T>(flag: Vec<T>, file: Vec<T>) -> Vec<T> {
    if flag.is_empty() { file } else { flag }
}

impl Settings {
    /// Reads `--config` (if given) under these flags.
    pub fn load(self) -> Result<Self, String> {
        let Some(path) = self.config.clone() else {
            return Ok(self.overlay(Settings::default()));
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: Settings = toml::from_str(&text).map_err(|e| {
            // toml's message spans lines (it quotes the source); keep one.
            let msg = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            format!("{}: {msg}{at}", path.display())
        })?;
        Ok(self.overlay(file))
    }

    /// Flags win over `file`.
    fn overlay(self, file: Self) -> Self {
        Self {
            config: self.config,
            id: pick(self.id, file.id),
            addr: pick_list(self.addr, file.addr),
            asap_port: pick(self.asap_port, file.asap_port),
            enrp_addr: pick_list(self.enrp_addr, file.enrp_addr),
            enrp_port: pick(self.enrp_port, file.enrp_port),
            enrp_udp_port: pick(self.enrp_udp_port, file.enrp_udp_port),
            peer: pick_list(self.peer, file.peer),
            announce: pick_list(self.announce, file.announce),
            enrp_announce: pick_list(self.enrp_announce, file.enrp_announce),
            no_announce: self.no_announce || file.no_announce,
            status_interval: pick(self.status_interval, file.status_interval),
            metrics: pick(self.metrics, file.metrics),
            seed: pick(self.seed, file.seed),
            mentor_discovery_timeout: pick(
                self.mentor_discovery_timeout,
                file.mentor_discovery_timeout,
            ),
            keep_alive_interval: pick(self.keep_alive_interval, file.keep_alive_interval),
            keep_alive_timeout: pick(self.keep_alive_timeout, file.keep_alive_timeout),
            server_announce_cycle: pick(self.server_announce_cycle, file.server_announce_cycle),
            peer_heartbeat_cycle: pick(self.peer_heartbeat_cycle, file.peer_heartbeat_cycle),
            max_time_last_heard: pick(self.max_time_last_heard, file.max_time_last_heard),
            max_time_no_response: pick(self.max_time_no_response, file.max_time_no_response),
            takeover_expiry: pick(self.takeover_expiry, file.takeover_expiry),
            move_grace: pick(self.move_grace, file.move_grace),
            peer_settle_time: pick(self.peer_settle_time, file.peer_settle_time),
            move_cooldown: pick(self.move_cooldown, file.move_cooldown),
            life_unit: pick(self.life_unit, file.life_unit),
            handle_resolution_items: pick(
                self.handle_resolution_items,
                file.handle_resolution_items,
            ),
            max_handle_resolution_items: pick(
                self.max_handle_resolution_items,
                file.max_handle_resolution_items,
            ),
            max_bad_pe_reports: pick(self.max_bad_pe_reports, file.max_bad_pe_reports),
            keep_alive_with_pe_id: pick(self.keep_alive_with_pe_id, file.keep_alive_with_pe_id),
            takeover_arbitration: pick(self.takeover_arbitration, file.takeover_arbitration),
            max_elements_per_table_response: pick(
                self.max_elements_per_table_response,
                file.max_elements_per_table_response,
            ),
            max_pool_elements: pick(self.max_pool_elements, file.max_pool_elements),
            balance: pick(self.balance, file.balance),
            tolerance: pick(self.tolerance, file.tolerance),
            suggestion_rate: pick(self.suggestion_rate, file.suggestion_rate),
            suggestion_burst: pick(self.suggestion_burst, file.suggestion_burst),
            capacity: pick(self.capacity, file.capacity),
            default_capacity: pick(self.default_capacity, file.default_capacity),
            capacity_of: pick_list(self.capacity_of, file.capacity_of),
            accept_suggestions: if self.no_accept_suggestions {
                Some(false)
            } else {
                pick(self.accept_suggestions, file.accept_suggestions)
            },
            no_accept_suggestions: false,
            max_owned: pick(self.max_owned, file.max_owned),
            enrp_allow: pick_list(self.enrp_allow, file.enrp_allow),
            max_peers: pick(self.max_peers, file.max_peers),
            max_pes_per_association: pick(
                self.max_pes_per_association,
                file.max_pes_per_association,
            ),
            resolution_rate: pick(self.resolution_rate, file.resolution_rate),
            transport: self.transport.overlay(file.transport),
        }
    }

    /// Checks everything and builds the plan; the error is one line.
    pub fn plan(self) -> Result<Plan, String> {
        let seed = self.seed.unwrap_or_else(rand::random);
        let asap_port = self.asap_port.unwrap_or(ASAP_PORT);
        let enrp_port = self.enrp_port.unwrap_or(ENRP_PORT);
        if asap_port == 0 || enrp_port == 0 {
            return Err(
                "the ASAP and ENRP ports must not be 0: peers and PEs need to know them".into(),
            );
        }
        let addr = if self.addr.is_empty() {
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        } else {
            self.addr.clone()
        };
        let enrp_addr = if self.enrp_addr.is_empty() {
            addr.clone()
        } else {
            self.enrp_addr.clone()
        };
        for ip in addr.iter().chain(&enrp_addr) {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(format!(
                    "{ip} cannot be an endpoint address: the registrar announces its addresses, so give concrete ones"
                ));
            }
        }
        let asap: Vec<SocketAddr> = addr
            .iter()
            .map(|ip| SocketAddr::new(*ip, asap_port))
            .collect();
        let enrp: Vec<SocketAddr> = enrp_addr
            .iter()
            .map(|ip| SocketAddr::new(*ip, enrp_port))
            .collect();
        if asap.iter().any(|a| enrp.contains(a)) {
            return Err(format!(
                "the ASAP and ENRP endpoints cannot share an address and port ({})",
                asap.iter()
                    .find(|a| enrp.contains(a))
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ));
        }

        let tunables = self.transport.tunables()?;
        let mut asap_udp = self.transport.udp(SCTP_UDP_PORT);
        // Zero configuration only when no UDP port was given at all; the
        // ASAP and ENRP endpoints share the UDP port either way.
        asap_udp.zero_config &= self.enrp_udp_port.is_none();
        let enrp_udp_port = self.enrp_udp_port.unwrap_or(asap_udp.udp_port);
        if asap_udp.udp_port == 0 || enrp_udp_port == 0 || asap_udp.remote_udp_port == 0 {
            return Err("UDP ports must not be 0: PEs and peers need to know them".into());
        }
        let enrp_udp = UdpConfig {
            udp_port: enrp_udp_port,
            // Peers' ENRP endpoints use the same encapsulation port as ours.
            remote_udp_port: enrp_udp_port,
            ..asap_udp.clone()
        };

        let mut peers = Vec::new();
        for p in &self.peer {
            let addrs = p.resolve(ENRP_PORT);
            if addrs.iter().any(|a| enrp.contains(a)) {
                return Err(format!("--peer {p} is this registrar's own ENRP endpoint"));
            }
            peers.push(addrs);
        }

        let only_loopback = |ips: &[IpAddr]| ips.iter().all(IpAddr::is_loopback);
        let announce_by_default =
            !self.no_announce && self.announce.is_empty() && self.enrp_announce.is_empty();
        let (announce, enrp_announce) = if self.no_announce {
            (None, None)
        } else if announce_by_default {
            (
                (!only_loopback(&addr)).then(|| {
                    let g = crate::node::ANNOUNCE_GROUP;
                    (g, vec![g])
                }),
                (!only_loopback(&enrp_addr)).then(|| {
                    let g = crate::node::ENRP_ANNOUNCE_GROUP;
                    (g, vec![g])
                }),
            )
        } else {
            (
                announce_plan(&self.announce, "--announce")?,
                announce_plan(&self.enrp_announce, "--enrp-announce")?,
            )
        };

        let unit = match self.life_unit {
            Some(LifeUnitArg::S) => LifeUnit::Seconds,
            _ => LifeUnit::Milliseconds,
        };
        let mut c = RegistrarConfig {
            id: self.id.map(|i| i.0),
            asap_addresses: asap,
            enrp_addresses: enrp,
            peers,
            life_unit: unit,
            announce: announce.is_some(),
            announce_presence: enrp_announce.is_some(),
            ..RegistrarConfig::default()
        };
        let set = |d: Option<Dur>, field: &mut Duration| {
            if let Some(d) = d {
                *field = d.0;
            }
        };
        set(
            self.mentor_discovery_timeout,
            &mut c.mentor_discovery_timeout,
        );
        set(self.keep_alive_interval, &mut c.keep_alive_interval);
        set(self.keep_alive_timeout, &mut c.keep_alive_timeout);
        set(self.server_announce_cycle, &mut c.server_announce_cycle);
        set(self.peer_heartbeat_cycle, &mut c.peer_heartbeat_cycle);
        set(self.max_time_last_heard, &mut c.max_time_last_heard);
        set(self.max_time_no_response, &mut c.max_time_no_response);
        set(self.takeover_expiry, &mut c.takeover_expiry);
        set(self.move_grace, &mut c.move_grace);
        set(self.peer_settle_time, &mut c.peer_settle_time);
        set(self.move_cooldown, &mut c.move_cooldown);
        if c.max_time_no_response.is_zero() || c.takeover_expiry.is_zero() || c.move_grace.is_zero()
        {
            return Err(
                "max-time-no-response, takeover-expiry and move-grace must be positive".into(),
            );
        }
        if let Some(n) = self.handle_resolution_items {
            c.default_handle_resolution_items = n;
        }
        if let Some(n) = self.max_handle_resolution_items {
            c.max_handle_resolution_items = n;
        }
        if c.default_handle_resolution_items > c.max_handle_resolution_items {
            return Err(
                "handle-resolution-items must not exceed max-handle-resolution-items".into(),
            );
        }
        if let Some(n) = self.max_bad_pe_reports {
            if n == 0 {
                return Err("max-bad-pe-reports must be at least 1".into());
            }
            c.max_bad_pe_reports = n;
        }
        if let Some(b) = self.keep_alive_with_pe_id {
            c.keep_alive_with_pe_id = b;
        }
        if let Some(a) = self.takeover_arbitration {
            c.takeover_arbitration = match a {
                Arbitration::Highest => TakeoverArbitration::HighestIdWins,
                Arbitration::Lowest => TakeoverArbitration::LowestIdWins,
            };
        }
        if let Some(n) = self.max_elements_per_table_response {
            c.max_elements_per_table_response = n;
        }
        if let Some(n) = self.max_pool_elements {
            if n == 0 {
                return Err("max-pool-elements must be at least 1".into());
            }
            c.max_pool_elements = n;
        }

        // The own ID must be known to give it a capacity, so draw it here.
        let id = match c.id {
            Some(id) => id,
            None => loop {
                if let Some(id) = PrId::new(rand::random()) {
                    break id;
                }
            },
        };
        c.id = Some(id);
        c.balance = balance(&self, id)?;
        if let Some(b) = self.accept_suggestions {
            c.accept_suggestions = b;
        }
        c.max_owned = self.max_owned;
        if !self.enrp_allow.is_empty() {
            c.peer_scope = if self.enrp_allow.iter().any(|r| r == "any") {
                PeerScope::Any
            } else {
                PeerScope::Ranges(
                    self.enrp_allow
                        .iter()
                        .map(|r| {
                            r.parse::<AddrRange>()
                                .map_err(|e| format!("--enrp-allow {e}"))
                        })
                        .collect::<Result<_, _>>()?,
                )
            };
        }
        if let Some(n) = self.max_peers {
            c.max_peers = n;
        }
        if let Some(n) = self.max_pes_per_association {
            c.max_pes_per_association = n;
        }
        if let Some(rate) = self.resolution_rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("resolution-rate must be a positive number".into());
            }
            c.resolution_limit = RateLimit {
                rate,
                burst: (2.0 * rate).max(1.0),
            };
        }
        c.validate().map_err(|e| e.to_string())?;

        let status_interval = self.status_interval.map(|s| s.0);
        if status_interval.is_some_and(|d| d < Duration::from_millis(10)) {
            return Err("status-interval must be at least 10ms".into());
        }
        Ok(Plan {
            config: c,
            seed,
            transport: self.transport,
            tunables,
            asap_udp,
            enrp_udp,
            announce,
            enrp_announce,
            announce_by_default,
            status_interval,
            metrics: self.metrics,
        })
    }
}

/// One multicast group (listened on and sent to) or unicast destinations
/// (sent to from an ephemeral port).
fn announce_plan(
    addrs: &[SocketAddr],
    flag: &str,
) -> Result<Option<(SocketAddr, Vec<SocketAddr>)>, String> {
    if addrs.is_empty() {
        return Ok(None);
    }
    let groups: Vec<_> = addrs.iter().filter(|a| a.ip().is_multicast()).collect();
    if let Some(a) = addrs
        .iter()
        .find(|a| a.port() == 0 || a.ip().is_unspecified())
    {
        return Err(format!("{flag} {a} is not a destination"));
    }
    match groups.as_slice() {
        [] => {
            let any = if addrs[0].is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            };
            Ok(Some((SocketAddr::new(any, 0), addrs.to_vec())))
        }
        [g] if addrs.len() == 1 => Ok(Some((**g, vec![**g]))),
        _ => Err(format!(
            "{flag} takes one multicast group, or unicast destinations only"
        )),
    }
}

fn balance(s: &Settings, own: PrId) -> Result<BalancePolicy, String> {
    let tuned = s.tolerance.is_some()
        || s.suggestion_rate.is_some()
        || s.suggestion_burst.is_some()
        || s.capacity.is_some()
        || s.default_capacity.is_some()
        || !s.capacity_of.is_empty();
    match s.balance.unwrap_or(Balance::Balanced) {
        Balance::Off | Balance::Xor if tuned => Err(
            "--tolerance, --capacity and the other balance knobs apply only to --balance balanced"
                .into(),
        ),
        Balance::Off => Ok(BalancePolicy::Off),
        Balance::Xor => Ok(BalancePolicy::Xor),
        Balance::Balanced => {
            let mut b = BalancedConfig::default();
            if let Some(t) = s.tolerance {
                b.tolerance = t;
            }
            if let Some(r) = s.suggestion_rate {
                b.rate = r;
            }
            if let Some(r) = s.suggestion_burst {
                b.burst = r;
            }
            if let Some(c) = s.default_capacity {
                b.default_capacity = c;
            }
            for CapacityOf(id, n) in &s.capacity_of {
                b.capacities.insert(*id, *n);
            }
            if let Some(c) = s.capacity {
                b.capacities.insert(own, c);
            }
            if b.default_capacity == 0 || b.capacities.values().any(|c| *c == 0) {
                return Err("capacities must be at least 1".into());
            }
            if !b.tolerance.is_finite() || !b.rate.is_finite() || !b.burst.is_finite() {
                return Err("balance tolerance, rate and burst must be finite numbers".into());
            }
            Ok(BalancePolicy::Balanced(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        s: Settings,
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v)
            .map_err(|e| e.to_string())?
            .s
            .load()?
            .plan()
    }

    #[test]
    fn defaults_are_the_rfc_ports_on_loopback() {
        let p = plan(&[]).unwrap();
        assert_eq!(
            p.config.asap_addresses,
            vec!["127.0.0.1:3863".parse().unwrap()]
        );
        assert_eq!(
            p.config.enrp_addresses,
            vec!["127.0.0.1:9901".parse().unwrap()]
        );
        assert!(p.config.id.is_some());
        assert!(!p.config.announce);
        assert!(matches!(p.config.balance, BalancePolicy::Balanced(_)));
        // One UDP port for both endpoints (they share the socket), taken
        // only if free: zero configuration.
        assert_eq!(p.asap_udp.udp_port, 9899);
        assert_eq!(p.enrp_udp.udp_port, 9899);
        assert!(p.asap_udp.zero_config && p.enrp_udp.zero_config);
        // On loopback only, nothing is announced by default.
        assert!(p.announce.is_none() && p.enrp_announce.is_none());
        let p = plan(&["--enrp-udp-port", "9900"]).unwrap();
        assert_eq!(p.enrp_udp.remote_udp_port, 9900);
        assert!(!p.asap_udp.zero_config);
        let p = plan(&["--addr", "10.1.2.3"]).unwrap();
        assert_eq!(p.announce.unwrap().0, crate::node::ANNOUNCE_GROUP);
        assert_eq!(p.enrp_announce.unwrap().0, crate::node::ENRP_ANNOUNCE_GROUP);
        assert!(p.config.announce && p.config.announce_presence);
        let p = plan(&["--addr", "10.1.2.3", "--no-announce"]).unwrap();
        assert!(p.announce.is_none() && p.enrp_announce.is_none());
    }

    #[test]
    fn flags_reach_the_configuration() {
        let p = plan(&[
            "--id",
            "0x2a",
            "--addr",
            "10.0.0.1",
            "--peer",
            "10.0.0.2",
            "--peer",
            "10.0.0.3,10.0.1.3:9902",
            "--keep-alive-interval",
            "1s",
            "--keep-alive-timeout",
            "700ms",
            "--capacity",
            "4",
            "--tolerance",
            "0.2",
            "--no-accept-suggestions",
            "--max-owned",
            "9",
            "--announce",
            "239.0.0.50:3863",
        ])
        .unwrap();
        let c = &p.config;
        assert_eq!(c.id, PrId::new(42));
        assert_eq!(c.keep_alive_interval, Duration::from_secs(1));
        assert_eq!(c.keep_alive_timeout, Duration::from_millis(700));
        assert_eq!(c.peers.len(), 2);
        assert_eq!(
            c.peers[1],
            vec![
                "10.0.0.3:9902".parse().unwrap(),
                "10.0.1.3:9902".parse().unwrap()
            ]
        );
        assert!(!c.accept_suggestions);
        assert_eq!(c.max_owned, Some(9));
        assert!(c.announce);
        let BalancePolicy::Balanced(b) = &c.balance else {
            panic!()
        };
        assert_eq!(b.capacities.get(&PrId::new(42).unwrap()), Some(&4));
        assert_eq!(b.tolerance, 0.2);
    }

    #[test]
    fn file_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.toml");
        std::fs::write(
            &f,
            "id = \"0x10\"\nkeep-alive-interval = \"2s\"\npeer = [\"10.0.0.9\"]\nbalance = \"xor\"\n[transport]\nkind = \"udp\"\nudp-port = 9000\n",
        )
        .unwrap();
        let cfg = f.to_str().unwrap();
        let s = T::try_parse_from(["t", "--config", cfg, "--id", "7"])
            .unwrap()
            .s;
        let p = s.load().unwrap().plan().unwrap();
        assert_eq!(p.config.id, PrId::new(7));
        assert_eq!(p.config.keep_alive_interval, Duration::from_secs(2));
        assert_eq!(p.config.peers, vec![vec!["10.0.0.9:9901".parse().unwrap()]]);
        assert_eq!(p.config.balance, BalancePolicy::Xor);
        assert_eq!(p.asap_udp.udp_port, 9000);
        assert_eq!(
            p.transport.choice,
            Some(crate::node::transport::TransportChoice::Udp)
        );
    }

    #[test]
    fn bad_settings_give_one_line() {
        for (args, expect) in [
            (vec!["--asap-port", "0"], "must not be 0"),
            (vec!["--addr", "0.0.0.0"], "concrete"),
            (vec!["--enrp-port", "3863"], "cannot share"),
            (vec!["--keep-alive-interval", "0"], "keep-alive"),
            (
                vec![
                    "--peer-heartbeat-cycle",
                    "10s",
                    "--max-time-last-heard",
                    "5s",
                ],
                "max-time-last-heard",
            ),
            (vec!["--balance", "off", "--tolerance", "0.1"], "apply only"),
            (vec!["--tolerance=-1"], "tolerance"),
            (vec!["--capacity", "0"], "at least 1"),
            (vec!["--peer", "127.0.0.1"], "own ENRP"),
            (
                vec![
                    "--announce",
                    "239.0.0.50:3863",
                    "--announce",
                    "10.0.0.1:3863",
                ],
                "one multicast",
            ),
        ] {
            let e = plan(&args).unwrap_err();
            assert!(e.contains(expect), "{args:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn bad_files_give_one_line_with_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.toml");
        std::fs::write(&f, "id = 1\nkeep-alive-intervall = \"2s\"\n").unwrap();
        let s = T::try_parse_from(["t", "--config", f.to_str().unwrap()])
            .unwrap()
            .s;
        let e = s.load().unwrap_err();
        assert!(
            e.contains("keep-alive-intervall") && e.contains("line 2"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let s = T::try_parse_from(["t", "--config", "/nonexistent/r.toml"])
            .unwrap()
            .s;
        assert!(s.load().unwrap_err().contains("cannot read"));
    }
}

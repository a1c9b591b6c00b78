//! Userland SCTP encapsulated in UDP (RFC 6951), on the vendored `sctp-proto`,
//! in three layers, the way quinn splits its endpoint from its I/O:
//!
//! - `endpoint`: the sans-IO core. It demultiplexes packets itself, by
//!   remote IP + remote SCTP port + local SCTP port (never by UDP port,
//!   which a NAT or the peer may change), so it uses `sctp-proto`'s
//!   associations but not its `Endpoint`; verification tags, out-of-the-blue
//!   packets, the stateless cookie handshake and connect fallback live here,
//!   unit-tested with endpoints wired to each other in memory.
//! - `driver`: one tokio task per endpoint that feeds the core datagrams,
//!   the [`UdpTransport`] handle's commands and the clock, and carries out
//!   what it asks.
//! - `mux` and `socket`: the process's UDP sockets, one per address and
//!   shared by every SCTP endpoint of the process on it (demultiplexed by
//!   SCTP port), and the batched system calls.
//!
//! Addresses: the [`SocketAddr`]s of the trait are SCTP transport addresses
//! (IP and SCTP port). The UDP port is the encapsulation port: this endpoint
//! receives on [`UdpConfig::udp_port`] (9899 by default) and sends new
//! associations to [`UdpConfig::remote_udp_port`]; after that it answers to
//! whatever UDP source port the peer uses (RFC 6951 5.5). A listening
//! endpoint opens its first association to a peer from its listening SCTP
//! port, as a one-to-many kernel socket does (peers record that address and
//! reach the endpoint there later); any further association to the same peer,
//! and every association of a non-listening endpoint, gets an SCTP source port
//! of its own, so that no two share a 4-tuple (kernel peers insist on that).
//!
//! Talking to kernel SCTP: a Linux peer receives encapsulated SCTP once
//! `sysctl net.sctp.udp_port=9899` is set, and sends it on associations
//! (or sockets) whose `SCTP_REMOTE_UDP_ENCAPS_PORT` is our UDP port; see
//! `KernelOptions::udp_encap_port` of the kernel backend.
//!
//! Hostile input: packets that are short, fail CRC-32C, carry a wrong
//! verification tag or do not parse are counted ([`UdpStats`]), logged at
//! debug level and dropped. Packets for unknown associations get an ABORT
//! (rate-limited) as RFC 9260 8.4 says. Handshakes started by peers keep no
//! state until the peer echoes a valid State Cookie (RFC 9260 5.1.3: the
//! INIT-ACK carries the handshake state, authenticated with HMAC-SHA-256
//! under a per-endpoint random key, bound to the peer's address and valid
//! for [`TransportConfig::handshake_timeout`]), so an INIT flood cannot
//! exhaust memory; INIT-ACKs are rate-limited
//! ([`UdpConfig::init_acks_per_sec`]).

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::debug;

mod driver;
mod endpoint;
mod mux;
mod socket;

use endpoint::{Endpoint, Seeds};
use mux::{EndpointKey, Mux};

use super::{
    AssociationId, CloseMode, EndpointConfig, Event, Ppid, Transport, TransportConfig,
    TransportError, check_size,
};

/// IANA-assigned UDP port for SCTP encapsulation (RFC 6951).
pub const SCTP_UDP_PORT: u16 = 9899;

/// Which way a captured datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by this endpoint.
    Outgoing,
    /// Received by this endpoint (before any validation).
    Incoming,
}

/// A function that sees every UDP datagram the driver sends or receives:
/// direction, UDP source, UDP destination, payload (one SCTP packet). Used to
/// write captures; it runs on the driver task, so keep it cheap.
pub type CaptureHook = Arc<dyn Fn(Direction, SocketAddr, SocketAddr, &[u8]) + Send + Sync>;

/// Options of the UDP backend that [`EndpointConfig`] does not cover.
#[derive(Clone)]
pub struct UdpConfig {
    /// Local UDP port (on every local IP). 0 picks one. Default 9899.
    pub udp_port: u16,
    /// UDP port new outgoing associations are sent to. Default 9899.
    pub remote_udp_port: u16,
    /// Requested send and receive buffer of each UDP socket. Default 4 MiB:
    /// with the system default, bursts overflow and every dropped datagram
    /// costs a retransmission timeout.
    pub socket_buffer: usize,
    /// Largest SCTP packet sent (the UDP payload). Default 1452, which fits
    /// an Ethernet MTU over IPv6 with the UDP header.
    pub mtu: usize,
    /// Upper bound on ABORTs sent per second in reply to packets of unknown
    /// associations (so spoofed traffic cannot turn us into a reflector).
    /// Default 1000.
    pub ootb_replies_per_sec: u32,
    /// Upper bound on INIT-ACKs sent per second (each INIT is answered
    /// without keeping state, but the answers are larger than the INITs).
    /// Default 10,000.
    pub init_acks_per_sec: u32,
    /// Sees every datagram sent and received (for captures). Default none.
    pub capture: Option<CaptureHook>,
    /// Zero configuration, for nodes whose ports nobody set: `udp_port` is
    /// only a preference. When another process holds it (or it is 0), a
    /// listening endpoint takes the UDP port equal to its SCTP port (an
    /// ephemeral one if both are free to choose), any other endpoint an
    /// ephemeral port. With [`UdpConfig::probe_peer_port`], any number of
    /// processes on one host find each other without agreeing on ports.
    /// Default off.
    pub zero_config: bool,
    /// Send the handshake of a new association both to `remote_udp_port`
    /// and to the UDP port equal to the peer's SCTP port, and keep the one
    /// that answers for that SCTP port: peers that chose their ports by
    /// [`UdpConfig::zero_config`] are found wherever they are. Default on.
    pub probe_peer_port: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            udp_port: SCTP_UDP_PORT,
            remote_udp_port: SCTP_UDP_PORT,
            socket_buffer: 4 << 20,
            mtu: 1452,
            ootb_replies_per_sec: 1000,
            init_acks_per_sec: 10_000,
            capture: None,
            zero_config: false,
            probe_peer_port: true,
        }
    }
}

impl fmt::Debug for UdpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpConfig")
            .field("udp_port", &self.udp_port)
            .field("remote_udp_port", &self.remote_udp_port)
            .field("socket_buffer", &self.socket_buffer)
            .field("mtu", &self.mtu)
            .field("ootb_replies_per_sec", &self.ootb_replies_per_sec)
            .field("init_acks_per_sec", &self.init_acks_per_sec)
            .field("capture", &self.capture.is_some())
            .field("zero_config", &self.zero_config)
            .field("probe_peer_port", &self.probe_peer_port)
            .finish()
    }
}

/// Counters of the UDP backend (totals since bind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Received datagrams too short for an SCTP common header or chunk.
    pub malformed: u64,
    /// Received packets with a bad CRC-32C or that did not parse.
    pub bad_packets: u64,
    /// Packets dropped for a wrong verification tag.
    pub bad_vtag: u64,
    /// Packets for no known association ("out of the blue").
    pub out_of_the_blue: u64,
    /// ABORT / SHUTDOWN-COMPLETE replies sent to out-of-the-blue packets.
    pub ootb_replies: u64,
    /// INIT-ACKs sent (each with a stateless State Cookie).
    pub init_acks: u64,
    /// INITs and COOKIE-ECHOs dropped because the association limit or the
    /// INIT-ACK rate limit was reached.
    pub inits_dropped: u64,
    /// Associations removed because their handshake took too long.
    pub handshake_timeouts: u64,
    /// Send errors other than a full buffer.
    pub send_errors: u64,
    /// Messages dropped because the association's send queue was full
    /// (`TransportConfig::max_queued_bytes`).
    pub queue_drops: u64,
    /// Associations that exist now (any state, including handshakes).
    pub associations: u64,
    /// Datagrams the shared UDP sockets dropped because one of their
    /// endpoints fell behind (counted for every endpoint on the socket).
    pub socket_drops: u64,
}

#[derive(Default)]
struct Counters {
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    malformed: AtomicU64,
    bad_packets: AtomicU64,
    bad_vtag: AtomicU64,
    out_of_the_blue: AtomicU64,
    ootb_replies: AtomicU64,
    init_acks: AtomicU64,
    inits_dropped: AtomicU64,
    handshake_timeouts: AtomicU64,
    send_errors: AtomicU64,
    queue_drops: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self, live: usize) -> UdpStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        UdpStats {
            datagrams_in: g(&self.datagrams_in),
            datagrams_out: g(&self.datagrams_out),
            malformed: g(&self.malformed),
            bad_packets: g(&self.bad_packets),
            bad_vtag: g(&self.bad_vtag),
            out_of_the_blue: g(&self.out_of_the_blue),
            ootb_replies: g(&self.ootb_replies),
            init_acks: g(&self.init_acks),
            inits_dropped: g(&self.inits_dropped),
            handshake_timeouts: g(&self.handshake_timeouts),
            send_errors: g(&self.send_errors),
            queue_drops: g(&self.queue_drops),
            associations: live as u64,
            socket_drops: 0,
        }
    }
}

/// State shared by the handle and the driver.
struct Shared {
    next_assoc: AtomicU64,
    /// Associations that exist in the driver (any state).
    live: AtomicUsize,
    /// Events handed to the user and not yet taken. Above
    /// [`EVENT_HIGH_WATER`] the driver stops reading its sockets (timers and
    /// sending go on), so peers cannot grow the queue faster than the
    /// application drains it; SCTP flow control then holds them back.
    queued_events: AtomicUsize,
    counters: Counters,
}

/// See [`Shared::queued_events`].
const EVENT_HIGH_WATER: usize = 65_536;

enum Command {
    Connect {
        assoc: AssociationId,
        peers: Vec<SocketAddr>,
    },
    Send {
        assoc: AssociationId,
        stream: u16,
        ppid: Ppid,
        unordered: bool,
        data: Bytes,
    },
    Close {
        assoc: AssociationId,
        mode: CloseMode,
    },
}

/// An SCTP-over-UDP endpoint. Dropping it stops its driver at once, without
/// telling peers (they detect the loss by missing heartbeats); close
/// associations first for an orderly exit.
pub struct UdpTransport {
    commands: mpsc::Sender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    local_udp_addrs: Vec<SocketAddr>,
    config: TransportConfig,
    known: HashSet<AssociationId>,
    driver: tokio::task::JoinHandle<()>,
    /// The shared sockets this endpoint is attached to (one per local IP).
    muxes: Vec<Arc<Mux>>,
    endpoint: EndpointKey,
}

impl fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpTransport")
            .field("local_addrs", &self.local_addrs)
            .field("local_udp_addrs", &self.local_udp_addrs)
            .field("associations", &self.known.len())
            .finish()
    }
}

impl Drop for UdpTransport {
    fn drop(&mut self) {
        self.driver.abort();
        for m in &self.muxes {
            m.detach(self.endpoint);
        }
    }
}

/// Opens (or joins) the process's UDP sockets for `ips`, one per IP, all on
/// one UDP port, following [`UdpConfig::zero_config`]; may choose the SCTP
/// port of a listening endpoint.
fn open_muxes(
    ips: &[IpAddr],
    udp: &UdpConfig,
    listen: bool,
    sctp_port: &mut u16,
) -> Result<Vec<Arc<Mux>>, TransportError> {
    let open_all = |port: u16| -> Result<Vec<Arc<Mux>>, (u16, io::Error)> {
        let mut v: Vec<Arc<Mux>> = Vec::new();
        let mut port = port;
        for ip in ips {
            let m =
                Mux::open(SocketAddr::new(*ip, port), udp.socket_buffer).map_err(|e| (port, e))?;
            if port == 0 {
                // All local IPs share the UDP port the first bind picked.
                port = m.local_addr().port();
            }
            v.push(m);
        }
        Ok(v)
    };
    let failed = |(port, e): (u16, io::Error)| {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        TransportError::Io(format!("bind {} udp port {port}: {e}", ips.join(",")))
    };
    if !udp.zero_config {
        return open_all(udp.udp_port).map_err(failed);
    }
    if udp.udp_port != 0 {
        match open_all(udp.udp_port) {
            Ok(v) => return Ok(v),
            Err((_, e)) if e.kind() == io::ErrorKind::AddrInUse => {
                debug!(
                    port = udp.udp_port,
                    "udp port taken by another process; choosing another"
                );
            }
            Err(e) => return Err(failed(e)),
        }
    }
    if !listen {
        return open_all(0).map_err(failed);
    }
    // Peers try the UDP port equal to our SCTP port when the preferred
    // one does not answer for it.
    let v = open_all(*sctp_port).map_err(failed)?;
    if *sctp_port == 0 {
        *sctp_port = v[0].local_addr().port();
    }
    Ok(v)
}

fn local_udp_addrs_of(muxes: &[Arc<Mux>]) -> Vec<SocketAddr> {
    muxes.iter().map(|m| m.local_addr()).collect()
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl UdpTransport {
    /// Binds an endpoint: one UDP socket on [`UdpConfig::udp_port`] for each
    /// distinct local IP of `config.local_addrs` (IPv4 and IPv6 may be
    /// mixed; none means `0.0.0.0`), and starts its driver on the current
    /// tokio runtime. The SCTP port of `config.local_addrs` is the listening
    /// port (0 picks one).
    pub fn bind(config: EndpointConfig, udp: UdpConfig) -> Result<Self, TransportError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| TransportError::Io("UdpTransport::bind needs a tokio runtime".into()))?;
        config.transport.validate()?;
        if udp.mtu < 512 || udp.mtu > 65_000 {
            return Err(TransportError::InvalidConfig(
                "mtu must be within 512..=65000".into(),
            ));
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for a in &config.local_addrs {
            if !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
        if ips.is_empty() {
            ips.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        }
        let mut sctp_port = config
            .local_addrs
            .iter()
            .map(|a| a.port())
            .find(|p| *p != 0)
            .unwrap_or(0);

        let _guard = rt.enter();
        let muxes = open_muxes(&ips, &udp, config.listen, &mut sctp_port)?;
        let endpoint = mux::endpoint_key();
        if config.listen {
            let free = |p: u16| muxes.iter().all(|m| !m.taken(p, endpoint));
            if sctp_port == 0 {
                sctp_port = loop {
                    let p = 1024 + (rand_u32() % 40_000) as u16;
                    if free(p) {
                        break p;
                    }
                };
            }
            if !free(sctp_port) {
                return Err(TransportError::Io(format!(
                    "SCTP port {sctp_port} is already in use in this process"
                )));
            }
            for m in &muxes {
                m.claim(sctp_port, endpoint);
            }
        }
        let (in_tx, in_rx) = mpsc::channel(mux::INBOUND_BATCHES);
        for (i, m) in muxes.iter().enumerate() {
            m.attach(endpoint, i, in_tx.clone());
        }
        let local_udp_addrs = local_udp_addrs_of(&muxes);
        let local_addrs = ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, sctp_port))
            .collect();

        let shared = Arc::new(Shared {
            next_assoc: AtomicU64::new(1),
            live: AtomicUsize::new(0),
            queued_events: AtomicUsize::new(0),
            counters: Counters::default(),
        });
        let (cmd_tx, cmd_rx) = mpsc::channel(4096);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let core = Endpoint::new(
            local_udp_addrs_of(&muxes),
            Box::new(driver::MuxPorts {
                muxes: muxes.clone(),
                endpoint,
            }),
            config.listen.then_some(sctp_port),
            config.transport.clone(),
            udp.clone(),
            shared.clone(),
            Seeds {
                cookie_secret: sctp_proto::random_secret(),
                first_port: rand_u32() as u16,
            },
            std::time::Instant::now(),
        );
        let driver = driver::Driver {
            endpoint: core,
            muxes: muxes.clone(),
            inbound: in_rx,
            commands: cmd_rx,
            events: ev_tx,
            shared: shared.clone(),
            udp,
            tx: Vec::new(),
            out: Vec::new(),
        };
        let handle = rt.spawn(driver.run());
        Ok(UdpTransport {
            commands: cmd_tx,
            events: ev_rx,
            shared,
            local_addrs,
            local_udp_addrs,
            config: config.transport,
            known: HashSet::new(),
            driver: handle,
            muxes,
            endpoint,
        })
    }

    /// The UDP addresses the endpoint's sockets are bound to.
    pub fn local_udp_addrs(&self) -> Vec<SocketAddr> {
        self.local_udp_addrs.clone()
    }

    /// A snapshot of the backend's counters.
    pub fn stats(&self) -> UdpStats {
        let mut s = self
            .shared
            .counters
            .snapshot(self.shared.live.load(Ordering::Relaxed));
        s.socket_drops = self.muxes.iter().map(|m| m.dropped()).sum();
        s
    }

    async fn command(&mut self, c: Command) -> Result<(), TransportError> {
        self.commands
            .send(c)
            .await
            .map_err(|_| TransportError::EndpointClosed)
    }
}

impl Transport for UdpTransport {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.clone()
    }

    fn max_message_size(&self) -> usize {
        self.config.max_message_size
    }

    async fn connect(
        &mut self,
        peer_addrs: &[SocketAddr],
    ) -> Result<AssociationId, TransportError> {
        let peers: Vec<SocketAddr> = peer_addrs
            .iter()
            .copied()
            .filter(|p| {
                p.port() != 0
                    && self
                        .local_udp_addrs
                        .iter()
                        .any(|l| l.is_ipv4() == canonical(p.ip()).is_ipv4())
            })
            .collect();
        if peers.is_empty() {
            return Err(TransportError::InvalidAddress(format!(
                "no usable peer address in {peer_addrs:?} (port 0 or no local socket of that family)"
            )));
        }
        if self.shared.live.load(Ordering::Relaxed) >= self.config.max_associations {
            return Err(TransportError::LimitReached("associations"));
        }
        let assoc = AssociationId(self.shared.next_assoc.fetch_add(1, Ordering::Relaxed));
        self.command(Command::Connect { assoc, peers }).await?;
        self.known.insert(assoc);
        Ok(assoc)
    }

    async fn send(
        &mut self,
        assoc: AssociationId,
        stream: u16,
        ppid: Ppid,
        unordered: bool,
        data: Bytes,
    ) -> Result<(), TransportError> {
        check_size(data.len(), self.config.max_message_size)?;
        if stream >= self.config.streams {
            return Err(TransportError::InvalidStream(stream));
        }
        if !self.known.contains(&assoc) {
            return Err(TransportError::UnknownAssociation(assoc));
        }
        self.command(Command::Send {
            assoc,
            stream,
            ppid,
            unordered,
            data,
        })
        .await
    }

    async fn close(&mut self, assoc: AssociationId, mode: CloseMode) -> Result<(), TransportError> {
        if !self.known.contains(&assoc) {
            return Err(TransportError::UnknownAssociation(assoc));
        }
        self.command(Command::Close { assoc, mode }).await
    }

    async fn next_event(&mut self) -> Result<Event, TransportError> {
        let ev = self
            .events
            .recv()
            .await
            .ok_or(TransportError::EndpointClosed)?;
        self.shared.queued_events.fetch_sub(1, Ordering::Relaxed);
        match &ev {
            Event::AssociationUp { assoc, .. } => {
                self.known.insert(*assoc);
            }
            Event::AssociationDown { assoc, .. } => {
                self.known.remove(assoc);
            }
            Event::Message(_) => {}
        }
        Ok(ev)
    }
}

fn rand_u32() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

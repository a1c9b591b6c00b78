//! Userland SCTP encapsulated in UDP (RFC 6951), on the vendored `sctp-proto`.
//!
//! One tokio task (the *driver*) owns the UDP sockets and every association;
//! the [`UdpTransport`] handle talks to it through channels. The driver
//! demultiplexes packets itself, by remote IP + remote SCTP port + local SCTP
//! port (never by UDP port, which a NAT or the peer may change), so it uses
//! `sctp-proto`'s associations but not its `Endpoint`.
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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sctp_proto::{
    Association, AssociationError, Event as SctpEvent, Payload, PayloadProtocolIdentifier,
    ReliabilityType, Side as SctpSide, StreamEvent, TransportConfig as SctpConfig,
};
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

mod mux;
mod socket;

use mux::{EndpointKey, Inbound, Mux};
use socket::send_batch;

use super::{
    AssociationId, CloseMode, CloseReason, EndpointConfig, Event, Message, Ppid, Side, Transport,
    TransportConfig, TransportError, check_size,
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
        let local_udp_addrs = muxes.iter().map(|m| m.local_addr()).collect();
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
        let driver = Driver::new(
            muxes.clone(),
            endpoint,
            in_rx,
            config.listen.then_some(sctp_port),
            config.transport.clone(),
            udp,
            shared.clone(),
            cmd_rx,
            ev_tx,
        );
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

// ---------------------------------------------------------------------------
// Driver

/// Seconds since the Unix epoch (the State Cookie's clock; wall time, so it
/// survives nothing but is comparable across the cookie's short life).
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// At most `limit` events per one-second window.
#[derive(Default)]
struct RateLimit {
    window: Option<(Instant, u32)>,
}

impl RateLimit {
    fn allow(&mut self, now: Instant, limit: u32) -> bool {
        match &mut self.window {
            Some((start, n)) if now.duration_since(*start) < Duration::from_secs(1) => {
                if *n >= limit {
                    return false;
                }
                *n += 1;
            }
            w => *w = Some((now, 1)),
        }
        true
    }
}

/// (remote IP, remote SCTP port, local SCTP port).
type Key = (IpAddr, u16, u16);

struct Conn {
    assoc: Association,
    key: Key,
    side: Side,
    /// Where to send: remote IP and its current UDP encapsulation port.
    peer_udp: SocketAddr,
    /// Other UDP ports the handshake is also sent to until the peer answers
    /// from one of them ([`UdpConfig::zero_config`]).
    probe: Vec<u16>,
    /// UDP ports tried during the handshake that turned out to be other
    /// processes: their late answers (an ABORT for our INIT) are ignored.
    shunned: Vec<u16>,
    /// Index into the driver's sockets.
    sock: usize,
    up: bool,
    /// Handshake deadline (until established) for the current address.
    handshake_deadline: Option<Instant>,
    /// Deadline of the whole connect over all addresses (client only).
    connect_deadline: Instant,
    /// Remaining addresses to try if the handshake fails (client only).
    fallback: Vec<SocketAddr>,
    /// The timer instant last pushed to the heap.
    armed: Option<Instant>,
    /// Unordered flag per stream as last configured in sctp-proto.
    unordered_streams: HashSet<u16>,
    /// Closed; remove after its last packets are sent.
    dead: bool,
    /// Its state machine panicked: never touch it again, only remove it.
    poisoned: bool,
}

struct Driver {
    /// The shared sockets, one per local IP; `Conn::sock` indexes them.
    muxes: Vec<Arc<Mux>>,
    /// This endpoint, as the muxes know it.
    endpoint: EndpointKey,
    /// Datagrams for this endpoint's SCTP ports, from every mux.
    inbound: mpsc::Receiver<Vec<Inbound>>,
    listen_port: Option<u16>,
    config: TransportConfig,
    udp: UdpConfig,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    /// Local SCTP ports of our outgoing associations (port -> count).
    used_ports: HashMap<u16, usize>,
    /// Associations peers started, by the peer's IP (so that one host
    /// cannot take every association slot).
    per_source: HashMap<IpAddr, usize>,
    conns: HashMap<AssociationId, Conn>,
    routes: HashMap<Key, AssociationId>,
    timers: BinaryHeap<Reverse<(Instant, AssociationId)>>,
    dirty: Vec<AssociationId>,
    /// Signs the State Cookies of this endpoint.
    cookie_secret: [u8; 32],
    init_acks: RateLimit,
    next_local_port: u16,
    max_payload: u32,
    ootb_window: (Instant, u32),
    out_events: Vec<Event>,
    /// Packets gathered by a flush, sent together at its end.
    tx_queue: Vec<(usize, SocketAddr, Bytes)>,
}

const CT_INIT: u8 = 1;
const CT_ABORT: u8 = 6;
const CT_SHUTDOWN_ACK: u8 = 8;
const CT_COOKIE_ECHO: u8 = 10;
const CT_SHUTDOWN_COMPLETE: u8 = 14;

/// The common header and first chunk of a packet, enough to route it.
struct Header {
    src_port: u16,
    dst_port: u16,
    vtag: u32,
    first_chunk: u8,
    first_flags: u8,
    /// The Initiate Tag of an INIT (0 otherwise).
    initiate_tag: u32,
}

fn parse_header(p: &[u8]) -> Option<Header> {
    if p.len() < 16 {
        return None;
    }
    let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let first_chunk = p[12];
    let initiate_tag = if first_chunk == CT_INIT && p.len() >= 20 {
        u32_at(16)
    } else {
        0
    };
    Some(Header {
        src_port: u16_at(0),
        dst_port: u16_at(2),
        vtag: u32_at(4),
        first_chunk,
        first_flags: p[13],
        initiate_tag,
    })
}

fn checksum_ok(p: &[u8]) -> bool {
    let want = u32::from_le_bytes([p[8], p[9], p[10], p[11]]);
    let crc = crc32c::crc32c(&p[..8]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &p[12..]) == want
}

/// A packet with one chunk of `chunk_type` without value (RFC 9260 8.4).
///
/// `reflected`: the tag is the one the packet carried, so the T bit is set
/// (ABORT or SHUTDOWN-COMPLETE for an out-of-the-blue packet); otherwise the
/// tag is an INIT's Initiate Tag and T stays clear (RFC 9260 8.4 rule 3), or
/// the initiator drops the ABORT and only gives up at its handshake timeout.
fn reflected_packet(h: &Header, chunk_type: u8, vtag: u32, reflected: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(16);
    b.put_u16(h.dst_port);
    b.put_u16(h.src_port);
    b.put_u32(vtag);
    b.put_u32(0);
    b.put_u8(chunk_type);
    b.put_u8(u8::from(reflected));
    b.put_u16(4);
    let crc = crc32c::crc32c(&b);
    b[8..12].copy_from_slice(&crc.to_le_bytes());
    b.freeze()
}

fn map_reason(reason: &AssociationError, up: bool) -> CloseReason {
    if !up {
        return CloseReason::HandshakeFailed;
    }
    match reason {
        AssociationError::ShutdownComplete => CloseReason::Graceful,
        AssociationError::TimedOut => CloseReason::Lost,
        _ => CloseReason::Aborted,
    }
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    fn new(
        muxes: Vec<Arc<Mux>>,
        endpoint: EndpointKey,
        inbound: mpsc::Receiver<Vec<Inbound>>,
        listen_port: Option<u16>,
        config: TransportConfig,
        udp: UdpConfig,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        // SCTP packet = 12-byte common header + 16-byte DATA chunk header +
        // payload; leave room for a bundled SACK with a few gap blocks.
        let max_payload = (udp.mtu - 12 - 16 - 32) as u32;
        Driver {
            muxes,
            endpoint,
            inbound,
            listen_port,
            config,
            udp,
            shared,
            commands,
            events,
            used_ports: HashMap::new(),
            per_source: HashMap::new(),
            conns: HashMap::new(),
            routes: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            cookie_secret: sctp_proto::random_secret(),
            init_acks: RateLimit::default(),
            next_local_port: 49152 + (rand_u32() % 16_000) as u16,
            max_payload,
            ootb_window: (Instant::now(), 0),
            out_events: Vec::new(),
            tx_queue: Vec::new(),
        }
    }

    fn sctp_config(&self, local_port: u16, remote_port: u16) -> Arc<SctpConfig> {
        let t = &self.config;
        let ms = |d: Duration| (d.as_millis() as u64).max(1);
        let max_msg = t.max_message_size as u32;
        // The receive window must hold the largest message plus what is
        // in flight behind it, or reassembly would run out of room.
        let rwnd = (max_msg.saturating_mul(2)).max(1 << 20);
        // Delayed SACK well below the minimum RTO, so an unanswered message is
        // acknowledged before the sender's retransmission timer fires.
        let sack_delay = (ms(t.rto_min) / 3).clamp(1, 200);
        Arc::new(
            SctpConfig::default()
                .with_local_port(local_port)
                .with_remote_port(remote_port)
                .with_max_send_message_size(max_msg)
                .with_max_receive_message_size(max_msg)
                .with_max_receive_buffer_size(rwnd)
                .with_max_num_outbound_streams(t.streams)
                .with_max_num_inbound_streams(t.streams)
                .with_rto_initial_ms(ms(t.rto_initial))
                .with_rto_min_ms(ms(t.rto_min))
                .with_rto_max_ms(ms(t.rto_max))
                // The driver's handshake deadline bounds INIT retries.
                .with_max_init_retransmits(None)
                .with_max_data_retransmits(None)
                .with_heartbeat_interval_ms(ms(t.heartbeat_interval))
                .with_dead_peer_timeout_ms(ms(t.dead_peer_timeout))
                .with_sack_delay_ms(sack_delay),
        )
    }

    async fn run(mut self) {
        loop {
            let next_timer = self.next_timer();
            let sleep = async {
                match next_timer {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    self.handle_command(cmd);
                    // Batch: take what else is queued without waiting.
                    for _ in 0..256 {
                        match self.commands.try_recv() {
                            Ok(c) => self.handle_command(c),
                            Err(_) => break,
                        }
                    }
                }
                batch = self.inbound.recv(), if !self.paused() => {
                    let Some(batch) = batch else { return };
                    self.handle_batch(batch);
                    self.drain_inbound();
                }
                () = sleep => {}
                // Reading is paused: look again soon.
                () = tokio::time::sleep(Duration::from_millis(5)), if self.paused() => {}
            }
            self.handle_timers();
            if !self.flush().await {
                return;
            }
        }
    }

    fn paused(&self) -> bool {
        self.shared.queued_events.load(Ordering::Relaxed) >= EVENT_HIGH_WATER
    }

    fn handle_batch(&mut self, batch: Vec<Inbound>) {
        for d in batch {
            match d.from {
                Some(from) => self.handle_datagram(d.tag, from, d.data),
                None => inc(&self.shared.counters.malformed),
            }
        }
    }

    /// Takes what is already queued, up to a batch limit.
    fn drain_inbound(&mut self) {
        for _ in 0..64 {
            if self.paused() {
                break;
            }
            match self.inbound.try_recv() {
                Ok(batch) => self.handle_batch(batch),
                Err(_) => break,
            }
        }
    }

    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            match self.conns.get(&id) {
                Some(c) if c.armed == Some(t) || c.handshake_deadline == Some(t) => return Some(t),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    fn handle_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.poisoned {
                continue;
            }
            if c.handshake_deadline.is_some_and(|d| d <= now) && !c.up {
                c.handshake_deadline = None;
                inc(&self.shared.counters.handshake_timeouts);
                self.handshake_failed(id, now);
                continue;
            }
            if c.armed == Some(t) {
                c.armed = None;
                c.assoc.handle_timeout(now);
                self.mark_dirty(id);
                self.process_events(id);
            }
        }
    }

    fn mark_dirty(&mut self, id: AssociationId) {
        self.dirty.push(id);
    }

    fn alloc_local_port(&mut self, remote_ip: IpAddr, remote_port: u16) -> Option<u16> {
        // A listening endpoint opens its first association to a peer from
        // its listening port, as a one-to-many kernel socket does: the peer
        // records that address (a registrar stores it as the PE's ASAP
        // transport) and other nodes must reach this endpoint there.
        if let Some(l) = self.listen_port {
            if !self.routes.contains_key(&(remote_ip, remote_port, l)) {
                return Some(l);
            }
        }
        for _ in 0..16_384 {
            let p = self.next_local_port;
            self.next_local_port = if p == u16::MAX { 49_152 } else { p + 1 };
            if Some(p) == self.listen_port {
                continue;
            }
            // Unique among all our associations, not only towards this peer:
            // that keeps each association's source port its own, as kernel
            // peers expect.
            if self.used_ports.contains_key(&p)
                || self.routes.contains_key(&(remote_ip, remote_port, p))
                || self.muxes.iter().any(|m| m.taken(p, self.endpoint))
            {
                continue;
            }
            return Some(p);
        }
        None
    }

    fn socket_for(&self, ip: IpAddr) -> Option<usize> {
        self.muxes
            .iter()
            .position(|m| m.local_addr().is_ipv4() == ip.is_ipv4())
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Connect { assoc, peers } => self.start_connect(assoc, peers, None),
            Command::Send {
                assoc,
                stream,
                ppid,
                unordered,
                data,
            } => self.send(assoc, stream, ppid, unordered, data),
            Command::Close { assoc, mode } => {
                let Some(c) = self.conns.get_mut(&assoc) else {
                    return;
                };
                if c.dead {
                    return;
                }
                // Closing a connecting association ends the whole connect.
                c.fallback.clear();
                match mode {
                    CloseMode::Abort => c.assoc.abort(),
                    CloseMode::Graceful => {
                        if c.assoc.is_established() {
                            if let Err(e) = c.assoc.shutdown() {
                                debug!(%assoc, %e, "shutdown");
                            }
                        } else if !c.assoc.is_closing() {
                            // Not up yet (or already closing): nothing to
                            // drain, so end it now.
                            c.assoc.abort();
                        }
                    }
                }
                self.mark_dirty(assoc);
                self.process_events(assoc);
            }
        }
    }

    fn start_connect(
        &mut self,
        id: AssociationId,
        mut peers: Vec<SocketAddr>,
        deadline: Option<Instant>,
    ) {
        let now = Instant::now();
        let deadline = deadline.unwrap_or(now + self.config.handshake_timeout);
        let peer = peers.remove(0);
        let ip = canonical(peer.ip());
        let (Some(sock), Some(local_port)) =
            (self.socket_for(ip), self.alloc_local_port(ip, peer.port()))
        else {
            self.emit(Event::AssociationDown {
                assoc: id,
                reason: CloseReason::HandshakeFailed,
            });
            return;
        };
        let cfg = self.sctp_config(local_port, peer.port());
        let remote = SocketAddr::new(ip, peer.port());
        let assoc = Association::new_unbound(SctpSide::Client, cfg, self.max_payload, remote, now);
        // Split the handshake time over the addresses still to try.
        let share = deadline.saturating_duration_since(now) / (peers.len() as u32 + 1);
        let key = (ip, peer.port(), local_port);
        let conn = Conn {
            assoc,
            key,
            side: Side::Client,
            peer_udp: SocketAddr::new(ip, self.udp.remote_udp_port),
            probe: if self.udp.probe_peer_port && peer.port() != self.udp.remote_udp_port {
                vec![peer.port()]
            } else {
                Vec::new()
            },
            shunned: Vec::new(),
            sock,
            up: false,
            handshake_deadline: Some(now + share),
            connect_deadline: deadline,
            fallback: peers,
            armed: None,
            unordered_streams: HashSet::new(),
            dead: false,
            poisoned: false,
        };
        self.timers.push(Reverse((now + share, id)));
        self.routes.insert(key, id);
        let n = self.used_ports.entry(local_port).or_insert(0);
        *n += 1;
        if *n == 1 {
            // Other endpoints of the process share the sockets: the port
            // routes this association's packets here.
            for m in &self.muxes {
                m.claim(local_port, self.endpoint);
            }
        }
        self.conns.insert(id, conn);
        self.shared.live.fetch_add(1, Ordering::Relaxed);
        self.mark_dirty(id);
    }

    fn send(&mut self, id: AssociationId, stream: u16, ppid: Ppid, unordered: bool, data: Bytes) {
        let Some(c) = self.conns.get_mut(&id) else {
            // Already gone; its AssociationDown is queued or delivered.
            trace!(%id, "send to a closed association dropped");
            return;
        };
        if c.dead {
            return;
        }
        let ppi = PayloadProtocolIdentifier::from(ppid.0);
        if c.assoc.stream(stream).is_err()
            && let Err(e) = c.assoc.open_stream(stream, ppi)
        {
            debug!(%id, stream, %e, "open stream");
            return;
        }
        let was_unordered = c.unordered_streams.contains(&stream);
        let Ok(mut st) = c.assoc.stream(stream) else {
            return;
        };
        // A peer that does not drain (small window, no SACKs) must not grow
        // this process without bound: beyond the limit, messages are dropped
        // and counted, as a full socket buffer would refuse them.
        if st.buffered_amount().unwrap_or(0) + data.len() > self.config.max_queued_bytes {
            inc(&self.shared.counters.queue_drops);
            debug!(%id, stream, "send queue full: message dropped");
            return;
        }
        if was_unordered != unordered {
            if let Err(e) = st.set_reliability_params(unordered, ReliabilityType::Reliable, 0) {
                debug!(%id, stream, %e, "stream parameters");
                return;
            }
            if unordered {
                c.unordered_streams.insert(stream);
            } else {
                c.unordered_streams.remove(&stream);
            }
        }
        if let Err(e) = st.write_sctp(&data, ppi) {
            // Closing or closed: the message goes down with the association.
            debug!(%id, stream, %e, "write");
            return;
        }
        self.mark_dirty(id);
    }

    fn emit(&mut self, ev: Event) {
        self.out_events.push(ev);
    }

    fn handle_datagram(&mut self, sock: usize, from: SocketAddr, data: Bytes) {
        let counters = &self.shared.counters;
        inc(&counters.datagrams_in);
        if let Some(cap) = &self.udp.capture {
            cap(
                Direction::Incoming,
                from,
                self.muxes[sock].local_addr(),
                &data,
            );
        }
        let Some(h) = parse_header(&data) else {
            inc(&counters.malformed);
            trace!(%from, len = data.len(), "short datagram dropped");
            return;
        };
        let ip = canonical(from.ip());
        let from = SocketAddr::new(ip, from.port());
        let key = (ip, h.src_port, h.dst_port);
        let now = Instant::now();
        if let Some(&id) = self.routes.get(&key) {
            let Some(c) = self.conns.get_mut(&id) else {
                self.routes.remove(&key);
                return;
            };
            let my_tag = c.assoc.my_verification_tag();
            let peer_tag = c.assoc.peer_verification_tag();
            let t_bit = h.first_flags & 1 == 1;
            let tag_ok = match h.first_chunk {
                // A fresh INIT on a live association: a restarted peer or a
                // spoof. Established ones ignore it (the restarted peer will
                // ABORT our next packet); handshaking ones handle collisions.
                CT_INIT => h.vtag == 0 && !c.up,
                CT_ABORT | CT_SHUTDOWN_COMPLETE if t_bit => h.vtag == peer_tag && peer_tag != 0,
                _ => h.vtag == my_tag,
            };
            if !tag_ok {
                inc(&counters.bad_vtag);
                debug!(%id, %from, chunk = h.first_chunk, "packet with wrong verification tag dropped");
                return;
            }
            let port = from.port();
            if !c.probe.is_empty() {
                let tried = port == c.peer_udp.port() || c.probe.contains(&port);
                if h.first_chunk == CT_ABORT && !c.up && tried {
                    // A process without the peer's SCTP port answered one
                    // of the ports we tried: keep to the others.
                    if port == c.peer_udp.port() {
                        c.peer_udp = SocketAddr::new(c.peer_udp.ip(), c.probe.remove(0));
                    } else {
                        c.probe.retain(|p| *p != port);
                    }
                    c.shunned.push(port);
                    debug!(%id, %from, "no such SCTP port behind this UDP port; trying the others");
                    return;
                }
                if port == c.peer_udp.port() || c.probe.contains(&port) {
                    let answered = port;
                    let others = std::mem::take(&mut c.probe);
                    c.shunned.extend(
                        others
                            .iter()
                            .chain([&c.peer_udp.port()])
                            .filter(|p| **p != answered),
                    );
                }
            }
            if c.shunned.contains(&port) {
                inc(&counters.bad_vtag);
                debug!(%id, %from, "packet from a UDP port the handshake ruled out dropped");
                return;
            }
            // RFC 6951 5.5: follow the peer's UDP source port.
            c.peer_udp = from;
            c.sock = sock;
            // sctp-proto is fuzzed (see its vendored tests), but a parser
            // bug must cost one association, not the whole endpoint.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.assoc.handle_packet(now, from, data)
            }));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    inc(&counters.bad_packets);
                    debug!(%id, %from, %e, "bad packet dropped");
                    return;
                }
                Err(_) => {
                    inc(&counters.bad_packets);
                    warn!(%id, %from, "association state machine panicked on a packet; association dropped");
                    c.poisoned = true;
                    self.finish(id, CloseReason::Aborted);
                    return;
                }
            }
            self.mark_dirty(id);
            self.process_events(id);
            return;
        }

        // Out of the blue (RFC 9260 8.4).
        inc(&counters.out_of_the_blue);
        if !checksum_ok(&data) {
            inc(&counters.bad_packets);
            debug!(%from, "out-of-the-blue packet with bad checksum dropped");
            return;
        }
        match h.first_chunk {
            CT_INIT if h.vtag == 0 => self.accept_init(sock, from, &h, data, now),
            CT_COOKIE_ECHO if Some(h.dst_port) == self.listen_port => {
                self.accept_cookie(sock, from, &h, data, now)
            }
            CT_ABORT | CT_SHUTDOWN_COMPLETE => {}
            CT_SHUTDOWN_ACK => {
                let reply = reflected_packet(&h, CT_SHUTDOWN_COMPLETE, h.vtag, true);
                self.reply_ootb(sock, from, reply, now);
            }
            CT_INIT => {
                inc(&counters.bad_vtag);
            }
            _ => {
                let reply = reflected_packet(&h, CT_ABORT, h.vtag, true);
                self.reply_ootb(sock, from, reply, now);
            }
        }
    }

    /// Answers an INIT on the listening port with an INIT-ACK whose State
    /// Cookie holds the whole handshake state (RFC 9260 5.1.3): an INIT
    /// flood costs CPU and (rate-limited) replies, never memory.
    fn accept_init(
        &mut self,
        sock: usize,
        from: SocketAddr,
        h: &Header,
        data: Bytes,
        now: Instant,
    ) {
        if Some(h.dst_port) != self.listen_port || h.initiate_tag == 0 {
            // Nobody listens on that port: refuse like a closed port.
            let reply = reflected_packet(h, CT_ABORT, h.initiate_tag, false);
            if h.initiate_tag != 0 {
                self.reply_ootb(sock, from, reply, now);
            }
            return;
        }
        if self.shared.live.load(Ordering::Relaxed) >= self.config.max_associations
            || self.source_full(from.ip())
            || !self.init_acks.allow(now, self.udp.init_acks_per_sec)
        {
            inc(&self.shared.counters.inits_dropped);
            debug!(%from, "INIT dropped: association limit or INIT-ACK rate reached");
            return;
        }
        let cfg = self.sctp_config(h.dst_port, h.src_port);
        let secret = self.cookie_secret;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Association::stateless_init_ack(&data, from.ip(), &secret, unix_secs(), &cfg)
        }));
        match r {
            Ok(Ok(init_ack)) => {
                inc(&self.shared.counters.init_acks);
                self.send_datagram(sock, from, &init_ack);
            }
            Ok(Err(e)) => {
                inc(&self.shared.counters.bad_packets);
                debug!(%from, %e, "bad INIT dropped");
            }
            Err(_) => {
                inc(&self.shared.counters.bad_packets);
                warn!(%from, "INIT handling panicked; dropped");
            }
        }
    }

    /// A COOKIE-ECHO for no known association: if its cookie is ours,
    /// valid and fresh, the association starts here, established.
    fn accept_cookie(
        &mut self,
        sock: usize,
        from: SocketAddr,
        h: &Header,
        data: Bytes,
        now: Instant,
    ) {
        let counters = &self.shared.counters;
        if self.shared.live.load(Ordering::Relaxed) >= self.config.max_associations
            || self.source_full(from.ip())
        {
            inc(&counters.inits_dropped);
            debug!(%from, "COOKIE-ECHO dropped: association limit reached");
            return;
        }
        let cfg = self.sctp_config(h.dst_port, h.src_port);
        let lifetime = self.config.handshake_timeout.as_secs() + 1;
        let (secret, max_payload) = (self.cookie_secret, self.max_payload);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Association::accept_cookie_echo(
                data,
                from,
                &secret,
                unix_secs(),
                lifetime,
                cfg,
                max_payload,
                now,
            )
        }));
        let assoc = match r {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                // Forged, stale or for another endpoint: RFC 9260 5.1.5
                // says to discard silently.
                inc(&counters.bad_packets);
                debug!(%from, %e, "COOKIE-ECHO refused");
                return;
            }
            Err(_) => {
                inc(&counters.bad_packets);
                warn!(%from, "COOKIE-ECHO handling panicked; dropped");
                return;
            }
        };
        let id = AssociationId(self.shared.next_assoc.fetch_add(1, Ordering::Relaxed));
        let key = (from.ip(), h.src_port, h.dst_port);
        self.conns.insert(
            id,
            Conn {
                assoc,
                key,
                side: Side::Server,
                peer_udp: from,
                probe: Vec::new(),
                shunned: Vec::new(),
                sock,
                up: false,
                handshake_deadline: None,
                connect_deadline: now,
                fallback: Vec::new(),
                armed: None,
                unordered_streams: HashSet::new(),
                dead: false,
                poisoned: false,
            },
        );
        self.routes.insert(key, id);
        *self.per_source.entry(from.ip()).or_insert(0) += 1;
        self.shared.live.fetch_add(1, Ordering::Relaxed);
        self.mark_dirty(id);
        self.process_events(id);
    }

    /// Whether peers at `ip` hold as many associations as one source may.
    fn source_full(&self, ip: IpAddr) -> bool {
        self.per_source.get(&ip).copied().unwrap_or(0) >= self.config.max_associations_per_source
    }

    fn reply_ootb(&mut self, sock: usize, to: SocketAddr, pkt: Bytes, now: Instant) {
        let (start, n) = self.ootb_window;
        if now.duration_since(start) >= Duration::from_secs(1) {
            self.ootb_window = (now, 0);
        } else if n >= self.udp.ootb_replies_per_sec {
            return;
        }
        self.ootb_window.1 += 1;
        inc(&self.shared.counters.ootb_replies);
        self.send_datagram(sock, to, &pkt);
    }

    fn send_datagram(&self, sock: usize, to: SocketAddr, pkt: &[u8]) -> bool {
        let s = self.muxes[sock].socket();
        if let Some(cap) = &self.udp.capture {
            cap(Direction::Outgoing, self.muxes[sock].local_addr(), to, pkt);
        }
        match s.try_send_to(pkt, to) {
            Ok(_) => {
                inc(&self.shared.counters.datagrams_out);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => {
                // E.g. ECONNREFUSED from an earlier ICMP: SCTP's own
                // retransmission and dead-peer logic handle the loss.
                inc(&self.shared.counters.send_errors);
                debug!(%to, %e, "udp send error");
                inc(&self.shared.counters.datagrams_out);
                true
            }
        }
    }

    /// Handles the association's application events right away (after each
    /// packet), so data is read before a close in a later packet of the same
    /// batch removes the streams.
    fn process_events(&mut self, id: AssociationId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut out = Vec::new();
        let mut lost: Option<AssociationError> = None;
        let mut handshake_failed = false;
        while let Some(ev) = c.assoc.poll() {
            match ev {
                SctpEvent::Connected if !c.up => {
                    c.up = true;
                    c.handshake_deadline = None;
                    out.push(Event::AssociationUp {
                        assoc: id,
                        side: c.side,
                        peer_addrs: vec![SocketAddr::new(c.key.0, c.key.1)],
                    });
                }
                SctpEvent::Stream(StreamEvent::Readable { id: sid }) => {
                    if let Ok(mut st) = c.assoc.stream(sid) {
                        while let Ok(Some(m)) = st.read_sctp() {
                            out.push(Event::Message(Message {
                                assoc: id,
                                stream: sid,
                                ppid: Ppid(m.ppi.to_u32()),
                                unordered: m.is_unordered(),
                                data: m.to_bytes(),
                            }));
                        }
                    }
                }
                SctpEvent::Stream(StreamEvent::Opened { .. }) => {
                    // Streams are addressed by number; drop the accept queue
                    // entry so it cannot grow.
                    while c.assoc.accept_stream().is_some() {}
                }
                SctpEvent::HandshakeFailed { reason } => {
                    debug!(%id, %reason, "handshake failed");
                    handshake_failed = true;
                }
                SctpEvent::AssociationLost { reason } => {
                    lost = Some(reason);
                }
                _ => {}
            }
        }
        // Messages that became readable without an event of their own (the
        // Readable event fires once per stream until it is drained).
        let up = c.up;
        self.out_events.extend(out);
        if (handshake_failed || lost.is_some()) && !up {
            // Includes an ABORT in reply to our INIT: try the next address.
            self.handshake_failed(id, Instant::now());
        } else if let Some(reason) = lost {
            self.finish(id, map_reason(&reason, up));
        }
    }

    fn remove_conn(&mut self, id: AssociationId) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        self.shared.live.fetch_sub(1, Ordering::Relaxed);
        if c.side == Side::Server
            && let Some(n) = self.per_source.get_mut(&c.key.0)
        {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&c.key.0);
            }
        }
        if c.side == Side::Client
            && let Some(n) = self.used_ports.get_mut(&c.key.2)
        {
            *n -= 1;
            if *n == 0 {
                self.used_ports.remove(&c.key.2);
                if Some(c.key.2) != self.listen_port {
                    for m in &self.muxes {
                        m.release(c.key.2, self.endpoint);
                    }
                }
            }
        }
    }

    fn handshake_failed(&mut self, id: AssociationId, now: Instant) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.dead {
            return;
        }
        if c.side == Side::Client && !c.fallback.is_empty() {
            let peers = std::mem::take(&mut c.fallback);
            let key = c.key;
            // The remaining addresses share what is left of the overall
            // handshake time.
            let deadline = c.connect_deadline.max(now + Duration::from_millis(1));
            self.remove_conn(id);
            self.routes.remove(&key);
            self.start_connect(id, peers, Some(deadline));
            return;
        }
        // Tell a server-side half-open peer nothing: it never got COOKIE-ACK.
        c.assoc.abort();
        self.finish(id, CloseReason::HandshakeFailed);
    }

    /// Ends an association: reports it (client-side handshakes and
    /// established ones only) and schedules removal after the last flush.
    fn finish(&mut self, id: AssociationId, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.dead {
            return;
        }
        c.dead = true;
        let report = c.up || c.side == Side::Client;
        let key = c.key;
        if self.routes.get(&key) == Some(&id) {
            self.routes.remove(&key);
        }
        self.mark_dirty(id);
        if report {
            self.emit(Event::AssociationDown { assoc: id, reason });
        }
    }

    /// Sends what the touched associations want to send, re-arms their
    /// timers, removes finished ones and hands events to the user. Returns
    /// false when the user side is gone.
    async fn flush(&mut self) -> bool {
        let now = Instant::now();
        // Associations that close while being flushed are marked dirty again
        // and sent their last packets (ABORT, SHUTDOWN-COMPLETE) next round.
        for _ in 0..8 {
            let mut dirty = std::mem::take(&mut self.dirty);
            if dirty.is_empty() {
                break;
            }
            dirty.sort_unstable();
            dirty.dedup();
            self.flush_round(now, dirty);
        }
        self.transmit().await;
        let n = self.out_events.len();
        self.shared.queued_events.fetch_add(n, Ordering::Relaxed);
        for ev in self.out_events.drain(..) {
            if self.events.send(ev).is_err() {
                return false;
            }
        }
        true
    }

    /// Sends the gathered packets, per socket in order, as few system calls
    /// as possible (`sendmmsg` on Linux). A full socket buffer is waited
    /// out rather than dropping packets.
    async fn transmit(&mut self) {
        let q = std::mem::take(&mut self.tx_queue);
        if q.is_empty() {
            self.tx_queue = q;
            return;
        }
        if let Some(cap) = &self.udp.capture {
            for (sock, to, p) in &q {
                cap(Direction::Outgoing, self.muxes[*sock].local_addr(), *to, p);
            }
        }
        if self.muxes.len() == 1 {
            self.send_all(0, &q).await;
        } else {
            for sock in 0..self.muxes.len() {
                let part: Vec<(usize, SocketAddr, Bytes)> =
                    q.iter().filter(|x| x.0 == sock).cloned().collect();
                if !part.is_empty() {
                    self.send_all(sock, &part).await;
                }
            }
        }
        let mut q = q;
        q.clear();
        self.tx_queue = q;
    }

    async fn send_all(&self, sock: usize, pkts: &[(usize, SocketAddr, Bytes)]) {
        let s = self.muxes[sock].socket();
        let counters = &self.shared.counters;
        let mut i = 0;
        while i < pkts.len() {
            match send_batch(s, &pkts[i..]) {
                Ok(n) => {
                    counters
                        .datagrams_out
                        .fetch_add(n as u64, Ordering::Relaxed);
                    i += n.max(1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Socket buffer full: wait for room rather than drop.
                    let _ = s.writable().await;
                }
                Err(e) => {
                    // E.g. ECONNREFUSED from an earlier ICMP: SCTP's own
                    // retransmission and dead-peer logic handle the loss.
                    inc(&counters.send_errors);
                    debug!(to = %pkts[i].1, %e, "udp send error");
                    i += 1;
                }
            }
        }
    }

    fn flush_round(&mut self, now: Instant, dirty: Vec<AssociationId>) {
        for id in dirty {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.poisoned {
                self.remove_conn(id);
                continue;
            }
            let (sock, to) = (c.sock, c.peer_udp);
            let probe = c.probe.clone();
            let mut packets = Vec::new();
            while let Some(t) = c.assoc.poll_transmit(now) {
                if let Payload::RawEncode(v) = t.payload {
                    packets.extend(v);
                }
            }
            let timeout = c.assoc.poll_timeout();
            let dead = c.dead;
            if !dead && timeout != c.armed {
                c.armed = timeout;
                if let Some(t) = timeout {
                    self.timers.push(Reverse((t, id)));
                }
            }
            for p in packets {
                for port in &probe {
                    self.tx_queue
                        .push((sock, SocketAddr::new(to.ip(), *port), p.clone()));
                }
                self.tx_queue.push((sock, to, p));
            }
            if dead {
                self.remove_conn(id);
            } else {
                // Transmitting can change state (e.g. SHUTDOWN-COMPLETE sent
                // closes the initiator); pick up the resulting events.
                self.process_events(id);
            }
        }
    }
}

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
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sctp_proto::{
    Association, AssociationError, Event as SctpEvent, Payload, PayloadProtocolIdentifier,
    ReliabilityType, Side as SctpSide, StreamEvent, TransportConfig as SctpConfig,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

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
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn make_socket(addr: SocketAddr, buffer: usize) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Keep families apart: IPv4 peers go through the IPv4 socket, so
        // association keys never see IPv4-mapped IPv6 addresses.
        s.set_only_v6(true)?;
    }
    // Failure to enlarge buffers is not fatal, only slower under bursts.
    if let Err(e) = s.set_recv_buffer_size(buffer) {
        debug!(%e, "SO_RCVBUF");
    }
    if let Err(e) = s.set_send_buffer_size(buffer) {
        debug!(%e, "SO_SNDBUF");
    }
    force_buffers(&s, buffer);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// The kernel caps SO_RCVBUF/SO_SNDBUF at `net.core.[rw]mem_max`; a process
/// with CAP_NET_ADMIN may exceed it with the FORCE variants.
#[cfg(target_os = "linux")]
fn force_buffers(s: &socket2::Socket, buffer: usize) {
    use std::os::fd::AsRawFd;
    if s.recv_buffer_size().unwrap_or(0) >= buffer {
        return;
    }
    let v: libc::c_int = buffer.min(i32::MAX as usize) as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt on a valid fd with a c_int option value of the
        // size we pass; failure (EPERM) is reported through the return value.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            trace!("forcing socket buffer size not permitted");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn force_buffers(_: &socket2::Socket, _: usize) {}

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
        if sctp_port == 0 && config.listen {
            sctp_port = 1024 + (rand_u32() % 40_000) as u16;
        }

        let _guard = rt.enter();
        let mut sockets = Vec::new();
        let mut udp_port = udp.udp_port;
        for ip in &ips {
            let std_sock = make_socket(SocketAddr::new(*ip, udp_port), udp.socket_buffer)
                .map_err(|e| TransportError::Io(format!("bind {ip} udp port {udp_port}: {e}")))?;
            let sock = UdpSocket::from_std(std_sock)?;
            if udp_port == 0 {
                // All local IPs share the UDP port the first bind picked.
                udp_port = sock.local_addr()?.port();
            }
            sockets.push(sock);
        }
        let local_udp_addrs = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
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
            sockets,
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
        })
    }

    /// The UDP addresses the endpoint's sockets are bound to.
    pub fn local_udp_addrs(&self) -> Vec<SocketAddr> {
        self.local_udp_addrs.clone()
    }

    /// A snapshot of the backend's counters.
    pub fn stats(&self) -> UdpStats {
        self.shared
            .counters
            .snapshot(self.shared.live.load(Ordering::Relaxed))
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
    sockets: Vec<UdpSocket>,
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
    fn new(
        sockets: Vec<UdpSocket>,
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
            sockets,
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
        let mut bufs: Vec<Vec<u8>> = self.sockets.iter().map(|_| vec![0u8; 65_536]).collect();
        let mut rx = RecvBatch::new();
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
                first = recv_any(&self.sockets, &mut bufs), if !self.paused() => {
                    match first {
                        Ok((idx, from, len)) => {
                            let data = Bytes::copy_from_slice(&bufs[idx][..len]);
                            self.handle_datagram(idx, from, data);
                            self.drain_sockets(&mut rx);
                        }
                        Err(e) => {
                            // ICMP errors surface here on some systems; they
                            // are not fatal for an unconnected socket.
                            debug!(%e, "udp receive error");
                        }
                    }
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

    /// Reads what is already queued on the sockets, up to a batch limit.
    fn drain_sockets(&mut self, rx: &mut RecvBatch) {
        for _ in 0..64 {
            if self.paused() {
                break;
            }
            let mut got = false;
            for idx in 0..self.sockets.len() {
                match rx.recv(&self.sockets[idx]) {
                    Ok(n) => {
                        got |= n > 0;
                        for i in 0..n {
                            let (from, data) = rx.take(i);
                            match from {
                                Some(from) => self.handle_datagram(idx, from, data),
                                None => inc(&self.shared.counters.malformed),
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => debug!(%e, "udp receive error"),
                }
            }
            if !got {
                break;
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
            {
                continue;
            }
            return Some(p);
        }
        None
    }

    fn socket_for(&self, ip: IpAddr) -> Option<usize> {
        self.sockets.iter().position(|s| {
            s.local_addr()
                .map(|l| l.is_ipv4() == ip.is_ipv4())
                .unwrap_or(false)
        })
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
        *self.used_ports.entry(local_port).or_insert(0) += 1;
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
        if let Some(cap) = &self.udp.capture
            && let Ok(local) = self.sockets[sock].local_addr()
        {
            cap(Direction::Incoming, from, local, &data);
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
        let s = &self.sockets[sock];
        if let Some(cap) = &self.udp.capture
            && let Ok(local) = s.local_addr()
        {
            cap(Direction::Outgoing, local, to, pkt);
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
                if let Ok(local) = self.sockets[*sock].local_addr() {
                    cap(Direction::Outgoing, local, *to, p);
                }
            }
        }
        if self.sockets.len() == 1 {
            self.send_all(0, &q).await;
        } else {
            for sock in 0..self.sockets.len() {
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
        let s = &self.sockets[sock];
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
            self.tx_queue
                .extend(packets.into_iter().map(|p| (sock, to, p)));
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

/// Receive buffers for reading several datagrams per system call.
struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    /// (source, length, truncated) of the datagrams of the last `recv`.
    got: Vec<(Option<SocketAddr>, usize, bool)>,
}

/// Datagrams per `recvmmsg`. Each buffer holds the largest UDP payload, as
/// a peer's packets are not bounded by our MTU.
#[cfg(target_os = "linux")]
const RECV_BATCH: usize = 16;
#[cfg(not(target_os = "linux"))]
const RECV_BATCH: usize = 1;

impl RecvBatch {
    fn new() -> Self {
        RecvBatch {
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; 65_536]).collect(),
            got: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Datagram `i` of the last `recv`: its source (None if unusable or
    /// truncated, which the caller counts as malformed) and bytes.
    fn take(&self, i: usize) -> (Option<SocketAddr>, Bytes) {
        let (from, len, truncated) = self.got[i];
        let from = if truncated { None } else { from };
        (from, Bytes::copy_from_slice(&self.bufs[i][..len]))
    }

    /// Reads what is queued (up to the batch size) without waiting.
    #[cfg(target_os = "linux")]
    fn recv(&mut self, s: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let n = self.bufs.len();
        // SAFETY: sockaddr_storage is plain old data; zero is valid.
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; n];
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let (addr_base, iov_base) = (addrs.as_mut_ptr(), iovs.as_mut_ptr());
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                // SAFETY: mmsghdr is plain old data; zero is valid.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: i < n = addrs.len() = iovs.len(); both vectors
                // outlive the recvmmsg call.
                unsafe {
                    m.msg_hdr.msg_name = addr_base.add(i) as *mut libc::c_void;
                    m.msg_hdr.msg_iov = iov_base.add(i);
                }
                m.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let got = s.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: `msgs` holds n initialised headers pointing into
            // `addrs`, `iovs` and `self.bufs`, all alive and not otherwise
            // borrowed during the call.
            let r = unsafe {
                libc::recvmmsg(
                    s.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as usize)
            }
        })?;
        self.got.clear();
        for (m, a) in msgs.iter().zip(&addrs).take(got) {
            let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.got
                .push((sockaddr_to_std(a), m.msg_len as usize, truncated));
        }
        Ok(got)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv(&mut self, s: &UdpSocket) -> io::Result<usize> {
        let (len, from) = s.try_recv_from(&mut self.bufs[0])?;
        self.got.clear();
        self.got.push((Some(from), len, false));
        Ok(1)
    }
}

#[cfg(target_os = "linux")]
fn sockaddr_to_std(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match a.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(v6.sin6_port)))
        }
        _ => None,
    }
}

/// Sends up to 64 datagrams with one `sendmmsg`; returns how many went out.
#[cfg(target_os = "linux")]
fn send_batch(s: &UdpSocket, pkts: &[(usize, SocketAddr, Bytes)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    const MAX: usize = 64;
    let pkts = &pkts[..pkts.len().min(MAX)];
    let addrs: Vec<socket2::SockAddr> = pkts.iter().map(|(_, a, _)| (*a).into()).collect();
    let mut iovs: Vec<libc::iovec> = pkts
        .iter()
        .map(|(_, _, p)| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let iov_base = iovs.as_mut_ptr();
    let mut msgs: Vec<libc::mmsghdr> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = a.as_ptr() as *mut libc::c_void;
            m.msg_hdr.msg_namelen = a.len();
            // SAFETY: i < iovs.len(); the pointer stays valid while `iovs`
            // lives, which outlasts the call below.
            m.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    s.try_io(tokio::io::Interest::WRITABLE, || {
        // SAFETY: `msgs` points at `msgs.len()` initialised headers whose
        // names, iovecs and buffers (`addrs`, `iovs`, `pkts`) are alive and
        // unchanged for the duration of the call.
        let n = unsafe {
            libc::sendmmsg(
                s.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Sends one datagram; returns how many went out.
#[cfg(not(target_os = "linux"))]
fn send_batch(s: &UdpSocket, pkts: &[(usize, SocketAddr, Bytes)]) -> io::Result<usize> {
    s.try_send_to(&pkts[0].2, pkts[0].1).map(|_| 1)
}

/// Waits until one of the sockets has a datagram and reads it into that
/// socket's buffer.
async fn recv_any(
    sockets: &[UdpSocket],
    bufs: &mut [Vec<u8>],
) -> io::Result<(usize, SocketAddr, usize)> {
    std::future::poll_fn(|cx| {
        for (i, s) in sockets.iter().enumerate() {
            let mut rb = tokio::io::ReadBuf::new(&mut bufs[i]);
            match s.poll_recv_from(cx, &mut rb) {
                Poll::Ready(Ok(from)) => return Poll::Ready(Ok((i, from, rb.filled().len()))),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

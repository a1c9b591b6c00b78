//! The sans-IO core of SCTP over UDP: demultiplexing packets to
//! associations by (remote IP, remote SCTP port, local SCTP port),
//! verification tags, out-of-the-blue handling (RFC 9260 §8.4), the
//! stateless cookie handshake (§5.1.3), zero-configuration port probing,
//! connect fallback over a peer's addresses, and the `sctp-proto`
//! associations themselves. Time comes from the caller; nothing here
//! touches a socket or a channel.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sctp_proto::{
    Association, AssociationError, Event as SctpEvent, Payload, PayloadProtocolIdentifier,
    ReliabilityType, Side as SctpSide, StreamEvent, TransportConfig as SctpConfig,
};
use tracing::{debug, trace, warn};

use super::{Command, Shared, UdpConfig, canonical, inc};
use crate::transport::{
    AssociationId, CloseMode, CloseReason, Event, Message, Ppid, Side, TransportConfig,
};

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

/// The SCTP-over-UDP endpoint without I/O: datagrams, commands and time
/// go in; datagrams to send ([`Endpoint::take_transmits`]), events for the
/// user ([`Endpoint::take_events`]) and the next deadline
/// ([`Endpoint::poll_timeout`]) come out. The driver feeds it from the
/// sockets and the handle; tests feed it from another endpoint.
pub(super) struct Endpoint {
    /// The local UDP addresses, one per socket; `Conn::sock` indexes them.
    local_udp: Vec<SocketAddr>,
    /// Which local SCTP ports other endpoints sharing the sockets own.
    ports: Box<dyn PortClaims>,
    listen_port: Option<u16>,
    config: TransportConfig,
    udp: UdpConfig,
    shared: Arc<Shared>,
    /// The time of the call being handled.
    now: Instant,
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

/// SCTP ports of other endpoints that share this endpoint's sockets.
pub(super) trait PortClaims: Send + Sync {
    /// Whether another endpoint has `port`.
    fn taken(&self, port: u16) -> bool;
    /// Routes `port` to this endpoint.
    fn claim(&mut self, port: u16);
    /// Gives `port` back.
    fn release(&mut self, port: u16);
}

/// An endpoint alone on its sockets.
#[cfg(test)]
pub(super) struct Unshared;

#[cfg(test)]
impl PortClaims for Unshared {
    fn taken(&self, _: u16) -> bool {
        false
    }
    fn claim(&mut self, _: u16) {}
    fn release(&mut self, _: u16) {}
}

/// Randomness an endpoint draws once, from its caller.
pub(super) struct Seeds {
    /// Key of the State Cookies' HMAC.
    pub cookie_secret: [u8; 32],
    /// Where the search for free local ports starts (49152..).
    pub first_port: u16,
}

impl Endpoint {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        local_udp: Vec<SocketAddr>,
        ports: Box<dyn PortClaims>,
        listen_port: Option<u16>,
        config: TransportConfig,
        udp: UdpConfig,
        shared: Arc<Shared>,
        seeds: Seeds,
        now: Instant,
    ) -> Self {
        // SCTP packet = 12-byte common header + 16-byte DATA chunk header +
        // payload; leave room for a bundled SACK with a few gap blocks.
        let max_payload = (udp.mtu - 12 - 16 - 32) as u32;
        Endpoint {
            local_udp,
            ports,
            listen_port,
            config,
            udp,
            shared,
            now,
            used_ports: HashMap::new(),
            per_source: HashMap::new(),
            conns: HashMap::new(),
            routes: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            cookie_secret: seeds.cookie_secret,
            init_acks: RateLimit::default(),
            next_local_port: 49152 + seeds.first_port % 16_000,
            max_payload,
            ootb_window: (now, 0),
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

    /// The next instant [`Endpoint::handle_timeout`] has work.
    pub(super) fn poll_timeout(&mut self) -> Option<Instant> {
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

    /// Runs the timers due at `now`.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
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
                || self.ports.taken(p)
            {
                continue;
            }
            return Some(p);
        }
        None
    }

    fn socket_for(&self, ip: IpAddr) -> Option<usize> {
        self.local_udp
            .iter()
            .position(|l| l.is_ipv4() == ip.is_ipv4())
    }

    /// A command of the handle.
    pub(super) fn handle_command(&mut self, now: Instant, cmd: Command) {
        self.now = now;
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
        let now = self.now;
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
            self.ports.claim(local_port);
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

    /// A datagram that arrived on socket `sock` from `from`.
    pub(super) fn handle_datagram(
        &mut self,
        now: Instant,
        sock: usize,
        from: SocketAddr,
        data: Bytes,
    ) {
        self.now = now;
        let counters = &self.shared.counters;
        inc(&counters.datagrams_in);
        let Some(h) = parse_header(&data) else {
            inc(&counters.malformed);
            trace!(%from, len = data.len(), "short datagram dropped");
            return;
        };
        let ip = canonical(from.ip());
        let from = SocketAddr::new(ip, from.port());
        let key = (ip, h.src_port, h.dst_port);
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
                self.queue(sock, from, init_ack);
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
        self.queue(sock, to, pkt);
    }

    /// Queues a packet made outside an association (INIT-ACK, OOTB reply).
    fn queue(&mut self, sock: usize, to: SocketAddr, pkt: Bytes) {
        self.tx_queue.push((sock, to, pkt));
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
            self.handshake_failed(id, self.now);
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
                    self.ports.release(c.key.2);
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

    /// Gathers what the touched associations want to send, re-arms their
    /// timers and removes finished ones; then the packets are in
    /// [`Endpoint::take_transmits`] and the events in
    /// [`Endpoint::take_events`].
    pub(super) fn flush(&mut self, now: Instant) {
        self.now = now;
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
    }

    /// Packets to send: (socket index, UDP destination, bytes), in order.
    pub(super) fn take_transmits(&mut self, into: &mut Vec<(usize, SocketAddr, Bytes)>) {
        into.append(&mut self.tx_queue);
    }

    /// Events for the user, in order.
    pub(super) fn take_events(&mut self, into: &mut Vec<Event>) {
        into.append(&mut self.out_events);
    }

    /// Associations that exist (any state).
    #[cfg(test)]
    pub(super) fn association_count(&self) -> usize {
        self.conns.len()
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

#[cfg(test)]
mod tests {
    //! Two endpoints wired to each other in memory: every packet one sends
    //! is handed to the other at once, on virtual time.
    use super::*;
    use crate::transport::udp::Counters;
    use std::sync::atomic::{AtomicU64, AtomicUsize};

    const A_UDP: &str = "10.0.0.1:9899";

    /// Fixed ports, handshakes to the usual port only.
    fn plain() -> UdpConfig {
        UdpConfig {
            probe_peer_port: false,
            ..UdpConfig::default()
        }
    }
    const B_UDP: &str = "10.0.0.2:9899";

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            next_assoc: AtomicU64::new(1),
            live: AtomicUsize::new(0),
            queued_events: AtomicUsize::new(0),
            counters: Counters::default(),
        })
    }

    fn endpoint(udp_at: &str, listen: Option<u16>, udp: UdpConfig, now: Instant) -> Endpoint {
        Endpoint::new(
            vec![udp_at.parse().unwrap()],
            Box::new(Unshared),
            listen,
            TransportConfig::default(),
            udp,
            shared(),
            Seeds {
                cookie_secret: [7; 32],
                first_port: 1,
            },
            now,
        )
    }

    /// A network of endpoints by UDP address; packets to an address
    /// nobody has are lost (and counted).
    struct Net {
        now: Instant,
        nodes: Vec<(SocketAddr, Endpoint)>,
        events: Vec<Vec<Event>>,
        lost: Vec<(SocketAddr, Bytes)>,
        /// Every packet sent: (from, to, first chunk type).
        log: Vec<(SocketAddr, SocketAddr, u8)>,
    }

    impl Net {
        fn new(nodes: Vec<(&str, Endpoint)>, now: Instant) -> Self {
            let n = nodes.len();
            Net {
                now,
                nodes: nodes
                    .into_iter()
                    .map(|(a, e)| (a.parse().unwrap(), e))
                    .collect(),
                events: vec![Vec::new(); n],
                lost: Vec::new(),
                log: Vec::new(),
            }
        }

        /// Flushes every endpoint and delivers packets until all is quiet.
        fn settle(&mut self) {
            for _ in 0..100 {
                let mut moved = false;
                for i in 0..self.nodes.len() {
                    let from = self.nodes[i].0;
                    let e = &mut self.nodes[i].1;
                    e.flush(self.now);
                    e.take_events(&mut self.events[i]);
                    let mut tx = Vec::new();
                    e.take_transmits(&mut tx);
                    for (_, to, pkt) in tx {
                        moved = true;
                        self.log.push((from, to, pkt.get(12).copied().unwrap_or(0)));
                        match self.nodes.iter_mut().find(|(a, _)| *a == to) {
                            Some((_, peer)) => peer.handle_datagram(self.now, 0, from, pkt),
                            None => self.lost.push((to, pkt)),
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("the endpoints never went quiet");
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            for (_, e) in &mut self.nodes {
                e.handle_timeout(self.now);
            }
            self.settle();
        }

        fn command(&mut self, i: usize, c: Command) {
            self.nodes[i].1.handle_command(self.now, c);
            self.settle();
        }

        fn up(&self, i: usize) -> Option<AssociationId> {
            self.events[i].iter().find_map(|e| match e {
                Event::AssociationUp { assoc, .. } => Some(*assoc),
                _ => None,
            })
        }

        fn messages(&self, i: usize) -> Vec<Bytes> {
            self.events[i]
                .iter()
                .filter_map(|e| match e {
                    Event::Message(m) => Some(m.data.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    fn connect(to: &str) -> Command {
        Command::Connect {
            assoc: AssociationId(1),
            peers: vec![to.parse().unwrap()],
        }
    }

    fn send(assoc: AssociationId, data: &'static [u8]) -> Command {
        Command::Send {
            assoc,
            stream: 0,
            ppid: Ppid::ASAP,
            unordered: false,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn handshake_and_data_both_ways() {
        let now = Instant::now();
        let a = endpoint(A_UDP, None, plain(), now);
        let b = endpoint(B_UDP, Some(3863), plain(), now);
        let mut net = Net::new(vec![(A_UDP, a), (B_UDP, b)], now);
        net.command(0, connect("10.0.0.2:3863"));
        let ca = net.up(0).expect("up at the client");
        let sb = net.up(1).expect("up at the server");
        net.command(0, send(ca, b"ping"));
        net.command(1, send(sb, b"pong"));
        assert_eq!(net.messages(1), vec![Bytes::from_static(b"ping")]);
        assert_eq!(net.messages(0), vec![Bytes::from_static(b"pong")]);
        // Four-way handshake: INIT, INIT-ACK, COOKIE-ECHO, COOKIE-ACK first.
        let kinds: Vec<u8> = net.log.iter().map(|l| l.2).take(4).collect();
        assert_eq!(kinds, vec![1, 2, 10, 11]);
        assert!(net.lost.is_empty());
    }

    /// RFC 9260 §5.1.3: an INIT costs the listener no state; only a valid
    /// COOKIE-ECHO creates the association.
    #[test]
    fn an_init_leaves_no_state_behind() {
        let now = Instant::now();
        let mut b = endpoint(B_UDP, Some(3863), plain(), now);
        let mut a = endpoint(A_UDP, None, plain(), now);
        a.handle_command(now, connect("10.0.0.2:3863"));
        a.flush(now);
        let mut tx = Vec::new();
        a.take_transmits(&mut tx);
        let (_, _, init) = tx.pop().expect("an INIT");
        b.handle_datagram(now, 0, A_UDP.parse().unwrap(), init);
        b.flush(now);
        let mut answer = Vec::new();
        b.take_transmits(&mut answer);
        assert_eq!(answer.len(), 1);
        assert_eq!(answer[0].2[12], 2, "INIT-ACK");
        assert_eq!(b.association_count(), 0);
        // A forged COOKIE-ECHO (a cookie that is not ours) is dropped.
        let mut forged = answer[0].2.to_vec();
        forged[12] = 10;
        b.handle_datagram(now, 0, A_UDP.parse().unwrap(), Bytes::from(forged));
        b.flush(now);
        assert_eq!(b.association_count(), 0);
    }

    /// RFC 9260 §8.4: an INIT for a port nobody listens on gets an ABORT
    /// with the initiate tag and T clear; other stray packets an ABORT with
    /// the tag reflected (T set); a stray ABORT gets nothing.
    #[test]
    fn out_of_the_blue_packets_get_the_rfc_answers() {
        let now = Instant::now();
        let a = endpoint(A_UDP, None, plain(), now);
        let b = endpoint(B_UDP, Some(3863), plain(), now);
        let mut net = Net::new(vec![(A_UDP, a), (B_UDP, b)], now);
        net.command(0, connect("10.0.0.2:4000"));
        assert!(net.up(0).is_none());
        let abort = net.log.iter().find(|l| l.0 == B_UDP.parse().unwrap());
        assert_eq!(abort.map(|l| l.2), Some(6), "{:?}", net.log);
        assert!(matches!(
            net.events[0].as_slice(),
            [Event::AssociationDown {
                reason: CloseReason::HandshakeFailed,
                ..
            }]
        ));
        let counters = &net.nodes[1].1.shared.counters;
        assert_eq!(counters.out_of_the_blue.load(Ordering::Relaxed), 1);
        assert_eq!(counters.ootb_replies.load(Ordering::Relaxed), 1);
    }

    /// A packet with the wrong verification tag never reaches the
    /// association.
    #[test]
    fn a_wrong_verification_tag_is_dropped_and_counted() {
        let now = Instant::now();
        let a = endpoint(A_UDP, None, plain(), now);
        let b = endpoint(B_UDP, Some(3863), plain(), now);
        let mut net = Net::new(vec![(A_UDP, a), (B_UDP, b)], now);
        net.command(0, connect("10.0.0.2:3863"));
        let ca = net.up(0).unwrap();
        // A's next DATA with its tag changed.
        net.nodes[0].1.handle_command(now, send(ca, b"spoofed"));
        net.nodes[0].1.flush(now);
        let mut tx = Vec::new();
        net.nodes[0].1.take_transmits(&mut tx);
        let mut pkt = tx[0].2.to_vec();
        pkt[4] ^= 0xff;
        let crc = {
            pkt[8..12].copy_from_slice(&[0; 4]);
            crc32c::crc32c(&pkt)
        };
        pkt[8..12].copy_from_slice(&crc.to_le_bytes());
        net.nodes[1]
            .1
            .handle_datagram(now, 0, A_UDP.parse().unwrap(), Bytes::from(pkt));
        net.settle();
        assert!(net.messages(1).is_empty());
        let counters = &net.nodes[1].1.shared.counters;
        assert_eq!(counters.bad_vtag.load(Ordering::Relaxed), 1);
        // The real packet still goes through (retransmitted by A).
        net.advance(Duration::from_secs(2));
        assert_eq!(net.messages(1), vec![Bytes::from_static(b"spoofed")]);
    }

    /// Zero configuration: the handshake goes to the usual port and to the
    /// UDP port equal to the peer's SCTP port; an ABORT from a process
    /// without that SCTP port is ignored and the other answer kept.
    #[test]
    fn probing_finds_the_peer_on_its_own_udp_port() {
        let now = Instant::now();
        let zero = UdpConfig {
            zero_config: true,
            ..UdpConfig::default()
        };
        // B listens on SCTP port 40000 at UDP port 40000; the usual port
        // 9899 at that IP is another process (it has SCTP port 3863 only).
        let a = endpoint(A_UDP, None, zero.clone(), now);
        let b = endpoint("10.0.0.2:40000", Some(40000), zero.clone(), now);
        let other = endpoint(B_UDP, Some(3863), zero, now);
        let mut net = Net::new(vec![(A_UDP, a), ("10.0.0.2:40000", b), (B_UDP, other)], now);
        net.command(0, connect("10.0.0.2:40000"));
        let ca = net.up(0).expect("up through the probe");
        assert!(net.up(1).is_some());
        net.command(0, send(ca, b"found"));
        assert_eq!(net.messages(1), vec![Bytes::from_static(b"found")]);
        // The other process answered the INIT with an ABORT, which did not
        // end the handshake; later packets go to the port that answered.
        assert!(
            net.log
                .iter()
                .any(|l| l.0 == B_UDP.parse().unwrap() && l.2 == 6)
        );
        let after_up: Vec<_> = net
            .log
            .iter()
            .filter(|l| l.0 == A_UDP.parse().unwrap() && l.2 == 0)
            .collect();
        assert!(!after_up.is_empty());
        assert!(after_up.iter().all(|l| l.1.port() == 40000));
    }
}

//! Kernel SCTP backend (Linux): one-to-many (`SOCK_SEQPACKET`) sockets driven
//! through the `lksctp` crate.
//!
//! Why one-to-many: a registrar serves thousands of associations and also
//! connects out to its peers; one socket does both, and the kernel reports
//! every association's life through notifications on that same socket, in
//! order with the data. That ordering is what lets this backend derive the
//! trait's events (up, message, down with a reason) without races.
//!
//! SCTP allows one association per pair of endpoints, so a second
//! association to a peer that this endpoint's socket is already associated
//! with (the kernel says `EISCONN`) gets a socket of its own on an ephemeral
//! port, closed with its association. Each socket has a reader task that
//! reassembles partial deliveries and feeds one channel, which keeps
//! `next_event` cancel-safe and the per-socket order intact.
//!
//! The kernel's association ids (`sctp_assoc_t`) are mapped to the trait's
//! never-reused [`AssociationId`]s, so a stale id cannot hit a new
//! association even if the kernel recycles its ids.
//!
//! Where the kernel has no SCTP module (many build hosts and CI runners),
//! [`probe`] says so, and the caller falls back to SCTP over UDP.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lksctp::{
    AssocChangeState, AssocId, AssocInfo, EventType, Family, InitParams, Notification,
    PeerAddrParams, RecvMsg, RtoInfo, SctpEndpoint, SctpSocket, SendFlags, SendInfo, SppFlags,
    Style,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    AssociationId, CloseMode, CloseReason, EndpointConfig, Event, Message, Ppid, Side, Transport,
    TransportError, check_size,
};

/// Socket buffer size requested for both directions. Large buffers keep a
/// burst of handle-table traffic from stalling a registrar; the kernel caps
/// `SO_SNDBUF`/`SO_RCVBUF` at `net.core.[rw]mem_max` unless the process may
/// force them.
const SOCKET_BUFFER: usize = 4 << 20;

/// Items buffered between the reader tasks and `next_event`; beyond this
/// the readers wait, the kernel's receive buffers fill and SCTP flow
/// control slows the peers down.
const CHANNEL_DEPTH: usize = 1024;

/// Size of one `recvmsg` read. Messages larger than this arrive in pieces
/// (partial delivery) and are reassembled; a smaller buffer only costs more
/// system calls.
const RECV_CHUNK: usize = 64 << 10;

/// Options of the kernel backend that the shared [`EndpointConfig`] does not
/// cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// Send SCTP encapsulated in UDP (RFC 6951) to this remote UDP port
    /// (`SCTP_REMOTE_UDP_ENCAPS_PORT`), e.g. 9899 to reach a userland SCTP
    /// stack. Receiving encapsulated packets additionally needs the
    /// system-wide `sysctl net.sctp.udp_port` (root); `None` sends plain SCTP.
    pub udp_encap_port: Option<u16>,
}

/// Checks whether this kernel can create SCTP sockets.
///
/// The error is what `socket(2)` said (typically "Protocol not supported"
/// when the `sctp` module is missing or cannot be loaded).
pub fn probe() -> io::Result<()> {
    SctpSocket::new(Family::Ipv4, Style::OneToMany).map(drop)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `connect` returned, the handshake is running.
    Pending { deadline: Instant },
    /// Established; `outstreams` is what the peer granted.
    Up { outstreams: u16 },
    /// Down and the event is queued; the id stays addressable (sends are
    /// dropped, like on a dead socket) until the event is consumed.
    Down,
}

/// Index of a socket of one endpoint; 0 is the one bound to the configured
/// addresses.
type SockIdx = u32;

/// A kernel association: the socket it lives on and the kernel's id there.
type Kid = (SockIdx, AssocId);

#[derive(Debug)]
struct Assoc {
    kid: Kid,
    side: Side,
    phase: Phase,
    /// Set by `close`; decides the reason when the kernel's notification
    /// alone is ambiguous.
    closing: Option<CloseMode>,
}

/// A message being reassembled from partial deliveries.
#[derive(Debug, Default)]
struct Partial {
    data: Vec<u8>,
    ppid: u32,
    unordered: bool,
    /// It grew past the size limit: drop the rest of it.
    discard: bool,
}

/// What a reader task passes on.
#[derive(Debug)]
enum Item {
    Notification(Notification),
    Message {
        kid: AssocId,
        stream: u16,
        ppid: u32,
        unordered: bool,
        data: Bytes,
    },
    /// The peer sent a message larger than the limit (reported once).
    Oversized {
        kid: AssocId,
        size: usize,
    },
    /// The socket failed for good.
    Failed(String),
}

/// One socket of an endpoint.
struct Sock {
    ep: Arc<SctpEndpoint>,
    reader: JoinHandle<()>,
}

impl Drop for Sock {
    fn drop(&mut self) {
        // The reader holds the other reference; stopping it closes the
        // socket (the kernel then ends its associations).
        self.reader.abort();
    }
}

/// Reads one socket until it fails or the endpoint goes away.
async fn reader(
    idx: SockIdx,
    ep: Arc<SctpEndpoint>,
    tx: mpsc::Sender<(SockIdx, Item)>,
    max_message: usize,
) {
    let mut buf = vec![0u8; RECV_CHUNK];
    let mut partial: HashMap<(AssocId, u16), Partial> = HashMap::new();
    loop {
        let item = match ep.recv_msg(&mut buf).await {
            Ok(RecvMsg::Notification(n)) => {
                match &n {
                    // The kernel gave up on a partially delivered message
                    // (its association died mid-message): its head is
                    // worthless.
                    Notification::PartialDelivery(p) => {
                        let stream = u16::try_from(p.stream).unwrap_or(u16::MAX);
                        partial.remove(&(p.assoc_id, stream));
                    }
                    Notification::AssocChange(c)
                        if !matches!(c.state, AssocChangeState::CommUp) =>
                    {
                        partial.retain(|(k, _), _| *k != c.assoc_id);
                    }
                    _ => {}
                }
                Some(Item::Notification(n))
            }
            Ok(RecvMsg::Data {
                len,
                info: Some(info),
                eor,
            }) => {
                let len = len.min(buf.len());
                let key = (info.assoc_id, info.sid);
                if eor && !partial.contains_key(&key) {
                    Some(if len > max_message {
                        Item::Oversized {
                            kid: info.assoc_id,
                            size: len,
                        }
                    } else {
                        Item::Message {
                            kid: info.assoc_id,
                            stream: info.sid,
                            ppid: info.ppid.0,
                            unordered: info.flags.unordered(),
                            data: Bytes::copy_from_slice(&buf[..len]),
                        }
                    })
                } else {
                    let p = partial.entry(key).or_insert_with(|| Partial {
                        ppid: info.ppid.0,
                        unordered: info.flags.unordered(),
                        ..Default::default()
                    });
                    let mut out = None;
                    if !p.discard {
                        let size = p.data.len() + len;
                        if size > max_message {
                            // Never buffer more than the limit of a hostile
                            // peer's message.
                            p.discard = true;
                            p.data = Vec::new();
                            out = Some(Item::Oversized {
                                kid: info.assoc_id,
                                size,
                            });
                        } else {
                            p.data.extend_from_slice(&buf[..len]);
                        }
                    }
                    if eor
                        && let Some(p) = partial.remove(&key)
                        && !p.discard
                    {
                        out = Some(Item::Message {
                            kid: info.assoc_id,
                            stream: info.sid,
                            ppid: p.ppid,
                            unordered: p.unordered,
                            data: Bytes::from(p.data),
                        });
                    }
                    out
                }
            }
            // Only a shut-down socket reads without metadata.
            Ok(RecvMsg::Data { info: None, .. }) => Some(Item::Failed("socket shut down".into())),
            Err(e) if transient(&e) => {
                tracing::debug!(error = %e, "SCTP receive error on one association");
                None
            }
            Err(e) => Some(Item::Failed(e.to_string())),
        };
        let Some(item) = item else { continue };
        let last = matches!(item, Item::Failed(_));
        if tx.send((idx, item)).await.is_err() || last {
            return;
        }
    }
}

/// A kernel SCTP endpoint implementing [`Transport`].
///
/// Must be created inside a tokio runtime (its sockets register with the
/// reactor and each gets a reader task).
pub struct KernelTransport {
    config: EndpointConfig,
    opts: KernelOptions,
    max_message: usize,
    local: Vec<SocketAddr>,
    socks: HashMap<SockIdx, Sock>,
    next_sock: SockIdx,
    tx: mpsc::Sender<(SockIdx, Item)>,
    rx: mpsc::Receiver<(SockIdx, Item)>,
    next_id: u64,
    assocs: HashMap<AssociationId, Assoc>,
    /// Live kernel associations -> our ids.
    by_kid: HashMap<Kid, AssociationId>,
    /// Kernel ids this side already reported down (local abort, handshake
    /// timeout, refused by the association limit); late notifications for
    /// them must not resurrect them as new associations.
    tombstones: HashSet<Kid>,
    events: VecDeque<Event>,
    /// ABORTs decided in synchronous code, sent at the next await point.
    aborts: Vec<Kid>,
}

impl std::fmt::Debug for KernelTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelTransport")
            .field("local", &self.local)
            .field("sockets", &self.socks.len())
            .field("associations", &self.assocs.len())
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Kernel sockets report IPv4 peers of an IPv6 socket as `::ffff:a.b.c.d`;
/// the trait speaks plain IPv4 for them.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// `struct sctp_udpencaps` from `<linux/sctp.h>`, which lksctp does not wrap.
#[repr(C)]
struct SctpUdpEncaps {
    sue_assoc_id: i32,
    sue_address: libc::sockaddr_storage,
    sue_port: u16,
}

fn set_udp_encap_port(sock: &SctpSocket, port: u16) -> io::Result<()> {
    // An all-zero (AF_UNSPEC) address with the FUTURE id makes it the
    // endpoint default, inherited by every association created afterwards.
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut v: SctpUdpEncaps = unsafe { mem::zeroed() };
    v.sue_assoc_id = AssocId::FUTURE.0;
    v.sue_port = port.to_be();
    // SAFETY: `v` lives across the call and the length matches its type.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            lksctp::sys::SOL_SCTP,
            lksctp::sys::SCTP_REMOTE_UDP_ENCAPS_PORT,
            (&v as *const SctpUdpEncaps).cast(),
            mem::size_of::<SctpUdpEncaps>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises a socket buffer past `net.core.*mem_max` where the process may
/// (CAP_NET_ADMIN); elsewhere the capped value stays.
fn force_buffer(sock: &SctpSocket, opt: libc::c_int, size: usize) {
    let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: `v` lives across the call and the length matches its type.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn setup_socket(
    config: &EndpointConfig,
    opts: &KernelOptions,
) -> io::Result<(SctpSocket, Vec<SocketAddr>)> {
    let t = &config.transport;
    let mut addrs = config.local_addrs.clone();
    let any_v6 = addrs.iter().any(|a| a.is_ipv6());
    let family = if addrs.is_empty() || any_v6 {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let sock = match SctpSocket::new(family, Style::OneToMany) {
        // An IPv6-less kernel can still serve an endpoint with no explicit
        // address over IPv4.
        Err(_) if addrs.is_empty() => SctpSocket::new(Family::Ipv4, Style::OneToMany)?,
        other => other?,
    };
    let v4_socket = sock.local_addr().map(|a| a.is_ipv4()).unwrap_or(false);
    if addrs.is_empty() {
        let ip = if v4_socket || family == Family::Ipv4 {
            IpAddr::from([0u8, 0, 0, 0])
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        addrs.push(SocketAddr::new(ip, 0));
    }
    let port = addrs
        .iter()
        .map(|a| a.port())
        .find(|p| *p != 0)
        .unwrap_or(0);
    for a in &mut addrs {
        a.set_port(port);
    }

    sock.set_reuse_address(true)?;
    sock.set_init_params(&InitParams {
        num_ostreams: t.streams,
        max_instreams: t.streams,
        max_attempts: 0,
        max_init_timeo: u16::try_from(t.rto_max.as_millis()).unwrap_or(u16::MAX),
    })?;
    let rto_min = millis(t.rto_min);
    let rto_max = millis(t.rto_max).max(rto_min);
    let rto_initial = millis(t.rto_initial).clamp(rto_min, rto_max);
    sock.set_rto_info(
        AssocId::FUTURE,
        &RtoInfo {
            initial: rto_initial,
            max: rto_max,
            min: rto_min,
        },
    )?;
    // The kernel declares a path dead after path_max_rxt unanswered
    // heartbeats/retransmissions, each taking up to heartbeat + RTO; pick the
    // largest count that stays within dead_peer_timeout.
    let per_try = millis(t.heartbeat_interval) as u64 + rto_max as u64;
    let tries = (t.dead_peer_timeout.as_millis() as u64 / per_try.max(1)).saturating_sub(1);
    let max_rxt = u16::try_from(tries.max(1)).unwrap_or(u16::MAX);
    sock.set_assoc_info(
        AssocId::FUTURE,
        &AssocInfo {
            asocmaxrxt: max_rxt,
            ..Default::default()
        },
    )?;
    sock.set_peer_addr_params(
        AssocId::FUTURE,
        None,
        &PeerAddrParams {
            hb_interval: millis(t.heartbeat_interval),
            path_max_rxt: max_rxt,
            flags: SppFlags::HB_ENABLE,
            ..Default::default()
        },
    )?;
    // RSerPool is request/response: waiting to bundle small messages only
    // adds latency (up to a delayed-SACK period per exchange).
    sock.set_nodelay(true)?;
    let want = SOCKET_BUFFER.max(t.max_message_size.saturating_mul(2));
    sock.set_send_buffer_size(want)?;
    sock.set_recv_buffer_size(want)?;
    if sock.send_buffer_size()? < want {
        force_buffer(&sock, libc::SO_SNDBUFFORCE, want);
        force_buffer(&sock, libc::SO_RCVBUFFORCE, want);
    }
    sock.subscribe_events(&[
        EventType::AssocChange,
        EventType::PeerAddrChange,
        EventType::PartialDelivery,
    ])?;
    if let Some(p) = opts.udp_encap_port {
        set_udp_encap_port(&sock, p)?;
    }
    sock.bindx_add(&addrs)?;
    if config.listen {
        sock.listen(1024)?;
    }
    Ok((sock, addrs))
}

impl KernelTransport {
    /// Binds an endpoint with default [`KernelOptions`]. See
    /// [`KernelTransport::bind_with`].
    pub fn bind(config: EndpointConfig) -> Result<Self, TransportError> {
        Self::bind_with(config, KernelOptions::default())
    }

    /// Binds an endpoint on all of `config.local_addrs` (multi-homed when
    /// there are several; IPv4 and IPv6 may be mixed), with the tunables of
    /// `config.transport` mapped to the kernel's socket options. An empty
    /// address list binds the wildcard address on an ephemeral port.
    pub fn bind_with(config: EndpointConfig, opts: KernelOptions) -> Result<Self, TransportError> {
        let (sock, requested) = setup_socket(&config, &opts)?;
        // A message must fit the send buffer whole, or the kernel refuses it
        // with EMSGSIZE; advertise what this socket can really carry.
        let sndbuf = sock.send_buffer_size()?;
        let max_message = config.transport.max_message_size.min(sndbuf);
        if max_message < config.transport.max_message_size {
            tracing::warn!(
                configured = config.transport.max_message_size,
                sndbuf,
                "kernel SCTP send buffer caps the message size (raise net.core.wmem_max)"
            );
        }
        let mut local: Vec<SocketAddr> = sock
            .local_addrs(AssocId::FUTURE)
            .unwrap_or_default()
            .into_iter()
            .map(canonical)
            .collect();
        if local.is_empty() {
            let port = sock.local_addr()?.port();
            local = requested
                .iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect();
        }
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let mut t = KernelTransport {
            config,
            opts,
            max_message,
            local,
            socks: HashMap::new(),
            next_sock: 0,
            tx,
            rx,
            next_id: 0,
            assocs: HashMap::new(),
            by_kid: HashMap::new(),
            tombstones: HashSet::new(),
            events: VecDeque::new(),
            aborts: Vec::new(),
        };
        t.add_socket(sock)?;
        Ok(t)
    }

    fn add_socket(&mut self, sock: SctpSocket) -> io::Result<SockIdx> {
        let ep = Arc::new(SctpEndpoint::from_socket(sock)?);
        let idx = self.next_sock;
        self.next_sock = self.next_sock.wrapping_add(1);
        let reader = tokio::spawn(reader(
            idx,
            Arc::clone(&ep),
            self.tx.clone(),
            self.max_message,
        ));
        self.socks.insert(idx, Sock { ep, reader });
        Ok(idx)
    }

    /// A client-only socket on the endpoint's addresses and an ephemeral
    /// port, for one more association to an already associated peer.
    fn extra_socket(&mut self) -> io::Result<SockIdx> {
        let mut cfg = self.config.clone();
        cfg.listen = false;
        cfg.local_addrs = self
            .local
            .iter()
            .map(|a| SocketAddr::new(a.ip(), 0))
            .collect();
        let (sock, _) = setup_socket(&cfg, &self.opts)?;
        self.add_socket(sock)
    }

    fn ep(&self, idx: SockIdx) -> Option<Arc<SctpEndpoint>> {
        self.socks.get(&idx).map(|s| Arc::clone(&s.ep))
    }

    fn alloc_id(&mut self) -> AssociationId {
        self.next_id += 1;
        AssociationId(self.next_id)
    }

    fn count(&self, pred: impl Fn(&Phase) -> bool) -> usize {
        self.assocs.values().filter(|a| pred(&a.phase)).count()
    }

    /// Marks an association down and queues its event; forgets the kernel
    /// id, and the association's own socket if it had one.
    fn down(&mut self, id: AssociationId, reason: CloseReason) {
        if let Some(a) = self.assocs.get_mut(&id)
            && a.phase != Phase::Down
        {
            a.phase = Phase::Down;
            let kid = a.kid;
            self.by_kid.remove(&kid);
            self.events
                .push_back(Event::AssociationDown { assoc: id, reason });
            if kid.0 != 0 && !self.by_kid.keys().any(|k| k.0 == kid.0) {
                // Pending ABORTs for it still need the socket.
                if !self.aborts.iter().any(|k| k.0 == kid.0) {
                    self.socks.remove(&kid.0);
                }
            }
        }
    }

    /// Queues an ABORT for a kernel association and remembers that its
    /// notifications are stale from now on.
    fn abort_kid(&mut self, kid: Kid) {
        self.aborts.push(kid);
        self.tombstones.insert(kid);
    }

    /// Sends the queued ABORTs. Cancel-safe: an ABORT leaves the queue only
    /// once the kernel took it.
    async fn flush_aborts(&mut self) {
        while let Some(&kid) = self.aborts.last() {
            if let Some(ep) = self.ep(kid.0) {
                let info = SendInfo {
                    assoc_id: kid.1,
                    flags: SendFlags::ABORT,
                    ..Default::default()
                };
                // Fails only if the kernel already dropped the association,
                // which is the outcome wanted anyway.
                if let Err(e) = ep.send_msg(&[], &info).await {
                    tracing::debug!(kid = kid.1.0, error = %e, "SCTP ABORT not sent");
                }
            }
            self.aborts.pop();
            if kid.0 != 0
                && !self.by_kid.keys().any(|k| k.0 == kid.0)
                && !self.aborts.iter().any(|k| k.0 == kid.0)
            {
                self.socks.remove(&kid.0);
            }
        }
    }

    fn peer_addrs(&self, kid: Kid) -> Vec<SocketAddr> {
        let Some(ep) = self.socks.get(&kid.0).map(|s| &s.ep) else {
            return Vec::new();
        };
        let mut addrs: Vec<SocketAddr> = ep
            .peer_addrs(kid.1)
            .unwrap_or_default()
            .into_iter()
            .map(canonical)
            .collect();
        if let Some(primary) = ep
            .status(kid.1)
            .ok()
            .and_then(|s| s.primary.address)
            .map(canonical)
            && let Some(i) = addrs.iter().position(|a| *a == primary)
        {
            addrs[..=i].rotate_right(1);
        }
        addrs
    }

    fn on_item(&mut self, idx: SockIdx, item: Item) {
        match item {
            Item::Notification(Notification::AssocChange(c)) => self.on_assoc_change(idx, c),
            Item::Notification(Notification::PeerAddrChange(p)) => {
                tracing::debug!(assoc = p.assoc_id.0, addr = ?p.address, state = ?p.state, "SCTP path change");
            }
            Item::Notification(other) => tracing::trace!(?other, "SCTP notification ignored"),
            Item::Message {
                kid,
                stream,
                ppid,
                unordered,
                data,
            } => {
                // Data racing a local abort or for an association refused
                // by the limit has nobody to go to.
                if let Some(&id) = self.by_kid.get(&(idx, kid)) {
                    self.events.push_back(Event::Message(Message {
                        assoc: id,
                        stream,
                        ppid: Ppid(ppid),
                        unordered,
                        data,
                    }));
                }
            }
            Item::Oversized { kid, size } => {
                if let Some(&id) = self.by_kid.get(&(idx, kid)) {
                    // The trait promises to abort such associations rather
                    // than buffer without bound.
                    tracing::warn!(
                        assoc = %id,
                        size,
                        max = self.max_message,
                        "oversized inbound SCTP message, aborting association"
                    );
                    self.abort_kid((idx, kid));
                    self.down(id, CloseReason::Aborted);
                }
            }
            Item::Failed(why) => {
                tracing::warn!(socket = idx, %why, "SCTP socket failed");
                let ids: Vec<AssociationId> = self
                    .by_kid
                    .iter()
                    .filter(|(k, _)| k.0 == idx)
                    .map(|(_, id)| *id)
                    .collect();
                for id in ids {
                    self.down(id, CloseReason::Lost);
                }
                if idx == 0 {
                    self.socks.remove(&0);
                }
            }
        }
    }

    fn on_assoc_change(&mut self, idx: SockIdx, c: lksctp::AssocChange) {
        let kid = (idx, c.assoc_id);
        let ends = matches!(
            c.state,
            AssocChangeState::CommLost
                | AssocChangeState::ShutdownComplete
                | AssocChangeState::CantStartAssoc
        );
        if self.tombstones.contains(&kid) {
            if ends {
                self.tombstones.remove(&kid);
            }
            return;
        }
        let known = self.by_kid.get(&kid).copied();
        match (c.state, known) {
            (AssocChangeState::CommUp, Some(id)) => {
                let peer_addrs = self.peer_addrs(kid);
                if let Some(a) = self.assocs.get_mut(&id)
                    && matches!(a.phase, Phase::Pending { .. })
                {
                    a.phase = Phase::Up {
                        outstreams: c.outbound_streams,
                    };
                    self.events.push_back(Event::AssociationUp {
                        assoc: id,
                        side: a.side,
                        peer_addrs,
                    });
                }
            }
            (AssocChangeState::CommUp, None) => {
                let up = self.count(|p| matches!(p, Phase::Up { .. }));
                if up >= self.config.transport.max_associations {
                    tracing::warn!(
                        limit = self.config.transport.max_associations,
                        "association limit reached, aborting incoming association"
                    );
                    self.abort_kid(kid);
                    return;
                }
                let id = self.alloc_id();
                let peer_addrs = self.peer_addrs(kid);
                self.assocs.insert(
                    id,
                    Assoc {
                        kid,
                        side: Side::Server,
                        phase: Phase::Up {
                            outstreams: c.outbound_streams,
                        },
                        closing: None,
                    },
                );
                self.by_kid.insert(kid, id);
                self.events.push_back(Event::AssociationUp {
                    assoc: id,
                    side: Side::Server,
                    peer_addrs,
                });
            }
            (AssocChangeState::Restart, Some(id)) => {
                // The peer lost all its state and started afresh under the
                // same kernel id: to the layers above that is a crashed peer
                // followed by a new association.
                let side = self.assocs.get(&id).map(|a| a.side).unwrap_or(Side::Server);
                let peer_addrs = self.peer_addrs(kid);
                // Keep the socket: the association lives on under a new id.
                self.by_kid.insert((kid.0, AssocId(i32::MIN)), id);
                self.down(id, CloseReason::Lost);
                self.by_kid.remove(&(kid.0, AssocId(i32::MIN)));
                let new = self.alloc_id();
                self.assocs.insert(
                    new,
                    Assoc {
                        kid,
                        side,
                        phase: Phase::Up {
                            outstreams: c.outbound_streams,
                        },
                        closing: None,
                    },
                );
                self.by_kid.insert(kid, new);
                self.events.push_back(Event::AssociationUp {
                    assoc: new,
                    side,
                    peer_addrs,
                });
            }
            (AssocChangeState::CommLost, Some(id)) => {
                let Some(a) = self.assocs.get(&id) else {
                    return;
                };
                let reason = lost_reason(a.phase, a.closing, c.error, !c.info.is_empty());
                self.down(id, reason);
            }
            (AssocChangeState::ShutdownComplete, Some(id)) => self.down(id, CloseReason::Graceful),
            (AssocChangeState::CantStartAssoc, Some(id)) => {
                self.down(id, CloseReason::HandshakeFailed)
            }
            (state, _) => {
                tracing::debug!(
                    kid = c.assoc_id.0,
                    ?state,
                    "SCTP association change ignored"
                )
            }
        }
    }

    fn expire_handshakes(&mut self, now: Instant) {
        let expired: Vec<(AssociationId, Kid)> = self
            .assocs
            .iter()
            .filter(|(_, a)| matches!(a.phase, Phase::Pending { deadline } if deadline <= now))
            .map(|(id, a)| (*id, a.kid))
            .collect();
        for (id, kid) in expired {
            // Established in the kernel means its COMM_UP is on its way
            // through the reader; failing it now would abort a good
            // association.
            let established = self
                .socks
                .get(&kid.0)
                .and_then(|s| s.ep.status(kid.1).ok())
                .is_some_and(|st| st.state == lksctp::AssocState::Established);
            if established {
                if let Some(a) = self.assocs.get_mut(&id) {
                    a.phase = Phase::Pending {
                        deadline: now + Duration::from_millis(100),
                    };
                }
                continue;
            }
            self.abort_kid(kid);
            self.down(id, CloseReason::HandshakeFailed);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.assocs
            .values()
            .filter_map(|a| match a.phase {
                Phase::Pending { deadline } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// Takes the next queued event, retiring ids whose down event it is.
    fn pop_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        if let Event::AssociationDown { assoc, .. } = &ev {
            self.assocs.remove(assoc);
        }
        Some(ev)
    }

    fn connect_on(&self, idx: SockIdx, peers: &[SocketAddr]) -> io::Result<AssocId> {
        match self.socks.get(&idx) {
            Some(s) => s.ep.connectx(peers),
            None => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }
}

/// The reason for a `SCTP_COMM_LOST` notification.
///
/// Linux attaches the peer's ABORT chunk (and puts its cause, or
/// `ECONNRESET`, in the error field) when an ABORT arrived; an association
/// that died because the peer went silent (retransmissions or heartbeats
/// exhausted) carries neither.
fn lost_reason(
    phase: Phase,
    closing: Option<CloseMode>,
    error: u16,
    has_abort_chunk: bool,
) -> CloseReason {
    match phase {
        Phase::Pending { .. } => CloseReason::HandshakeFailed,
        _ if closing == Some(CloseMode::Abort) => CloseReason::Aborted,
        _ if has_abort_chunk || error != 0 => CloseReason::Aborted,
        _ => CloseReason::Lost,
    }
}

/// Errors of `recvmsg` on a one-to-many socket that concern one association
/// (the kernel sets `sk_err` when one fails) rather than the socket.
fn transient(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
        || matches!(
            e.raw_os_error(),
            Some(
                libc::ETIMEDOUT
                    | libc::ECONNRESET
                    | libc::ECONNREFUSED
                    | libc::ECONNABORTED
                    | libc::EPIPE
                    | libc::EHOSTUNREACH
                    | libc::ENETUNREACH
                    | libc::EINTR
                    | libc::ENOMEM
                    | libc::ENOBUFS
            )
        )
}

impl Transport for KernelTransport {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local.clone()
    }

    fn max_message_size(&self) -> usize {
        self.max_message
    }

    async fn connect(
        &mut self,
        peer_addrs: &[SocketAddr],
    ) -> Result<AssociationId, TransportError> {
        if peer_addrs.is_empty() {
            return Err(TransportError::InvalidAddress("no peer address".into()));
        }
        let t = &self.config.transport;
        if self.count(|p| matches!(p, Phase::Up { .. })) >= t.max_associations {
            return Err(TransportError::LimitReached("associations"));
        }
        if self.count(|p| matches!(p, Phase::Pending { .. })) >= t.max_pending_handshakes {
            return Err(TransportError::LimitReached("pending handshakes"));
        }
        if !self.socks.contains_key(&0) {
            return Err(TransportError::EndpointClosed);
        }
        let mut idx = 0;
        let mut result = self.connect_on(idx, peer_addrs);
        if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EISCONN)) {
            idx = self.extra_socket()?;
            result = self.connect_on(idx, peer_addrs);
            if result.is_err() {
                self.socks.remove(&idx);
            }
        }
        let kid = result.map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL | libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL) => {
                TransportError::InvalidAddress(format!("{peer_addrs:?}: {e}"))
            }
            _ => TransportError::from(e),
        })?;
        let id = self.alloc_id();
        self.assocs.insert(
            id,
            Assoc {
                kid: (idx, kid),
                side: Side::Client,
                phase: Phase::Pending {
                    deadline: Instant::now() + self.config.transport.handshake_timeout,
                },
                closing: None,
            },
        );
        self.by_kid.insert((idx, kid), id);
        Ok(id)
    }

    async fn send(
        &mut self,
        assoc: AssociationId,
        stream: u16,
        ppid: Ppid,
        unordered: bool,
        data: Bytes,
    ) -> Result<(), TransportError> {
        check_size(data.len(), self.max_message)?;
        let a = self
            .assocs
            .get(&assoc)
            .ok_or(TransportError::UnknownAssociation(assoc))?;
        let limit = match a.phase {
            // Gone; the down event is queued. Like a socket, lose the data.
            Phase::Down => return Ok(()),
            Phase::Up { outstreams } => outstreams,
            Phase::Pending { .. } => self.config.transport.streams,
        };
        if stream >= limit {
            return Err(TransportError::InvalidStream(stream));
        }
        let Some(ep) = self.ep(a.kid.0) else {
            return Ok(());
        };
        let info = SendInfo {
            assoc_id: a.kid.1,
            sid: stream,
            ppid: lksctp::Ppid(ppid.0),
            flags: if unordered {
                SendFlags::UNORDERED
            } else {
                SendFlags::NONE
            },
            ..Default::default()
        };
        match ep.send_msg(&data, &info).await {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // The association is dying; its down event follows.
                Some(libc::EPIPE | libc::ENOENT | libc::ESHUTDOWN | libc::ECONNRESET) => Ok(()),
                Some(libc::EMSGSIZE) => Err(TransportError::MessageTooLarge {
                    size: data.len(),
                    max: self.max_message,
                }),
                _ => Err(e.into()),
            },
        }
    }

    async fn close(&mut self, assoc: AssociationId, mode: CloseMode) -> Result<(), TransportError> {
        let a = self
            .assocs
            .get_mut(&assoc)
            .ok_or(TransportError::UnknownAssociation(assoc))?;
        let kid = a.kid;
        match (a.phase, mode) {
            (Phase::Down, _) => Ok(()),
            (Phase::Pending { .. }, _) | (Phase::Up { .. }, CloseMode::Abort) => {
                // An ABORT ends it at once on both ends; the kernel's own
                // COMM_LOST report would come later and be indistinguishable
                // from a peer's abort, so report it here and ignore that one.
                a.closing = Some(mode);
                self.abort_kid(kid);
                let reason = match mode {
                    CloseMode::Graceful => CloseReason::Graceful,
                    CloseMode::Abort => CloseReason::Aborted,
                };
                self.down(assoc, reason);
                self.flush_aborts().await;
                Ok(())
            }
            (Phase::Up { .. }, CloseMode::Graceful) => {
                if a.closing.is_some() {
                    return Ok(());
                }
                a.closing = Some(mode);
                let Some(ep) = self.ep(kid.0) else {
                    return Ok(());
                };
                let info = SendInfo {
                    assoc_id: kid.1,
                    flags: SendFlags::EOF,
                    ..Default::default()
                };
                match ep.send_msg(&[], &info).await {
                    Ok(_) => Ok(()),
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EPIPE | libc::ENOENT | libc::ESHUTDOWN | libc::ECONNRESET)
                        ) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    async fn next_event(&mut self) -> Result<Event, TransportError> {
        loop {
            self.flush_aborts().await;
            if let Some(ev) = self.pop_event() {
                return Ok(ev);
            }
            if !self.socks.contains_key(&0) {
                return Err(TransportError::EndpointClosed);
            }
            let deadline = self.next_deadline();
            let received = tokio::select! {
                // Items first: a COMM_UP already read must win over a
                // handshake deadline that passed meanwhile.
                biased;
                r = self.rx.recv() => r,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => None,
            };
            match received {
                Some((idx, item)) => self.on_item(idx, item),
                // The channel cannot close (self.tx lives): the timer fired.
                None => self.expire_handshakes(Instant::now()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_lost_reasons() {
        let up = Phase::Up { outstreams: 16 };
        let pending = Phase::Pending {
            deadline: Instant::now(),
        };
        assert_eq!(lost_reason(up, None, 0, false), CloseReason::Lost);
        assert_eq!(lost_reason(up, None, 0, true), CloseReason::Aborted);
        // ECONNRESET: an ABORT without cause.
        assert_eq!(lost_reason(up, None, 104, false), CloseReason::Aborted);
        assert_eq!(
            lost_reason(up, Some(CloseMode::Abort), 0, false),
            CloseReason::Aborted
        );
        // A graceful close whose SHUTDOWN went unanswered: the peer is gone.
        assert_eq!(
            lost_reason(up, Some(CloseMode::Graceful), 0, false),
            CloseReason::Lost
        );
        assert_eq!(
            lost_reason(pending, None, 0, true),
            CloseReason::HandshakeFailed
        );
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:9".parse().unwrap();
        assert_eq!(canonical(a), "127.0.0.1:9".parse::<SocketAddr>().unwrap());
        let b: SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(canonical(b), b);
    }

    #[test]
    fn udp_encaps_layout_matches_the_kernel() {
        // The kernel rejects any other optlen; 4 + 4 padding + 128 + 2 + 6.
        assert_eq!(mem::size_of::<SctpUdpEncaps>(), 144);
    }
}

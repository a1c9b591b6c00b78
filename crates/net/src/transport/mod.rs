//! Message-oriented, SCTP-like transport: the one trait the registrar, pool
//! element and pool user runtimes talk to.
//!
//! An endpoint ([`Transport`]) owns any number of *associations* (SCTP's word
//! for a connection). Each association carries whole messages, each tagged
//! with a stream number and a payload protocol identifier ([`Ppid`]); the
//! transport never splits or merges messages. Everything that happens to an
//! association is reported through [`Transport::next_event`]: it came up,
//! a message arrived, or it went down (with a [`CloseReason`]).
//!
//! Backends:
//! - [`memory`]: in-process, for fast tests of the networked layer;
//! - [`udp`]: userland SCTP encapsulated in UDP (RFC 6951), for hosts
//!   without kernel SCTP; what it sends decodes in Wireshark as SCTP;
//! - kernel SCTP (separate module, Linux only).
//!
//! Binding (which local addresses, whether to accept incoming associations)
//! is done by each backend's constructor from an [`EndpointConfig`], because
//! each backend needs a different context (a socket family, a
//! [`memory::MemoryNetwork`], ...). After construction, all backends behave
//! the same; `crates/net/tests/conformance.rs` holds the tests every backend
//! has to pass.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

#[cfg(target_os = "linux")]
pub mod kernel;
pub mod memory;
pub mod select;
pub mod udp;

/// The payload protocol identifier of a message, in host byte order.
///
/// SCTP carries it in every DATA chunk; RSerPool uses it to tell ASAP from
/// ENRP on the same association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ppid(pub u32);

impl Ppid {
    /// ASAP (RFC 5352), IANA-assigned PPID 11.
    pub const ASAP: Ppid = Ppid(11);
    /// ENRP (RFC 5353), IANA-assigned PPID 12.
    pub const ENRP: Ppid = Ppid(12);
}

impl fmt::Display for Ppid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one association of one endpoint.
///
/// Unique for the lifetime of the endpoint that issued it (never reused), so
/// a stale id can never address a newer association. Ids of different
/// endpoints are unrelated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssociationId(pub u64);

impl fmt::Display for AssociationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "assoc#{}", self.0)
    }
}

/// Which side started an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// This endpoint called [`Transport::connect`].
    Client,
    /// The peer connected to this (listening) endpoint.
    Server,
}

/// Why an association went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Orderly SHUTDOWN by either side; all data sent before it was
    /// delivered.
    Graceful,
    /// ABORT sent or received; data in flight may be lost.
    Aborted,
    /// The peer stopped answering (retransmissions or heartbeats went
    /// unacknowledged for [`TransportConfig::dead_peer_timeout`]).
    Lost,
    /// The association never came up (no answer, refused, or handshake
    /// timeout). Only reported for ids returned by [`Transport::connect`].
    HandshakeFailed,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Graceful => "graceful shutdown",
            CloseReason::Aborted => "aborted",
            CloseReason::Lost => "peer lost",
            CloseReason::HandshakeFailed => "handshake failed",
        })
    }
}

/// How [`Transport::close`] ends an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseMode {
    /// SHUTDOWN: deliver what is queued, then close; reported to both sides
    /// as [`CloseReason::Graceful`].
    Graceful,
    /// ABORT: drop queued data and close at once; reported to both sides as
    /// [`CloseReason::Aborted`].
    Abort,
}

/// A message received on an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The association it arrived on.
    pub assoc: AssociationId,
    /// SCTP stream number.
    pub stream: u16,
    /// Payload protocol identifier, host byte order.
    pub ppid: Ppid,
    /// Whether the sender marked it unordered.
    pub unordered: bool,
    /// The complete message (never a fragment).
    pub data: Bytes,
}

/// What happened on a transport endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An association is established and can carry messages.
    AssociationUp {
        /// Its id (for [`Side::Client`], the one `connect` returned).
        assoc: AssociationId,
        /// Which side started it.
        side: Side,
        /// The peer's transport addresses (IP and SCTP port), primary first.
        peer_addrs: Vec<SocketAddr>,
    },
    /// An association is gone. No further events carry this id, and
    /// messages sent to it are refused.
    AssociationDown {
        /// The association.
        assoc: AssociationId,
        /// Why it went down.
        reason: CloseReason,
    },
    /// A complete message arrived.
    Message(Message),
}

/// Errors of transport commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The association id is not (or no longer) known to this endpoint, as
    /// far as the events consumed so far tell.
    #[error("unknown or closed association {0}")]
    UnknownAssociation(AssociationId),
    /// The message exceeds [`TransportConfig::max_message_size`].
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Size of the rejected message.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Stream number outside the negotiated range.
    #[error("stream {0} is out of range")]
    InvalidStream(u16),
    /// `connect` was called without any peer address, or with addresses the
    /// backend cannot reach (e.g. the wrong address family).
    #[error("invalid peer address: {0}")]
    InvalidAddress(String),
    /// A configured limit (associations, pending handshakes) is reached.
    #[error("limit reached: {0}")]
    LimitReached(&'static str),
    /// Binding or socket setup failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// The configuration is unusable (see [`TransportConfig::validate`]).
    #[error("invalid transport configuration: {0}")]
    InvalidConfig(String),
    /// The endpoint has shut down (its driver stopped); nothing more will
    /// happen on it.
    #[error("transport endpoint closed")]
    EndpointClosed,
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError::Io(e.to_string())
    }
}

/// Protocol tunables shared by all backends.
///
/// Backends map them to their own knobs (for kernel SCTP: `SCTP_RTOINFO`,
/// `SCTP_PEER_ADDR_PARAMS`, ...). Defaults suit RSerPool on a LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Largest message accepted by `send` and from peers (bigger inbound
    /// messages abort the association). Default 1 MiB: handle table
    /// responses can be large.
    pub max_message_size: usize,
    /// Outbound and inbound streams requested per association. Default 16.
    pub streams: u16,
    /// Interval of HEARTBEATs on an idle association. Default 1 s.
    pub heartbeat_interval: Duration,
    /// Upper bound on how long a peer may stay silent (unanswered HEARTBEATs
    /// or unacknowledged DATA) before the association is reported
    /// [`CloseReason::Lost`]. Default 5 s.
    pub dead_peer_timeout: Duration,
    /// Initial retransmission timeout. Default 200 ms.
    pub rto_initial: Duration,
    /// Lower bound of the retransmission timeout. Default 200 ms: kernel
    /// peers delay their SACKs up to 200 ms (Linux `sack_timeout`), and a
    /// smaller minimum retransmits what they are about to acknowledge.
    pub rto_min: Duration,
    /// Upper bound of the retransmission timeout. Default 1 s.
    pub rto_max: Duration,
    /// How long an association may take to come up before it is reported
    /// [`CloseReason::HandshakeFailed`] (also bounds how long a State Cookie
    /// stays valid). Default 5 s.
    pub handshake_timeout: Duration,
    /// Maximum number of established associations; further incoming ones
    /// are refused and `connect` fails with [`TransportError::LimitReached`].
    /// Default 10,000.
    pub max_associations: usize,
    /// Maximum number of associations in the handshake at once, where a
    /// backend keeps state for them (the UDP backend keeps none for
    /// handshakes started by peers: stateless cookies). Default 1,024.
    pub max_pending_handshakes: usize,
    /// Most associations peers at one IP address may start with this
    /// endpoint (where the backend sees them; the UDP backend does).
    /// Default 1,000.
    pub max_associations_per_source: usize,
    /// Most bytes queued for sending on one association (unacknowledged or
    /// not yet sent); beyond, messages are dropped and counted (UDP
    /// backend; the kernel bounds its own send buffer). Default 4 MiB.
    pub max_queued_bytes: usize,
}

impl TransportConfig {
    /// Checks that the tunables make sense together; backends call it when
    /// binding, so a bad configuration stops start-up with one line.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |m: &str| Err(TransportError::InvalidConfig(m.to_string()));
        if self.max_message_size == 0 || self.max_message_size > (1 << 30) {
            return bad("max_message_size must be within 1 byte..=1 GiB");
        }
        if self.streams == 0 {
            return bad("streams must be at least 1");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval must be positive");
        }
        if self.dead_peer_timeout < self.heartbeat_interval {
            return bad("dead_peer_timeout must be at least heartbeat_interval");
        }
        if self.rto_min.is_zero()
            || self.rto_min > self.rto_initial
            || self.rto_initial > self.rto_max
        {
            return bad("need 0 < rto_min <= rto_initial <= rto_max");
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout must be positive");
        }
        if self.max_associations == 0
            || self.max_pending_handshakes == 0
            || self.max_associations_per_source == 0
        {
            return bad(
                "max_associations, max_pending_handshakes and max_associations_per_source must be at least 1",
            );
        }
        if self.max_queued_bytes < self.max_message_size {
            return bad("max_queued_bytes must hold at least one message of max_message_size");
        }
        Ok(())
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_message_size: 1 << 20,
            streams: 16,
            heartbeat_interval: Duration::from_secs(1),
            dead_peer_timeout: Duration::from_secs(5),
            rto_initial: Duration::from_millis(200),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            max_associations: 10_000,
            max_pending_handshakes: 1_024,
            max_associations_per_source: 1_000,
            max_queued_bytes: 4 << 20,
        }
    }
}

/// Where an endpoint binds and whether it accepts associations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Local transport addresses (IP and SCTP port; IPv4 and IPv6 may be
    /// mixed). Port 0 picks a port. All addresses share one port; the first
    /// address with a non-zero port sets it. Empty means "any address,
    /// ephemeral port" of the backend's choosing.
    pub local_addrs: Vec<SocketAddr>,
    /// Accept associations from peers (a registrar or pool element does; a
    /// pool user usually does not).
    pub listen: bool,
    /// Protocol tunables.
    pub transport: TransportConfig,
}

impl EndpointConfig {
    /// An endpoint that accepts associations on `addrs`, default tunables.
    pub fn server(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        EndpointConfig {
            local_addrs: addrs.into_iter().collect(),
            listen: true,
            transport: TransportConfig::default(),
        }
    }

    /// An endpoint that only connects out, bound to `addrs` (may be
    /// empty), default tunables.
    pub fn client(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        EndpointConfig {
            local_addrs: addrs.into_iter().collect(),
            listen: false,
            transport: TransportConfig::default(),
        }
    }

    /// Replaces the protocol tunables.
    pub fn with_transport(mut self, transport: TransportConfig) -> Self {
        self.transport = transport;
        self
    }
}

/// A transport endpoint: many associations, message events, commands.
///
/// All methods take `&mut self`: one task owns the endpoint and multiplexes
/// it with `tokio::select!`. Every returned future is cancel-safe: dropping
/// a pending `next_event` loses no event, dropping a pending `send` either
/// queued the whole message or nothing.
///
/// Commands return as soon as the backend has accepted them; their outcome
/// arrives as events (`connect` -> `AssociationUp` or
/// `AssociationDown(HandshakeFailed)`, `close` -> `AssociationDown`).
pub trait Transport: Send + 'static {
    /// The local transport addresses actually bound (ports resolved).
    fn local_addrs(&self) -> Vec<SocketAddr>;

    /// The largest message `send` accepts and peers may send.
    fn max_message_size(&self) -> usize;

    /// Starts an association to a peer reachable at `peer_addrs` (IP and SCTP
    /// port; several addresses of one multi-homed peer, primary first).
    /// Returns its id at once; [`Event::AssociationUp`] or
    /// [`Event::AssociationDown`] with [`CloseReason::HandshakeFailed`]
    /// follows.
    fn connect(
        &mut self,
        peer_addrs: &[SocketAddr],
    ) -> impl Future<Output = Result<AssociationId, TransportError>> + Send;

    /// Queues one message on an association. Waits only while the backend's
    /// send buffer is full.
    fn send(
        &mut self,
        assoc: AssociationId,
        stream: u16,
        ppid: Ppid,
        unordered: bool,
        data: Bytes,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Ends an association; [`Event::AssociationDown`] follows (for both
    /// sides) unless it is already down.
    fn close(
        &mut self,
        assoc: AssociationId,
        mode: CloseMode,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The next event. Returns [`TransportError::EndpointClosed`] once the
    /// backend has stopped for good.
    fn next_event(&mut self) -> impl Future<Output = Result<Event, TransportError>> + Send;
}

/// Checks a message against the size limit; shared by all backends.
pub(crate) fn check_size(len: usize, max: usize) -> Result<(), TransportError> {
    if len > max {
        Err(TransportError::MessageTooLarge { size: len, max })
    } else {
        Ok(())
    }
}

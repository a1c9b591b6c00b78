//! The RSerPool protocols as sans-IO state machines: the `Registrar`
//! (ENRP server with its ASAP server side), the `PoolElement` (the ASAP
//! client of a server) and the `PoolUser` (the ASAP client of a client).
//!
//! Each machine is driven through the [`Machine`] trait, in the manner of
//! quinn-proto: the driver hands in what arrived (SCTP messages with their
//! PPID, association changes, announce datagrams, timer expiry), always with
//! the current [`Instant`], and then drains what the machine wants done
//! ([`Machine::poll_transmit`]), what it wants known
//! ([`Machine::poll_event`]) and when it next wants to be woken
//! ([`Machine::poll_timeout`]). No machine reads a clock, opens a socket or
//! uses global randomness: each owns an RNG seeded by its creator. The same
//! code therefore runs in the daemon and, deterministically, in the
//! simulator.

mod asap_client;
#[doc(hidden)]
pub mod fuzzing;
mod inbound;
mod io;
mod life;
mod outbox;
pub mod pool_element;
pub mod pool_user;
pub mod registrar;
pub mod session;
mod time;
mod timer;

pub use asap_client::{AnnounceStats, ClientConfigError, HuntConfig, InboundStats};
pub use io::{AssocId, AssociationEvent, Destination, DownReason, Transmit};
pub use life::LifeUnit;
pub use pool_element::{PoolElement, PoolElementConfig, PoolElementEvent};
pub use pool_user::{PoolUser, PoolUserConfig, PoolUserEvent};
pub use session::{SendError, SendOptions, SessionId};
pub use time::Instant;

use bytes::Bytes;
use std::net::SocketAddr;

/// The driving interface shared by every role.
pub trait Machine {
    /// What the role reports to its user (and to metrics).
    type Event;

    /// An SCTP user message arrived on `assoc` with payload protocol `ppid`.
    ///
    /// The bytes are untrusted: the machine decodes them, answers
    /// undecodable ones as the RFCs require, and counts them.
    fn handle_data(&mut self, now: Instant, assoc: AssocId, ppid: u32, data: Bytes);

    /// An association came up or went down.
    fn handle_association(&mut self, now: Instant, event: AssociationEvent);

    /// A datagram arrived on the announce channel (ASAP_SERVER_ANNOUNCE, ENRP_PRESENCE).
    fn handle_announce(&mut self, now: Instant, from: SocketAddr, ppid: u32, data: Bytes);

    /// Time has advanced to `now`; fires every timer due.
    fn handle_timeout(&mut self, now: Instant);

    /// The next thing to send or close, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next event, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When [`Machine::handle_timeout`] should next be called.
    fn poll_timeout(&self) -> Option<Instant>;
}

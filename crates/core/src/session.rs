//! What the two ends of an ASAP session share (RFC 5351 §2.5, RFC 5352
//! §3.8-§3.9, §6.5.5): names of sessions, the send options, and the
//! errors of sending.
//!
//! A session is a pool user's conversation with a pool. It runs over one
//! association at a time, to the pool element currently serving it; ASAP
//! (PPID 11) is its control channel, multiplexed beside the application's
//! data, which travels under the application's own PPIDs. The pool user's
//! side lives in [`crate::pool_user`], the pool element's in
//! [`crate::pool_element`].

use std::fmt;

/// Names one session of a machine.
///
/// At a pool element a session is one association from a pool user, and
/// its id is that association's number; at a pool user ids are allocated
/// by [`crate::PoolUser::open_session`] and survive failovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session#{}", self.0)
    }
}

/// How one message is sent on a session (the send options of RFC 5352
/// §6.5.5 that apply to a session with one current PE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// `ASAP_SEND_FAILOVER` (the default): while the session has no
    /// working association (connecting, failing over), the message waits
    /// and goes to the next PE. Off (`ASAP_SEND_NO_FAILOVER`), such a send
    /// fails with [`SendError::NotConnected`] and the application keeps
    /// the message.
    pub failover: bool,
    /// `ASAP_SCTP_UNORDER`: may overtake earlier messages.
    pub unordered: bool,
    /// Keep a copy until the application releases the message (when its
    /// answer arrived, see `PoolUser::release`), and send it again, in
    /// order, to the PE the session fails over to: the "silently resend"
    /// of `ASAP_SEND_FAILOVER`. The new PE may then see a message the old
    /// one already processed; services whose state travels in cookies can
    /// recognise it. Off by default.
    pub resend: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            failover: true,
            unordered: false,
            resend: false,
        }
    }
}

/// Why a message could not be sent on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No such session (never opened, or closed).
    UnknownSession,
    /// The PPID is ASAP's (11) or ENRP's (12): RFC 5352 §5 reserves
    /// them for the control channel, so application data must not use them.
    ReservedPpid(u32),
    /// The session has no working association and the message was sent
    /// without failover.
    NotConnected,
    /// The session has no working association and the messages waiting
    /// for one already fill its queue.
    QueueFull,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownSession => f.write_str("no such session"),
            Self::ReservedPpid(p) => write!(
                f,
                "PPID {p} is reserved for RSerPool's own messages (ASAP 11, ENRP 12)"
            ),
            Self::NotConnected => f.write_str("the session is not connected to a pool element"),
            Self::QueueFull => f.write_str("the session's send queue is full"),
        }
    }
}

impl std::error::Error for SendError {}

/// Whether `ppid` may carry application data.
pub(crate) fn check_ppid(ppid: u32) -> Result<(), SendError> {
    if ppid == rserpool_wire::PPID_ASAP || ppid == rserpool_wire::PPID_ENRP {
        Err(SendError::ReservedPpid(ppid))
    } else {
        Ok(())
    }
}

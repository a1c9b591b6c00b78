//! The one error type of the library.

use rserpool_core::SendError;
use rserpool_net::transport::TransportError;
use rserpool_wire::ErrorCause;
use std::net::SocketAddr;

/// Everything that can go wrong in the library, one variant per reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A pool handle must be 1 to 65,531 bytes.
    #[error("invalid pool handle `{handle}`: {reason}")]
    InvalidPoolHandle {
        /// The handle given.
        handle: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The endpoint could not be bound.
    #[error("cannot bind the endpoint: {0}")]
    Bind(TransportError),
    /// The announce channel could not be joined.
    #[error("cannot listen for registrar announces on {addr}: {reason}")]
    Announce {
        /// The group or address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The registrar refused the pool element's registration.
    #[error("the registration was refused ({})", causes_text(.0))]
    RegistrationRefused(Vec<ErrorCause>),
    /// No such session (it was closed, or its association went down).
    #[error("the session is closed")]
    SessionClosed,
    /// Application data must not use ASAP's or ENRP's PPID.
    #[error("PPID {0} is reserved for RSerPool (ASAP 11, ENRP 12)")]
    ReservedPpid(u32),
    /// The session has no PE right now and the message was sent without failover.
    #[error("the session is not connected to a pool element")]
    NotConnected,
    /// Messages waiting for a PE fill the session's queue.
    #[error("the session's send queue is full")]
    QueueFull,
    /// The node's runtime has stopped (its endpoint failed, or it was shut down).
    #[error("the node has stopped")]
    Stopped,
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::UnknownSession => Error::SessionClosed,
            SendError::ReservedPpid(p) => Error::ReservedPpid(p),
            SendError::NotConnected => Error::NotConnected,
            SendError::QueueFull => Error::QueueFull,
        }
    }
}

/// Operation Error causes as text: `UnknownPoolHandle, ...`, or `no cause given`.
pub fn causes_text(causes: &[ErrorCause]) -> String {
    if causes.is_empty() {
        return "no cause given".into();
    }
    causes
        .iter()
        .map(|c| format!("{:?}", c.code))
        .collect::<Vec<_>>()
        .join(", ")
}

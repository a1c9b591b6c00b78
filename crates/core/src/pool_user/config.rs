//! How a pool user resolves pool handles and how long it trusts the answers.

use crate::asap_client::{ClientConfigError, HuntConfig, nonzero};
use std::time::Duration;

/// Configuration of a [`PoolUser`](super::PoolUser); every RFC 5352 §7 timer
/// and constant the PU uses, with the RFC's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUserConfig {
    /// `stale_cache_value` (RFC 5352 §7.2, no RFC default): how long a
    /// handle resolution answers [`PoolUser::resolve`](super::PoolUser::resolve)
    /// from the cache without asking a registrar.
    ///
    /// Default 5 s: the registrars' own view of a PE is about that old (the
    /// keep-alive interval and timeout rsplib uses are 5 s each), load values
    /// of adaptive policies age at that pace, and it bounds a busy PU to one
    /// resolution per pool every 5 s. rsplib leaves the value to each call.
    pub stale_cache_value: Duration,
    /// T1-ENRPrequest: wait for HANDLE_RESOLUTION_RESPONSE (RFC 5352 default 15 s;
    /// rsplib uses 3 s).
    pub t1_enrp_request: Duration,
    /// MAX-REQUEST-RETRANSMIT: resends after T1 expiries before the
    /// resolution fails (RFC 5352 default 2; rsplib makes 1 trial).
    pub max_request_retransmit: u32,
    /// Handle Resolution Option (draft-dreibholz-rserpool-asap-hropt): how
    /// many PEs to ask for; `None` sends no option and takes what the
    /// registrar chooses (rsplib's registrar then returns 3).
    pub handle_resolution_items: Option<u32>,
    /// Registrar discovery and hunt.
    pub hunt: HuntConfig,
    /// Sessions with pools.
    pub session: SessionConfig,
}

/// How a pool user's sessions connect and wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long the association to a chosen PE may take to come up before
    /// the session fails over to another. Default 5 s (the SCTP handshake
    /// timeout of the transports' defaults).
    pub connect_timeout: Duration,
    /// The pause before a session that found no usable PE resolves the
    /// pool again. Default 1 s.
    pub retry_interval: Duration,
    /// Most bytes of application messages a session holds while it has no
    /// working association; sends beyond fail with `QueueFull`. Default 1 MiB.
    pub max_queued_bytes: usize,
    /// How long a session does not try a PE that failed again: registrars
    /// may list a dead PE for a while after it was reported. While every
    /// PE the pool lists failed this recently, the session waits (and says
    /// so). Default 10 s.
    pub failed_pe_memory: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            retry_interval: Duration::from_secs(1),
            max_queued_bytes: 1 << 20,
            failed_pe_memory: Duration::from_secs(10),
        }
    }
}

impl Default for PoolUserConfig {
    fn default() -> Self {
        Self {
            stale_cache_value: Duration::from_secs(5),
            t1_enrp_request: Duration::from_secs(15),
            max_request_retransmit: 2,
            handle_resolution_items: None,
            hunt: HuntConfig::default(),
            session: SessionConfig::default(),
        }
    }
}

impl PoolUserConfig {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ClientConfigError> {
        nonzero("t1_enrp_request", self.t1_enrp_request)?;
        nonzero("session.connect_timeout", self.session.connect_timeout)?;
        nonzero("session.retry_interval", self.session.retry_interval)?;
        if self.handle_resolution_items == Some(0) {
            return Err(ClientConfigError::new(
                "handle_resolution_items",
                "asking for zero pool elements",
            ));
        }
        self.hunt.validate()
    }
}

//! What the two ASAP clients, the pool element and the pool user, share:
//! the list of registrars and the hunt for a home registrar over it
//! ([`hunt`]), and the screening of inbound ASAP bytes ([`screen`]).

pub(crate) mod hunt;
pub(crate) mod screen;

pub use hunt::AnnounceStats;
pub use screen::InboundStats;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How an ASAP client finds registrars and hunts for a home among them
/// (RFC 5352 §3.6, timers of §7.1 and §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuntConfig {
    /// Statically configured registrars, each one SCTP endpoint (all its
    /// addresses, with the ASAP port). Tried in this order, before announced ones.
    pub registrars: Vec<Vec<SocketAddr>>,
    /// T5-Serverhunt: how long to wait for an association to a registrar,
    /// and the pause after a round in which every registrar failed.
    /// RFC 5352 default 10 s (rsplib connects with 7.5 s).
    pub t5_server_hunt: Duration,
    /// RETRAN-MAX: T5 doubles on every expiry up to this (RFC 5352 default 60 s).
    pub retran_max: Duration,
    /// T7-ENRPoutdate: an announced registrar is forgotten this long after
    /// its last ASAP_SERVER_ANNOUNCE (RFC 5352 default 5 s, as rsplib).
    pub t7_enrp_outdate: Duration,
    /// Most announced registrars kept at once; further new ones are ignored
    /// (announces are unauthenticated, RFC 5352 §9.2).
    pub max_announced_registrars: usize,
}

impl Default for HuntConfig {
    fn default() -> Self {
        Self {
            registrars: Vec::new(),
            t5_server_hunt: Duration::from_secs(10),
            retran_max: Duration::from_secs(60),
            t7_enrp_outdate: Duration::from_secs(5),
            max_announced_registrars: 32,
        }
    }
}

impl HuntConfig {
    pub(crate) fn validate(&self) -> Result<(), ClientConfigError> {
        nonzero("t5_server_hunt", self.t5_server_hunt)?;
        nonzero("t7_enrp_outdate", self.t7_enrp_outdate)?;
        if self.retran_max < self.t5_server_hunt {
            return Err(ClientConfigError::new(
                "retran_max",
                "must not be smaller than t5_server_hunt",
            ));
        }
        Ok(())
    }
}

pub(crate) fn nonzero(field: &'static str, d: Duration) -> Result<(), ClientConfigError> {
    if d.is_zero() {
        Err(ClientConfigError::new(field, "must be greater than zero"))
    } else {
        Ok(())
    }
}

/// A pool element or pool user configuration that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfigError {
    /// The configuration field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ClientConfigError {
    pub(crate) fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }
}

impl fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ClientConfigError {}

/// Whether two address lists name the same SCTP endpoint (any address in common).
///
/// IPv4-mapped IPv6 addresses are compared as IPv4, since a dual-stack
/// socket may report a peer either way.
pub(crate) fn same_endpoint(a: &[SocketAddr], b: &[SocketAddr]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| x.port() == y.port() && x.ip().to_canonical() == y.ip().to_canonical())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_endpoint_ignores_v4_mapping_and_needs_port() {
        let a: SocketAddr = "10.0.0.1:3863".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:3863".parse().unwrap();
        let other_port: SocketAddr = "10.0.0.1:3864".parse().unwrap();
        assert!(same_endpoint(&[a], &[mapped]));
        assert!(!same_endpoint(&[a], &[other_port]));
        assert!(!same_endpoint(&[], &[a]));
    }
}

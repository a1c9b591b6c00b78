//! What the registrar keeps per association: the peer's addresses, which
//! registrar (if any) speaks over it, and its request budgets (RFC 5352
//! §3.3 and RFC 5355 §3 ask registrars to limit what one source can make
//! them do).

use super::config::RateLimit;
use crate::time::Instant;
use rserpool_wire::PrId;
use std::net::{SocketAddr, SocketAddrV4};

/// One association that is up.
#[derive(Debug)]
pub(super) struct Association {
    /// The peer endpoint's addresses.
    pub(super) peer: PeerAddrs,
    /// The registrar that spoke ENRP over it first; nobody else may.
    pub(super) registrar: Option<PrId>,
    /// Budget of handle resolutions.
    pub(super) resolutions: Bucket,
    /// Budget of ENDPOINT_UNREACHABLE reports.
    pub(super) reports: Bucket,
}

impl Association {
    pub(super) fn new(peer: Vec<SocketAddr>, now: Instant, r: RateLimit, u: RateLimit) -> Self {
        Self {
            peer: PeerAddrs::new(peer),
            registrar: None,
            resolutions: Bucket::full(now, r),
            reports: Bucket::full(now, u),
        }
    }
}

/// The addresses of an association's peer: one IPv4 address (nearly every
/// PE and PU) inline, any other set boxed. Inline, a registrar holding an
/// association per PE saves a heap block per PE.
#[derive(Debug, Clone)]
pub(super) enum PeerAddrs {
    V4(SocketAddrV4),
    Other(Box<[SocketAddr]>),
}

impl PeerAddrs {
    pub(super) fn new(addrs: Vec<SocketAddr>) -> Self {
        match addrs.as_slice() {
            [SocketAddr::V4(a)] => Self::V4(*a),
            _ => Self::Other(addrs.into_boxed_slice()),
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = SocketAddr> + Clone + '_ {
        let (one, rest) = match self {
            Self::V4(a) => (Some(SocketAddr::V4(*a)), &[][..]),
            Self::Other(v) => (None, &v[..]),
        };
        one.into_iter().chain(rest.iter().copied())
    }

    pub(super) fn first(&self) -> Option<SocketAddr> {
        self.iter().next()
    }

    pub(super) fn to_vec(&self) -> Vec<SocketAddr> {
        self.iter().collect()
    }
}

/// A token bucket: f32 tokens and the time of the last refill in
/// milliseconds, wrapping (8 bytes: a registrar holds one association per
/// PE process, and at 10^6 of them every byte here is a megabyte).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f32,
    at_ms: u32,
}

/// Milliseconds of `t`, wrapping every 49.7 days.
fn ms(t: Instant) -> u32 {
    (t.as_micros() / 1000) as u32
}

impl Bucket {
    fn full(now: Instant, limit: RateLimit) -> Self {
        Self {
            tokens: limit.burst as f32,
            at_ms: ms(now),
        }
    }

    /// Takes one token if there is one.
    pub(super) fn take(&mut self, now: Instant, limit: RateLimit) -> bool {
        // Time never goes back; a wrapped difference above half the range
        // is a bucket untouched for weeks, which is full anyway.
        let elapsed = ms(now).wrapping_sub(self.at_ms);
        let dt = if elapsed > u32::MAX / 2 {
            f64::INFINITY
        } else {
            f64::from(elapsed) / 1000.0
        };
        self.at_ms = ms(now);
        self.tokens = (f64::from(self.tokens) + dt * limit.rate).min(limit.burst) as f32;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let l = RateLimit {
            rate: 10.0,
            burst: 5.0,
        };
        let t0 = Instant::ZERO;
        let mut b = Bucket::full(t0, l);
        assert_eq!((0..8).filter(|_| b.take(t0, l)).count(), 5);
        let t1 = t0 + Duration::from_millis(1_000);
        assert_eq!(
            (0..20).filter(|_| b.take(t1, l)).count(),
            5,
            "refill caps at the burst"
        );
        let t2 = t1 + Duration::from_millis(200);
        assert_eq!((0..20).filter(|_| b.take(t2, l)).count(), 2);
    }
}

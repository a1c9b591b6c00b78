//! What the registrar keeps per association: the peer's addresses, which
//! registrar (if any) speaks over it, and its request budgets (RFC 5352
//! §3.3 and RFC 5355 §3 ask registrars to limit what one source can make
//! them do).

use super::config::RateLimit;
use crate::time::Instant;
use rserpool_wire::PrId;
use std::net::SocketAddr;

/// One association that is up.
#[derive(Debug)]
pub(super) struct Association {
    /// The peer endpoint's addresses.
    pub(super) peer: Box<[SocketAddr]>,
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
            peer: peer.into_boxed_slice(),
            registrar: None,
            resolutions: Bucket::full(now, r),
            reports: Bucket::full(now, u),
        }
    }
}

/// A token bucket (f32 tokens and the time of the last refill).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f32,
    at: Instant,
}

impl Bucket {
    fn full(now: Instant, limit: RateLimit) -> Self {
        Self {
            tokens: limit.burst as f32,
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub(super) fn take(&mut self, now: Instant, limit: RateLimit) -> bool {
        let dt = now.saturating_since(self.at).as_secs_f64();
        self.at = now;
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

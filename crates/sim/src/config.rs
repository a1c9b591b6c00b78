//! The knobs of a world: links, the simulated SCTP, and run-time guards.

use std::time::Duration;

/// Delay and loss of a link, the same in both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra one-way delay, uniform in `[0, jitter]`, drawn per packet.
    pub jitter: Duration,
    /// Probability that a packet is lost (SCTP retransmits it; announces are gone).
    pub loss: f64,
}

impl Default for LinkConfig {
    /// A quiet LAN: 0.5 ms plus up to 0.5 ms jitter, no loss.
    fn default() -> Self {
        Self {
            delay: Duration::from_micros(500),
            jitter: Duration::from_micros(500),
            loss: 0.0,
        }
    }
}

/// How the simulated SCTP behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportConfig {
    /// Added to a message's delay for each time it is lost (the retransmission timeout).
    pub rto: Duration,
    /// Losses counted per message at most: bounds the delay a lossy link adds.
    pub max_retransmissions: u32,
    /// How long a path may stay broken (partition, crashed host) before the
    /// association is reported `Down{Lost}` at its ends, like SCTP's
    /// heartbeat and retransmission limits.
    pub failure_detection: Duration,
    /// How long an association may take to come up before the opener gets
    /// `Down{HandshakeFailed}`.
    pub handshake_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            rto: Duration::from_secs(1),
            max_retransmissions: 4,
            failure_detection: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything about a world except its nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldConfig {
    /// The link between any two nodes unless overridden per pair.
    pub link: LinkConfig,
    /// The simulated SCTP.
    pub transport: TransportConfig,
    /// Keep a trace of role events and association changes (see `World::trace`).
    pub trace: bool,
    /// More events than this at one virtual instant is taken for a livelock
    /// (a machine asking to be woken in the past forever) and panics.
    pub max_events_per_instant: u64,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            link: LinkConfig::default(),
            transport: TransportConfig::default(),
            trace: true,
            max_events_per_instant: 1_000_000,
        }
    }
}

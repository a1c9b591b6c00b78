//! What the association tasks count and measure, merged at the end.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Counters all tasks update as they go: progress lines read them, and the
/// resolution tasks wait on `registered` before they start.
#[derive(Debug, Default)]
pub struct Live {
    /// PEs whose first registration was accepted.
    pub registered: AtomicU64,
    /// Re-registrations accepted.
    pub reregistered: AtomicU64,
    /// ENDPOINT_KEEP_ALIVE_ACKs sent.
    pub keep_alive_acks: AtomicU64,
    /// Resolutions answered with pool elements.
    pub resolutions: AtomicU64,
    /// PE tasks that have no first registration left to make.
    pub settled_tasks: AtomicU64,
    /// Requests sent and not yet answered or timed out.
    pub outstanding: AtomicU64,
}

impl Live {
    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Latencies in microseconds, 1 us to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.max(1));
}

/// What one association task did.
#[derive(Debug)]
pub struct Stats {
    /// First registrations accepted.
    pub registrations: u64,
    /// Re-registrations accepted.
    pub reregistrations: u64,
    /// Deregistrations answered.
    pub deregistrations: u64,
    /// ENDPOINT_KEEP_ALIVEs received.
    pub keep_alives: u64,
    /// ... of them with the H bit (a registrar claiming the PE).
    pub keep_alives_home: u64,
    /// ENDPOINT_KEEP_ALIVE_ACKs sent.
    pub keep_alive_acks: u64,
    /// Keep-alives for a PE (or pool) this task does not have.
    pub unknown_keep_alives: u64,
    /// Registrations refused (R bit).
    pub rejections: u64,
    /// Registrations (first or again) unanswered within the request timeout.
    pub registration_timeouts: u64,
    /// Deregistrations unanswered within the request timeout.
    pub deregistration_timeouts: u64,
    /// Registrations the registrar ended itself (life expired).
    pub expired: u64,
    /// Resolutions answered with pool elements.
    pub resolutions: u64,
    /// Resolutions answered with an error or without pool elements.
    pub resolution_errors: u64,
    /// Resolutions unanswered within the request timeout.
    pub resolution_timeouts: u64,
    /// Answers that came after their request had timed out.
    pub late: u64,
    /// ASAP_ERROR messages, undecodable and unexpected messages.
    pub protocol_errors: u64,
    /// Why the association went down before the end, if it did.
    pub lost: Option<String>,
    /// When this task's last first registration was accepted, if all were.
    pub all_registered_at: Option<Instant>,
    /// First registration latency.
    pub registration: Histogram<u64>,
    /// Re-registration latency.
    pub reregistration: Histogram<u64>,
    /// Deregistration latency.
    pub deregistration: Histogram<u64>,
    /// Resolution latency.
    pub resolution: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            registrations: 0,
            reregistrations: 0,
            deregistrations: 0,
            keep_alives: 0,
            keep_alives_home: 0,
            keep_alive_acks: 0,
            unknown_keep_alives: 0,
            rejections: 0,
            registration_timeouts: 0,
            deregistration_timeouts: 0,
            expired: 0,
            resolutions: 0,
            resolution_errors: 0,
            resolution_timeouts: 0,
            late: 0,
            protocol_errors: 0,
            lost: None,
            all_registered_at: None,
            registration: histogram(),
            reregistration: histogram(),
            deregistration: histogram(),
            resolution: histogram(),
        }
    }
}

impl Stats {
    /// Adds `o` to `self`; `all_registered_at` becomes the later of the two
    /// (`None` if either task did not finish registering).
    pub fn merge(&mut self, o: &Stats, pe_task: bool) {
        self.registrations += o.registrations;
        self.reregistrations += o.reregistrations;
        self.deregistrations += o.deregistrations;
        self.keep_alives += o.keep_alives;
        self.keep_alives_home += o.keep_alives_home;
        self.keep_alive_acks += o.keep_alive_acks;
        self.unknown_keep_alives += o.unknown_keep_alives;
        self.rejections += o.rejections;
        self.registration_timeouts += o.registration_timeouts;
        self.deregistration_timeouts += o.deregistration_timeouts;
        self.expired += o.expired;
        self.resolutions += o.resolutions;
        self.resolution_errors += o.resolution_errors;
        self.resolution_timeouts += o.resolution_timeouts;
        self.late += o.late;
        self.protocol_errors += o.protocol_errors;
        if self.lost.is_none() {
            self.lost.clone_from(&o.lost);
        }
        if pe_task {
            self.all_registered_at = match (self.all_registered_at, o.all_registered_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        for (mine, theirs) in [
            (&mut self.registration, &o.registration),
            (&mut self.reregistration, &o.reregistration),
            (&mut self.deregistration, &o.deregistration),
            (&mut self.resolution, &o.resolution),
        ] {
            mine.add(theirs).expect("histograms of equal bounds");
        }
    }
}

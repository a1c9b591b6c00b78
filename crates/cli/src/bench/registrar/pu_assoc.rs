//! One pool-user association that resolves the benchmark's pools at a
//! steady rate, round robin over the pools.
//!
//! ASAP responses carry no request ID; the registrar answers the requests
//! of one association in order, so answers are matched first in, first out.

use super::stats::{Live, Stats, record};
use super::{Phase, request_deadline_wake, send_asap};
use bytes::Bytes;
use rserpool_net::transport::select::AnyTransport;
use rserpool_net::transport::{AssociationId, Event, Ppid, Transport};
use rserpool_wire::{AsapMessage, PoolHandle};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a resolving association does.
#[derive(Debug, Clone)]
pub struct PuRun {
    /// The pools to resolve.
    pub pools: Vec<PoolHandle>,
    /// Handle Resolution Option (PEs wanted), if any.
    pub items: Option<u32>,
    /// Resolutions per second on this association.
    pub rate: f64,
    /// Requests outstanding at once on this association.
    pub max_outstanding: usize,
    /// Request timeout.
    pub timeout: Duration,
    /// Resolving starts once this many PEs are registered (every pool has
    /// one) or every PE association has made its first registrations.
    pub start_after: u64,
    /// Number of PE associations.
    pub pe_tasks: u64,
    /// Index of this association among the resolving ones (offsets the
    /// pool rotation).
    pub index: usize,
}

struct Task {
    t: AnyTransport,
    assoc: AssociationId,
    run: PuRun,
    live: Arc<Live>,
    /// Sent requests: when, and whether they already timed out.
    sent: VecDeque<(Instant, bool)>,
    /// How many at the front of `sent` have timed out.
    timed_out: usize,
    outstanding: usize,
    next_pool: usize,
    pace_start: Instant,
    paced: u64,
    stats: Stats,
}

/// Resolves until the phase says stop, waits for the answers, closes the
/// association and returns what it counted.
pub async fn run(
    t: AnyTransport,
    assoc: AssociationId,
    run: PuRun,
    live: Arc<Live>,
    mut phase: watch::Receiver<Phase>,
) -> Stats {
    // Wait until there is something to resolve.
    loop {
        if Live::get(&live.registered) >= run.start_after
            || Live::get(&live.settled_tasks) >= run.pe_tasks
        {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
            _ = phase.changed() => {
                let mut t = t;
                super::close(&mut t, assoc).await;
                return Stats::default();
            }
        }
    }
    let mut task = Task {
        t,
        assoc,
        next_pool: run.index,
        run,
        live,
        sent: VecDeque::new(),
        timed_out: 0,
        outstanding: 0,
        pace_start: Instant::now(),
        paced: 0,
        stats: Stats::default(),
    };
    task.main(phase).await;
    task.stats
}

impl Task {
    async fn main(&mut self, mut phase: watch::Receiver<Phase>) {
        let mut running = true;
        loop {
            let now = Instant::now();
            self.expire(now);
            if running {
                self.send_due(now).await;
            } else if self.outstanding == 0 {
                break;
            }
            let mut wake = self
                .sent
                .get(self.timed_out)
                .map(|(at, _)| *at + self.run.timeout);
            if running && self.outstanding < self.run.max_outstanding {
                let at =
                    self.pace_start + Duration::from_secs_f64(self.paced as f64 / self.run.rate);
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
            tokio::select! {
                ev = self.t.next_event() => match ev {
                    Ok(Event::Message(m)) if m.assoc == self.assoc && m.ppid == Ppid::ASAP => {
                        self.message(m.data);
                    }
                    Ok(Event::AssociationDown { assoc, reason }) if assoc == self.assoc => {
                        self.stats.lost = Some(format!("resolving association lost ({reason})"));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.stats.lost = Some(format!("transport failed: {e}"));
                        return;
                    }
                },
                () = request_deadline_wake(wake) => {}
                _ = phase.changed(), if running => running = false,
            }
        }
        super::close(&mut self.t, self.assoc).await;
    }

    async fn send_due(&mut self, now: Instant) {
        let rate = self.run.rate;
        let allowed = (now.duration_since(self.pace_start).as_secs_f64() * rate) as u64 + 1;
        let burst = ((rate / 100.0) as u64).max(1);
        if allowed > self.paced + burst {
            self.paced = allowed - burst;
        }
        while self.paced < allowed && self.outstanding < self.run.max_outstanding {
            self.paced += 1;
            let pool = self.run.pools[self.next_pool % self.run.pools.len()].clone();
            self.next_pool = self.next_pool.wrapping_add(1);
            let m = AsapMessage::HandleResolution {
                subscribe: false,
                pool_handle: pool,
                items: self.run.items,
            };
            self.sent.push_back((now, false));
            self.outstanding += 1;
            Live::bump(&self.live.outstanding);
            if let Err(e) = send_asap(&mut self.t, self.assoc, &m).await {
                tracing::debug!(error = %e, "send failed");
            }
        }
    }

    fn answered(&mut self) {
        self.outstanding -= 1;
        self.live
            .outstanding
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, flag)) = self.sent.get_mut(self.timed_out) {
            if *at + self.run.timeout > now {
                break;
            }
            *flag = true;
            self.timed_out += 1;
            self.stats.resolution_timeouts += 1;
            self.answered();
        }
    }

    fn message(&mut self, data: Bytes) {
        let m = match AsapMessage::decode_bytes(&data) {
            Ok(d) => d.message,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable message from the registrar");
                self.stats.protocol_errors += 1;
                return;
            }
        };
        let now = Instant::now();
        match m {
            AsapMessage::HandleResolutionResponse {
                pool_elements,
                error,
                ..
            } => {
                let Some((at, timed_out)) = self.sent.pop_front() else {
                    self.stats.protocol_errors += 1;
                    return;
                };
                if timed_out {
                    self.timed_out -= 1;
                    self.stats.late += 1;
                    return;
                }
                self.answered();
                record(&mut self.stats.resolution, now.duration_since(at));
                if error.is_none() && !pool_elements.is_empty() {
                    self.stats.resolutions += 1;
                    Live::bump(&self.live.resolutions);
                } else {
                    tracing::debug!(?error, "resolution failed");
                    self.stats.resolution_errors += 1;
                }
            }
            other => {
                tracing::debug!(msg = %other, "unexpected message on the resolving association");
                self.stats.protocol_errors += 1;
            }
        }
    }
}

//! One association that registers a share of the pool elements, keeps them
//! alive and re-registers them, and deregisters them at the end.
//!
//! The PEs of association `a` (of `A`) are the global indices
//! `i = a + j*A`; PE `i` has ID `base + i` and belongs to pool `j % P`, so
//! every association carries PEs of every pool.

use super::stats::{Live, Stats, record};
use super::{Phase, request_deadline_wake, send_asap};
use bytes::Bytes;
use rserpool_net::transport::select::AnyTransport;
use rserpool_net::transport::{AssociationId, Event, Ppid, Transport};
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, PoolHandle, RegistrationLife, TransportAddress,
    TransportUse, UserTransport,
};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What every PE association shares.
#[derive(Debug)]
pub struct PeRun {
    /// Number of PE associations (`A`).
    pub assocs: u64,
    /// Number of PEs (`N`).
    pub pes: u64,
    /// PE ID of global index 0.
    pub base: u32,
    /// The pools, `bench-0` ...
    pub pools: Vec<PoolHandle>,
    /// Pool index by handle.
    pub pool_index: HashMap<PoolHandle, usize>,
    /// Policy of every PE.
    pub policy: Policy,
    /// Registration Life as sent.
    pub life: RegistrationLife,
    /// Re-registration interval.
    pub reregister: Duration,
    /// Request timeout (registration and deregistration).
    pub timeout: Duration,
    /// First registrations per second, per association.
    pub rate: f64,
    /// Requests outstanding at once, per association.
    pub max_outstanding: usize,
}

/// Where one association sits and what its PEs offer.
#[derive(Debug, Clone)]
pub struct PeAssoc {
    /// Index `a` of this association.
    pub index: u64,
    /// IP of the PEs' user transport (the association's local address;
    /// unspecified lets the registrar fill in the association's).
    pub user_ip: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not registered (not yet, or refused).
    Idle,
    /// REGISTRATION sent.
    Registering,
    /// Registered.
    Registered,
    /// DEREGISTRATION sent.
    Deregistering,
}

#[derive(Debug, Clone, Copy)]
struct Pe {
    state: State,
    /// The outstanding registration is the first one.
    initial: bool,
    /// Invalidates timers queued for an earlier request of this PE.
    generation: u32,
    /// When the outstanding request was sent.
    sent: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    /// Waiting for outstanding registrations before deregistering.
    Draining {
        deregister: bool,
    },
    Deregistering,
}

struct Task {
    t: AnyTransport,
    assoc: AssociationId,
    run: Arc<PeRun>,
    me: PeAssoc,
    live: Arc<Live>,
    pes: Vec<Pe>,
    /// PEs waiting for their first registration.
    to_register: VecDeque<u32>,
    /// Registrations not yet accepted (first ones, including retries).
    unregistered: usize,
    /// (deadline, PE, generation) of outstanding requests, oldest first.
    timeouts: VecDeque<(Instant, u32, u32)>,
    /// (due, PE, generation) of re-registrations, earliest first.
    reregister: VecDeque<(Instant, u32, u32)>,
    to_deregister: VecDeque<u32>,
    outstanding: usize,
    pace_start: Instant,
    paced: u64,
    stats: Stats,
}

/// Runs the association until the phase says stop and the PEs are
/// deregistered (or the association is lost); closes it and returns what
/// it counted.
pub async fn run(
    t: AnyTransport,
    assoc: AssociationId,
    run: Arc<PeRun>,
    me: PeAssoc,
    live: Arc<Live>,
    phase: watch::Receiver<Phase>,
) -> Stats {
    let n = usize::try_from((run.pes - me.index).div_ceil(run.assocs)).unwrap_or(0);
    let now = Instant::now();
    let mut task = Task {
        t,
        assoc,
        me,
        live,
        pes: vec![
            Pe {
                state: State::Idle,
                initial: true,
                generation: 0,
                sent: now,
            };
            n
        ],
        to_register: (0..n as u32).collect(),
        unregistered: n,
        timeouts: VecDeque::new(),
        reregister: VecDeque::new(),
        to_deregister: VecDeque::new(),
        outstanding: 0,
        pace_start: now,
        paced: 0,
        stats: Stats::default(),
        run,
    };
    task.main(phase).await;
    task.stats
}

impl Task {
    async fn main(&mut self, mut phase: watch::Receiver<Phase>) {
        let mut mode = Mode::Running;
        loop {
            let now = Instant::now();
            self.expire(now);
            match mode {
                Mode::Running => {
                    self.send_reregistrations(now).await;
                    self.send_first_registrations(now).await;
                }
                Mode::Draining { deregister } => {
                    if self.outstanding == 0 {
                        if !deregister {
                            break;
                        }
                        self.to_deregister = (0..self.pes.len() as u32)
                            .filter(|j| self.pes[*j as usize].state == State::Registered)
                            .collect();
                        mode = Mode::Deregistering;
                        continue;
                    }
                }
                Mode::Deregistering => {
                    self.send_deregistrations(now).await;
                    if self.to_deregister.is_empty() && self.outstanding == 0 {
                        break;
                    }
                }
            }
            let wake = self.next_wake(mode == Mode::Running);
            tokio::select! {
                ev = self.t.next_event() => match ev {
                    Ok(Event::Message(m)) if m.assoc == self.assoc && m.ppid == Ppid::ASAP => {
                        self.message(m.data).await;
                    }
                    Ok(Event::AssociationDown { assoc, reason }) if assoc == self.assoc => {
                        self.stats.lost = Some(format!("association to the registrar lost ({reason})"));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.stats.lost = Some(format!("transport failed: {e}"));
                        return;
                    }
                },
                () = request_deadline_wake(wake) => {}
                changed = phase.changed(), if mode == Mode::Running => {
                    let deregister = changed.is_err() || *phase.borrow() == Phase::Deregister;
                    mode = Mode::Draining { deregister };
                }
            }
        }
        super::close(&mut self.t, self.assoc).await;
    }

    /// The earliest instant something is due; `None` if only messages can
    /// move this task on.
    fn next_wake(&self, running: bool) -> Option<Instant> {
        let mut wake = self.timeouts.front().map(|t| t.0);
        if running && self.outstanding < self.run.max_outstanding {
            let mut consider = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));
            if let Some(r) = self.reregister.front() {
                consider(r.0);
            }
            if !self.to_register.is_empty() {
                consider(
                    self.pace_start + Duration::from_secs_f64(self.paced as f64 / self.run.rate),
                );
            }
        }
        wake
    }

    fn global(&self, j: u32) -> u64 {
        self.me.index + u64::from(j) * self.run.assocs
    }

    fn pe_id(&self, j: u32) -> PeId {
        PeId(self.run.base.wrapping_add(self.global(j) as u32))
    }

    fn pool_of(&self, j: u32) -> usize {
        j as usize % self.run.pools.len()
    }

    /// The local index of a PE ID, if it is one of this association's.
    fn local(&self, id: PeId) -> Option<u32> {
        let i = u64::from(id.0.wrapping_sub(self.run.base));
        if i >= self.run.pes || i % self.run.assocs != self.me.index {
            return None;
        }
        u32::try_from(i / self.run.assocs).ok()
    }

    fn registration(&self, j: u32) -> AsapMessage {
        let i = self.global(j);
        AsapMessage::Registration {
            pool_handle: self.run.pools[self.pool_of(j)].clone(),
            pool_element: PoolElement {
                id: self.pe_id(j),
                home_registrar: None,
                registration_life: self.run.life,
                user_transport: UserTransport::Address(TransportAddress::sctp(
                    1024 + (i % 60_000) as u16,
                    TransportUse::DataOnly,
                    vec![self.me.user_ip],
                )),
                policy: self.run.policy.clone(),
                asap_transport: None,
            },
        }
    }

    /// Sends a request for PE `j` and arms its timeout.
    async fn request(&mut self, j: u32, m: AsapMessage, now: Instant) {
        let pe = &mut self.pes[j as usize];
        pe.generation = pe.generation.wrapping_add(1);
        pe.sent = now;
        let generation = pe.generation;
        self.timeouts
            .push_back((now + self.run.timeout, j, generation));
        self.outstanding += 1;
        Live::bump(&self.live.outstanding);
        if let Err(e) = send_asap(&mut self.t, self.assoc, &m).await {
            tracing::debug!(error = %e, "send failed");
        }
    }

    fn answered(&mut self) {
        self.outstanding -= 1;
        self.live
            .outstanding
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn send_first_registrations(&mut self, now: Instant) {
        let rate = self.run.rate;
        let allowed = (now.duration_since(self.pace_start).as_secs_f64() * rate) as u64 + 1;
        // After a stall (outstanding limit) no catch-up burst beyond ~10 ms worth.
        let burst = ((rate / 100.0) as u64).max(1);
        if allowed > self.paced + burst {
            self.paced = allowed - burst;
        }
        while self.paced < allowed && self.outstanding < self.run.max_outstanding {
            let Some(j) = self.to_register.pop_front() else {
                break;
            };
            self.paced += 1;
            let pe = &mut self.pes[j as usize];
            pe.state = State::Registering;
            pe.initial = true;
            let m = self.registration(j);
            self.request(j, m, now).await;
        }
    }

    async fn send_reregistrations(&mut self, now: Instant) {
        while self.outstanding < self.run.max_outstanding {
            let Some(&(due, j, generation)) = self.reregister.front() else {
                break;
            };
            if due > now {
                break;
            }
            self.reregister.pop_front();
            let pe = &mut self.pes[j as usize];
            if pe.generation != generation || pe.state != State::Registered {
                continue;
            }
            pe.state = State::Registering;
            pe.initial = false;
            let m = self.registration(j);
            self.request(j, m, now).await;
        }
    }

    async fn send_deregistrations(&mut self, now: Instant) {
        while self.outstanding < self.run.max_outstanding {
            let Some(j) = self.to_deregister.pop_front() else {
                break;
            };
            self.pes[j as usize].state = State::Deregistering;
            let m = AsapMessage::Deregistration {
                pool_handle: self.run.pools[self.pool_of(j)].clone(),
                pe_id: self.pe_id(j),
            };
            self.request(j, m, now).await;
        }
    }

    /// Times out requests whose deadline passed.
    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, j, generation)) = self.timeouts.front() {
            if deadline > now {
                break;
            }
            self.timeouts.pop_front();
            let pe = &mut self.pes[j as usize];
            if pe.generation != generation {
                continue;
            }
            match pe.state {
                State::Registering => {
                    self.stats.registration_timeouts += 1;
                    pe.generation = pe.generation.wrapping_add(1);
                    if pe.initial {
                        pe.state = State::Idle;
                        self.to_register.push_back(j);
                    } else {
                        // Try again at once; the registration may still be alive.
                        pe.state = State::Registered;
                        self.reregister.push_front((now, j, pe.generation));
                    }
                }
                State::Deregistering => {
                    self.stats.deregistration_timeouts += 1;
                    pe.generation = pe.generation.wrapping_add(1);
                    pe.state = State::Idle;
                }
                State::Idle | State::Registered => continue,
            }
            self.answered();
        }
    }

    async fn message(&mut self, data: Bytes) {
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
            AsapMessage::RegistrationResponse {
                rejected, pe_id, ..
            } => self.registration_response(now, pe_id, rejected),
            AsapMessage::DeregistrationResponse { pe_id, .. } => {
                self.deregistration_response(now, pe_id)
            }
            AsapMessage::EndpointKeepAlive {
                home,
                pool_handle,
                pe_id,
                ..
            } => self.keep_alive(now, home, pool_handle, pe_id).await,
            AsapMessage::Error { causes } => {
                tracing::debug!(?causes, "ASAP_ERROR from the registrar");
                self.stats.protocol_errors += 1;
            }
            other => {
                tracing::debug!(msg = %other, "unexpected message from the registrar");
                self.stats.protocol_errors += 1;
            }
        }
    }

    fn registration_response(&mut self, now: Instant, id: PeId, rejected: bool) {
        let Some(j) = self.local(id) else {
            self.stats.protocol_errors += 1;
            return;
        };
        let pe = &mut self.pes[j as usize];
        if pe.state != State::Registering {
            self.stats.late += 1;
            return;
        }
        let latency = now.duration_since(pe.sent);
        let initial = pe.initial;
        pe.generation = pe.generation.wrapping_add(1);
        let generation = pe.generation;
        if rejected {
            pe.state = State::Idle;
            self.stats.rejections += 1;
        } else {
            pe.state = State::Registered;
            self.reregister
                .push_back((now + self.run.reregister, j, generation));
            if initial {
                self.stats.registrations += 1;
                record(&mut self.stats.registration, latency);
                Live::bump(&self.live.registered);
            } else {
                self.stats.reregistrations += 1;
                record(&mut self.stats.reregistration, latency);
                Live::bump(&self.live.reregistered);
            }
        }
        if initial {
            self.unregistered -= 1;
            if self.unregistered == 0 {
                Live::bump(&self.live.settled_tasks);
                if self.stats.rejections == 0 {
                    self.stats.all_registered_at = Some(now);
                }
            }
        }
        self.answered();
    }

    fn deregistration_response(&mut self, now: Instant, id: PeId) {
        let Some(j) = self.local(id) else {
            self.stats.protocol_errors += 1;
            return;
        };
        let pe = &mut self.pes[j as usize];
        match pe.state {
            State::Deregistering => {
                pe.state = State::Idle;
                pe.generation = pe.generation.wrapping_add(1);
                self.stats.deregistrations += 1;
                record(&mut self.stats.deregistration, now.duration_since(pe.sent));
                self.answered();
            }
            State::Registered => {
                // RFC 5352 §3.2: the registrar ended the registration (its life
                // ran out); register again.
                pe.state = State::Idle;
                pe.generation = pe.generation.wrapping_add(1);
                self.stats.expired += 1;
                self.unregistered += 1;
                self.to_register.push_front(j);
            }
            State::Idle | State::Registering => self.stats.late += 1,
        }
    }

    /// Answers a keep-alive for one PE, or (without PE ID) for every PE of
    /// the pool on this association; with H, re-registers at once.
    async fn keep_alive(&mut self, now: Instant, home: bool, pool: PoolHandle, id: Option<PeId>) {
        self.stats.keep_alives += 1;
        if home {
            self.stats.keep_alives_home += 1;
        }
        let targets: Vec<u32> = match id {
            Some(id) => self.local(id).into_iter().collect(),
            None => match self.run.pool_index.get(&pool) {
                Some(&p) => (p..self.pes.len())
                    .step_by(self.run.pools.len())
                    .map(|j| j as u32)
                    .filter(|j| self.pes[*j as usize].state != State::Idle)
                    .collect(),
                None => Vec::new(),
            },
        };
        if targets.is_empty() {
            self.stats.unknown_keep_alives += 1;
            return;
        }
        for j in targets {
            let ack = AsapMessage::EndpointKeepAliveAck {
                pool_handle: pool.clone(),
                pe_id: self.pe_id(j),
            };
            if let Err(e) = send_asap(&mut self.t, self.assoc, &ack).await {
                tracing::debug!(error = %e, "send failed");
                continue;
            }
            self.stats.keep_alive_acks += 1;
            Live::bump(&self.live.keep_alive_acks);
            if home && self.pes[j as usize].state == State::Registered {
                // The sender claims to be the PE's home: register there now.
                let generation = self.pes[j as usize].generation;
                self.reregister.push_front((now, j, generation));
            }
        }
    }
}

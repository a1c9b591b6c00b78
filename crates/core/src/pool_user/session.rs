//! The pool user's side of sessions (RFC 5351 §2.5, RFC 5352 §3.8-§3.9,
//! §6.5.5): a conversation with a pool that outlives the pool elements
//! serving it.
//!
//! A session picks a PE (the failover order of the last business card
//! first, then the cache by the pool's policy, then a new resolution),
//! opens an association to its user transport and carries the
//! application's messages there. When the association goes down, does not
//! come up within `connect_timeout`, or the application gives up on the PE
//! ([`PoolUser::fail_over`]), the session reports the PE unreachable to its
//! registrar (only if it had sent to it, RFC 5352 §3.5), picks the next one,
//! presents the newest cookie first thing (ASAP_COOKIE_ECHO, §3.8) and tells
//! the application ([`PoolUserEvent::Failover`]).
//!
//! Messages sent while no association works wait in the session (with
//! failover, the default) and go to the next PE in order; messages already
//! handed to a PE that failed are not resent: whether it processed them is
//! unknown, so that is the application's call (RFC 5352 §6.5.5 makes
//! failover resends best effort).

use super::{PoolUser, PoolUserEvent, ResolutionFailure, Timer};
use crate::asap_client::same_endpoint;
use crate::io::{AssocId, Destination, DownReason, Transmit};
use crate::session::{SendError, SendOptions, SessionId, check_ppid};
use crate::time::Instant;
use bytes::Bytes;
use rserpool_wire::{self as wire, AsapMessage, PeId, PoolHandle, Protocol, UserTransport};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Why a session left a PE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverReason {
    /// The association to the PE went down.
    AssociationDown(DownReason),
    /// No association to the PE came up within `connect_timeout`.
    ConnectTimeout,
    /// The application gave up on the PE ([`PoolUser::fail_over`]), for
    /// example because an answer took too long.
    Requested,
}

impl std::fmt::Display for FailoverReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AssociationDown(DownReason::Lost) => f.write_str("PE stopped answering"),
            Self::AssociationDown(DownReason::Aborted) => f.write_str("association aborted"),
            Self::AssociationDown(DownReason::Graceful) => f.write_str("PE closed the session"),
            Self::AssociationDown(DownReason::HandshakeFailed) => {
                f.write_str("association could not be opened")
            }
            Self::ConnectTimeout => f.write_str("no association within the connect timeout"),
            Self::Requested => f.write_str("requested by the application"),
        }
    }
}

/// A business card to present (RFC 5352 §3.9): the pool this pool user
/// serves in as a PE itself, with its PEs in failover order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCard {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// Its PEs in failover order (at least one).
    pub pool_elements: Vec<wire::PoolElement>,
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a handle resolution of the pool.
    Resolving,
    /// Opening the association to the chosen PE.
    Connecting,
    /// Talking to the chosen PE.
    Up,
    /// No PE could be found; the retry timer runs.
    Waiting,
}

impl Waiting {
    fn transmit(&self, assoc: AssocId) -> Transmit {
        Transmit::Data {
            to: Destination::Association(assoc),
            ppid: self.ppid,
            unordered: self.unordered,
            data: self.data.clone(),
        }
    }
}

impl Session {
    /// Whether `pe` failed for this session less than `memory` ago.
    fn failed_recently(&self, pe: PeId, now: Instant, memory: std::time::Duration) -> bool {
        self.failed
            .iter()
            .any(|(id, at)| *id == pe && now.saturating_since(*at) < memory)
    }

    /// Keeps a copy of a message handed to the PE if it asked for resends;
    /// beyond `limit` bytes the oldest copies are given up.
    fn retain(&mut self, w: Waiting, limit: usize, dropped: &mut u64) {
        if !w.resend {
            return;
        }
        self.retained_bytes += w.data.len();
        self.retained.push_back(w);
        while self.retained_bytes > limit {
            let Some(old) = self.retained.pop_front() else {
                break;
            };
            self.retained_bytes -= old.data.len();
            *dropped += 1;
        }
    }
}

/// The PE serving (or about to serve) a session.
#[derive(Debug, Clone)]
struct Target {
    pe_id: PeId,
    addrs: Vec<SocketAddr>,
    assoc: Option<AssocId>,
    /// Whether anything was sent to it (an unreachable report needs that).
    used: bool,
}

/// A message waiting for an association, or kept for a resend.
#[derive(Debug, Clone)]
struct Waiting {
    seq: u64,
    ppid: u32,
    unordered: bool,
    resend: bool,
    data: Bytes,
}

/// One session.
#[derive(Debug)]
pub(super) struct Session {
    pool: PoolHandle,
    phase: Phase,
    target: Option<Target>,
    /// The newest cookie of the session's PEs.
    cookie: Option<Bytes>,
    /// The failover order of the last business card.
    card: Vec<wire::PoolElement>,
    /// PEs that failed for this session, and when: not tried again for
    /// `session.failed_pe_memory`, as registrars may list a dead PE for a
    /// while after it was reported.
    failed: Vec<(PeId, Instant)>,
    /// When the session last asked a registrar for the pool.
    asked: Option<Instant>,
    /// The PE left in the failover under way and why (reported in the Failover event).
    left: Option<(PeId, FailoverReason)>,
    /// Sequence number of the next message the application sends.
    next_seq: u64,
    /// Messages waiting for an association, in order.
    queue: VecDeque<Waiting>,
    queued_bytes: usize,
    /// Messages sent with `resend` to the current PE and not yet released
    /// by the application, in order: sent again to the next PE.
    retained: VecDeque<Waiting>,
    retained_bytes: usize,
}

impl PoolUser {
    /// Opens a session with `pool`: the pool is resolved (or taken from the
    /// cache) and an association opened to the PE its policy picks.
    /// [`PoolUserEvent::SessionConnected`] follows once it is up; messages
    /// sent before wait for it.
    pub fn open_session(&mut self, now: Instant, pool: PoolHandle) -> SessionId {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.stats.sessions_opened += 1;
        self.sessions.insert(
            id,
            Session {
                pool,
                phase: Phase::Resolving,
                target: None,
                cookie: None,
                card: Vec::new(),
                failed: Vec::new(),
                asked: None,
                left: None,
                next_seq: 0,
                queue: VecDeque::new(),
                queued_bytes: 0,
                retained: VecDeque::new(),
                retained_bytes: 0,
            },
        );
        self.next_pe(now, id);
        id
    }

    /// Sends an application message on the session (see [`SendOptions`]);
    /// returns its sequence number in the session (0, 1, ...), which
    /// [`PoolUserEvent::Failover`] refers to.
    pub fn send_data(
        &mut self,
        session: SessionId,
        ppid: u32,
        data: Bytes,
        options: SendOptions,
    ) -> Result<u64, SendError> {
        check_ppid(ppid)?;
        let limit = self.config.session.max_queued_bytes;
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(SendError::UnknownSession)?;
        let w = Waiting {
            seq: s.next_seq,
            ppid,
            unordered: options.unordered,
            resend: options.resend,
            data,
        };
        if let (Phase::Up, Some(t)) = (s.phase, s.target.as_mut()) {
            if let Some(assoc) = t.assoc {
                t.used = true;
                self.stats.session_messages_sent += 1;
                self.outbox.send(w.transmit(assoc));
                s.next_seq += 1;
                s.retain(w, limit, &mut self.stats.retained_dropped);
                return Ok(s.next_seq - 1);
            }
        }
        if !options.failover {
            return Err(SendError::NotConnected);
        }
        if s.queued_bytes + w.data.len() > limit {
            return Err(SendError::QueueFull);
        }
        s.queued_bytes += w.data.len();
        s.queue.push_back(w);
        s.next_seq += 1;
        Ok(s.next_seq - 1)
    }

    /// Tells the session that every message up to sequence number `seq`
    /// has been dealt with (its answer arrived): messages sent with
    /// [`SendOptions::resend`] up to there are no longer sent again after
    /// a failover.
    pub fn release(&mut self, session: SessionId, seq: u64) -> Result<(), SendError> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(SendError::UnknownSession)?;
        while s.retained.front().is_some_and(|w| w.seq <= seq) {
            if let Some(w) = s.retained.pop_front() {
                s.retained_bytes -= w.data.len();
            }
        }
        Ok(())
    }

    /// Gives up the session's current PE, as if it had failed: for an
    /// application whose own timeout expired (RFC 5352 §3.5 lets the
    /// application judge a PE unreachable).
    pub fn fail_over(&mut self, now: Instant, session: SessionId) -> Result<(), SendError> {
        let s = self
            .sessions
            .get(&session)
            .ok_or(SendError::UnknownSession)?;
        if s.target.is_some() {
            self.leave_pe(now, session, FailoverReason::Requested);
        }
        Ok(())
    }

    /// Closes a session: its association is shut down gracefully (what was
    /// sent is delivered first); messages still waiting are dropped.
    /// [`PoolUserEvent::SessionClosed`] follows.
    pub fn close_session(&mut self, session: SessionId) -> Result<(), SendError> {
        let s = self
            .sessions
            .remove(&session)
            .ok_or(SendError::UnknownSession)?;
        self.timers.cancel(&Timer::Session(session));
        if let Some(t) = s.target {
            self.let_go(t, false);
        }
        self.outbox.event(PoolUserEvent::SessionClosed { session });
        Ok(())
    }

    /// The PE currently serving the session, if it is connected.
    pub fn session_pe(&self, session: SessionId) -> Option<PeId> {
        let s = self.sessions.get(&session)?;
        (s.phase == Phase::Up).then_some(s.target.as_ref()?.pe_id)
    }

    /// The business card this pool user presents at the start of every
    /// session with a PE (a PU that is itself a PE, RFC 5352 §3.9); `None`
    /// presents none (the default).
    pub fn set_business_card(&mut self, card: Option<BusinessCard>) {
        self.business_card = card.filter(|c| !c.pool_elements.is_empty());
    }

    // ----- choosing and connecting -----

    /// Picks the session's next PE and connects to it, or resolves the pool
    /// when nothing is left to pick.
    fn next_pe(&mut self, now: Instant, id: SessionId) {
        let memory = self.config.session.failed_pe_memory;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let from_card = s
            .card
            .iter()
            .find(|pe| !s.failed_recently(pe.id, now, memory) && sctp_addrs(pe).is_some())
            .cloned();
        let pool = s.pool.clone();
        let choice = from_card.or_else(|| self.pick_cached(now, id, &pool));
        match choice {
            Some(pe) => self.connect(now, id, pe),
            None => {
                // Every PE known failed recently: ask a registrar, which may
                // know new ones, but at most once per retry interval.
                let retry = self.config.session.retry_interval;
                let Some(s) = self.sessions.get_mut(&id) else {
                    return;
                };
                s.phase = Phase::Resolving;
                if s.asked.is_some_and(|at| now.saturating_since(at) < retry) {
                    self.session_resolved(now, id, Some(ResolutionFailure::NoPoolElements));
                    return;
                }
                s.asked = Some(now);
                // Registrars return a few PEs (rsplib's three, by default)
                // and may still list dead ones: ask for more than failed.
                let failed = s.failed.len() as u32;
                let items = (failed > 0).then(|| {
                    self.config
                        .handle_resolution_items
                        .unwrap_or(3)
                        .max(failed + 3)
                });
                let request = self.request(now, pool, false, items);
                self.session_requests.insert(request, id);
            }
        }
    }

    /// A PE of the pool's cache entry by the pool's policy, not one that
    /// failed in this failover; stale entries serve too (RFC 5352 §3.3 C3).
    fn pick_cached(
        &mut self,
        now: Instant,
        id: SessionId,
        pool: &PoolHandle,
    ) -> Option<wire::PoolElement> {
        let memory = self.config.session.failed_pe_memory;
        let s = self.sessions.get(&id)?;
        let failed = |pe: PeId| s.failed_recently(pe, now, memory);
        let entry = self.cache.get_mut(pool)?;
        // The policy picks; what it picks may have failed already (random
        // policies can pick it again), so it gets a few more draws than
        // there are PEs before the cache counts as exhausted.
        let usable = entry
            .elements
            .iter()
            .filter(|pe| !failed(pe.id) && sctp_addrs(pe).is_some())
            .count();
        if usable == 0 {
            return None;
        }
        for _ in 0..4 * entry.elements.len() {
            let pe = entry.select(&mut self.rng)?;
            if !failed(pe.id) && sctp_addrs(pe).is_some() {
                return Some(pe.clone());
            }
        }
        entry
            .elements
            .iter()
            .find(|pe| !failed(pe.id) && sctp_addrs(pe).is_some())
            .cloned()
    }

    fn connect(&mut self, now: Instant, id: SessionId, pe: wire::PoolElement) {
        let Some(addrs) = sctp_addrs(&pe) else {
            return;
        };
        let up = self
            .assocs
            .iter()
            .find(|(_, peer)| same_endpoint(peer, &addrs))
            .map(|(a, _)| *a);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.target = Some(Target {
            pe_id: pe.id,
            addrs: addrs.clone(),
            assoc: None,
            used: false,
        });
        s.phase = Phase::Connecting;
        if let Some((from, reason)) = s.left.take() {
            let resumes_at = s.queue.front().map_or(s.next_seq, |w| w.seq);
            self.stats.failovers += 1;
            self.outbox.event(PoolUserEvent::Failover {
                session: id,
                from,
                to: pe.id,
                reason,
                resumes_at,
            });
        }
        tracing::debug!(%id, pe = %pe.id, ?addrs, "session connecting");
        match up {
            Some(assoc) => self.session_up(id, assoc),
            None => {
                self.outbox.send(Transmit::Connect { to: addrs });
                self.timers.set(
                    Timer::Session(id),
                    now + self.config.session.connect_timeout,
                );
            }
        }
    }

    /// The session's association is up: cookie echo first, then the
    /// business card, then what waited.
    fn session_up(&mut self, id: SessionId, assoc: AssocId) {
        self.timers.cancel(&Timer::Session(id));
        let card = self.business_card.clone();
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(t) = s.target.as_mut() else {
            return;
        };
        t.assoc = Some(assoc);
        s.phase = Phase::Up;
        let to = Destination::Association(assoc);
        let mut out = Vec::new();
        if let Some(cookie) = s.cookie.clone() {
            t.used = true;
            out.push(Transmit::asap(
                to.clone(),
                AsapMessage::CookieEcho { cookie },
            ));
        }
        if let Some(c) = card {
            out.push(Transmit::asap(
                to.clone(),
                AsapMessage::BusinessCard {
                    pool_handle: c.pool_handle,
                    policy: None,
                    pool_elements: c.pool_elements,
                },
            ));
        }
        let sent = s.queue.len() as u64;
        t.used |= sent > 0;
        let pe_id = t.pe_id;
        let limit = self.config.session.max_queued_bytes;
        let queue = std::mem::take(&mut s.queue);
        s.queued_bytes = 0;
        for w in queue {
            out.push(w.transmit(assoc));
            s.retain(w, limit, &mut self.stats.retained_dropped);
        }
        let cookie_echoed = s.cookie.is_some();
        self.stats.session_messages_sent += sent;
        self.stats.cookie_echoes_sent += u64::from(cookie_echoed);
        for t in out {
            self.outbox.send(t);
        }
        self.outbox.event(PoolUserEvent::SessionConnected {
            session: id,
            pe_id,
            cookie_echoed,
        });
    }

    /// The session leaves its PE and fails over to the next.
    fn leave_pe(&mut self, now: Instant, id: SessionId, reason: FailoverReason) {
        self.timers.cancel(&Timer::Session(id));
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(t) = s.target.take() else {
            return;
        };
        let pool = s.pool.clone();
        s.failed.retain(|(pe, _)| *pe != t.pe_id);
        s.failed.push((t.pe_id, now));
        // A new failure is news the registrars may have a better answer to.
        s.asked = None;
        // In a chain of failovers the first PE left is the one reported.
        let first = s.left.map_or(t.pe_id, |(pe, _)| pe);
        s.left = Some((first, reason));
        // What the PE was given and not released goes to the next one
        // first, in the order it was sent.
        let mut queue = std::mem::take(&mut s.retained);
        queue.append(&mut s.queue);
        s.queue = queue;
        s.queued_bytes += std::mem::take(&mut s.retained_bytes);
        tracing::debug!(%id, pe = %t.pe_id, %reason, "session fails over");
        if t.used {
            // RFC 5352 §3.5: only a PE the PU tried to use is reported.
            self.report_unreachable(now, &pool, t.pe_id);
        } else if let Some(entry) = self.cache.get_mut(&pool) {
            entry.remove(t.pe_id);
        }
        let down = matches!(reason, FailoverReason::AssociationDown(_));
        if !down {
            self.let_go(t, true);
        }
        self.next_pe(now, id);
    }

    /// Lets go of a PE's association: closed unless another session uses
    /// it; an open still in progress is abandoned.
    fn let_go(&mut self, t: Target, abort: bool) {
        match t.assoc {
            Some(assoc) => {
                let shared = self
                    .sessions
                    .values()
                    .any(|s| s.target.as_ref().is_some_and(|o| o.assoc == Some(assoc)));
                if !shared && self.assocs.remove(&assoc).is_some() {
                    self.outbox.send(Transmit::Close { assoc, abort });
                }
            }
            None => self.outbox.send(Transmit::Abandon { to: t.addrs }),
        }
    }

    // ----- what the rest of the machine hands to sessions -----

    /// A resolution a session asked for has finished.
    pub(super) fn session_resolved(
        &mut self,
        now: Instant,
        id: SessionId,
        failure: Option<ResolutionFailure>,
    ) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        if s.phase != Phase::Resolving {
            return;
        }
        let pool = s.pool.clone();
        let pick = match &failure {
            None => self.pick_cached(now, id, &pool),
            Some(_) => None,
        };
        if let Some(pe) = pick {
            return self.connect(now, id, pe);
        }
        let reason = failure.unwrap_or(ResolutionFailure::NoPoolElements);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        // Everything known has failed recently: wait, resolve again, and
        // give PEs whose failure is older than the memory another chance.
        s.phase = Phase::Waiting;
        let memory = self.config.session.failed_pe_memory;
        s.failed
            .retain(|(_, at)| now.saturating_since(*at) < memory);
        let retry_at = now + self.config.session.retry_interval;
        self.timers.set(Timer::Session(id), retry_at);
        self.outbox.event(PoolUserEvent::SessionUnavailable {
            session: id,
            reason,
            retry_at,
        });
    }

    /// The session timer: the connect timeout, or the end of a pause.
    pub(super) fn on_session_timer(&mut self, now: Instant, id: SessionId) {
        match self.sessions.get(&id).map(|s| s.phase) {
            Some(Phase::Connecting) => self.leave_pe(now, id, FailoverReason::ConnectTimeout),
            Some(Phase::Waiting) => self.next_pe(now, id),
            _ => {}
        }
    }

    /// An association came up: the sessions waiting for it start.
    pub(super) fn sessions_on_up(&mut self, assoc: AssocId, peer: &[SocketAddr]) {
        let waiting: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.phase == Phase::Connecting
                    && s.target
                        .as_ref()
                        .is_some_and(|t| same_endpoint(&t.addrs, peer))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.session_up(id, assoc);
        }
    }

    /// An association went down: its sessions fail over. A failed open the
    /// driver never reported up is attributed to the one session opening,
    /// if there is exactly one; otherwise the connect timeout decides.
    pub(super) fn sessions_on_down(
        &mut self,
        now: Instant,
        assoc: AssocId,
        reason: DownReason,
        known: bool,
    ) -> bool {
        let mut hit: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.target.as_ref().is_some_and(|t| t.assoc == Some(assoc)))
            .map(|(id, _)| *id)
            .collect();
        if hit.is_empty() && !known && reason == DownReason::HandshakeFailed {
            let opening: Vec<SessionId> = self
                .sessions
                .iter()
                .filter(|(_, s)| s.phase == Phase::Connecting)
                .map(|(id, _)| *id)
                .collect();
            if opening.len() == 1 {
                hit = opening;
            }
        }
        let taken = !hit.is_empty();
        for id in hit {
            self.leave_pe(now, id, FailoverReason::AssociationDown(reason));
        }
        taken
    }

    /// Whether a session is opening an association to a PE now.
    pub(super) fn session_connecting(&self) -> bool {
        self.sessions.values().any(|s| s.phase == Phase::Connecting)
    }

    /// The session on `assoc`, if any (the first, should several share it).
    pub(super) fn session_on(&self, assoc: AssocId) -> Option<SessionId> {
        self.sessions
            .iter()
            .find(|(_, s)| {
                s.phase == Phase::Up && s.target.as_ref().is_some_and(|t| t.assoc == Some(assoc))
            })
            .map(|(id, _)| *id)
    }

    /// Application data from the session's PE.
    pub(super) fn on_session_data(&mut self, id: SessionId, ppid: u32, data: Bytes) {
        self.stats.session_messages_received += 1;
        self.outbox.event(PoolUserEvent::SessionData {
            session: id,
            ppid,
            data,
        });
    }

    /// ASAP_COOKIE: only the newest is kept (RFC 5352 §3.8).
    pub(super) fn on_cookie(&mut self, id: SessionId, cookie: Bytes) {
        self.stats.cookies_received += 1;
        if let Some(s) = self.sessions.get_mut(&id) {
            s.cookie = Some(cookie);
        }
    }

    /// ASAP_BUSINESS_CARD from the session's PE: its failover order
    /// (RFC 5352 §3.9 BC2). A card naming another pool is only noted: the
    /// session stays with the pool it was opened for.
    pub(super) fn on_business_card(
        &mut self,
        id: SessionId,
        pool_handle: PoolHandle,
        pool_elements: Vec<wire::PoolElement>,
    ) {
        self.stats.business_cards_received += 1;
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.pool == pool_handle {
                s.card = pool_elements;
            } else {
                tracing::debug!(%id, %pool_handle, "business card of another pool ignored");
            }
        }
    }
}

/// The SCTP addresses of a PE's user transport; `None` for transports a
/// session cannot use (TCP and the others, opaque ones).
pub(super) fn sctp_addrs(pe: &wire::PoolElement) -> Option<Vec<SocketAddr>> {
    match &pe.user_transport {
        UserTransport::Address(t) if matches!(t.protocol, Protocol::Sctp(_)) => {
            let addrs: Vec<SocketAddr> = t
                .addresses
                .iter()
                .map(|ip| SocketAddr::new(*ip, t.port))
                .collect();
            (!addrs.is_empty() && t.port != 0).then_some(addrs)
        }
        _ => None,
    }
}

//! The pool user's ASAP client (RFC 5352 §3.3, §3.5, §3.6 PU side): resolve
//! pool handles at a home registrar with a cache in front, pick PEs by the
//! pool's policy, and report unreachable PEs.
//!
//! The home registrar is whichever registrar last answered; it starts as
//! the first the hunt offers. A request that T1-ENRPrequest finds
//! unanswered goes again to the home and also to one other registrar
//! (RFC 5352 §3.7.2: resend, and hunt in parallel); whichever answers
//! becomes home. One request per pool is outstanding at a time: further
//! [`PoolUser::resolve`] calls for that pool wait on it.
//!
//! On top of that, sessions ([`PoolUser::open_session`]): conversations
//! with a pool that fail over between its PEs (see the `session` module).

mod cache;
mod config;
mod session;
#[cfg(test)]
mod tests;

pub use cache::CachedPool;
pub use config::{PoolUserConfig, SessionConfig};
pub use session::{BusinessCard, FailoverReason};

use crate::Machine;
use crate::asap_client::hunt::{Learned, RegistrarHunt};
use crate::asap_client::screen::screen;
use crate::asap_client::{AnnounceStats, ClientConfigError, InboundStats, same_endpoint};
use crate::io::{AssocId, AssociationEvent, Destination, DownReason, Transmit};
use crate::outbox::Outbox;
use crate::session::SessionId;
use crate::time::Instant;
use crate::timer::Timers;
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rserpool_wire::{self as wire, AsapMessage, CauseCode, ErrorCause, PeId, PoolHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

/// Names one [`PoolUser::resolve`] call in the events that answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request#{}", self.0)
    }
}

/// What the pool user reports to its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolUserEvent {
    /// The pool's PEs are in the cache; pick one with [`PoolUser::select`].
    Resolved {
        /// The call answered.
        request: RequestId,
        /// The pool.
        pool_handle: PoolHandle,
        /// Answered from a fresh cache entry without asking a registrar.
        from_cache: bool,
    },
    /// The pool could not be resolved; the request is dropped.
    ResolutionFailed {
        /// The call answered.
        request: RequestId,
        /// The pool.
        pool_handle: PoolHandle,
        /// Why.
        reason: ResolutionFailure,
    },
    /// A registrar (or a session's PE) sent ASAP_ERROR.
    PeerError {
        /// The association it came on.
        assoc: AssocId,
        /// The causes.
        causes: Vec<ErrorCause>,
    },
    /// A session's association to a PE is up (at first, and after each
    /// failover); messages that waited have been sent.
    SessionConnected {
        /// The session.
        session: SessionId,
        /// The PE now serving it.
        pe_id: PeId,
        /// Whether the newest cookie went to it first (ASAP_COOKIE_ECHO).
        cookie_echoed: bool,
    },
    /// Application data from the session's PE.
    SessionData {
        /// The session.
        session: SessionId,
        /// Its payload protocol identifier.
        ppid: u32,
        /// The message.
        data: Bytes,
    },
    /// A session left a PE and is connecting to another
    /// ([`Self::SessionConnected`] follows when it is up).
    Failover {
        /// The session.
        session: SessionId,
        /// The PE left.
        from: PeId,
        /// The PE chosen next.
        to: PeId,
        /// Why the session left `from`.
        reason: FailoverReason,
        /// Sequence number (see [`PoolUser::send_data`]) of the first
        /// message `to` gets: messages sent with `resend` and not released
        /// come again, in order, then those that waited. Earlier messages
        /// went to PEs that failed and, if unanswered, may be lost.
        resumes_at: u64,
    },
    /// A session found no PE to connect to; it tries again at `retry_at`
    /// (messages sent with failover keep waiting).
    SessionUnavailable {
        /// The session.
        session: SessionId,
        /// Why no PE was found.
        reason: ResolutionFailure,
        /// When the session resolves the pool again.
        retry_at: Instant,
    },
    /// A session was closed ([`PoolUser::close_session`]).
    SessionClosed {
        /// The session.
        session: SessionId,
    },
}

/// Why a resolution failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolutionFailure {
    /// No answer after MAX-REQUEST-RETRANSMIT resends (T1-ENRPrequest).
    Timeout,
    /// No registrar was known to ask during the whole T1 sequence.
    NoRegistrar,
    /// The registrar answered with an Operation Error (for example Unknown
    /// Pool Handle, cause 0x9).
    Rejected(Vec<ErrorCause>),
    /// The registrar answered without any PE and without a cause.
    NoPoolElements,
}

impl ResolutionFailure {
    /// Whether the registrar said the pool does not exist.
    pub fn is_unknown_pool(&self) -> bool {
        matches!(self, Self::Rejected(c) if c.iter().any(|c| c.code == CauseCode::UnknownPoolHandle))
    }
}

/// Counters of a pool user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUserStats {
    /// Inbound messages on associations.
    pub inbound: InboundStats,
    /// The announce channel.
    pub announces: AnnounceStats,
    /// [`PoolUser::resolve`] calls.
    pub resolutions_requested: u64,
    /// Of those, answered from a fresh cache entry.
    pub cache_hits: u64,
    /// Of those, queued on a resolution already outstanding for the pool.
    pub queued: u64,
    /// HANDLE_RESOLUTION messages sent (first sends, resends and parallel hunts).
    pub requests_sent: u64,
    /// T1-ENRPrequest expiries that led to a resend.
    pub retransmissions: u64,
    /// Resolutions answered with PEs.
    pub resolved: u64,
    /// Resolutions failed (each failed request counts once per waiting call).
    pub failed: u64,
    /// HANDLE_RESOLUTION_RESPONSEs for no outstanding request.
    pub unsolicited_responses: u64,
    /// Times another registrar answered and became home.
    pub home_changes: u64,
    /// ENDPOINT_UNREACHABLE messages sent.
    pub unreachable_reported: u64,
    /// Unreachable reports not sent: already reported, PE unknown, or no registrar.
    pub unreachable_suppressed: u64,
    /// Sessions opened.
    pub sessions_opened: u64,
    /// Failovers of sessions from one PE to another.
    pub failovers: u64,
    /// Application messages sent on sessions.
    pub session_messages_sent: u64,
    /// Application messages received on sessions.
    pub session_messages_received: u64,
    /// ASAP_COOKIEs received.
    pub cookies_received: u64,
    /// ASAP_COOKIE_ECHOs sent.
    pub cookie_echoes_sent: u64,
    /// ASAP_BUSINESS_CARDs received.
    pub business_cards_received: u64,
    /// Copies kept for resending given up because the session's resend
    /// buffer was full (the application did not release them).
    pub retained_dropped: u64,
}

/// A resolution in flight for one pool.
#[derive(Debug, Clone)]
struct Query {
    waiters: Vec<RequestId>,
    retransmits: u32,
    /// Whether a HANDLE_RESOLUTION has gone out at all (a registrar was known).
    sent: bool,
    /// How many PEs to ask for (Handle Resolution Option), if not the configured number.
    items: Option<u32>,
}

/// The registrar requests go to.
#[derive(Debug, Clone)]
struct Home {
    addrs: Vec<SocketAddr>,
    assoc: Option<AssocId>,
}

/// The PU's timers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// T1-ENRPrequest of the resolution for this pool.
    Request(PoolHandle),
    /// T7-ENRPoutdate of the earliest announced registrar.
    AnnounceExpiry,
    /// A session's connect timeout or retry pause.
    Session(SessionId),
}

/// The ASAP client side of a pool user, as a sans-IO state machine.
#[derive(Debug)]
pub struct PoolUser {
    config: PoolUserConfig,
    rng: ChaCha8Rng,
    hunt: RegistrarHunt,
    home: Option<Home>,
    /// Registrars that could not be reached since one last answered, with
    /// the failed attempts: what a waiting user is told.
    unreachable: Vec<(Vec<SocketAddr>, u32)>,
    /// Associations that are up, with their peer addresses.
    assocs: BTreeMap<AssocId, Vec<SocketAddr>>,
    cache: BTreeMap<PoolHandle, CachedPool>,
    queries: BTreeMap<PoolHandle, Query>,
    /// PEs reported unreachable and not seen in a resolution since: one report per failure.
    reported: BTreeSet<(PoolHandle, PeId)>,
    next_request: u64,
    sessions: BTreeMap<SessionId, session::Session>,
    next_session: u64,
    /// Resolutions sessions wait for.
    session_requests: BTreeMap<RequestId, SessionId>,
    business_card: Option<BusinessCard>,
    timers: Timers<Timer>,
    outbox: Outbox<PoolUserEvent>,
    stats: PoolUserStats,
}

impl PoolUser {
    /// Creates the PU; `rng` drives the random selection policies.
    pub fn new(
        config: PoolUserConfig,
        rng: ChaCha8Rng,
        _now: Instant,
    ) -> Result<Self, ClientConfigError> {
        config.validate()?;
        Ok(Self {
            hunt: RegistrarHunt::new(&config.hunt),
            config,
            rng,
            home: None,
            unreachable: Vec::new(),
            assocs: BTreeMap::new(),
            cache: BTreeMap::new(),
            queries: BTreeMap::new(),
            reported: BTreeSet::new(),
            next_request: 0,
            sessions: BTreeMap::new(),
            next_session: 1,
            session_requests: BTreeMap::new(),
            business_card: None,
            timers: Timers::default(),
            outbox: Outbox::default(),
            stats: PoolUserStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PoolUserConfig {
        &self.config
    }

    /// The home registrar's association, once one is up.
    pub fn home(&self) -> Option<AssocId> {
        self.home.as_ref().and_then(|h| h.assoc)
    }

    /// Registrars this PU tried and could not reach since one last
    /// answered, each with its failed attempts.
    pub fn unreachable_registrars(&self) -> &[(Vec<SocketAddr>, u32)] {
        &self.unreachable
    }

    /// The counters.
    pub fn stats(&self) -> PoolUserStats {
        let mut s = self.stats.clone();
        s.announces = self.hunt.stats.clone();
        s
    }

    /// The cache entry of `pool`, fresh or stale.
    pub fn cached(&self, pool: &PoolHandle) -> Option<&CachedPool> {
        self.cache.get(pool)
    }

    /// Whether `pool` has a cache entry younger than `stale_cache_value`.
    pub fn is_fresh(&self, now: Instant, pool: &PoolHandle) -> bool {
        self.cache
            .get(pool)
            .is_some_and(|c| c.is_fresh(now, self.config.stale_cache_value))
    }

    /// Resolves `pool` (RFC 5352 §3.3): a fresh cache entry answers at
    /// once (C4); otherwise a HANDLE_RESOLUTION goes to the home registrar
    /// (C2: a stale entry is refreshed), or the call joins the one already
    /// outstanding for the pool. The answer is a [`PoolUserEvent`] carrying
    /// the returned id.
    pub fn resolve(&mut self, now: Instant, pool: PoolHandle) -> RequestId {
        self.request(now, pool, true, None)
    }

    /// [`Self::resolve`]; without `use_cache` a registrar is asked even
    /// when the cache is fresh (a session that found every cached PE dead),
    /// and `items` asks for that many PEs instead of the configured number.
    fn request(
        &mut self,
        now: Instant,
        pool: PoolHandle,
        use_cache: bool,
        items: Option<u32>,
    ) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.stats.resolutions_requested += 1;
        if use_cache
            && self.is_fresh(now, &pool)
            && self
                .cache
                .get(&pool)
                .is_some_and(|c| !c.elements.is_empty())
        {
            self.stats.cache_hits += 1;
            self.outbox.event(PoolUserEvent::Resolved {
                request: id,
                pool_handle: pool,
                from_cache: true,
            });
            return id;
        }
        if let Some(q) = self.queries.get_mut(&pool) {
            self.stats.queued += 1;
            q.waiters.push(id);
            return id;
        }
        self.queries.insert(
            pool.clone(),
            Query {
                waiters: vec![id],
                retransmits: 0,
                sent: false,
                items,
            },
        );
        self.send_query(&pool, false);
        self.timers
            .set(Timer::Request(pool), now + self.config.t1_enrp_request);
        id
    }

    /// Picks a PE of `pool` from the cache by the pool's policy (see
    /// [`CachedPool`]); stale entries are used too (RFC 5352 §3.3 C3), so
    /// call [`Self::resolve`] first to refresh. `None` if nothing is cached.
    pub fn select(&mut self, pool: &PoolHandle) -> Option<wire::PoolElement> {
        self.cache.get_mut(pool)?.select(&mut self.rng).cloned()
    }

    /// Reports that `pe_id` of `pool` could not be reached (RFC 5352 §3.5):
    /// drops it from the cache and sends ENDPOINT_UNREACHABLE to the home
    /// registrar, once per failure, so only for a PE still in the cache.
    /// The caller must have tried to send to the PE (RFC 5352 §3.5 MUST
    /// NOT otherwise). Returns whether a report went out.
    pub fn report_unreachable(&mut self, _now: Instant, pool: &PoolHandle, pe_id: PeId) -> bool {
        let key = (pool.clone(), pe_id);
        let known = self.cache.get_mut(pool).is_some_and(|c| c.remove(pe_id));
        if !known || self.reported.contains(&key) {
            self.stats.unreachable_suppressed += 1;
            tracing::debug!(%pool, %pe_id, known, "unreachable report suppressed");
            return false;
        }
        let Some(to) = self.home_destination() else {
            self.stats.unreachable_suppressed += 1;
            tracing::debug!(%pool, %pe_id, "no registrar to report an unreachable PE to");
            return false;
        };
        self.reported.insert(key);
        self.stats.unreachable_reported += 1;
        self.send(
            to,
            AsapMessage::EndpointUnreachable {
                pool_handle: pool.clone(),
                pe_id,
            },
        );
        true
    }

    // ----- requests -----

    /// Where requests go: the home, chosen by the hunt if there is none yet.
    fn home_destination(&mut self) -> Option<Destination> {
        if self.home.is_none() {
            let c = self.hunt.next_candidate().or_else(|| {
                self.hunt.new_round();
                self.hunt.next_candidate()
            })?;
            let assoc = self.assoc_to(&c.addrs);
            self.home = Some(Home {
                addrs: c.addrs,
                assoc,
            });
        }
        let home = self.home.as_ref()?;
        Some(match home.assoc {
            Some(a) => Destination::Association(a),
            None => Destination::Addresses(home.addrs.clone()),
        })
    }

    fn assoc_to(&self, addrs: &[SocketAddr]) -> Option<AssocId> {
        self.assocs
            .iter()
            .find(|(_, peer)| same_endpoint(peer, addrs))
            .map(|(a, _)| *a)
    }

    /// Starts a hunt round in which the failed registrar at `addrs` comes last.
    fn avoid(&mut self, addrs: &[SocketAddr]) {
        self.hunt.new_round();
        self.hunt.mark_tried(addrs);
    }

    /// A registrar other than the home, rotating through the list.
    fn other_registrar(&mut self) -> Option<Vec<SocketAddr>> {
        let home = self.home.as_ref()?.addrs.clone();
        self.hunt.mark_tried(&home);
        let c = self.hunt.next_candidate().or_else(|| {
            self.hunt.new_round();
            self.hunt.mark_tried(&home);
            self.hunt.next_candidate()
        })?;
        Some(c.addrs)
    }

    /// Sends the pool's HANDLE_RESOLUTION to the home and, with `hunt`, to
    /// one other registrar as well.
    fn send_query(&mut self, pool: &PoolHandle, hunt: bool) {
        let Some(to) = self.home_destination() else {
            tracing::debug!(%pool, "no registrar known; resolution waits");
            return;
        };
        let message = AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: pool.clone(),
            items: self
                .queries
                .get(pool)
                .and_then(|q| q.items)
                .or(self.config.handle_resolution_items),
        };
        self.stats.requests_sent += 1;
        self.send(to, message.clone());
        if hunt {
            if let Some(other) = self.other_registrar() {
                self.stats.requests_sent += 1;
                let to = match self.assoc_to(&other) {
                    Some(a) => Destination::Association(a),
                    None => Destination::Addresses(other),
                };
                self.send(to, message);
            }
        }
        if let Some(q) = self.queries.get_mut(pool) {
            q.sent = true;
        }
    }

    fn on_request_timeout(&mut self, now: Instant, pool: PoolHandle) {
        let Some(q) = self.queries.get_mut(&pool) else {
            return;
        };
        if q.retransmits < self.config.max_request_retransmit {
            q.retransmits += 1;
            self.stats.retransmissions += 1;
            tracing::debug!(%pool, retransmit = q.retransmits, "T1 expired; resending and hunting");
            self.send_query(&pool, true);
            self.timers
                .set(Timer::Request(pool), now + self.config.t1_enrp_request);
            return;
        }
        let Some(q) = self.queries.remove(&pool) else {
            return;
        };
        let reason = if q.sent {
            ResolutionFailure::Timeout
        } else {
            ResolutionFailure::NoRegistrar
        };
        tracing::debug!(%pool, ?reason, "resolution failed");
        // The home did not answer either: the next request hunts elsewhere.
        if let Some(home) = self.home.take() {
            self.avoid(&home.addrs);
        }
        self.fail(now, &pool, q.waiters, &reason);
    }

    fn fail(
        &mut self,
        now: Instant,
        pool: &PoolHandle,
        waiters: Vec<RequestId>,
        reason: &ResolutionFailure,
    ) {
        for request in waiters {
            self.stats.failed += 1;
            if let Some(session) = self.session_requests.remove(&request) {
                self.session_resolved(now, session, Some(reason.clone()));
                continue;
            }
            self.outbox.event(PoolUserEvent::ResolutionFailed {
                request,
                pool_handle: pool.clone(),
                reason: reason.clone(),
            });
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        assoc: AssocId,
        pool: PoolHandle,
        policy: Option<wire::Policy>,
        elements: Vec<wire::PoolElement>,
        error: Option<Vec<ErrorCause>>,
    ) {
        let Some(q) = self.queries.remove(&pool) else {
            self.stats.unsolicited_responses += 1;
            tracing::debug!(?assoc, %pool, "handle resolution response for no request");
            return;
        };
        self.timers.cancel(&Timer::Request(pool.clone()));
        self.adopt_home(assoc);
        if error.is_some() || elements.is_empty() {
            let reason = match error {
                Some(causes) => ResolutionFailure::Rejected(causes),
                None => ResolutionFailure::NoPoolElements,
            };
            tracing::debug!(%pool, ?reason, "resolution refused");
            self.cache.remove(&pool);
            self.reported.retain(|(p, _)| *p != pool);
            self.fail(now, &pool, q.waiters, &reason);
            return;
        }
        // PEs listed again may fail again: a new failure, a new report.
        for pe in &elements {
            self.reported.remove(&(pool.clone(), pe.id));
        }
        self.cache
            .insert(pool.clone(), CachedPool::new(policy, elements, now));
        for request in q.waiters {
            self.stats.resolved += 1;
            if let Some(session) = self.session_requests.remove(&request) {
                self.session_resolved(now, session, None);
                continue;
            }
            self.outbox.event(PoolUserEvent::Resolved {
                request,
                pool_handle: pool.clone(),
                from_cache: false,
            });
        }
    }

    /// The registrar on `assoc` answered: it is home from now on (RFC 5352 §3.7.2).
    fn adopt_home(&mut self, assoc: AssocId) {
        if self.home.as_ref().is_some_and(|h| h.assoc == Some(assoc)) {
            return;
        }
        let peer = self.assocs.get(&assoc).cloned().unwrap_or_default();
        if let Some(home) = self.home.as_mut() {
            if home.assoc.is_none() && (same_endpoint(&home.addrs, &peer) || peer.is_empty()) {
                home.assoc = Some(assoc);
                return;
            }
        }
        self.stats.home_changes += 1;
        tracing::debug!(
            ?assoc,
            ?peer,
            "another registrar answered; adopting it as home"
        );
        let old = self.home.replace(Home {
            addrs: peer,
            assoc: Some(assoc),
        });
        if let Some(old) = old.and_then(|h| h.assoc) {
            if self.assocs.remove(&old).is_some() {
                self.outbox.send(Transmit::Close {
                    assoc: old,
                    abort: false,
                });
            }
        }
    }

    fn send(&mut self, to: Destination, message: AsapMessage) {
        tracing::trace!(?to, %message, "send");
        self.outbox.send(Transmit::asap(to, message));
    }

    fn rearm_announce_expiry(&mut self) {
        match self.hunt.next_expiry() {
            Some(at) => self.timers.set(Timer::AnnounceExpiry, at),
            None => {
                self.timers.cancel(&Timer::AnnounceExpiry);
            }
        }
    }
}

impl Machine for PoolUser {
    type Event = PoolUserEvent;

    fn handle_data(&mut self, now: Instant, assoc: AssocId, ppid: u32, data: Bytes) {
        let session = self.session_on(assoc);
        if let Some(id) = session {
            if ppid != wire::PPID_ASAP && ppid != wire::PPID_ENRP {
                return self.on_session_data(id, ppid, data);
            }
        }
        let Some(message) = screen(
            assoc,
            ppid,
            &data,
            &mut self.outbox,
            &mut self.stats.inbound,
        ) else {
            return;
        };
        match (message, session) {
            (
                AsapMessage::HandleResolutionResponse {
                    pool_handle,
                    policy,
                    pool_elements,
                    error,
                    ..
                },
                _,
            ) => self.on_response(now, assoc, pool_handle, policy, pool_elements, error),
            (AsapMessage::Cookie { cookie }, Some(id)) => self.on_cookie(id, cookie),
            (
                AsapMessage::BusinessCard {
                    pool_handle,
                    pool_elements,
                    ..
                },
                Some(id),
            ) => self.on_business_card(id, pool_handle, pool_elements),
            (AsapMessage::Error { causes }, _) => {
                self.stats.inbound.errors_received += 1;
                tracing::debug!(?assoc, ?causes, "ASAP_ERROR received");
                self.outbox
                    .event(PoolUserEvent::PeerError { assoc, causes });
            }
            (other, _) => {
                self.stats.inbound.unexpected += 1;
                tracing::debug!(?assoc, message = %other, "unexpected message dropped");
            }
        }
    }

    fn handle_association(&mut self, now: Instant, event: AssociationEvent) {
        match event {
            AssociationEvent::Up { assoc, peer } => {
                if let Some(home) = self.home.as_mut() {
                    if home.assoc.is_none() && same_endpoint(&home.addrs, &peer) {
                        home.assoc = Some(assoc);
                        self.unreachable.clear();
                    }
                }
                self.sessions_on_up(assoc, &peer);
                self.assocs.insert(assoc, peer);
            }
            AssociationEvent::Down { assoc, reason } => {
                let known = self.assocs.remove(&assoc).is_some();
                let session_took_it = self.sessions_on_down(now, assoc, reason, known);
                // A handshake that failed on an association never reported
                // up was the attempt to reach the home, unless a session was
                // opening one too (then the session's timeout decides).
                let home_unreached = !known
                    && !session_took_it
                    && reason == DownReason::HandshakeFailed
                    && !self.session_connecting()
                    && self.home.as_ref().is_some_and(|h| h.assoc.is_none());
                let Some(home) = self
                    .home
                    .take_if(|h| h.assoc == Some(assoc) || home_unreached)
                else {
                    return;
                };
                if home_unreached {
                    match self
                        .unreachable
                        .iter_mut()
                        .find(|(a, _)| same_endpoint(a, &home.addrs))
                    {
                        Some((_, n)) => *n += 1,
                        None => self.unreachable.push((home.addrs.clone(), 1)),
                    }
                }
                tracing::debug!(?assoc, ?reason, "home registrar association down");
                // Requests sent there will not be answered (RFC 5352 §3.7.1):
                // each goes to the next registrar now, counting as a resend.
                self.avoid(&home.addrs);
                let pools: Vec<PoolHandle> = self.queries.keys().cloned().collect();
                for pool in pools {
                    let Some(q) = self.queries.get_mut(&pool) else {
                        continue;
                    };
                    if q.retransmits < self.config.max_request_retransmit {
                        q.retransmits += 1;
                        self.stats.retransmissions += 1;
                        self.send_query(&pool, false);
                        self.timers
                            .set(Timer::Request(pool), now + self.config.t1_enrp_request);
                    }
                }
            }
        }
    }

    fn handle_announce(&mut self, now: Instant, from: SocketAddr, ppid: u32, data: Bytes) {
        let learned = self.hunt.announce(now, from, ppid, &data);
        self.rearm_announce_expiry();
        if learned == Learned::New {
            // Requests that found no registrar go out now.
            let waiting: Vec<PoolHandle> = self
                .queries
                .iter()
                .filter(|(_, q)| !q.sent)
                .map(|(p, _)| p.clone())
                .collect();
            for pool in waiting {
                self.send_query(&pool, false);
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Request(pool) => self.on_request_timeout(now, pool),
                Timer::AnnounceExpiry => {
                    self.hunt.expire(now);
                    self.rearm_announce_expiry();
                }
                Timer::Session(id) => self.on_session_timer(now, id),
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<PoolUserEvent> {
        self.outbox.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
}

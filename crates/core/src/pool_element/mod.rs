//! The pool element's ASAP client (RFC 5352 §3.1-§3.7, PE side): find a home
//! registrar, register and keep re-registering there, answer its
//! keep-alives, follow a registrar that claims to be the new home (H bit),
//! survive the home's failure, and deregister on shutdown.
//!
//! One registration is in flight at a time (an attempt): towards a
//! registrar picked by the hunt, a renewal at the current home, or at a
//! registrar that sent ENDPOINT_KEEP_ALIVE with H=1. The PE moves its home
//! only once the new registrar has accepted it, and closes the old home
//! association only then, so it is never missing from the handlespace in
//! between (TAKEOVER-SUGGESTION.md §6).

mod config;
mod session;
#[cfg(test)]
mod tests;

pub use config::{LifeUnit, PoolElementConfig};

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
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rserpool_wire::{self as wire, AsapMessage, ErrorCause, PeId, Policy, PrId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// What the pool element reports to its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolElementEvent {
    /// A registrar accepted the PE and is now its home (first registration,
    /// after a hunt, after adopting a registrar, or after the registration
    /// had expired). Periodic renewals are only counted in the stats.
    Registered {
        /// The association to the home registrar.
        assoc: AssocId,
        /// The PE identifier registered.
        pe_id: PeId,
        /// The home's server ID, when known (from an announce or a keep-alive).
        server_id: Option<PrId>,
    },
    /// The registrar refused the registration (R=1). The PE does not retry
    /// with the same values (RFC 5352 §3.1); changing the policy
    /// ([`PoolElement::set_policy`]) registers again.
    RegistrationRejected {
        /// The association the refusal came on.
        assoc: AssocId,
        /// The causes the registrar gave (possibly none).
        causes: Vec<ErrorCause>,
    },
    /// A registrar sent ENDPOINT_KEEP_ALIVE with H=1 (after a takeover, or
    /// following a takeover suggestion) and accepted the PE's immediate
    /// re-registration; the old home association is being closed.
    HomeChanged {
        /// The previous home association, if the PE still had one.
        old: Option<AssocId>,
        /// The new home association.
        new: AssocId,
        /// The new home's server ID.
        server_id: PrId,
    },
    /// The home registrar was lost; the PE is hunting for another.
    HomeLost {
        /// The old home association.
        assoc: AssocId,
        /// Why.
        reason: HomeLossReason,
    },
    /// A registrar could not be reached or did not answer MAX-REG-ATTEMPT
    /// registrations; the PE tries another.
    PrUnreachable {
        /// The registrar's addresses (empty if only its association was known).
        addresses: Vec<SocketAddr>,
    },
    /// No registrar could be registered with (RFC 5352 §3.1: report upwards
    /// after MAX-REG-ATTEMPT). The PE keeps hunting: at `retry_at`, or, with
    /// no registrar known at all, when an announce arrives.
    NoRegistrar {
        /// When the next hunt round starts.
        retry_at: Option<Instant>,
    },
    /// The home registrar dropped the registration (unsolicited
    /// DEREGISTRATION_RESPONSE: its life ran out); the PE registers again.
    RegistrationExpired {
        /// The association it came on.
        assoc: AssocId,
    },
    /// Deregistration finished ([`PoolElement::shutdown`]); the machine is closed.
    Deregistered {
        /// The registrar answered (false: T3 expired, the association went
        /// down, or the PE was not registered anywhere).
        confirmed: bool,
        /// Operation Error causes in the response (a refused deregistration).
        causes: Vec<ErrorCause>,
    },
    /// A registrar sent ASAP_ERROR.
    PeerError {
        /// The association it came on.
        assoc: AssocId,
        /// The causes.
        causes: Vec<ErrorCause>,
    },
    /// A pool user started a session (its first data, cookie echo or
    /// business card arrived; the PE has sent its business card).
    SessionOpened {
        /// The session.
        session: SessionId,
        /// The pool user's addresses.
        peer: Vec<SocketAddr>,
    },
    /// Application data arrived on a session.
    SessionData {
        /// The session.
        session: SessionId,
        /// Its payload protocol identifier.
        ppid: u32,
        /// The message.
        data: Bytes,
    },
    /// A pool user that failed over to this PE presented the cookie of the
    /// PE it came from (ASAP_COOKIE_ECHO): the state to continue from.
    /// It arrives before any data of the session.
    CookieEcho {
        /// The session.
        session: SessionId,
        /// The cookie, as the previous PE sent it (verify before trusting it).
        cookie: Bytes,
    },
    /// A pool user that is itself a PE of another pool sent its business card.
    BusinessCard {
        /// The session.
        session: SessionId,
        /// The pool the pool user serves in.
        pool_handle: wire::PoolHandle,
        /// Its PEs in failover order.
        pool_elements: Vec<wire::PoolElement>,
    },
    /// A session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why its association went down; `None` when this PE closed it.
        reason: Option<DownReason>,
    },
}

/// Why the PE gave up its home registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeLossReason {
    /// The home association went down.
    AssociationDown(DownReason),
    /// MAX-REG-ATTEMPT re-registrations went unanswered (T2).
    NoResponse,
}

/// Counters of a pool element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolElementStats {
    /// Inbound messages on associations.
    pub inbound: InboundStats,
    /// The announce channel.
    pub announces: AnnounceStats,
    /// REGISTRATION messages sent (first sends and retransmissions).
    pub registrations_sent: u64,
    /// Registrations accepted (including renewals).
    pub registrations_accepted: u64,
    /// Of those, renewals at the current home.
    pub reregistrations: u64,
    /// Accepted registrations that carried an Operation Error (values changed).
    pub registration_warnings: u64,
    /// Registrations refused (R=1).
    pub registrations_rejected: u64,
    /// T2-registration expiries.
    pub registration_timeouts: u64,
    /// Association attempts to a registrar that failed or ran out of T5.
    pub connect_failures: u64,
    /// Registrars given up during a hunt.
    pub pr_unreachable: u64,
    /// Hunt rounds in which no registrar accepted the PE.
    pub hunt_rounds_failed: u64,
    /// ENDPOINT_KEEP_ALIVEs answered.
    pub keep_alives_acked: u64,
    /// ENDPOINT_KEEP_ALIVEs dropped (not our pool handle or PE ID, RFC 5352 §3.4 KA1).
    pub keep_alives_dropped: u64,
    /// Homes adopted from ENDPOINT_KEEP_ALIVE with H=1.
    pub home_changes: u64,
    /// Homes lost (association down or no answer).
    pub homes_lost: u64,
    /// Unsolicited DEREGISTRATION_RESPONSEs (registration expired at the registrar).
    pub registrations_expired: u64,
    /// DEREGISTRATION messages sent.
    pub deregistrations_sent: u64,
    /// Sessions pool users started.
    pub sessions_opened: u64,
    /// Application messages received on sessions.
    pub session_messages_received: u64,
    /// Application messages sent on sessions.
    pub session_messages_sent: u64,
    /// ASAP_COOKIEs sent.
    pub cookies_sent: u64,
    /// ASAP_COOKIE_ECHOs received.
    pub cookie_echoes_received: u64,
}

/// Where the PE stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Registering, registered, or hunting.
    Active,
    /// The last registration was refused; waiting for new values.
    Rejected,
    /// DEREGISTRATION sent on this association, T3 running.
    Deregistering(AssocId),
    /// Done; nothing more is sent.
    Closed,
}

/// The registrar the PE is registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Home {
    assoc: AssocId,
    server_id: Option<PrId>,
}

/// Why a registration is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptKind {
    /// At a registrar picked by the hunt.
    Hunt,
    /// At the current home (T4, a policy change, or after expiry); `announce`
    /// says whether success is reported as [`PoolElementEvent::Registered`].
    Renew { announce: bool },
    /// At a registrar that sent ENDPOINT_KEEP_ALIVE with H=1.
    Adopt,
}

/// The registration in flight.
#[derive(Debug, Clone)]
struct Attempt {
    kind: AttemptKind,
    /// The registrar's addresses (from the hunt, or the association's peer addresses).
    addrs: Vec<SocketAddr>,
    /// The association, once known.
    assoc: Option<AssocId>,
    server_id: Option<PrId>,
    /// REGISTRATIONs sent in this attempt.
    sent: u32,
}

/// The PE's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// T5-Serverhunt for the association of the attempt.
    Connect,
    /// T2-registration.
    Registration,
    /// T4-reregistration.
    Reregistration,
    /// T3-deregistration.
    Deregistration,
    /// The pause after a failed hunt round.
    HuntRetry,
    /// T7-ENRPoutdate of the earliest announced registrar.
    AnnounceExpiry,
    /// The end of [`OLD_HOME_GRACE`]: close the association to the home the
    /// PE left.
    ReleaseOldHome,
}

/// How long the association to a home the PE moved away from stays open.
/// The new home tells the old one of the move by ENRP; a registrar may
/// purge the PEs of an association as soon as it closes (the reference
/// implementation does), so closing at once would race that announcement
/// and the PE would vanish from the old home until it arrives.
pub const OLD_HOME_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The ASAP client side of a pool element, as a sans-IO state machine.
///
/// Created with [`PoolElement::new`], which already queues the first
/// registration; driven through [`Machine`].
#[derive(Debug)]
pub struct PoolElement {
    config: PoolElementConfig,
    pe_id: PeId,
    policy: Policy,
    phase: Phase,
    home: Option<Home>,
    attempt: Option<Attempt>,
    /// The policy changed while a registration was in flight: renew once it is accepted.
    pending_update: bool,
    /// A NoRegistrar event without a retry time was reported and no registrar appeared since.
    waiting_reported: bool,
    /// Associations that are up, with their peer addresses.
    assocs: BTreeMap<AssocId, Vec<SocketAddr>>,
    /// The association to the home the PE just left, open for
    /// [`OLD_HOME_GRACE`].
    leaving: Option<AssocId>,
    /// The associations that carry sessions with pool users.
    sessions: BTreeSet<AssocId>,
    hunt: RegistrarHunt,
    timers: Timers<Timer>,
    outbox: Outbox<PoolElementEvent>,
    stats: PoolElementStats,
}

impl PoolElement {
    /// Creates the PE and queues its first registration (or waits for an
    /// announce if no registrar is configured).
    ///
    /// `rng` draws the PE identifier when the configuration has none.
    pub fn new(
        config: PoolElementConfig,
        mut rng: ChaCha8Rng,
        now: Instant,
    ) -> Result<Self, ClientConfigError> {
        config.validate()?;
        let pe_id = config.pe_id.unwrap_or_else(|| {
            loop {
                // Any value is legal; 0 is avoided because tools read it as "none".
                let id: u32 = rng.random();
                if id != 0 {
                    break PeId(id);
                }
            }
        });
        let mut pe = Self {
            hunt: RegistrarHunt::new(&config.hunt),
            policy: config.policy.clone(),
            config,
            pe_id,
            phase: Phase::Active,
            home: None,
            attempt: None,
            pending_update: false,
            waiting_reported: false,
            leaving: None,
            assocs: BTreeMap::new(),
            sessions: BTreeSet::new(),
            timers: Timers::default(),
            outbox: Outbox::default(),
            stats: PoolElementStats::default(),
        };
        pe.start_hunt(now);
        Ok(pe)
    }

    /// The PE identifier (the same for every registration, RFC 5352 §3.1).
    pub fn pe_id(&self) -> PeId {
        self.pe_id
    }

    /// The configuration.
    pub fn config(&self) -> &PoolElementConfig {
        &self.config
    }

    /// The policy value currently registered (or being registered).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The home registrar's association, if the PE is registered.
    pub fn home(&self) -> Option<AssocId> {
        self.home.map(|h| h.assoc)
    }

    /// The home registrar's server ID, once an announce or keep-alive told it.
    pub fn home_server_id(&self) -> Option<PrId> {
        self.home.and_then(|h| h.server_id)
    }

    /// Whether a registrar currently holds an accepted registration of this PE.
    pub fn is_registered(&self) -> bool {
        self.home.is_some() && matches!(self.phase, Phase::Active | Phase::Rejected)
    }

    /// Whether [`Self::shutdown`] has completed.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The counters.
    pub fn stats(&self) -> PoolElementStats {
        let mut s = self.stats.clone();
        s.announces = self.hunt.stats.clone();
        s
    }

    /// Changes the policy value (weight, load, priority, ...) and re-registers
    /// at once so the registrars learn it (RFC 5352 §3.1: re-registration
    /// is how a PE updates its policy value). After a rejection this is how
    /// the application registers again with corrected values.
    pub fn set_policy(&mut self, now: Instant, policy: Policy) {
        self.policy = policy;
        match self.phase {
            Phase::Active => {
                if self.attempt.is_some() {
                    self.pending_update = true;
                } else if let Some(home) = self.home {
                    self.renew(now, home, false);
                }
            }
            Phase::Rejected => {
                self.phase = Phase::Active;
                match self.home {
                    Some(home) => self.renew(now, home, true),
                    None => self.start_hunt(now),
                }
            }
            Phase::Deregistering(_) | Phase::Closed => {}
        }
    }

    /// Sets the load of a load-based policy (a fraction of `u32::MAX`) and
    /// re-registers; returns false, changing nothing, if the policy has no load.
    pub fn set_load(&mut self, now: Instant, load: u32) -> bool {
        match with_load(&self.policy, load) {
            Some(p) => {
                self.set_policy(now, p);
                true
            }
            None => false,
        }
    }

    /// Deregisters (RFC 5352 §3.2): DEREGISTRATION on the home association,
    /// T3; [`PoolElementEvent::Deregistered`] follows when the response
    /// arrives or T3 expires, and the association is then closed gracefully.
    pub fn shutdown(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Deregistering(_) | Phase::Closed) {
            return;
        }
        for t in [
            Timer::Connect,
            Timer::Registration,
            Timer::Reregistration,
            Timer::HuntRetry,
            Timer::ReleaseOldHome,
        ] {
            self.timers.cancel(&t);
        }
        if let Some(a) = self.leaving.take() {
            self.close(a, false);
        }
        let attempt = self.attempt.take();
        if let Some(t) = attempt.as_ref().and_then(abandonment) {
            self.outbox.send(t);
        }
        // A REGISTRATION in flight on a live association may be accepted
        // there, so that is where to deregister when there is no home.
        let target = self
            .home
            .map(|h| h.assoc)
            .or_else(|| attempt.as_ref().and_then(|a| a.assoc))
            .filter(|a| self.assocs.contains_key(a));
        if let Some(a) = attempt.and_then(|a| a.assoc) {
            if Some(a) != target {
                self.close(a, false);
            }
        }
        match target {
            Some(assoc) => {
                self.phase = Phase::Deregistering(assoc);
                self.stats.deregistrations_sent += 1;
                self.send(
                    Destination::Association(assoc),
                    AsapMessage::Deregistration {
                        pool_handle: self.config.pool_handle.clone(),
                        pe_id: self.pe_id,
                    },
                );
                self.timers
                    .set(Timer::Deregistration, now + self.config.t3_deregistration);
            }
            None => self.finish_deregistration(false, Vec::new()),
        }
    }

    // ----- the hunt and registration attempts -----

    /// Starts a registration at the next registrar of the hunt, or waits.
    fn start_hunt(&mut self, now: Instant) {
        if self.phase != Phase::Active || self.attempt.is_some() {
            return;
        }
        if let Some(c) = self.hunt.next_candidate() {
            self.waiting_reported = false;
            let assoc = self
                .assocs
                .iter()
                .find(|(_, peer)| same_endpoint(peer, &c.addrs))
                .map(|(a, _)| *a);
            self.begin(
                now,
                Attempt {
                    kind: AttemptKind::Hunt,
                    addrs: c.addrs,
                    assoc,
                    server_id: c.server_id,
                    sent: 0,
                },
            );
        } else if self.hunt.is_empty() {
            // Whatever is announced next starts a fresh round.
            self.hunt.new_round();
            if !self.waiting_reported {
                self.waiting_reported = true;
                tracing::debug!(pe = %self.pe_id, "no registrar known; waiting for an announce");
                self.outbox
                    .event(PoolElementEvent::NoRegistrar { retry_at: None });
            }
        } else {
            let retry_at = now + self.hunt.back_off();
            self.stats.hunt_rounds_failed += 1;
            tracing::debug!(pe = %self.pe_id, %retry_at, "no registrar accepted the PE; hunting again later");
            self.timers.set(Timer::HuntRetry, retry_at);
            self.outbox.event(PoolElementEvent::NoRegistrar {
                retry_at: Some(retry_at),
            });
        }
    }

    fn renew(&mut self, now: Instant, home: Home, announce: bool) {
        let addrs = self.assocs.get(&home.assoc).cloned().unwrap_or_default();
        self.begin(
            now,
            Attempt {
                kind: AttemptKind::Renew { announce },
                addrs,
                assoc: Some(home.assoc),
                server_id: home.server_id,
                sent: 0,
            },
        );
    }

    fn begin(&mut self, now: Instant, attempt: Attempt) {
        self.timers.cancel(&Timer::Connect);
        self.timers.cancel(&Timer::Registration);
        if let Some(t) = self.attempt.replace(attempt).as_ref().and_then(abandonment) {
            self.outbox.send(t);
        }
        self.send_registration(now);
    }

    /// Sends (or resends) the attempt's REGISTRATION and arms its timer:
    /// T2 once the association is known, else T5 for the association.
    fn send_registration(&mut self, now: Instant) {
        let Some(att) = self.attempt.as_mut() else {
            return;
        };
        att.sent += 1;
        let to = match att.assoc {
            Some(a) => {
                self.timers
                    .set(Timer::Registration, now + self.config.t2_registration);
                Destination::Association(a)
            }
            None => {
                self.timers.set(Timer::Connect, now + self.hunt.t5());
                Destination::Addresses(att.addrs.clone())
            }
        };
        let message = AsapMessage::Registration {
            pool_handle: self.config.pool_handle.clone(),
            pool_element: self.own_parameter(),
        };
        self.stats.registrations_sent += 1;
        self.send(to, message);
    }

    /// The attempt's registrar did not come through (no association, or no
    /// answer to MAX-REG-ATTEMPT registrations).
    fn attempt_failed(&mut self, now: Instant) {
        self.timers.cancel(&Timer::Connect);
        self.timers.cancel(&Timer::Registration);
        let Some(att) = self.attempt.take() else {
            return;
        };
        match att.kind {
            AttemptKind::Renew { .. } => {
                let peer = self.home.and_then(|h| self.assocs.get(&h.assoc).cloned());
                self.lose_home(now, HomeLossReason::NoResponse, peer);
            }
            AttemptKind::Hunt | AttemptKind::Adopt => {
                self.stats.pr_unreachable += 1;
                tracing::debug!(pe = %self.pe_id, addrs = ?att.addrs, "registrar unreachable");
                if let Some(a) = att.assoc.filter(|a| Some(*a) != self.home()) {
                    self.close(a, true);
                }
                self.outbox.event(PoolElementEvent::PrUnreachable {
                    addresses: att.addrs,
                });
                match self.home {
                    // A failed adoption: the old home still has the PE; renew
                    // there at once, as the claimant may have announced itself
                    // as owner meanwhile.
                    Some(home) if self.phase == Phase::Active => self.renew(now, home, false),
                    Some(_) => {}
                    None => self.start_hunt(now),
                }
            }
        }
    }

    /// The home is gone: report it, and hunt unless a new home is being
    /// adopted. `peer` are the home's addresses, so the hunt tries others first.
    fn lose_home(&mut self, now: Instant, reason: HomeLossReason, peer: Option<Vec<SocketAddr>>) {
        let Some(home) = self.home.take() else {
            return;
        };
        self.stats.homes_lost += 1;
        self.timers.cancel(&Timer::Reregistration);
        tracing::debug!(pe = %self.pe_id, assoc = ?home.assoc, ?reason, "home registrar lost");
        if let Some(addrs) = peer {
            self.hunt.mark_tried(&addrs);
        }
        self.close(home.assoc, true);
        if self
            .attempt
            .as_ref()
            .is_some_and(|a| a.assoc == Some(home.assoc))
        {
            self.attempt = None;
            self.timers.cancel(&Timer::Connect);
            self.timers.cancel(&Timer::Registration);
        }
        self.outbox.event(PoolElementEvent::HomeLost {
            assoc: home.assoc,
            reason,
        });
        if self.phase == Phase::Rejected {
            // Rejected values are not sent again unchanged; a new policy hunts.
            return;
        }
        self.start_hunt(now);
    }

    fn on_registration_response(
        &mut self,
        now: Instant,
        assoc: AssocId,
        rejected: bool,
        error: Option<Vec<ErrorCause>>,
    ) {
        let bound = match &self.attempt {
            Some(att) => att.assoc.is_none_or(|a| a == assoc),
            None => false,
        };
        if !bound {
            self.stats.inbound.unexpected += 1;
            tracing::debug!(pe = %self.pe_id, ?assoc, "registration response without a registration in flight");
            return;
        }
        self.timers.cancel(&Timer::Connect);
        self.timers.cancel(&Timer::Registration);
        let Some(mut att) = self.attempt.take() else {
            return;
        };
        att.assoc = Some(assoc);
        if rejected {
            self.rejected(assoc, att, error.unwrap_or_default());
        } else {
            self.accepted(now, assoc, att, error);
        }
    }

    fn accepted(
        &mut self,
        now: Instant,
        assoc: AssocId,
        att: Attempt,
        warnings: Option<Vec<ErrorCause>>,
    ) {
        self.stats.registrations_accepted += 1;
        if let Some(w) = warnings {
            // R=0 with an Operation Error: the registrar changed some values.
            self.stats.registration_warnings += 1;
            tracing::debug!(pe = %self.pe_id, causes = ?w, "registration accepted with changes");
        }
        self.hunt.succeeded();
        self.timers.cancel(&Timer::HuntRetry);
        let server_id = att
            .server_id
            .or_else(|| self.hunt.server_id_of(&att.addrs))
            .or_else(|| {
                self.home
                    .filter(|h| h.assoc == assoc)
                    .and_then(|h| h.server_id)
            });
        let new_home = Home { assoc, server_id };
        match att.kind {
            AttemptKind::Renew { announce } => {
                self.stats.reregistrations += 1;
                self.home = Some(new_home);
                if announce {
                    self.registered_event(new_home);
                }
            }
            AttemptKind::Hunt => {
                self.home = Some(new_home);
                tracing::debug!(pe = %self.pe_id, ?assoc, ?server_id, "registered");
                self.registered_event(new_home);
            }
            AttemptKind::Adopt => {
                let old = self.home.replace(new_home).map(|h| h.assoc);
                self.stats.home_changes += 1;
                if self.leaving == Some(assoc) {
                    // Back to the home it was leaving.
                    self.leaving = None;
                }
                if let Some(o) = old.filter(|o| *o != assoc) {
                    // Only now, with the new home holding the registration,
                    // and only after a grace (see OLD_HOME_GRACE): closing
                    // earlier would let the old home purge the PE.
                    if let Some(prev) = self.leaving.replace(o) {
                        self.close(prev, false);
                    }
                    self.timers.set(Timer::ReleaseOldHome, now + OLD_HOME_GRACE);
                }
                tracing::debug!(pe = %self.pe_id, ?old, new = ?assoc, ?server_id, "home registrar changed");
                self.registered_event(new_home);
                if let Some(server_id) = server_id {
                    self.outbox.event(PoolElementEvent::HomeChanged {
                        old,
                        new: assoc,
                        server_id,
                    });
                }
            }
        }
        self.timers.set(
            Timer::Reregistration,
            now + self.config.reregistration_interval(),
        );
        if std::mem::take(&mut self.pending_update) {
            self.renew(now, new_home, false);
        }
    }

    fn registered_event(&mut self, home: Home) {
        self.outbox.event(PoolElementEvent::Registered {
            assoc: home.assoc,
            pe_id: self.pe_id,
            server_id: home.server_id,
        });
    }

    fn rejected(&mut self, assoc: AssocId, att: Attempt, causes: Vec<ErrorCause>) {
        self.stats.registrations_rejected += 1;
        tracing::debug!(pe = %self.pe_id, ?assoc, ?causes, "registration rejected");
        self.outbox
            .event(PoolElementEvent::RegistrationRejected { assoc, causes });
        match att.kind {
            // The old home still holds the unchanged registration.
            AttemptKind::Adopt if self.home.is_some() => self.close(assoc, false),
            AttemptKind::Renew { .. } => {
                self.phase = Phase::Rejected;
                self.timers.cancel(&Timer::Reregistration);
            }
            AttemptKind::Hunt | AttemptKind::Adopt => {
                self.phase = Phase::Rejected;
                self.close(assoc, false);
                // The registrar is reachable, only the values were wrong: once
                // they change, every registrar is worth trying again.
                self.hunt.new_round();
            }
        }
    }

    // ----- keep-alives, deregistration -----

    fn on_keep_alive(
        &mut self,
        now: Instant,
        assoc: AssocId,
        home_flag: bool,
        server_id: PrId,
        pool_handle: wire::PoolHandle,
        pe_id: Option<PeId>,
    ) {
        if self.phase == Phase::Closed {
            self.stats.inbound.unexpected += 1;
            return;
        }
        if pool_handle != self.config.pool_handle || pe_id.is_some_and(|id| id != self.pe_id) {
            // KA1: not ours, silently dropped.
            self.stats.keep_alives_dropped += 1;
            tracing::debug!(pe = %self.pe_id, ?assoc, %pool_handle, ?pe_id, "keep-alive for another PE dropped");
            return;
        }
        // KA2: answered on the association it came on, whatever the H bit.
        self.stats.keep_alives_acked += 1;
        self.send(
            Destination::Association(assoc),
            AsapMessage::EndpointKeepAliveAck {
                pool_handle,
                pe_id: self.pe_id,
            },
        );
        if let Some(att) = self.attempt.as_mut().filter(|a| a.assoc == Some(assoc)) {
            att.server_id = Some(server_id);
        }
        if let Some(home) = self.home.as_mut() {
            if home.assoc == assoc {
                // The home identifies itself; H=1 from the home changes nothing.
                home.server_id = Some(server_id);
                return;
            }
            if home.server_id == Some(server_id) {
                return;
            }
        }
        if !home_flag || self.phase != Phase::Active {
            return;
        }
        if let Some(att) = &self.attempt {
            if att.kind == AttemptKind::Adopt && att.assoc == Some(assoc) {
                return;
            }
            // Give up what is in flight in favour of the registrar that claims the PE.
            if let Some(a) = att.assoc.filter(|a| *a != assoc && Some(*a) != self.home()) {
                self.close(a, false);
            }
        }
        tracing::debug!(pe = %self.pe_id, ?assoc, %server_id, "keep-alive with H bit: adopting the sender as home");
        let addrs = self.assocs.get(&assoc).cloned().unwrap_or_default();
        self.begin(
            now,
            Attempt {
                kind: AttemptKind::Adopt,
                addrs,
                assoc: Some(assoc),
                server_id: Some(server_id),
                sent: 0,
            },
        );
    }

    fn on_deregistration_response(
        &mut self,
        now: Instant,
        assoc: AssocId,
        error: Option<Vec<ErrorCause>>,
    ) {
        if self.phase == Phase::Deregistering(assoc) {
            self.finish_deregistration(true, error.unwrap_or_default());
            return;
        }
        let Some(home) = self.home.filter(|h| h.assoc == assoc) else {
            self.stats.inbound.unexpected += 1;
            tracing::debug!(pe = %self.pe_id, ?assoc, "deregistration response from a registrar that is not home");
            return;
        };
        // Unsolicited: the registration's life ran out at the registrar.
        self.stats.registrations_expired += 1;
        tracing::debug!(pe = %self.pe_id, ?assoc, "registration expired at the home registrar");
        self.outbox
            .event(PoolElementEvent::RegistrationExpired { assoc });
        if self.phase == Phase::Active && self.attempt.is_none() {
            self.timers.cancel(&Timer::Reregistration);
            self.renew(now, home, true);
        }
    }

    fn finish_deregistration(&mut self, confirmed: bool, causes: Vec<ErrorCause>) {
        self.timers.cancel(&Timer::Deregistration);
        if let Phase::Deregistering(assoc) = self.phase {
            if self.assocs.contains_key(&assoc) {
                self.close(assoc, false);
            }
        }
        self.home = None;
        self.attempt = None;
        self.phase = Phase::Closed;
        self.outbox
            .event(PoolElementEvent::Deregistered { confirmed, causes });
    }

    // ----- helpers -----

    /// This PE as a Pool Element parameter (in REGISTRATION and business cards).
    fn own_parameter(&self) -> wire::PoolElement {
        wire::PoolElement {
            id: self.pe_id,
            home_registrar: None,
            registration_life: self.config.wire_life(),
            user_transport: self.config.user_transport.clone(),
            policy: self.policy.clone(),
            asap_transport: None,
        }
    }

    fn send(&mut self, to: Destination, message: AsapMessage) {
        tracing::trace!(pe = %self.pe_id, ?to, %message, "send");
        self.outbox.send(Transmit::asap(to, message));
    }

    /// Closes an association that is up; from now on it counts as gone.
    fn close(&mut self, assoc: AssocId, abort: bool) {
        if self.assocs.remove(&assoc).is_some() {
            self.outbox.send(Transmit::Close { assoc, abort });
        }
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

impl Machine for PoolElement {
    type Event = PoolElementEvent;

    fn handle_data(&mut self, now: Instant, assoc: AssocId, ppid: u32, data: Bytes) {
        if ppid != wire::PPID_ASAP
            && ppid != wire::PPID_ENRP
            && self.on_session_data(assoc, ppid, data.clone())
        {
            return;
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
        tracing::trace!(pe = %self.pe_id, ?assoc, %message, "received");
        let ours = |handle: &wire::PoolHandle, id: PeId, pe: &Self| {
            *handle == pe.config.pool_handle && id == pe.pe_id
        };
        match message {
            AsapMessage::RegistrationResponse {
                rejected,
                pool_handle,
                pe_id,
                error,
            } if ours(&pool_handle, pe_id, self) => {
                self.on_registration_response(now, assoc, rejected, error);
            }
            AsapMessage::DeregistrationResponse {
                pool_handle,
                pe_id,
                error,
            } if ours(&pool_handle, pe_id, self) => {
                self.on_deregistration_response(now, assoc, error);
            }
            AsapMessage::EndpointKeepAlive {
                home,
                server_id,
                pool_handle,
                pe_id,
            } => self.on_keep_alive(now, assoc, home, server_id, pool_handle, pe_id),
            AsapMessage::CookieEcho { cookie } => {
                if !self.on_cookie_echo(assoc, cookie) {
                    self.stats.inbound.unexpected += 1;
                    tracing::debug!(pe = %self.pe_id, ?assoc, "ASAP_COOKIE_ECHO from a registrar dropped");
                }
            }
            AsapMessage::BusinessCard {
                pool_handle,
                pool_elements,
                ..
            } => {
                if !self.on_business_card(assoc, pool_handle, pool_elements) {
                    self.stats.inbound.unexpected += 1;
                    tracing::debug!(pe = %self.pe_id, ?assoc, "ASAP_BUSINESS_CARD from a registrar dropped");
                }
            }
            AsapMessage::Error { causes } => {
                self.stats.inbound.errors_received += 1;
                tracing::debug!(pe = %self.pe_id, ?assoc, ?causes, "ASAP_ERROR received");
                self.outbox
                    .event(PoolElementEvent::PeerError { assoc, causes });
            }
            other => {
                self.stats.inbound.unexpected += 1;
                tracing::debug!(pe = %self.pe_id, ?assoc, message = %other, "unexpected message dropped");
            }
        }
    }

    fn handle_association(&mut self, now: Instant, event: AssociationEvent) {
        match event {
            AssociationEvent::Up { assoc, peer } => {
                if self.phase == Phase::Closed {
                    self.assocs.insert(assoc, peer);
                    self.close(assoc, false);
                    return;
                }
                if let Some(att) = self.attempt.as_mut() {
                    if att.assoc.is_none() && same_endpoint(&att.addrs, &peer) {
                        att.assoc = Some(assoc);
                        // The REGISTRATION goes out now: T2 runs from here (SH3).
                        self.timers.cancel(&Timer::Connect);
                        self.timers
                            .set(Timer::Registration, now + self.config.t2_registration);
                    }
                }
                self.assocs.insert(assoc, peer);
            }
            AssociationEvent::Down { assoc, reason } => {
                if self.leaving == Some(assoc) {
                    self.leaving = None;
                }
                let peer = self.assocs.remove(&assoc);
                let known = peer.is_some();
                self.on_session_down(assoc, reason);
                if self.phase == Phase::Deregistering(assoc) {
                    self.finish_deregistration(false, Vec::new());
                } else if self.home() == Some(assoc) {
                    self.lose_home(now, HomeLossReason::AssociationDown(reason), peer);
                } else if let Some(att) = &self.attempt {
                    let ours = att.assoc == Some(assoc)
                        // The driver reports a failed handshake on an
                        // association it never reported up: with one attempt
                        // at a time, it is the attempt's.
                        || (att.assoc.is_none() && !known && reason == DownReason::HandshakeFailed);
                    if ours {
                        self.stats.connect_failures += u64::from(att.assoc.is_none());
                        self.attempt_failed(now);
                    }
                }
            }
        }
    }

    fn handle_announce(&mut self, now: Instant, from: SocketAddr, ppid: u32, data: Bytes) {
        let learned = self.hunt.announce(now, from, ppid, &data);
        self.rearm_announce_expiry();
        if learned == Learned::New
            && self.phase == Phase::Active
            && self.home.is_none()
            && self.attempt.is_none()
        {
            // Idle for lack of registrars: try the new one now.
            self.timers.cancel(&Timer::HuntRetry);
            self.start_hunt(now);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Connect => {
                    // SH5: T5 ran out; it doubles for the next registrar.
                    self.stats.connect_failures += 1;
                    self.hunt.back_off();
                    // The open may still succeed (SCTP retries INIT far
                    // longer than T5): the REGISTRATION queued on it must
                    // not reach that registrar after we moved on.
                    if let Some(t) = self.attempt.as_ref().and_then(abandonment) {
                        self.outbox.send(t);
                    }
                    self.attempt_failed(now);
                }
                Timer::Registration => {
                    self.stats.registration_timeouts += 1;
                    let sent = self.attempt.as_ref().map_or(0, |a| a.sent);
                    if sent < self.config.max_reg_attempt {
                        self.send_registration(now);
                    } else {
                        self.attempt_failed(now);
                    }
                }
                Timer::Reregistration => {
                    if let (Phase::Active, Some(home), None) =
                        (self.phase, self.home, &self.attempt)
                    {
                        self.renew(now, home, false);
                    }
                }
                Timer::Deregistration => self.finish_deregistration(false, Vec::new()),
                Timer::HuntRetry => {
                    self.hunt.new_round();
                    self.start_hunt(now);
                }
                Timer::AnnounceExpiry => {
                    self.hunt.expire(now);
                    self.rearm_announce_expiry();
                }
                Timer::ReleaseOldHome => {
                    if let Some(a) = self.leaving.take() {
                        self.close(a, false);
                    }
                }
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<PoolElementEvent> {
        self.outbox.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
}

/// `policy` with its load set to `load`, for the policies that carry one.
fn with_load(policy: &Policy, load: u32) -> Option<Policy> {
    use Policy::*;
    let mut p = policy.clone();
    match &mut p {
        LeastUsed { load: l }
        | RandomizedLeastUsed { load: l }
        | LeastUsedWithDegradation { load: l, .. }
        | PriorityLeastUsed { load: l, .. }
        | RandomizedPriorityLeastUsed { load: l, .. }
        | RandomizedLeastUsedWithDegradation { load: l, .. }
        | PriorityLeastUsedWithDegradation { load: l, .. }
        | RandomizedPriorityLeastUsedWithDegradation { load: l, .. }
        | LeastUsedDpf { load: l, .. }
        | LeastUsedWithDegradationDpf { load: l, .. } => *l = load,
        _ => return None,
    }
    Some(p)
}

/// For an attempt given up while its association was still being opened:
/// the `Abandon` that keeps its REGISTRATION from arriving later (at a home
/// the PE would not know of).
fn abandonment(att: &Attempt) -> Option<Transmit> {
    att.assoc.is_none().then(|| Transmit::Abandon {
        to: att.addrs.clone(),
    })
}

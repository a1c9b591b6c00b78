//! The registrar's ASAP side (RFC 5352): registration, deregistration,
//! handle resolution, keep-alives and unreachability reports.

use super::association::PeerAddrs;
use super::{Registrar, RegistrarEvent, RemovalReason};
use crate::io::{AssocId, Destination, DownReason, Transmit};
use crate::time::Instant;
use rserpool_handlespace::{EntryId, TimerKind};
use rserpool_wire::{
    AsapMessage, CauseCode, ErrorCause, Message, PeId, PoolElement, PoolHandle, PrId, Protocol,
    ServerInformation, TransportAddress, TransportUse, UserTransport,
};
use std::net::{IpAddr, SocketAddr};

impl Registrar {
    pub(super) fn handle_asap(&mut self, now: Instant, assoc: AssocId, m: AsapMessage) {
        match m {
            AsapMessage::Registration {
                pool_handle,
                pool_element,
            } => self.registration(now, assoc, pool_handle, pool_element),
            AsapMessage::Deregistration { pool_handle, pe_id } => {
                self.deregistration(now, assoc, pool_handle, pe_id)
            }
            AsapMessage::HandleResolution {
                pool_handle, items, ..
            } => {
                let limit = self.cfg.resolution_limit;
                let allowed = self
                    .associations
                    .get_mut(&assoc)
                    .is_some_and(|a| a.resolutions.take(now, limit));
                if allowed {
                    self.handle_resolution(assoc, pool_handle, items);
                } else {
                    self.refuse(now, assoc, super::Refusal::ResolutionRate);
                }
            }
            AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id } => {
                if let Some(entry) = self.space.find(&pool_handle, pe_id) {
                    if self.speaks_for(assoc, entry) {
                        self.keep_alive_acknowledged(now, entry);
                    } else {
                        self.refuse(now, assoc, super::Refusal::ForeignPe);
                    }
                }
            }
            AsapMessage::EndpointUnreachable { pool_handle, pe_id } => {
                let limit = self.cfg.unreachable_limit;
                let allowed = self
                    .associations
                    .get_mut(&assoc)
                    .is_some_and(|a| a.reports.take(now, limit));
                if allowed {
                    self.endpoint_unreachable(now, assoc, pool_handle, pe_id);
                } else {
                    self.refuse(now, assoc, super::Refusal::UnreachableRate);
                }
            }
            AsapMessage::Error { causes } => {
                tracing::debug!(registrar = %self.id, ?assoc, ?causes, "ASAP_ERROR received");
            }
            other => {
                // Messages meant for pool elements or users (responses, cookies,
                // business cards, announces) have no business here.
                self.stats.invalid_messages += 1;
                tracing::debug!(registrar = %self.id, ?assoc, msg = %other, "unexpected ASAP message");
            }
        }
    }

    fn reply(&mut self, assoc: AssocId, m: AsapMessage) {
        self.send(Transmit::asap(Destination::Association(assoc), m));
    }

    /// RFC 5352 §3.1 and §2 of PROCEDURES.md: checks, then the registrar
    /// becomes the PE's home, answers, and announces the PE to its peers.
    fn registration(
        &mut self,
        now: Instant,
        assoc: AssocId,
        pool: PoolHandle,
        mut pe: PoolElement,
    ) {
        let pe_id = pe.id;
        let asked = pe.policy.policy_type();
        let reject = |r: &mut Self, pool: PoolHandle, cause: ErrorCause| {
            let detail = match cause.code {
                CauseCode::InconsistentPoolingPolicy => match r.space.pool(&pool) {
                    Some(p) => format!(
                        "the pool's policy is {}, the PE asked for {}",
                        p.policy_type().short_name(),
                        asked.short_name()
                    ),
                    None => cause.code.name().to_string(),
                },
                c => c.name().to_string(),
            };
            r.out.event(RegistrarEvent::RegistrationRejected {
                pool: pool.clone(),
                pe: pe_id,
                cause: cause.code.code(),
                detail,
            });
            r.reply(
                assoc,
                AsapMessage::RegistrationResponse {
                    rejected: true,
                    pool_handle: pool,
                    pe_id,
                    error: Some(vec![cause]),
                },
            );
        };
        if !self.associations.contains_key(&assoc) {
            // A registration on an association the driver never reported is a
            // driver bug; answering is still right.
            return reject(self, pool, ErrorCause::new(CauseCode::Unspecified));
        }
        match self.space.find(&pool, pe_id) {
            // RFC 5355 §3: only the PE itself may change its registration.
            Some(entry) if !self.speaks_for(assoc, entry) => {
                self.refuse(now, assoc, super::Refusal::ForeignPe);
                return reject(self, pool, ErrorCause::new(CauseCode::RejectedSecurity));
            }
            Some(entry) if self.space.association(entry) == Some(assoc.0) => {}
            _ => {
                if self.space.association_load(assoc.0) >= self.cfg.max_pes_per_association {
                    self.refuse(now, assoc, super::Refusal::AssociationFull);
                    return reject(self, pool, ErrorCause::new(CauseCode::LackOfResources));
                }
            }
        }
        let peer = &self.associations[&assoc].peer;
        if let Err(cause) = adopt_user_addresses(&mut pe.user_transport, peer) {
            return reject(self, pool, cause);
        }
        pe.asap_transport = Some(asap_transport_of(peer));
        pe.home_registrar = Some(self.id);
        let life = pe.registration_life;
        let outcome = match self.space.register(&pool, pe, now) {
            Ok(outcome) => outcome,
            Err(cause) => return reject(self, pool, cause),
        };
        let entry = outcome.entry;
        self.reply(
            assoc,
            AsapMessage::RegistrationResponse {
                rejected: false,
                pool_handle: pool.clone(),
                pe_id,
                error: None,
            },
        );
        let from = outcome.previous_owner.filter(|h| *h != self.id);
        if from.is_some() {
            self.stats.ownership_gained += 1;
            self.balancer.arrived(now, entry);
        } else {
            self.balancer.settle(entry);
        }
        self.space.bind_association(entry, assoc.0);
        self.space.heard_from(entry);
        if !self.reporters.is_empty() {
            self.reporters.remove(&entry);
        }
        self.arm_lifetime(now, entry, life.0);
        if self.space.deadline(entry, TimerKind::KeepAlive).is_none() {
            let first = self.jittered(self.cfg.keep_alive_interval);
            self.space
                .set_deadline(entry, TimerKind::KeepAlive, Some(now + first));
        }
        self.out.event(RegistrarEvent::Registered {
            pool,
            pe: pe_id,
            new: outcome.new_pe,
            from,
        });
        self.announce_add(now, entry);
    }

    pub(super) fn arm_lifetime(&mut self, now: Instant, entry: EntryId, life: i32) {
        let at = self.cfg.life_unit.duration(life).map(|d| now + d);
        self.space.set_deadline(entry, TimerKind::Lifetime, at);
    }

    fn deregistration(&mut self, now: Instant, assoc: AssocId, pool: PoolHandle, pe_id: PeId) {
        // RFC 5352 §3.2: an unknown PE is still answered with success.
        let mut error = None;
        if let Some(entry) = self.space.find(&pool, pe_id) {
            if self.speaks_for(assoc, entry) {
                self.remove_pe(entry, RemovalReason::Deregistered);
            } else {
                // RFC 5355 §3: only the PE itself may deregister.
                self.refuse(now, assoc, super::Refusal::ForeignPe);
                error = Some(vec![ErrorCause::new(CauseCode::RejectedSecurity)]);
            }
        }
        self.reply(
            assoc,
            AsapMessage::DeregistrationResponse {
                pool_handle: pool,
                pe_id,
                error,
            },
        );
    }

    /// Removes a PE (with its deadlines and custody); if this registrar
    /// owned it (or learnt of the removal first-hand), announces DEL_PE.
    pub(super) fn remove_pe(&mut self, entry: EntryId, reason: RemovalReason) {
        self.balancer.forget(entry);
        if !self.reporters.is_empty() {
            self.reporters.remove(&entry);
        }
        if !self.recent_moves.is_empty() {
            self.recent_moves.remove(&entry);
        }
        let Some(removed) = self.space.remove_entry(entry) else {
            return;
        };
        let owned = removed.element.home_registrar == Some(self.id);
        self.out.event(RegistrarEvent::Removed {
            pool: removed.pool.clone(),
            pe: removed.element.id,
            reason,
        });
        // A deregistration received here is announced even for a PE homed
        // elsewhere, so that its home drops it too.
        if owned || reason == RemovalReason::Deregistered {
            self.announce_del(&removed.pool, removed.element);
        }
    }

    fn handle_resolution(&mut self, assoc: AssocId, pool: PoolHandle, items: Option<u32>) {
        let reply = match self.space.resolve(&pool, items, &mut self.rng) {
            Ok((policy, pes)) => AsapMessage::HandleResolutionResponse {
                accepted: false,
                pool_handle: pool,
                policy: Some(policy),
                pool_elements: pes,
                error: None,
            },
            Err(cause) => AsapMessage::HandleResolutionResponse {
                accepted: false,
                pool_handle: pool,
                policy: None,
                pool_elements: Vec::new(),
                error: Some(vec![cause]),
            },
        };
        self.reply(assoc, reply);
    }

    /// RFC 5352 §3.5 with RFC 5355 §2.13's caution: probe the PE at once;
    /// count reports from distinct hosts only, so that one reporter (however
    /// many associations it opens) can at most make the registrar probe;
    /// remove beyond MAX-BAD-PE-REPORT independent reports.
    fn endpoint_unreachable(
        &mut self,
        now: Instant,
        assoc: AssocId,
        pool: PoolHandle,
        pe_id: PeId,
    ) {
        let Some(entry) = self.space.find(&pool, pe_id) else {
            return;
        };
        if self.reporters.len() >= super::MAX_REPORTED_PES && !self.reporters.contains_key(&entry) {
            self.reporters.clear();
        }
        // Evidence is independent per host: associations of one source
        // address count once.
        let Some(source) = self
            .associations
            .get(&assoc)
            .and_then(|a| a.peer.first())
            .map(|a| a.ip())
        else {
            return;
        };
        let reporters = self.reporters.entry(entry).or_default();
        let count = if reporters.contains(&source) {
            self.space.unreachable_reports(entry)
        } else {
            reporters.push(source);
            self.space.report_unreachable(entry)
        };
        if count > self.cfg.max_bad_pe_reports {
            self.remove_pe(entry, RemovalReason::Unreachable);
        } else if self.space.home_of(entry) == Some(self.id) && !self.space.awaiting_ack(entry) {
            self.send_keep_alive(now, entry, false);
        }
    }

    /// A PE's keep-alive deadline passed: without an outstanding keep-alive
    /// it is time to send the next one, with one the PE failed to answer.
    pub(super) fn keep_alive_due(&mut self, now: Instant, entry: EntryId) {
        if self.space.home_of(entry) != Some(self.id) {
            return;
        }
        if self.space.awaiting_ack(entry) {
            self.remove_pe(entry, RemovalReason::KeepAliveTimeout);
        } else {
            self.send_keep_alive(now, entry, false);
        }
    }

    fn keep_alive_acknowledged(&mut self, now: Instant, entry: EntryId) {
        if !self.space.awaiting_ack(entry) {
            return;
        }
        self.space.heard_from(entry);
        if !self.reporters.is_empty() {
            self.reporters.remove(&entry);
        }
        let next = self.jittered(self.cfg.keep_alive_interval);
        self.space
            .set_deadline(entry, TimerKind::KeepAlive, Some(now + next));
    }

    /// Sends ENDPOINT_KEEP_ALIVE (with H to claim the PE); for an owned PE
    /// the keep-alive deadline becomes the answer's.
    pub(super) fn send_keep_alive(&mut self, now: Instant, entry: EntryId, home: bool) {
        let Some(e) = self.space.entry(entry) else {
            return;
        };
        let owned = e.owner() == Some(self.id);
        if !owned && !home {
            return;
        }
        // A PE is bound only to an association that is up: it is unbound
        // when that association goes down (`pe_association_down`).
        let to = match self.space.association(entry).map(AssocId) {
            Some(a) => {
                debug_assert!(self.associations.contains_key(&a));
                Destination::Association(a)
            }
            None => match &e.element().asap_transport {
                Some(t) => Destination::Addresses(socket_addrs(t)),
                None => return,
            },
        };
        let pe_id = e.id();
        let Some(pool) = self.space.handle_of(entry).cloned() else {
            return;
        };
        self.send(Transmit::asap(
            to,
            AsapMessage::EndpointKeepAlive {
                home,
                server_id: self.id,
                pool_handle: pool,
                pe_id: self.cfg.keep_alive_with_pe_id.then_some(pe_id),
            },
        ));
        if owned && !self.space.awaiting_ack(entry) {
            self.space.set_awaiting_ack(entry, true);
            self.space.set_deadline(
                entry,
                TimerKind::KeepAlive,
                Some(now + self.cfg.keep_alive_timeout),
            );
        }
    }

    pub(super) fn lifetime_expired(&mut self, now: Instant, entry: EntryId) {
        let home = self.space.home_of(entry);
        let owned = home == Some(self.id);
        if let Some(h) = home.filter(|h| !owned && self.peer_reachable(*h)) {
            // A copy of a live peer's PE ran out: most likely we missed its
            // re-registration updates (a cut link, a restart, a peer that
            // thought us dead). Ask the home before dropping it, and keep it
            // as it is meanwhile: the home's table confirms it (any update
            // clears the mark) or the download's sweep orphans it. Only a
            // second expiry without word from the home orphans it here.
            let asked = self.space.entry(entry).is_some_and(|e| e.is_marked());
            if asked {
                self.orphan(now, entry);
            } else {
                self.space.mark_entry(entry);
                let grace = now + self.cfg.max_time_no_response * 2;
                self.space
                    .set_deadline(entry, TimerKind::Lifetime, Some(grace));
            }
            self.ask_home(now, h);
            return;
        }
        let assoc = self.space.association(entry).map(AssocId);
        let key = self.space.key_of(entry);
        self.remove_pe(entry, RemovalReason::LifetimeExpired);
        if !owned {
            return;
        }
        // RFC 5352 §3.2: the home tells the PE its registration is gone.
        if let (Some(a), Some((pool, pe_id))) = (assoc, key) {
            if self.associations.contains_key(&a) {
                self.reply(
                    a,
                    AsapMessage::DeregistrationResponse {
                        pool_handle: pool,
                        pe_id,
                        error: None,
                    },
                );
            }
        }
    }

    /// An association to pool elements went down. The PEs registered over it
    /// are not purged at once (the reference implementation does, which
    /// loses a PE that is just moving to another home): each is probed with
    /// an ENDPOINT_KEEP_ALIVE to its ASAP transport and removed only if that
    /// goes unanswered, or kept quietly if its new home announces it first.
    pub(super) fn pe_association_down(&mut self, now: Instant, assoc: AssocId, reason: DownReason) {
        let pes = self.space.take_association(assoc.0);
        if pes.is_empty() {
            return;
        }
        tracing::debug!(registrar = %self.id, ?assoc, ?reason, pes = pes.len(), "PE association down");
        for entry in pes {
            if self.space.home_of(entry) == Some(self.id) {
                self.space.set_awaiting_ack(entry, false);
                self.send_keep_alive(now, entry, false);
            }
        }
    }

    pub(super) fn server_announce(&mut self) {
        let transports = group_by_port(&self.cfg.asap_addresses)
            .into_iter()
            .map(|(port, ips)| TransportAddress::sctp(port, TransportUse::DataOnly, ips))
            .collect();
        self.out.send(Transmit::Announce {
            message: Message::Asap(AsapMessage::ServerAnnounce {
                server_id: self.id,
                transports,
            }),
        });
    }

    /// This registrar's Server Information (its ENRP addresses).
    pub(super) fn server_information(&self) -> Option<ServerInformation> {
        let (port, ips) = group_by_port(&self.cfg.enrp_addresses).into_iter().next()?;
        Some(ServerInformation {
            server_id: self.id,
            transport: TransportAddress::sctp(port, TransportUse::DataOnly, ips),
        })
    }

    /// Claims a PE: makes this registrar its home locally and asks the PE to
    /// re-register here (ENDPOINT_KEEP_ALIVE with H).
    pub(super) fn claim_pe(&mut self, now: Instant, entry: EntryId, previous: Option<PrId>) {
        if self.space.set_entry_owner(entry, Some(self.id)).is_some() {
            if previous.is_some_and(|p| p != self.id) {
                self.stats.ownership_gained += 1;
            }
            self.send_keep_alive(now, entry, true);
        }
    }
}

/// Fills in unspecified user-transport addresses from the association and
/// rejects addresses the PE does not own (RFC 5352 §3.1 R1: the PE's
/// addresses must be a subset of its association's).
fn adopt_user_addresses(t: &mut UserTransport, peer: &PeerAddrs) -> Result<(), ErrorCause> {
    let UserTransport::Address(ta) = t else {
        return Ok(());
    };
    let own = peer.iter().map(|a| a.ip());
    if ta.addresses.iter().all(IpAddr::is_unspecified) {
        let one = !matches!(ta.protocol, Protocol::Sctp(_));
        ta.addresses = own.take(if one { 1 } else { usize::MAX }).collect();
        return Ok(());
    }
    let loopback_peer = own.clone().all(|a| a.is_loopback());
    if loopback_peer || ta.addresses.iter().all(|a| own.clone().any(|o| o == *a)) {
        Ok(())
    } else {
        // Invalid Values carries the offending parameter: the user transport.
        let mut cause = ErrorCause::inconsistent_transport(t);
        cause.code = CauseCode::InvalidValues;
        Err(cause)
    }
}

/// The SCTP transport a PE registered from: the association's peer addresses.
fn asap_transport_of(peer: &PeerAddrs) -> TransportAddress {
    let port = peer.first().map_or(0, |a| a.port());
    TransportAddress::sctp(
        port,
        TransportUse::DataOnly,
        peer.iter()
            .map(|a| a.ip())
            .collect::<rserpool_wire::IpAddrs>(),
    )
}

/// The socket addresses of an SCTP transport parameter.
pub(super) fn socket_addrs(t: &TransportAddress) -> Vec<SocketAddr> {
    t.addresses
        .iter()
        .map(|ip| SocketAddr::new(*ip, t.port))
        .collect()
}

fn group_by_port(addrs: &[SocketAddr]) -> Vec<(u16, Vec<IpAddr>)> {
    let mut out: Vec<(u16, Vec<IpAddr>)> = Vec::new();
    for a in addrs {
        match out.iter_mut().find(|(p, _)| *p == a.port()) {
            Some((_, ips)) => ips.push(a.ip()),
            None => out.push((a.port(), vec![a.ip()])),
        }
    }
    out
}

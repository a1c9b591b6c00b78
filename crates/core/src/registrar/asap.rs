//! The registrar's ASAP side (RFC 5352): registration, deregistration,
//! handle resolution, keep-alives and unreachability reports.

use super::{PeKey, Registrar, RegistrarEvent, RemovalReason, Timer};
use crate::io::{AssocId, Destination, DownReason, Transmit};
use crate::time::Instant;
use rserpool_wire::{
    AsapMessage, CauseCode, ErrorCause, Message, PeId, PoolElement, PoolHandle, PrId, Protocol,
    ServerInformation, TransportAddress, TransportUse, UserTransport,
};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

impl Registrar {
    pub(super) fn handle_asap(&mut self, now: Instant, assoc: AssocId, m: AsapMessage) {
        match m {
            AsapMessage::Registration {
                pool_handle,
                pool_element,
            } => self.registration(now, assoc, pool_handle, pool_element),
            AsapMessage::Deregistration { pool_handle, pe_id } => {
                self.deregistration(assoc, pool_handle, pe_id)
            }
            AsapMessage::HandleResolution {
                pool_handle, items, ..
            } => self.handle_resolution(assoc, pool_handle, items),
            AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id } => {
                let key = (pool_handle, pe_id);
                if self.timers.cancel(&Timer::KeepAliveTimeout(key.clone())) {
                    self.bad_reports.remove(&key);
                }
            }
            AsapMessage::EndpointUnreachable { pool_handle, pe_id } => {
                self.endpoint_unreachable(now, pool_handle, pe_id)
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
        let reject = |r: &mut Self, cause: ErrorCause| {
            r.out.event(RegistrarEvent::RegistrationRejected {
                pool: pool.clone(),
                pe: pe_id,
                cause: cause.code.code(),
            });
            r.reply(
                assoc,
                AsapMessage::RegistrationResponse {
                    rejected: true,
                    pool_handle: pool.clone(),
                    pe_id,
                    error: Some(vec![cause]),
                },
            );
        };
        let Some(peer) = self.associations.get(&assoc).cloned() else {
            // A registration on an association the driver never reported is a
            // driver bug; answering is still right.
            return reject(self, ErrorCause::new(CauseCode::Unspecified));
        };
        if let Err(cause) = adopt_user_addresses(&mut pe.user_transport, &peer) {
            return reject(self, cause);
        }
        pe.home_registrar = Some(self.id);
        pe.asap_transport = Some(asap_transport_of(&peer));
        let life = pe.registration_life;
        let key: PeKey = (pool.clone(), pe_id);
        let announced = pe.clone();
        match self.space.register(&pool, pe, now) {
            Err(cause) => reject(self, cause),
            Ok(outcome) => {
                self.reply(
                    assoc,
                    AsapMessage::RegistrationResponse {
                        rejected: false,
                        pool_handle: pool.clone(),
                        pe_id,
                        error: None,
                    },
                );
                let from = outcome.previous_home.filter(|h| *h != self.id);
                if from.is_some() {
                    self.stats.ownership_gained += 1;
                }
                self.balancer.settle(&pool, pe_id);
                self.bind_pe_association(key.clone(), assoc);
                self.bad_reports.remove(&key);
                self.arm_lifetime(now, key.clone(), life.0);
                if !self.timers.is_set(&Timer::KeepAlive(key.clone())) {
                    let first = self.jittered(self.cfg.keep_alive_interval);
                    self.timers.set(Timer::KeepAlive(key.clone()), now + first);
                }
                self.out.event(RegistrarEvent::Registered {
                    pool: pool.clone(),
                    pe: pe_id,
                    new: outcome.new,
                    from,
                });
                self.announce_add(now, &pool, announced);
            }
        }
    }

    fn bind_pe_association(&mut self, key: PeKey, assoc: AssocId) {
        if let Some(old) = self.pe_assoc.insert(key.clone(), assoc) {
            if old != assoc {
                if let Some(set) = self.assoc_pes.get_mut(&old) {
                    set.remove(&key);
                }
            }
        }
        self.assoc_pes.entry(assoc).or_default().insert(key);
    }

    fn unbind_pe(&mut self, key: &PeKey) {
        if let Some(a) = self.pe_assoc.remove(key) {
            if let Some(set) = self.assoc_pes.get_mut(&a) {
                set.remove(key);
            }
        }
        self.timers.cancel(&Timer::KeepAlive(key.clone()));
        self.timers.cancel(&Timer::KeepAliveTimeout(key.clone()));
    }

    pub(super) fn arm_lifetime(&mut self, now: Instant, key: PeKey, life: i32) {
        match self.cfg.life_unit.duration(life) {
            Some(d) => self.timers.set(Timer::Lifetime(key), now + d),
            None => {
                self.timers.cancel(&Timer::Lifetime(key));
            }
        }
    }

    fn deregistration(&mut self, assoc: AssocId, pool: PoolHandle, pe_id: PeId) {
        // RFC 5352 §3.2: an unknown PE is still answered with success.
        self.remove_pe(&(pool.clone(), pe_id), RemovalReason::Deregistered);
        self.reply(
            assoc,
            AsapMessage::DeregistrationResponse {
                pool_handle: pool,
                pe_id,
                error: None,
            },
        );
    }

    /// Removes a PE; if this registrar owned it (or learnt of the removal
    /// first-hand), announces DEL_PE. Returns whether it was present.
    pub(super) fn remove_pe(&mut self, key: &PeKey, reason: RemovalReason) -> bool {
        let Some(pe) = self.space.remove(&key.0, key.1) else {
            return false;
        };
        let owned = pe.home_registrar == Some(self.id);
        self.unbind_pe(key);
        self.timers.cancel(&Timer::Lifetime(key.clone()));
        self.bad_reports.remove(key);
        self.balancer.settle(&key.0, key.1);
        self.out.event(RegistrarEvent::Removed {
            pool: key.0.clone(),
            pe: key.1,
            reason,
        });
        // A deregistration received here is announced even for a PE homed
        // elsewhere, so that its home drops it too.
        if owned || reason == RemovalReason::Deregistered {
            self.announce_del(&key.0, pe);
        }
        true
    }

    fn handle_resolution(&mut self, assoc: AssocId, pool: PoolHandle, items: Option<u32>) {
        let reply = match self.space.resolve(&pool, items, &mut self.rng) {
            Ok((policy, mut pes)) => {
                // The ASAP transport is the registrar's business, not the user's.
                for pe in &mut pes {
                    pe.asap_transport = None;
                }
                AsapMessage::HandleResolutionResponse {
                    accepted: false,
                    pool_handle: pool,
                    policy: Some(policy),
                    pool_elements: pes,
                    error: None,
                }
            }
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

    /// RFC 5352 §3.5: probe the PE at once; count reports; remove beyond
    /// MAX-BAD-PE-REPORT.
    fn endpoint_unreachable(&mut self, now: Instant, pool: PoolHandle, pe_id: PeId) {
        let key = (pool, pe_id);
        let Some(home) = self.space.home(&key.0, key.1) else {
            return;
        };
        let count = {
            let c = self.bad_reports.entry(key.clone()).or_default();
            *c += 1;
            *c
        };
        if count > self.cfg.max_bad_pe_reports {
            self.remove_pe(&key, RemovalReason::Unreachable);
        } else if home == Some(self.id)
            && !self.timers.is_set(&Timer::KeepAliveTimeout(key.clone()))
        {
            self.send_keep_alive(now, key, false);
        }
    }

    /// Sends ENDPOINT_KEEP_ALIVE (with H to claim the PE) and arms the
    /// answer's deadline; the periodic one is re-armed.
    pub(super) fn send_keep_alive(&mut self, now: Instant, key: PeKey, home: bool) {
        let Some(pe) = self.space.get(&key.0, key.1) else {
            return;
        };
        let owned = pe.home_registrar == Some(self.id);
        if !owned && !home {
            return;
        }
        let to = match self.pe_assoc.get(&key) {
            Some(a) if self.associations.contains_key(a) => Destination::Association(*a),
            _ => match &pe.asap_transport {
                Some(t) => Destination::Addresses(socket_addrs(t)),
                None => return,
            },
        };
        self.send(Transmit::asap(
            to,
            AsapMessage::EndpointKeepAlive {
                home,
                server_id: self.id,
                pool_handle: key.0.clone(),
                pe_id: self.cfg.keep_alive_with_pe_id.then_some(key.1),
            },
        ));
        if owned {
            if !self.timers.is_set(&Timer::KeepAliveTimeout(key.clone())) {
                self.timers.set(
                    Timer::KeepAliveTimeout(key.clone()),
                    now + self.cfg.keep_alive_timeout,
                );
            }
            let next = self.jittered(self.cfg.keep_alive_interval);
            self.timers.set(Timer::KeepAlive(key), now + next);
        }
    }

    pub(super) fn keep_alive_timeout(&mut self, key: PeKey) {
        if self.space.home(&key.0, key.1) == Some(Some(self.id)) {
            self.remove_pe(&key, RemovalReason::KeepAliveTimeout);
        }
    }

    pub(super) fn lifetime_expired(&mut self, key: PeKey) {
        let owned = self.space.home(&key.0, key.1) == Some(Some(self.id));
        let assoc = self.pe_assoc.get(&key).copied();
        if self.remove_pe(&key, RemovalReason::LifetimeExpired) && owned {
            // RFC 5352 §3.2: the home tells the PE its registration is gone.
            if let Some(a) = assoc.filter(|a| self.associations.contains_key(a)) {
                self.reply(
                    a,
                    AsapMessage::DeregistrationResponse {
                        pool_handle: key.0,
                        pe_id: key.1,
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
        let Some(pes) = self.assoc_pes.remove(&assoc) else {
            return;
        };
        tracing::debug!(registrar = %self.id, ?assoc, ?reason, pes = pes.len(), "PE association down");
        let keys: HashSet<PeKey> = pes;
        for key in keys {
            self.pe_assoc.remove(&key);
            if self.space.home(&key.0, key.1) == Some(Some(self.id)) {
                self.timers.cancel(&Timer::KeepAliveTimeout(key.clone()));
                self.send_keep_alive(now, key, false);
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
    pub(super) fn claim_pe(&mut self, now: Instant, key: PeKey, previous: Option<PrId>) {
        if self.space.set_owner(&key.0, key.1, self.id) {
            if previous.is_some_and(|p| p != self.id) {
                self.stats.ownership_gained += 1;
            }
            self.send_keep_alive(now, key, true);
        }
    }
}

/// Fills in unspecified user-transport addresses from the association and
/// rejects addresses the PE does not own (RFC 5352 §3.1 R1: the PE's
/// addresses must be a subset of its association's).
fn adopt_user_addresses(t: &mut UserTransport, peer: &[SocketAddr]) -> Result<(), ErrorCause> {
    let UserTransport::Address(ta) = t else {
        return Ok(());
    };
    let own: Vec<IpAddr> = peer.iter().map(SocketAddr::ip).collect();
    if ta.addresses.iter().all(IpAddr::is_unspecified) {
        let mut ips = own.clone();
        if !matches!(ta.protocol, Protocol::Sctp(_)) {
            ips.truncate(1);
        }
        ta.addresses = ips;
        return Ok(());
    }
    let loopback_peer = own.iter().all(IpAddr::is_loopback);
    if loopback_peer || ta.addresses.iter().all(|a| own.contains(a)) {
        Ok(())
    } else {
        // Invalid Values carries the offending parameter: the user transport.
        let mut cause = ErrorCause::inconsistent_transport(t);
        cause.code = CauseCode::InvalidValues;
        Err(cause)
    }
}

/// The SCTP transport a PE registered from: the association's peer addresses.
fn asap_transport_of(peer: &[SocketAddr]) -> TransportAddress {
    let port = peer.first().map_or(0, SocketAddr::port);
    TransportAddress::sctp(
        port,
        TransportUse::DataOnly,
        peer.iter().map(SocketAddr::ip).collect(),
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

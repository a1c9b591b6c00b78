//! The peer table of RFC 5353 §3.4: the registrars of the operational scope,
//! when each was last heard, and whether it is alive.

use crate::io::AssocId;
use crate::time::Instant;
use rserpool_wire::{PrId, ServerInformation};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// What this registrar believes about one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    /// Heard from recently.
    Alive,
    /// Silent for MAX-TIME-LAST-HEARD; a PRESENCE with R set was sent at `since`.
    Probing {
        /// When the probe went out.
        since: Instant,
    },
    /// Declared dead; a takeover of its PEs is running or done.
    Dead,
}

/// One peer registrar.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its server ID.
    pub id: PrId,
    /// Where it is reached (from its Server Information, else the association's peer addresses).
    pub addresses: Vec<SocketAddr>,
    /// The association it last spoke on.
    pub assoc: Option<AssocId>,
    /// When anything was last heard from it (RFC 5353 §4.1 peer_last_heard).
    pub last_heard: Instant,
    /// Liveness.
    pub status: PeerStatus,
    /// The PE checksum it last announced for the PEs it owns.
    pub announced_checksum: Option<u16>,
    /// Since when it has been reachable (heard over an association that is
    /// up); `None` while its association is down.
    pub reachable_since: Option<Instant>,
    /// How long it must stay reachable before it counts for balancing: the
    /// base settle time, doubled each time it dropped off soon after coming
    /// back (route-flap damping, as RFC 2439 does for BGP).
    pub settle: Duration,
    /// It has dropped off before (so a short reachable period is a flap).
    pub dropped_before: bool,
}

impl Peer {
    /// Whether it has been reachable long enough to count for balancing.
    pub fn settled(&self, now: Instant) -> bool {
        self.reachable_since
            .is_some_and(|t| now.saturating_since(t) >= self.settle)
    }
}

/// Reachability damping of peers for balancing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Damping {
    /// Settle time of a peer that has not flapped.
    pub(crate) base: Duration,
    /// Longest settle time.
    pub(crate) max: Duration,
    /// A peer reachable this long before it dropped off was not flapping.
    pub(crate) stable: Duration,
}

impl Peer {
    fn unreachable(&mut self, now: Instant, d: Damping) {
        let Some(since) = self.reachable_since.take() else {
            return;
        };
        let short = now.saturating_since(since) < d.stable;
        if !short {
            self.settle = d.base;
        } else if self.dropped_before {
            self.settle = (self.settle * 2).min(d.max);
        }
        self.dropped_before = true;
    }
}

/// The peer table.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    by_id: BTreeMap<PrId, Peer>,
    by_assoc: BTreeMap<AssocId, PrId>,
}

impl Peers {
    pub(crate) fn get(&self, id: PrId) -> Option<&Peer> {
        self.by_id.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: PrId) -> Option<&mut Peer> {
        self.by_id.get_mut(&id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.by_id.values()
    }

    pub(crate) fn ids(&self) -> Vec<PrId> {
        self.by_id.keys().copied().collect()
    }

    /// Peers not declared dead.
    pub(crate) fn active(&self) -> impl Iterator<Item = &Peer> {
        self.by_id.values().filter(|p| p.status != PeerStatus::Dead)
    }

    /// Records that `id` was heard on `assoc`; returns true if it is new.
    pub(crate) fn heard(
        &mut self,
        now: Instant,
        id: PrId,
        assoc: Option<AssocId>,
        fallback_addresses: &[SocketAddr],
        damping: Damping,
    ) -> bool {
        let new = !self.by_id.contains_key(&id);
        let peer = self.by_id.entry(id).or_insert_with(|| Peer {
            id,
            addresses: fallback_addresses.to_vec(),
            assoc: None,
            last_heard: now,
            status: PeerStatus::Alive,
            announced_checksum: None,
            reachable_since: None,
            settle: damping.base,
            dropped_before: false,
        });
        if assoc.is_some() && peer.reachable_since.is_none() {
            peer.reachable_since = Some(now);
        }
        peer.last_heard = now;
        peer.status = PeerStatus::Alive;
        if peer.addresses.is_empty() {
            peer.addresses = fallback_addresses.to_vec();
        }
        if let Some(a) = assoc {
            if peer.assoc != Some(a) {
                if let Some(old) = peer.assoc.replace(a) {
                    self.by_assoc.remove(&old);
                }
                self.by_assoc.insert(a, id);
            }
        }
        new
    }

    /// Takes the peer's addresses from its Server Information.
    pub(crate) fn learn(&mut self, info: &ServerInformation) {
        if let Some(p) = self.by_id.get_mut(&info.server_id) {
            let addrs: Vec<SocketAddr> = info
                .transport
                .addresses
                .iter()
                .map(|ip| SocketAddr::new(*ip, info.transport.port))
                .collect();
            if !addrs.is_empty() {
                p.addresses = addrs;
            }
        }
    }

    pub(crate) fn association_down(&mut self, now: Instant, assoc: AssocId, damping: Damping) {
        if let Some(id) = self.by_assoc.remove(&assoc) {
            if let Some(p) = self.by_id.get_mut(&id) {
                if p.assoc == Some(assoc) {
                    p.assoc = None;
                    p.unreachable(now, damping);
                }
            }
        }
    }

    /// The peer is suspected or declared dead: it no longer counts as
    /// reachable.
    pub(crate) fn lost(&mut self, now: Instant, id: PrId, damping: Damping) {
        if let Some(p) = self.by_id.get_mut(&id) {
            p.unreachable(now, damping);
        }
    }

    pub(crate) fn remove(&mut self, id: PrId) -> Option<Peer> {
        let p = self.by_id.remove(&id)?;
        if let Some(a) = p.assoc {
            self.by_assoc.remove(&a);
        }
        Some(p)
    }
}

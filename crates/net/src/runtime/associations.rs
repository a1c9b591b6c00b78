//! The map between the machine's association names and the transports'.
//!
//! The machine sends to addresses without knowing about associations; the
//! runtime opens one on the first send (queueing until it is up), reuses it
//! afterwards, and names every association with one machine-wide id even
//! though each endpoint numbers its own.

use super::Outgoing;
use crate::transport::AssociationId;
use rserpool_core::AssocId;
use std::collections::HashMap;
use std::net::SocketAddr;

/// How to reach an association.
#[derive(Debug, Clone, Copy)]
pub(super) enum Route {
    /// Up on endpoint `.0` as transport association `.1`.
    Up(usize, AssociationId),
    /// Still opening; messages queue.
    Pending(AssocId),
}

#[derive(Debug)]
struct Entry {
    endpoint: usize,
    transport: AssociationId,
    peer: Vec<SocketAddr>,
    up: bool,
    queue: Vec<Outgoing>,
}

/// Every association of the machine's endpoints.
#[derive(Debug, Default)]
pub(super) struct Associations {
    next: u64,
    entries: HashMap<AssocId, Entry>,
    by_transport: HashMap<(usize, AssociationId), AssocId>,
    by_addr: HashMap<(usize, SocketAddr), AssocId>,
}

impl Associations {
    fn fresh(&mut self) -> AssocId {
        self.next += 1;
        AssocId(self.next)
    }

    fn insert(&mut self, id: AssocId, e: Entry) {
        self.by_transport.insert((e.endpoint, e.transport), id);
        for a in &e.peer {
            self.by_addr.insert((e.endpoint, *a), id);
        }
        self.entries.insert(id, e);
    }

    /// An association came up: returns its id and the messages queued for it.
    pub(super) fn up(
        &mut self,
        endpoint: usize,
        transport: AssociationId,
        peer: Vec<SocketAddr>,
    ) -> (AssocId, Vec<Outgoing>) {
        if let Some(&id) = self.by_transport.get(&(endpoint, transport)) {
            if let Some(e) = self.entries.get_mut(&id) {
                e.up = true;
                for a in &peer {
                    self.by_addr.insert((endpoint, *a), id);
                }
                for a in peer {
                    if !e.peer.contains(&a) {
                        e.peer.push(a);
                    }
                }
                return (id, std::mem::take(&mut e.queue));
            }
        }
        let id = self.fresh();
        self.insert(
            id,
            Entry {
                endpoint,
                transport,
                peer,
                up: true,
                queue: Vec::new(),
            },
        );
        (id, Vec::new())
    }

    /// An association went down; its id, if it was known.
    pub(super) fn down(&mut self, endpoint: usize, transport: AssociationId) -> Option<AssocId> {
        let id = self.by_transport.remove(&(endpoint, transport))?;
        if let Some(e) = self.entries.remove(&id) {
            for a in e.peer {
                if self.by_addr.get(&(endpoint, a)) == Some(&id) {
                    self.by_addr.remove(&(endpoint, a));
                }
            }
        }
        Some(id)
    }

    /// The id of an association that is up.
    pub(super) fn id_of(&self, endpoint: usize, transport: AssociationId) -> Option<AssocId> {
        let id = self.by_transport.get(&(endpoint, transport))?;
        self.entries.get(id).filter(|e| e.up).map(|_| *id)
    }

    pub(super) fn route(&self, id: AssocId) -> Option<Route> {
        let e = self.entries.get(&id)?;
        Some(if e.up {
            Route::Up(e.endpoint, e.transport)
        } else {
            Route::Pending(id)
        })
    }

    /// The association to the endpoint at any of `addrs`, if one exists.
    pub(super) fn find(&self, endpoint: usize, addrs: &[SocketAddr]) -> Option<Route> {
        addrs
            .iter()
            .find_map(|a| self.by_addr.get(&(endpoint, *a)))
            .and_then(|id| self.route(*id))
    }

    /// An association is being opened (for a first message, if any).
    pub(super) fn connecting(
        &mut self,
        endpoint: usize,
        transport: AssociationId,
        peer: Vec<SocketAddr>,
        first: Option<Outgoing>,
    ) {
        let id = self.fresh();
        self.insert(
            id,
            Entry {
                endpoint,
                transport,
                peer,
                up: false,
                queue: first.into_iter().collect(),
            },
        );
    }

    pub(super) fn queue(&mut self, id: AssocId, out: Outgoing) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.queue.push(out);
        }
    }

    /// Every association that is up, as (endpoint, transport id).
    pub(super) fn all_up(&self) -> Vec<(usize, AssociationId)> {
        self.entries
            .values()
            .filter(|e| e.up)
            .map(|e| (e.endpoint, e.transport))
            .collect()
    }

    /// Forgets an association still being opened to any of `addrs`, with
    /// its queued messages; returns it so that the caller can abort it.
    pub(super) fn abandon(&mut self, addrs: &[SocketAddr]) -> Option<(usize, AssociationId)> {
        let id = self
            .by_addr
            .iter()
            .find(|((_, a), id)| addrs.contains(a) && self.entries.get(id).is_some_and(|e| !e.up))
            .map(|(_, id)| *id)?;
        let e = self.entries.remove(&id)?;
        self.by_transport.remove(&(e.endpoint, e.transport));
        for a in &e.peer {
            if self.by_addr.get(&(e.endpoint, *a)) == Some(&id) {
                self.by_addr.remove(&(e.endpoint, *a));
            }
        }
        Some((e.endpoint, e.transport))
    }

    /// A fresh id for an association that failed before it existed.
    pub(super) fn failed(&mut self) -> AssocId {
        self.fresh()
    }
}

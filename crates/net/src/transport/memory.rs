//! In-memory transport backend: endpoints of one [`MemoryNetwork`] reach each
//! other through channels, with the same event semantics as the socket
//! backends. Meant for fast tests of the networked layer.
//!
//! Dropping a [`MemoryTransport`] without closing its associations behaves
//! like a crashed host: its peers see [`CloseReason::Lost`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{
    AssociationId, CloseMode, CloseReason, EndpointConfig, Event, Message, Ppid, Side, Transport,
    TransportConfig, TransportError, check_size,
};

type EndpointKey = u64;

struct EndpointSlot {
    events: mpsc::UnboundedSender<Event>,
    listen: bool,
    addrs: Vec<SocketAddr>,
    config: TransportConfig,
    established: usize,
}

#[derive(Default)]
struct NetInner {
    next_endpoint: EndpointKey,
    next_assoc: u64,
    next_port: u16,
    endpoints: HashMap<EndpointKey, EndpointSlot>,
    /// Bound address -> endpoint.
    bound: HashMap<SocketAddr, EndpointKey>,
    /// (endpoint, its association) -> (peer endpoint, peer's association).
    links: HashMap<(EndpointKey, AssociationId), (EndpointKey, AssociationId)>,
}

impl NetInner {
    fn alloc_port(&mut self) -> u16 {
        // Ephemeral range, wrapping; collisions are checked by the caller.
        if self.next_port < 49152 {
            self.next_port = 49152;
        }
        let p = self.next_port;
        self.next_port = self.next_port.checked_add(1).unwrap_or(49152);
        p
    }

    fn alloc_assoc(&mut self) -> AssociationId {
        self.next_assoc += 1;
        AssociationId(self.next_assoc)
    }

    fn push(&self, ep: EndpointKey, ev: Event) {
        if let Some(slot) = self.endpoints.get(&ep) {
            // A closed receiver means the endpoint is being dropped; the event
            // has nobody to go to.
            let _ = slot.events.send(ev);
        }
    }

    /// Removes the link of `(ep, assoc)` in both directions and reports
    /// `reason` to both sides (`local_reason` to `ep`).
    fn unlink(
        &mut self,
        ep: EndpointKey,
        assoc: AssociationId,
        local_reason: Option<CloseReason>,
        peer_reason: CloseReason,
    ) {
        if let Some((pep, passoc)) = self.links.remove(&(ep, assoc)) {
            self.links.remove(&(pep, passoc));
            for e in [ep, pep] {
                if let Some(s) = self.endpoints.get_mut(&e) {
                    s.established = s.established.saturating_sub(1);
                }
            }
            if let Some(r) = local_reason {
                self.push(ep, Event::AssociationDown { assoc, reason: r });
            }
            self.push(
                pep,
                Event::AssociationDown {
                    assoc: passoc,
                    reason: peer_reason,
                },
            );
        }
    }
}

/// A simulated network that [`MemoryTransport`] endpoints bind to. Cheap to
/// clone; all clones are the same network.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<NetInner>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork").finish_non_exhaustive()
    }
}

impl MemoryNetwork {
    /// A new, empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, NetInner> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters for tests; keep going rather than cascade.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds an endpoint. Addresses are only names here (no sockets); port 0
    /// picks a free port, an empty address list binds `127.0.0.1` on a free
    /// port. Fails if an address is already bound on this network.
    pub fn bind(&self, config: EndpointConfig) -> Result<MemoryTransport, TransportError> {
        config.transport.validate()?;
        let mut net = self.lock();
        let mut addrs = if config.local_addrs.is_empty() {
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)]
        } else {
            config.local_addrs.clone()
        };
        let port = match addrs.iter().map(|a| a.port()).find(|p| *p != 0) {
            Some(p) => p,
            None => {
                // Find a port free on all requested IPs.
                let mut tries = 0u32;
                loop {
                    let p = net.alloc_port();
                    if addrs
                        .iter()
                        .all(|a| !net.bound.contains_key(&SocketAddr::new(a.ip(), p)))
                    {
                        break p;
                    }
                    tries += 1;
                    if tries > 20_000 {
                        return Err(TransportError::LimitReached("memory network ports"));
                    }
                }
            }
        };
        for a in &mut addrs {
            a.set_port(port);
            if net.bound.contains_key(a) {
                return Err(TransportError::Io(format!("address {a} already in use")));
            }
        }
        net.next_endpoint += 1;
        let key = net.next_endpoint;
        let (tx, rx) = mpsc::unbounded_channel();
        for a in &addrs {
            net.bound.insert(*a, key);
        }
        net.endpoints.insert(
            key,
            EndpointSlot {
                events: tx,
                listen: config.listen,
                addrs: addrs.clone(),
                config: config.transport.clone(),
                established: 0,
            },
        );
        Ok(MemoryTransport {
            net: self.clone(),
            key,
            addrs,
            config: config.transport,
            events: rx,
            known: HashSet::new(),
        })
    }
}

/// An endpoint on a [`MemoryNetwork`].
pub struct MemoryTransport {
    net: MemoryNetwork,
    key: EndpointKey,
    addrs: Vec<SocketAddr>,
    config: TransportConfig,
    events: mpsc::UnboundedReceiver<Event>,
    /// Associations the user may address: returned by `connect` or reported
    /// up, and not yet reported down.
    known: HashSet<AssociationId>,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("addrs", &self.addrs)
            .field("associations", &self.known.len())
            .finish()
    }
}

impl Transport for MemoryTransport {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    fn max_message_size(&self) -> usize {
        self.config.max_message_size
    }

    async fn connect(
        &mut self,
        peer_addrs: &[SocketAddr],
    ) -> Result<AssociationId, TransportError> {
        if peer_addrs.is_empty() {
            return Err(TransportError::InvalidAddress("no peer address".into()));
        }
        let mut net = self.net.lock();
        let me = net
            .endpoints
            .get(&self.key)
            .ok_or(TransportError::EndpointClosed)?;
        if me.established >= self.config.max_associations {
            return Err(TransportError::LimitReached("associations"));
        }
        let local = self.addrs.clone();
        let assoc = net.alloc_assoc();
        self.known.insert(assoc);
        let peer = peer_addrs.iter().find_map(|a| {
            let k = *net.bound.get(a)?;
            let slot = net.endpoints.get(&k)?;
            (slot.listen && slot.established < slot.config.max_associations).then_some(k)
        });
        match peer {
            Some(pk) if pk != self.key => {
                let passoc = net.alloc_assoc();
                net.links.insert((self.key, assoc), (pk, passoc));
                net.links.insert((pk, passoc), (self.key, assoc));
                let peer_addrs_full = net
                    .endpoints
                    .get(&pk)
                    .map(|s| s.addrs.clone())
                    .unwrap_or_default();
                for k in [self.key, pk] {
                    if let Some(s) = net.endpoints.get_mut(&k) {
                        s.established += 1;
                    }
                }
                net.push(
                    pk,
                    Event::AssociationUp {
                        assoc: passoc,
                        side: Side::Server,
                        peer_addrs: local,
                    },
                );
                net.push(
                    self.key,
                    Event::AssociationUp {
                        assoc,
                        side: Side::Client,
                        peer_addrs: peer_addrs_full,
                    },
                );
            }
            _ => net.push(
                self.key,
                Event::AssociationDown {
                    assoc,
                    reason: CloseReason::HandshakeFailed,
                },
            ),
        }
        Ok(assoc)
    }

    async fn send(
        &mut self,
        assoc: AssociationId,
        stream: u16,
        ppid: Ppid,
        unordered: bool,
        data: Bytes,
    ) -> Result<(), TransportError> {
        check_size(data.len(), self.config.max_message_size)?;
        if stream >= self.config.streams {
            return Err(TransportError::InvalidStream(stream));
        }
        if !self.known.contains(&assoc) {
            return Err(TransportError::UnknownAssociation(assoc));
        }
        let net = self.net.lock();
        // Not linked but still known: it went down and the event is queued;
        // like a socket backend, the message is lost with the association.
        if let Some(&(pk, passoc)) = net.links.get(&(self.key, assoc)) {
            let max_in = net
                .endpoints
                .get(&pk)
                .map(|s| s.config.max_message_size)
                .unwrap_or(0);
            if data.len() > max_in {
                drop(net);
                // The receiver would abort on an oversized message; mirror it.
                let mut net = self.net.lock();
                net.unlink(
                    self.key,
                    assoc,
                    Some(CloseReason::Aborted),
                    CloseReason::Aborted,
                );
                return Ok(());
            }
            net.push(
                pk,
                Event::Message(Message {
                    assoc: passoc,
                    stream,
                    ppid,
                    unordered,
                    data,
                }),
            );
        }
        Ok(())
    }

    async fn close(&mut self, assoc: AssociationId, mode: CloseMode) -> Result<(), TransportError> {
        if !self.known.contains(&assoc) {
            return Err(TransportError::UnknownAssociation(assoc));
        }
        let reason = match mode {
            CloseMode::Graceful => CloseReason::Graceful,
            CloseMode::Abort => CloseReason::Aborted,
        };
        self.net
            .lock()
            .unlink(self.key, assoc, Some(reason), reason);
        Ok(())
    }

    async fn next_event(&mut self) -> Result<Event, TransportError> {
        let ev = self
            .events
            .recv()
            .await
            .ok_or(TransportError::EndpointClosed)?;
        match &ev {
            Event::AssociationUp { assoc, .. } => {
                self.known.insert(*assoc);
            }
            Event::AssociationDown { assoc, .. } => {
                self.known.remove(assoc);
            }
            Event::Message(_) => {}
        }
        Ok(ev)
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        let mut net = self.net.lock();
        let mine: Vec<AssociationId> = net
            .links
            .keys()
            .filter(|(k, _)| *k == self.key)
            .map(|(_, a)| *a)
            .collect();
        for a in mine {
            net.unlink(self.key, a, None, CloseReason::Lost);
        }
        net.endpoints.remove(&self.key);
        let key = self.key;
        net.bound.retain(|_, k| *k != key);
    }
}

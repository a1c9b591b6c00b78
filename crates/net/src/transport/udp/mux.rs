//! One UDP encapsulation socket shared by every SCTP endpoint of the
//! process on that address (RFC 6951 §5: the encapsulation port belongs to
//! the SCTP stack, not to one SCTP socket).
//!
//! A [`Mux`] owns the socket and a receive task that hands each datagram to
//! the endpoint owning its destination SCTP port; datagrams for ports no
//! endpoint owns go to the first endpoint attached, which treats them as
//! out of the blue (RFC 9260 §8.4). Endpoints send on the socket directly.
//! So a registrar's ASAP and ENRP endpoints share one address and port, as
//! they would over kernel SCTP.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;

use super::socket::{RecvBatch, make_socket};

/// A datagram for one endpoint: the endpoint's index of the socket it came
/// on, its source (`None` if truncated or unusable) and its bytes.
pub(super) struct Inbound {
    pub tag: usize,
    pub from: Option<SocketAddr>,
    pub data: Bytes,
}

/// Batches of datagrams queued per endpoint before the socket's further
/// datagrams for it are dropped (as a full socket buffer would).
pub(super) const INBOUND_BATCHES: usize = 1024;

/// Identifies an endpoint attached to muxes.
pub(super) type EndpointKey = u64;

static NEXT_ENDPOINT: AtomicU64 = AtomicU64::new(1);

/// A fresh endpoint key.
pub(super) fn endpoint_key() -> EndpointKey {
    NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed)
}

struct Attached {
    tx: mpsc::Sender<Vec<Inbound>>,
    tag: usize,
    /// Order of attachment: the oldest endpoint takes unowned ports.
    order: u64,
}

#[derive(Default)]
struct Table {
    ports: HashMap<u16, EndpointKey>,
    endpoints: HashMap<EndpointKey, Attached>,
    next_order: u64,
}

impl Table {
    fn fallback(&self) -> Option<EndpointKey> {
        self.endpoints
            .iter()
            .min_by_key(|(_, a)| a.order)
            .map(|(k, _)| *k)
    }
}

struct Inner {
    socket: UdpSocket,
    local: SocketAddr,
    table: Mutex<Table>,
    /// Datagrams dropped because their endpoint's queue was full.
    dropped: AtomicU64,
}

/// A shared UDP socket and its receive task (stopped when the last
/// endpoint lets go of the mux).
pub(super) struct Mux {
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.task.abort();
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
    }
}

type Registry = Mutex<HashMap<SocketAddr, Weak<Mux>>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl Mux {
    /// The process's mux on `addr`, opened (on the current tokio runtime)
    /// if there is none yet. Port 0 always opens a new socket.
    pub(super) fn open(addr: SocketAddr, buffer: usize) -> io::Result<Arc<Mux>> {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        if addr.port() != 0
            && let Some(m) = reg.get(&addr).and_then(Weak::upgrade)
        {
            return Ok(m);
        }
        let socket = UdpSocket::from_std(make_socket(addr, buffer)?)?;
        let local = socket.local_addr()?;
        let inner = Arc::new(Inner {
            socket,
            local,
            table: Mutex::new(Table::default()),
            dropped: AtomicU64::new(0),
        });
        let task = tokio::spawn(receive(inner.clone()));
        let mux = Arc::new(Mux { inner, task });
        reg.insert(local, Arc::downgrade(&mux));
        Ok(mux)
    }

    pub(super) fn socket(&self) -> &UdpSocket {
        &self.inner.socket
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Datagrams dropped because an endpoint did not keep up.
    pub(super) fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts delivering datagrams for `endpoint`'s ports to `tx`, each
    /// marked with `tag`.
    pub(super) fn attach(&self, endpoint: EndpointKey, tag: usize, tx: mpsc::Sender<Vec<Inbound>>) {
        let mut t = self.table();
        let order = t.next_order;
        t.next_order += 1;
        t.endpoints.insert(endpoint, Attached { tx, tag, order });
    }

    /// Forgets `endpoint` and frees its ports.
    pub(super) fn detach(&self, endpoint: EndpointKey) {
        let mut t = self.table();
        t.endpoints.remove(&endpoint);
        t.ports.retain(|_, e| *e != endpoint);
    }

    /// Makes `port` `endpoint`'s; false if another endpoint has it.
    pub(super) fn claim(&self, port: u16, endpoint: EndpointKey) -> bool {
        let mut t = self.table();
        match t.ports.get(&port) {
            Some(e) => *e == endpoint,
            None => {
                t.ports.insert(port, endpoint);
                true
            }
        }
    }

    /// Whether another endpoint owns `port`.
    pub(super) fn taken(&self, port: u16, endpoint: EndpointKey) -> bool {
        self.table()
            .ports
            .get(&port)
            .is_some_and(|e| *e != endpoint)
    }

    /// Gives `port` back, if `endpoint` has it.
    pub(super) fn release(&self, port: u16, endpoint: EndpointKey) {
        let mut t = self.table();
        if t.ports.get(&port) == Some(&endpoint) {
            t.ports.remove(&port);
        }
    }
}

/// Reads the socket and routes datagrams by destination SCTP port.
async fn receive(inner: Arc<Inner>) {
    let mut rx = RecvBatch::new();
    let mut out: HashMap<EndpointKey, Vec<Inbound>> = HashMap::new();
    loop {
        if let Err(e) = inner.socket.readable().await {
            debug!(%e, "udp socket not readable");
            return;
        }
        // Drain what is queued, a bounded number of batches per wake-up so
        // that one busy socket cannot starve the runtime.
        for _ in 0..64 {
            let n = match rx.recv(&inner.socket) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors surface here on some systems; they are not
                    // fatal for an unconnected socket.
                    debug!(%e, "udp receive error");
                    break;
                }
            };
            if n == 0 {
                break;
            }
            let t = inner.table.lock().unwrap_or_else(|e| e.into_inner());
            let fallback = t.fallback();
            for i in 0..n {
                let (from, data) = rx.take(i);
                let port = (data.len() >= 4).then(|| u16::from_be_bytes([data[2], data[3]]));
                let Some(key) = port.and_then(|p| t.ports.get(&p).copied()).or(fallback) else {
                    continue;
                };
                let Some(a) = t.endpoints.get(&key) else {
                    continue;
                };
                out.entry(key).or_default().push(Inbound {
                    tag: a.tag,
                    from,
                    data,
                });
            }
            for (key, batch) in out.drain() {
                let Some(a) = t.endpoints.get(&key) else {
                    continue;
                };
                let len = batch.len() as u64;
                if a.tx.try_send(batch).is_err() {
                    inner.dropped.fetch_add(len, Ordering::Relaxed);
                }
            }
        }
    }
}

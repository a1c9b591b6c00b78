//! Pool elements: join a pool, accept sessions from pool users, serve them.
//!
//! ```no_run
//! # async fn run() -> Result<(), rserpool::Error> {
//! use rserpool::pe::{PoolElement, Received};
//!
//! let mut pe = PoolElement::builder("echo")?
//!     .registrar("127.0.0.1:3863".parse().unwrap())
//!     .local("127.0.0.1:0".parse().unwrap())
//!     .join()
//!     .await?;
//! while let Some(mut session) = pe.accept().await {
//!     tokio::spawn(async move {
//!         while let Some(received) = session.recv().await {
//!             if let Received::Data { data, .. } = received {
//!                 if session.send(data).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         }
//!     });
//! }
//! # Ok(()) }
//! ```

use crate::error::Error;
use crate::node::{Node, NodeHandle};
use crate::options::{Options, option_setters, pool_handle, seed};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_core::pool_element::PoolElementEvent;
use rserpool_core::{Instant, PoolElementConfig, SessionId};
use rserpool_net::runtime::Endpoints;
use rserpool_net::transport::Transport;
use rserpool_wire::{
    self as wire, PeId, Policy, PoolHandle, PrId, TransportAddress, TransportUse, UserTransport,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The PPID application data is sent with unless the application picks
/// one (0: unspecified, RFC 4960 §3.3.1).
pub const DEFAULT_PPID: u32 = 0;

/// Messages a session holds for an application that has not read them;
/// a pool user that sends more than the application reads has its
/// session closed (network input never grows memory without bound).
pub const SESSION_QUEUE: usize = 4096;

/// Sessions opened and not yet accepted; beyond, new ones are closed.
pub const ACCEPT_QUEUE: usize = 1024;

type Machine = rserpool_core::PoolElement;

/// Where the pool element stands with its registrars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Looking for a registrar that accepts it.
    Hunting,
    /// Registered; pool users can find it.
    Registered {
        /// The home registrar's server ID, once known.
        server_id: Option<PrId>,
    },
    /// The registrar refused the registration; it is not retried unchanged.
    Refused(Vec<wire::ErrorCause>),
    /// Deregistered (or stopped).
    Left,
}

/// Sets up a [`PoolElement`].
#[derive(Debug, Clone)]
pub struct PoolElementBuilder {
    config: PoolElementConfig,
    options: Options,
    user_addrs: Vec<IpAddr>,
    user_port: Option<u16>,
}

impl PoolElementBuilder {
    option_setters!();

    /// The member selection policy and this PE's value (default Round Robin).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }

    /// The addresses pool users reach the PE at, when they differ from the
    /// local addresses (behind NAT, or bound to the unspecified address).
    pub fn user_addrs(mut self, addrs: Vec<IpAddr>) -> Self {
        self.user_addrs = addrs;
        self
    }

    /// The port pool users are told to connect to, when it is not the
    /// endpoint's own (a proxy or port forwarding in between).
    pub fn user_port(mut self, port: u16) -> Self {
        self.user_port = Some(port);
        self
    }

    /// A fixed PE identifier instead of a random one.
    pub fn pe_id(mut self, id: PeId) -> Self {
        self.config.pe_id = Some(id);
        self
    }

    /// Everything else of the protocol machine (timers, registration life,
    /// business cards, ...).
    pub fn configure(mut self, f: impl FnOnce(&mut PoolElementConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Binds the endpoint and starts registering; returns at once (see
    /// [`PoolElement::registered`] to wait for the registrar's answer).
    pub async fn join(self) -> Result<PoolElement, Error> {
        let Self {
            mut config,
            mut options,
            user_addrs,
            user_port,
        } = self;
        options.hunt(&mut config.hunt)?;
        if options.local.is_empty() {
            options.local.push(SocketAddr::new([0, 0, 0, 0].into(), 0));
        }
        let user_addrs = if user_addrs.is_empty() {
            options.local.iter().map(SocketAddr::ip).collect()
        } else {
            user_addrs
        };
        // Unspecified addresses (the default) are registered as such: the
        // registrar puts in their place the addresses the PE's association
        // comes from (RFC 5352 §3.1).
        if let Some(ip) = user_addrs.iter().find(|ip| ip.is_multicast()) {
            return Err(Error::Config(format!(
                "pool users cannot reach {ip}: bind a concrete local address or give the user addresses"
            )));
        }
        // A registrar that takes the PE over opens an association to it,
        // and so do pool users: the endpoint listens.
        let (endpoint, announce, kind) = options.bind(true).await?;
        let port = user_port
            .or_else(|| endpoint.local_addrs().first().map(SocketAddr::port))
            .unwrap_or(0);
        config.user_transport = UserTransport::Address(TransportAddress::sctp(
            port,
            TransportUse::DataPlusControl,
            user_addrs,
        ));
        let local = endpoint.local_addrs();
        let machine = Machine::new(
            config.clone(),
            ChaCha8Rng::seed_from_u64(seed(&options)),
            Instant::ZERO,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let pe_id = machine.pe_id();
        tracing::debug!(%pe_id, pool = %config.pool_handle, ?local, %kind, "pool element joining");
        let (node, events) = Node::spawn(
            machine,
            Endpoints {
                asap: endpoint,
                enrp: None,
            },
            announce,
        );
        let (accept_tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        let (status_tx, status) = watch::channel(Registration::Hunting);
        let (reg_tx, registration_events) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(
            events,
            node.handle(),
            accept_tx,
            status_tx,
            reg_tx,
        ));
        Ok(PoolElement {
            node,
            incoming,
            status,
            registration_events,
            pe_id,
            pool: config.pool_handle,
            local,
            t3: config.t3_deregistration,
        })
    }
}

/// A pool element: registered in a pool, serving the sessions pool users
/// open to it. Dropping it stops it without deregistering; [`Self::leave`]
/// deregisters first.
pub struct PoolElement {
    node: Node<Machine>,
    incoming: mpsc::Receiver<Session>,
    status: watch::Receiver<Registration>,
    registration_events: mpsc::UnboundedReceiver<PoolElementEvent>,
    pe_id: PeId,
    pool: PoolHandle,
    local: Vec<SocketAddr>,
    t3: Duration,
}

impl PoolElement {
    /// Starts setting up a pool element of `pool`.
    pub fn builder(pool: &str) -> Result<PoolElementBuilder, Error> {
        let pool = pool_handle(pool)?;
        // The user transport is filled in once the endpoint is bound.
        Ok(Self::with_config(PoolElementConfig::new(
            pool,
            UserTransport::Opaque(Bytes::new()),
            Policy::RoundRobin,
        )))
    }

    /// Starts setting up a pool element from a complete protocol
    /// configuration (its user transport is replaced by the endpoint's).
    pub fn with_config(config: PoolElementConfig) -> PoolElementBuilder {
        PoolElementBuilder {
            config,
            options: Options::default(),
            user_addrs: Vec::new(),
            user_port: None,
        }
    }

    /// The PE identifier.
    pub fn pe_id(&self) -> PeId {
        self.pe_id
    }

    /// The pool.
    pub fn pool(&self) -> &PoolHandle {
        &self.pool
    }

    /// The endpoint's local addresses (with the port pool users connect to).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Where the PE stands with its registrars now.
    pub fn registration(&self) -> Registration {
        self.status.borrow().clone()
    }

    /// Waits until a registrar has accepted the PE; fails if it refused.
    pub async fn registered(&mut self) -> Result<(), Error> {
        loop {
            let now = self.status.borrow_and_update().clone();
            match now {
                Registration::Registered { .. } => return Ok(()),
                Registration::Refused(causes) => return Err(Error::RegistrationRefused(causes)),
                Registration::Left => return Err(Error::Stopped),
                Registration::Hunting => {}
            }
            self.status.changed().await.map_err(|_| Error::Stopped)?;
        }
    }

    /// The next session a pool user opens; `None` once the PE has stopped.
    pub async fn accept(&mut self) -> Option<Session> {
        self.incoming.recv().await
    }

    /// The next event of the PE's dealings with registrars (registered,
    /// home changed, home lost, ...), for logging; session events are not
    /// repeated here.
    pub async fn registration_event(&mut self) -> Option<PoolElementEvent> {
        self.registration_events.recv().await
    }

    /// The next thing that happens to the PE, for applications that follow
    /// sessions and registration in one loop; `None` once it has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        tokio::select! {
            Some(s) = self.incoming.recv() => Some(Event::Session(s)),
            Some(e) = self.registration_events.recv() => Some(Event::Registration(e)),
            reason = self.node.failed() => Some(Event::Failed(reason)),
            else => None,
        }
    }

    /// Changes the policy value and re-registers at once.
    pub async fn set_policy(&self, policy: Policy) -> Result<(), Error> {
        self.node
            .call(move |pe, now| pe.set_policy(now, policy))
            .await
            .ok_or(Error::Stopped)
    }

    /// Sets the load (0.0 to 1.0) of a load-based policy and re-registers
    /// at once; fails for policies without a load.
    pub async fn set_load(&self, load: f64) -> Result<(), Error> {
        let raw = (load.clamp(0.0, 1.0) * f64::from(u32::MAX)).round() as u32;
        match self.node.call(move |pe, now| pe.set_load(now, raw)).await {
            Some(true) => Ok(()),
            Some(false) => Err(Error::Config("the pool's policy has no load".into())),
            None => Err(Error::Stopped),
        }
    }

    /// Resolves when the PE's runtime stops by itself (its endpoint
    /// failed), with the reason.
    pub async fn failed(&mut self) -> String {
        self.node.failed().await
    }

    /// Stops at once, as a crash would: no deregistration, no SHUTDOWN;
    /// registrars and pool users notice by their timers. For tests and
    /// failure experiments.
    pub fn abort(self) {
        self.node.abort();
    }

    /// Deregisters (waiting for the registrar's answer up to T3) and stops;
    /// sessions still open are shut down gracefully. Returns whether a
    /// registrar confirmed the deregistration.
    pub async fn leave(mut self) -> bool {
        if self.node.call(|pe, now| pe.shutdown(now)).await.is_none() {
            return false;
        }
        let wait = async {
            loop {
                let left = *self.status.borrow_and_update() == Registration::Left;
                if left || self.status.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(self.t3 + Duration::from_secs(1), wait).await;
        let confirmed = self.confirmed().await;
        self.node.stop().await;
        confirmed
    }

    async fn confirmed(&mut self) -> bool {
        // The dispatcher forwards the Deregistered event; look for it among
        // what the application did not read.
        while let Ok(e) = self.registration_events.try_recv() {
            if let PoolElementEvent::Deregistered {
                confirmed, causes, ..
            } = e
            {
                return confirmed && causes.is_empty();
            }
        }
        false
    }
}

/// What [`PoolElement::next`] reports.
#[derive(Debug)]
pub enum Event {
    /// A pool user opened a session.
    Session(Session),
    /// News of the PE's dealings with registrars (see
    /// [`PoolElement::registration_event`]).
    Registration(PoolElementEvent),
    /// The PE's runtime stopped by itself (its endpoint failed); the reason.
    Failed(String),
}

/// What arrives on a session at a pool element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An application message.
    Data {
        /// Its payload protocol identifier.
        ppid: u32,
        /// The message.
        data: Bytes,
    },
    /// The pool user failed over to this PE and presents the cookie the
    /// previous PE gave it: restore the session's state from it (after
    /// verifying it, see [`crate::CookieSigner`]). Comes before any data.
    CookieEcho(Bytes),
    /// The pool user is itself a PE of `pool_handle` and tells its
    /// failover order.
    BusinessCard {
        /// Its pool.
        pool_handle: PoolHandle,
        /// Its PEs in failover order.
        pool_elements: Vec<wire::PoolElement>,
    },
}

/// A session a pool user opened to this pool element.
pub struct Session {
    id: SessionId,
    peer: Vec<SocketAddr>,
    node: NodeHandle<Machine>,
    rx: mpsc::Receiver<Received>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Session {
    /// The session's id (unique within the PE).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The pool user's addresses.
    pub fn peer(&self) -> &[SocketAddr] {
        &self.peer
    }

    /// The next message; `None` once the session has ended.
    pub async fn recv(&mut self) -> Option<Received> {
        self.rx.recv().await
    }

    /// A handle that sends on this session from another task.
    pub fn sender(&self) -> SessionSender {
        SessionSender {
            id: self.id,
            node: self.node.clone(),
        }
    }

    /// Sends a message with [`DEFAULT_PPID`].
    pub async fn send(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.sender().send(data).await
    }

    /// Sends a message with the application's PPID, ordered or not.
    pub async fn send_with(
        &self,
        ppid: u32,
        data: impl Into<Bytes>,
        unordered: bool,
    ) -> Result<(), Error> {
        self.sender().send_with(ppid, data, unordered).await
    }

    /// Hands the pool user the cookie the next PE resumes from, should
    /// this one fail (the pool user keeps only the newest).
    pub async fn set_cookie(&self, cookie: impl Into<Bytes>) -> Result<(), Error> {
        self.sender().set_cookie(cookie).await
    }

    /// Ends the session gracefully.
    pub async fn close(self) -> Result<(), Error> {
        let id = self.id;
        self.node
            .call(move |pe, _| pe.close_session(id))
            .await
            .ok_or(Error::Stopped)?
            .map_err(Error::from)
    }
}

/// Sends on a session from any task.
#[derive(Clone)]
pub struct SessionSender {
    id: SessionId,
    node: NodeHandle<Machine>,
}

impl SessionSender {
    /// Sends a message with [`DEFAULT_PPID`].
    pub async fn send(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send_with(DEFAULT_PPID, data, false).await
    }

    /// Sends a message with the application's PPID, ordered or not.
    pub async fn send_with(
        &self,
        ppid: u32,
        data: impl Into<Bytes>,
        unordered: bool,
    ) -> Result<(), Error> {
        let (id, data) = (self.id, data.into());
        self.node
            .call(move |pe, _| pe.send_data(id, ppid, data, unordered))
            .await
            .ok_or(Error::Stopped)?
            .map_err(Error::from)
    }

    /// See [`Session::set_cookie`].
    pub async fn set_cookie(&self, cookie: impl Into<Bytes>) -> Result<(), Error> {
        let (id, cookie) = (self.id, cookie.into());
        self.node
            .call(move |pe, _| pe.send_cookie(id, cookie))
            .await
            .ok_or(Error::Stopped)?
            .map_err(Error::from)
    }
}

/// Routes the machine's events: sessions to their owners, registration
/// news to the status and the registration event queue.
async fn dispatch(
    mut events: mpsc::UnboundedReceiver<PoolElementEvent>,
    node: NodeHandle<Machine>,
    accept: mpsc::Sender<Session>,
    status: watch::Sender<Registration>,
    registration: mpsc::UnboundedSender<PoolElementEvent>,
) {
    use PoolElementEvent as E;
    let mut sessions: HashMap<SessionId, mpsc::Sender<Received>> = HashMap::new();
    while let Some(e) = events.recv().await {
        let (session, received) = match e {
            E::SessionOpened { session, peer } => {
                let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                let s = Session {
                    id: session,
                    peer,
                    node: node.clone(),
                    rx,
                };
                match accept.try_send(s) {
                    Ok(()) => {
                        sessions.insert(session, tx);
                    }
                    Err(e) => {
                        // Not accepted (too many waiting, or nobody
                        // accepts): the session ends at once.
                        if matches!(e, mpsc::error::TrySendError::Full(_)) {
                            tracing::warn!(%session, "{ACCEPT_QUEUE} sessions wait to be accepted; closing a new one");
                        }
                        let _ = node.call(move |pe, _| pe.close_session(session)).await;
                    }
                }
                continue;
            }
            E::SessionData {
                session,
                ppid,
                data,
            } => (session, Received::Data { ppid, data }),
            E::CookieEcho { session, cookie } => (session, Received::CookieEcho(cookie)),
            E::BusinessCard {
                session,
                pool_handle,
                pool_elements,
            } => (
                session,
                Received::BusinessCard {
                    pool_handle,
                    pool_elements,
                },
            ),
            E::SessionClosed { session, .. } => {
                sessions.remove(&session);
                continue;
            }
            other => {
                let next = match &other {
                    E::Registered { server_id, .. } => Some(Registration::Registered {
                        server_id: *server_id,
                    }),
                    E::HomeChanged { server_id, .. } => Some(Registration::Registered {
                        server_id: Some(*server_id),
                    }),
                    E::RegistrationRejected { causes, .. } => {
                        Some(Registration::Refused(causes.clone()))
                    }
                    E::HomeLost { .. } | E::RegistrationExpired { .. } => {
                        Some(Registration::Hunting)
                    }
                    E::Deregistered { .. } => Some(Registration::Left),
                    _ => None,
                };
                let _ = registration.send(other);
                if let Some(next) = next {
                    status.send_replace(next);
                }
                continue;
            }
        };
        if let Some(tx) = sessions.get(&session) {
            if let Err(e) = tx.try_send(received) {
                // The application dropped the session, or the pool user
                // sends faster than the application reads: end it.
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    tracing::warn!(%session, "{SESSION_QUEUE} messages unread; closing the session");
                }
                sessions.remove(&session);
                let _ = node.call(move |pe, _| pe.close_session(session)).await;
            }
        }
    }
    status.send_replace(Registration::Left);
}

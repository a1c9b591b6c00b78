//! Pool users: sessions with a pool that survive the failure of the pool
//! element serving them.
//!
//! ```no_run
//! # async fn run() -> Result<(), rserpool::Error> {
//! use rserpool::pu::{Session, SessionEvent};
//!
//! let mut session = Session::builder("echo")?
//!     .registrar("127.0.0.1:3863".parse().unwrap())
//!     .connect()
//!     .await?;
//! session.send("hello").await?;
//! while let Some(event) = session.next().await {
//!     match event {
//!         SessionEvent::Data { data, .. } => {
//!             println!("{}", String::from_utf8_lossy(&data));
//!             break;
//!         }
//!         SessionEvent::Failover { from, to, reason, .. } => {
//!             eprintln!("failover: PE {from} -> PE {to} ({reason})");
//!         }
//!         _ => {}
//!     }
//! }
//! session.close().await;
//! # Ok(()) }
//! ```

use crate::error::Error;
use crate::node::Node;
use crate::options::{Options, option_setters, pool_handle, seed};
use crate::pe::DEFAULT_PPID;
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_core::pool_user::{BusinessCard, FailoverReason, ResolutionFailure};
use rserpool_core::{Instant, PoolUserConfig, PoolUserEvent, SendOptions, SessionId};
use rserpool_net::runtime::Endpoints;
use rserpool_wire::{PeId, PoolHandle};
use std::time::Duration;
use tokio::sync::mpsc;

type Machine = rserpool_core::PoolUser;

/// What happens on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The session is connected to a PE (at first, and after each failover).
    Connected {
        /// The PE serving the session now.
        pe_id: PeId,
        /// Whether it was handed the newest cookie first.
        cookie_echoed: bool,
    },
    /// An application message from the PE.
    Data {
        /// Its payload protocol identifier.
        ppid: u32,
        /// The message.
        data: Bytes,
    },
    /// The session left a PE for another (`Connected` follows).
    Failover {
        /// The PE left.
        from: PeId,
        /// The PE chosen next.
        to: PeId,
        /// Why.
        reason: FailoverReason,
        /// The sequence number ([`Session::send`] returns them) of the
        /// first message `to` gets: messages sent with
        /// [`SendOptions::resend`] and not released come again, in order,
        /// then those sent since. Earlier messages went to PEs that failed
        /// and, without an answer, may be lost.
        resumes_at: u64,
    },
    /// No PE could be found; the session tries again after `retry_in`.
    Unavailable {
        /// Why.
        reason: ResolutionFailure,
        /// The pause before the next try.
        retry_in: Duration,
    },
}

/// Sets up a [`Session`].
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    pool: PoolHandle,
    config: PoolUserConfig,
    options: Options,
    card: Option<BusinessCard>,
}

impl SessionBuilder {
    option_setters!();

    /// How long the association to a chosen PE may take before the session
    /// tries another (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.session.connect_timeout = d;
        self
    }

    /// Presents this business card to every PE (a pool user that is itself
    /// a PE of another pool, RFC 5352 §3.9).
    pub fn business_card(mut self, card: BusinessCard) -> Self {
        self.card = Some(card);
        self
    }

    /// Everything else of the protocol machine (cache lifetime, T1, ...).
    pub fn configure(mut self, f: impl FnOnce(&mut PoolUserConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Binds an endpoint and opens the session; returns at once (the
    /// session connects in the background: [`SessionEvent::Connected`]
    /// tells when, and messages sent before wait for it).
    pub async fn connect(self) -> Result<Session, Error> {
        let Self {
            pool,
            mut config,
            options,
            card,
        } = self;
        options.hunt(&mut config.hunt)?;
        config
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        let (endpoint, announce, _) = options.bind(false).await?;
        let mut machine = Machine::new(
            config.clone(),
            ChaCha8Rng::seed_from_u64(seed(&options)),
            Instant::ZERO,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        machine.set_business_card(card);
        let (node, events) = Node::spawn(
            machine,
            Endpoints {
                asap: endpoint,
                enrp: None,
            },
            announce,
        );
        let p = pool.clone();
        let id = node
            .call(move |pu, now| pu.open_session(now, p))
            .await
            .ok_or(Error::Stopped)?;
        Ok(Session {
            node,
            events,
            id,
            pool,
            pe: None,
            retry: config.session.retry_interval,
        })
    }
}

/// A session with a pool, over one association at a time to the PE
/// serving it. The session's own endpoint and registrar association go
/// with it (as the reference implementation's sessions each have their
/// socket).
pub struct Session {
    node: Node<Machine>,
    events: mpsc::UnboundedReceiver<PoolUserEvent>,
    id: SessionId,
    pool: PoolHandle,
    pe: Option<PeId>,
    retry: Duration,
}

impl Session {
    /// Starts setting up a session with `pool`.
    pub fn builder(pool: &str) -> Result<SessionBuilder, Error> {
        Ok(Self::with_config(
            pool_handle(pool)?,
            PoolUserConfig::default(),
        ))
    }

    /// Starts setting up a session with `pool` from a complete protocol
    /// configuration of the pool user.
    pub fn with_config(pool: PoolHandle, config: PoolUserConfig) -> SessionBuilder {
        SessionBuilder {
            pool,
            config,
            options: Options::default(),
            card: None,
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PoolHandle {
        &self.pool
    }

    /// The PE serving the session, as far as the events read so far tell.
    pub fn pe(&self) -> Option<PeId> {
        self.pe
    }

    /// Sends a message with [`DEFAULT_PPID`], failing over if need be;
    /// returns its sequence number in the session (0, 1, ...).
    pub async fn send(&self, data: impl Into<Bytes>) -> Result<u64, Error> {
        self.send_with(DEFAULT_PPID, data, SendOptions::default())
            .await
    }

    /// Sends a message with the application's PPID and send options;
    /// returns its sequence number.
    pub async fn send_with(
        &self,
        ppid: u32,
        data: impl Into<Bytes>,
        options: SendOptions,
    ) -> Result<u64, Error> {
        let (id, data) = (self.id, data.into());
        self.node
            .call(move |pu, _| pu.send_data(id, ppid, data, options))
            .await
            .ok_or(Error::Stopped)?
            .map_err(Error::from)
    }

    /// Tells the session that every message up to sequence number `seq`
    /// has its answer: those sent with [`SendOptions::resend`] are no
    /// longer sent again after a failover.
    pub async fn release(&self, seq: u64) -> Result<(), Error> {
        let id = self.id;
        self.node
            .call(move |pu, _| pu.release(id, seq))
            .await
            .ok_or(Error::Stopped)?
            .map_err(Error::from)
    }

    /// The next event; `None` once the session's node has stopped.
    pub async fn next(&mut self) -> Option<SessionEvent> {
        loop {
            let e = self.events.recv().await?;
            let event = match e {
                PoolUserEvent::SessionConnected {
                    pe_id,
                    cookie_echoed,
                    ..
                } => {
                    self.pe = Some(pe_id);
                    SessionEvent::Connected {
                        pe_id,
                        cookie_echoed,
                    }
                }
                PoolUserEvent::SessionData { ppid, data, .. } => SessionEvent::Data { ppid, data },
                PoolUserEvent::Failover {
                    from,
                    to,
                    reason,
                    resumes_at,
                    ..
                } => {
                    self.pe = None;
                    SessionEvent::Failover {
                        from,
                        to,
                        reason,
                        resumes_at,
                    }
                }
                PoolUserEvent::SessionUnavailable { reason, .. } => {
                    self.pe = None;
                    SessionEvent::Unavailable {
                        reason,
                        retry_in: self.retry,
                    }
                }
                other => {
                    tracing::debug!(event = ?other, "pool user event");
                    continue;
                }
            };
            return Some(event);
        }
    }

    /// The next application message, skipping the other events.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            if let SessionEvent::Data { data, .. } = self.next().await? {
                return Some(data);
            }
        }
    }

    /// Gives up the current PE as failed (the application's own timeout
    /// expired) and fails over to another.
    pub async fn fail_over(&self) -> Result<(), Error> {
        let id = self.id;
        self.node
            .call(move |pu, now| pu.fail_over(now, id))
            .await
            .ok_or(Error::Stopped)?
            .map_err(Error::from)
    }

    /// Closes the session: what was sent is delivered, the associations
    /// are shut down gracefully.
    pub async fn close(self) {
        let id = self.id;
        let _ = self.node.call(move |pu, _| pu.close_session(id)).await;
        self.node.stop().await;
    }
}

//! A deterministic discrete-event simulator for the RSerPool state machines
//! of `rserpool-core`.
//!
//! A [`World`] holds nodes, each a host with addresses running one
//! [`rserpool_core::Machine`], on a virtual clock. The world plays the part
//! the tokio driver plays in `rserpool-net`: it feeds each machine what
//! arrives (messages, association changes, announces, timer expiry), drains
//! what the machine wants sent, and carries it over an in-memory network
//! with per-link delay, jitter and loss, partitions, and crashing hosts.
//! Messages travel encoded, so the codec is exercised on every hop.
//!
//! The simulated SCTP: an association opens on the first send to a peer's
//! addresses (one round trip), is reported `Up` to both ends, delivers
//! reliably and in order (a lost packet costs a retransmission timeout),
//! and goes `Down{Lost}` when its path stays broken longer than the
//! failure-detection time. Announces are unreliable datagrams to every node
//! that listens.
//!
//! Everything random comes from the world seed: the same seed gives the same
//! run, event for event. Machines get seeds of their own derived from it
//! ([`machine_seed`]).
//!
//! [`World`] is generic over the machine; [`Role`] puts the three RSerPool
//! roles into one type, and [`ScenarioBuilder`] lays out registrars, pool
//! elements and pool users with their configurations:
//!
//! ```
//! use rserpool_core::Instant;
//! use rserpool_sim::{CrashMode, ScenarioBuilder, Workload};
//! use rserpool_wire::PoolHandle;
//! use std::time::Duration;
//!
//! let pool = PoolHandle::try_from("EchoPool").unwrap();
//! let mut b = ScenarioBuilder::new(42);
//! b.registrars(3, |pr| pr.config.keep_alive_interval = Duration::from_secs(2));
//! b.pool_elements(20, &pool, |_| {});
//! let workload = Workload {
//!     pool_handle: pool.clone(),
//!     interval: Duration::from_secs(1),
//!     first: Duration::from_secs(5),
//! };
//! b.pool_users(2, Some(workload), |_| {});
//! let mut s = b.build();
//! s.world.run_until(Instant::from_epoch(Duration::from_secs(30)));
//! assert_eq!(s.registered(), 20);
//! s.world.crash(s.registrars[0], CrashMode::Host);
//! s.world.run_for(Duration::from_secs(90));
//! assert_eq!(s.registered(), 20);
//! let owned: usize = s.ownership().iter().map(|(_, _, owned, _)| owned).sum();
//! assert_eq!(owned, 20, "the survivors own every PE once");
//! ```

mod announce;
mod assoc;
mod builder;
mod config;
mod control;
pub mod experiments;
mod network;
mod node;
mod queue;
mod rng;
mod roles;
mod scenario;
mod stats;
mod trace;
mod transport;
mod world;

pub use builder::WorldBuilder;
pub use config::{LinkConfig, TransportConfig, WorldConfig};
pub use node::{Announces, CrashMode, NodeId, NodeSpec, Spawn};
pub use rng::machine_seed;
pub use roles::{Role, RoleEvent, UserApp, Workload};
pub use scenario::{MAX_PER_ROLE, PE_PORT, PU_PORT, Scenario, ScenarioBuilder, Setup};
pub use stats::{Counter, MessageKind, Stats};
pub use trace::{Entry, Happening};
pub use world::World;

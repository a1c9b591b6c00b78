//! Reliable Server Pooling (RSerPool, RFC 5351-5356) for async Rust.
//!
//! A *pool element* ([`pe::PoolElement`]) joins a pool by registering at a
//! registrar and serves the sessions pool users open to it. A *pool user*
//! opens a [`pu::Session`] with a pool by its name (the pool handle): the
//! registrars resolve the name into the pool's PEs, the session connects
//! to one the pool's policy picks, and when that PE fails the session
//! fails over to another, handing it the newest cookie the old PE left
//! (state checkpoints, see [`CookieSigner`]).
//!
//! The protocol itself is the sans-IO machines of `rserpool-core`; this
//! crate runs them on tokio over kernel SCTP or SCTP over UDP
//! (`rserpool-net`). The `rserpool` command-line tool is built on it.
//!
//! An echo service and a client, on a registrar at 127.0.0.1:
//!
//! ```no_run
//! use rserpool::pe::{PoolElement, Received};
//! use rserpool::pu::Session;
//!
//! # async fn run() -> Result<(), rserpool::Error> {
//! let registrar = "127.0.0.1:3863".parse().unwrap();
//! let mut pe = PoolElement::builder("echo")?
//!     .registrar(registrar)
//!     .local("127.0.0.2:0".parse().unwrap())
//!     .join()
//!     .await?;
//! tokio::spawn(async move {
//!     while let Some(mut s) = pe.accept().await {
//!         tokio::spawn(async move {
//!             while let Some(Received::Data { data, .. }) = s.recv().await {
//!                 let _ = s.send(data).await;
//!             }
//!         });
//!     }
//! });
//!
//! let mut session = Session::builder("echo")?.registrar(registrar).connect().await?;
//! session.send("hello").await?;
//! assert_eq!(session.recv().await.as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```
//!
//! `examples/` holds runnable programs: an echo server and client, and a
//! stateful counter whose sessions survive the crash of their PE.

mod cookie;
mod error;
pub mod node;
mod options;
pub mod pe;
pub mod pu;
pub mod transport;

pub use cookie::{CookieError, CookieSigner};
pub use error::{Error, causes_text};
pub use options::Options;
pub use pe::PoolElement;
pub use pu::Session;
pub use rserpool_core::pool_user::{BusinessCard, FailoverReason, ResolutionFailure};
pub use rserpool_core::{SendOptions, SessionId};
pub use rserpool_wire::{PeId, Policy, PoolHandle};
pub use transport::{Backend, TransportOptions};

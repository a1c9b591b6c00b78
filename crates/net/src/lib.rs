//! rserpool-net: the tokio side of the stack. It holds the transports that
//! carry ASAP and ENRP messages (see [`transport`]) and the [`runtime`]
//! that drives the sans-IO cores over them.

pub mod runtime;
pub mod transport;

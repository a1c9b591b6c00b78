//! A pool: its handle, the policy and transport its first PE fixed, and the
//! per-pool indices (members, PE ID order, selection structure).

use crate::id_order::IdOrder;
use crate::selection::Selection;
use rserpool_wire::{Policy, PolicyType, PoolHandle, Protocol, TransportUse, UserTransport};
use std::sync::{Mutex, MutexGuard};

/// The transport protocol a pool's PEs must share (RFC 5352 §3.1 rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// SCTP.
    Sctp,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// UDP-Lite.
    UdpLite,
    /// DCCP.
    Dccp,
    /// Opaque transport (RFC 5354 §3.16).
    Opaque,
}

/// The protocol and transport use of a user transport.
pub(crate) fn classify(t: &UserTransport) -> (TransportKind, TransportUse) {
    match t {
        UserTransport::Opaque(_) => (TransportKind::Opaque, TransportUse::DataOnly),
        UserTransport::Address(a) => match a.protocol {
            Protocol::Sctp(u) => (TransportKind::Sctp, u),
            Protocol::Tcp => (TransportKind::Tcp, TransportUse::DataOnly),
            Protocol::Udp => (TransportKind::Udp, TransportUse::DataOnly),
            Protocol::UdpLite => (TransportKind::UdpLite, TransportUse::DataOnly),
            Protocol::Dccp { .. } => (TransportKind::Dccp, TransportUse::DataOnly),
        },
    }
}

#[derive(Debug)]
pub(crate) struct Pool {
    pub handle: PoolHandle,
    pub policy_type: PolicyType,
    /// The pool's policy parameter: its type with zero values.
    pub policy: Policy,
    /// The user transport of the PE that created the pool.
    pub transport: UserTransport,
    pub kind: TransportKind,
    pub transport_use: TransportUse,
    pub degrades: bool,
    /// The member entries, for the policies that draw from an array (RAND
    /// and the weighted ones; empty otherwise); the entry's `Pos::pool`
    /// indexes this.
    pub members: Vec<u32>,
    /// Number of PEs.
    pub len: usize,
    /// The PE IDs in order, for paging (entries are found through the
    /// handlespace's hash map). Sorting happens when a page reads it, which
    /// takes `&self`: the lock is only ever taken there (changes go through
    /// `get_mut`, which costs nothing), and keeps the handlespace `Sync`.
    pub ids: Mutex<IdOrder>,
    pub selection: Selection,
}

impl Pool {
    /// The PE ID order, for changes.
    #[inline]
    pub fn ids_mut(&mut self) -> &mut IdOrder {
        self.ids.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// The PE ID order, for reading it sorted.
    pub fn ids(&self) -> MutexGuard<'_, IdOrder> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Read-only view of a pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolInfo<'a> {
    pub(crate) pool: &'a Pool,
}

impl<'a> PoolInfo<'a> {
    /// The pool handle.
    pub fn handle(&self) -> &'a PoolHandle {
        &self.pool.handle
    }

    /// The pool's overall policy type (set by its first PE).
    pub fn policy_type(&self) -> PolicyType {
        self.pool.policy_type
    }

    /// The pool's policy parameter (its type with zero values), e.g. for
    /// the overall Policy parameter of a handle resolution response.
    pub fn policy(&self) -> &'a Policy {
        &self.pool.policy
    }

    /// The transport of the PE that created the pool.
    pub fn transport(&self) -> &'a UserTransport {
        &self.pool.transport
    }

    /// The transport protocol every PE of the pool uses.
    pub fn transport_kind(&self) -> TransportKind {
        self.pool.kind
    }

    /// Whether the pool's PEs carry the ASAP control channel on their data transport.
    pub fn transport_use(&self) -> TransportUse {
        self.pool.transport_use
    }

    /// The number of PEs.
    pub fn len(&self) -> usize {
        self.pool.len
    }

    /// Whether the pool is empty (never true for a pool the handlespace holds).
    pub fn is_empty(&self) -> bool {
        self.pool.len == 0
    }
}

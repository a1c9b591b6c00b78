//! The three RSerPool roles as one machine type, so one world can host
//! registrars, pool elements and pool users side by side.

use bytes::Bytes;
use rserpool_core::registrar::{Registrar, RegistrarEvent};
use rserpool_core::{
    AssocId, AssociationEvent, Instant, Machine, PoolElement, PoolElementEvent, PoolUser,
    PoolUserEvent, Transmit,
};
use rserpool_wire::{PeId, PoolHandle};
use std::net::SocketAddr;
use std::time::Duration;

/// A node's machine: one of the three roles.
pub enum Role {
    /// A pool registrar.
    Registrar(Box<Registrar>),
    /// A pool element.
    PoolElement(Box<PoolElement>),
    /// A pool user with its application.
    PoolUser(Box<UserApp>),
}

/// What a role reports, tagged with the role.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleEvent {
    /// From a registrar.
    Registrar(RegistrarEvent),
    /// From a pool element.
    PoolElement(PoolElementEvent),
    /// From a pool user.
    PoolUser(PoolUserEvent),
    /// A pool user's application picked a PE after a resolution (`None`: the
    /// cache had none to offer).
    Selected {
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE chosen.
        pe_id: Option<PeId>,
    },
}

impl Role {
    /// The registrar, if this is one.
    pub fn registrar(&self) -> Option<&Registrar> {
        match self {
            Self::Registrar(r) => Some(r),
            _ => None,
        }
    }

    /// The pool element, if this is one.
    pub fn pool_element(&self) -> Option<&PoolElement> {
        match self {
            Self::PoolElement(p) => Some(p),
            _ => None,
        }
    }

    /// The pool user's application, if this is one.
    pub fn pool_user(&self) -> Option<&UserApp> {
        match self {
            Self::PoolUser(p) => Some(p),
            _ => None,
        }
    }

    /// The registrar, mutably (use through [`crate::World::act`]).
    pub fn registrar_mut(&mut self) -> Option<&mut Registrar> {
        match self {
            Self::Registrar(r) => Some(r),
            _ => None,
        }
    }

    /// The pool element, mutably (use through [`crate::World::act`]).
    pub fn pool_element_mut(&mut self) -> Option<&mut PoolElement> {
        match self {
            Self::PoolElement(p) => Some(p),
            _ => None,
        }
    }

    /// The pool user's application, mutably (use through [`crate::World::act`]).
    pub fn pool_user_mut(&mut self) -> Option<&mut UserApp> {
        match self {
            Self::PoolUser(p) => Some(p),
            _ => None,
        }
    }
}

/// Calls the same method on whichever role this is.
macro_rules! each_role {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Role::Registrar($m) => $body,
            Role::PoolElement($m) => $body,
            Role::PoolUser($m) => $body,
        }
    };
}

impl Machine for Role {
    type Event = RoleEvent;

    fn handle_data(&mut self, now: Instant, assoc: AssocId, ppid: u32, data: Bytes) {
        each_role!(self, m => m.handle_data(now, assoc, ppid, data))
    }

    fn handle_association(&mut self, now: Instant, event: AssociationEvent) {
        each_role!(self, m => m.handle_association(now, event))
    }

    fn handle_announce(&mut self, now: Instant, from: SocketAddr, ppid: u32, data: Bytes) {
        each_role!(self, m => m.handle_announce(now, from, ppid, data))
    }

    fn handle_timeout(&mut self, now: Instant) {
        each_role!(self, m => m.handle_timeout(now))
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        each_role!(self, m => m.poll_transmit())
    }

    fn poll_event(&mut self) -> Option<RoleEvent> {
        match self {
            Self::Registrar(m) => m.poll_event().map(RoleEvent::Registrar),
            Self::PoolElement(m) => m.poll_event().map(RoleEvent::PoolElement),
            Self::PoolUser(m) => m.poll_event(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        each_role!(self, m => m.poll_timeout())
    }
}

/// A pool user's application: resolves one pool periodically and picks a
/// PE from each answer, as a client looking for a server would.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The pool to resolve.
    pub pool_handle: PoolHandle,
    /// Time between resolutions.
    pub interval: Duration,
    /// Delay of the first resolution after the start.
    pub first: Duration,
}

/// A [`PoolUser`] with an optional [`Workload`] driving it.
pub struct UserApp {
    pu: PoolUser,
    workload: Option<Workload>,
    next: Option<Instant>,
    /// A `Selected` waiting behind the `Resolved` it follows.
    selected: Option<RoleEvent>,
}

impl UserApp {
    /// The pool user `pu`, resolving per `workload` from `now` on.
    pub fn new(pu: PoolUser, workload: Option<Workload>, now: Instant) -> Self {
        let next = workload.as_ref().map(|w| now + w.first);
        Self {
            pu,
            workload,
            next,
            selected: None,
        }
    }

    /// The pool user.
    pub fn pool_user(&self) -> &PoolUser {
        &self.pu
    }

    /// The pool user, mutably (to resolve or report on demand).
    pub fn pool_user_mut(&mut self) -> &mut PoolUser {
        &mut self.pu
    }
}

impl Machine for UserApp {
    type Event = RoleEvent;

    fn handle_data(&mut self, now: Instant, assoc: AssocId, ppid: u32, data: Bytes) {
        self.pu.handle_data(now, assoc, ppid, data);
    }

    fn handle_association(&mut self, now: Instant, event: AssociationEvent) {
        self.pu.handle_association(now, event);
    }

    fn handle_announce(&mut self, now: Instant, from: SocketAddr, ppid: u32, data: Bytes) {
        self.pu.handle_announce(now, from, ppid, data);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let (Some(at), Some(w)) = (self.next, &self.workload)
            && at <= now
        {
            self.pu.resolve(now, w.pool_handle.clone());
            self.next = Some(now + w.interval);
        }
        if self.pu.poll_timeout().is_some_and(|at| at <= now) {
            self.pu.handle_timeout(now);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.pu.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<RoleEvent> {
        if let Some(e) = self.selected.take() {
            return Some(e);
        }
        let e = self.pu.poll_event()?;
        if let PoolUserEvent::Resolved { pool_handle, .. } = &e {
            let pe_id = self.pu.select(pool_handle).map(|pe| pe.id);
            self.selected = Some(RoleEvent::Selected {
                pool_handle: pool_handle.clone(),
                pe_id,
            });
        }
        Some(RoleEvent::PoolUser(e))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.pu.poll_timeout(), self.next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

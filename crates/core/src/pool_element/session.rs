//! The pool element's side of sessions (RFC 5352 §3.8-§3.9): every
//! association a pool user opens to the PE's user transport is a session.
//!
//! An association becomes a session with the first thing only a pool user
//! sends: application data (any PPID but ASAP's and ENRP's), an
//! ASAP_COOKIE_ECHO or an ASAP_BUSINESS_CARD. Registrars open associations
//! to a PE too (a takeover's ENDPOINT_KEEP_ALIVE), so an association that
//! merely comes up is not yet a session. When a session starts the PE sends
//! its business card (RFC 5352 §3.9), then the application hears of it.

use super::{PoolElement, PoolElementEvent};
use crate::io::{AssocId, Destination, DownReason, Transmit};
use crate::session::{SendError, SessionId, check_ppid};
use bytes::Bytes;
use rserpool_wire::{self as wire, AsapMessage, PoolHandle};

impl PoolElement {
    /// Sends application data on a session.
    pub fn send_data(
        &mut self,
        session: SessionId,
        ppid: u32,
        data: Bytes,
        unordered: bool,
    ) -> Result<(), SendError> {
        check_ppid(ppid)?;
        let assoc = self.session_assoc(session)?;
        self.stats.session_messages_sent += 1;
        self.outbox.send(Transmit::Data {
            to: Destination::Association(assoc),
            ppid,
            unordered,
            data,
        });
        Ok(())
    }

    /// Hands the pool user a cookie (ASAP_COOKIE, RFC 5352 §3.8): the state
    /// another PE needs to continue the session should this one fail. The
    /// PU keeps only the newest and presents it, unchanged, to the PE it
    /// fails over to. Cookies are opaque to ASAP; sign them so that the
    /// next PE can trust them.
    pub fn send_cookie(&mut self, session: SessionId, cookie: Bytes) -> Result<(), SendError> {
        let assoc = self.session_assoc(session)?;
        self.stats.cookies_sent += 1;
        self.send(
            Destination::Association(assoc),
            AsapMessage::Cookie { cookie },
        );
        Ok(())
    }

    /// Ends a session gracefully (SHUTDOWN: what was sent is delivered
    /// first). [`PoolElementEvent::SessionClosed`] follows.
    pub fn close_session(&mut self, session: SessionId) -> Result<(), SendError> {
        let assoc = self.session_assoc(session)?;
        self.sessions.remove(&assoc);
        self.close(assoc, false);
        self.outbox.event(PoolElementEvent::SessionClosed {
            session,
            reason: None,
        });
        Ok(())
    }

    /// The sessions currently open.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.iter().map(|a| SessionId(a.0))
    }

    fn session_assoc(&self, session: SessionId) -> Result<AssocId, SendError> {
        let assoc = AssocId(session.0);
        if self.sessions.contains(&assoc) && self.assocs.contains_key(&assoc) {
            Ok(assoc)
        } else {
            Err(SendError::UnknownSession)
        }
    }

    /// Whether `assoc` is (or could become) a session: not the home
    /// registrar's association and not the one of a registration attempt.
    fn may_be_session(&self, assoc: AssocId) -> bool {
        self.home() != Some(assoc)
            && self.attempt.as_ref().and_then(|a| a.assoc) != Some(assoc)
            && !matches!(self.phase, super::Phase::Deregistering(a) if a == assoc)
            && self.assocs.contains_key(&assoc)
    }

    /// Makes `assoc` a session if it is not one yet; false if it cannot be one.
    fn open_session(&mut self, assoc: AssocId) -> bool {
        if self.sessions.contains(&assoc) {
            return true;
        }
        if !self.may_be_session(assoc) || self.phase == super::Phase::Closed {
            return false;
        }
        self.sessions.insert(assoc);
        self.stats.sessions_opened += 1;
        if self.config.business_card {
            // RFC 5352 §2.2.12: the pool handle and the PEs; the policy
            // travels inside each PE's parameter (rsplib's parser flags a
            // separate Policy parameter as unrecognized).
            let card = AsapMessage::BusinessCard {
                pool_handle: self.config.pool_handle.clone(),
                policy: None,
                pool_elements: vec![self.own_parameter()],
            };
            self.send(Destination::Association(assoc), card);
        }
        let peer = self.assocs.get(&assoc).cloned().unwrap_or_default();
        self.outbox.event(PoolElementEvent::SessionOpened {
            session: SessionId(assoc.0),
            peer,
        });
        true
    }

    /// Application data arrived (a PPID other than ASAP's and ENRP's).
    /// Returns false if `assoc` cannot carry a session (a registrar's).
    pub(super) fn on_session_data(&mut self, assoc: AssocId, ppid: u32, data: Bytes) -> bool {
        if !self.open_session(assoc) {
            return false;
        }
        self.stats.session_messages_received += 1;
        self.outbox.event(PoolElementEvent::SessionData {
            session: SessionId(assoc.0),
            ppid,
            data,
        });
        true
    }

    /// ASAP_COOKIE_ECHO: a pool user failed over to this PE.
    pub(super) fn on_cookie_echo(&mut self, assoc: AssocId, cookie: Bytes) -> bool {
        if !self.open_session(assoc) {
            return false;
        }
        self.stats.cookie_echoes_received += 1;
        self.outbox.event(PoolElementEvent::CookieEcho {
            session: SessionId(assoc.0),
            cookie,
        });
        true
    }

    /// ASAP_BUSINESS_CARD from a pool user that is itself a PE (RFC 5352 §3.9).
    pub(super) fn on_business_card(
        &mut self,
        assoc: AssocId,
        pool_handle: PoolHandle,
        pool_elements: Vec<wire::PoolElement>,
    ) -> bool {
        if !self.open_session(assoc) {
            return false;
        }
        self.outbox.event(PoolElementEvent::BusinessCard {
            session: SessionId(assoc.0),
            pool_handle,
            pool_elements,
        });
        true
    }

    /// A session's association went down.
    pub(super) fn on_session_down(&mut self, assoc: AssocId, reason: DownReason) {
        if self.sessions.remove(&assoc) {
            self.outbox.event(PoolElementEvent::SessionClosed {
                session: SessionId(assoc.0),
                reason: Some(reason),
            });
        }
    }
}

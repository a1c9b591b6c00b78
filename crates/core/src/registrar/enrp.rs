//! The registrar's ENRP side (RFC 5353): peers and their liveness, handle
//! updates (with the Takeover Suggestion), handlespace download and audit,
//! and the takeover of failed peers.

use super::balance::DeclineReason;
use super::config::TakeoverArbitration;
use super::peers::PeerStatus;
use super::{PeKey, Phase, Registrar, RegistrarEvent, RemovalReason, Sync, Takeover, Timer};
use crate::io::{AssocId, Destination, Transmit};
use crate::time::Instant;
use rserpool_handlespace::{EntryId, TimerKind};
use rserpool_wire::{
    EnrpMessage, PeId, PoolElement, PoolEntry, PoolHandle, PrId, Servers, UpdateAction,
};
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Initial download attempts before a registrar starts without a mentor.
const MAX_DOWNLOAD_ATTEMPTS: u32 = 3;

/// Wait before asking again a mentor that refused because it is starting
/// itself (it starts alone at once if its ID is the lower).
const DOWNLOAD_RETRY_WHEN_STARTING: Duration = Duration::from_millis(500);

impl Registrar {
    fn servers(&self, to: Option<PrId>) -> Servers {
        Servers {
            sender: self.id,
            receiver: to,
        }
    }

    fn to_peer(&self, id: PrId) -> Option<Destination> {
        let p = self.peers.get(id)?;
        match p.assoc {
            Some(a) if self.associations.contains_key(&a) => Some(Destination::Association(a)),
            _ if !p.addresses.is_empty() => Some(Destination::Addresses(p.addresses.clone())),
            _ => None,
        }
    }

    fn send_enrp(&mut self, to: Destination, m: EnrpMessage) {
        self.send(Transmit::enrp(to, m));
    }

    fn send_to_peer(&mut self, id: PrId, m: EnrpMessage) {
        if let Some(to) = self.to_peer(id) {
            self.send_enrp(to, m);
        }
    }

    /// Group-cast: one copy to every peer not declared dead (RFC 5353 §3.1).
    fn send_to_all(&mut self, make: impl Fn(Option<PrId>) -> EnrpMessage) {
        let ids: Vec<PrId> = self.peers.active().map(|p| p.id).collect();
        for id in ids {
            self.send_to_peer(id, make(None));
        }
    }

    pub(super) fn send_presence(&mut self, to: Destination, receiver: Option<PrId>, reply: bool) {
        let m = EnrpMessage::Presence {
            servers: self.servers(receiver),
            reply_required: reply,
            checksum: Some(self.space.checksum(self.id)),
            server_info: self.server_information(),
        };
        self.send_enrp(to, m);
    }

    /// A PRESENCE for whoever listens on the announce channel: registrars
    /// that admit us answer point to point (`handle_announced_presence`).
    pub(super) fn announce_presence(&mut self) {
        let m = EnrpMessage::Presence {
            servers: self.servers(None),
            reply_required: false,
            checksum: Some(self.space.checksum(self.id)),
            server_info: self.server_information(),
        };
        self.out.send(Transmit::Announce {
            message: rserpool_wire::Message::Enrp(m),
        });
    }

    pub(super) fn heartbeat(&mut self, _now: Instant) {
        let ids: Vec<PrId> = self.peers.active().map(|p| p.id).collect();
        for id in ids {
            if let Some(to) = self.to_peer(id) {
                self.send_presence(to, Some(id), false);
            }
        }
    }

    /// Sends a PRESENCE (reply required) to every configured peer that no
    /// live peer in the table answers for.
    pub(super) fn rediscover(&mut self) {
        let missing: Vec<Vec<SocketAddr>> = self
            .cfg
            .peers
            .iter()
            .filter(|addrs| {
                !self
                    .peers
                    .active()
                    .any(|p| p.addresses.iter().any(|a| addrs.contains(a)))
            })
            .cloned()
            .collect();
        for addrs in missing {
            self.send_presence(Destination::Addresses(addrs), None, true);
        }
    }

    /// RFC 5355 §3: ENRP only from registrars of the scope, each association
    /// speaking for one registrar, and no more registrars than the peer
    /// table holds.
    pub(super) fn admit_enrp(&mut self, now: Instant, assoc: AssocId, sender: PrId) -> bool {
        let Some(a) = self.associations.get(&assoc) else {
            return false;
        };
        if a.registrar == Some(sender) && self.peers.get(sender).is_some() {
            // Admitted on this association before: the check is per
            // association, not per message (updates arrive by the thousand).
            return true;
        }
        let refusal = if !self.admission.admits(&a.peer.to_vec()) {
            Some(super::Refusal::EnrpStranger)
        } else if a.registrar.is_some_and(|r| r != sender) {
            Some(super::Refusal::EnrpImpersonation)
        } else if self.peers.get(sender).is_none()
            && sender != self.id
            && self.peers.iter().count() >= self.cfg.max_peers
        {
            Some(super::Refusal::PeerTableFull)
        } else {
            None
        };
        match refusal {
            Some(r) => {
                self.refuse(now, assoc, r);
                false
            }
            None => {
                if let Some(a) = self.associations.get_mut(&assoc) {
                    a.registrar = Some(sender);
                }
                true
            }
        }
    }

    /// Everything from a peer proves it alive (RFC 5353 §3.4.2); an unknown
    /// peer is added and asked for its presence (§3.4.1).
    fn peer_heard(&mut self, now: Instant, id: PrId, assoc: Option<AssocId>) {
        let fallback: Vec<SocketAddr> = assoc
            .and_then(|a| self.associations.get(&a))
            .map(|a| a.peer.to_vec())
            .unwrap_or_default();
        let was_dead = self
            .peers
            .get(id)
            .is_some_and(|p| p.status == PeerStatus::Dead);
        let new = self.peers.heard(now, id, assoc, &fallback, self.damping());
        self.timers.cancel(&Timer::PeerNoResponse(id));
        self.timers
            .set(Timer::PeerSilent(id), now + self.cfg.max_time_last_heard);
        if new || was_dead {
            self.out.event(RegistrarEvent::PeerUp(id));
        }
        if new {
            if let Some(to) = self.to_peer(id) {
                self.send_presence(to, Some(id), true);
            }
        }
        if self.takeovers.remove(&id).is_some() {
            // RFC 5353 §3.5.1: the target is alive after all.
            self.timers.cancel(&Timer::TakeoverExpiry(id));
            self.out.event(RegistrarEvent::TakeoverAbandoned(id));
        }
    }

    pub(super) fn handle_announced_presence(
        &mut self,
        now: Instant,
        from: SocketAddr,
        m: EnrpMessage,
    ) {
        let sender = m.servers().sender;
        if sender == self.id || self.peers.get(sender).is_some() {
            return;
        }
        if !self.admission.admits(&[from]) {
            self.stats.refused.count(super::Refusal::EnrpStranger);
            return;
        }
        if self.peers.iter().count() >= self.cfg.max_peers {
            self.stats.refused.count(super::Refusal::PeerTableFull);
            return;
        }
        // An unknown registrar announced itself: talk to it point to point.
        let addrs = match &m {
            EnrpMessage::Presence {
                server_info: Some(info),
                ..
            } => super::asap::socket_addrs(&info.transport),
            _ => vec![from],
        };
        self.peers.heard(now, sender, None, &addrs, self.damping());
        if let EnrpMessage::Presence {
            server_info: Some(info),
            ..
        } = &m
        {
            self.peers.learn(info);
        }
        self.timers.set(
            Timer::PeerSilent(sender),
            now + self.cfg.max_time_last_heard,
        );
        self.out.event(RegistrarEvent::PeerUp(sender));
        if let Some(to) = self.to_peer(sender) {
            self.send_presence(to, Some(sender), true);
        }
    }

    pub(super) fn handle_enrp(&mut self, now: Instant, assoc: Option<AssocId>, m: EnrpMessage) {
        let sender = m.servers().sender;
        if sender == self.id {
            // Our own group-cast echoed back (or a peer with our ID): ignore.
            return;
        }
        if self.peers.get(sender).is_none()
            && let Some(a) = assoc
            && matches!(
                m,
                EnrpMessage::ListRequest { .. } | EnrpMessage::HandleTableRequest { .. }
            )
        {
            // A reader (hsdump, a monitor) from an admitted address: it gets
            // its answers on its association but never becomes a peer, so it
            // is not balanced against, replicated to, or taken over.
            return self.answer_reader(now, a, sender, m);
        }
        self.peer_heard(now, sender, assoc);
        match m {
            EnrpMessage::Presence {
                reply_required,
                checksum,
                server_info,
                ..
            } => {
                if let Some(info) = &server_info {
                    self.peers.learn(info);
                }
                if reply_required {
                    if let Some(to) = self.to_peer(sender) {
                        self.send_presence(to, Some(sender), false);
                    }
                }
                if self.phase == Phase::Discovering {
                    self.start_download(now, sender);
                }
                if let Some(c) = checksum {
                    if let Some(p) = self.peers.get_mut(sender) {
                        p.announced_checksum = Some(c);
                    }
                    self.audit(now, sender, c);
                }
            }
            EnrpMessage::ListRequest { .. } => {
                let m = self.list_response(sender);
                self.send_to_peer(sender, m);
            }
            EnrpMessage::ListResponse {
                rejected, peers, ..
            } => {
                if rejected {
                    return;
                }
                for info in peers {
                    if info.server_id == self.id || self.peers.get(info.server_id).is_some() {
                        continue;
                    }
                    if self.peers.iter().count() >= self.cfg.max_peers {
                        self.stats.refused.count(super::Refusal::PeerTableFull);
                        break;
                    }
                    let addrs = super::asap::socket_addrs(&info.transport);
                    // An admitted peer vouches for the registrars it lists.
                    self.admission.introduce(&addrs);
                    self.peers
                        .heard(now, info.server_id, None, &addrs, self.damping());
                    self.timers.set(
                        Timer::PeerSilent(info.server_id),
                        now + self.cfg.max_time_last_heard,
                    );
                    self.out.event(RegistrarEvent::PeerUp(info.server_id));
                    self.send_presence(Destination::Addresses(addrs), Some(info.server_id), true);
                }
            }
            EnrpMessage::HandleTableRequest {
                own_children_only, ..
            } => self.table_request(now, sender, own_children_only),
            EnrpMessage::HandleTableResponse {
                rejected,
                more_to_send,
                pools,
                ..
            } => self.table_response(now, sender, rejected, more_to_send, pools),
            EnrpMessage::HandleUpdate {
                takeover_suggested,
                action,
                pool_handle,
                pool_element,
                ..
            } => self.handle_update(
                now,
                sender,
                takeover_suggested,
                action,
                pool_handle,
                pool_element,
            ),
            EnrpMessage::InitTakeover { target, .. } => {
                self.init_takeover(now, assoc, sender, target)
            }
            EnrpMessage::InitTakeoverAck { target, .. } => {
                let won = match self.takeovers.get_mut(&target) {
                    Some(t) => {
                        t.awaiting.remove(&sender);
                        t.awaiting.is_empty()
                    }
                    None => false,
                };
                if won {
                    self.complete_takeover(now, target);
                }
            }
            EnrpMessage::TakeoverServer { target, .. } => {
                if target == self.id || self.heard_recently(now, target) {
                    if let Some(a) = assoc {
                        self.refuse(now, a, super::Refusal::TakeoverOfLive);
                    }
                    if target == self.id {
                        self.announce_alive();
                    }
                    return;
                }
                if self.takeovers.remove(&target).is_some() {
                    self.timers.cancel(&Timer::TakeoverExpiry(target));
                    self.out.event(RegistrarEvent::TakeoverAbandoned(target));
                }
                for entry in self.space.owned_entries(target) {
                    self.space.set_entry_owner(entry, Some(sender));
                }
                self.drop_peer(target);
            }
            EnrpMessage::Error { causes, .. } => {
                tracing::debug!(registrar = %self.id, %sender, ?causes, "ENRP_ERROR received");
            }
        }
    }

    // ----- start-up: mentor and download (RFC 5353 §3.2) -----

    fn start_download(&mut self, now: Instant, mentor: PrId) {
        let attempts = match self.phase {
            Phase::Downloading { attempts, .. } => attempts + 1,
            _ => 1,
        };
        if attempts > MAX_DOWNLOAD_ATTEMPTS {
            // Registrars that start together reject each other's downloads
            // while starting; one of them must begin alone, and the audit
            // reconciles their handlespaces afterwards.
            tracing::info!(registrar = %self.id, "no mentor could serve a download: starting alone");
            return self.become_ready(now);
        }
        self.phase = Phase::Downloading { mentor, attempts };
        self.timers.cancel(&Timer::MentorDiscovery);
        self.send_to_peer(
            mentor,
            EnrpMessage::ListRequest {
                servers: self.servers(Some(mentor)),
            },
        );
        self.request_table(now, mentor, false);
    }

    fn request_table(&mut self, now: Instant, peer: PrId, own_children_only: bool) {
        self.syncs
            .entry(peer)
            .or_insert_with(|| Sync {
                own_children_only,
                unconfirmed: HashSet::new(),
                asked: now,
            })
            .asked = now;
        self.send_to_peer(
            peer,
            EnrpMessage::HandleTableRequest {
                servers: self.servers(Some(peer)),
                own_children_only,
            },
        );
        if !own_children_only {
            self.timers
                .set(Timer::DownloadRetry, now + self.cfg.max_time_no_response);
        }
    }

    pub(super) fn retry_download(&mut self, now: Instant) {
        let Phase::Downloading { mentor, .. } = self.phase else {
            return;
        };
        self.syncs.remove(&mentor);
        // Another live peer, if any, becomes the mentor; else start alone.
        let next = self
            .peers
            .active()
            .map(|p| p.id)
            .find(|id| *id != mentor)
            .or_else(|| self.peers.get(mentor).map(|p| p.id));
        match next {
            Some(m)
                if self
                    .peers
                    .get(m)
                    .is_some_and(|p| p.status == PeerStatus::Alive) =>
            {
                self.start_download(now, m)
            }
            _ => self.become_ready(now),
        }
    }

    /// The peers this registrar knows, for `to` (rejected until ready).
    fn list_response(&self, to: PrId) -> EnrpMessage {
        let ready = self.phase == Phase::Ready;
        let peers = if ready {
            self.peers
                .ids()
                .into_iter()
                .filter(|id| *id != to)
                .filter_map(|id| {
                    let p = self.peers.get(id)?;
                    (p.status != PeerStatus::Dead).then_some(p.clone())
                })
                .filter_map(|p| peer_information(&p))
                .collect()
        } else {
            Vec::new()
        };
        EnrpMessage::ListResponse {
            servers: self.servers(Some(to)),
            rejected: !ready,
            peers,
        }
    }

    /// Answers a reader's LIST_REQUEST or HANDLE_TABLE_REQUEST on its
    /// association.
    fn answer_reader(&mut self, now: Instant, assoc: AssocId, reader: PrId, m: EnrpMessage) {
        let to = Destination::Association(assoc);
        match m {
            EnrpMessage::ListRequest { .. } => {
                let m = self.list_response(reader);
                self.send_enrp(to, m);
            }
            EnrpMessage::HandleTableRequest {
                own_children_only, ..
            } => self.table_request_to(now, reader, own_children_only, to),
            _ => {}
        }
    }

    fn table_request(&mut self, now: Instant, peer: PrId, own_children_only: bool) {
        if let Some(to) = self.to_peer(peer) {
            self.table_request_to(now, peer, own_children_only, to);
        }
    }

    fn table_request_to(
        &mut self,
        now: Instant,
        peer: PrId,
        own_children_only: bool,
        to: Destination,
    ) {
        if self.phase != Phase::Ready {
            let m = EnrpMessage::HandleTableResponse {
                servers: self.servers(Some(peer)),
                rejected: true,
                more_to_send: false,
                pools: Vec::new(),
            };
            return self.send_enrp(to, m);
        }
        let after = match self.table_sessions.get(&peer) {
            Some((w, cursor)) if *w == own_children_only => cursor.clone(),
            _ => None,
        };
        let owner = own_children_only.then_some(self.id);
        let (pools, last, more) = self.space.page(
            after.as_ref(),
            owner,
            self.cfg.max_elements_per_table_response,
        );
        if more {
            self.table_sessions.insert(peer, (own_children_only, last));
            self.timers.set(
                Timer::TableSession(peer),
                now + self.cfg.max_time_no_response * 2,
            );
        } else {
            self.table_sessions.remove(&peer);
            self.timers.cancel(&Timer::TableSession(peer));
        }
        let m = EnrpMessage::HandleTableResponse {
            servers: self.servers(Some(peer)),
            rejected: false,
            more_to_send: more,
            pools,
        };
        self.send_enrp(to, m);
    }

    fn table_response(
        &mut self,
        now: Instant,
        peer: PrId,
        rejected: bool,
        more: bool,
        pools: Vec<PoolEntry>,
    ) {
        let Some(own_children_only) = self.syncs.get(&peer).map(|s| s.own_children_only) else {
            return;
        };
        if rejected {
            // Busy or starting: the retry timer (download) or the next
            // presence's audit (resynchronisation) tries again.
            if own_children_only {
                self.syncs.remove(&peer);
            } else if matches!(self.phase, Phase::Downloading { mentor, .. } if mentor == peer) {
                if self.id < peer {
                    // Registrars started together refuse each other's
                    // downloads; the lowest ID starts alone at once and
                    // serves the others, and the audit reconciles anything
                    // it missed.
                    tracing::info!(registrar = %self.id, mentor = %peer, "mentor is starting too: starting alone");
                    self.become_ready(now);
                } else {
                    self.timers
                        .set(Timer::DownloadRetry, now + DOWNLOAD_RETRY_WHEN_STARTING);
                }
            }
            return;
        }
        for entry in pools {
            for pe in entry.pool_elements {
                if pe.home_registrar == Some(self.id) {
                    // Our own PEs are authoritative here (RFC 5353 §3.3.1 note).
                    continue;
                }
                let key = (entry.pool_handle.clone(), pe.id);
                if let Some(s) = self.syncs.get_mut(&peer) {
                    s.unconfirmed.remove(&key);
                }
                let recorded = self
                    .space
                    .find(&entry.pool_handle, pe.id)
                    .and_then(|e| self.space.home_of(e));
                match recorded {
                    // A page is a snapshot that may predate the PE's move to
                    // the home we recorded (whose HANDLE_UPDATE came first
                    // hand): arrival order must not decide. We own it: our
                    // own word stands. Another peer: ask it.
                    Some(h) if h == self.id => continue,
                    Some(h) if Some(h) != pe.home_registrar => {
                        self.contest(now, h, key, pe);
                        continue;
                    }
                    _ => {}
                }
                self.import(now, &entry.pool_handle, pe);
            }
        }
        if more {
            self.request_table(now, peer, own_children_only);
            return;
        }
        let Some(sync) = self.syncs.remove(&peer) else {
            return;
        };
        // Claims against this peer's ownership are settled: where it still
        // owns the PE, it wins; where it no longer does, the claim is the
        // best word there is.
        let claims: Vec<PeKey> = self
            .contested
            .iter()
            .filter(|(_, (incumbent, _))| *incumbent == peer)
            .map(|(k, _)| k.clone())
            .collect();
        let mut claimed = HashSet::new();
        for key in claims {
            if let Some((_, claim)) = self.contested.remove(&key) {
                if sync.unconfirmed.contains(&key) {
                    claimed.insert(key.clone());
                    self.import(now, &key.0, claim);
                }
            }
        }
        let mut orphans = 0;
        for (pool, pe) in sync.unconfirmed {
            if claimed.contains(&(pool.clone(), pe)) {
                continue;
            }
            if let Some(entry) = self.space.find(&pool, pe) {
                if self.space.home_of(entry) == Some(peer) {
                    self.orphan(now, entry);
                    orphans += 1;
                }
            }
        }
        if orphans > 0 {
            // Where did they go? A PE that moved while we were not listening
            // (a restart, a partition) is owned by another peer now; a PE
            // that left is owned by nobody. Ask the others; what nobody
            // claims expires.
            let others: Vec<PrId> = self
                .peers
                .active()
                .map(|p| p.id)
                .filter(|id| *id != peer)
                .collect();
            for id in others {
                self.ask_home(now, id);
            }
        }
        if matches!(self.phase, Phase::Downloading { mentor, .. } if mentor == peer)
            && !own_children_only
        {
            self.timers.cancel(&Timer::DownloadRetry);
            self.become_ready(now);
        }
    }

    /// A PE its recorded home no longer claims: owned by nobody until a
    /// peer's table or update names its home, and removed if none does
    /// within twice MAX-TIME-NO-RESPONSE (RFC 5353 §3.6 removes it at once,
    /// which loses PEs that moved while this registrar was not listening).
    pub(super) fn orphan(&mut self, now: Instant, entry: EntryId) {
        self.space.set_entry_owner(entry, None);
        let grace = now + self.cfg.max_time_no_response * 2;
        let sooner = self
            .space
            .deadline(entry, TimerKind::Lifetime)
            .is_some_and(|d| d < grace.as_micros());
        if !sooner {
            self.space
                .set_deadline(entry, TimerKind::Lifetime, Some(grace));
        }
    }

    /// Whether `id` is a peer that is alive and reachable now.
    pub(super) fn peer_reachable(&self, id: PrId) -> bool {
        self.peers.get(id).is_some_and(|p| {
            p.status == PeerStatus::Alive
                && p.assoc.is_some_and(|a| self.associations.contains_key(&a))
        })
    }

    /// Resynchronises with `home`, at most once per MAX-TIME-NO-RESPONSE.
    pub(super) fn ask_home(&mut self, now: Instant, home: PrId) {
        let recent = self
            .contest_resyncs
            .get(&home)
            .is_some_and(|t| now.saturating_since(*t) < self.cfg.max_time_no_response);
        if !recent {
            if self.contest_resyncs.len() >= 1024 {
                self.contest_resyncs.clear();
            }
            self.contest_resyncs.insert(home, now);
            self.resync(now, home);
        }
    }

    /// A second-hand claim that `key` is homed elsewhere than at `recorded`:
    /// held, and `recorded` is asked for the PEs it owns.
    fn contest(&mut self, now: Instant, recorded: PrId, key: PeKey, claim: PoolElement) {
        if self.contested.len() >= super::MAX_CONTESTED && !self.contested.contains_key(&key) {
            return;
        }
        self.contested.insert(key, (recorded, claim));
        // Two registrars that both claim a PE would otherwise send us back
        // and forth between them: the held claim waits for the next answer.
        self.ask_home(now, recorded);
    }

    /// RFC 5353 §3.6: a peer's announced checksum disagrees with ours for its
    /// PEs: mark them, download what it owns, drop what it did not confirm.
    fn audit(&mut self, now: Instant, peer: PrId, announced: u16) {
        if self.space.checksum(peer) == announced {
            return;
        }
        self.resync(now, peer);
    }

    /// Downloads what `peer` owns (unless a download from it is running).
    fn resync(&mut self, now: Instant, peer: PrId) {
        let stalled = self.syncs.get(&peer).is_some_and(|s| {
            s.own_children_only
                && now.saturating_since(s.asked) >= self.cfg.max_time_no_response * 2
        });
        if stalled {
            // Its pages stopped coming (a lost message, a broken association).
            self.syncs.remove(&peer);
        }
        if self.phase != Phase::Ready || self.syncs.contains_key(&peer) {
            return;
        }
        if self
            .peers
            .get(peer)
            .is_none_or(|p| p.status == PeerStatus::Dead)
        {
            return;
        }
        self.out.event(RegistrarEvent::ResyncStarted(peer));
        let unconfirmed: HashSet<PeKey> = self.space.owned_keys(peer).into_iter().collect();
        self.syncs.insert(
            peer,
            Sync {
                own_children_only: true,
                unconfirmed,
                asked: now,
            },
        );
        self.request_table(now, peer, true);
    }

    /// Adds or updates a PE learnt from a peer (update, download).
    fn import(&mut self, now: Instant, pool: &PoolHandle, pe: PoolElement) -> Option<EntryId> {
        let life = pe.registration_life.0;
        let new_home = pe.home_registrar;
        match self.space.register(pool, pe, now) {
            Ok(outcome) => {
                if outcome.previous_owner == Some(self.id) && new_home != Some(self.id) {
                    self.lost_ownership(outcome.entry, new_home);
                }
                if let (Some(from), Some(to)) = (outcome.previous_owner, new_home) {
                    if from != to && from != self.id && to != self.id {
                        if self.recent_moves.len() >= super::MAX_RECENT_MOVES {
                            let horizon = self.cfg.max_time_no_response * 2;
                            self.recent_moves
                                .retain(|_, (_, at)| now.saturating_since(*at) < horizon);
                            if self.recent_moves.len() >= super::MAX_RECENT_MOVES {
                                self.recent_moves.clear();
                            }
                        }
                        self.recent_moves.insert(outcome.entry, (from, now));
                    }
                }
                self.arm_lifetime(now, outcome.entry, life);
                Some(outcome.entry)
            }
            Err(cause) => {
                tracing::debug!(registrar = %self.id, ?cause, "peer's PE rejected by the handlespace");
                None
            }
        }
    }

    /// A PE this registrar owned is now `to`'s: stop monitoring it.
    fn lost_ownership(&mut self, entry: EntryId, to: Option<PrId>) {
        self.space.set_deadline(entry, TimerKind::KeepAlive, None);
        self.space.set_awaiting_ack(entry, false);
        self.space.unbind_association(entry);
        self.balancer.forget(entry);
        self.stats.ownership_lost += 1;
        if let (Some(to), Some((pool, pe))) = (to, self.space.key_of(entry)) {
            self.out
                .event(RegistrarEvent::OwnershipLost { pool, pe, to });
        }
    }

    // ----- handle updates and the Takeover Suggestion -----

    fn handle_update(
        &mut self,
        now: Instant,
        sender: PrId,
        takeover: bool,
        action: UpdateAction,
        pool: PoolHandle,
        pe: PoolElement,
    ) {
        match action {
            UpdateAction::AddPe => {
                if pe.home_registrar == Some(self.id) {
                    // A peer's stale view of a PE we own: ours is authoritative.
                    return;
                }
                let pe_id = pe.id;
                // Only the PE's home as recorded *before* this update (or,
                // for a PE new to us, the sender) may suggest: an ADD_PE that
                // names its sender as home must not make the sender eligible
                // by its own word.
                let recorded = self.space.find(&pool, pe_id);
                let home_before = recorded.and_then(|e| self.space.home_of(e));
                if let (Some(entry), Some(home)) = (recorded, home_before) {
                    if self.overtaken(now, entry, home, pe.home_registrar) {
                        // The home the PE just left claims it again: an
                        // update sent before the move that arrived after
                        // it, or a real move back. The recorded home's
                        // table tells which.
                        self.contest(now, home, (pool, pe_id), pe);
                        return;
                    }
                }
                if let Some(entry) = self.import(now, &pool, pe) {
                    if takeover {
                        self.takeover_suggested(now, sender, home_before, entry, pool, pe_id);
                    }
                }
            }
            UpdateAction::DelPe => {
                // Apply only if the sender's view of the PE's home matches
                // ours: a DEL_PE from a former home that raced with the PE's
                // move must not delete it (the T flag is ignored on DEL_PE).
                if let Some(entry) = self.space.find(&pool, pe.id) {
                    if self.space.home_of(entry) == pe.home_registrar {
                        self.remove_pe(entry, RemovalReason::PeerDeleted);
                    }
                }
            }
        }
    }

    /// Whether a claim that `claimed` owns `entry` comes from the home it
    /// moved away from to `recorded` within the last 2 x
    /// MAX-TIME-NO-RESPONSE, with `recorded` still reachable.
    fn overtaken(
        &self,
        now: Instant,
        entry: EntryId,
        recorded: PrId,
        claimed: Option<PrId>,
    ) -> bool {
        let Some(claimed) = claimed.filter(|c| *c != recorded) else {
            return false;
        };
        self.recent_moves.get(&entry).is_some_and(|(left, at)| {
            *left == claimed
                && now.saturating_since(*at) < self.cfg.max_time_no_response * 2
                && self.peer_reachable(recorded)
        })
    }

    fn takeover_suggested(
        &mut self,
        now: Instant,
        sender: PrId,
        home_before: Option<PrId>,
        entry: EntryId,
        pool: PoolHandle,
        pe: PeId,
    ) {
        self.stats.suggestions_received += 1;
        let decision = if !self.cfg.accept_suggestions {
            Err(DeclineReason::Disabled)
        } else if self.phase != Phase::Ready {
            Err(DeclineReason::NotReady)
        } else {
            match self.space.home_of(entry) {
                Some(h) if h == self.id => Err(DeclineReason::AlreadyHome),
                h if h != Some(sender) || home_before.is_some_and(|b| b != sender) => {
                    Err(DeclineReason::NotHome)
                }
                _ => {
                    let view = self.ownership_view(now);
                    self.balancer.admit(now, entry, &view, self.cfg.max_owned)
                }
            }
        };
        match decision {
            Ok(()) => {
                self.stats.suggestions_accepted += 1;
                self.out.event(RegistrarEvent::SuggestionAccepted {
                    pool,
                    pe,
                    from: sender,
                });
                // Ownership moves when the PE re-registers here (RFC 5352 §3.1
                // rule 4); until then the sender stays its home everywhere.
                self.send_keep_alive(now, entry, true);
            }
            Err(reason) => {
                self.stats.suggestions_declined += 1;
                self.out.event(RegistrarEvent::SuggestionDeclined {
                    pool,
                    pe,
                    from: sender,
                    reason,
                });
            }
        }
    }

    /// RFC 5353 §3.3.1: announce an owned PE to every peer; then the balance
    /// policy may suggest it to one peer with one more copy carrying T.
    pub(super) fn announce_add(&mut self, now: Instant, entry: EntryId) {
        let (Some(pool), Some(e)) = (self.space.handle_of(entry), self.space.entry(entry)) else {
            return;
        };
        let (pool, pe) = (pool.clone(), e.element());
        let pe_id = pe.id;
        let update = |to: Option<PrId>, t: bool| EnrpMessage::HandleUpdate {
            servers: self.servers(to),
            takeover_suggested: t,
            action: UpdateAction::AddPe,
            pool_handle: pool.clone(),
            pool_element: pe.clone(),
        };
        let mut messages = Vec::new();
        for p in self.peers.active() {
            if let Some(to) = self.to_peer(p.id) {
                messages.push(Transmit::enrp(to, update(None, false)));
            }
        }
        // No suggestion before start-up is complete: the ownership view is
        // not yet the scope's.
        let may_suggest = !messages.is_empty() && self.phase == Phase::Ready;
        for t in messages {
            self.send(t);
        }
        if !may_suggest {
            return;
        }
        let view = self.ownership_view(now);
        match self.balancer.suggest(now, entry, pe_id, &view) {
            Ok(target) => {
                self.stats.suggestions_sent += 1;
                let Some(e) = self.space.entry(entry) else {
                    return;
                };
                let suggestion = EnrpMessage::HandleUpdate {
                    servers: self.servers(Some(target)),
                    takeover_suggested: true,
                    action: UpdateAction::AddPe,
                    pool_handle: pool.clone(),
                    pool_element: e.element().clone(),
                };
                self.out.event(RegistrarEvent::SuggestionSent {
                    pool,
                    pe: pe_id,
                    to: target,
                });
                self.send_to_peer(target, suggestion);
            }
            Err(w) => self.stats.withheld(w),
        }
    }

    /// RFC 5353 §3.3.2: announce a removal; the receiver ID is 0.
    pub(super) fn announce_del(&mut self, pool: &PoolHandle, pe: PoolElement) {
        let servers = self.servers(None);
        self.send_to_all(|_| EnrpMessage::HandleUpdate {
            servers,
            takeover_suggested: false,
            action: UpdateAction::DelPe,
            pool_handle: pool.clone(),
            pool_element: pe.clone(),
        });
    }

    // ----- failure detection and takeover (RFC 5353 §3.4.2, §3.5) -----

    pub(super) fn peer_silent(&mut self, now: Instant, id: PrId) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        if p.status != PeerStatus::Alive {
            return;
        }
        p.status = PeerStatus::Probing { since: now };
        let damping = self.damping();
        self.peers.lost(now, id, damping);
        if let Some(to) = self.to_peer(id) {
            self.send_presence(to, Some(id), true);
        }
        self.timers.set(
            Timer::PeerNoResponse(id),
            now + self.cfg.max_time_no_response,
        );
    }

    pub(super) fn peer_no_response(&mut self, now: Instant, id: PrId) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        if !matches!(p.status, PeerStatus::Probing { .. }) {
            return;
        }
        p.status = PeerStatus::Dead;
        let damping = self.damping();
        self.peers.lost(now, id, damping);
        self.out.event(RegistrarEvent::PeerDown(id));
        if self.space.owned_count(id) == 0 {
            self.drop_peer(id);
            return;
        }
        self.start_takeover(now, id);
    }

    fn start_takeover(&mut self, now: Instant, target: PrId) {
        // Every known peer but the target must agree, those believed dead
        // included: a registrar cut off from the rest of the scope sees all
        // its peers die, and must not take their PEs over on its own.
        let awaiting: BTreeSet<PrId> = self
            .peers
            .ids()
            .into_iter()
            .filter(|id| *id != target)
            .collect();
        self.out.event(RegistrarEvent::TakeoverStarted(target));
        let servers = self.servers(None);
        let ids: Vec<PrId> = self.peers.ids();
        for id in ids {
            // Every peer, the target included: it may only seem dead.
            self.send_to_peer(id, EnrpMessage::InitTakeover { servers, target });
        }
        let done = awaiting.is_empty();
        self.takeovers.insert(target, Takeover { awaiting });
        if done {
            // The target was the only peer (RFC 5353 leaves this case open; a
            // two-registrar scope would otherwise never complete a takeover).
            self.complete_takeover(now, target);
        } else {
            self.timers.set(
                Timer::TakeoverExpiry(target),
                now + self.cfg.takeover_expiry,
            );
        }
    }

    /// A false alarm about us: tell every peer we are alive, the ones we
    /// consider dead included (they may be the ones that lost us).
    fn announce_alive(&mut self) {
        for id in self.peers.ids() {
            if let Some(to) = self.to_peer(id) {
                self.send_presence(to, Some(id), false);
            }
        }
    }

    /// Whether `target` was heard from within one (jittered) peer heartbeat
    /// cycle over an association that is still up: it is sending its
    /// PRESENCEs, too alive to be taken over. (A registrar that stopped is
    /// silent for longer before anyone starts a takeover: MAX-TIME-LAST-HEARD
    /// plus MAX-TIME-NO-RESPONSE.)
    fn heard_recently(&self, now: Instant, target: PrId) -> bool {
        self.peers.get(target).is_some_and(|p| {
            p.status == PeerStatus::Alive
                && now.saturating_since(p.last_heard) < self.cfg.peer_heartbeat_cycle.mul_f64(1.5)
                && p.assoc.is_some_and(|a| self.associations.contains_key(&a))
        })
    }

    fn init_takeover(&mut self, now: Instant, assoc: Option<AssocId>, sender: PrId, target: PrId) {
        if target == self.id {
            self.announce_alive();
            // The initiator above all, even if our table has dropped it.
            if let (Some(a), None) = (assoc, self.peers.get(sender)) {
                self.send_presence(Destination::Association(a), Some(sender), false);
            }
            return;
        }
        if self.heard_recently(now, target) {
            // RFC 5353 §3.5.1 has every peer acknowledge; acknowledging the
            // takeover of a registrar we hear from would hand its PEs to the
            // initiator after a partition heals. The initiator abandons the
            // takeover when the target's PRESENCE reaches it.
            if let Some(a) = assoc {
                self.refuse(now, a, super::Refusal::TakeoverOfLive);
            }
            return;
        }
        if self.takeovers.contains_key(&target) {
            let yield_to_sender = match self.cfg.takeover_arbitration {
                TakeoverArbitration::HighestIdWins => self.id < sender,
                TakeoverArbitration::LowestIdWins => sender < self.id,
            };
            if !yield_to_sender {
                return;
            }
            self.takeovers.remove(&target);
            self.timers.cancel(&Timer::TakeoverExpiry(target));
            self.out.event(RegistrarEvent::TakeoverAbandoned(target));
        }
        if let Some(p) = self.peers.get_mut(target) {
            if p.status != PeerStatus::Dead {
                p.status = PeerStatus::Dead;
                self.out.event(RegistrarEvent::PeerDown(target));
            }
            self.timers.cancel(&Timer::PeerSilent(target));
            self.timers.cancel(&Timer::PeerNoResponse(target));
        }
        let servers = self.servers(Some(sender));
        self.send_to_peer(sender, EnrpMessage::InitTakeoverAck { servers, target });
        if self.peers.get(target).is_some() {
            // See takeover_expired: if the initiator never completes.
            self.timers.set(
                Timer::TakeoverExpiry(target),
                now + self.cfg.takeover_expiry * 2,
            );
        }
    }

    fn complete_takeover(&mut self, now: Instant, target: PrId) {
        self.takeovers.remove(&target);
        self.timers.cancel(&Timer::TakeoverExpiry(target));
        let servers = self.servers(None);
        self.send_to_all(|_| EnrpMessage::TakeoverServer { servers, target });
        let pes = self.space.owned_entries(target);
        let n = pes.len();
        for entry in pes {
            self.claim_pe(now, entry, Some(target));
        }
        self.drop_peer(target);
        self.out
            .event(RegistrarEvent::TakeoverCompleted { target, pes: n });
    }

    pub(super) fn takeover_expired(&mut self, now: Instant, target: PrId) {
        if self.takeovers.remove(&target).is_some() {
            self.out.event(RegistrarEvent::TakeoverAbandoned(target));
            self.drop_peer(target);
            return;
        }
        // We acknowledged another registrar's takeover of `target` and no
        // TAKEOVER_SERVER followed: the initiator gave up or is gone. A dead
        // peer must not stay in the table for ever (every later takeover
        // would wait for its acknowledgement): take its PEs over ourselves,
        // or forget it.
        if self
            .peers
            .get(target)
            .is_some_and(|p| p.status == PeerStatus::Dead)
        {
            if self.space.owned_count(target) == 0 {
                self.drop_peer(target);
            } else {
                self.start_takeover(now, target);
            }
        }
    }

    fn drop_peer(&mut self, id: PrId) {
        self.peers.remove(id);
        self.syncs.remove(&id);
        self.contested.retain(|_, (incumbent, _)| *incumbent != id);
        self.contest_resyncs.remove(&id);
        self.table_sessions.remove(&id);
        for t in [
            Timer::PeerSilent(id),
            Timer::PeerNoResponse(id),
            Timer::TakeoverExpiry(id),
            Timer::TableSession(id),
        ] {
            self.timers.cancel(&t);
        }
    }
}

fn peer_information(p: &super::Peer) -> Option<rserpool_wire::ServerInformation> {
    let first = p.addresses.first()?;
    Some(rserpool_wire::ServerInformation {
        server_id: p.id,
        transport: rserpool_wire::TransportAddress::sctp(
            first.port(),
            rserpool_wire::TransportUse::DataOnly,
            p.addresses
                .iter()
                .filter(|a| a.port() == first.port())
                .map(SocketAddr::ip)
                .collect::<rserpool_wire::IpAddrs>(),
        ),
    })
}

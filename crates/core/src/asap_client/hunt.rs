//! The registrars an ASAP client knows, a static list plus those heard in
//! ASAP_SERVER_ANNOUNCE, and the order it tries them in when it hunts for a
//! home registrar (RFC 5352 §3.6, "ENRP server hunt").
//!
//! A round of the hunt tries each known registrar once; when a round is
//! exhausted the caller waits the current T5-Serverhunt before the next round,
//! and T5 doubles up to RETRAN-MAX (SH5), so a client facing dead registrars
//! backs off instead of storming them. Success resets T5 (SH3).

use super::{HuntConfig, same_endpoint};
use crate::time::Instant;
use bytes::Bytes;
use rserpool_wire::{ASAP_PORT, AsapMessage, Decoded, PPID_ASAP, PrId, Protocol, TransportAddress};
use std::net::SocketAddr;
use std::time::Duration;

/// A registrar to try: one SCTP endpoint, possibly multi-homed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Its addresses with the ASAP port.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Its server ID, when an announce told us.
    pub(crate) server_id: Option<PrId>,
}

/// A registrar learned from an announce, valid until `expires` (T7-ENRPoutdate).
#[derive(Debug, Clone)]
struct Announced {
    server_id: PrId,
    addrs: Vec<SocketAddr>,
    expires: Instant,
}

/// Counters of the announce channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceStats {
    /// Datagrams received on the announce channel.
    pub received: u64,
    /// Announces that added a registrar.
    pub learned: u64,
    /// Announces that refreshed a known registrar (restarting its T7).
    pub refreshed: u64,
    /// Datagrams dropped: undecodable, not an ASAP_SERVER_ANNOUNCE, no SCTP
    /// transport, or the table of announced registrars was full.
    pub ignored: u64,
    /// Announced registrars forgotten because their T7 expired.
    pub expired: u64,
}

/// What an announce did to the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A registrar not known before.
    New,
    /// A known registrar, T7 restarted.
    Refreshed,
    /// Nothing usable.
    Ignored,
}

/// The registrar list and the state of the current hunt round.
#[derive(Debug)]
pub(crate) struct RegistrarHunt {
    static_list: Vec<Vec<SocketAddr>>,
    announced: Vec<Announced>,
    tried: Vec<Vec<SocketAddr>>,
    t5_initial: Duration,
    retran_max: Duration,
    t7: Duration,
    max_announced: usize,
    t5: Duration,
    pub(crate) stats: AnnounceStats,
}

impl RegistrarHunt {
    pub(crate) fn new(config: &HuntConfig) -> Self {
        let static_list = config
            .registrars
            .iter()
            .filter(|a| !a.is_empty())
            .cloned()
            .collect();
        Self {
            static_list,
            announced: Vec::new(),
            tried: Vec::new(),
            t5_initial: config.t5_server_hunt,
            retran_max: config.retran_max,
            t7: config.t7_enrp_outdate,
            max_announced: config.max_announced_registrars,
            t5: config.t5_server_hunt,
            stats: AnnounceStats::default(),
        }
    }

    /// Takes in a datagram from the announce channel; only ASAP_SERVER_ANNOUNCE is used.
    pub(crate) fn announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ppid: u32,
        data: &Bytes,
    ) -> Learned {
        self.stats.received += 1;
        if ppid != PPID_ASAP {
            self.stats.ignored += 1;
            tracing::debug!(%from, ppid, "non-ASAP datagram on the announce channel ignored");
            return Learned::Ignored;
        }
        match AsapMessage::decode_bytes(data) {
            Ok(Decoded {
                message:
                    AsapMessage::ServerAnnounce {
                        server_id,
                        transports,
                    },
                ..
            }) => self.learn(now, from, server_id, &transports),
            Ok(d) => {
                self.stats.ignored += 1;
                tracing::debug!(%from, message = %d.message, "unexpected message on the announce channel");
                Learned::Ignored
            }
            Err(error) => {
                self.stats.ignored += 1;
                tracing::debug!(%from, %error, "undecodable announce");
                Learned::Ignored
            }
        }
    }

    /// Takes in an ASAP_SERVER_ANNOUNCE from `from` (RFC 5352 §3.6): no
    /// transports means SCTP at the source address, port 3863; only SCTP
    /// transports are usable by this client.
    pub(crate) fn learn(
        &mut self,
        now: Instant,
        from: SocketAddr,
        server_id: PrId,
        transports: &[TransportAddress],
    ) -> Learned {
        let addrs = announced_addresses(from, transports);
        if addrs.is_empty() {
            self.stats.ignored += 1;
            tracing::debug!(%from, %server_id, "announce without an SCTP transport ignored");
            return Learned::Ignored;
        }
        let expires = now + self.t7;
        if let Some(a) = self.announced.iter_mut().find(|a| a.server_id == server_id) {
            a.addrs = addrs;
            a.expires = expires;
            self.stats.refreshed += 1;
            return Learned::Refreshed;
        }
        if self.announced.len() >= self.max_announced {
            self.stats.ignored += 1;
            tracing::debug!(%from, %server_id, "announced-registrar table full; announce ignored");
            return Learned::Ignored;
        }
        tracing::debug!(%server_id, ?addrs, "registrar learned from announce");
        self.announced.push(Announced {
            server_id,
            addrs,
            expires,
        });
        self.stats.learned += 1;
        Learned::New
    }

    /// Forgets announced registrars whose T7 has expired.
    pub(crate) fn expire(&mut self, now: Instant) {
        let before = self.announced.len();
        self.announced.retain(|a| a.expires > now);
        self.stats.expired += (before - self.announced.len()) as u64;
    }

    /// When the next announced registrar expires.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.announced.iter().map(|a| a.expires).min()
    }

    /// Whether any registrar is known at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.static_list.is_empty() && self.announced.is_empty()
    }

    fn candidates(&self) -> impl Iterator<Item = Candidate> + '_ {
        let statics = self.static_list.iter().map(|addrs| Candidate {
            addrs: addrs.clone(),
            server_id: self.server_id_of(addrs),
        });
        let announced = self.announced.iter().map(|a| Candidate {
            addrs: a.addrs.clone(),
            server_id: Some(a.server_id),
        });
        statics.chain(announced)
    }

    /// The first registrar not yet tried in this round, marked as tried.
    pub(crate) fn next_candidate(&mut self) -> Option<Candidate> {
        let c = self
            .candidates()
            .find(|c| !self.tried.iter().any(|t| same_endpoint(t, &c.addrs)))?;
        self.tried.push(c.addrs.clone());
        Some(c)
    }

    /// Counts `addrs` as tried in this round (say, the home that just failed).
    pub(crate) fn mark_tried(&mut self, addrs: &[SocketAddr]) {
        if !addrs.is_empty() && !self.tried.iter().any(|t| same_endpoint(t, addrs)) {
            self.tried.push(addrs.to_vec());
        }
    }

    /// Starts a new round: every registrar may be tried again.
    pub(crate) fn new_round(&mut self) {
        self.tried.clear();
    }

    /// The current T5-Serverhunt.
    pub(crate) fn t5(&self) -> Duration {
        self.t5
    }

    /// T5 expired (SH5): returns the value that ran out and doubles T5, capped at RETRAN-MAX.
    pub(crate) fn back_off(&mut self) -> Duration {
        let current = self.t5;
        self.t5 = (self.t5 * 2).min(self.retran_max);
        current
    }

    /// A home was found (SH3): T5 back to its initial value, a fresh round next time.
    pub(crate) fn succeeded(&mut self) {
        self.t5 = self.t5_initial;
        self.tried.clear();
    }

    /// The server ID announced for the endpoint at `addrs`, if any.
    pub(crate) fn server_id_of(&self, addrs: &[SocketAddr]) -> Option<PrId> {
        self.announced
            .iter()
            .find(|a| same_endpoint(&a.addrs, addrs))
            .map(|a| a.server_id)
    }
}

/// The SCTP addresses an announce names.
fn announced_addresses(from: SocketAddr, transports: &[TransportAddress]) -> Vec<SocketAddr> {
    if transports.is_empty() {
        return vec![SocketAddr::new(from.ip(), ASAP_PORT)];
    }
    transports
        .iter()
        .filter(|t| matches!(t.protocol, Protocol::Sctp(_)))
        .flat_map(|t| {
            // A registrar bound to the wildcard address may announce it; the
            // packet's source is then the best address we have.
            t.addresses.iter().map(move |ip| {
                let ip = if ip.is_unspecified() { from.ip() } else { *ip };
                SocketAddr::new(ip, t.port)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rserpool_wire::TransportUse;

    fn t(s: u64) -> Instant {
        Instant::from_epoch(Duration::from_secs(s))
    }

    fn hunt(list: &[&str]) -> RegistrarHunt {
        RegistrarHunt::new(&HuntConfig {
            registrars: list.iter().map(|a| vec![a.parse().unwrap()]).collect(),
            max_announced_registrars: 2,
            ..HuntConfig::default()
        })
    }

    #[test]
    fn a56_announce_without_transport_means_source_port_3863_and_expires_after_t7() {
        let mut h = hunt(&[]);
        let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let id = PrId::new(7).unwrap();
        assert_eq!(h.learn(t(0), from, id, &[]), Learned::New);
        let c = h.next_candidate().unwrap();
        assert_eq!(c.addrs, vec!["192.0.2.7:3863".parse().unwrap()]);
        assert_eq!(c.server_id, Some(id));
        assert_eq!(h.next_expiry(), Some(t(5)));
        // A refresh restarts T7 (MUST).
        assert_eq!(h.learn(t(3), from, id, &[]), Learned::Refreshed);
        h.expire(t(5));
        assert!(!h.is_empty());
        h.expire(t(8));
        assert!(h.is_empty());
        assert_eq!(h.stats.expired, 1);
    }

    #[test]
    fn announce_keeps_sctp_only_and_the_table_is_bounded() {
        let mut h = hunt(&[]);
        let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let tcp = TransportAddress {
            protocol: Protocol::Tcp,
            port: 3863,
            addresses: vec!["192.0.2.7".parse().unwrap()].into(),
        };
        assert_eq!(
            h.learn(t(0), from, PrId::new(1).unwrap(), &[tcp]),
            Learned::Ignored
        );
        let sctp = TransportAddress::sctp(
            5000,
            TransportUse::DataOnly,
            vec!["0.0.0.0".parse().unwrap(), "198.51.100.1".parse().unwrap()],
        );
        assert_eq!(
            h.learn(t(0), from, PrId::new(2).unwrap(), &[sctp]),
            Learned::New
        );
        assert_eq!(
            h.next_candidate().unwrap().addrs,
            vec![
                "192.0.2.7:5000".parse().unwrap(),
                "198.51.100.1:5000".parse().unwrap()
            ]
        );
        assert_eq!(
            h.learn(t(0), from, PrId::new(3).unwrap(), &[]),
            Learned::New
        );
        assert_eq!(
            h.learn(t(0), from, PrId::new(4).unwrap(), &[]),
            Learned::Ignored
        );
        assert_eq!(h.stats.ignored, 2);
    }

    #[test]
    fn a59_rounds_try_each_once_and_t5_doubles_to_retran_max() {
        let mut h = hunt(&["10.0.0.1:3863", "10.0.0.2:3863"]);
        assert_eq!(
            h.next_candidate().unwrap().addrs[0].to_string(),
            "10.0.0.1:3863"
        );
        assert_eq!(
            h.next_candidate().unwrap().addrs[0].to_string(),
            "10.0.0.2:3863"
        );
        assert!(h.next_candidate().is_none());
        let spacing: Vec<u64> = (0..5).map(|_| h.back_off().as_secs()).collect();
        assert_eq!(spacing, vec![10, 20, 40, 60, 60]);
        h.new_round();
        assert!(h.next_candidate().is_some());
        h.succeeded();
        assert_eq!(h.t5(), Duration::from_secs(10));
    }
}

//! The registrar's metrics (`--metrics`): its own counters and tables,
//! copied out of the machine on each scrape.
//!
//! The machine counts since start and the process lives exactly as long,
//! so its totals are already monotonic: reporting them as constant
//! counters per scrape keeps one source of truth instead of mirroring every
//! increment into a second set of counters.

use crate::metrics::{const_counter, const_counter_family, const_gauge, const_gauge_family};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rserpool_core::registrar::{PeerStatus, Registrar, RegistrarStats};
use rserpool_wire::{AsapType, EnrpType};
use std::sync::{Mutex, PoisonError};

/// What a scrape reports, taken from the machine in one call.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    ready: bool,
    pool_elements: usize,
    pools: usize,
    associations: usize,
    /// PEs per owning registrar (`0x...`), sorted.
    owned: Vec<(String, usize)>,
    alive: usize,
    probing: usize,
    dead: usize,
    stats: RegistrarStats,
}

impl Snapshot {
    /// Copies what the metrics need; runs inside the machine's task.
    pub fn of(r: &Registrar) -> Self {
        let hs = r.handlespace();
        let mut owned: Vec<(String, usize)> = hs
            .owner_counts()
            .map(|(id, n)| (id.to_string(), n))
            .collect();
        owned.sort();
        let mut s = Self {
            ready: r.is_ready(),
            pool_elements: hs.len(),
            pools: hs.pool_count(),
            associations: r.association_count(),
            owned,
            stats: r.stats().clone(),
            ..Self::default()
        };
        for p in r.peers() {
            match p.status {
                PeerStatus::Alive => s.alive += 1,
                PeerStatus::Probing { .. } => s.probing += 1,
                PeerStatus::Dead => s.dead += 1,
            }
        }
        s
    }
}

/// The registrar's metrics: the latest [`Snapshot`], encoded on demand.
#[derive(Debug, Default)]
pub struct RegistrarCollector {
    latest: Mutex<Snapshot>,
}

impl RegistrarCollector {
    /// Replaces what the next encoding reports.
    pub fn update(&self, s: Snapshot) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }
}

/// Every message type's RFC name, ASAP then ENRP, so that each counter
/// has a series from the start (rate() then sees the first message).
fn message_types() -> impl Iterator<Item = &'static str> {
    let asap = (0u8..=255)
        .filter_map(AsapType::from_u8)
        .map(AsapType::name);
    let enrp = (0u8..=255)
        .filter_map(EnrpType::from_u8)
        .map(EnrpType::name);
    asap.chain(enrp)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for RegistrarCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &s.stats;
        const_gauge(
            &mut e,
            "rserpool_registrar_ready",
            "1 once start-up (mentor discovery and handlespace download) is complete, else 0",
            i64::from(s.ready),
        )?;
        const_gauge(
            &mut e,
            "rserpool_handlespace_pool_elements",
            "PEs in this registrar's handlespace, owned here or by peers",
            to_i64(s.pool_elements),
        )?;
        const_gauge(
            &mut e,
            "rserpool_handlespace_pools",
            "Pools in this registrar's handlespace",
            to_i64(s.pools),
        )?;
        const_gauge_family(
            &mut e,
            "rserpool_registrar_owned_pool_elements",
            "PEs in the handlespace by their home registrar's ID, as this registrar sees it",
            "registrar",
            s.owned.iter().map(|(id, n)| (id.as_str(), to_i64(*n))),
        )?;
        const_gauge_family(
            &mut e,
            "rserpool_registrar_peers",
            "Peer registrars known, by status",
            "status",
            [
                ("alive", to_i64(s.alive)),
                ("probing", to_i64(s.probing)),
                ("dead", to_i64(s.dead)),
            ],
        )?;
        const_gauge(
            &mut e,
            "rserpool_registrar_associations",
            "SCTP associations up (PEs, pool users and peer registrars)",
            to_i64(s.associations),
        )?;
        const_counter_family(
            &mut e,
            "rserpool_registrar_messages_received",
            "ASAP and ENRP messages received, by RFC message type",
            "type",
            message_types().map(|t| (t, st.received.get(t))),
        )?;
        const_counter_family(
            &mut e,
            "rserpool_registrar_messages_sent",
            "ASAP and ENRP messages sent, by RFC message type",
            "type",
            message_types().map(|t| (t, st.sent.get(t))),
        )?;
        const_counter(
            &mut e,
            "rserpool_registrar_invalid_messages",
            "Messages that could not be decoded or were misaddressed",
            st.invalid_messages,
        )?;
        let r = &st.refused;
        const_counter_family(
            &mut e,
            "rserpool_registrar_refused",
            "Requests refused under the trust model (RFC 5355) or a per-source limit, by reason",
            "reason",
            [
                ("enrp_stranger", r.enrp_stranger),
                ("enrp_impersonation", r.enrp_impersonation),
                ("peer_table_full", r.peer_table_full),
                ("foreign_pe", r.foreign_pe),
                ("association_full", r.association_full),
                ("resolution_rate", r.resolution_rate),
                ("unreachable_rate", r.unreachable_rate),
                ("takeover_of_live", r.takeover_of_live),
            ],
        )?;
        const_counter(
            &mut e,
            "rserpool_takeover_suggestions_sent",
            "Takeover suggestions sent to peers",
            st.suggestions_sent,
        )?;
        let w = &st.suggestions_withheld;
        const_counter_family(
            &mut e,
            "rserpool_takeover_suggestions_withheld",
            "Takeover suggestions not sent, by reason",
            "reason",
            [
                ("balanced", w.balanced),
                ("no_target", w.no_target),
                ("rate_limited", w.rate_limited),
                ("in_flight", w.in_flight),
                ("cooldown", w.cooldown),
            ],
        )?;
        const_counter(
            &mut e,
            "rserpool_takeover_suggestions_received",
            "Takeover suggestions received from peers",
            st.suggestions_received,
        )?;
        const_counter(
            &mut e,
            "rserpool_takeover_suggestions_accepted",
            "Takeover suggestions honoured",
            st.suggestions_accepted,
        )?;
        const_counter(
            &mut e,
            "rserpool_takeover_suggestions_declined",
            "Takeover suggestions declined",
            st.suggestions_declined,
        )?;
        const_counter(
            &mut e,
            "rserpool_registrar_ownership_gained",
            "PEs whose home moved to this registrar",
            st.ownership_gained,
        )?;
        const_counter(
            &mut e,
            "rserpool_registrar_ownership_lost",
            "PEs whose home moved away from this registrar",
            st.ownership_lost,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::sync::Arc;

    fn page(s: Snapshot) -> String {
        let c = Arc::new(RegistrarCollector::default());
        c.update(s);
        let mut r = Registry::default();
        r.register_collector(Box::new(c));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        text
    }

    #[test]
    fn snapshot_is_encoded_with_labels_and_suffixes() {
        let mut stats = RegistrarStats::default();
        stats.refused.foreign_pe = 2;
        stats.suggestions_withheld.cooldown = 4;
        stats.ownership_gained = 7;
        let text = page(Snapshot {
            ready: true,
            pool_elements: 3,
            pools: 1,
            associations: 5,
            owned: vec![("0x00000001".into(), 2), ("0x00000002".into(), 1)],
            alive: 1,
            dead: 1,
            stats,
            ..Snapshot::default()
        });
        for line in [
            "# TYPE rserpool_registrar_ready gauge",
            "rserpool_registrar_ready 1",
            "rserpool_handlespace_pool_elements 3",
            "rserpool_handlespace_pools 1",
            "rserpool_registrar_associations 5",
            "rserpool_registrar_owned_pool_elements{registrar=\"0x00000001\"} 2",
            "rserpool_registrar_owned_pool_elements{registrar=\"0x00000002\"} 1",
            "rserpool_registrar_peers{status=\"alive\"} 1",
            "rserpool_registrar_peers{status=\"probing\"} 0",
            "rserpool_registrar_peers{status=\"dead\"} 1",
            "# TYPE rserpool_registrar_messages_received counter",
            "rserpool_registrar_messages_received_total{type=\"ASAP_REGISTRATION\"} 0",
            "rserpool_registrar_messages_sent_total{type=\"ENRP_PRESENCE\"} 0",
            "rserpool_registrar_refused_total{reason=\"foreign_pe\"} 2",
            "rserpool_takeover_suggestions_withheld_total{reason=\"cooldown\"} 4",
            "rserpool_registrar_ownership_gained_total 7",
            "rserpool_registrar_invalid_messages_total 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}

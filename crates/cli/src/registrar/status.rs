//! The registrar's one-line status (`--status-interval`).

use rserpool_core::registrar::{PeerStatus, Registrar};

/// `status id=0x... ready=yes pes=3 pools=1 owned=0x...:2,0x...:1 peers=1 [0x...:alive] refused=0`:
/// what this registrar's handlespace holds, who owns it, how many peers are
/// alive, the whole peer table, and how many requests the trust model and
/// the per-source limits refused.
pub fn line(r: &Registrar) -> String {
    let hs = r.handlespace();
    let mut owned: Vec<_> = hs.owner_counts().collect();
    owned.sort();
    let owned = owned
        .iter()
        .map(|(id, n)| format!("{id}:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let alive = r.peers().filter(|p| p.status == PeerStatus::Alive).count();
    let peers: Vec<String> = r
        .peers()
        .map(|p| {
            let s = match p.status {
                PeerStatus::Alive => "alive",
                PeerStatus::Probing { .. } => "probing",
                PeerStatus::Dead => "dead",
            };
            format!("{}:{s}", p.id)
        })
        .collect();
    format!(
        "status id={} ready={} pes={} pools={} owned={} peers={} [{}] refused={}",
        r.id(),
        if r.is_ready() { "yes" } else { "no" },
        hs.len(),
        hs.pool_count(),
        if owned.is_empty() { "-" } else { &owned },
        alive,
        peers.join(" "),
        r.stats().refused.total()
    )
}

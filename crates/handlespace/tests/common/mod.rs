//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_handlespace::{EntryId, Handlespace};
use rserpool_wire::*;
use std::net::{IpAddr, Ipv4Addr};

pub fn ph(s: &str) -> PoolHandle {
    PoolHandle::try_from(s).unwrap()
}

pub fn pr(v: u32) -> PrId {
    PrId::new(v).unwrap()
}

pub fn addr(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

/// A PE with an SCTP data-only transport at 10.x.y.z derived from its ID.
pub fn pe(id: u32, home: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: PrId::new(home),
        registration_life: RegistrationLife(30_000),
        user_transport: UserTransport::Address(TransportAddress::sctp(
            9000,
            TransportUse::DataOnly,
            vec![addr(id)],
        )),
        policy,
        asap_transport: None,
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Resolves and returns the PE IDs.
pub fn resolve_ids(
    hs: &mut Handlespace,
    h: &PoolHandle,
    items: Option<u32>,
    r: &mut ChaCha8Rng,
) -> Vec<u32> {
    let mut out: Vec<EntryId> = Vec::new();
    hs.resolve(h, items, r, &mut out).unwrap();
    out.iter().map(|&e| hs.entry(e).unwrap().id().0).collect()
}

/// Percent of u32::MAX.
pub fn pct(p: u32) -> u32 {
    (u64::from(u32::MAX) * u64::from(p) / 100) as u32
}

/// Pearson's chi-square statistic of observed counts against expected proportions.
pub fn chi_square(observed: &[u64], weights: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    let wsum: f64 = weights.iter().sum();
    observed
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let e = n as f64 * w / wsum;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

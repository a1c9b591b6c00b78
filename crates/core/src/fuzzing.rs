//! Drives a [`Registrar`] with an arbitrary byte string, for fuzzers and
//! property tests: the bytes are read as a program of inbound events (raw
//! and well-formed ASAP and ENRP messages on several associations,
//! associations coming and going, time passing), and the registrar's
//! invariants are checked after every step.
//!
//! Not part of the stable API.

use crate::io::{AssocId, AssociationEvent, DownReason};
use crate::registrar::{AddrRange, PeerScope, Registrar, RegistrarConfig};
use crate::time::Instant;
use crate::{Machine, Transmit};
use bytes::Bytes;
use rserpool_wire::{
    AsapMessage, EnrpMessage, Message, PPID_ASAP, PPID_ENRP, PeId, Policy, PoolElement, PoolHandle,
    PrId, RegistrationLife, Servers, TransportAddress, TransportUse, UpdateAction, UserTransport,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Most peers the driven registrar may hold (kept small so that the bound is
/// exercised).
const MAX_PEERS: usize = 4;

/// Runs the program in `data`; panics if an invariant breaks (or the
/// registrar panics).
pub fn drive_registrar(data: &[u8]) {
    let cfg = RegistrarConfig {
        id: PrId::new(1),
        announce: false,
        max_peers: MAX_PEERS,
        max_pes_per_association: 8,
        peer_scope: PeerScope::Ranges(vec![AddrRange::new(ip(0x80).ip(), 25).expect("valid")]),
        ..RegistrarConfig::default()
    };
    let mut now = Instant::ZERO;
    let mut r = Registrar::new(cfg, 1, now).expect("valid configuration");
    // Associations 0-3 from PEs and PUs, 4-7 from registrars of the scope;
    // the program may take them down and bring them up from elsewhere.
    for a in 0..8u8 {
        let host = if a < 4 { a + 1 } else { 0x80 + a };
        r.handle_association(
            now,
            AssociationEvent::Up {
                assoc: AssocId(u64::from(a)),
                peer: vec![ip(host)],
            },
        );
    }
    let mut p = Program(data);
    while let Some(op) = p.byte() {
        let assoc = AssocId(u64::from(p.byte().unwrap_or(0) % 8));
        match op % 12 {
            0 => r.handle_association(
                now,
                AssociationEvent::Up {
                    assoc,
                    peer: vec![ip(p.byte().unwrap_or(0))],
                },
            ),
            1 => r.handle_association(
                now,
                AssociationEvent::Down {
                    assoc,
                    reason: DownReason::Lost,
                },
            ),
            2 | 3 => {
                let len = usize::from(p.byte().unwrap_or(0) % 48);
                let raw = Bytes::copy_from_slice(p.take(len));
                let ppid = if op % 12 == 2 { PPID_ASAP } else { PPID_ENRP };
                r.handle_data(now, assoc, ppid, raw);
            }
            4 => {
                now = now + Duration::from_millis(u64::from(p.byte().unwrap_or(0)) * 100);
                r.handle_timeout(now);
            }
            _ => {
                let m = well_formed(op % 12, &mut p);
                let mut buf = Vec::new();
                if m.encode(&mut buf).is_ok() {
                    r.handle_data(now, assoc, m.ppid(), Bytes::from(buf));
                }
            }
        }
        // A driver wakes the machine at its deadline.
        if let Some(at) = r.poll_timeout().filter(|at| *at <= now) {
            r.handle_timeout(at.max(now));
        }
        while let Some(t) = r.poll_transmit() {
            if let Transmit::Send { message, .. } = t {
                let mut buf = Vec::new();
                // Everything the registrar sends must be encodable.
                message
                    .encode(&mut buf)
                    .expect("the registrar sent an unencodable message");
            }
        }
        while r.poll_event().is_some() {}
        check(&r);
    }
}

fn check(r: &Registrar) {
    if let Err(e) = r.handlespace().check_invariants() {
        panic!("handlespace invariant broken: {e}");
    }
    assert!(
        r.peers().count() <= MAX_PEERS,
        "peer table beyond its bound"
    );
}

/// 10.0.0.x: x < 128 are strangers, x >= 128 are in the peer scope.
fn ip(x: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, x)), 9901)
}

struct Program<'a>(&'a [u8]);

impl<'a> Program<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

fn well_formed(kind: u8, p: &mut Program<'_>) -> Message {
    let pool = PoolHandle::try_from(["a", "b", "c"][usize::from(p.byte().unwrap_or(0) % 3)])
        .expect("valid handle");
    let pe_id = PeId(u32::from(p.byte().unwrap_or(0) % 16));
    let sender = PrId::new(u32::from(p.byte().unwrap_or(0) % 6) + 1).expect("non-zero");
    let element = |p: &mut Program<'_>| PoolElement {
        id: pe_id,
        home_registrar: PrId::new(u32::from(p.byte().unwrap_or(0) % 6)),
        registration_life: RegistrationLife(i32::from(p.byte().unwrap_or(1)) * 10_000),
        user_transport: UserTransport::Address(TransportAddress::sctp(
            5000,
            TransportUse::DataOnly,
            // Mostly "fill in my address", sometimes an address of its own.
            vec![match p.byte().unwrap_or(0) {
                b if b < 192 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                b => ip(b % 8 + 1).ip(),
            }],
        )),
        policy: match p.byte().unwrap_or(0) % 3 {
            0 => Policy::RoundRobin,
            1 => Policy::LeastUsed { load: 7 },
            _ => Policy::WeightedRoundRobin { weight: 3 },
        },
        asap_transport: None,
    };
    let servers = Servers {
        sender,
        receiver: None,
    };
    match kind {
        5 => Message::Asap(AsapMessage::Registration {
            pool_handle: pool,
            pool_element: element(p),
        }),
        6 => Message::Asap(AsapMessage::Deregistration {
            pool_handle: pool,
            pe_id,
        }),
        7 => Message::Asap(AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: pool,
            items: p.byte().map(u32::from),
        }),
        8 => Message::Asap(if p.byte().unwrap_or(0) % 2 == 0 {
            AsapMessage::EndpointKeepAliveAck {
                pool_handle: pool,
                pe_id,
            }
        } else {
            AsapMessage::EndpointUnreachable {
                pool_handle: pool,
                pe_id,
            }
        }),
        9 => Message::Enrp(EnrpMessage::Presence {
            servers,
            reply_required: p.byte().unwrap_or(0) % 2 == 0,
            checksum: p.byte().map(u16::from),
            server_info: None,
        }),
        10 => Message::Enrp(EnrpMessage::HandleUpdate {
            servers,
            takeover_suggested: p.byte().unwrap_or(0) % 2 == 0,
            action: if p.byte().unwrap_or(0) % 3 == 0 {
                UpdateAction::DelPe
            } else {
                UpdateAction::AddPe
            },
            pool_handle: pool,
            pool_element: element(p),
        }),
        _ => {
            let target = PrId::new(u32::from(p.byte().unwrap_or(0) % 6) + 1).expect("non-zero");
            Message::Enrp(match p.byte().unwrap_or(0) % 4 {
                0 => EnrpMessage::InitTakeover { servers, target },
                1 => EnrpMessage::InitTakeoverAck { servers, target },
                2 => EnrpMessage::TakeoverServer { servers, target },
                _ => EnrpMessage::HandleTableRequest {
                    servers,
                    own_children_only: false,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// The registrar survives arbitrary programs with its invariants.
        #[test]
        fn registrar_survives_arbitrary_input(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            super::drive_registrar(&data);
        }
    }
}

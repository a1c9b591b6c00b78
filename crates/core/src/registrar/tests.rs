//! Unit tests of one registrar driven by hand. Multi-registrar behaviour
//! (replication, takeover, balancing) is tested in the simulator crate.

use super::*;
use crate::io::DownReason;
use rserpool_wire::{
    AsapMessage, CauseCode, EnrpMessage, Policy, PoolElement, PoolEntry, Protocol,
    RegistrationLife, Servers, TransportAddress, TransportUse, UpdateAction, UserTransport,
};
use std::net::{IpAddr, Ipv4Addr};

const PE_ASSOC: AssocId = AssocId(1);
const PEER_ASSOC: AssocId = AssocId(2);

fn t(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

fn pr(v: u32) -> PrId {
    PrId::new(v).unwrap()
}

fn pool() -> PoolHandle {
    PoolHandle::try_from("EchoPool").unwrap()
}

fn pe_addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, n)), 4000)
}

fn element(id: u32, n: u8, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: None,
        registration_life: RegistrationLife(300_000),
        user_transport: UserTransport::Address(TransportAddress {
            protocol: Protocol::Sctp(TransportUse::DataOnly),
            port: 5000,
            addresses: vec![pe_addr(n).ip()].into(),
        }),
        policy,
        asap_transport: None,
    }
}

/// The peers' network (10.0.0.0/24) is in the peer scope.
fn scope() -> PeerScope {
    PeerScope::Ranges(vec!["10.0.0.0/24".parse().unwrap()])
}

fn registrar(cfg: RegistrarConfig) -> Registrar {
    let mut r = Registrar::new(
        RegistrarConfig {
            id: Some(pr(100)),
            announce: false,
            peer_scope: scope(),
            // Balancing counts peers at once unless a test says otherwise.
            peer_settle_time: if cfg.peer_settle_time == RegistrarConfig::default().peer_settle_time
            {
                Duration::ZERO
            } else {
                cfg.peer_settle_time
            },
            ..cfg
        },
        7,
        t(0),
    )
    .unwrap();
    drain(&mut r);
    r
}

fn feed(r: &mut Registrar, now: Instant, assoc: AssocId, m: Message) {
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    r.handle_data(now, assoc, m.ppid(), Bytes::from(b));
}

fn up(r: &mut Registrar, assoc: AssocId, peer: SocketAddr) {
    r.handle_association(
        t(0),
        AssociationEvent::Up {
            assoc,
            peer: vec![peer],
        },
    );
}

/// Advances time to `to` the way a driver does: waking at every deadline.
fn advance(r: &mut Registrar, to: Instant) {
    while let Some(at) = r.poll_timeout().filter(|at| *at <= to) {
        r.handle_timeout(at);
    }
}

fn drain(r: &mut Registrar) -> Vec<Transmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn events(r: &mut Registrar) -> Vec<RegistrarEvent> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn register(r: &mut Registrar, now: Instant, assoc: AssocId, pe: PoolElement) -> Vec<Transmit> {
    feed(
        r,
        now,
        assoc,
        Message::Asap(AsapMessage::Registration {
            pool_handle: pool(),
            pool_element: pe,
        }),
    );
    drain(r)
}

fn asap_sent(out: &[Transmit]) -> Vec<(&Destination, &AsapMessage)> {
    out.iter()
        .filter_map(|t| match t {
            Transmit::Send {
                to,
                message: Message::Asap(m),
            } => Some((to, m)),
            _ => None,
        })
        .collect()
}

fn enrp_sent(out: &[Transmit]) -> Vec<(&Destination, &EnrpMessage)> {
    out.iter()
        .filter_map(|t| match t {
            Transmit::Send {
                to,
                message: Message::Enrp(m),
            } => Some((to, m)),
            _ => None,
        })
        .collect()
}

#[test]
fn registration_is_accepted_and_homed_here() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    let out = register(&mut r, t(10), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    let sent = asap_sent(&out);
    assert!(matches!(
        sent[..],
        [(
            Destination::Association(PE_ASSOC),
            AsapMessage::RegistrationResponse {
                rejected: false,
                pe_id: PeId(1),
                ..
            }
        )]
    ));
    let e = r.handlespace().get(&pool(), PeId(1)).unwrap();
    assert_eq!(e.owner(), Some(r.id()));
    // The home records the association's addresses as the ASAP transport (RFC 5352 §3.1 rule 4).
    let asap = e.element().asap_transport.as_ref().unwrap();
    assert_eq!(asap.port, 4000);
    assert_eq!(r.owned_count(r.id()), 1);
}

#[test]
fn inconsistent_policy_is_rejected_with_cause_5() {
    // A-12 / PROCEDURES §2 rule 2.
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    up(&mut r, AssocId(3), pe_addr(2));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    let out = register(
        &mut r,
        t(0),
        AssocId(3),
        element(2, 2, Policy::LeastUsed { load: 0 }),
    );
    let sent = asap_sent(&out);
    let [
        (
            _,
            AsapMessage::RegistrationResponse {
                rejected: true,
                error: Some(causes),
                ..
            },
        ),
    ] = sent[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(causes[0].code, CauseCode::InconsistentPoolingPolicy);
    assert!(r.handlespace().get(&pool(), PeId(2)).is_none());
}

#[test]
fn foreign_addresses_are_rejected() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    let out = register(&mut r, t(0), PE_ASSOC, element(1, 9, Policy::RoundRobin));
    let sent = asap_sent(&out);
    let [
        (
            _,
            AsapMessage::RegistrationResponse {
                rejected: true,
                error: Some(c),
                ..
            },
        ),
    ] = sent[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(c[0].code, CauseCode::InvalidValues);
}

#[test]
fn handle_resolution_answers_with_policy_and_unknown_pool_error() {
    let mut r = registrar(RegistrarConfig::default());
    for i in 1..=5u8 {
        up(&mut r, AssocId(u64::from(i)), pe_addr(i));
        register(
            &mut r,
            t(0),
            AssocId(u64::from(i)),
            element(u32::from(i), i, Policy::RoundRobin),
        );
    }
    up(&mut r, AssocId(50), pe_addr(50));
    feed(
        &mut r,
        t(1),
        AssocId(50),
        Message::Asap(AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: pool(),
            items: Some(2),
        }),
    );
    let out = drain(&mut r);
    let sent = asap_sent(&out);
    let [
        (
            _,
            AsapMessage::HandleResolutionResponse {
                pool_elements,
                error: None,
                ..
            },
        ),
    ] = sent[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(pool_elements.len(), 2);
    assert!(pool_elements.iter().all(|p| p.asap_transport.is_none()));
    feed(
        &mut r,
        t(1),
        AssocId(50),
        Message::Asap(AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: PoolHandle::try_from("nope").unwrap(),
            items: None,
        }),
    );
    let out = drain(&mut r);
    let sent = asap_sent(&out);
    let [
        (
            _,
            AsapMessage::HandleResolutionResponse {
                error: Some(c),
                pool_elements,
                ..
            },
        ),
    ] = sent[..]
    else {
        panic!("{out:?}")
    };
    assert!(pool_elements.is_empty());
    assert_eq!(c[0].code, CauseCode::UnknownPoolHandle);
}

#[test]
fn keep_alive_without_ack_removes_the_pe() {
    let cfg = RegistrarConfig {
        keep_alive_interval: Duration::from_secs(5),
        keep_alive_timeout: Duration::from_secs(5),
        ..RegistrarConfig::default()
    };
    let mut r = registrar(cfg);
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    // First keep-alive within 2.5..7.5 s (jitter), on the registration association.
    r.handle_timeout(t(7_500));
    let out = drain(&mut r);
    let sent = asap_sent(&out);
    assert!(matches!(
        sent[..],
        [(
            Destination::Association(PE_ASSOC),
            AsapMessage::EndpointKeepAlive {
                home: false,
                pe_id: Some(PeId(1)),
                ..
            }
        )]
    ));
    // Answered: still there after the timeout.
    feed(
        &mut r,
        t(8_000),
        PE_ASSOC,
        Message::Asap(AsapMessage::EndpointKeepAliveAck {
            pool_handle: pool(),
            pe_id: PeId(1),
        }),
    );
    advance(&mut r, t(12_600));
    assert!(r.handlespace().get(&pool(), PeId(1)).is_some());
    // Not answered: removed within interval + timeout.
    advance(&mut r, t(40_000));
    assert!(r.handlespace().get(&pool(), PeId(1)).is_none());
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        RegistrarEvent::Removed {
            reason: RemovalReason::KeepAliveTimeout,
            ..
        }
    )));
}

#[test]
fn association_loss_probes_instead_of_purging() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    r.handle_association(
        t(1_000),
        AssociationEvent::Down {
            assoc: PE_ASSOC,
            reason: DownReason::Graceful,
        },
    );
    let out = drain(&mut r);
    let sent = asap_sent(&out);
    // Still registered; probed at its ASAP transport address.
    assert!(r.handlespace().get(&pool(), PeId(1)).is_some());
    let [(Destination::Addresses(a), AsapMessage::EndpointKeepAlive { .. })] = sent[..] else {
        panic!("{out:?}")
    };
    assert_eq!(a, &vec![pe_addr(1)]);
}

#[test]
fn unreachable_reports_probe_then_remove() {
    let mut r = registrar(RegistrarConfig {
        max_bad_pe_reports: 2,
        ..RegistrarConfig::default()
    });
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    for a in 9..12 {
        up(&mut r, AssocId(a), pe_addr(a as u8));
    }
    let eu = Message::Asap(AsapMessage::EndpointUnreachable {
        pool_handle: pool(),
        pe_id: PeId(1),
    });
    feed(&mut r, t(10), AssocId(9), eu.clone());
    let out = drain(&mut r);
    assert!(matches!(
        asap_sent(&out)[..],
        [(_, AsapMessage::EndpointKeepAlive { .. })]
    ));
    // RFC 5355 §2.13: one reporter, however often it reports, only makes
    // the registrar probe.
    for ms in 11..20 {
        feed(&mut r, t(ms), AssocId(9), eu.clone());
    }
    assert!(r.handlespace().get(&pool(), PeId(1)).is_some());
    feed(&mut r, t(20), AssocId(10), eu.clone());
    assert!(r.handlespace().get(&pool(), PeId(1)).is_some());
    feed(&mut r, t(30), AssocId(11), eu);
    assert!(r.handlespace().get(&pool(), PeId(1)).is_none());
}

#[test]
fn deregistration_is_always_answered() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    for _ in 0..2 {
        feed(
            &mut r,
            t(5),
            PE_ASSOC,
            Message::Asap(AsapMessage::Deregistration {
                pool_handle: pool(),
                pe_id: PeId(1),
            }),
        );
        let out = drain(&mut r);
        assert!(matches!(
            asap_sent(&out)[..],
            [(_, AsapMessage::DeregistrationResponse { error: None, .. })]
        ));
    }
    assert!(r.handlespace().is_empty());
}

#[test]
fn garbage_is_counted_and_reported_where_required() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    r.handle_data(t(0), PE_ASSOC, 11, Bytes::from_static(&[1, 2, 3]));
    assert!(drain(&mut r).is_empty());
    // Unknown type 0x70: discard and report Unrecognized Message (W-06).
    r.handle_data(t(0), PE_ASSOC, 11, Bytes::from_static(&[0x70, 0, 0, 4]));
    let out = drain(&mut r);
    let [(_, AsapMessage::Error { causes })] = asap_sent(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(causes[0].code, CauseCode::UnrecognizedMessage);
    assert_eq!(r.stats().invalid_messages, 2);
}

/// A peer (ID 200) is known and alive: feed its presence.
fn with_peer(r: &mut Registrar, now: Instant) {
    up(r, PEER_ASSOC, "10.0.0.2:9901".parse().unwrap());
    feed(
        r,
        now,
        PEER_ASSOC,
        Message::Enrp(EnrpMessage::Presence {
            servers: Servers {
                sender: pr(200),
                receiver: None,
            },
            reply_required: false,
            checksum: Some(0xFFFF),
            server_info: None,
        }),
    );
    drain(r);
}

#[test]
fn registration_is_announced_and_excess_suggested_with_t_flag() {
    // T-: the sending side of the Takeover Suggestion.
    let mut r = registrar(RegistrarConfig::default());
    with_peer(&mut r, t(0));
    let mut suggested = 0;
    for i in 1..=10u8 {
        up(&mut r, AssocId(10 + u64::from(i)), pe_addr(i));
        let out = register(
            &mut r,
            t(10),
            AssocId(10 + u64::from(i)),
            element(u32::from(i), i, Policy::RoundRobin),
        );
        let updates = enrp_sent(&out);
        let plain = updates
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m,
                    EnrpMessage::HandleUpdate {
                        takeover_suggested: false,
                        action: UpdateAction::AddPe,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(plain, 1, "one ADD_PE per peer");
        suggested += updates
            .iter()
            .filter(|(_, m)| matches!(m, EnrpMessage::HandleUpdate { takeover_suggested: true, servers: Servers { receiver: Some(p), .. }, .. } if *p == pr(200)))
            .count();
    }
    // 10 owned, peer 0: fair share 5; the first registrations are within
    // tolerance, beyond that each suggests until the excess is in flight.
    assert!((4..=5).contains(&suggested), "{suggested}");
}

#[test]
fn suggestion_received_sends_keep_alive_with_h_to_the_pe() {
    // T-: the receiving side; ownership does not move until the PE re-registers.
    let mut r = registrar(RegistrarConfig::default());
    with_peer(&mut r, t(0));
    let mut pe = element(7, 7, Policy::RoundRobin);
    pe.home_registrar = Some(pr(200));
    pe.asap_transport = Some(TransportAddress::sctp(
        4000,
        TransportUse::DataOnly,
        vec![pe_addr(7).ip()],
    ));
    feed(
        &mut r,
        t(1),
        PEER_ASSOC,
        Message::Enrp(EnrpMessage::HandleUpdate {
            servers: Servers {
                sender: pr(200),
                receiver: Some(pr(100)),
            },
            takeover_suggested: true,
            action: UpdateAction::AddPe,
            pool_handle: pool(),
            pool_element: pe,
        }),
    );
    let out = drain(&mut r);
    let sent = asap_sent(&out);
    let [
        (
            Destination::Addresses(a),
            AsapMessage::EndpointKeepAlive {
                home: true,
                server_id,
                ..
            },
        ),
    ] = sent[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(a, &vec![pe_addr(7)]);
    assert_eq!(*server_id, pr(100));
    assert_eq!(
        r.handlespace().get(&pool(), PeId(7)).unwrap().owner(),
        Some(pr(200))
    );
    assert_eq!(r.stats().suggestions_accepted, 1);
}

#[test]
fn suggestion_for_a_pe_homed_elsewhere_is_declined() {
    let mut r = registrar(RegistrarConfig::default());
    with_peer(&mut r, t(0));
    let mut pe = element(7, 7, Policy::RoundRobin);
    pe.home_registrar = Some(pr(300));
    feed(
        &mut r,
        t(1),
        PEER_ASSOC,
        Message::Enrp(EnrpMessage::HandleUpdate {
            servers: Servers {
                sender: pr(200),
                receiver: None,
            },
            takeover_suggested: true,
            action: UpdateAction::AddPe,
            pool_handle: pool(),
            pool_element: pe,
        }),
    );
    assert!(asap_sent(&drain(&mut r)).is_empty());
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        RegistrarEvent::SuggestionDeclined {
            reason: DeclineReason::NotHome,
            ..
        }
    )));
}

#[test]
fn stale_del_pe_from_a_former_home_is_ignored() {
    let mut r = registrar(RegistrarConfig::default());
    with_peer(&mut r, t(0));
    let mut pe = element(7, 7, Policy::RoundRobin);
    pe.home_registrar = Some(pr(300));
    let update = |action, pe: PoolElement| {
        Message::Enrp(EnrpMessage::HandleUpdate {
            servers: Servers {
                sender: pr(200),
                receiver: None,
            },
            takeover_suggested: false,
            action,
            pool_handle: pool(),
            pool_element: pe,
        })
    };
    feed(
        &mut r,
        t(1),
        PEER_ASSOC,
        update(UpdateAction::AddPe, pe.clone()),
    );
    let mut stale = pe.clone();
    stale.home_registrar = Some(pr(200));
    feed(&mut r, t(2), PEER_ASSOC, update(UpdateAction::DelPe, stale));
    assert!(r.handlespace().get(&pool(), PeId(7)).is_some());
    feed(&mut r, t(3), PEER_ASSOC, update(UpdateAction::DelPe, pe));
    assert!(r.handlespace().get(&pool(), PeId(7)).is_none());
}

#[test]
fn silent_peer_is_probed_then_taken_over() {
    // E-: failure detection and takeover, with no other peer to ask.
    let cfg = RegistrarConfig {
        max_time_last_heard: Duration::from_secs(61),
        max_time_no_response: Duration::from_secs(5),
        ..RegistrarConfig::default()
    };
    let mut r = registrar(cfg);
    with_peer(&mut r, t(0));
    let mut pe = element(7, 7, Policy::RoundRobin);
    pe.home_registrar = Some(pr(200));
    pe.asap_transport = Some(TransportAddress::sctp(
        4000,
        TransportUse::DataOnly,
        vec![pe_addr(7).ip()],
    ));
    feed(
        &mut r,
        t(1),
        PEER_ASSOC,
        Message::Enrp(EnrpMessage::HandleUpdate {
            servers: Servers {
                sender: pr(200),
                receiver: None,
            },
            takeover_suggested: false,
            action: UpdateAction::AddPe,
            pool_handle: pool(),
            pool_element: pe,
        }),
    );
    drain(&mut r);
    advance(&mut r, t(61_001));
    let out = drain(&mut r);
    assert!(enrp_sent(&out).iter().any(|(_, m)| matches!(
        m,
        EnrpMessage::Presence {
            reply_required: true,
            ..
        }
    )));
    advance(&mut r, t(66_002));
    let out = drain(&mut r);
    assert!(
        enrp_sent(&out).iter().any(
            |(_, m)| matches!(m, EnrpMessage::InitTakeover { target, .. } if *target == pr(200))
        )
    );
    assert!(
        asap_sent(&out)
            .iter()
            .any(|(_, m)| matches!(m, AsapMessage::EndpointKeepAlive { home: true, .. }))
    );
    assert_eq!(
        r.handlespace().get(&pool(), PeId(7)).unwrap().owner(),
        Some(pr(100))
    );
    assert!(r.peers().all(|p| p.id != pr(200)));
}

#[test]
fn competing_takeovers_follow_the_configured_rule() {
    // RFC 5353 §3.5.2: the higher ID wins; the reference implementation: the lower.
    for (rule, sender, yields) in [
        (TakeoverArbitration::HighestIdWins, 150, true),
        (TakeoverArbitration::HighestIdWins, 50, false),
        (TakeoverArbitration::LowestIdWins, 50, true),
        (TakeoverArbitration::LowestIdWins, 150, false),
    ] {
        let mut r = registrar(RegistrarConfig {
            takeover_arbitration: rule,
            ..RegistrarConfig::default()
        });
        with_peer(&mut r, t(0));
        // Third peer, the competitor.
        up(&mut r, AssocId(3), "10.0.0.3:9901".parse().unwrap());
        feed(
            &mut r,
            t(0),
            AssocId(3),
            Message::Enrp(EnrpMessage::Presence {
                servers: Servers {
                    sender: pr(sender),
                    receiver: None,
                },
                reply_required: false,
                checksum: None,
                server_info: None,
            }),
        );
        r.takeovers.insert(
            pr(200),
            Takeover {
                awaiting: [pr(sender)].into(),
            },
        );
        r.peers.get_mut(pr(200)).unwrap().status = PeerStatus::Dead;
        drain(&mut r);
        feed(
            &mut r,
            t(1),
            AssocId(3),
            Message::Enrp(EnrpMessage::InitTakeover {
                servers: Servers {
                    sender: pr(sender),
                    receiver: None,
                },
                target: pr(200),
            }),
        );
        let out = drain(&mut r);
        let acked = enrp_sent(&out)
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::InitTakeoverAck { .. }));
        assert_eq!(acked, yields, "{rule:?} sender {sender}");
        assert_eq!(r.takeovers.contains_key(&pr(200)), !yields);
    }
}

#[test]
fn handle_table_is_paged_with_the_m_flag() {
    // E-: RFC 5353 §3.2 download in pages of at most max_elements_per_table_response.
    let mut r = registrar(RegistrarConfig {
        max_elements_per_table_response: 128,
        ..RegistrarConfig::default()
    });
    for i in 0..300u32 {
        let assoc = AssocId(1000 + u64::from(i));
        let ip = Ipv4Addr::new(10, 9, (i / 250) as u8, (i % 250 + 1) as u8);
        let addr = SocketAddr::new(IpAddr::V4(ip), 4000);
        up(&mut r, assoc, addr);
        let mut pe = element(i + 1, 1, Policy::RoundRobin);
        pe.user_transport = UserTransport::Address(TransportAddress::sctp(
            5000,
            TransportUse::DataOnly,
            vec![IpAddr::V4(ip)],
        ));
        register(&mut r, t(0), assoc, pe);
    }
    with_peer(&mut r, t(1));
    let request = Message::Enrp(EnrpMessage::HandleTableRequest {
        servers: Servers {
            sender: pr(200),
            receiver: Some(pr(100)),
        },
        own_children_only: false,
    });
    let mut pages = Vec::new();
    loop {
        feed(&mut r, t(2), PEER_ASSOC, request.clone());
        let out = drain(&mut r);
        let sent = enrp_sent(&out);
        let [
            (
                _,
                EnrpMessage::HandleTableResponse {
                    rejected: false,
                    more_to_send,
                    pools,
                    ..
                },
            ),
        ] = sent[..]
        else {
            panic!("{out:?}")
        };
        pages.push(pools.iter().map(|p| p.pool_elements.len()).sum::<usize>());
        if !more_to_send {
            break;
        }
    }
    assert_eq!(pages, vec![128, 128, 44]);
}

#[test]
fn checksum_mismatch_starts_an_own_children_only_resync() {
    // E-: RFC 5353 §3.6 audit: the peer announces a checksum we do not have for it.
    let mut r = registrar(RegistrarConfig::default());
    with_peer(&mut r, t(0));
    feed(
        &mut r,
        t(1),
        PEER_ASSOC,
        presence_with_checksum(200, 0x1234),
    );
    let out = drain(&mut r);
    assert!(enrp_sent(&out).iter().any(|(_, m)| matches!(
        m,
        EnrpMessage::HandleTableRequest {
            own_children_only: true,
            ..
        }
    )));
    // The peer owns one PE we did not know: importing it and ending the
    // download leaves the handlespace matching the peer.
    let mut pe = element(7, 7, Policy::RoundRobin);
    pe.home_registrar = Some(pr(200));
    feed(
        &mut r,
        t(2),
        PEER_ASSOC,
        Message::Enrp(EnrpMessage::HandleTableResponse {
            servers: Servers {
                sender: pr(200),
                receiver: Some(pr(100)),
            },
            rejected: false,
            more_to_send: false,
            pools: vec![rserpool_wire::PoolEntry {
                pool_handle: pool(),
                pool_elements: vec![pe],
            }],
        }),
    );
    assert_eq!(
        r.handlespace().get(&pool(), PeId(7)).unwrap().owner(),
        Some(pr(200))
    );
    assert_eq!(r.owned_count(pr(200)), 1);
}

// ----- RFC 5355 trust model: what a stranger on the network cannot do -----

/// A PRESENCE announcing `checksum` for the sender's PEs.
fn presence_with_checksum(sender: u32, checksum: u16) -> Message {
    Message::Enrp(EnrpMessage::Presence {
        servers: Servers {
            sender: pr(sender),
            receiver: None,
        },
        reply_required: false,
        checksum: Some(checksum),
        server_info: None,
    })
}

fn presence_from(sender: u32) -> Message {
    Message::Enrp(EnrpMessage::Presence {
        servers: Servers {
            sender: pr(sender),
            receiver: None,
        },
        reply_required: true,
        checksum: None,
        server_info: None,
    })
}

fn add_pe(sender: u32, home: u32, takeover: bool, id: u32) -> Message {
    let mut pe = element(id, id as u8, Policy::RoundRobin);
    pe.home_registrar = Some(pr(home));
    pe.asap_transport = Some(TransportAddress::sctp(
        4000,
        TransportUse::DataOnly,
        vec![pe_addr(id as u8).ip()],
    ));
    Message::Enrp(EnrpMessage::HandleUpdate {
        servers: Servers {
            sender: pr(sender),
            receiver: Some(pr(100)),
        },
        takeover_suggested: takeover,
        action: UpdateAction::AddPe,
        pool_handle: pool(),
        pool_element: pe,
    })
}

#[test]
fn deregistration_over_another_association_is_refused() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    up(&mut r, AssocId(66), pe_addr(66));
    let dereg = Message::Asap(AsapMessage::Deregistration {
        pool_handle: pool(),
        pe_id: PeId(1),
    });
    feed(&mut r, t(1), AssocId(66), dereg.clone());
    let out = drain(&mut r);
    let [(_, AsapMessage::DeregistrationResponse { error: Some(e), .. })] = asap_sent(&out)[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(e[0].code, CauseCode::RejectedSecurity);
    assert!(r.handlespace().get(&pool(), PeId(1)).is_some());
    assert_eq!(r.stats().refused.foreign_pe, 1);
    // Nor may a stranger re-register it (to redirect its users) or keep it
    // alive with acknowledgements.
    let out = register(
        &mut r,
        t(2),
        AssocId(66),
        element(1, 66, Policy::RoundRobin),
    );
    assert!(matches!(
        asap_sent(&out)[..],
        [(_, AsapMessage::RegistrationResponse { rejected: true, .. })]
    ));
    assert_eq!(
        r.handlespace()
            .get(&pool(), PeId(1))
            .unwrap()
            .element()
            .user_transport,
        element(1, 1, Policy::RoundRobin).user_transport
    );
    // The PE itself may.
    feed(&mut r, t(3), PE_ASSOC, dereg);
    assert!(r.handlespace().get(&pool(), PeId(1)).is_none());
}

#[test]
fn enrp_from_outside_the_scope_is_refused() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    let stranger = AssocId(77);
    up(&mut r, stranger, "203.0.113.9:9901".parse().unwrap());
    feed(&mut r, t(1), stranger, presence_from(666));
    let mut pe = element(1, 1, Policy::RoundRobin);
    pe.home_registrar = Some(pr(100));
    feed(
        &mut r,
        t(2),
        stranger,
        Message::Enrp(EnrpMessage::HandleUpdate {
            servers: Servers {
                sender: pr(666),
                receiver: None,
            },
            takeover_suggested: false,
            action: UpdateAction::DelPe,
            pool_handle: pool(),
            pool_element: pe,
        }),
    );
    feed(
        &mut r,
        t(3),
        stranger,
        Message::Enrp(EnrpMessage::HandleTableRequest {
            servers: Servers {
                sender: pr(666),
                receiver: None,
            },
            own_children_only: false,
        }),
    );
    assert!(enrp_sent(&drain(&mut r)).is_empty(), "nothing disclosed");
    assert_eq!(r.peers().count(), 0);
    assert!(r.handlespace().get(&pool(), PeId(1)).is_some());
    assert_eq!(r.stats().refused.enrp_stranger, 3);
}

#[test]
fn an_association_speaks_for_one_registrar_and_the_peer_table_is_bounded() {
    let mut r = registrar(RegistrarConfig {
        max_peers: 2,
        ..RegistrarConfig::default()
    });
    with_peer(&mut r, t(0));
    feed(&mut r, t(1), PEER_ASSOC, presence_from(300));
    assert_eq!(r.stats().refused.enrp_impersonation, 1);
    for (i, id) in [(3u64, 301u32), (4, 302)] {
        up(
            &mut r,
            AssocId(i),
            format!("10.0.0.{i}:9901").parse().unwrap(),
        );
        feed(&mut r, t(2), AssocId(i), presence_from(id));
    }
    assert_eq!(r.peers().count(), 2);
    assert_eq!(r.stats().refused.peer_table_full, 1);
}

#[test]
fn a_peer_cannot_claim_another_peers_pe_to_suggest_it() {
    let mut r = registrar(RegistrarConfig::default());
    with_peer(&mut r, t(0));
    up(&mut r, AssocId(3), "10.0.0.3:9901".parse().unwrap());
    feed(&mut r, t(0), AssocId(3), presence_from(300));
    feed(&mut r, t(1), PEER_ASSOC, add_pe(200, 200, false, 7));
    drain(&mut r);
    // 300 overwrites the home and suggests in the same breath.
    feed(&mut r, t(2), AssocId(3), add_pe(300, 300, true, 7));
    let out = drain(&mut r);
    assert!(asap_sent(&out).is_empty(), "no H keep-alive: {out:?}");
    assert_eq!(r.stats().suggestions_accepted, 0);
    assert_eq!(r.stats().suggestions_declined, 1);
}

#[test]
fn takeovers_of_live_registrars_are_refused() {
    let mut r = registrar(RegistrarConfig::default());
    with_peer(&mut r, t(0));
    up(&mut r, AssocId(3), "10.0.0.3:9901".parse().unwrap());
    feed(&mut r, t(0), AssocId(3), presence_from(300));
    feed(&mut r, t(1), PEER_ASSOC, add_pe(200, 200, false, 7));
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(1), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    drain(&mut r);
    let takeover = |target: u32, init: bool| {
        let servers = Servers {
            sender: pr(300),
            receiver: None,
        };
        Message::Enrp(if init {
            EnrpMessage::InitTakeover {
                servers,
                target: pr(target),
            }
        } else {
            EnrpMessage::TakeoverServer {
                servers,
                target: pr(target),
            }
        })
    };
    feed(&mut r, t(2), AssocId(3), takeover(200, true));
    let out = drain(&mut r);
    assert!(
        !enrp_sent(&out)
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::InitTakeoverAck { .. })),
        "{out:?}"
    );
    feed(&mut r, t(3), AssocId(3), takeover(200, false));
    feed(&mut r, t(3), AssocId(3), takeover(100, false));
    assert_eq!(r.owned_count(pr(200)), 1);
    assert_eq!(r.owned_count(pr(100)), 1);
    assert_eq!(r.stats().refused.takeover_of_live, 3);
    // Once the target falls silent, the takeover is acknowledged.
    feed(&mut r, t(70_000), AssocId(3), presence_from(300));
    feed(&mut r, t(70_001), AssocId(3), takeover(200, true));
    assert!(
        enrp_sent(&drain(&mut r))
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::InitTakeoverAck { .. }))
    );
}

#[test]
fn per_association_limits_hold() {
    let mut r = registrar(RegistrarConfig {
        max_pes_per_association: 3,
        resolution_limit: RateLimit {
            rate: 1.0,
            burst: 5.0,
        },
        ..RegistrarConfig::default()
    });
    up(&mut r, PE_ASSOC, pe_addr(1));
    for id in 1..=4 {
        let out = register(&mut r, t(0), PE_ASSOC, element(id, 1, Policy::RoundRobin));
        let rejected = matches!(
            asap_sent(&out)[..],
            [(_, AsapMessage::RegistrationResponse { rejected: true, .. })]
        );
        assert_eq!(rejected, id == 4, "PE {id}");
    }
    // Re-registering a PE it already holds is not a new one.
    let out = register(&mut r, t(1), PE_ASSOC, element(2, 1, Policy::RoundRobin));
    assert!(matches!(
        asap_sent(&out)[..],
        [(
            _,
            AsapMessage::RegistrationResponse {
                rejected: false,
                ..
            }
        )]
    ));
    up(&mut r, AssocId(10), pe_addr(10));
    let hr = Message::Asap(AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: pool(),
        items: None,
    });
    let mut answered = 0;
    for _ in 0..20 {
        feed(&mut r, t(2), AssocId(10), hr.clone());
        answered += asap_sent(&drain(&mut r)).len();
    }
    assert_eq!(answered, 5);
    assert_eq!(r.stats().refused.resolution_rate, 15);
    assert_eq!(r.stats().refused.association_full, 1);
}

#[test]
fn malformed_requests_are_answered() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    // A registration whose Pool Element is cut short after the PE ID.
    let handle = b"EchoPool";
    let mut m = vec![0x01, 0, 0, 0];
    m.extend_from_slice(&[0x00, 0x09, 0, 4 + handle.len() as u8]);
    m.extend_from_slice(handle);
    m.extend_from_slice(&[0x00, 0x0A, 0, 12, 0, 0, 0, 0x42, 0, 0, 0, 0]);
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    r.handle_data(t(0), PE_ASSOC, 11, Bytes::from(m));
    let out = drain(&mut r);
    let [
        (
            _,
            AsapMessage::RegistrationResponse {
                rejected: true,
                pe_id,
                pool_handle,
                ..
            },
        ),
    ] = asap_sent(&out)[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!((*pe_id, pool_handle), (PeId(0x42), &pool()));
    // A handle resolution with a handle beyond the 256-byte limit.
    let mut m = vec![0x05, 0, 0, 0, 0x00, 0x09, 0x01, 0x30];
    m.extend_from_slice(&[b'x'; 300]);
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    r.handle_data(t(1), PE_ASSOC, 11, Bytes::from(m));
    let out = drain(&mut r);
    assert!(
        matches!(asap_sent(&out)[..], [(_, AsapMessage::Error { .. })]),
        "{out:?}"
    );
    // An unknown type (report bit set) too large to echo whole.
    let mut m = vec![0x70, 0, 0xFF, 0xFC];
    m.resize(0xFFFC, 0);
    r.handle_data(t(2), PE_ASSOC, 11, Bytes::from(m));
    let out = drain(&mut r);
    let [(_, AsapMessage::Error { causes })] = asap_sent(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(causes[0].info.len(), rserpool_wire::MAX_ECHOED);
}

/// Issue 11 (1): a table page is a snapshot. A page from 200 that still
/// lists PE 7 as its own, arriving after 300's first-hand ADD_PE for it,
/// must not override 300; 300 is asked, and only its denial lets the claim
/// through.
#[test]
fn stale_table_page_does_not_override_a_newer_registration() {
    for incumbent_confirms in [true, false] {
        let mut r = registrar(RegistrarConfig::default());
        with_peer(&mut r, t(0));
        up(&mut r, AssocId(3), "10.0.0.3:9901".parse().unwrap());
        feed(&mut r, t(0), AssocId(3), presence_from(300));
        feed(&mut r, t(1), AssocId(3), add_pe(300, 300, false, 7));
        drain(&mut r);
        // 200 announces a checksum that disagrees: resynchronise with it.
        feed(
            &mut r,
            t(2),
            PEER_ASSOC,
            presence_with_checksum(200, 0x1234),
        );
        drain(&mut r);
        let page = |sender: u32, with_pe: bool| {
            let mut pe = element(7, 7, Policy::RoundRobin);
            pe.home_registrar = Some(pr(sender));
            Message::Enrp(EnrpMessage::HandleTableResponse {
                servers: Servers {
                    sender: pr(sender),
                    receiver: Some(pr(100)),
                },
                rejected: false,
                more_to_send: false,
                pools: if with_pe {
                    vec![PoolEntry {
                        pool_handle: pool(),
                        pool_elements: vec![pe],
                    }]
                } else {
                    Vec::new()
                },
            })
        };
        feed(&mut r, t(3), PEER_ASSOC, page(200, true));
        let out = drain(&mut r);
        assert_eq!(
            r.handlespace().get(&pool(), PeId(7)).unwrap().owner(),
            Some(pr(300)),
            "the stale page did not override"
        );
        assert!(
            out.iter().any(|t| matches!(
                t,
                Transmit::Send {
                    to: Destination::Association(AssocId(3)),
                    message: Message::Enrp(EnrpMessage::HandleTableRequest {
                        own_children_only: true,
                        ..
                    }),
                }
            )),
            "the recorded home is asked: {out:?}"
        );
        feed(&mut r, t(4), AssocId(3), page(300, incumbent_confirms));
        let owner = r.handlespace().get(&pool(), PeId(7)).map(|e| e.owner());
        let expected = if incumbent_confirms { pr(300) } else { pr(200) };
        assert_eq!(
            owner,
            Some(Some(expected)),
            "incumbent confirms: {incumbent_confirms}"
        );
    }
}

#[test]
fn unreachable_reports_from_one_host_count_once() {
    let mut r = registrar(RegistrarConfig {
        max_bad_pe_reports: 2,
        ..RegistrarConfig::default()
    });
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    let eu = Message::Asap(AsapMessage::EndpointUnreachable {
        pool_handle: pool(),
        pe_id: PeId(1),
    });
    // Five associations from one host (other ports).
    for a in 20..25u64 {
        let port = SocketAddr::new(pe_addr(66).ip(), 7000 + a as u16);
        up(&mut r, AssocId(a), port);
        feed(&mut r, t(a), AssocId(a), eu.clone());
    }
    assert!(r.handlespace().get(&pool(), PeId(1)).is_some());
    let entry = r.handlespace().lookup(&pool(), PeId(1)).unwrap();
    assert_eq!(r.handlespace().unreachable_reports(entry), 1);
}

/// Issue 11 (3, 4): a peer counts for balancing only once it has been
/// reachable for its settle time, not while its association is down, and a
/// peer that drops off again soon after coming back must wait twice as long.
#[test]
fn peers_count_for_balancing_only_when_settled() {
    let mut r = registrar(RegistrarConfig {
        peer_settle_time: Duration::from_secs(8),
        ..RegistrarConfig::default()
    });
    with_peer(&mut r, t(0));
    let view = |r: &Registrar, ms| r.ownership_view(t(ms)).peers.len();
    assert_eq!(view(&r, 5_000), 0, "not settled yet");
    assert_eq!(view(&r, 8_000), 1);
    // Its association goes down: out at once.
    r.handle_association(
        t(20_000),
        AssociationEvent::Down {
            assoc: PEER_ASSOC,
            reason: DownReason::Lost,
        },
    );
    assert_eq!(view(&r, 20_000), 0);
    // Back; settled 8 s later (the first drop is no flap).
    up(&mut r, AssocId(5), "10.0.0.2:9901".parse().unwrap());
    feed(&mut r, t(30_000), AssocId(5), presence_from(200));
    assert_eq!(view(&r, 37_000), 0);
    assert_eq!(view(&r, 38_000), 1);
    // Drops off again after 20 s (< the stable time): a flap, settle doubles.
    r.handle_association(
        t(50_000),
        AssociationEvent::Down {
            assoc: AssocId(5),
            reason: DownReason::Lost,
        },
    );
    up(&mut r, AssocId(6), "10.0.0.2:9901".parse().unwrap());
    feed(&mut r, t(60_000), AssocId(6), presence_from(200));
    assert_eq!(view(&r, 75_000), 0);
    assert_eq!(view(&r, 76_000), 1);
}

/// A refusal says what conflicted, in words (issue 12).
#[test]
fn inconsistent_policy_refusal_names_the_pools_policy() {
    let mut r = registrar(RegistrarConfig::default());
    up(&mut r, PE_ASSOC, pe_addr(1));
    register(&mut r, t(0), PE_ASSOC, element(1, 1, Policy::RoundRobin));
    events(&mut r);
    register(
        &mut r,
        t(1),
        PE_ASSOC,
        element(2, 1, Policy::LeastUsed { load: 1 }),
    );
    let detail = events(&mut r)
        .into_iter()
        .find_map(|e| match e {
            RegistrarEvent::RegistrationRejected { detail, .. } => Some(detail),
            _ => None,
        })
        .expect("a refusal");
    assert_eq!(detail, "the pool's policy is RR, the PE asked for LU");
}

/// A reader (hsdump) from inside the scope gets the peer list and every
/// page of the handle table on its association, and never becomes a peer
/// (so it is not replicated to, balanced against, or taken over).
#[test]
fn a_reader_gets_the_handlespace_without_becoming_a_peer() {
    let mut r = registrar(RegistrarConfig {
        max_elements_per_table_response: 2,
        ..RegistrarConfig::default()
    });
    up(&mut r, PE_ASSOC, pe_addr(1));
    for id in 1..=5 {
        register(&mut r, t(0), PE_ASSOC, element(id, 1, Policy::RoundRobin));
    }
    drain(&mut r);
    let reader = AssocId(50);
    up(&mut r, reader, "10.0.0.50:40000".parse().unwrap());
    let servers = Servers {
        sender: pr(4242),
        receiver: None,
    };
    feed(
        &mut r,
        t(1),
        reader,
        Message::Enrp(EnrpMessage::ListRequest { servers }),
    );
    let out = drain(&mut r);
    let sent = enrp_sent(&out);
    assert!(matches!(
        sent.as_slice(),
        [(Destination::Association(a), EnrpMessage::ListResponse { rejected: false, .. })] if *a == reader
    ));
    let mut got = 0;
    for page in 0..10 {
        feed(
            &mut r,
            t(2 + page),
            reader,
            Message::Enrp(EnrpMessage::HandleTableRequest {
                servers,
                own_children_only: false,
            }),
        );
        let out = drain(&mut r);
        let sent = enrp_sent(&out);
        let [
            (
                Destination::Association(a),
                EnrpMessage::HandleTableResponse {
                    more_to_send,
                    pools,
                    ..
                },
            ),
        ] = sent.as_slice()
        else {
            panic!("one page for the reader: {sent:?}");
        };
        assert_eq!(*a, reader);
        got += pools.iter().map(|p| p.pool_elements.len()).sum::<usize>();
        if !more_to_send {
            break;
        }
    }
    assert_eq!(got, 5);
    assert_eq!(r.peers().count(), 0, "a reader is not a peer");
}

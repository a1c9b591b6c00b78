//! The pool user driven by hand: encoded messages in, transmits, events and
//! timers out. Test names cite CONFORMANCE.md IDs (P- for RFC 5356 policies).

use super::*;
use rand::{Rng, SeedableRng};
use rserpool_wire::{
    PPID_ASAP, Policy, RegistrationLife, TransportAddress, TransportUse, UserTransport,
};
use std::collections::BTreeSet;
use std::time::Duration;

const PR1: &str = "10.0.0.1:3863";
const PR2: &str = "10.0.0.2:3863";
const A1: AssocId = AssocId(1);
const A2: AssocId = AssocId(2);

fn s(secs: u64) -> Instant {
    Instant::from_epoch(Duration::from_secs(secs))
}

fn addr(a: &str) -> SocketAddr {
    a.parse().unwrap()
}

fn pool(name: &str) -> PoolHandle {
    PoolHandle::try_from(name).unwrap()
}

fn config() -> PoolUserConfig {
    let mut c = PoolUserConfig::default();
    c.hunt.registrars = vec![vec![addr(PR1)], vec![addr(PR2)]];
    c
}

fn new_pu(c: PoolUserConfig) -> PoolUser {
    PoolUser::new(c, ChaCha8Rng::seed_from_u64(11), s(0)).unwrap()
}

fn pe(id: u32, policy: Policy) -> wire::PoolElement {
    wire::PoolElement {
        id: PeId(id),
        home_registrar: None,
        registration_life: RegistrationLife(60_000),
        user_transport: UserTransport::Address(TransportAddress::sctp(
            7000,
            TransportUse::DataOnly,
            vec![format!("10.1.0.{id}").parse().unwrap()],
        )),
        policy,
        asap_transport: None,
    }
}

fn transmits(pu: &mut PoolUser) -> Vec<Transmit> {
    std::iter::from_fn(|| pu.poll_transmit()).collect()
}

fn events(pu: &mut PoolUser) -> Vec<PoolUserEvent> {
    std::iter::from_fn(|| pu.poll_event()).collect()
}

fn feed(pu: &mut PoolUser, now: Instant, assoc: AssocId, m: AsapMessage) {
    pu.handle_data(now, assoc, PPID_ASAP, Bytes::from(m.to_vec().unwrap()));
}

fn up(pu: &mut PoolUser, now: Instant, assoc: AssocId, peer: &str) {
    pu.handle_association(
        now,
        AssociationEvent::Up {
            assoc,
            peer: vec![addr(peer)],
        },
    );
}

fn advance(pu: &mut PoolUser, to: Instant) {
    while let Some(at) = pu.poll_timeout().filter(|at| *at <= to) {
        pu.handle_timeout(at);
    }
}

fn answer(name: &str, policy: Option<Policy>, pes: Vec<wire::PoolElement>) -> AsapMessage {
    AsapMessage::HandleResolutionResponse {
        accepted: false,
        pool_handle: pool(name),
        policy,
        pool_elements: pes,
        error: None,
    }
}

fn asap(t: &Transmit) -> (Destination, AsapMessage) {
    match t {
        Transmit::Send {
            to,
            message: wire::Message::Asap(m),
        } => (to.clone(), m.clone()),
        other => panic!("not an ASAP send: {other:?}"),
    }
}

fn request(name: &str, items: Option<u32>) -> AsapMessage {
    AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: pool(name),
        items,
    }
}

fn rr_pes() -> Vec<wire::PoolElement> {
    (1..=3).map(|i| pe(i, Policy::RoundRobin)).collect()
}

/// A PU whose home is PR1 over A1 and which has "p" (three RR PEs) cached at t=1 s.
fn resolved() -> PoolUser {
    let mut pu = new_pu(config());
    pu.resolve(s(0), pool("p"));
    transmits(&mut pu);
    up(&mut pu, s(1), A1, PR1);
    feed(&mut pu, s(1), A1, answer("p", None, rr_pes()));
    events(&mut pu);
    pu
}

#[test]
fn a29_a30_a39_miss_asks_the_home_and_a_fresh_hit_answers_from_cache() {
    let mut c = config();
    c.handle_resolution_items = Some(4);
    let mut pu = new_pu(c);
    let r0 = pu.resolve(s(0), pool("p"));
    let tx = transmits(&mut pu);
    assert_eq!(
        tx.iter().map(asap).collect::<Vec<_>>(),
        vec![(
            Destination::Addresses(vec![addr(PR1)]),
            request("p", Some(4))
        )]
    );
    assert_eq!(pu.poll_timeout(), Some(s(15)), "T1");
    up(&mut pu, s(1), A1, PR1);
    feed(&mut pu, s(1), A1, answer("p", None, rr_pes()));
    assert_eq!(
        events(&mut pu),
        vec![PoolUserEvent::Resolved {
            request: r0,
            pool_handle: pool("p"),
            from_cache: false
        }]
    );
    assert_eq!(pu.poll_timeout(), None, "T1 stopped (A-30)");
    assert_eq!(pu.home(), Some(A1));
    let r1 = pu.resolve(s(3), pool("p"));
    assert!(transmits(&mut pu).is_empty(), "fresh: no request (C4)");
    assert_eq!(
        events(&mut pu),
        vec![PoolUserEvent::Resolved {
            request: r1,
            pool_handle: pool("p"),
            from_cache: true
        }]
    );
    assert_eq!(pu.stats().cache_hits, 1);
}

#[test]
fn a39_stale_entry_is_refreshed_and_still_usable_meanwhile() {
    let mut pu = resolved();
    assert!(pu.is_fresh(s(5), &pool("p")));
    assert!(!pu.is_fresh(s(6), &pool("p")));
    pu.resolve(s(6), pool("p"));
    let tx = transmits(&mut pu);
    assert_eq!(
        asap(&tx[0]),
        (Destination::Association(A1), request("p", None))
    );
    // C3: the stale list still serves while the refresh is out.
    assert!(pu.select(&pool("p")).is_some());
    assert!(events(&mut pu).is_empty());
}

#[test]
fn a31_t1_resends_to_home_and_another_registrar_then_fails() {
    let mut pu = new_pu(config());
    let r = pu.resolve(s(0), pool("p"));
    transmits(&mut pu);
    advance(&mut pu, s(15));
    let dests: Vec<Destination> = transmits(&mut pu).iter().map(|t| asap(t).0).collect();
    assert_eq!(
        dests,
        vec![
            Destination::Addresses(vec![addr(PR1)]),
            Destination::Addresses(vec![addr(PR2)])
        ]
    );
    advance(&mut pu, s(30));
    assert_eq!(transmits(&mut pu).len(), 2);
    assert!(events(&mut pu).is_empty());
    advance(&mut pu, s(45));
    assert!(transmits(&mut pu).is_empty());
    assert_eq!(
        events(&mut pu),
        vec![PoolUserEvent::ResolutionFailed {
            request: r,
            pool_handle: pool("p"),
            reason: ResolutionFailure::Timeout
        }]
    );
    let st = pu.stats();
    assert_eq!((st.retransmissions, st.requests_sent, st.failed), (2, 5, 1));
    assert_eq!(pu.poll_timeout(), None);
    // The silent home is dropped: the next request hunts from the other one.
    pu.resolve(s(50), pool("q"));
    assert_eq!(
        asap(&transmits(&mut pu)[0]).0,
        Destination::Addresses(vec![addr(PR2)])
    );
}

#[test]
fn a32_another_registrar_answering_becomes_home() {
    let mut pu = new_pu(config());
    pu.resolve(s(0), pool("p"));
    up(&mut pu, s(0), A1, PR1);
    advance(&mut pu, s(15));
    transmits(&mut pu);
    up(&mut pu, s(16), A2, PR2);
    feed(&mut pu, s(16), A2, answer("p", None, rr_pes()));
    assert!(matches!(
        events(&mut pu)[..],
        [PoolUserEvent::Resolved { .. }]
    ));
    assert_eq!(pu.home(), Some(A2));
    assert_eq!(
        transmits(&mut pu),
        vec![Transmit::Close {
            assoc: A1,
            abort: false
        }]
    );
    pu.resolve(s(17), pool("q"));
    assert_eq!(asap(&transmits(&mut pu)[0]).0, Destination::Association(A2));
    assert_eq!(pu.stats().home_changes, 1);
}

#[test]
fn a33_home_association_loss_resends_to_the_next_registrar_at_once() {
    let mut pu = new_pu(config());
    pu.resolve(s(0), pool("p"));
    up(&mut pu, s(0), A1, PR1);
    transmits(&mut pu);
    pu.handle_association(
        s(2),
        AssociationEvent::Down {
            assoc: A1,
            reason: crate::DownReason::Lost,
        },
    );
    let tx = transmits(&mut pu);
    assert_eq!(
        tx.iter().map(asap).collect::<Vec<_>>(),
        vec![(Destination::Addresses(vec![addr(PR2)]), request("p", None))]
    );
    assert_eq!(pu.poll_timeout(), Some(s(17)));
}

/// A home that cannot be reached (its handshake fails) is left at once, as
/// a lost one is, and the PU can say which registrars it failed to reach.
#[test]
fn an_unreachable_home_is_left_at_once_and_reported() {
    let mut pu = new_pu(config());
    pu.resolve(s(0), pool("p"));
    transmits(&mut pu);
    assert!(pu.unreachable_registrars().is_empty());
    pu.handle_association(
        s(1),
        AssociationEvent::Down {
            assoc: AssocId(99),
            reason: crate::DownReason::HandshakeFailed,
        },
    );
    let tx = transmits(&mut pu);
    assert_eq!(
        tx.iter().map(asap).collect::<Vec<_>>(),
        vec![(Destination::Addresses(vec![addr(PR2)]), request("p", None))]
    );
    assert_eq!(pu.unreachable_registrars(), &[(vec![addr(PR1)], 1)][..],);
    // Reaching a registrar clears the list.
    up(&mut pu, s(2), A2, PR2);
    assert!(pu.unreachable_registrars().is_empty());
}

#[test]
fn a40_concurrent_requests_for_a_pool_share_one_resolution() {
    let mut pu = new_pu(config());
    let ids: Vec<RequestId> = (0..3).map(|_| pu.resolve(s(0), pool("p"))).collect();
    assert_eq!(transmits(&mut pu).len(), 1);
    feed(&mut pu, s(1), A1, answer("p", None, rr_pes()));
    let answered: Vec<RequestId> = events(&mut pu)
        .into_iter()
        .map(|e| match e {
            PoolUserEvent::Resolved { request, .. } => request,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(answered, ids);
    assert_eq!(pu.stats().queued, 2);
}

#[test]
fn a36_unknown_pool_handle_fails_with_the_cause() {
    let mut pu = new_pu(config());
    let r = pu.resolve(s(0), pool("nope"));
    feed(
        &mut pu,
        s(1),
        A1,
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            pool_handle: pool("nope"),
            policy: None,
            pool_elements: vec![],
            error: Some(vec![ErrorCause::new(CauseCode::UnknownPoolHandle)]),
        },
    );
    let ev = events(&mut pu);
    let PoolUserEvent::ResolutionFailed {
        request, reason, ..
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(*request, r);
    assert!(reason.is_unknown_pool());
    assert!(pu.cached(&pool("nope")).is_none());
    assert!(pu.select(&pool("nope")).is_none());
}

#[test]
fn a49_unreachable_pe_is_reported_once_and_dropped_from_the_cache() {
    let mut pu = resolved();
    assert!(pu.report_unreachable(s(2), &pool("p"), PeId(2)));
    assert_eq!(
        transmits(&mut pu).iter().map(asap).collect::<Vec<_>>(),
        vec![(
            Destination::Association(A1),
            AsapMessage::EndpointUnreachable {
                pool_handle: pool("p"),
                pe_id: PeId(2)
            }
        )]
    );
    let ids: Vec<u32> = pu
        .cached(&pool("p"))
        .unwrap()
        .elements
        .iter()
        .map(|p| p.id.0)
        .collect();
    assert_eq!(ids, vec![1, 3]);
    assert!(
        !pu.report_unreachable(s(2), &pool("p"), PeId(2)),
        "same failure"
    );
    assert!(transmits(&mut pu).is_empty());
    // Listed again by a later resolution: a new failure may be reported.
    pu.resolve(s(10), pool("p"));
    feed(&mut pu, s(10), A1, answer("p", None, rr_pes()));
    transmits(&mut pu);
    assert!(pu.report_unreachable(s(11), &pool("p"), PeId(2)));
    let st = pu.stats();
    assert_eq!((st.unreachable_reported, st.unreachable_suppressed), (2, 1));
}

#[test]
fn a50_a_pe_never_resolved_is_not_reported() {
    let mut pu = resolved();
    assert!(!pu.report_unreachable(s(2), &pool("p"), PeId(99)));
    assert!(!pu.report_unreachable(s(2), &pool("other"), PeId(1)));
    assert!(transmits(&mut pu).is_empty());
}

#[test]
fn a37_p_round_robin_without_policy_parameter_cycles_the_list() {
    let mut pu = resolved();
    let picks: Vec<u32> = (0..7)
        .map(|_| pu.select(&pool("p")).unwrap().id.0)
        .collect();
    assert_eq!(picks, vec![1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(
        pu.cached(&pool("p")).unwrap().policy,
        wire::PolicyType::RoundRobin
    );
}

/// Shares of each PE id over `n` draws.
fn shares(pu: &mut PoolUser, name: &str, ids: &[u32], n: u32) -> Vec<f64> {
    let mut counts = vec![0u32; ids.len()];
    for _ in 0..n {
        let id = pu.select(&pool(name)).unwrap().id.0;
        counts[ids.iter().position(|i| *i == id).unwrap()] += 1;
    }
    counts
        .iter()
        .map(|c| f64::from(*c) / f64::from(n))
        .collect()
}

fn cache_pool(pu: &mut PoolUser, name: &str, policy: Policy, pes: Vec<wire::PoolElement>) {
    pu.resolve(s(0), pool(name));
    feed(pu, s(0), A1, answer(name, Some(policy), pes));
    events(pu);
    transmits(pu);
}

#[test]
fn p_weighted_random_follows_weights_within_tolerance() {
    // Seed 11 (new_pu). 100 000 draws; the standard deviation of a share
    // near 0.7 is about 0.0015, so ±0.01 is more than six deviations.
    let mut pu = new_pu(config());
    let w = |id, weight| pe(id, Policy::WeightedRandom { weight });
    cache_pool(
        &mut pu,
        "w",
        Policy::WeightedRandom { weight: 0 },
        vec![w(1, 1), w(2, 2), w(3, 7)],
    );
    let got = shares(&mut pu, "w", &[1, 2, 3], 100_000);
    for (g, want) in got.iter().zip([0.1, 0.2, 0.7]) {
        assert!((g - want).abs() < 0.01, "seed 11: shares {got:?}");
    }
}

#[test]
fn p_random_is_uniform_within_tolerance() {
    let mut pu = new_pu(config());
    let pes = (1..=4).map(|i| pe(i, Policy::Random)).collect();
    cache_pool(&mut pu, "r", Policy::Random, pes);
    let got = shares(&mut pu, "r", &[1, 2, 3, 4], 100_000);
    assert!(
        got.iter().all(|g| (g - 0.25).abs() < 0.01),
        "seed 11: shares {got:?}"
    );
}

#[test]
fn p_randomized_least_used_weighs_by_spare_capacity() {
    let mut pu = new_pu(config());
    let rlu = |id, load| pe(id, Policy::RandomizedLeastUsed { load });
    cache_pool(
        &mut pu,
        "rlu",
        Policy::RandomizedLeastUsed { load: 0 },
        vec![rlu(1, u32::MAX), rlu(2, 0)],
    );
    assert_eq!(shares(&mut pu, "rlu", &[1, 2], 1000), vec![0.0, 1.0]);
}

#[test]
fn p_priority_takes_the_highest_and_least_used_the_first() {
    let mut pu = new_pu(config());
    let prio = |id, priority| pe(id, Policy::Priority { priority });
    cache_pool(
        &mut pu,
        "prio",
        Policy::Priority { priority: 0 },
        vec![prio(1, 5), prio(2, 9), prio(3, 9), prio(4, 1)],
    );
    assert!((0..10).all(|_| pu.select(&pool("prio")).unwrap().id == PeId(2)));
    let lu = |id, load| pe(id, Policy::LeastUsed { load });
    cache_pool(
        &mut pu,
        "lu",
        Policy::LeastUsed { load: 0 },
        vec![lu(7, 10), lu(8, 20)],
    );
    assert!((0..10).all(|_| pu.select(&pool("lu")).unwrap().id == PeId(7)));
}

#[test]
fn a56_resolution_waits_for_an_announced_registrar() {
    let mut c = config();
    c.hunt.registrars.clear();
    let mut pu = new_pu(c);
    pu.resolve(s(0), pool("p"));
    assert!(transmits(&mut pu).is_empty());
    let announce = AsapMessage::ServerAnnounce {
        server_id: wire::PrId::new(3).unwrap(),
        transports: vec![],
    };
    pu.handle_announce(
        s(2),
        addr("192.0.2.9:1234"),
        PPID_ASAP,
        Bytes::from(announce.to_vec().unwrap()),
    );
    assert_eq!(
        transmits(&mut pu).iter().map(asap).collect::<Vec<_>>(),
        vec![(
            Destination::Addresses(vec![addr("192.0.2.9:3863")]),
            request("p", None)
        )]
    );
}

#[test]
fn a57_without_any_registrar_the_resolution_fails_as_such() {
    let mut c = config();
    c.hunt.registrars.clear();
    let mut pu = new_pu(c);
    let r = pu.resolve(s(0), pool("p"));
    advance(&mut pu, s(45));
    assert_eq!(
        events(&mut pu),
        vec![PoolUserEvent::ResolutionFailed {
            request: r,
            pool_handle: pool("p"),
            reason: ResolutionFailure::NoRegistrar
        }]
    );
}

#[test]
fn w06_w12_a68_bad_input_is_counted_and_answered_where_required() {
    let mut pu = resolved();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for len in 0..200 {
        let junk: Vec<u8> = (0..len % 48).map(|_| rng.random()).collect();
        pu.handle_data(s(2), A1, PPID_ASAP, Bytes::from(junk));
    }
    assert!(pu.stats().inbound.undecodable >= 190);
    assert!(pu.cached(&pool("p")).is_some(), "state survives");
    transmits(&mut pu);
    // Unknown message type with high bits 01: ASAP_ERROR carrying it.
    let unknown = Bytes::from_static(&[0x41, 0, 0, 4]);
    pu.handle_data(s(2), A1, PPID_ASAP, unknown.clone());
    assert_eq!(
        asap(&transmits(&mut pu)[0]).1,
        AsapMessage::Error {
            causes: vec![ErrorCause::unrecognized_message(unknown)]
        }
    );
    // A response with a skip-and-report parameter (0xC033) is used and reported.
    pu.resolve(s(10), pool("p"));
    transmits(&mut pu);
    let mut buf = answer("p", None, vec![pe(5, Policy::RoundRobin)])
        .to_vec()
        .unwrap();
    let extra = [0xC0, 0x33, 0, 8, 1, 2, 3, 4];
    buf.extend_from_slice(&extra);
    let len = u16::try_from(buf.len()).unwrap();
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    pu.handle_data(s(10), A1, PPID_ASAP, Bytes::from(buf));
    assert_eq!(
        asap(&transmits(&mut pu)[0]).1,
        AsapMessage::Error {
            causes: vec![ErrorCause::unrecognized_parameter(Bytes::copy_from_slice(
                &extra
            ))]
        }
    );
    assert_eq!(pu.select(&pool("p")).unwrap().id, PeId(5));
    // An ASAP_ERROR from the registrar is surfaced.
    let causes = vec![ErrorCause::new(CauseCode::Unspecified)];
    feed(
        &mut pu,
        s(11),
        A1,
        AsapMessage::Error {
            causes: causes.clone(),
        },
    );
    assert!(events(&mut pu).contains(&PoolUserEvent::PeerError { assoc: A1, causes }));
    // A response nobody asked for changes nothing.
    feed(&mut pu, s(12), A1, answer("zzz", None, rr_pes()));
    assert!(pu.cached(&pool("zzz")).is_none());
    assert_eq!(pu.stats().unsolicited_responses, 1);
}

#[test]
fn random_inputs_never_panic_and_answer_every_request_exactly_once() {
    let pools = ["p", "q", "r"];
    let peers = [PR1, PR2, "10.0.0.3:3863"];
    let policies = [
        None,
        Some(Policy::Random),
        Some(Policy::WeightedRandom { weight: 0 }),
        Some(Policy::Priority { priority: 0 }),
        Some(Policy::LeastUsed { load: 0 }),
    ];
    let (mut resolved_total, mut failed_total) = (0, 0);
    for seed in 0..40u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pu = new_pu(config());
        let mut now = s(0);
        let mut up_now = BTreeSet::new();
        let mut issued = BTreeSet::new();
        let mut answered = BTreeSet::new();
        let mut step = 0;
        let mut check = |pu: &mut PoolUser, up_now: &mut BTreeSet<AssocId>, step: usize| {
            for t in transmits(pu) {
                match t {
                    Transmit::Send {
                        to: Destination::Association(a),
                        ..
                    } => assert!(
                        up_now.contains(&a),
                        "seed {seed} step {step}: send on dead {a:?}"
                    ),
                    Transmit::Close { assoc, .. } => {
                        assert!(
                            up_now.remove(&assoc),
                            "seed {seed} step {step}: close of dead {assoc:?}"
                        )
                    }
                    _ => {}
                }
            }
            for e in events(pu) {
                let request = match e {
                    PoolUserEvent::Resolved { request, .. } => request,
                    PoolUserEvent::ResolutionFailed { request, .. } => request,
                    _ => continue,
                };
                assert!(
                    answered.insert(request),
                    "seed {seed} step {step}: {request} answered twice"
                );
            }
            for p in pu.queries.keys() {
                assert!(
                    pu.timers.is_set(&Timer::Request(p.clone())),
                    "seed {seed} step {step}: query without T1"
                );
            }
            if let Some(a) = pu.home() {
                assert!(
                    pu.assocs.contains_key(&a),
                    "seed {seed} step {step}: home not up"
                );
            }
        };
        for _ in 0..300 {
            step += 1;
            let assoc = AssocId(rng.random_range(1..5));
            let name = pools[rng.random_range(0..3)];
            match rng.random_range(0..100) {
                0..20 => {
                    issued.insert(pu.resolve(now, pool(name)));
                }
                20..30 => {
                    let fresh = up_now.insert(assoc);
                    if fresh {
                        up(&mut pu, now, assoc, peers[rng.random_range(0..3)]);
                    }
                }
                30..35 => {
                    up_now.remove(&assoc);
                    pu.handle_association(
                        now,
                        AssociationEvent::Down {
                            assoc,
                            reason: crate::DownReason::Lost,
                        },
                    );
                }
                35..60 if up_now.contains(&assoc) => {
                    let m = if rng.random_bool(0.8) {
                        let n = rng.random_range(1..5);
                        let pes = (0..n)
                            .map(|i| {
                                pe(
                                    i + 1,
                                    Policy::WeightedRandom {
                                        weight: rng.random_range(0..3),
                                    },
                                )
                            })
                            .collect();
                        answer(name, policies[rng.random_range(0..5)].clone(), pes)
                    } else {
                        AsapMessage::HandleResolutionResponse {
                            accepted: false,
                            pool_handle: pool(name),
                            policy: None,
                            pool_elements: vec![],
                            error: Some(vec![ErrorCause::new(CauseCode::UnknownPoolHandle)]),
                        }
                    };
                    feed(&mut pu, now, assoc, m);
                }
                60..80 => {
                    if let Some(at) = pu.poll_timeout() {
                        now = at.max(now);
                        pu.handle_timeout(now);
                    }
                }
                80..88 => {
                    pu.select(&pool(name));
                }
                88..94 => {
                    pu.report_unreachable(now, &pool(name), PeId(rng.random_range(1..5)));
                }
                94..96 => {
                    let ann = AsapMessage::ServerAnnounce {
                        server_id: wire::PrId::new(rng.random_range(1..4)).unwrap(),
                        transports: vec![],
                    };
                    pu.handle_announce(
                        now,
                        addr("10.0.0.7:1"),
                        PPID_ASAP,
                        Bytes::from(ann.to_vec().unwrap()),
                    );
                }
                _ if up_now.contains(&assoc) => {
                    let junk: Vec<u8> =
                        (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
                    pu.handle_data(now, assoc, PPID_ASAP, Bytes::from(junk));
                }
                _ => {}
            }
            check(&mut pu, &mut up_now, step);
        }
        // Left alone, every outstanding request ends (answered or failed).
        while let Some(at) = pu.poll_timeout() {
            pu.handle_timeout(at);
            step += 1;
            check(&mut pu, &mut up_now, step);
        }
        assert_eq!(issued, answered, "seed {seed}");
        let st = pu.stats();
        resolved_total += st.resolved + st.cache_hits;
        failed_total += st.failed;
    }
    assert!(
        resolved_total > 100 && failed_total > 100,
        "{resolved_total} {failed_total}"
    );
}

// ----- sessions (RFC 5352 §3.8-§3.9, §6.5.5) -----

use crate::io::DownReason;
use crate::session::{SendError, SendOptions};

const PE_A: AssocId = AssocId(10);
const PE_B: AssocId = AssocId(11);

fn pe_addr(id: u32) -> String {
    format!("10.1.0.{id}:7000")
}

fn data(pu: &mut PoolUser, session: SessionId, text: &'static str) -> u64 {
    pu.send_data(
        session,
        99,
        Bytes::from_static(text.as_bytes()),
        SendOptions::default(),
    )
    .unwrap()
}

fn sent_data(tx: &[Transmit]) -> Vec<(Destination, Bytes)> {
    tx.iter()
        .filter_map(|t| match t {
            Transmit::Data { to, data, .. } => Some((to.clone(), data.clone())),
            _ => None,
        })
        .collect()
}

/// A session on "p" connected to PE 1 over PE_A at t=2 s, with "one" sent.
fn connected() -> (PoolUser, SessionId) {
    let mut pu = resolved();
    let session = pu.open_session(s(2), pool("p"));
    data(&mut pu, session, "one");
    let tx = transmits(&mut pu);
    assert_eq!(
        tx,
        vec![Transmit::Connect {
            to: vec![addr(&pe_addr(1))]
        }],
        "a cached pool needs no resolution; nothing goes out before the association"
    );
    up(&mut pu, s(2), PE_A, &pe_addr(1));
    assert_eq!(
        sent_data(&transmits(&mut pu)),
        vec![(Destination::Association(PE_A), Bytes::from_static(b"one"))]
    );
    assert_eq!(
        events(&mut pu),
        vec![PoolUserEvent::SessionConnected {
            session,
            pe_id: PeId(1),
            cookie_echoed: false
        }]
    );
    (pu, session)
}

#[test]
fn a40_a62_a63_a66_a_failed_pe_is_reported_and_the_next_gets_the_newest_cookie_first() {
    let (mut pu, session) = connected();
    for c in ["c1", "c2"] {
        feed(
            &mut pu,
            s(3),
            PE_A,
            AsapMessage::Cookie {
                cookie: Bytes::from_static(c.as_bytes()),
            },
        );
    }
    pu.handle_data(s(3), PE_A, 99, Bytes::from_static(b"reply"));
    assert_eq!(
        events(&mut pu),
        vec![PoolUserEvent::SessionData {
            session,
            ppid: 99,
            data: Bytes::from_static(b"reply")
        }]
    );
    pu.handle_association(
        s(4),
        AssociationEvent::Down {
            assoc: PE_A,
            reason: DownReason::Lost,
        },
    );
    assert_eq!(data(&mut pu, session, "two"), 1, "the second message");
    let tx = transmits(&mut pu);
    assert_eq!(
        asap(&tx[0]),
        (
            Destination::Association(A1),
            AsapMessage::EndpointUnreachable {
                pool_handle: pool("p"),
                pe_id: PeId(1)
            }
        )
    );
    assert_eq!(
        tx[1],
        Transmit::Connect {
            to: vec![addr(&pe_addr(2))]
        }
    );
    assert_eq!(
        events(&mut pu),
        vec![PoolUserEvent::Failover {
            session,
            from: PeId(1),
            to: PeId(2),
            reason: FailoverReason::AssociationDown(DownReason::Lost),
            resumes_at: 1
        }]
    );
    up(&mut pu, s(4), PE_B, &pe_addr(2));
    let tx = transmits(&mut pu);
    assert_eq!(
        asap(&tx[0]),
        (
            Destination::Association(PE_B),
            AsapMessage::CookieEcho {
                cookie: Bytes::from_static(b"c2")
            }
        ),
        "the newest cookie, first"
    );
    assert_eq!(
        sent_data(&tx),
        vec![(Destination::Association(PE_B), Bytes::from_static(b"two"))]
    );
    assert_eq!(pu.session_pe(session), Some(PeId(2)));
    assert_eq!(pu.stats().failovers, 1);
}

#[test]
fn a65_the_business_card_order_comes_before_the_cache() {
    let (mut pu, session) = connected();
    feed(
        &mut pu,
        s(3),
        PE_A,
        AsapMessage::BusinessCard {
            pool_handle: pool("p"),
            policy: None,
            pool_elements: vec![pe(1, Policy::RoundRobin), pe(3, Policy::RoundRobin)],
        },
    );
    pu.fail_over(s(4), session).unwrap();
    let tx = transmits(&mut pu);
    assert!(tx.contains(&Transmit::Connect {
        to: vec![addr(&pe_addr(3))]
    }));
    assert!(
        tx.contains(&Transmit::Close {
            assoc: PE_A,
            abort: true
        }),
        "the association to the PE given up is closed"
    );
}

#[test]
fn a50_a_pe_never_sent_to_is_not_reported_and_a_send_without_failover_fails() {
    let mut pu = resolved();
    let session = pu.open_session(s(2), pool("p"));
    transmits(&mut pu);
    assert_eq!(
        pu.send_data(
            session,
            99,
            Bytes::from_static(b"x"),
            SendOptions {
                failover: false,
                ..SendOptions::default()
            }
        ),
        Err(SendError::NotConnected)
    );
    assert_eq!(
        pu.send_data(session, PPID_ASAP, Bytes::new(), SendOptions::default()),
        Err(SendError::ReservedPpid(PPID_ASAP))
    );
    let timeout = pu.config().session.connect_timeout;
    advance(&mut pu, s(2) + timeout);
    let tx = transmits(&mut pu);
    assert!(
        !tx.iter().any(|t| matches!(
            t,
            Transmit::Send {
                message: wire::Message::Asap(AsapMessage::EndpointUnreachable { .. }),
                ..
            }
        )),
        "{tx:?}"
    );
    assert!(tx.contains(&Transmit::Abandon {
        to: vec![addr(&pe_addr(1))]
    }));
    assert!(matches!(
        events(&mut pu)[..],
        [PoolUserEvent::Failover {
            reason: FailoverReason::ConnectTimeout,
            ..
        }]
    ));
}

#[test]
fn a_session_with_no_pe_left_waits_and_resolves_again() {
    let (mut pu, session) = connected();
    for (assoc, id) in [(PE_A, 1), (PE_B, 2)] {
        pu.handle_association(
            s(3),
            AssociationEvent::Down {
                assoc,
                reason: DownReason::Aborted,
            },
        );
        transmits(&mut pu);
        up(
            &mut pu,
            s(3),
            if id == 1 { PE_B } else { AssocId(12) },
            &pe_addr(id + 1),
        );
        transmits(&mut pu);
    }
    pu.handle_association(
        s(3),
        AssociationEvent::Down {
            assoc: AssocId(12),
            reason: DownReason::Aborted,
        },
    );
    // Every cached PE has failed: the pool is resolved again.
    let tx = transmits(&mut pu);
    assert!(tx.iter().any(|t| matches!(
        t,
        Transmit::Send {
            message: wire::Message::Asap(AsapMessage::HandleResolution { .. }),
            ..
        }
    )));
    feed(
        &mut pu,
        s(3),
        A1,
        answer("p", None, vec![pe(1, Policy::RoundRobin)]),
    );
    let ev = events(&mut pu);
    assert!(
        matches!(ev.last(), Some(PoolUserEvent::SessionUnavailable { .. })),
        "PE 1 failed a moment ago: {ev:?}"
    );
    // While the registrar lists only PEs that failed recently, the session
    // waits; once the failure is older than failed_pe_memory, PE 1 gets
    // another chance at the next resolution.
    let memory = pu.config().session.failed_pe_memory;
    advance(&mut pu, s(3) + memory);
    let tx = transmits(&mut pu);
    assert!(
        !tx.iter().any(|t| matches!(t, Transmit::Connect { .. })),
        "{tx:?}"
    );
    advance(&mut pu, s(4) + memory);
    feed(
        &mut pu,
        s(4) + memory,
        A1,
        answer("p", None, vec![pe(1, Policy::RoundRobin)]),
    );
    assert!(transmits(&mut pu).contains(&Transmit::Connect {
        to: vec![addr(&pe_addr(1))]
    }));
    assert!(pu.close_session(session).is_ok());
    assert_eq!(
        events(&mut pu).last(),
        Some(&PoolUserEvent::SessionClosed { session })
    );
}

#[test]
fn a66_messages_sent_with_resend_and_not_released_go_again_first_in_order() {
    let (mut pu, session) = connected();
    let resend = SendOptions {
        resend: true,
        ..SendOptions::default()
    };
    for text in ["a", "b", "c"] {
        pu.send_data(session, 99, Bytes::from_static(text.as_bytes()), resend)
            .unwrap();
    }
    transmits(&mut pu);
    // "a" (seq 1) was answered; "b" and "c" were not when the PE failed.
    pu.release(session, 1).unwrap();
    pu.handle_association(
        s(4),
        AssociationEvent::Down {
            assoc: PE_A,
            reason: DownReason::Lost,
        },
    );
    pu.send_data(session, 99, Bytes::from_static(b"d"), resend)
        .unwrap();
    assert!(matches!(
        events(&mut pu)[..],
        [PoolUserEvent::Failover { resumes_at: 2, .. }]
    ));
    transmits(&mut pu);
    up(&mut pu, s(4), PE_B, &pe_addr(2));
    let to = Destination::Association(PE_B);
    assert_eq!(
        sent_data(&transmits(&mut pu)),
        ["b", "c", "d"]
            .map(|t| (to.clone(), Bytes::from_static(t.as_bytes())))
            .to_vec()
    );
}

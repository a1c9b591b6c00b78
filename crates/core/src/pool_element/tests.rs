//! The pool element driven by hand: encoded messages in, transmits, events
//! and timers out. Test names cite CONFORMANCE.md IDs.

use super::*;
use crate::session::SendError;
use rand::SeedableRng;
use rserpool_wire::{
    CauseCode, EnrpMessage, PPID_ASAP, PPID_ENRP, PoolHandle, Servers, TransportAddress,
    TransportUse, UserTransport,
};
use std::collections::BTreeSet;
use std::time::Duration;

const PR1: &str = "10.0.0.1:3863";
const PR2: &str = "10.0.0.2:3863";
const PR9: &str = "10.0.0.9:3863";
const A1: AssocId = AssocId(1);
const A2: AssocId = AssocId(2);
const A9: AssocId = AssocId(9);
const ID: PeId = PeId(0x1234_5678);

fn s(secs: u64) -> Instant {
    Instant::from_epoch(Duration::from_secs(secs))
}

fn addr(a: &str) -> SocketAddr {
    a.parse().unwrap()
}

fn handle() -> PoolHandle {
    PoolHandle::try_from("EchoPool").unwrap()
}

fn config() -> PoolElementConfig {
    let mut c = PoolElementConfig::new(
        handle(),
        UserTransport::Address(TransportAddress::sctp(
            7000,
            TransportUse::DataPlusControl,
            vec!["10.1.0.1".parse().unwrap()],
        )),
        Policy::LeastUsed { load: 0 },
    );
    c.pe_id = Some(ID);
    c.hunt.registrars = vec![vec![addr(PR1)], vec![addr(PR2)]];
    c
}

fn new_pe(c: PoolElementConfig) -> PoolElement {
    PoolElement::new(c, ChaCha8Rng::seed_from_u64(7), s(0)).unwrap()
}

/// What the PE sends (abandoned opens aside: `t5_abandons_the_open` checks those).
fn transmits(pe: &mut PoolElement) -> Vec<Transmit> {
    std::iter::from_fn(|| pe.poll_transmit())
        .filter(|t| !matches!(t, Transmit::Abandon { .. }))
        .collect()
}

fn events(pe: &mut PoolElement) -> Vec<PoolElementEvent> {
    std::iter::from_fn(|| pe.poll_event()).collect()
}

fn feed(pe: &mut PoolElement, now: Instant, assoc: AssocId, m: AsapMessage) {
    pe.handle_data(now, assoc, PPID_ASAP, Bytes::from(m.to_vec().unwrap()));
}

fn up(pe: &mut PoolElement, now: Instant, assoc: AssocId, peer: &str) {
    pe.handle_association(
        now,
        AssociationEvent::Up {
            assoc,
            peer: vec![addr(peer)],
        },
    );
}

/// Fires every timer due up to `to`, each at its own deadline.
fn advance(pe: &mut PoolElement, to: Instant) {
    while let Some(at) = pe.poll_timeout().filter(|at| *at <= to) {
        pe.handle_timeout(at);
    }
}

fn response(rejected: bool, error: Option<Vec<ErrorCause>>) -> AsapMessage {
    AsapMessage::RegistrationResponse {
        rejected,
        pool_handle: handle(),
        pe_id: ID,
        error,
    }
}

fn keep_alive(home: bool, server: u32, pool: &str, pe_id: Option<PeId>) -> AsapMessage {
    AsapMessage::EndpointKeepAlive {
        home,
        server_id: PrId::new(server).unwrap(),
        pool_handle: PoolHandle::try_from(pool).unwrap(),
        pe_id,
    }
}

/// The ASAP message of a Send transmit and where it goes.
fn asap(t: &Transmit) -> (Destination, AsapMessage) {
    match t {
        Transmit::Send {
            to,
            message: wire::Message::Asap(m),
        } => (to.clone(), m.clone()),
        other => panic!("not an ASAP send: {other:?}"),
    }
}

fn assert_registration(t: &Transmit, to: Destination) -> wire::PoolElement {
    let (dest, m) = asap(t);
    assert_eq!(dest, to);
    match m {
        AsapMessage::Registration {
            pool_handle,
            pool_element,
        } => {
            assert_eq!(pool_handle, handle());
            assert_eq!(pool_element.id, ID);
            pool_element
        }
        other => panic!("expected a registration, got {other}"),
    }
}

/// A PE registered at PR1 over A1 at t=1 s.
fn registered() -> PoolElement {
    let mut pe = new_pe(config());
    transmits(&mut pe);
    up(&mut pe, s(1), A1, PR1);
    feed(&mut pe, s(1), A1, response(false, None));
    assert_eq!(pe.home(), Some(A1));
    events(&mut pe);
    pe
}

#[test]
fn a04_a06_first_registration_goes_to_the_first_registrar() {
    let mut pe = new_pe(config());
    let tx = transmits(&mut pe);
    assert_eq!(tx.len(), 1);
    let p = assert_registration(&tx[0], Destination::Addresses(vec![addr(PR1)]));
    assert_eq!(p.registration_life, wire::RegistrationLife(60_000));
    assert_eq!(p.policy, Policy::LeastUsed { load: 0 });
    assert_eq!(p.home_registrar, None);
    assert_eq!(p.asap_transport, None);
    // T5 guards the association until it is up.
    assert_eq!(pe.poll_timeout(), Some(s(10)));
}

#[test]
fn a06_random_pe_id_comes_from_the_callers_rng() {
    let mut c = config();
    c.pe_id = None;
    let id = |seed| {
        PoolElement::new(c.clone(), ChaCha8Rng::seed_from_u64(seed), s(0))
            .unwrap()
            .pe_id()
    };
    assert_eq!(id(1), id(1));
    assert_ne!(id(1), id(2));
}

#[test]
fn a09_a11_registered_then_reregisters_every_t4_with_the_same_id() {
    let mut pe = new_pe(config());
    transmits(&mut pe);
    up(&mut pe, s(2), A1, PR1);
    // T2 runs from the moment the association is up.
    assert_eq!(pe.poll_timeout(), Some(s(32)));
    feed(&mut pe, s(3), A1, response(false, None));
    assert_eq!(
        events(&mut pe),
        vec![PoolElementEvent::Registered {
            assoc: A1,
            pe_id: ID,
            server_id: None
        }]
    );
    // T4 = min(10 min, 60 s - 20 s).
    assert_eq!(pe.poll_timeout(), Some(s(43)));
    advance(&mut pe, s(43));
    let tx = transmits(&mut pe);
    assert_eq!(tx.len(), 1);
    assert_registration(&tx[0], Destination::Association(A1));
    feed(&mut pe, s(44), A1, response(false, None));
    assert!(events(&mut pe).is_empty(), "renewals are not events");
    assert_eq!(pe.poll_timeout(), Some(s(84)));
    assert_eq!(pe.stats().reregistrations, 1);
    assert_eq!(pe.stats().registrations_sent, 2);
}

#[test]
fn a13_a10_t2_retries_max_reg_attempt_times_then_hunts_the_next_registrar() {
    let mut pe = new_pe(config());
    transmits(&mut pe);
    up(&mut pe, s(0), A1, PR1);
    advance(&mut pe, s(30));
    let tx = transmits(&mut pe);
    assert_eq!(tx.len(), 1, "second attempt at the same registrar");
    assert_registration(&tx[0], Destination::Association(A1));
    advance(&mut pe, s(60));
    let tx = transmits(&mut pe);
    assert_eq!(
        tx[0],
        Transmit::Close {
            assoc: A1,
            abort: true
        }
    );
    assert_registration(&tx[1], Destination::Addresses(vec![addr(PR2)]));
    assert_eq!(
        events(&mut pe),
        vec![PoolElementEvent::PrUnreachable {
            addresses: vec![addr(PR1)]
        }]
    );
    up(&mut pe, s(61), A2, PR2);
    feed(&mut pe, s(61), A2, response(false, None));
    assert_eq!(pe.home(), Some(A2));
    assert_eq!(pe.stats().registration_timeouts, 2);
}

#[test]
fn a59_unreachable_registrars_are_retried_with_doubling_t5() {
    let mut pe = new_pe(config());
    let mut sends = Vec::new();
    let mut retry = Vec::new();
    let mut now = s(0);
    for _ in 0..6 {
        for t in transmits(&mut pe) {
            if let (Destination::Addresses(a), _) = asap(&t) {
                sends.push((now.since_epoch().as_secs(), a[0].to_string()));
            }
        }
        for e in events(&mut pe) {
            if let PoolElementEvent::NoRegistrar { retry_at: Some(at) } = e {
                retry.push(at.since_epoch().as_secs());
            }
        }
        now = pe.poll_timeout().unwrap();
        pe.handle_timeout(now);
    }
    // T5: 10 s for PR1, 20 s for PR2, round over: pause 40 s, then 60 s (RETRAN-MAX).
    assert_eq!(
        sends,
        vec![
            (0, PR1.to_string()),
            (10, PR2.to_string()),
            (70, PR1.to_string()),
            (130, PR2.to_string()),
        ]
    );
    assert_eq!(retry, vec![70, 250]);
    assert_eq!(pe.stats().hunt_rounds_failed, 2);
}

#[test]
fn a10_failed_handshake_moves_to_the_next_registrar_at_once() {
    let mut pe = new_pe(config());
    transmits(&mut pe);
    pe.handle_association(
        s(1),
        AssociationEvent::Down {
            assoc: AssocId(77),
            reason: DownReason::HandshakeFailed,
        },
    );
    let tx = transmits(&mut pe);
    assert_registration(&tx[0], Destination::Addresses(vec![addr(PR2)]));
    assert_eq!(pe.stats().connect_failures, 1);
}

#[test]
fn a12_rejection_is_reported_and_not_retried_unchanged() {
    let mut pe = new_pe(config());
    transmits(&mut pe);
    up(&mut pe, s(0), A1, PR1);
    let cause = ErrorCause::inconsistent_policy(&Policy::RoundRobin);
    feed(&mut pe, s(1), A1, response(true, Some(vec![cause.clone()])));
    assert_eq!(
        events(&mut pe),
        vec![PoolElementEvent::RegistrationRejected {
            assoc: A1,
            causes: vec![cause]
        }]
    );
    assert_eq!(
        transmits(&mut pe),
        vec![Transmit::Close {
            assoc: A1,
            abort: false
        }]
    );
    assert_eq!(pe.poll_timeout(), None);
    advance(&mut pe, s(3600));
    assert!(transmits(&mut pe).is_empty());
    assert!(!pe.is_registered());
    // Corrected values register again, from the first registrar.
    pe.set_policy(s(5), Policy::RoundRobin);
    let tx = transmits(&mut pe);
    let p = assert_registration(&tx[0], Destination::Addresses(vec![addr(PR1)]));
    assert_eq!(p.policy, Policy::RoundRobin);
}

#[test]
fn a42_a45_keep_alive_is_acked_on_its_association_with_or_without_pe_id() {
    let mut pe = registered();
    for pe_id in [None, Some(ID)] {
        feed(&mut pe, s(5), A1, keep_alive(false, 1, "EchoPool", pe_id));
        let tx = transmits(&mut pe);
        assert_eq!(tx.len(), 1);
        assert_eq!(
            asap(&tx[0]),
            (
                Destination::Association(A1),
                AsapMessage::EndpointKeepAliveAck {
                    pool_handle: handle(),
                    pe_id: ID
                }
            )
        );
    }
    assert_eq!(pe.home_server_id(), PrId::new(1));
    // H=0 from a registrar that is not home: acked there, nothing else.
    up(&mut pe, s(6), A9, PR9);
    feed(&mut pe, s(6), A9, keep_alive(false, 9, "EchoPool", None));
    let tx = transmits(&mut pe);
    assert_eq!(tx.len(), 1);
    assert_eq!(asap(&tx[0]).0, Destination::Association(A9));
    assert_eq!(pe.home(), Some(A1));
    assert_eq!(pe.stats().keep_alives_acked, 3);
}

#[test]
fn a41_keep_alive_for_another_pool_or_pe_is_dropped_silently() {
    let mut pe = registered();
    feed(&mut pe, s(5), A1, keep_alive(true, 1, "OtherPool", None));
    feed(
        &mut pe,
        s(5),
        A1,
        keep_alive(false, 1, "EchoPool", Some(PeId(1))),
    );
    assert!(transmits(&mut pe).is_empty());
    assert_eq!(pe.stats().keep_alives_dropped, 2);
}

#[test]
fn a44_h_bit_from_the_home_changes_nothing() {
    let mut pe = registered();
    feed(&mut pe, s(5), A1, keep_alive(true, 1, "EchoPool", Some(ID)));
    assert_eq!(transmits(&mut pe).len(), 1, "only the ack");
    assert_eq!(pe.home(), Some(A1));
    assert!(events(&mut pe).is_empty());
}

#[test]
fn a43_a72_h_bit_adopts_the_sender_reregisters_there_then_closes_the_old_home() {
    let mut pe = registered();
    feed(&mut pe, s(2), A1, keep_alive(false, 1, "EchoPool", None));
    transmits(&mut pe);
    // A registrar that took the PE over reaches it on a new association.
    up(&mut pe, s(5), A9, PR9);
    feed(&mut pe, s(5), A9, keep_alive(true, 9, "EchoPool", Some(ID)));
    let tx = transmits(&mut pe);
    assert_eq!(tx.len(), 2);
    assert!(matches!(
        asap(&tx[0]),
        (
            Destination::Association(A9),
            AsapMessage::EndpointKeepAliveAck { .. }
        )
    ));
    // Re-registered at once; the old home is kept until that succeeds.
    assert_registration(&tx[1], Destination::Association(A9));
    assert_eq!(pe.home(), Some(A1));
    feed(&mut pe, s(6), A9, response(false, None));
    // The old home's association stays open for the grace, so that the new
    // home's ENRP announcement reaches the old home before it sees the
    // association close; then it is closed.
    assert_eq!(transmits(&mut pe), vec![]);
    advance(&mut pe, s(6) + OLD_HOME_GRACE - Duration::from_millis(1));
    assert_eq!(transmits(&mut pe), vec![]);
    advance(&mut pe, s(6) + OLD_HOME_GRACE);
    assert_eq!(
        transmits(&mut pe),
        vec![Transmit::Close {
            assoc: A1,
            abort: false
        }]
    );
    let nine = PrId::new(9).unwrap();
    assert_eq!(
        events(&mut pe),
        vec![
            PoolElementEvent::Registered {
                assoc: A9,
                pe_id: ID,
                server_id: Some(nine)
            },
            PoolElementEvent::HomeChanged {
                old: Some(A1),
                new: A9,
                server_id: nine
            }
        ]
    );
    assert_eq!(pe.home(), Some(A9));
    assert_eq!(pe.home_server_id(), Some(nine));
    // Renewals now go to the new home.
    advance(&mut pe, s(46));
    assert_registration(&transmits(&mut pe)[0], Destination::Association(A9));
}

#[test]
fn a43_failed_adoption_falls_back_to_the_old_home() {
    let mut pe = registered();
    up(&mut pe, s(5), A9, PR9);
    feed(&mut pe, s(5), A9, keep_alive(true, 9, "EchoPool", None));
    transmits(&mut pe);
    advance(&mut pe, s(65));
    let tx = transmits(&mut pe);
    // Resent once (MAX-REG-ATTEMPT = 2), then given up in favour of the old home.
    assert_registration(&tx[0], Destination::Association(A9));
    assert_eq!(
        tx[1],
        Transmit::Close {
            assoc: A9,
            abort: true
        }
    );
    assert_registration(&tx[2], Destination::Association(A1));
    assert_eq!(pe.home(), Some(A1));
}

#[test]
fn a10_home_association_loss_registers_at_another_registrar() {
    let mut pe = registered();
    pe.handle_association(
        s(10),
        AssociationEvent::Down {
            assoc: A1,
            reason: DownReason::Lost,
        },
    );
    assert_eq!(
        events(&mut pe),
        vec![PoolElementEvent::HomeLost {
            assoc: A1,
            reason: HomeLossReason::AssociationDown(DownReason::Lost)
        }]
    );
    let tx = transmits(&mut pe);
    assert_eq!(tx.len(), 1);
    assert_registration(&tx[0], Destination::Addresses(vec![addr(PR2)]));
    assert!(!pe.is_registered());
    up(&mut pe, s(11), A2, PR2);
    feed(&mut pe, s(11), A2, response(false, None));
    assert_eq!(pe.home(), Some(A2));
}

#[test]
fn a10_silent_home_is_given_up_after_unanswered_renewals() {
    let mut pe = registered();
    advance(&mut pe, s(41 + 60));
    let tx = transmits(&mut pe);
    assert_registration(&tx[0], Destination::Association(A1));
    assert_registration(&tx[1], Destination::Association(A1));
    assert_eq!(
        tx[2],
        Transmit::Close {
            assoc: A1,
            abort: true
        }
    );
    assert_registration(&tx[3], Destination::Addresses(vec![addr(PR2)]));
    assert!(events(&mut pe).contains(&PoolElementEvent::HomeLost {
        assoc: A1,
        reason: HomeLossReason::NoResponse
    }));
}

#[test]
fn a22_a23_shutdown_deregisters_and_closes_gracefully() {
    let mut pe = registered();
    pe.shutdown(s(10));
    let tx = transmits(&mut pe);
    assert_eq!(
        asap(&tx[0]),
        (
            Destination::Association(A1),
            AsapMessage::Deregistration {
                pool_handle: handle(),
                pe_id: ID
            }
        )
    );
    assert_eq!(pe.poll_timeout(), Some(s(40)), "T3");
    feed(
        &mut pe,
        s(11),
        A1,
        AsapMessage::DeregistrationResponse {
            pool_handle: handle(),
            pe_id: ID,
            error: None,
        },
    );
    assert_eq!(
        events(&mut pe),
        vec![PoolElementEvent::Deregistered {
            confirmed: true,
            causes: vec![]
        }]
    );
    assert_eq!(
        transmits(&mut pe),
        vec![Transmit::Close {
            assoc: A1,
            abort: false
        }]
    );
    assert!(pe.is_closed());
    assert_eq!(pe.poll_timeout(), None);
}

#[test]
fn a23_deregistration_ends_when_t3_expires() {
    let mut pe = registered();
    pe.shutdown(s(10));
    transmits(&mut pe);
    advance(&mut pe, s(40));
    assert_eq!(
        events(&mut pe),
        vec![PoolElementEvent::Deregistered {
            confirmed: false,
            causes: vec![]
        }]
    );
    assert_eq!(
        transmits(&mut pe),
        vec![Transmit::Close {
            assoc: A1,
            abort: false
        }]
    );
    // Closed: keep-alives are no longer answered.
    feed(&mut pe, s(41), A1, keep_alive(false, 1, "EchoPool", None));
    assert!(transmits(&mut pe).is_empty());
}

#[test]
fn a28_unsolicited_deregistration_response_registers_again() {
    let mut pe = registered();
    feed(
        &mut pe,
        s(20),
        A1,
        AsapMessage::DeregistrationResponse {
            pool_handle: handle(),
            pe_id: ID,
            error: None,
        },
    );
    assert_registration(&transmits(&mut pe)[0], Destination::Association(A1));
    feed(&mut pe, s(21), A1, response(false, None));
    assert_eq!(
        events(&mut pe),
        vec![
            PoolElementEvent::RegistrationExpired { assoc: A1 },
            PoolElementEvent::Registered {
                assoc: A1,
                pe_id: ID,
                server_id: None
            }
        ]
    );
}

#[test]
fn a16_set_load_reregisters_at_once_with_the_new_value() {
    let mut pe = registered();
    assert!(pe.set_load(s(3), 42));
    let p = assert_registration(&transmits(&mut pe)[0], Destination::Association(A1));
    assert_eq!(p.policy, Policy::LeastUsed { load: 42 });
    // A change while that is in flight is sent once it is answered.
    assert!(pe.set_load(s(3), 43));
    assert!(transmits(&mut pe).is_empty());
    feed(&mut pe, s(4), A1, response(false, None));
    let p = assert_registration(&transmits(&mut pe)[0], Destination::Association(A1));
    assert_eq!(p.policy, Policy::LeastUsed { load: 43 });
    pe.set_policy(s(5), Policy::RoundRobin);
    assert!(!pe.set_load(s(5), 1), "round robin has no load");
}

#[test]
fn a56_a57_announced_registrar_is_used_and_forgotten_after_t7() {
    let mut c = config();
    c.hunt.registrars.clear();
    let mut pe = new_pe(c);
    assert!(transmits(&mut pe).is_empty());
    assert_eq!(
        events(&mut pe),
        vec![PoolElementEvent::NoRegistrar { retry_at: None }]
    );
    let announce = AsapMessage::ServerAnnounce {
        server_id: PrId::new(5).unwrap(),
        transports: vec![],
    };
    pe.handle_announce(
        s(1),
        addr("192.0.2.7:40000"),
        PPID_ASAP,
        Bytes::from(announce.to_vec().unwrap()),
    );
    let tx = transmits(&mut pe);
    assert_registration(&tx[0], Destination::Addresses(vec![addr("192.0.2.7:3863")]));
    // T7 at 6 s, T5 at 11 s; the association never comes up.
    assert_eq!(pe.poll_timeout(), Some(s(6)));
    advance(&mut pe, s(11));
    assert!(transmits(&mut pe).is_empty(), "nothing left to try");
    assert_eq!(
        events(&mut pe),
        vec![
            PoolElementEvent::PrUnreachable {
                addresses: vec![addr("192.0.2.7:3863")]
            },
            PoolElementEvent::NoRegistrar { retry_at: None }
        ]
    );
    assert_eq!(pe.stats().announces.expired, 1);
    // Heard again: tried again, and its server ID becomes the home's.
    pe.handle_announce(
        s(12),
        addr("192.0.2.7:40000"),
        PPID_ASAP,
        Bytes::from(announce.to_vec().unwrap()),
    );
    transmits(&mut pe);
    up(&mut pe, s(12), A1, "192.0.2.7:3863");
    feed(&mut pe, s(12), A1, response(false, None));
    assert_eq!(pe.home_server_id(), PrId::new(5));
}

#[test]
fn w05_w06_a67_bad_input_is_counted_answered_where_required_and_never_panics() {
    let mut pe = registered();
    let seen = pe.stats().inbound.messages;
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for len in 0..300 {
        let junk: Vec<u8> = (0..len % 64).map(|_| rng.random()).collect();
        pe.handle_data(s(2), A1, PPID_ASAP, Bytes::from(junk));
    }
    let st = pe.stats();
    assert_eq!(st.inbound.messages - seen, 300);
    assert!(st.inbound.undecodable >= 290, "{st:?}");
    assert_eq!(pe.home(), Some(A1), "state survives");
    transmits(&mut pe);
    let before = pe.stats().inbound.error_replies_sent;
    // Unknown type 0x70 (high bits 01): reported with the whole message.
    let unknown = Bytes::from_static(&[0x70, 0, 0, 8, 1, 2, 3, 4]);
    pe.handle_data(s(3), A1, PPID_ASAP, unknown.clone());
    let tx = transmits(&mut pe);
    assert_eq!(
        asap(&tx[0]),
        (
            Destination::Association(A1),
            AsapMessage::Error {
                causes: vec![ErrorCause::unrecognized_message(unknown)]
            }
        )
    );
    // Unknown type 0x30 (high bits 00): silently dropped.
    pe.handle_data(s(3), A1, PPID_ASAP, Bytes::from_static(&[0x30, 0, 0, 4]));
    assert!(transmits(&mut pe).is_empty());
    assert_eq!(pe.stats().inbound.error_replies_sent, before + 1);
    // Foreign PPID and ENRP: counted, not answered.
    pe.handle_data(s(3), A1, 51, Bytes::from_static(b"hello"));
    let enrp = EnrpMessage::Error {
        servers: Servers {
            sender: PrId::new(1).unwrap(),
            receiver: None,
        },
        causes: vec![ErrorCause::new(CauseCode::Unspecified)],
    };
    let mut buf = Vec::new();
    enrp.encode(&mut buf).unwrap();
    pe.handle_data(s(3), A1, PPID_ENRP, Bytes::from(buf));
    assert!(transmits(&mut pe).is_empty());
    let st = pe.stats();
    assert_eq!((st.inbound.foreign_ppid, st.inbound.not_asap), (1, 1));
}

/// Checks what must hold after every input, whatever the inputs were.
fn check_invariants(pe: &PoolElement, up_now: &BTreeSet<AssocId>, seed: u64, step: usize) {
    let ctx = format!("seed {seed} step {step}: {pe:#?}");
    if let Some(h) = pe.home {
        assert!(pe.assocs.contains_key(&h.assoc), "home not up; {ctx}");
    }
    for a in pe.assocs.keys() {
        assert!(up_now.contains(a), "tracks a dead association; {ctx}");
    }
    if let Some(att) = &pe.attempt {
        assert_eq!(pe.phase, Phase::Active, "{ctx}");
        assert!(
            pe.timers.is_set(&Timer::Connect) || pe.timers.is_set(&Timer::Registration),
            "attempt without a timer; {ctx}"
        );
        assert!(att.sent <= pe.config.max_reg_attempt, "{ctx}");
    }
    match pe.phase {
        // Never stuck: registered with T4 running, registering, or waiting to hunt again.
        Phase::Active if pe.attempt.is_none() => assert!(
            if pe.home.is_some() {
                pe.timers.is_set(&Timer::Reregistration)
            } else {
                pe.timers.is_set(&Timer::HuntRetry)
            },
            "idle without a timer; {ctx}"
        ),
        Phase::Deregistering(_) => assert!(pe.timers.is_set(&Timer::Deregistration), "{ctx}"),
        Phase::Closed => assert!(pe.home.is_none() && pe.attempt.is_none(), "{ctx}"),
        _ => {}
    }
}

#[test]
fn random_inputs_never_panic_send_on_dead_associations_or_leave_the_pe_stuck() {
    let peers = [PR1, PR2, PR9];
    let mut total = PoolElementStats::default();
    for seed in 0..40u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pe = new_pe(config());
        let mut now = s(0);
        let mut up_now = BTreeSet::new();
        for step in 0..400 {
            let assoc = AssocId(rng.random_range(1..6));
            match rng.random_range(0..100) {
                0..15 => {
                    let fresh = up_now.insert(assoc);
                    if fresh {
                        up(&mut pe, now, assoc, peers[rng.random_range(0..3)]);
                    }
                }
                15..22 => {
                    let reason = [
                        DownReason::Graceful,
                        DownReason::Aborted,
                        DownReason::Lost,
                        DownReason::HandshakeFailed,
                    ][rng.random_range(0..4)];
                    up_now.remove(&assoc);
                    pe.handle_association(now, AssociationEvent::Down { assoc, reason });
                }
                22..70 if up_now.contains(&assoc) => {
                    let id = if rng.random_bool(0.9) { ID } else { PeId(1) };
                    let m = match rng.random_range(0..5) {
                        0 | 1 => AsapMessage::RegistrationResponse {
                            rejected: rng.random_bool(0.1),
                            pool_handle: handle(),
                            pe_id: id,
                            error: None,
                        },
                        2 => AsapMessage::DeregistrationResponse {
                            pool_handle: handle(),
                            pe_id: id,
                            error: None,
                        },
                        3 => keep_alive(
                            rng.random_bool(0.3),
                            rng.random_range(1..4),
                            "EchoPool",
                            None,
                        ),
                        _ => AsapMessage::Error {
                            causes: vec![ErrorCause::new(CauseCode::Unspecified)],
                        },
                    };
                    feed(&mut pe, now, assoc, m);
                }
                70..90 => {
                    if let Some(at) = pe.poll_timeout() {
                        now = at.max(now);
                        pe.handle_timeout(now);
                    }
                }
                90..95 => {
                    pe.set_load(now, rng.random());
                }
                95..97 => {
                    let ann = AsapMessage::ServerAnnounce {
                        server_id: PrId::new(rng.random_range(1..4)).unwrap(),
                        transports: vec![],
                    };
                    pe.handle_announce(
                        now,
                        addr("10.0.0.9:1"),
                        PPID_ASAP,
                        Bytes::from(ann.to_vec().unwrap()),
                    );
                }
                97 if rng.random_bool(0.2) => pe.shutdown(now),
                _ if up_now.contains(&assoc) => {
                    let junk: Vec<u8> =
                        (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
                    pe.handle_data(now, assoc, PPID_ASAP, Bytes::from(junk));
                }
                _ => {}
            }
            for t in transmits(&mut pe) {
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
                        );
                    }
                    _ => {}
                }
            }
            events(&mut pe);
            check_invariants(&pe, &up_now, seed, step);
        }
        let st = pe.stats();
        total.registrations_accepted += st.registrations_accepted;
        total.home_changes += st.home_changes;
        total.homes_lost += st.homes_lost;
        total.registrations_rejected += st.registrations_rejected;
        total.hunt_rounds_failed += st.hunt_rounds_failed;
    }
    // The inputs reached the interesting paths, so the invariants were tested there.
    assert!(
        total.registrations_accepted > 100
            && total.home_changes > 5
            && total.homes_lost > 5
            && total.registrations_rejected > 5
            && total.hunt_rounds_failed > 5,
        "{total:?}"
    );
}

/// A registrar that does not answer within T5 is given up, and so is the
/// open to it: the REGISTRATION queued on it must not arrive once a
/// partition heals (a second home the PE does not know of).
#[test]
fn t5_abandons_the_open() {
    let mut pe = new_pe(config());
    let _ = std::iter::from_fn(|| pe.poll_transmit()).count();
    advance(&mut pe, s(10));
    let tx: Vec<Transmit> = std::iter::from_fn(|| pe.poll_transmit()).collect();
    assert!(
        tx.iter()
            .any(|t| matches!(t, Transmit::Abandon { to } if to == &vec![addr(PR1)])),
        "{tx:?}"
    );
}

// ----- sessions (RFC 5352 §3.8-§3.9) -----

const PU: &str = "10.2.0.1:40000";

#[test]
fn a64_a70_a_pool_users_first_data_opens_a_session_and_the_business_card_goes_first() {
    let mut pe = registered();
    up(&mut pe, s(2), A2, PU);
    assert!(
        transmits(&mut pe).is_empty(),
        "an association alone is not a session"
    );
    pe.handle_data(s(2), A2, 1234, Bytes::from_static(b"hello"));
    let tx = transmits(&mut pe);
    let (to, card) = asap(&tx[0]);
    assert_eq!(to, Destination::Association(A2));
    match card {
        AsapMessage::BusinessCard {
            pool_handle,
            pool_elements,
            ..
        } => {
            assert_eq!(pool_handle, handle());
            assert_eq!(pool_elements[0].id, ID);
        }
        other => panic!("expected a business card, got {other}"),
    }
    let session = SessionId(A2.0);
    assert_eq!(
        events(&mut pe),
        vec![
            PoolElementEvent::SessionOpened {
                session,
                peer: vec![addr(PU)]
            },
            PoolElementEvent::SessionData {
                session,
                ppid: 1234,
                data: Bytes::from_static(b"hello")
            },
        ]
    );
    pe.send_data(session, 1234, Bytes::from_static(b"hi"), false)
        .unwrap();
    pe.send_cookie(session, Bytes::from_static(b"state"))
        .unwrap();
    let tx = transmits(&mut pe);
    assert_eq!(
        tx[0],
        Transmit::Data {
            to: Destination::Association(A2),
            ppid: 1234,
            unordered: false,
            data: Bytes::from_static(b"hi")
        }
    );
    assert_eq!(
        asap(&tx[1]).1,
        AsapMessage::Cookie {
            cookie: Bytes::from_static(b"state")
        }
    );
    pe.handle_association(
        s(3),
        AssociationEvent::Down {
            assoc: A2,
            reason: DownReason::Aborted,
        },
    );
    assert_eq!(
        events(&mut pe),
        vec![PoolElementEvent::SessionClosed {
            session,
            reason: Some(DownReason::Aborted)
        }]
    );
    assert_eq!(
        pe.send_data(session, 1234, Bytes::new(), false),
        Err(SendError::UnknownSession)
    );
}

#[test]
fn a63_a_cookie_echo_reaches_the_application_before_the_sessions_data() {
    let mut pe = registered();
    up(&mut pe, s(2), A2, PU);
    feed(
        &mut pe,
        s(2),
        A2,
        AsapMessage::CookieEcho {
            cookie: Bytes::from_static(b"c2"),
        },
    );
    pe.handle_data(s(2), A2, 7, Bytes::from_static(b"next"));
    let ev = events(&mut pe);
    assert!(matches!(ev[0], PoolElementEvent::SessionOpened { .. }));
    assert_eq!(
        ev[1],
        PoolElementEvent::CookieEcho {
            session: SessionId(A2.0),
            cookie: Bytes::from_static(b"c2")
        }
    );
    assert!(matches!(
        ev[2],
        PoolElementEvent::SessionData { ppid: 7, .. }
    ));
}

#[test]
fn a03_data_on_the_registrars_association_or_with_a_reserved_ppid_is_no_session() {
    let mut pe = registered();
    pe.handle_data(s(2), A1, 1234, Bytes::from_static(b"x"));
    assert!(events(&mut pe).is_empty());
    assert_eq!(pe.stats().inbound.foreign_ppid, 1);
    up(&mut pe, s(2), A2, PU);
    pe.handle_data(s(2), A2, 1, Bytes::from_static(b"x"));
    let session = SessionId(A2.0);
    assert_eq!(
        pe.send_data(session, PPID_ASAP, Bytes::new(), false),
        Err(SendError::ReservedPpid(PPID_ASAP))
    );
}

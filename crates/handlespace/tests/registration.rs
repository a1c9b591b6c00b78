//! Registration rules (RFC 5352 §3.1, RFC 5353 §3.3), ownership, checksums,
//! timers, paging and resynchronisation marks.

mod common;
use common::*;
use rserpool_handlespace::*;
use rserpool_wire::*;

#[test]
fn new_pool_takes_first_pe_policy_and_transport() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    let out = hs
        .register(&h, pe(1, 1, Policy::LeastUsed { load: 5 }), 10)
        .unwrap();
    assert!(out.new_pe && out.new_pool && out.owner_change.is_none());
    let info = hs.pool(&h).unwrap();
    assert_eq!(info.policy_type(), PolicyType::LeastUsed);
    assert_eq!(info.transport_kind(), TransportKind::Sctp);
    assert_eq!(info.transport_use(), TransportUse::DataOnly);
    assert_eq!(info.len(), 1);
    let e = hs.get(&h, PeId(1)).unwrap();
    assert_eq!(
        (e.registered_at(), e.last_update(), e.owner()),
        (10, 10, Some(pr(1)))
    );
    hs.check_invariants().unwrap();
}

/// A-register rule 2: policy mismatch -> 0x5 carrying the pool's policy TLV.
#[test]
fn inconsistent_policy_is_rejected_with_cause_5() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    hs.register(&h, pe(1, 1, Policy::RoundRobin), 0).unwrap();
    let err = hs.register(&h, pe(2, 1, Policy::Random), 0).unwrap_err();
    let c = err.cause();
    assert_eq!(c.code, CauseCode::InconsistentPoolingPolicy);
    // Policy parameter (type 0x0008), length 8, RR.
    assert_eq!(&c.info[..], &[0x00, 0x08, 0x00, 0x08, 0, 0, 0, 1]);
    assert_eq!(hs.len(), 1);
    // A re-registration must pass the same check.
    let err = hs.register(&h, pe(1, 1, Policy::Random), 0).unwrap_err();
    assert_eq!(err.cause().code, CauseCode::InconsistentPoolingPolicy);
    assert_eq!(
        hs.get(&h, PeId(1)).unwrap().element().policy,
        Policy::RoundRobin
    );
    hs.check_invariants().unwrap();
}

/// Rule 2: transport type mismatch -> 0x7 carrying the pool's transport TLV.
#[test]
fn inconsistent_transport_type_is_rejected_with_cause_7() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    hs.register(&h, pe(1, 1, Policy::RoundRobin), 0).unwrap();
    let mut tcp = pe(2, 1, Policy::RoundRobin);
    tcp.user_transport = UserTransport::Address(TransportAddress {
        protocol: Protocol::Tcp,
        port: 80,
        addresses: vec![addr(2)].into(),
    });
    let c = hs.register(&h, tcp, 0).unwrap_err().cause();
    assert_eq!(c.code, CauseCode::InconsistentTransportType);
    // The pool's transport: SCTP transport parameter (0x0004).
    assert_eq!(&c.info[..2], &[0x00, 0x04]);
    assert_eq!(hs.len(), 1);
}

/// Rule 2: transport use mismatch -> 0x8.
#[test]
fn inconsistent_data_control_is_rejected_with_cause_8() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    hs.register(&h, pe(1, 1, Policy::RoundRobin), 0).unwrap();
    let mut ctl = pe(2, 1, Policy::RoundRobin);
    ctl.user_transport = UserTransport::Address(TransportAddress::sctp(
        9000,
        TransportUse::DataPlusControl,
        vec![addr(2)],
    ));
    let c = hs.register(&h, ctl, 0).unwrap_err().cause();
    assert_eq!(c.code, CauseCode::InconsistentDataControl);
}

/// P-14: a policy the registrar cannot select by is refused (0x3).
#[test]
fn unknown_policy_is_rejected_with_invalid_values() {
    let mut hs = Handlespace::default();
    let p = Policy::Unknown {
        code: 0,
        data: Box::default(),
    };
    let c = hs.register(&ph("P"), pe(1, 1, p), 0).unwrap_err().cause();
    assert_eq!(c.code, CauseCode::InvalidValues);
    assert!(hs.is_empty() && hs.pool_count() == 0);
}

/// Rule 5: another PE (no common address) with the same ID -> 0x4.
#[test]
fn id_collision_is_rejected_with_cause_4() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    hs.register(&h, pe(1, 1, Policy::RoundRobin), 0).unwrap();
    let mut other = pe(1, 1, Policy::RoundRobin);
    other.user_transport = pe(99, 1, Policy::RoundRobin).user_transport;
    let c = hs.register(&h, other, 0).unwrap_err().cause();
    assert_eq!(c.code, CauseCode::NonUniquePeId);
    let mut lax = Handlespace::new(Config {
        reject_id_collisions: false,
        ..Config::default()
    });
    lax.register(&h, pe(1, 1, Policy::RoundRobin), 0).unwrap();
    let mut other = pe(1, 1, Policy::RoundRobin);
    other.user_transport = pe(99, 1, Policy::RoundRobin).user_transport;
    assert!(lax.register(&h, other, 0).is_ok());
}

#[test]
fn limits_give_lack_of_resources() {
    let mut hs = Handlespace::new(Config {
        max_pes: 3,
        max_pools: 2,
        max_pes_per_pool: 2,
        ..Config::default()
    });
    hs.register(&ph("A"), pe(1, 1, Policy::RoundRobin), 0)
        .unwrap();
    hs.register(&ph("A"), pe(2, 1, Policy::RoundRobin), 0)
        .unwrap();
    let e = hs
        .register(&ph("A"), pe(3, 1, Policy::RoundRobin), 0)
        .unwrap_err();
    assert_eq!(e.cause().code, CauseCode::LackOfResources);
    hs.register(&ph("B"), pe(3, 1, Policy::RoundRobin), 0)
        .unwrap();
    assert!(
        hs.register(&ph("C"), pe(4, 1, Policy::RoundRobin), 0)
            .is_err()
    );
    assert!(
        hs.register(&ph("B"), pe(4, 1, Policy::RoundRobin), 0)
            .is_err()
    );
    // Re-registrations are still accepted at the limit.
    assert!(
        hs.register(&ph("A"), pe(1, 1, Policy::RoundRobin), 1)
            .is_ok()
    );
}

/// Rule 3/4 and ENRP §3.3: a re-registration updates in place and moves ownership.
#[test]
fn reregistration_updates_in_place_and_moves_ownership() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    let first = hs
        .register(&h, pe(1, 1, Policy::LeastUsed { load: 1 }), 5)
        .unwrap();
    let again = hs
        .register(&h, pe(1, 2, Policy::LeastUsed { load: 9 }), 8)
        .unwrap();
    assert_eq!(again.entry, first.entry);
    assert!(!again.new_pe && !again.new_pool);
    assert_eq!(
        again.owner_change,
        Some(OwnerChange {
            from: Some(pr(1)),
            to: Some(pr(2))
        })
    );
    let e = hs.get(&h, PeId(1)).unwrap();
    assert_eq!((e.registered_at(), e.last_update()), (5, 8));
    assert_eq!(e.element().policy, Policy::LeastUsed { load: 9 });
    assert_eq!((hs.owned_count(pr(1)), hs.owned_count(pr(2))), (0, 1));
    assert_eq!(hs.checksum(pr(1)), 0xFFFF);
    let same = hs
        .register(&h, pe(1, 2, Policy::LeastUsed { load: 9 }), 9)
        .unwrap();
    assert_eq!(same.owner_change, None);
    hs.check_invariants().unwrap();
}

#[test]
fn deregistration_returns_the_entry_and_drops_empty_pools() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    hs.register(&h, pe(1, 1, Policy::RoundRobin), 0).unwrap();
    hs.register(&h, pe(2, 1, Policy::RoundRobin), 0).unwrap();
    let r = hs.deregister(&h, PeId(1)).unwrap();
    assert_eq!(
        (r.pool.clone(), r.element.id, r.pool_removed),
        (h.clone(), PeId(1), false)
    );
    assert!(hs.deregister(&h, PeId(1)).is_none());
    assert!(hs.deregister(&ph("nope"), PeId(2)).is_none());
    let r = hs.deregister(&h, PeId(2)).unwrap();
    assert!(r.pool_removed);
    assert!(hs.pool(&h).is_none());
    assert_eq!(hs.pool_count(), 0);
    // A new pool of that name may take another policy.
    hs.register(&h, pe(3, 1, Policy::Random), 0).unwrap();
    assert_eq!(hs.pool(&h).unwrap().policy_type(), PolicyType::Random);
    hs.check_invariants().unwrap();
}

/// WIRE.md §10 vectors through the handlespace's incremental checksum.
#[test]
fn checksum_matches_spec_vectors_incrementally() {
    let mut hs = Handlespace::default();
    assert_eq!(hs.checksum(pr(1)), 0xFFFF);
    hs.register(&ph("EchoPool"), pe(0x1122_3344, 1, Policy::RoundRobin), 0)
        .unwrap();
    assert_eq!(hs.checksum(pr(1)), 0x4DEB);
    hs.register(&ph("Pool3"), pe(0xDEAD_BEEF, 1, Policy::RoundRobin), 0)
        .unwrap();
    hs.register(&ph("Pool3"), pe(7, 2, Policy::RoundRobin), 0)
        .unwrap();
    assert_eq!(hs.checksum(pr(1)), 0xBD71);
    assert_eq!(hs.recompute_checksum(pr(1)), 0xBD71);
    hs.deregister(&ph("Pool3"), PeId(0xDEAD_BEEF)).unwrap();
    assert_eq!(hs.checksum(pr(1)), 0x4DEB);
    assert_eq!(hs.checksum(pr(2)), hs.recompute_checksum(pr(2)));
}

#[test]
fn ownership_moves_by_pe_and_by_registrar() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    for i in 0..10 {
        hs.register(&h, pe(i, 1 + i % 3, Policy::RoundRobin), 0)
            .unwrap();
    }
    hs.register(&h, pe(100, 0, Policy::RoundRobin), 0).unwrap();
    let mut counts: Vec<_> = hs.owner_counts().map(|(p, n)| (p.get(), n)).collect();
    counts.sort();
    assert_eq!(counts, vec![(1, 4), (2, 3), (3, 3)]);
    let ch = hs.set_owner(&h, PeId(0), Some(pr(3))).unwrap();
    assert_eq!((ch.from, ch.to), (Some(pr(1)), Some(pr(3))));
    assert_eq!(hs.set_owner(&h, PeId(555), Some(pr(3))), None);
    assert_eq!(hs.owned_count(pr(3)), 4);
    assert_eq!(hs.reassign_owner(pr(3), pr(2)), 4);
    assert_eq!((hs.owned_count(pr(2)), hs.owned_count(pr(3))), (7, 0));
    assert!(
        hs.owned(pr(2))
            .all(|id| hs.entry(id).unwrap().owner() == Some(pr(2)))
    );
    assert_eq!(hs.checksum(pr(2)), hs.recompute_checksum(pr(2)));
    assert_eq!(hs.checksum(pr(3)), 0xFFFF);
    hs.set_owner(&h, PeId(100), Some(pr(1))).unwrap();
    assert_eq!(hs.owned_count(pr(1)), 4);
    hs.check_invariants().unwrap();
}

#[test]
fn deadlines_come_out_in_order_and_follow_rearming() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    for i in 0..5 {
        hs.register(&h, pe(i, 1, Policy::RoundRobin), 0).unwrap();
        assert!(hs.set_timer(&h, PeId(i), TimerKind::Lifetime, 100 + u64::from(i)));
    }
    assert!(hs.set_timer(&h, PeId(4), TimerKind::KeepAlive, 50));
    assert!(!hs.set_timer(&h, PeId(9), TimerKind::KeepAlive, 50));
    let (d, id, k) = hs.next_deadline().unwrap();
    assert_eq!(
        (d, hs.entry(id).unwrap().id(), k),
        (50, PeId(4), TimerKind::KeepAlive)
    );
    // Re-arm later: the next deadline moves on.
    hs.set_timer(&h, PeId(4), TimerKind::KeepAlive, 200);
    assert_eq!(hs.next_deadline().unwrap().0, 100);
    hs.cancel_timer(&h, PeId(0), TimerKind::Lifetime);
    hs.deregister(&h, PeId(1));
    assert_eq!(hs.next_deadline().unwrap().0, 102);
    assert!(hs.pop_expired(101).is_none());
    let mut got = Vec::new();
    while let Some(x) = hs.pop_expired(1000) {
        got.push((x.deadline, x.pe.0, x.kind));
        assert_eq!(x.pool, h);
    }
    assert_eq!(
        got,
        vec![
            (102, 2, TimerKind::Lifetime),
            (103, 3, TimerKind::Lifetime),
            (104, 4, TimerKind::Lifetime),
            (200, 4, TimerKind::KeepAlive)
        ]
    );
    assert_eq!(hs.next_deadline(), None);
    assert_eq!(hs.armed_timers(), 0);
    hs.check_invariants().unwrap();
}

#[test]
fn many_rearms_stay_consistent() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    for i in 0..50 {
        hs.register(&h, pe(i, 1, Policy::RoundRobin), 0).unwrap();
    }
    for round in 0..200u64 {
        for i in 0..50 {
            hs.set_timer(
                &h,
                PeId(i),
                TimerKind::KeepAlive,
                round * 100 + u64::from(i),
            );
        }
    }
    hs.check_invariants().unwrap();
    assert_eq!(hs.next_deadline().unwrap().0, 199 * 100);
    let mut n = 0;
    while hs.pop_expired(u64::MAX - 1).is_some() {
        n += 1;
    }
    assert_eq!(n, 50);
}

fn page_all(hs: &Handlespace, owner: Option<PrId>, chunk: usize) -> Vec<(String, u32)> {
    let mut all = Vec::new();
    let mut cursor: Option<(PoolHandle, PeId)> = None;
    loop {
        let mut out = Vec::new();
        let more = hs.page(
            cursor.as_ref().map(|(h, p)| (h, *p)),
            owner,
            chunk,
            &mut out,
        );
        assert!(out.len() <= chunk);
        for &id in &out {
            let h = hs.handle_of(id).unwrap().clone();
            let p = hs.entry(id).unwrap().id();
            all.push((h.to_string(), p.0));
            cursor = Some((h, p));
        }
        if !more {
            return all;
        }
        assert_eq!(out.len(), chunk, "a page with M set is full");
    }
}

#[test]
fn paging_walks_handle_then_id_order() {
    let mut hs = Handlespace::default();
    for (h, ids) in [("b", vec![5, 1, 9]), ("a", vec![3, 2]), ("c", vec![7])] {
        for id in ids {
            hs.register(&ph(h), pe(id, 1 + id % 2, Policy::RoundRobin), 0)
                .unwrap();
        }
    }
    let want: Vec<(String, u32)> = [("a", 2), ("a", 3), ("b", 1), ("b", 5), ("b", 9), ("c", 7)]
        .iter()
        .map(|(h, i)| (h.to_string(), *i))
        .collect();
    for chunk in 1..8 {
        assert_eq!(page_all(&hs, None, chunk), want, "chunk {chunk}");
    }
    let odd: Vec<_> = want.iter().filter(|(_, i)| i % 2 == 1).cloned().collect();
    assert_eq!(page_all(&hs, Some(pr(2)), 2), odd);
    // A cursor whose PE (or pool) disappeared still continues after it.
    let mut out = Vec::new();
    hs.deregister(&ph("b"), PeId(5));
    let more = hs.page(Some((&ph("b"), PeId(5))), None, 10, &mut out);
    assert!(!more);
    let ids: Vec<u32> = out.iter().map(|&e| hs.entry(e).unwrap().id().0).collect();
    assert_eq!(ids, vec![9, 7]);
    out.clear();
    hs.page(Some((&ph("bb"), PeId(0))), None, 10, &mut out);
    assert_eq!(out.len(), 1);
}

/// A handle table transfer of a large pool that changes between pages
/// (registrations and removals on both sides of the cursor) stays in PE ID
/// order, never repeats a PE, and reaches every PE that stayed registered.
#[test]
fn paging_a_pool_that_changes_between_pages() {
    for policy in [Policy::LeastUsed { load: 7 }, Policy::Random] {
        let mut hs = Handlespace::default();
        let h = ph("big");
        for id in (0..4000).step_by(2) {
            hs.register(&h, pe(id, 1, policy.clone()), 0).unwrap();
        }
        let mut stayed: std::collections::BTreeSet<u32> = (0..4000).step_by(2).collect();
        let mut seen: Vec<u32> = Vec::new();
        let mut cursor: Option<PeId> = None;
        for round in 0u32.. {
            let mut out = Vec::new();
            let more = hs.page(cursor.map(|c| (&h, c)), None, 37, &mut out);
            for id in out {
                let pe = hs.entry(id).unwrap().id();
                seen.push(pe.0);
                cursor = Some(pe);
            }
            if !more {
                break;
            }
            // A few changes per page, spread over the whole ID range.
            for j in 0..5 {
                let x = (round * 7919 + j * 1543) % 4000;
                if x % 2 == 1 {
                    // Odd IDs come and go; they may or may not be reached.
                    if hs.deregister(&h, PeId(x)).is_none() {
                        hs.register(&h, pe(x, 1, policy.clone()), 0).unwrap();
                    }
                } else if stayed.remove(&x) {
                    hs.deregister(&h, PeId(x)).unwrap();
                }
            }
        }
        hs.check_invariants().unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{policy:?}: order");
        let seen: std::collections::BTreeSet<u32> = seen.into_iter().collect();
        assert!(
            stayed.is_subset(&seen),
            "{policy:?}: a PE that stayed was skipped"
        );
    }
}

/// RFC 5353 §3.6.3: mark, re-import un-marks, sweep removes the rest.
#[test]
fn mark_and_sweep_resynchronises() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    for i in 0..6 {
        hs.register(&h, pe(i, 1, Policy::RoundRobin), 0).unwrap();
    }
    hs.register(&h, pe(10, 2, Policy::RoundRobin), 0).unwrap();
    assert_eq!(hs.mark_owned(pr(1)), 6);
    hs.register(&h, pe(0, 1, Policy::RoundRobin), 1).unwrap();
    assert!(hs.unmark(&h, PeId(1)));
    hs.register(&h, pe(2, 2, Policy::RoundRobin), 1).unwrap();
    let mut gone: Vec<u32> = hs
        .sweep_marked(pr(1))
        .iter()
        .map(|r| r.element.id.0)
        .collect();
    gone.sort();
    assert_eq!(gone, vec![3, 4, 5]);
    assert_eq!(hs.len(), 4);
    assert!(!hs.get(&h, PeId(2)).unwrap().is_marked());
    assert_eq!(hs.checksum(pr(1)), hs.recompute_checksum(pr(1)));
    hs.check_invariants().unwrap();
}

#[test]
fn stored_handles_do_not_pin_message_buffers() {
    let mut hs = Handlespace::default();
    let msg = bytes::Bytes::from(vec![b'x'; 4096]);
    let h = PoolHandle::new(msg.slice(0..4)).unwrap();
    hs.register(&h, pe(1, 1, Policy::RoundRobin), 0).unwrap();
    let stored = hs.pool(&h).unwrap().handle().bytes().clone();
    assert_eq!(&stored[..], b"xxxx");
    assert_ne!(stored.as_ptr(), msg.as_ptr());
}

/// An identical re-registration after a takeover moved the PE must move
/// ownership back (the stored element changed, so it is not "identical").
#[test]
fn identical_reregistration_after_owner_change_moves_ownership_back() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    hs.register(&h, pe(1, 1, Policy::RoundRobin), 0).unwrap();
    hs.set_owner(&h, PeId(1), Some(pr(2))).unwrap();
    let out = hs.register(&h, pe(1, 1, Policy::RoundRobin), 1).unwrap();
    assert_eq!(
        out.owner_change,
        Some(OwnerChange {
            from: Some(pr(2)),
            to: Some(pr(1))
        })
    );
    hs.reassign_owner(pr(1), pr(3));
    let out = hs.register(&h, pe(1, 1, Policy::RoundRobin), 2).unwrap();
    assert_eq!(out.owner_change.map(|c| c.from), Some(Some(pr(3))));
    assert_eq!(hs.get(&h, PeId(1)).unwrap().last_update(), 2);
    hs.check_invariants().unwrap();
}

/// A re-registration replaces every attribute that changed (transports,
/// life, policy values) and keeps what did not.
#[test]
fn reregistration_replaces_changed_attributes() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    hs.register(&h, pe(1, 1, Policy::LeastUsed { load: 1 }), 0)
        .unwrap();
    let mut e = pe(1, 1, Policy::LeastUsed { load: 2 });
    e.user_transport = UserTransport::Address(TransportAddress::sctp(
        9001,
        TransportUse::DataOnly,
        vec![addr(1), addr(77)],
    ));
    e.asap_transport = Some(TransportAddress::sctp(
        4000,
        TransportUse::DataOnly,
        vec![addr(1)],
    ));
    e.registration_life = RegistrationLife(5);
    hs.register(&h, e.clone(), 1).unwrap();
    assert_eq!(hs.get(&h, PeId(1)).unwrap().element(), &e);
    let mut f = e.clone();
    f.policy = Policy::LeastUsed { load: 3 };
    hs.register(&h, f.clone(), 2).unwrap();
    assert_eq!(hs.get(&h, PeId(1)).unwrap().element(), &f);
    hs.check_invariants().unwrap();
}

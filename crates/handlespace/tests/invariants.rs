//! Property test: after any sequence of register, re-register, deregister,
//! expire, timer and owner-change operations (and mark/sweep), every index
//! agrees with a naive model and the incremental checksums equal a full
//! recomputation (`check_invariants` cross-checks the internals; this file
//! cross-checks the public view against the model).

mod common;
use common::*;
use proptest::prelude::*;
use rserpool_handlespace::*;
use rserpool_wire::*;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone)]
enum Op {
    Register {
        pool: u8,
        id: u32,
        owner: u32,
        policy: u8,
        value: u32,
        moved: bool,
    },
    Deregister {
        pool: u8,
        id: u32,
    },
    SetTimer {
        pool: u8,
        id: u32,
        keep_alive: bool,
        deadline: u64,
    },
    CancelTimer {
        pool: u8,
        id: u32,
        keep_alive: bool,
    },
    Expire {
        now: u64,
    },
    SetOwner {
        pool: u8,
        id: u32,
        owner: u32,
    },
    Reassign {
        from: u32,
        to: u32,
    },
    Resolve {
        pool: u8,
        items: u32,
        seed: u64,
    },
    Mark {
        owner: u32,
    },
    Sweep {
        owner: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let pool = 0u8..4;
    let id = 0u32..12;
    prop_oneof![
        6 => (pool.clone(), id.clone(), 0u32..4, 0u8..8, 0u32..4, proptest::bool::weighted(0.1)).prop_map(
            |(pool, id, owner, policy, value, moved)| Op::Register { pool, id, owner, policy, value, moved }),
        2 => (pool.clone(), id.clone()).prop_map(|(pool, id)| Op::Deregister { pool, id }),
        3 => (pool.clone(), id.clone(), any::<bool>(), 0u64..100).prop_map(
            |(pool, id, keep_alive, deadline)| Op::SetTimer { pool, id, keep_alive, deadline }),
        1 => (pool.clone(), id.clone(), any::<bool>()).prop_map(|(pool, id, keep_alive)| Op::CancelTimer { pool, id, keep_alive }),
        1 => (0u64..100).prop_map(|now| Op::Expire { now }),
        1 => (pool.clone(), id.clone(), 0u32..4).prop_map(|(pool, id, owner)| Op::SetOwner { pool, id, owner }),
        1 => (1u32..4, 1u32..4).prop_map(|(from, to)| Op::Reassign { from, to }),
        2 => (pool, 0u32..6, any::<u64>()).prop_map(|(pool, items, seed)| Op::Resolve { pool, items, seed }),
        1 => (1u32..4).prop_map(|owner| Op::Mark { owner }),
        1 => (1u32..4).prop_map(|owner| Op::Sweep { owner }),
    ]
}

fn policy(kind: u8, v: u32) -> Policy {
    match kind {
        0 => Policy::RoundRobin,
        1 => Policy::LeastUsed { load: v },
        2 => Policy::LeastUsedWithDegradation {
            load: v,
            degradation: 1,
        },
        3 => Policy::WeightedRandom { weight: v },
        4 => Policy::Random,
        5 => Policy::WeightedRoundRobin { weight: v },
        6 => Policy::RandomizedLeastUsedWithDegradation {
            load: v,
            degradation: 1 << 30,
        },
        _ => Policy::Priority { priority: v },
    }
}

#[derive(Debug, Clone)]
struct MPe {
    owner: Option<PrId>,
    policy: Policy,
    addr: u32,
    deadlines: [Option<u64>; 2],
    marked: bool,
}

#[derive(Default)]
struct Model {
    pools: BTreeMap<u8, PolicyType>,
    pes: BTreeMap<(u8, u32), MPe>,
}

impl Model {
    fn remove(&mut self, pool: u8, id: u32) -> bool {
        let had = self.pes.remove(&(pool, id)).is_some();
        if !self.pes.keys().any(|k| k.0 == pool) {
            self.pools.remove(&pool);
        }
        had
    }
}

fn handle(p: u8) -> PoolHandle {
    ph(&format!("pool-{p}"))
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut hs = Handlespace::default();
    let mut m = Model::default();
    let mut out = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op.clone() {
            Op::Register {
                pool,
                id,
                owner,
                policy: kind,
                value,
                moved,
            } => {
                let p = policy(kind, value);
                let addr = if moved { id + 1000 } else { id };
                let mut e = pe(id, owner, p.clone());
                e.user_transport = pe(addr, 0, Policy::RoundRobin).user_transport;
                let got = hs.register(&handle(pool), e, step as u64);
                let want_type = m.pools.get(&pool).copied();
                let existing = m.pes.get(&(pool, id)).cloned();
                match (want_type, existing) {
                    (Some(t), _) if t != p.policy_type() => {
                        prop_assert_eq!(
                            got.unwrap_err().cause().code,
                            CauseCode::InconsistentPoolingPolicy
                        );
                    }
                    (_, Some(old)) if old.addr != addr => {
                        prop_assert_eq!(got.unwrap_err().cause().code, CauseCode::NonUniquePeId);
                    }
                    (t, old) => {
                        let got = got.unwrap();
                        prop_assert_eq!(got.new_pool, t.is_none());
                        prop_assert_eq!(got.new_pe, old.is_none());
                        let prev_owner = old.as_ref().map(|o| o.owner);
                        let moved_owner = prev_owner.filter(|&o| o != PrId::new(owner));
                        prop_assert_eq!(got.owner_change.map(|c| c.from), moved_owner);
                        m.pools.insert(pool, p.policy_type());
                        m.pes.insert(
                            (pool, id),
                            MPe {
                                owner: PrId::new(owner),
                                policy: p,
                                addr,
                                deadlines: old.map_or([None; 2], |o| o.deadlines),
                                marked: false,
                            },
                        );
                    }
                }
            }
            Op::Deregister { pool, id } => {
                let got = hs.deregister(&handle(pool), PeId(id));
                let had = m.pes.contains_key(&(pool, id));
                prop_assert_eq!(got.is_some(), had);
                if let Some(r) = got {
                    prop_assert_eq!(r.element.id, PeId(id));
                    m.remove(pool, id);
                    prop_assert_eq!(r.pool_removed, !m.pools.contains_key(&pool));
                }
            }
            Op::SetTimer {
                pool,
                id,
                keep_alive,
                deadline,
            } => {
                let kind = if keep_alive {
                    TimerKind::KeepAlive
                } else {
                    TimerKind::Lifetime
                };
                let ok = hs.set_timer(&handle(pool), PeId(id), kind, deadline);
                prop_assert_eq!(ok, m.pes.contains_key(&(pool, id)));
                if let Some(e) = m.pes.get_mut(&(pool, id)) {
                    e.deadlines[kind as usize] = Some(deadline);
                }
            }
            Op::CancelTimer {
                pool,
                id,
                keep_alive,
            } => {
                let kind = if keep_alive {
                    TimerKind::KeepAlive
                } else {
                    TimerKind::Lifetime
                };
                hs.cancel_timer(&handle(pool), PeId(id), kind);
                if let Some(e) = m.pes.get_mut(&(pool, id)) {
                    e.deadlines[kind as usize] = None;
                }
            }
            Op::Expire { now } => {
                let mut last = 0;
                while let Some(x) = hs.pop_expired(now) {
                    prop_assert!(x.deadline <= now && x.deadline >= last);
                    last = x.deadline;
                    let key = (
                        m.pools
                            .keys()
                            .copied()
                            .find(|&p| handle(p) == x.pool)
                            .unwrap(),
                        x.pe.0,
                    );
                    let e = m.pes.get_mut(&key).unwrap();
                    prop_assert_eq!(e.deadlines[x.kind as usize], Some(x.deadline));
                    e.deadlines[x.kind as usize] = None;
                    if x.kind == TimerKind::Lifetime {
                        // The registrar drops an expired registration.
                        prop_assert!(hs.remove(x.entry).is_some());
                        m.remove(key.0, key.1);
                    }
                }
                let remaining = m.pes.values().flat_map(|e| e.deadlines).flatten().min();
                prop_assert!(remaining.is_none_or(|d| d > now));
            }
            Op::SetOwner { pool, id, owner } => {
                let got = hs.set_owner(&handle(pool), PeId(id), PrId::new(owner));
                match m.pes.get_mut(&(pool, id)) {
                    Some(e) => {
                        prop_assert_eq!(got.map(|c| c.from), Some(e.owner));
                        e.owner = PrId::new(owner);
                        e.marked = false;
                    }
                    None => prop_assert!(got.is_none()),
                }
            }
            Op::Reassign { from, to } => {
                let n = hs.reassign_owner(pr(from), pr(to));
                let mut moved = 0;
                for e in m.pes.values_mut().filter(|e| e.owner == Some(pr(from))) {
                    moved += 1;
                    e.owner = Some(pr(to));
                    if from != to {
                        e.marked = false;
                    }
                }
                prop_assert_eq!(n, moved);
            }
            Op::Resolve { pool, items, seed } => {
                let mut r = rng(seed);
                let got = hs.resolve(&handle(pool), Some(items), &mut r, &mut out);
                match m.pools.get(&pool) {
                    None => prop_assert!(got.is_err()),
                    Some(&t) => {
                        prop_assert_eq!(got.unwrap(), t);
                        let distinct: HashSet<_> = out.iter().collect();
                        prop_assert_eq!(distinct.len(), out.len());
                        let wanted = hs.items_wanted(Some(items));
                        let members = m.pes.iter().filter(|(k, _)| k.0 == pool);
                        let eligible = members
                            .filter(|(_, e)| e.policy.weight().is_none_or(|w| w > 0))
                            .count();
                        prop_assert_eq!(out.len(), wanted.min(eligible));
                        for &id in &out {
                            prop_assert_eq!(hs.handle_of(id), Some(&handle(pool)));
                        }
                    }
                }
            }
            Op::Mark { owner } => {
                let n = hs.mark_owned(pr(owner));
                let mut want = 0;
                for e in m.pes.values_mut().filter(|e| e.owner == Some(pr(owner))) {
                    e.marked = true;
                    want += 1;
                }
                prop_assert_eq!(n, want);
            }
            Op::Sweep { owner } => {
                let mut got: Vec<(String, u32)> = hs
                    .sweep_marked(pr(owner))
                    .into_iter()
                    .map(|r| (r.pool.to_string(), r.element.id.0))
                    .collect();
                got.sort();
                let gone: Vec<(u8, u32)> = m
                    .pes
                    .iter()
                    .filter(|(_, e)| e.marked && e.owner == Some(pr(owner)))
                    .map(|(k, _)| *k)
                    .collect();
                let mut want: Vec<(String, u32)> = gone
                    .iter()
                    .map(|&(p, i)| (handle(p).to_string(), i))
                    .collect();
                want.sort();
                prop_assert_eq!(got, want);
                for (p, i) in gone {
                    m.remove(p, i);
                }
            }
        }
        if let Err(e) = hs.check_invariants() {
            return Err(TestCaseError::fail(format!(
                "after step {step} {op:?}: {e}"
            )));
        }
        compare(&hs, &m)
            .map_err(|e| TestCaseError::fail(format!("after step {step} {op:?}: {e}")))?;
    }
    Ok(())
}

fn compare(hs: &Handlespace, m: &Model) -> Result<(), String> {
    if hs.len() != m.pes.len() || hs.pool_count() != m.pools.len() {
        return Err(format!(
            "sizes {} / {} vs model {} / {}",
            hs.len(),
            hs.pool_count(),
            m.pes.len(),
            m.pools.len()
        ));
    }
    for (&(p, id), e) in &m.pes {
        let got = hs
            .get(&handle(p), PeId(id))
            .ok_or(format!("missing {p}/{id}"))?;
        let kinds = [TimerKind::Lifetime, TimerKind::KeepAlive];
        if got.owner() != e.owner
            || got.element().policy != e.policy
            || got.is_marked() != e.marked
            || kinds.iter().any(|&k| {
                hs.deadline(hs.lookup(&handle(p), PeId(id)).unwrap(), k) != e.deadlines[k as usize]
            })
        {
            return Err(format!("{p}/{id} differs: {got:?} vs {e:?}"));
        }
    }
    for o in 1..4 {
        let owned: Vec<(PoolHandle, PeId)> = m
            .pes
            .iter()
            .filter(|(_, e)| e.owner == Some(pr(o)))
            .map(|(&(p, id), _)| (handle(p), PeId(id)))
            .collect();
        if hs.owned_count(pr(o)) != owned.len() {
            return Err(format!("owned_count({o})"));
        }
        let want = PeChecksum::compute(owned.iter().map(|(h, id)| (h, *id))).value();
        if hs.checksum(pr(o)) != want || hs.recompute_checksum(pr(o)) != want {
            return Err(format!("checksum({o})"));
        }
    }
    let total = hs.owner_counts().map(|(_, n)| n).sum::<usize>();
    if total != m.pes.values().filter(|e| e.owner.is_some()).count() {
        return Err("owner_counts".into());
    }
    // Paging visits exactly the model's PEs in (handle, id) order.
    let mut all = Vec::new();
    let mut cursor: Option<(PoolHandle, PeId)> = None;
    loop {
        let mut out = Vec::new();
        let more = hs.page(cursor.as_ref().map(|(h, p)| (h, *p)), None, 5, &mut out);
        for id in out {
            let h = hs.handle_of(id).unwrap().clone();
            let pe = hs.entry(id).unwrap().id();
            all.push((h.clone(), pe.0));
            cursor = Some((h, pe));
        }
        if !more {
            break;
        }
    }
    let mut want: Vec<(PoolHandle, u32)> = m.pes.keys().map(|&(p, id)| (handle(p), id)).collect();
    want.sort();
    if all != want {
        return Err("paging order".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn indices_agree_with_a_naive_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}

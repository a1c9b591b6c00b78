//! The protocol machines together in the simulator: replication, failure of
//! PEs and registrars, partitions, and the Takeover Suggestion experiment of
//! the draft. Every test runs over several seeds (`RSERPOOL_SEEDS=n` for
//! more, `RSERPOOL_SEED=s` for one) and names the seed when it fails.

mod support;

use rserpool_core::PoolUserEvent;
use rserpool_core::registrar::RegistrarEvent;
use rserpool_sim::{CrashMode, Happening, NodeId};
use rserpool_wire::PeId;
use std::collections::BTreeSet;
use std::time::Duration;
use support::{RoleEvent, Scope, ScopeConfig, seeds};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// Resolves the pool at a PU and returns the PEs the registrar answered with.
fn resolve_all(scope: &mut Scope, pu: NodeId) -> BTreeSet<PeId> {
    let pool = scope.pool.clone();
    let request = scope
        .world
        .act(pu, |m, now| {
            m.pool_user_mut()
                .map(|app| app.pool_user_mut().resolve(now, pool.clone()))
        })
        .flatten()
        .expect("a running PU");
    let mut out = BTreeSet::new();
    scope.run_until(MS, 2 * S, |s| {
        s.world.trace().iter().rev().take(64).any(|e| {
            matches!(&e.what, Happening::Event(RoleEvent::PoolUser(PoolUserEvent::Resolved { request: r, .. })) if r == &request)
        })
    });
    if let Some(app) = scope.world.machine(pu).and_then(|m| m.pool_user()) {
        if let Some(c) = app.pool_user().cached(&pool) {
            out.extend(c.elements.iter().map(|pe| pe.id));
        }
    }
    out
}

/// Issue scenario 1: A registration is visible at every registrar within a bound: one round
/// trip to the home plus one HANDLE_UPDATE hop (here under 10 ms on a LAN of
/// at most 1 ms one-way delay).
#[test]
fn registration_reaches_every_registrar() {
    for seed in seeds(20) {
        let mut s = Scope::build(&ScopeConfig::new(seed, 3, 20, 0));
        s.world
            .run_until(rserpool_core::Instant::from_epoch(Duration::from_secs(1)));
        let mut registered_at = std::collections::BTreeMap::new();
        let mut worst = Duration::ZERO;
        let end = s.world.now() + 10 * S;
        while s.world.now() < end {
            let live = s.live_pe_ids();
            for id in &live {
                registered_at.entry(*id).or_insert(s.world.now());
            }
            let everywhere: BTreeSet<PeId> = s
                .prs
                .iter()
                .map(|n| s.known_pes(*n))
                .reduce(|a, b| a.intersection(&b).copied().collect())
                .unwrap_or_default();
            for (id, at) in registered_at.clone() {
                if everywhere.contains(&id) {
                    worst = worst.max(s.world.now().saturating_since(at));
                    registered_at.insert(id, rserpool_core::Instant::from_epoch(Duration::MAX / 4));
                }
            }
            let next = s.world.now() + MS;
            s.world.run_until(next);
        }
        assert_eq!(s.live_pe_ids().len(), 20, "seed {seed}: all PEs registered");
        assert!(s.all_registrars_hold(&s.live_pe_ids()), "seed {seed}");
        println!("propagation seed {seed}: slowest {worst:?}");
        assert!(
            worst <= 10 * MS,
            "seed {seed}: slowest propagation {worst:?}"
        );
    }
}

/// Issue scenario 2: A PE that dies is removed everywhere within failure detection (5 s) +
/// keep-alive timeout (5 s) + 1 s, and PUs stop getting it.
#[test]
fn dead_pe_is_removed_everywhere() {
    for seed in seeds(20) {
        let mut s = Scope::build(&ScopeConfig::new(seed, 3, 10, 1));
        s.world.run_for(20 * S);
        let victim = s.pes[3];
        let victim_id = s.pe(victim).unwrap().pe_id();
        let pu = s.pus[0];
        assert_eq!(
            resolve_all(&mut s, pu),
            s.running_pe_ids(),
            "seed {seed}: PU sees every PE"
        );
        s.world.crash(victim, CrashMode::Host);
        let crashed = s.world.now();
        let gone = s
            .run_until(10 * MS, 30 * S, |s| {
                s.prs.iter().all(|n| !s.known_pes(*n).contains(&victim_id))
            })
            .unwrap_or_else(|| panic!("seed {seed}: PE never removed"));
        let took = gone.saturating_since(crashed);
        println!("dead PE seed {seed}: removed everywhere after {took:?}");
        assert!(took <= 11 * S, "seed {seed}: removal took {took:?}");
        for _ in 0..20 {
            let got = resolve_all(&mut s, pu);
            assert!(!got.is_empty(), "seed {seed}");
            assert!(
                !got.contains(&victim_id),
                "seed {seed}: PU still got the dead PE"
            );
        }
        let expected: BTreeSet<PeId> = s.running_pe_ids();
        assert!(s.all_registrars_hold(&expected), "seed {seed}");
    }
}

/// Issue scenario 3: A registrar that crashes: all its PEs are re-homed, none is lost at
/// any time. The PEs notice first (association lost after the 5 s failure
/// detection) and register elsewhere: bound 5 s + 2 s. The peers' takeover
/// (MAX-TIME-LAST-HEARD 61 s + MAX-TIME-NO-RESPONSE 5 s) then drops the dead
/// registrar: bound 66 s + 2 s.
#[test]
fn crashed_registrar_pes_are_rehomed() {
    for seed in seeds(20) {
        let mut s = Scope::build(&ScopeConfig::new(seed, 3, 30, 0));
        s.world.run_for(30 * S);
        let all = s.running_pe_ids();
        assert_eq!(s.live_pe_ids(), all, "seed {seed}");
        let dead = s.prs[0];
        let dead_id = s.registrar(dead).unwrap().id();
        let orphans = s.registrar(dead).unwrap().owned_count(dead_id);
        assert!(orphans > 0, "seed {seed}: registrar 0 owns nothing");
        s.world.crash(dead, CrashMode::Host);
        let crashed = s.world.now();
        let survivors = [s.prs[1], s.prs[2]];
        let rehomed = s
            .run_until(10 * MS, 20 * S, |s| {
                // No PE may go missing at a surviving registrar at any time.
                for n in survivors {
                    assert_eq!(
                        s.known_pes(n),
                        all,
                        "seed {seed}: PE lost at {}",
                        s.world.name(n)
                    );
                }
                let owned: usize = survivors
                    .iter()
                    .map(|n| {
                        let r = s.registrar(*n).unwrap();
                        r.owned_count(r.id())
                    })
                    .sum();
                owned == all.len()
            })
            .unwrap_or_else(|| panic!("seed {seed}: PEs not re-homed"));
        let took = rehomed.saturating_since(crashed);
        println!("crashed registrar seed {seed}: {orphans} PEs re-homed after {took:?}");
        assert!(took <= 7 * S, "seed {seed}: re-homing took {took:?}");
        let dropped = s
            .run_until(100 * MS, 80 * S, |s| {
                survivors
                    .iter()
                    .all(|n| s.registrar(*n).unwrap().peers().all(|p| p.id != dead_id))
            })
            .unwrap_or_else(|| panic!("seed {seed}: dead registrar never dropped"));
        assert!(dropped.saturating_since(crashed) <= 68 * S, "seed {seed}");
        for n in survivors {
            assert_eq!(s.known_pes(n), all, "seed {seed}");
            assert_eq!(
                s.registrar(n).unwrap().owned_count(dead_id),
                0,
                "seed {seed}"
            );
        }
    }
}

/// Issue scenario 3b: A registrar that only its peers cannot reach (its PEs still can) is
/// taken over by a peer (RFC 5353 §3.5): the winner claims its PEs with
/// ENDPOINT_KEEP_ALIVE(H) and they re-register there. Bound: 61 s + 5 s +
/// 2 s.
#[test]
fn unreachable_registrar_is_taken_over() {
    for seed in seeds(10) {
        let mut cfg = ScopeConfig::new(seed, 3, 30, 0);
        // Foreign PEs expire at non-owners after their life without updates;
        // a life beyond the failure detection leaves them to the takeover.
        cfg.pe_life = 300 * S;
        let mut s = Scope::build(&cfg);
        s.world.run_for(30 * S);
        let all = s.running_pe_ids();
        let (a, b, c) = (s.prs[0], s.prs[1], s.prs[2]);
        let a_id = s.registrar(a).unwrap().id();
        s.world.cut(a, b);
        s.world.cut(a, c);
        let cut = s.world.now();
        let done = s
            .run_until(100 * MS, 90 * S, |s| {
                s.homes().get(&a_id).copied().unwrap_or(0) == 0
                    && [b, c].iter().all(|n| s.known_pes(*n) == all)
                    && s.live_pe_ids() == all
            })
            .unwrap_or_else(|| {
                for (t, n, e) in s.registrar_events() {
                    if !matches!(
                        e,
                        RegistrarEvent::Registered { .. } | RegistrarEvent::SuggestionSent { .. }
                    ) {
                        eprintln!("{t:?} {} {e:?}", s.world.name(n));
                    }
                }
                eprintln!(
                    "homes {:?} live {} all {}",
                    s.homes(),
                    s.live_pe_ids().len(),
                    all.len()
                );
                for n in [b, c] {
                    eprintln!("{} knows {}", s.world.name(n), s.known_pes(n).len());
                }
                panic!("seed {seed}: takeover did not complete")
            });
        println!(
            "cut-off registrar seed {seed}: taken over after {:?}",
            done.saturating_since(cut)
        );
        assert!(
            done.saturating_since(cut) <= 68 * S,
            "seed {seed}: {:?}",
            done.saturating_since(cut)
        );
        let evs = s.registrar_events();
        assert_eq!(
            evs.iter()
                .filter(|(_, _, e)| matches!(e, RegistrarEvent::TakeoverCompleted { target, .. } if target == &a_id))
                .count(),
            1,
            "seed {seed}: exactly one winner"
        );
    }
}

/// Issue scenario 4: Partition and heal: afterwards the handlespaces converge (equal
/// checksums, equal contents) within the rediscovery interval (5 s) plus
/// the audit and resynchronisation (2 s).
#[test]
fn partition_heals_and_handlespaces_converge() {
    for seed in seeds(10) {
        let mut s = Scope::build(&ScopeConfig::new(seed, 3, 30, 0));
        s.world.run_for(30 * S);
        let side_a: Vec<NodeId> = std::iter::once(s.prs[0])
            .chain(s.pes[..15].iter().copied())
            .collect();
        let side_b: Vec<NodeId> = s.prs[1..]
            .iter()
            .chain(s.pes[15..].iter())
            .copied()
            .collect();
        s.world.partition(&[&side_a, &side_b]);
        s.world.run_for(120 * S);
        let before: Vec<usize> = s.prs.iter().map(|n| s.known_pes(*n).len()).collect();
        s.world.heal();
        let healed = s.world.now();
        let all = s.running_pe_ids();
        let converged = s
            .run_until(100 * MS, 60 * S, |s| {
                let regs: Vec<_> = s.prs.iter().filter_map(|n| s.registrar(*n)).collect();
                let ids: Vec<_> = regs.iter().map(|r| r.id()).collect();
                s.live_pe_ids() == all
                    && s.all_registrars_hold(&all)
                    && ids.iter().all(|owner| {
                        let c = regs[0].checksum(*owner);
                        regs.iter().all(|r| r.checksum(*owner) == c)
                    })
            })
            .unwrap_or_else(|| panic!("seed {seed}: no convergence after heal"));
        let took = converged.saturating_since(healed);
        println!(
            "partition seed {seed}: converged {took:?} after the heal (PEs known before: {before:?})"
        );
        assert!(took <= 7 * S, "seed {seed}: convergence took {took:?}");
    }
}

//! Selection policies (RFC 5356, delay draft, reference implementation
//! extras): order, ties, side effects, item counts and distributions.
//! Seeds are fixed, so the statistical checks are deterministic; each states
//! the tolerance it allows.

mod common;
use common::*;
use rserpool_handlespace::*;
use rserpool_wire::*;
use std::collections::{HashMap, HashSet};

fn pool_of(policies: &[Policy]) -> (Handlespace, PoolHandle) {
    let mut hs = Handlespace::default();
    let h = ph("P");
    for (i, p) in policies.iter().enumerate() {
        hs.register(&h, pe(i as u32 + 1, 1, p.clone()), 0).unwrap();
    }
    (hs, h)
}

/// P-02: circular list, head advances by one per request.
#[test]
fn round_robin_rotates_the_head() {
    let (mut hs, h) = pool_of(&[Policy::RoundRobin, Policy::RoundRobin, Policy::RoundRobin]);
    let mut r = rng(1);
    let singles: Vec<u32> = (0..6)
        .flat_map(|_| resolve_ids(&mut hs, &h, Some(1), &mut r))
        .collect();
    assert_eq!(singles, vec![1, 2, 3, 1, 2, 3]);
    assert_eq!(resolve_ids(&mut hs, &h, Some(3), &mut r), vec![1, 2, 3]);
    assert_eq!(resolve_ids(&mut hs, &h, Some(3), &mut r), vec![2, 3, 1]);
    assert_eq!(resolve_ids(&mut hs, &h, Some(5), &mut r), vec![3, 1, 2]);
}

/// RR stays fair while PEs come and go: over every full cycle each PE
/// present for the whole cycle is returned exactly once.
#[test]
fn round_robin_is_fair_under_concurrent_registrations() {
    let mut hs = Handlespace::default();
    let h = ph("P");
    let mut r = rng(2);
    for i in 1..=4 {
        hs.register(&h, pe(i, 1, Policy::RoundRobin), 0).unwrap();
    }
    let mut counts: HashMap<u32, u32> = HashMap::new();
    let mut next_id = 5;
    for step in 0..400 {
        if step % 7 == 3 {
            hs.register(&h, pe(next_id, 1, Policy::RoundRobin), 0)
                .unwrap();
            next_id += 1;
        }
        if step % 11 == 5 {
            // Re-registration (same values) must not move the PE in the circle.
            hs.register(&h, pe(2, 1, Policy::RoundRobin), step).unwrap();
        }
        let id = resolve_ids(&mut hs, &h, Some(1), &mut r)[0];
        *counts.entry(id).or_default() += 1;
    }
    // PE 1..4 were present throughout: their counts differ by at most one
    // cycle's worth (1) from each other.
    let c: Vec<u32> = (1..=4).map(|i| counts[&i]).collect();
    assert!(
        c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
        "{c:?}"
    );
    // Now a stable pool: n consecutive picks hit n distinct PEs.
    let n = hs.pool(&h).unwrap().len();
    let cycle: HashSet<u32> = (0..n)
        .map(|_| resolve_ids(&mut hs, &h, Some(1), &mut r)[0])
        .collect();
    assert_eq!(cycle.len(), n);
    hs.check_invariants().unwrap();
}

/// P-04: WRR occurrences proportional to weight and evenly spread.
#[test]
fn weighted_round_robin_is_proportional_and_spread() {
    let (mut hs, h) = pool_of(&[
        Policy::WeightedRoundRobin { weight: 1 },
        Policy::WeightedRoundRobin { weight: 3 },
        Policy::WeightedRoundRobin { weight: 0 },
    ]);
    let mut r = rng(3);
    let seq: Vec<u32> = (0..400)
        .map(|_| resolve_ids(&mut hs, &h, Some(1), &mut r)[0])
        .collect();
    let a = seq.iter().filter(|&&x| x == 1).count();
    let b = seq.iter().filter(|&&x| x == 2).count();
    assert_eq!((a, b), (100, 300), "weight 0 never served");
    // Evenly spread: at most 3 consecutive picks of B, never two As in a row.
    let mut run = 0;
    for w in seq.windows(2) {
        assert!(!(w[0] == 1 && w[1] == 1));
        run = if w[1] == 2 { run + 1 } else { 0 };
        assert!(run < 4);
    }
    // Lists never repeat a PE and exclude weight 0.
    assert_eq!(resolve_ids(&mut hs, &h, Some(5), &mut r).len(), 2);
    hs.check_invariants().unwrap();
}

/// P-05: RAND returns at most the requested number, no duplicates.
#[test]
fn random_returns_distinct_pes() {
    let (mut hs, h) = pool_of(&[Policy::Random, Policy::Random, Policy::Random]);
    let mut r = rng(4);
    for _ in 0..50 {
        let got = resolve_ids(&mut hs, &h, Some(5), &mut r);
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 3);
        assert_eq!(got.len(), 3);
        let two = resolve_ids(&mut hs, &h, Some(2), &mut r);
        assert!(two.len() == 2 && two[0] != two[1]);
    }
}

/// RAND is uniform: chi-square over 10 PEs, 20k picks (df 9, bound 27.9 = p 0.001).
#[test]
fn random_is_uniform() {
    let (mut hs, h) = pool_of(&vec![Policy::Random; 10]);
    let mut r = rng(5);
    let mut counts = [0u64; 10];
    for _ in 0..10_000 {
        for id in resolve_ids(&mut hs, &h, Some(2), &mut r) {
            counts[id as usize - 1] += 1;
        }
    }
    let x2 = chi_square(&counts, &[1.0; 10]);
    assert!(x2 < 27.9, "chi-square {x2} for {counts:?}");
    // k > n/2 (Floyd) and k = n also give distinct, complete answers.
    let seven = resolve_ids(&mut hs, &h, Some(7), &mut r);
    assert_eq!(seven.iter().collect::<HashSet<_>>().len(), 7);
}

/// P-06: WRAND with weights 1:2:7, 10k single picks, chi-square (df 2,
/// bound 13.8 = p 0.001); lists of 3 have no duplicates; weight 0 never.
#[test]
fn weighted_random_is_proportional() {
    let (mut hs, h) = pool_of(&[
        Policy::WeightedRandom { weight: 1 },
        Policy::WeightedRandom { weight: 2 },
        Policy::WeightedRandom { weight: 7 },
        Policy::WeightedRandom { weight: 0 },
    ]);
    let mut r = rng(6);
    let mut counts = [0u64; 3];
    for _ in 0..10_000 {
        let id = resolve_ids(&mut hs, &h, Some(1), &mut r)[0];
        assert_ne!(id, 4);
        counts[id as usize - 1] += 1;
    }
    let x2 = chi_square(&counts, &[1.0, 2.0, 7.0]);
    assert!(x2 < 13.8, "chi-square {x2} for {counts:?}");
    for _ in 0..200 {
        let got = resolve_ids(&mut hs, &h, Some(4), &mut r);
        assert_eq!(got.len(), 3);
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 3);
    }
}

/// Without replacement, the second pick follows the remaining weights even
/// when one PE dominates (this exercises the exact fallback of rejection).
#[test]
fn weighted_random_second_pick_is_exact() {
    let (mut hs, h) = pool_of(&[
        Policy::WeightedRandom { weight: 1_000_000 },
        Policy::WeightedRandom { weight: 1 },
        Policy::WeightedRandom { weight: 3 },
    ]);
    let mut r = rng(7);
    let mut second = [0u64; 2];
    for _ in 0..8_000 {
        let got = resolve_ids(&mut hs, &h, Some(2), &mut r);
        assert_eq!(got[0], 1);
        second[got[1] as usize - 2] += 1;
    }
    // Expected 1:3 (df 1, bound 10.8 = p 0.001).
    let x2 = chi_square(&second, &[1.0, 3.0]);
    assert!(x2 < 10.8, "chi-square {x2} for {second:?}");
    hs.check_invariants().unwrap();
}

/// P-07: PRIO returns the highest priorities, decreasing.
#[test]
fn priority_orders_by_decreasing_priority() {
    let (mut hs, h) = pool_of(&[
        Policy::Priority { priority: 5 },
        Policy::Priority { priority: 9 },
        Policy::Priority { priority: 1 },
    ]);
    let mut r = rng(8);
    assert_eq!(resolve_ids(&mut hs, &h, Some(3), &mut r), vec![2, 1, 3]);
    assert_eq!(resolve_ids(&mut hs, &h, Some(1), &mut r), vec![2]);
}

/// P-09: LU: lowest loads, sorted, ties round robin.
#[test]
fn least_used_breaks_ties_round_robin() {
    let (mut hs, h) = pool_of(&[
        Policy::LeastUsed { load: pct(50) },
        Policy::LeastUsed { load: pct(10) },
        Policy::LeastUsed { load: pct(10) },
    ]);
    let mut r = rng(9);
    assert_eq!(resolve_ids(&mut hs, &h, Some(3), &mut r), vec![2, 3, 1]);
    assert_eq!(resolve_ids(&mut hs, &h, Some(3), &mut r), vec![3, 2, 1]);
    assert_eq!(resolve_ids(&mut hs, &h, Some(1), &mut r), vec![2]);
    assert_eq!(resolve_ids(&mut hs, &h, Some(1), &mut r), vec![3]);
    // A load change by re-registration reorders.
    hs.register(&h, pe(1, 1, Policy::LeastUsed { load: 0 }), 1)
        .unwrap();
    assert_eq!(resolve_ids(&mut hs, &h, Some(1), &mut r), vec![1]);
}

/// LU never returns a more loaded PE than one it skips, and sorts ascending.
#[test]
fn least_used_returns_the_least_loaded() {
    let mut r = rng(10);
    let loads: Vec<u32> = (0..200).map(|i| (i * 7919 % 101) * 1000).collect();
    let (mut hs, h) = pool_of(
        &loads
            .iter()
            .map(|&l| Policy::LeastUsed { load: l })
            .collect::<Vec<_>>(),
    );
    for k in [1, 3, 17] {
        for _ in 0..20 {
            let got = resolve_ids(&mut hs, &h, Some(k), &mut r);
            let got_loads: Vec<u32> = got.iter().map(|&id| loads[id as usize - 1]).collect();
            assert!(got_loads.windows(2).all(|w| w[0] <= w[1]));
            let max_got = *got_loads.last().unwrap();
            let skipped_min = (1..=200u32)
                .filter(|id| !got.contains(id))
                .map(|id| loads[id as usize - 1])
                .min()
                .unwrap();
            assert!(max_got <= skipped_min);
        }
    }
}

/// P-11: LUD counters grow per selection and reset on re-registration.
#[test]
fn least_used_with_degradation_alternates_and_resets() {
    let p = Policy::LeastUsedWithDegradation {
        load: 0,
        degradation: pct(10),
    };
    let (mut hs, h) = pool_of(&[p.clone(), p.clone()]);
    let mut r = rng(11);
    let seq: Vec<u32> = (0..6)
        .map(|_| resolve_ids(&mut hs, &h, Some(1), &mut r)[0])
        .collect();
    assert_eq!(seq, vec![1, 2, 1, 2, 1, 2]);
    assert_eq!(hs.get(&h, PeId(1)).unwrap().selection_count(), 3);
    // PE 2 re-registers: counter 0, so it is preferred until it catches up.
    hs.register(&h, pe(2, 1, p), 1).unwrap();
    assert_eq!(hs.get(&h, PeId(2)).unwrap().selection_count(), 0);
    let seq: Vec<u32> = (0..3)
        .map(|_| resolve_ids(&mut hs, &h, Some(1), &mut r)[0])
        .collect();
    assert_eq!(seq, vec![2, 2, 2]);
    hs.check_invariants().unwrap();
}

/// P-12: PLU orders by load + degradation.
#[test]
fn priority_least_used_adds_degradation() {
    let (mut hs, h) = pool_of(&[
        Policy::PriorityLeastUsed {
            load: pct(50),
            degradation: pct(50),
        },
        Policy::PriorityLeastUsed {
            load: pct(50),
            degradation: pct(10),
        },
    ]);
    let mut r = rng(12);
    assert_eq!(resolve_ids(&mut hs, &h, Some(2), &mut r), vec![2, 1]);
}

/// P-13: RLU behaves like WRAND with weight 0xFFFFFFFF - load: 0 % vs 75 % ≈ 4:1.
#[test]
fn randomized_least_used_weights_by_free_capacity() {
    let (mut hs, h) = pool_of(&[
        Policy::RandomizedLeastUsed { load: 0 },
        Policy::RandomizedLeastUsed { load: pct(75) },
    ]);
    let mut r = rng(13);
    let mut counts = [0u64; 2];
    for _ in 0..10_000 {
        counts[resolve_ids(&mut hs, &h, Some(1), &mut r)[0] as usize - 1] += 1;
    }
    let x2 = chi_square(&counts, &[4.0, 1.0]);
    assert!(x2 < 10.8, "chi-square {x2} for {counts:?}");
}

/// Randomized LUD: selection degrades the weight of the PEs handed out.
#[test]
fn randomized_degradation_counts_selections() {
    let p = Policy::RandomizedLeastUsedWithDegradation {
        load: 0,
        degradation: pct(40),
    };
    let (mut hs, h) = pool_of(&[p.clone(), p]);
    let mut r = rng(14);
    for _ in 0..10 {
        resolve_ids(&mut hs, &h, Some(1), &mut r);
    }
    let c1 = hs.get(&h, PeId(1)).unwrap().selection_count();
    let c2 = hs.get(&h, PeId(2)).unwrap().selection_count();
    assert_eq!(c1 + c2, 10);
    hs.check_invariants().unwrap();
}

/// LU-DPF: key = min(100 %, load + distance x DPF) (WIRE.md §6).
#[test]
fn least_used_dpf_penalises_distance() {
    let (mut hs, h) = pool_of(&[
        Policy::LeastUsedDpf {
            load: pct(10),
            load_dpf: pct(1),
            distance: 50,
        },
        Policy::LeastUsedDpf {
            load: pct(30),
            load_dpf: pct(1),
            distance: 5,
        },
        Policy::LeastUsedDpf {
            load: pct(20),
            load_dpf: pct(1),
            distance: 0,
        },
    ]);
    let mut r = rng(15);
    // Keys: 60 %, 35 %, 20 %.
    assert_eq!(resolve_ids(&mut hs, &h, Some(3), &mut r), vec![3, 2, 1]);
}

/// WRAND-DPF: effective weight max(1, w - round(w x distance x DPF)).
#[test]
fn weighted_random_dpf_penalises_distance() {
    let (mut hs, h) = pool_of(&[
        Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: pct(1),
            distance: 50,
        },
        Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: pct(1),
            distance: 0,
        },
    ]);
    let mut r = rng(16);
    let mut counts = [0u64; 2];
    for _ in 0..9_000 {
        counts[resolve_ids(&mut hs, &h, Some(1), &mut r)[0] as usize - 1] += 1;
    }
    // Effective weights 500 : 1000.
    let x2 = chi_square(&counts, &[1.0, 2.0]);
    assert!(x2 < 10.8, "chi-square {x2} for {counts:?}");
}

/// H-03: Items absent or 0 -> default (3); capped at max_items; 0xFFFFFFFF = all.
#[test]
fn item_counts_follow_the_option_and_the_default() {
    let (mut hs, h) = pool_of(&vec![Policy::RoundRobin; 10]);
    let mut r = rng(17);
    assert_eq!(resolve_ids(&mut hs, &h, Some(1), &mut r).len(), 1);
    assert_eq!(resolve_ids(&mut hs, &h, Some(3), &mut r).len(), 3);
    assert_eq!(resolve_ids(&mut hs, &h, Some(u32::MAX), &mut r).len(), 10);
    assert_eq!(resolve_ids(&mut hs, &h, None, &mut r).len(), 3);
    assert_eq!(resolve_ids(&mut hs, &h, Some(0), &mut r).len(), 3);
    let mut small = Handlespace::new(Config {
        default_items: 2,
        max_items: 4,
        ..Config::default()
    });
    for i in 0..10 {
        small
            .register(&h, pe(i, 1, Policy::LeastUsed { load: i }), 0)
            .unwrap();
    }
    assert_eq!(resolve_ids(&mut small, &h, None, &mut r), vec![0, 1]);
    assert_eq!(
        resolve_ids(&mut small, &h, Some(99), &mut r),
        vec![0, 1, 2, 3]
    );
    let mut out = Vec::new();
    assert_eq!(
        small.resolve(&ph("none"), None, &mut r, &mut out),
        Err(UnknownPool)
    );
    assert!(out.is_empty());
}

/// Same seed, same answers.
#[test]
fn selection_is_deterministic_for_a_seed() {
    let run = || {
        let (mut hs, h) = pool_of(
            &(1..50)
                .map(|w| Policy::WeightedRandom { weight: w })
                .collect::<Vec<_>>(),
        );
        let mut r = rng(99);
        (0..100)
            .flat_map(|_| resolve_ids(&mut hs, &h, Some(3), &mut r))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// Every policy type the wire crate knows can form a pool and resolve.
#[test]
fn every_known_policy_resolves_without_duplicates() {
    let codes = [
        0x1,
        0x2,
        0x3,
        0x4,
        0x5,
        0x4000_0001,
        0x4000_0002,
        0x4000_0003,
        0x4000_0004,
        0xB000_1001,
        0xB000_1002,
        0xB000_1003,
        0xB000_1004,
        0xB000_2001,
        0xB000_2002,
        0xB000_2003,
    ];
    let mut r = rng(18);
    for code in codes {
        let t = PolicyType::from_code(code);
        let mut hs = Handlespace::default();
        let h = ph("P");
        for i in 0..8u32 {
            // Non-zero values so weighted policies can serve.
            let p = match Policy::from_type_default(t) {
                Policy::WeightedRoundRobin { .. } => Policy::WeightedRoundRobin { weight: i + 1 },
                Policy::WeightedRandom { .. } => Policy::WeightedRandom { weight: i + 1 },
                Policy::WeightedRandomDpf { .. } => Policy::WeightedRandomDpf {
                    weight: i + 1,
                    weight_dpf: 0,
                    distance: 0,
                },
                p => p,
            };
            hs.register(&h, pe(i, 1, p), 0).unwrap();
        }
        for _ in 0..20 {
            let got = resolve_ids(&mut hs, &h, Some(5), &mut r);
            assert_eq!(got.len(), 5, "{t}");
            assert_eq!(got.iter().collect::<HashSet<_>>().len(), 5, "{t}");
        }
        hs.check_invariants().unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

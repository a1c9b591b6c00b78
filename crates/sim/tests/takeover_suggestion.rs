//! The draft's scenario: 5 registrars, 1,000 PEs; two registrars are
//! unreachable long enough that every PE moves to the other three; then
//! they recover. With the `balanced` policy ownership must reach max/mean
//! <= 1.1 within two re-registration intervals of the recovery and stay
//! there, moving at most 1.2x the minimum number of PEs; with `off` it stays
//! skewed; with `xor` the shares it settles at are reported.
//!
//! `cargo test -p rserpool-sim --release --test takeover_suggestion -- --nocapture`
//! prints the figures (docs/SIMULATION.md has them).

mod support;

use rserpool_core::PoolElementEvent;
use rserpool_core::registrar::BalancePolicy;
use rserpool_sim::Happening;
use std::time::Duration;
use support::{RoleEvent, Scope, ScopeConfig, seeds};

const S: Duration = Duration::from_secs(1);
const T4: Duration = Duration::from_secs(30);

/// What one run measured after the recovery.
#[derive(Debug)]
struct Outcome {
    seed: u64,
    /// Ownership per registrar when the two came back.
    at_recovery: Vec<usize>,
    /// Ownership at the end.
    at_end: Vec<usize>,
    /// Time from recovery until max/mean <= 1.1 (if reached).
    balanced_after: Option<Duration>,
    /// Highest max/mean after it was first reached.
    worst_after: f64,
    /// PEs that changed home after the recovery.
    moves: usize,
    /// The fewest moves that balance the ownership.
    min_moves: usize,
    /// max/mean at the end.
    final_imbalance: f64,
}

impl Outcome {
    /// One row of the table in docs/SIMULATION.md.
    fn row(&self, policy: &str) -> String {
        format!(
            "| {policy} | {} | {:?} | {:?} | {} | {:.3} | {} / {} | {:.3} |",
            self.seed,
            self.at_recovery,
            self.at_end,
            self.balanced_after
                .map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            self.worst_after,
            self.moves,
            self.min_moves,
            self.final_imbalance,
        )
    }
}

fn owned(s: &Scope) -> Vec<usize> {
    s.prs
        .iter()
        .map(|n| s.registrar(*n).map_or(0, |r| r.owned_count(r.id())))
        .collect()
}

fn imbalance(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    let mean = total as f64 / counts.len() as f64;
    counts.iter().copied().max().unwrap_or(0) as f64 / mean
}

fn run(seed: u64, balance: BalancePolicy) -> Outcome {
    let mut cfg = ScopeConfig::new(seed, 5, 1000, 0);
    cfg.registrar.balance = balance;
    cfg.pe_life = 3 * T4;
    cfg.pe_reregistration = T4;
    cfg.pe_start_spread = 10 * S;
    cfg.world.trace = true;
    let mut s = Scope::build(&cfg);
    s.world.run_for(60 * S);
    assert_eq!(
        s.live_pe_ids().len(),
        1000,
        "seed {seed}: all PEs registered"
    );
    // Two registrars become unreachable for everybody.
    let (up, down) = (s.prs[..3].to_vec(), s.prs[3..].to_vec());
    let rest: Vec<_> = up.iter().chain(s.pes.iter()).copied().collect();
    s.world.partition(&[&rest, &down[..1], &down[1..]]);
    // 163 s: long beyond the takeover (66 s), and not a multiple of T4, so
    // that the PEs' re-registrations are not lined up with the recovery.
    s.world.run_for(163 * S);
    let during = owned(&s);
    assert_eq!(
        during[..3].iter().sum::<usize>(),
        1000,
        "seed {seed}: every PE moved to the three: {during:?}"
    );
    s.world.heal();
    let recovery = s.world.now();
    let trace_mark = s.world.trace().len();
    let at_recovery = owned(&s);
    let fair = 1000 / 5;
    let min_moves: usize = at_recovery.iter().map(|c| c.saturating_sub(fair)).sum();
    let mut balanced_after = None;
    let mut worst_after: f64 = 0.0;
    let all = s.running_pe_ids();
    let mut complete = vec![false; s.prs.len()];
    let mut t = Duration::ZERO;
    while t < 10 * T4 {
        // Fine steps while PEs move, then coarser ones.
        let step = if t < 3 * T4 { S / 10 } else { S };
        s.world.run_for(step);
        t += step;
        // A PU asking any registrar must find every PE while they move: no
        // registrar that had the full set may lose one.
        for (i, n) in s.prs.iter().enumerate() {
            let known = s.known_pes(*n);
            if complete[i] {
                assert_eq!(
                    known,
                    all,
                    "seed {seed}: a moving PE went missing at {}",
                    s.world.name(*n)
                );
            } else {
                complete[i] = known == all;
            }
        }
        let c = owned(&s);
        if c.iter().sum::<usize>() != 1000 {
            continue; // a PE in the middle of moving is counted at both or neither
        }
        let im = imbalance(&c);
        if balanced_after.is_none() && im <= 1.1 {
            balanced_after = Some(s.world.now().saturating_since(recovery));
        }
        if balanced_after.is_some() {
            worst_after = worst_after.max(im);
        }
    }
    let moves = s.world.trace()[trace_mark..]
        .iter()
        .filter(|e| {
            matches!(
                e.what,
                Happening::Event(RoleEvent::PoolElement(PoolElementEvent::HomeChanged { .. }))
            )
        })
        .count();
    assert!(
        complete.iter().all(|c| *c),
        "seed {seed}: a registrar never got every PE"
    );
    let at_end = owned(&s);
    assert_eq!(s.live_pe_ids().len(), 1000, "seed {seed}: no PE lost");
    Outcome {
        seed,
        at_recovery,
        final_imbalance: imbalance(&at_end),
        at_end,
        balanced_after,
        worst_after,
        moves,
        min_moves,
    }
}

#[test]
fn balanced_policy_rebalances_after_recovery() {
    for seed in seeds(3) {
        let o = run(seed, BalancePolicy::default());
        println!("{}", o.row("balanced"));
        let took = o
            .balanced_after
            .unwrap_or_else(|| panic!("seed {seed}: never balanced: {o:?}"));
        assert!(
            took <= 2 * T4,
            "seed {seed}: balanced only after {took:?}: {o:?}"
        );
        assert!(o.worst_after <= 1.1, "seed {seed}: oscillation: {o:?}");
        assert!(
            o.moves as f64 <= 1.2 * o.min_moves as f64,
            "seed {seed}: {} moves for a minimum of {}",
            o.moves,
            o.min_moves
        );
    }
}

#[test]
fn without_suggestions_ownership_stays_skewed() {
    for seed in seeds(1) {
        let o = run(seed, BalancePolicy::Off);
        println!("{}", o.row("off"));
        assert!(o.final_imbalance >= 1.5, "seed {seed}: {o:?}");
        assert_eq!(o.moves, 0, "seed {seed}");
    }
}

#[test]
fn xor_policy_settles_at_id_determined_shares() {
    for seed in seeds(1) {
        let o = run(seed, BalancePolicy::Xor);
        println!("{}", o.row("xor"));
        // Reported, not judged: the XOR rule's shares depend only on the IDs.
        assert_eq!(o.at_end.iter().sum::<usize>(), 1000, "seed {seed}");
    }
}

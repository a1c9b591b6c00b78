//! Issue 11 (4): a registrar that keeps dropping off the network (cut off
//! 20 s in every 60 s) must not make PEs move back and forth for ever.
//! Without damping about 12 moves per PE per hour were seen; with it, the
//! flapping registrar is not counted for balancing until it has been
//! reachable for a while, suggestions stop while a peer is unreachable, and a
//! PE that just moved is left alone.
//!
//! `cargo test -p rserpool-sim --release --test flapping -- --nocapture`
//! prints the figures.

mod support;

use rserpool_core::PoolElementEvent;
use rserpool_sim::Happening;
use std::time::Duration;
use support::{RoleEvent, Scope, ScopeConfig, seeds};

const S: Duration = Duration::from_secs(1);
const PES: usize = 1000;
const CYCLES: u32 = 6;

struct Outcome {
    moves_per_pe_hour: f64,
    imbalance_before_cuts: Vec<f64>,
}

fn run(seed: u64) -> Outcome {
    let mut cfg = ScopeConfig::new(seed, 5, PES, 0);
    cfg.pe_life = 90 * S;
    cfg.pe_reregistration = 30 * S;
    cfg.pe_start_spread = 10 * S;
    cfg.world.trace = true;
    let mut s = Scope::build(&cfg);
    s.world.run_for(60 * S);
    assert_eq!(
        s.live_pe_ids().len(),
        PES,
        "seed {seed}: all PEs registered"
    );
    let mark = s.world.trace().len();
    let start = s.world.now();
    let flapper = s.prs[4];
    let rest: Vec<_> = s.prs[..4].iter().chain(s.pes.iter()).copied().collect();
    let mut imbalance_before_cuts = Vec::new();
    for _ in 0..CYCLES {
        imbalance_before_cuts.push(s.imbalance());
        s.world.partition(&[&rest, &[flapper]]);
        s.world.run_for(20 * S);
        s.world.heal();
        s.world.run_for(40 * S);
    }
    let hours = s.world.now().saturating_since(start).as_secs_f64() / 3600.0;
    let moves = s.world.trace()[mark..]
        .iter()
        .filter(|e| {
            matches!(
                e.what,
                Happening::Event(RoleEvent::PoolElement(PoolElementEvent::HomeChanged { .. }))
            )
        })
        .count();
    assert_eq!(s.live_pe_ids().len(), PES, "seed {seed}: no PE lost");
    Outcome {
        moves_per_pe_hour: moves as f64 / PES as f64 / hours,
        imbalance_before_cuts,
    }
}

#[test]
fn a_flapping_registrar_does_not_keep_pes_moving() {
    for seed in seeds(1) {
        let o = run(seed);
        println!(
            "seed {seed}: {:.2} moves per PE per hour; max/mean before each cut {:?}",
            o.moves_per_pe_hour,
            o.imbalance_before_cuts
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
        );
        // Without damping: 11.0 for seed 1 (about 180 moves per cycle).
        assert!(
            o.moves_per_pe_hour <= 4.0,
            "seed {seed}: {:.2} moves per PE per hour",
            o.moves_per_pe_hour
        );
    }
}

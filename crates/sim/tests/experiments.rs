//! The experiments library (`rserpool_sim::experiments`), run as the binary
//! runs it: the draft's Takeover Suggestion experiment and scenario events,
//! judged on the samples and the outcome it returns.

use rserpool_core::registrar::BalancePolicy;
use rserpool_sim::CrashMode;
use rserpool_sim::experiments::events::{self, Event, Kind};
use rserpool_sim::experiments::takeover::{BALANCED, Experiment, Phase, Plan};
use rserpool_sim::experiments::{imbalance, minimum_moves};
use std::time::Duration;

const S: fn(u64) -> Duration = Duration::from_secs;

/// The draft's scope, shortened to 400 s (recovery at 223 s).
fn draft(balance: BalancePolicy) -> Plan {
    let mut p = Plan::draft();
    p.balance = balance;
    p.duration = S(400);
    p
}

#[test]
fn balanced_policy_returns_ownership_within_two_t4_with_the_fewest_moves() {
    let plan = draft(BalancePolicy::default());
    let mut run = Experiment::new(&plan);
    let samples = run.run_to_end();
    let o = run.finish();
    assert_eq!(samples.len(), 41, "a sample every 10 s from 0 to 400 s");
    assert_eq!(samples[7].phase, Phase::Outage);
    assert_eq!(samples[23].phase, Phase::Recovered);
    let at = o.at_recovery.as_ref().expect("the run passed the recovery");
    assert_eq!(&at[3..], [0, 0], "the cut-off registrars lost their PEs");
    assert_eq!(at.iter().sum::<usize>(), 1000);
    let after = o.balanced_after.expect("balanced again");
    assert!(after <= 2 * plan.t4, "{after:?}");
    assert!(o.worst_after <= BALANCED, "{}", o.worst_after);
    let minimum = minimum_moves(at, 200);
    assert!(
        o.moves_after > 0 && o.moves_after <= minimum,
        "{} moves, minimum {minimum}",
        o.moves_after
    );
    assert!(imbalance(&o.final_owned) <= BALANCED);
    assert_eq!(o.registered, 1000, "no PE lost");
    assert_eq!(o.final_owned.iter().sum::<usize>(), 1000);
    assert!(o.registrar_ids.iter().all(Option::is_some));
}

#[test]
fn without_suggestions_nothing_returns() {
    let plan = draft(BalancePolicy::Off);
    let mut run = Experiment::new(&plan);
    let samples = run.run_to_end();
    let o = run.finish();
    assert_eq!(o.moves_after, 0);
    assert_eq!(o.balanced_after, None);
    assert_eq!(&o.final_owned[3..], [0, 0]);
    let last = samples.last().expect("samples");
    assert_eq!(last.suggestions.sent, 0);
    assert_eq!(last.moves, o.moves);
}

#[test]
fn registrars_workload_is_counted_per_sample() {
    let mut plan = draft(BalancePolicy::default());
    plan.duration = S(120);
    let mut run = Experiment::new(&plan);
    let samples = run.run_to_end();
    assert_eq!(samples[0].interval, Duration::ZERO);
    assert_eq!(samples[0].messages_per_second(), [0.0; 5]);
    // 1,000 PEs re-registering every 30 s at 5 registrars: about 7 per
    // second each, plus their replies and the ENRP traffic.
    let normal = &samples[5];
    assert_eq!(normal.interval, S(10));
    for (i, rate) in normal.messages_per_second().iter().enumerate() {
        assert!((10.0..1000.0).contains(rate), "pr{i}: {rate}/s");
    }
    // Cut off at 60 s: pr3 and pr4 hear from nobody, so their rate
    // collapses while the others take over their PEs.
    let cut = &samples[9];
    assert_eq!(cut.phase, Phase::Outage);
    let rates = cut.messages_per_second();
    assert!(rates[3] < rates[0] / 10.0, "{rates:?}");
    assert!(rates[4] < rates[0] / 10.0, "{rates:?}");
}

#[test]
fn a_crashed_registrar_is_rehomed_and_restarts_with_a_new_id() {
    let event = Event {
        at: S(60),
        kind: Kind::Crash,
        registrars: vec![4],
        lasts: S(120),
        every: None,
        cycles: None,
        crash: Some(CrashMode::Host),
    };
    let x = events::expand(&[event], 5).expect("a valid event");
    let mut plan = draft(BalancePolicy::default());
    plan.duration = S(250);
    plan.outages = x.outages;
    plan.targets = x.targets;
    plan.watch_rehoming = true;
    let mut run = Experiment::new(&plan);
    let before = run.registrar_ids();
    run.run_to_end();
    let o = run.finish();
    let rehomed = o.rehomed[0].expect("the others took over pr4's PEs");
    // Failure detection (5 s) plus re-registration; checked every 0.1 s.
    assert!(rehomed <= S(15), "{rehomed:?}");
    assert_ne!(o.registrar_ids[4], before[4], "a fresh registrar");
    assert_eq!(o.registered, 1000);
}

/// 4 registrars, 100 PEs, pr3 cut off from 60 s to 120 s, 300 s.
fn small(balance: BalancePolicy) -> Plan {
    let mut p = Plan::draft();
    p.registrars = 4;
    p.pes = 100;
    p.balance = balance;
    p.duration = S(300);
    p.outages = vec![(S(60), S(120))];
    p.targets[0].who = vec![3];
    p.targets.truncate(1);
    p
}

#[test]
fn a_registrar_of_twice_the_capacity_ends_with_twice_the_share() {
    let mut plan = small(BalancePolicy::default());
    plan.capacities = vec![2, 1, 1, 1];
    let mut run = Experiment::new(&plan);
    run.run_to_end();
    let o = run.finish();
    assert_eq!(o.registered, 100, "no PE lost");
    let end = &o.final_owned;
    assert_eq!(end.iter().sum::<usize>(), 100);
    // Fair shares 40 20 20 20, within the 5 % tolerance (and the PEs'
    // rounding): about twice the mean of the others.
    let others = end[1..].iter().sum::<usize>() as f64 / 3.0;
    let ratio = end[0] as f64 / others;
    assert!((1.7..=2.3).contains(&ratio), "{end:?}: {ratio:.2}");
    assert!(plan.load_ratio(end) <= BALANCED, "{end:?}");
    // Equal capacities would call that unbalanced.
    assert!(imbalance(end) > 1.5, "{end:?}");
    let after = o.balanced_after.expect("balanced by capacity again");
    assert!(after <= 2 * plan.t4, "{after:?}");
}

#[test]
fn equal_capacities_given_explicitly_change_nothing() {
    let plain = small(BalancePolicy::default());
    let mut listed = plain.clone();
    listed.capacities = vec![7; 4];
    let run = |p: &Plan| {
        let mut r = Experiment::new(p);
        let samples = r.run_to_end();
        (samples, r.finish().final_owned)
    };
    assert_eq!(run(&plain), run(&listed));
}

#[test]
fn an_xor_registrar_among_balanced_ones_does_not_make_pes_bounce() {
    let mut plan = small(BalancePolicy::default());
    plan.policies = vec![
        BalancePolicy::default(),
        BalancePolicy::default(),
        BalancePolicy::Xor,
        BalancePolicy::default(),
    ];
    let run = |p: &Plan| {
        let mut r = Experiment::new(p);
        r.run_to_end();
        r.finish()
    };
    let o = run(&plan);
    assert_eq!(o.registered, 100, "no PE lost");
    assert_eq!(
        o.pe_moves.iter().map(|&m| m as usize).sum::<usize>(),
        o.moves
    );
    // Over 300 s with one outage a PE moves a few times at most (to its
    // place, away from the lost registrar, back).
    let most = o.most_moves_of_a_pe();
    assert!(most <= 5, "a PE moved {most} times");
    assert!(imbalance(&o.final_owned) <= BALANCED, "{:?}", o.final_owned);
    // The move cooldown is what stops the two rules bouncing PEs.
    plan.tuning.cooldown = Some(Duration::ZERO);
    let bouncing = run(&plan).most_moves_of_a_pe();
    assert!(
        bouncing > 2 * most,
        "{bouncing} moves without cooldown, {most} with"
    );
}

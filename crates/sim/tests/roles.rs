//! The real roles in the world: registrars, pool elements and pool users
//! built with the scenario builder.

use rserpool_core::Instant;
use rserpool_sim::{CrashMode, Happening, RoleEvent, Scenario, ScenarioBuilder, Workload};
use rserpool_wire::PoolHandle;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

fn at(d: Duration) -> Instant {
    Instant::from_epoch(d)
}

fn scenario(seed: u64, registrars: usize, pes: usize, pus: usize) -> Scenario {
    let pool = PoolHandle::try_from("EchoPool").unwrap();
    let mut b = ScenarioBuilder::new(seed);
    b.registrars(registrars, |_| {});
    b.pool_elements(pes, &pool, |_| {});
    b.pool_users(
        pus,
        Some(Workload {
            pool_handle: pool.clone(),
            interval: 2 * S,
            first: 10 * S,
        }),
        |_| {},
    );
    b.build()
}

fn selections(s: &Scenario) -> (usize, usize) {
    let mut hit = 0;
    let mut miss = 0;
    for e in s.world.trace() {
        if let Happening::Event(RoleEvent::Selected { pe_id, .. }) = &e.what {
            if pe_id.is_some() {
                hit += 1;
            } else {
                miss += 1;
            }
        }
    }
    (hit, miss)
}

#[test]
fn registrars_pool_elements_and_users_come_together() {
    let seed = 1;
    let mut s = scenario(seed, 3, 30, 3);
    s.world.run_until(at(60 * S));
    for &r in &s.registrars {
        assert!(
            s.registrar(r).unwrap().is_ready(),
            "seed {seed}: {r} not ready"
        );
    }
    assert_eq!(s.registered(), 30, "seed {seed}");
    let own = s.ownership();
    for (node, id, _, size) in &own {
        assert_eq!(*size, 30, "seed {seed}: handlespace of {node} ({id})");
    }
    let owned: usize = own.iter().map(|o| o.2).sum();
    assert_eq!(owned, 30, "seed {seed}: every PE owned once: {own:?}");
    let (hit, miss) = selections(&s);
    assert!(
        hit >= 3 * 20,
        "seed {seed}: {hit} selections, {miss} misses"
    );
    assert_eq!(miss, 0, "seed {seed}");
}

#[test]
fn the_same_seed_gives_the_same_run_with_the_real_roles() {
    let run = |seed| {
        let mut s = scenario(seed, 3, 20, 2);
        s.world.run_until(at(30 * S));
        // A takeover and re-registrations exercise the most code paths.
        s.world.crash(s.registrars[1], CrashMode::Host);
        s.world.run_until(at(120 * S));
        s.world.restart(s.registrars[1]);
        s.world.run_until(at(180 * S));
        let trace = format!("{:?}", s.world.trace());
        (trace, s.world.stats().clone())
    };
    let (a, sa) = run(5);
    let (b, sb) = run(5);
    assert!(a == b, "seed 5: two runs differ");
    assert_eq!(sa, sb, "seed 5");
    let (c, _) = run(6);
    assert_ne!(a, c, "seeds 5 and 6");
}

#[test]
fn pool_elements_move_to_the_survivors_when_a_registrar_host_dies() {
    let seed = 2;
    let mut s = scenario(seed, 3, 30, 0);
    s.world.run_until(at(60 * S));
    assert_eq!(s.registered(), 30, "seed {seed}");
    let victim = s.registrars[0];
    s.world.crash(victim, CrashMode::Host);
    s.world.run_until(at(240 * S));
    assert_eq!(s.registered(), 30, "seed {seed}");
    let own = s.ownership();
    assert_eq!(own.len(), 2);
    for (node, id, _, size) in &own {
        assert_eq!(
            *size, 30,
            "seed {seed}: handlespace of {node} ({id}): {own:?}"
        );
    }
    let owned: usize = own.iter().map(|o| o.2).sum();
    assert_eq!(
        owned, 30,
        "seed {seed}: every PE owned once by a survivor: {own:?}"
    );
}

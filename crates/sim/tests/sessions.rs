//! Issue 8: a pool user's session in the simulator, with the pool
//! elements' application played by the test. Every request `add 1` is
//! answered with the session's running total, and after each answer the PE
//! hands the pool user a cookie with that total. Mid-session the serving
//! PE crashes (its process, or its whole host); the session must fail over
//! to the other PE, which resumes from the newest cookie, and the totals
//! the pool user sees must run 1, 2, ..., N with no gap and no repeat.
//!
//! `RSERPOOL_SEEDS=n` runs n seeds (default 20), `RSERPOOL_SEED=s` one.

use bytes::Bytes;
use rserpool_core::{Instant, PoolElementEvent, PoolUserEvent, SendOptions, SessionId};
use rserpool_sim::{CrashMode, Happening, NodeId, RoleEvent, Scenario, ScenarioBuilder};
use rserpool_wire::PoolHandle;
use std::collections::HashMap;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const REQUESTS: u64 = 30;
const CRASH_AFTER: u64 = 12;

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("RSERPOOL_SEED") {
        return vec![s.parse().expect("RSERPOOL_SEED is a number")];
    }
    let n = std::env::var("RSERPOOL_SEEDS").map_or(20, |n| n.parse().expect("a number"));
    (1..=n).collect()
}

struct Run {
    totals: Vec<u64>,
    failovers: Vec<(u64, PoolUserEvent)>,
    resumed_from: Vec<u64>,
}

fn run(seed: u64, mode: CrashMode) -> Run {
    let pool = PoolHandle::try_from("counter").unwrap();
    let mut b = ScenarioBuilder::new(seed);
    b.config_mut().trace = true;
    b.registrars(1, |_| {});
    b.pool_elements(2, &pool, |_| {});
    b.pool_users(1, None, |_| {});
    let mut s: Scenario = b.build();
    s.world
        .run_until(Instant::from_epoch(Duration::from_secs(5)));
    assert_eq!(s.registered(), 2, "seed {seed}: both PEs registered");
    s.world.take_trace();

    let pu = s.pool_users[0];
    let resend = SendOptions {
        resend: true,
        ..SendOptions::default()
    };
    let send = |s: &mut Scenario, session: SessionId| {
        s.world
            .act(pu, |m, _| {
                let pu = m.pool_user_mut().expect("a pool user").pool_user_mut();
                pu.send_data(session, 1, Bytes::from_static(b"add 1"), resend)
                    .expect("send")
            })
            .expect("the PU runs")
    };
    let session = s
        .world
        .act(pu, |m, now| {
            m.pool_user_mut()
                .expect("a pool user")
                .pool_user_mut()
                .open_session(now, pool.clone())
        })
        .unwrap();
    let mut outstanding = send(&mut s, session);
    // The PEs' application state: the total of each session they serve.
    let mut state: HashMap<(NodeId, SessionId), u64> = HashMap::new();
    let mut run = Run {
        totals: Vec::new(),
        failovers: Vec::new(),
        resumed_from: Vec::new(),
    };
    let mut serving: Option<NodeId> = None;
    let deadline = s.world.now() + Duration::from_secs(60);
    while (run.totals.len() as u64) < REQUESTS {
        assert!(
            s.world.now() < deadline,
            "seed {seed} {mode:?}: stuck after {} answers",
            run.totals.len()
        );
        s.world.run_for(MS);
        for e in s.world.take_trace() {
            let Happening::Event(event) = e.what else {
                continue;
            };
            match event {
                RoleEvent::PoolElement(PoolElementEvent::CookieEcho { session, cookie }) => {
                    let total: u64 = String::from_utf8_lossy(&cookie).parse().unwrap();
                    run.resumed_from.push(total);
                    state.insert((e.node, session), total);
                }
                RoleEvent::PoolElement(PoolElementEvent::SessionData { session, .. }) => {
                    serving = Some(e.node);
                    let total = state.entry((e.node, session)).or_insert(0);
                    *total += 1;
                    let t = *total;
                    s.world.act(e.node, |m, _| {
                        let pe = m.pool_element_mut().expect("a pool element");
                        pe.send_data(session, 1, Bytes::from(format!("{t}")), false)
                            .expect("answer");
                        pe.send_cookie(session, Bytes::from(format!("{t}")))
                            .expect("cookie");
                    });
                }
                RoleEvent::PoolUser(PoolUserEvent::SessionData { data, .. }) => {
                    let total: u64 = String::from_utf8_lossy(&data).parse().unwrap();
                    run.totals.push(total);
                    s.world.act(pu, |m, _| {
                        m.pool_user_mut()
                            .unwrap()
                            .pool_user_mut()
                            .release(session, outstanding)
                            .unwrap()
                    });
                    if total == CRASH_AFTER {
                        let victim = serving.expect("a PE answered");
                        s.world.crash(victim, mode);
                    }
                    if (run.totals.len() as u64) < REQUESTS {
                        outstanding = send(&mut s, session);
                    }
                }
                RoleEvent::PoolUser(f @ PoolUserEvent::Failover { .. }) => {
                    run.failovers.push((run.totals.len() as u64, f));
                }
                _ => {}
            }
        }
    }
    run
}

#[test]
fn a_session_resumes_at_the_other_pe_from_the_last_cookie_after_a_crash() {
    for seed in seeds() {
        for mode in [CrashMode::Process, CrashMode::Host] {
            let r = run(seed, mode);
            let want: Vec<u64> = (1..=REQUESTS).collect();
            assert_eq!(r.totals, want, "seed {seed} {mode:?}: no gap, no repeat");
            assert_eq!(
                r.failovers.len(),
                1,
                "seed {seed} {mode:?}: {:?}",
                r.failovers
            );
            assert_eq!(
                r.resumed_from,
                vec![CRASH_AFTER],
                "seed {seed} {mode:?}: the second PE starts from the newest cookie"
            );
        }
    }
}

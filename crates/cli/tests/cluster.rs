//! The daemons as separate processes on loopback over SCTP over UDP: two
//! registrars peered over ENRP, three pool elements and pool users.
//!
//! Every node has its own 127.x.y.z address (all use UDP port 9899, RFC
//! 6951). Timers are shortened by flags so that failures are detected in
//! about a second. Every child is killed when the test ends, pass or fail;
//! RSERPOOL_TEST_LOGS=1 prints every node's log even when it passes.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{BIN, Cluster, args, loopback_net};

/// Keep-alive interval and timeout of the registrars (ms).
const KEEP_ALIVE_MS: u64 = 500;

/// Runs `rserpool pu`; its exit code and the PE ids it printed.
fn resolve(registrar: &str, count: u32) -> (i32, Vec<String>, Vec<String>) {
    let out = Command::new(BIN)
        .args(args(&format!(
            "pu --transport udp --pool echo --registrar {registrar} --resolve {count} --interval 0 \
             --request-timeout 1s --retransmits 1 --server-hunt-timeout 1s"
        )))
        .output()
        .expect("run pu");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let ids = lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix("pe=")?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect();
    (out.status.code().unwrap_or(-1), ids, lines)
}

/// SCTP timers short enough for failures to show within a second.
const FAST_SCTP: &str = "--transport udp --sctp-heartbeat-interval 200ms \
                         --sctp-dead-peer-timeout 1s --sctp-handshake-timeout 1s";

fn distinct(ids: &[String]) -> BTreeSet<&str> {
    ids.iter().map(String::as_str).collect()
}

#[test]
fn two_registrars_three_pes_failover() {
    let started = Instant::now();
    let net = loopback_net(0);
    let ip = |host: u8| format!("{net}.{host}");
    let r1 = ip(1);
    let r2 = ip(3);
    let fast_sctp = FAST_SCTP;
    let registrar = |id: u32, asap: &str, enrp: &str, peer: &str| {
        args(&format!(
            "registrar {fast_sctp} --id {id} --addr {asap} --enrp-addr {enrp} --peer {peer} \
             --status-interval 200ms --keep-alive-interval {KEEP_ALIVE_MS}ms \
             --keep-alive-timeout {KEEP_ALIVE_MS}ms --peer-heartbeat-cycle 500ms \
             --max-time-last-heard 1s --max-time-no-response 500ms \
             --mentor-discovery-timeout 1s --balance off"
        ))
    };
    let mut c = Cluster::default();
    let reg1 = c.spawn("registrar 1", &registrar(1, &r1, &ip(2), &ip(4)));
    let reg2 = c.spawn("registrar 2", &registrar(2, &r2, &ip(4), &ip(2)));
    c.wait_until(
        Duration::from_secs(5),
        "both registrars are ready and see each other",
        |c| {
            [reg1, reg2].iter().all(|&r| {
                let s = c.procs[r].status();
                s.contains("ready=yes") && s.contains("peers=1")
            })
        },
    );

    let pe = |id: u32, host: u8, first: &str, second: &str| {
        args(&format!(
            "pe {fast_sctp} --pool echo --id {id:#x} --local {} --user-port 5000 --policy rr \
             --registrar {first} --registrar {second} --registration-life 10s \
             --server-hunt-timeout 1s",
            ip(host)
        ))
    };
    let pe1 = c.spawn("pe 0x101", &pe(0x101, 11, &r1, &r2));
    let pe2 = c.spawn("pe 0x102", &pe(0x102, 12, &r1, &r2));
    let pe3 = c.spawn("pe 0x103", &pe(0x103, 13, &r2, &r1));

    // Each registrar holds all three: its own two or one, and the rest by ENRP.
    c.wait_until(Duration::from_secs(5), "both registrars list 3 PEs", |c| {
        [reg1, reg2]
            .iter()
            .all(|&r| c.procs[r].status().contains(" pes=3 "))
    });
    assert!(
        c.procs[reg1]
            .status()
            .contains("owned=0x00000001:2,0x00000002:1"),
        "{}",
        c.procs[reg1].status()
    );
    assert!(
        c.procs[reg2]
            .status()
            .contains("owned=0x00000001:2,0x00000002:1"),
        "{}",
        c.procs[reg2].status()
    );

    // Round robin over the pool from either registrar reaches every PE.
    for r in [&r1, &r2] {
        let (code, ids, lines) = resolve(r, 6);
        assert_eq!(code, 0, "{lines:?}");
        assert_eq!(
            distinct(&ids),
            BTreeSet::from(["0x00000101", "0x00000102", "0x00000103"]),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .all(|l| l.contains(" at 127.") && l.contains(":5000 policy=RR")),
            "{lines:?}"
        );
    }

    // A PE that dies without deregistering leaves the resolutions once its
    // home's keep-alive goes unanswered (interval ±50 %, then the timeout),
    // and the home tells the other registrar.
    c.procs[pe3].child.kill().unwrap();
    let bound =
        Duration::from_millis(KEEP_ALIVE_MS * 3 / 2 + KEEP_ALIVE_MS) + Duration::from_secs(3);
    let gone = c.wait_until(bound, "PE 0x103 is no longer resolved", |_| {
        let (code, ids, _) = resolve(&r1, 3);
        code == 0 && distinct(&ids) == BTreeSet::from(["0x00000101", "0x00000102"])
    });
    eprintln!("killed PE left the resolutions after {gone:?} (bound {bound:?})");
    c.wait_until(Duration::from_secs(2), "both registrars list 2 PEs", |c| {
        [reg1, reg2]
            .iter()
            .all(|&r| c.procs[r].status().contains(" pes=2 "))
    });

    // Killing registrar 1 moves its PEs to registrar 2 (they re-register
    // after losing their home, or registrar 2 takes them over).
    c.procs[reg1].child.kill().unwrap();
    let moved = c.wait_until(Duration::from_secs(10), "registrar 2 owns both PEs", |c| {
        let s = c.procs[reg2].status();
        s.contains(" pes=2 ") && s.contains("owned=0x00000002:2 ")
    });
    eprintln!("PEs of the killed registrar re-homed after {moved:?}");
    for p in [pe1, pe2] {
        let err = c.procs[p].stderr().join("\n");
        assert!(
            err.matches("registered").count() >= 2 || err.contains("home changed"),
            "{} did not re-register:\n{err}",
            c.procs[p].name
        );
    }
    let (code, ids, lines) = resolve(&r2, 4);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(
        distinct(&ids),
        BTreeSet::from(["0x00000101", "0x00000102"]),
        "{lines:?}"
    );

    // SIGTERM: the PE deregisters before it exits, the registrar stops cleanly.
    c.procs[pe1].signal(libc::SIGTERM);
    assert_eq!(c.procs[pe1].wait_exit(Duration::from_secs(5)), Some(0));
    assert!(
        c.procs[pe1]
            .stderr()
            .iter()
            .any(|l| l.ends_with("deregistered"))
    );
    c.wait_until(Duration::from_secs(2), "registrar 2 lists 1 PE", |c| {
        c.procs[reg2].status().contains(" pes=1 ")
    });
    c.procs[reg2].signal(libc::SIGINT);
    assert_eq!(c.procs[reg2].wait_exit(Duration::from_secs(5)), Some(0));
    assert!(
        c.procs[reg2]
            .stderr()
            .iter()
            .any(|l| l.contains("stopping on SIGINT"))
    );

    eprintln!("cluster test took {:?}", started.elapsed());
}

/// Takeover Suggestion between real processes: four PEs register at
/// registrar 1; with the balanced policy it owns twice its fair share and
/// suggests two PEs to registrar 2, which accepts them with
/// ENDPOINT_KEEP_ALIVE (H=1) over a new association to each PE, and the PEs
/// re-register there.
///
/// Over SCTP over UDP this needs each endpoint's first association to a peer
/// to leave from its listening port (as a one-to-many kernel socket does), so
/// that the ASAP transport the home records is where other registrars reach
/// the PE.
#[test]
fn takeover_suggestion_moves_pes_to_the_idle_registrar() {
    let net = loopback_net(1);
    let ip = |host: u8| format!("{net}.{host}");
    let registrar = |id: u32, asap: &str, enrp: &str, peer: &str| {
        args(&format!(
            "registrar {FAST_SCTP} --id {id} --addr {asap} --enrp-addr {enrp} --peer {peer} \
             --status-interval 200ms --keep-alive-interval 500ms --keep-alive-timeout 500ms \
             --peer-heartbeat-cycle 500ms --max-time-last-heard 1s --max-time-no-response 500ms \
             --mentor-discovery-timeout 1s --balance balanced --tolerance 0.1 --move-grace 2s \
             --peer-settle-time 200ms"
        ))
    };
    let mut c = Cluster::default();
    let reg1 = c.spawn("registrar 1", &registrar(1, &ip(1), &ip(2), &ip(4)));
    let reg2 = c.spawn("registrar 2", &registrar(2, &ip(3), &ip(4), &ip(2)));
    c.wait_until(
        Duration::from_secs(5),
        // A registrar declines suggestions until it is ready.
        "both registrars are ready and see each other",
        |c| {
            [reg1, reg2].iter().all(|&r| {
                let s = c.procs[r].status();
                s.contains("ready=yes") && s.contains("peers=1")
            })
        },
    );
    let pes: Vec<usize> = (1..=4u8)
        .map(|n| {
            c.spawn(
                &format!("pe {n}"),
                &args(&format!(
                    "pe {FAST_SCTP} --pool echo --id {n} --local {} --registrar {}",
                    ip(10 + n),
                    ip(1)
                )),
            )
        })
        .collect();
    c.wait_until(Duration::from_secs(10), "the PEs are split 2:2", |c| {
        [reg1, reg2].iter().all(|&r| {
            let s = c.procs[r].status();
            s.contains(" pes=4 ") && s.contains("owned=0x00000001:2,0x00000002:2 ")
        })
    });
    let said = |p: usize, what: &str| {
        c.procs[p]
            .stderr()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    assert_eq!(said(reg1, "takeover suggestion sent"), 2);
    assert_eq!(said(reg2, "takeover suggestion accepted"), 2);
    assert_eq!(
        pes.iter().map(|&p| said(p, "home changed")).sum::<usize>(),
        2
    );
}

/// Without a configured registrar, a PE and a PU find one through the
/// announce channel (ASAP_SERVER_ANNOUNCE to unicast destinations, every
/// server announce cycle).
#[test]
fn pe_and_pu_find_the_registrar_through_announces() {
    let net = loopback_net(2);
    let ip = |host: u8| format!("{net}.{host}");
    let mut c = Cluster::default();
    let reg = c.spawn(
        "registrar",
        &args(&format!(
            "registrar {FAST_SCTP} --id 7 --addr {} --enrp-addr {} --announce {}:4000 \
             --announce {}:4000 --server-announce-cycle 200ms --status-interval 100ms",
            ip(1),
            ip(2),
            ip(11),
            ip(12)
        )),
    );
    let pe = c.spawn(
        "pe",
        &args(&format!(
            "pe {FAST_SCTP} --pool echo --id 0x77 --local {} --announce {}:4000",
            ip(11),
            ip(11)
        )),
    );
    c.wait_until(Duration::from_secs(5), "the PE registered", |c| {
        c.procs[reg].status().contains(" pes=1 ")
    });
    assert!(
        c.procs[pe]
            .stderr()
            .iter()
            .any(|l| l.ends_with("registered at registrar 0x00000007"))
    );
    let out = Command::new(BIN)
        .args(args(&format!(
            "pu {FAST_SCTP} --pool echo --local {} --announce {}:4000 --request-timeout 2s --resolve 1",
            ip(12),
            ip(12)
        )))
        .output()
        .expect("run pu");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("pe=0x00000077 at "), "{stdout}");
}

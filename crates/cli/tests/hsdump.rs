//! `rserpool hsdump` against two peered registrars (separate processes on
//! loopback, SCTP over UDP): the table and the JSON list every PE with its
//! home, the ownership per registrar and the peer; reading leaves no trace
//! in the registrars' peer tables; a host outside the scope gets nothing.

mod support;

use std::process::Command;
use std::time::Duration;
use support::{BIN, Cluster, args, loopback_net};

fn hsdump(flags: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args(&format!("hsdump --transport udp {flags}")))
        .output()
        .expect("run hsdump");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hsdump_reads_a_scope_without_joining_it() {
    let net = loopback_net(0);
    let ip = |host: u8| format!("{net}.{host}");
    let registrar = |id: u32, asap: u8, enrp: u8, peer: u8| {
        args(&format!(
            "registrar --transport udp --id {id} --addr {} --enrp-addr {} --peer {} \
             --enrp-allow {net}.0/28 --status-interval 200ms --mentor-discovery-timeout 1s",
            ip(asap),
            ip(enrp),
            ip(peer)
        ))
    };
    let mut c = Cluster::default();
    let r1 = c.spawn("registrar 1", &registrar(1, 1, 2, 4));
    let r2 = c.spawn("registrar 2", &registrar(2, 3, 4, 2));
    c.wait_until(Duration::from_secs(10), "the registrars are peered", |c| {
        [r1, r2].iter().all(|&r| {
            let s = c.procs[r].status();
            s.contains("ready=yes") && s.contains("peers=1 ")
        })
    });
    for (host, registrar) in [(5, 1), (6, 1), (7, 3)] {
        c.spawn(
            &format!("pe {host}"),
            &args(&format!(
                "pe --transport udp --pool echo --registrar {} --local {} --service echo",
                ip(registrar),
                ip(host)
            )),
        );
    }
    c.wait_until(Duration::from_secs(15), "both hold the three PEs", |c| {
        [r1, r2]
            .iter()
            .all(|&r| c.procs[r].status().contains("pes=3 "))
    });

    let (code, out, err) = hsdump(&format!("--registrar {} --local {}", ip(2), ip(9)));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("registrar 0x00000001: 1 pool(s), 3 PE(s)"),
        "{out}"
    );
    assert!(out.contains("owned: 0x00000001:2 0x00000002:1"), "{out}");
    assert!(out.contains("peers: 0x00000002 ("), "{out}");
    assert_eq!(out.matches("  PE 0x").count(), 3, "{out}");

    let (code, out, err) = hsdump(&format!("--registrar {} --local {} --json", ip(4), ip(9)));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["registrar"], "0x00000002");
    assert_eq!(v["pools"][0]["pool_handle"], "echo");
    assert_eq!(v["pools"][0]["pool_elements"].as_array().unwrap().len(), 3);
    assert_eq!(v["owned"]["0x00000001"], 2);
    assert_eq!(v["owned"]["0x00000002"], 1);

    // The reader never became a peer of either registrar.
    std::thread::sleep(Duration::from_millis(500));
    for r in [r1, r2] {
        assert!(
            c.procs[r].status().contains("peers=1 "),
            "{}",
            c.procs[r].status()
        );
    }

    // Outside the scope (.20 is not in .0/28): refused, exit 1, one line.
    let (code, out, err) = hsdump(&format!(
        "--registrar {} --local {} --timeout 2s",
        ip(2),
        ip(20)
    ));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
}

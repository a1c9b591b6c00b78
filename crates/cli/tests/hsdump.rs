//! `rserpool hsdump` against two peered registrars (separate processes on
//! loopback, SCTP over UDP): the table and the JSON list every PE with its
//! home, the ownership per registrar and the peer; reading leaves no trace
//! in the registrars' peer tables; a host outside the scope gets nothing.

mod support;

use std::process::Command;
use std::time::Duration;
use support::{BIN, Cluster, args, loopback_net, peered_scope};

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
    let mut c = Cluster::default();
    let [r1, r2] = peered_scope(&mut c, &net).0;

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

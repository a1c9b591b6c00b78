//! A pool user or pool element with no registrar to talk to says what it
//! is doing within a second (issue 12: a PU used to wait 45 s in silence),
//! and a PU gives up with the reason.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rserpool");

#[test]
fn a_pu_without_registrar_says_so_and_gives_up() {
    // 127.0.5.x: nothing listens there.
    let out = Command::new(BIN)
        .args(
            "pu --transport udp --pool echo --registrar 127.0.5.1 --resolve 1 \
             --request-timeout 1s --retransmits 1 --server-hunt-timeout 1s \
             --sctp-handshake-timeout 300ms"
                .split_whitespace(),
        )
        .output()
        .expect("run pu");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no answer yet after 1 s: asking 127.0.5.1:3863"),
        "{stderr}"
    );
    assert!(
        stdout.contains("resolution failed: no registrar reachable (tried 127.0.5.1:3863)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("127.0.5.1:3863 not answering ("),
        "{stderr}"
    );
}

#[test]
fn a_pe_without_registrar_says_where_it_looks() {
    let mut child = Command::new(BIN)
        .args(
            "pe --transport udp --pool echo --registrar 127.0.5.2 --local 127.0.5.9"
                .split_whitespace(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pe");
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.wait();
    assert!(
        stderr.contains("not registered yet after 1 s: asking 127.0.5.2:3863"),
        "{stderr}"
    );
}

//! A pool user with no registrar to talk to says what it is doing within
//! a second, and gives up with the reason (issue 12: it used to wait 45 s
//! in silence).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rserpool");

#[test]
fn a_pu_without_registrar_says_so_and_gives_up() {
    // 127.0.5.x: nothing listens there.
    let out = Command::new(BIN)
        .args(
            "pu --transport udp --pool echo --registrar 127.0.5.1 --count 1 \
             --request-timeout 1s --retransmits 1 --server-hunt-timeout 1s"
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
    assert!(stdout.contains("resolution failed: "), "{stdout}");
}

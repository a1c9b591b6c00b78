//! Start-up of `registrar`, `pe` and `pu` with bad flags or configuration:
//! exit code 2 and a one-line reason on stderr, nothing bound or sent.
//! And a pool user with no registrar to ask: a failure line and exit 1.

use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rserpool");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run rserpool")
}

/// Exit code 2 and exactly one line on stderr, starting `error:` and
/// containing `expect`.
fn assert_refused(args: &[&str], expect: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line:\n{err}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
    assert!(lines[0].contains(expect), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn registrar_refuses_bad_settings() {
    assert_refused(
        &["registrar", "--keep-alive-interval", "0"],
        "keep-alive interval and timeout must be positive",
    );
    assert_refused(
        &[
            "registrar",
            "--peer-heartbeat-cycle",
            "10s",
            "--max-time-last-heard",
            "1s",
        ],
        "max-time-last-heard",
    );
    assert_refused(&["registrar", "--asap-port", "0"], "must not be 0");
    assert_refused(&["registrar", "--addr", "0.0.0.0"], "concrete");
    assert_refused(
        &["registrar", "--balance", "xor", "--capacity", "3"],
        "apply only",
    );
    // An address this host does not have cannot be bound (no packet is sent).
    assert_refused(
        &[
            "registrar",
            "--transport",
            "udp",
            "--addr",
            "192.0.2.1",
            "--enrp-addr",
            "192.0.2.2",
        ],
        "cannot bind 192.0.2.1:3863",
    );
}

#[test]
fn registrar_refuses_bad_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registrar.toml");
    let f = file.to_str().unwrap();
    std::fs::write(&file, "id = 1\nkeep-alive-intervall = \"2s\"\n").unwrap();
    assert_refused(
        &["registrar", "--config", f],
        "unknown field `keep-alive-intervall`",
    );
    std::fs::write(&file, "keep-alive-interval = \"2 fortnights\"\n").unwrap();
    assert_refused(&["registrar", "--config", f], "unknown unit");
    std::fs::write(&file, "[transport]\nkind = \"carrier-pigeon\"\n").unwrap();
    assert_refused(&["registrar", "--config", f], "carrier-pigeon");
    // A good file with a bad flag on top: the flag wins, and is refused.
    std::fs::write(&file, "keep-alive-interval = \"2s\"\n").unwrap();
    assert_refused(
        &["registrar", "--config", f, "--keep-alive-interval", "0"],
        "keep-alive",
    );
    assert_refused(
        &["registrar", "--config", "/nonexistent/registrar.toml"],
        "cannot read /nonexistent/registrar.toml",
    );
}

#[test]
fn pe_and_pu_refuse_bad_settings() {
    assert_refused(
        &[
            "pe",
            "--pool",
            "echo",
            "--registrar",
            "127.0.0.1",
            "--user-addr",
            "239.1.2.3",
        ],
        "cannot reach 239.1.2.3",
    );
    assert_refused(
        &[
            "pe",
            "--pool",
            "echo",
            "--registrar",
            "127.0.0.1",
            "--local",
            "127.0.0.5",
            "--registration-life",
            "10s",
            "--reregistration-interval",
            "20s",
        ],
        "t4_reregistration",
    );
    assert_refused(
        &[
            "pu",
            "--pool",
            "echo",
            "--registrar",
            "127.0.0.1",
            "--resolve",
            "0",
        ],
        "--resolve",
    );
    assert_refused(
        &["pu", "--pool", "", "--registrar", "127.0.0.1"],
        "invalid pool handle",
    );
}

/// Values clap rejects: exit 2, the first line names the flag and the reason.
#[test]
fn bad_flag_values_name_the_flag() {
    for (args, expect) in [
        (
            vec![
                "pe",
                "--pool",
                "p",
                "--registrar",
                "127.0.0.1",
                "--policy",
                "lu:150%",
            ],
            "outside 0%..100%",
        ),
        (
            vec![
                "pe",
                "--pool",
                "p",
                "--registrar",
                "127.0.0.1",
                "--policy",
                "fastest",
            ],
            "unknown policy",
        ),
        (
            vec!["pu", "--pool", "p", "--registrar", "127.0.0.1:99999"],
            "--registrar",
        ),
        (vec!["registrar", "--id", "0"], "reserved"),
        (vec!["registrar", "--transport", "tcp"], "--transport"),
        (
            vec!["registrar", "--status-interval", "soon"],
            "not a duration",
        ),
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(expect),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn pu_without_a_registrar_prints_failures_and_exits_1() {
    // A loopback address nobody serves; short timers bound the wait.
    let pid = std::process::id();
    let nobody = format!("127.{}.{}.250", 100 + pid % 100, (pid / 100) % 250);
    let start = std::time::Instant::now();
    let out = run(&[
        "pu",
        "--transport",
        "udp",
        "--pool",
        "echo",
        "--registrar",
        &nobody,
        "--resolve",
        "2",
        "--interval",
        "0",
        "--request-timeout",
        "300ms",
        "--retransmits",
        "0",
        "--server-hunt-timeout",
        "300ms",
        "--sctp-handshake-timeout",
        "300ms",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines.iter().all(|l| l.starts_with("resolution failed: ")),
        "{stdout}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

//! Shell completions and man pages come from the clap definitions.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rserpool");

#[test]
fn completions_cover_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in ["registrar", "pe", "pu", "bench", "sim", "decode"] {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let bad = Command::new(BIN)
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_pages_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    for page in [
        "rserpool.1",
        "rserpool-registrar.1",
        "rserpool-pe.1",
        "rserpool-pu.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is no man page");
    }
    let reg = std::fs::read_to_string(dir.path().join("rserpool-registrar.1")).unwrap();
    assert!(
        reg.contains("enrp\\-allow"),
        "the registrar's flags are in its page"
    );
}

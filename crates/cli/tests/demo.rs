//! `rserpool demo` as a user runs it: in a pipe (plain lines) and, where
//! tmux is installed, in a real terminal. It must end by itself with exit
//! status 0 after the crashed registrar is back and ownership is balanced.

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rserpool");

fn net(test: u32) -> String {
    let pid = std::process::id();
    // 127.200-249.x: apart from the other tests' 127.100-199.x.
    format!("127.{}.{}", 200 + pid % 50, (pid / 50) % 80 * 3 + test)
}

fn check(out: &str) {
    for want in [
        "balanced: every registrar owns its share",
        "registrar 3 crashes",
        "which serves the session, is killed",
        "failover: PE 0x",
        "registrar 3 is back",
        "balanced again; the session echoed",
        " 0 out of order",
    ] {
        assert!(out.contains(want), "`{want}` missing from:\n{out}");
    }
}

#[test]
fn the_demo_ends_by_itself_balanced_in_a_pipe() {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["demo", "--net", &net(0), "--timeout", "90s"])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&stdout);
    eprintln!("demo took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_demo_runs_in_a_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let session = format!("rserpool-demo-{}", std::process::id());
    let status = std::env::temp_dir().join(format!("{session}.status"));
    let _ = std::fs::remove_file(&status);
    let cmd = format!(
        "{BIN} demo --net {} --timeout 90s; echo $? > {}; sleep 30",
        net(1),
        status.display()
    );
    let ok = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "50",
            &cmd,
        ])
        .status()
        .expect("tmux");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut screen = String::new();
    // The pane stays a while after the demo so that its last screen can be read.
    loop {
        let done = status.exists();
        if let Ok(o) = Command::new("tmux")
            .args(["capture-pane", "-p", "-S", "-200", "-t", &session])
            .output()
        {
            screen = String::from_utf8_lossy(&o.stdout).into_owned();
        }
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    let code = std::fs::read_to_string(&status).unwrap_or_default();
    let _ = std::fs::remove_file(&status);
    assert_eq!(code.trim(), "0", "{screen}");
    check(&screen);
}

//! `rserpool monitor` against two peered registrars and three PEs
//! (separate processes on loopback, SCTP over UDP): one plain read, the
//! changes it reports while a PE and then a registrar die, and the
//! terminal view in tmux, which `q` ends with the terminal given back.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::{BIN, Cluster, args, loopback_net, peered_scope as scope};

#[test]
fn once_lists_every_registrar_with_the_pes_it_owns() {
    let net = loopback_net(0);
    let mut c = Cluster::default();
    scope(&mut c, &net);
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(args(&format!(
            "monitor --transport udp --once --plain --registrar {net}.2 --local {net}.9 \
             --interval 5s"
        )))
        .output()
        .expect("run the monitor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    // The long interval is for a loaded machine: --once ends as soon as
    // every registrar answered, not when the interval is over.
    assert!(started.elapsed() < Duration::from_secs(4), "{stdout}");
    // Registrar 2 was found in registrar 1's peer list and read too.
    assert!(
        stdout.contains(" 0x00000001:2 0x00000002:1 | pools=1 pes=3"),
        "{stdout}"
    );

    // Nobody there: the line still comes, with exit status 1 and the reason.
    let out = Command::new(BIN)
        .args(args(&format!(
            "monitor --transport udp --once --registrar {net}.12 --local {net}.9 --interval 500ms"
        )))
        .output()
        .expect("run the monitor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("(no answer) | pools=0 pes=0"), "{stdout}");
    assert!(
        stderr.starts_with("error: no registrar answered"),
        "{stderr}"
    );

    // Bad flags: one line, exit status 2.
    let out = Command::new(BIN)
        .args(args("monitor --once --interval 0"))
        .output()
        .expect("run the monitor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn plain_lines_report_a_vanished_pe_and_a_silent_registrar() {
    let net = loopback_net(1);
    let mut c = Cluster::default();
    let ([_, r2], [_, pe6, _]) = scope(&mut c, &net);
    let m = c.spawn(
        "monitor",
        &args(&format!(
            "monitor --transport udp --plain --interval 300ms --registrar {net}.2 --local {net}.9"
        )),
    );
    let has = |c: &Cluster, want: &[&str]| {
        c.procs[m]
            .stdout()
            .iter()
            .any(|l| want.iter().all(|w| l.contains(w)))
    };
    c.wait_until(Duration::from_secs(10), "the monitor sees 2 + 1 PEs", |c| {
        has(c, &[" 0x00000001:2 0x00000002:1 | pools=1 pes=3"])
    });

    c.procs[pe6].child.kill().expect("kill the PE");
    c.wait_until(Duration::from_secs(30), "the PE is reported gone", |c| {
        has(
            c,
            &[
                " event: PE 0x",
                " vanished from pool echo (home 0x00000001)",
            ],
        )
    });
    c.wait_until(Duration::from_secs(5), "the count follows", |c| {
        has(c, &[" 0x00000001:1 0x00000002:1 | pools=1 pes=2"])
    });

    c.procs[r2].child.kill().expect("kill registrar 2");
    c.wait_until(
        Duration::from_secs(10),
        "registrar 2 is reported silent",
        |c| has(c, &[" event: registrar 0x00000002 stopped answering"]),
    );
    c.wait_until(Duration::from_secs(5), "and shown silent", |c| {
        has(c, &["0x00000002:1 (no answer) | pools=1 pes=2"])
    });

    // Each read is one line followed by its changes, each stamped.
    for line in c.procs[m].stdout() {
        let time = line.split(' ').next().unwrap_or_default();
        assert!(
            time.len() == 8 && time.as_bytes()[2] == b':' && time.as_bytes()[5] == b':',
            "{line}"
        );
        assert!(
            line.contains(" | pools=") || line.contains(" event: "),
            "{line}"
        );
    }

    c.procs[m].signal(libc::SIGTERM);
    assert_eq!(c.procs[m].wait_exit(Duration::from_secs(5)), Some(0));
}

/// A tmux server of this test's own (never the user's), gone with it.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, rest: &[&str]) -> Option<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(rest)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "monitor"])
            .unwrap_or_default()
    }

    /// Polls the screen until `cond`; the last screen either way.
    fn wait_for(&self, within: Duration, cond: impl Fn(&str) -> bool) -> (bool, String) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return (true, screen);
            }
            if start.elapsed() > within {
                return (false, screen);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn the_terminal_view_shows_bars_and_quits_on_q() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let net = loopback_net(2);
    let mut c = Cluster::default();
    scope(&mut c, &net);
    let tmux = Tmux {
        socket: format!("rserpool-monitor-{}", std::process::id()),
    };
    let cmd = format!(
        "{BIN} monitor --transport udp --interval 300ms --registrar {net}.2 --local {net}.9; \
         echo monitor-exited-$?; sleep 30"
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "monitor",
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ]);
    assert!(started.is_some(), "tmux new-session failed");

    let row = |screen: &str, id: &str, n: &str| {
        screen
            .lines()
            .any(|l| l.contains(id) && l.contains('█') && l.contains(n) && l.contains("answering"))
    };
    let (seen, screen) = tmux.wait_for(Duration::from_secs(15), |s| {
        s.contains("scope: 2 registrars, 1 pools, 3 PEs")
            && row(s, "0x00000001", " 2 ")
            && row(s, "0x00000002", " 1 ")
    });
    assert!(seen, "no bars for both registrars:\n{screen}");
    assert!(screen.contains("events"), "{screen}");

    assert!(tmux.run(&["send-keys", "-t", "monitor", "q"]).is_some());
    // The shell's line shows only once the monitor left the alternate
    // screen, so this also checks that the terminal was given back.
    let (exited, screen) =
        tmux.wait_for(Duration::from_secs(5), |s| s.contains("monitor-exited-0"));
    assert!(exited, "the monitor did not quit on q:\n{screen}");
    assert!(!screen.contains("scope: "), "{screen}");
}

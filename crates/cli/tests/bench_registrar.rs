//! `rserpool bench registrar` against a real `rserpool registrar` process
//! on loopback over SCTP over UDP: every PE registers (the registrar's
//! status line counts them), keep-alives are acknowledged, resolutions
//! succeed, the PEs are deregistered at the end, and the JSON and the
//! table parse. Also: bad flags and an unreachable registrar fail fast.
//!
//! RSERPOOL_TEST_LOGS=1 prints the registrar's log even when it passes.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rserpool");

type Lines = Arc<Mutex<Vec<String>>>;

fn collect(r: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let l = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

/// The registrar process; killed when dropped, its log shown on failure.
struct Registrar {
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl Registrar {
    fn start(asap: &str, enrp: &str) -> Self {
        let args = format!(
            "registrar --transport udp --sctp-heartbeat-interval 200ms \
             --sctp-dead-peer-timeout 2s --addr {asap} --enrp-addr {enrp} \
             --status-interval 100ms --keep-alive-interval 300ms --keep-alive-timeout 2s \
             --mentor-discovery-timeout 200ms --balance off"
        );
        let mut child = Command::new(BIN)
            .args(args.split_whitespace())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rserpool registrar");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn statuses(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("status "))
            .cloned()
            .collect()
    }

    /// The `pes=N` of the last status line.
    fn pes(&self) -> Option<u64> {
        pes_of(self.statuses().last()?)
    }

    fn wait_until(&self, within: Duration, what: &str, cond: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < within,
                "timed out after {within:?} waiting until {what}; last status: {:?}",
                self.statuses().last()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() || std::env::var_os("RSERPOOL_TEST_LOGS").is_some() {
            eprintln!("----- registrar stdout (last 5) -----");
            let out = self.stdout.lock().unwrap();
            for l in out.iter().rev().take(5).rev() {
                eprintln!("{l}");
            }
            eprintln!("----- registrar stderr -----");
            for l in self.stderr.lock().unwrap().iter() {
                eprintln!("{l}");
            }
        }
    }
}

fn pes_of(status: &str) -> Option<u64> {
    status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pes="))?
        .parse()
        .ok()
}

/// A /24 of loopback of this process's own (as the cluster tests pick theirs).
fn loopback_net() -> String {
    let pid = std::process::id();
    format!("127.{}.{}", 100 + pid % 100, (pid / 100) % 80 * 3 + 2)
}

fn bench(args: &str) -> Output {
    Command::new(BIN)
        .arg("bench")
        .arg("registrar")
        .args(args.split_whitespace())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run rserpool bench registrar")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn loads_a_registrar_and_reports() {
    let started = Instant::now();
    let net = loopback_net();
    let asap = format!("{net}.1");
    let reg = Registrar::start(&asap, &format!("{net}.2"));
    reg.wait_until(Duration::from_secs(5), "the registrar is ready", |r| {
        r.statuses().last().is_some_and(|s| s.contains("ready=yes"))
    });
    assert_eq!(reg.pes(), Some(0));
    let pid = reg.child.id();

    // 200 PEs over 4 associations for 3 s; a 2 s life re-registers every
    // second; keep-alives every 300 ms +-50 %.
    let locals = (10..15)
        .map(|h| format!("--local {net}.{h}"))
        .collect::<Vec<_>>();
    let out = bench(&format!(
        "--registrar {asap} --transport udp --pes 200 --pools 5 --assocs 4 --duration 3s \
         --registration-life 2s --resolve-rate 300 --request-timeout 2s \
         --sctp-handshake-timeout 2s --registrar-pid {pid} --json {}",
        locals.join(" ")
    ));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    let n = |path: &str| -> f64 {
        r.pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{path} missing in {r:#}"))
    };
    assert_eq!(n("/pes"), 200.0);
    assert_eq!(n("/counts/registrations"), 200.0, "{r:#}");
    assert_eq!(n("/counts/deregistrations"), 200.0, "{r:#}");
    assert!(n("/counts/reregistrations") >= 200.0, "{r:#}");
    assert!(n("/counts/keep_alives") > 0.0, "{r:#}");
    assert!(
        n("/counts/keep_alive_acks") >= n("/counts/keep_alives"),
        "{r:#}"
    );
    assert!(n("/rates_per_s/keep_alive_acks") > 0.0, "{r:#}");
    assert!(n("/counts/resolutions") > 100.0, "{r:#}");
    assert!(n("/rates_per_s/resolutions") > 30.0, "{r:#}");
    assert!(n("/all_registered_s") < 3.0, "{r:#}");
    for (name, v) in r["errors"].as_object().expect("errors") {
        assert_eq!(v.as_u64(), Some(0), "error counter {name} in {r:#}");
    }
    for kind in [
        "registration",
        "reregistration",
        "resolution",
        "deregistration",
    ] {
        let p50 = n(&format!("/latency_us/{kind}/p50"));
        let p99 = n(&format!("/latency_us/{kind}/p99"));
        let max = n(&format!("/latency_us/{kind}/max"));
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{kind} in {r:#}");
    }
    assert_eq!(n("/registrar/pid"), f64::from(pid));
    assert!(n("/registrar/rss_kib") > 0.0, "{r:#}");
    assert!(n("/registrar/cpu_cores") >= 0.0, "{r:#}");

    // The registrar held every PE during the run, and none after it.
    let statuses = reg.statuses();
    assert!(
        statuses.iter().any(|s| pes_of(s) == Some(200)),
        "the registrar never listed 200 PEs: {:?}",
        statuses.last()
    );
    reg.wait_until(Duration::from_secs(2), "the PEs are deregistered", |r| {
        r.pes() == Some(0)
    });

    // The table: a header, one row per measure, and the summary lines.
    let out = bench(&format!(
        "--registrar {asap} --transport udp --pes 50 --pools 2 --assocs 2 --duration 1s \
         --resolve-rate 100 --registrar-pid {pid} --local {net}.20"
    ));
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}\n{}", text(&out.stderr));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("rserpool bench registrar: 50 PEs in 2 pools"),
        "{table}"
    );
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        ["count", "rate/s", "p50", "p90", "p99", "max"],
        "{table}"
    );
    let row = |name: &str| -> Vec<String> {
        let l = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` row in\n{table}"));
        l[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    for name in [
        "registrations",
        "re-registrations",
        "resolutions",
        "keep-alive acks",
        "deregistrations",
    ] {
        let cells = row(name);
        assert_eq!(cells.len(), 6, "`{name}` row in\n{table}");
        cells[0].parse::<u64>().expect("count");
    }
    assert_eq!(row("registrations")[0], "50", "{table}");
    assert_eq!(row("deregistrations")[0], "50", "{table}");
    assert!(row("resolutions")[0].parse::<u64>().unwrap() > 0, "{table}");
    let rate: f64 = row("registrations")[1].parse().expect("rate");
    assert!(rate > 0.0, "{table}");
    assert!(table.contains("all 50 PEs registered in "), "{table}");
    assert!(
        table.contains(&format!("registrar pid {pid}: CPU ")),
        "{table}"
    );
    reg.wait_until(Duration::from_secs(2), "the PEs are deregistered", |r| {
        r.pes() == Some(0)
    });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_flags_and_unreachable_registrars_fail_fast() {
    // One line, exit 2.
    let out = bench("--registrar 127.0.0.1 --pes 0");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.trim(), "error: --pes must be at least 1", "{err}");
    let out = bench("--registrar 127.0.0.1 --pes 10 --pools 11");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: --pools"));
    let out = bench("--registrar 127.0.0.1 --registration-life 10s --reregistration-interval 20s");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("shorter than --registration-life"));

    // Nobody there: a clear error within the handshake timeout, exit 1.
    let net = loopback_net();
    let started = Instant::now();
    let out = bench(&format!(
        "--registrar {net}.250 --transport udp --pes 10 --sctp-handshake-timeout 500ms \
         --local {net}.251"
    ));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot reach the registrar at {net}.250:3863")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
}

//! Sessions through the binaries a user runs: a registrar, pool elements
//! serving the classic services, and `rserpool pu` as a terminal, as
//! separate processes on loopback over SCTP over UDP (each node on its own
//! 127.x.y.z, all on UDP port 9899, RFC 6951), and across a lossy, delayed
//! link between network namespaces.
//!
//! The SCTP timers are shortened by flags, so a PE killed with SIGKILL is
//! noticed by the session within about a second (the dead-peer timeout).

mod support;

use std::time::{Duration, Instant};
use support::{Cluster, args, loopback_net};

const FAST_SCTP: &str = "--transport udp --sctp-heartbeat-interval 200ms \
                         --sctp-dead-peer-timeout 1s --sctp-handshake-timeout 1s";

/// A registrar at `{net}.1` (ENRP at `.2`) and PEs of `service` at
/// `{net}.11`, `{net}.12`, ...; waits until the registrar lists them all.
fn scope(c: &mut Cluster, net: &str, pool: &str, service: &str, pes: u8) -> Vec<usize> {
    c.spawn(
        "registrar",
        &args(&format!(
            "registrar {FAST_SCTP} --addr {net}.1 --enrp-addr {net}.2 --status-interval 200ms \
             --keep-alive-interval 5s --keep-alive-timeout 1s"
        )),
    );
    let pes: Vec<usize> = (0..pes)
        .map(|i| {
            c.spawn(
                &format!("pe {}", 11 + i),
                &args(&format!(
                    "pe {FAST_SCTP} --pool {pool} --id {:#x} --local {net}.{} --registrar {net}.1 \
                     --service {service}",
                    0x101 + u32::from(i),
                    11 + i
                )),
            )
        })
        .collect();
    let want = format!(" pes={} ", pes.len());
    c.wait_until(
        Duration::from_secs(10),
        "the registrar lists every PE",
        |c| c.procs[0].status().contains(&want),
    );
    pes
}

fn terminal(c: &mut Cluster, net: &str, pool: &str, host: u8) -> usize {
    c.spawn_with_input(
        "pu",
        &args(&format!(
            "pu {FAST_SCTP} --pool {pool} --registrar {net}.1 --local {net}.{host} \
             --reply-timeout 10s"
        )),
    )
}

/// The PE whose log says it serves a session.
fn serving(c: &Cluster, pes: &[usize]) -> Option<usize> {
    pes.iter()
        .copied()
        .find(|&p| c.procs[p].stderr().iter().any(|l| l.contains(" opened (")))
}

#[test]
fn echo_lines_come_back_through_the_registrar_from_one_of_two_pes() {
    let net = loopback_net(0);
    let mut c = Cluster::default();
    let pes = scope(&mut c, &net, "echo", "echo", 2);
    let pu = terminal(&mut c, &net, "echo", 21);
    let lines: Vec<String> = (1..=100)
        .map(|i| format!("line {i} of the echo test"))
        .collect();
    for l in &lines {
        c.procs[pu].send_line(l);
    }
    c.procs[pu].close_stdin();
    assert_eq!(c.procs[pu].wait_exit(Duration::from_secs(20)), Some(0));
    assert_eq!(c.procs[pu].stdout(), lines);
    assert!(serving(&c, &pes).is_some());
    assert!(
        !c.procs[pu].stderr().iter().any(|l| l.contains("failover")),
        "{:?}",
        c.procs[pu].stderr()
    );
}

#[test]
fn sigkill_of_the_serving_pe_moves_the_session_without_losing_or_repeating_a_line() {
    let net = loopback_net(1);
    let mut c = Cluster::default();
    let pes = scope(&mut c, &net, "echo", "echo", 2);
    let pu = terminal(&mut c, &net, "echo", 21);
    let lines: Vec<String> = (1..=60).map(|i| format!("line {i}")).collect();
    let mut killed_at = None;
    for (i, l) in lines.iter().enumerate() {
        c.procs[pu].send_line(l);
        std::thread::sleep(Duration::from_millis(50));
        if i == 15 {
            let victim = serving(&c, &pes).expect("a PE serves the session");
            c.procs[victim].signal(libc::SIGKILL);
            killed_at = Some((Instant::now(), victim));
        }
    }
    c.procs[pu].close_stdin();
    assert_eq!(c.procs[pu].wait_exit(Duration::from_secs(30)), Some(0));
    assert_eq!(c.procs[pu].stdout(), lines, "every line once, in order");
    let stderr = c.procs[pu].stderr();
    let failover: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("failover: PE 0x"))
        .collect();
    assert_eq!(failover.len(), 1, "{stderr:?}");
    assert!(
        failover[0].contains("(PE stopped answering)"),
        "{failover:?}"
    );
    // The registrar drops the dead PE (the pool user reported it unreachable).
    let (at, victim) = killed_at.unwrap();
    let took = c.wait_until(
        Duration::from_secs(10),
        "the registrar drops the dead PE",
        |c| c.procs[0].status().contains(" pes=1 "),
    );
    eprintln!(
        "killed PE {victim}; the registrar listed one PE {:.1} s after the kill",
        (at.elapsed() - took).as_secs_f64()
    );
}

/// Runs `input` through a terminal to `service` on a fresh scope of two
/// PEs, killing the serving PE after `kill_after` lines if given; the
/// terminal's output and the surviving PEs' logs.
fn run_service(
    test: u32,
    service: &str,
    input: &[&str],
    pace: Duration,
    kill_after: Option<usize>,
) -> (Vec<String>, Vec<String>) {
    let net = loopback_net(test);
    let mut c = Cluster::default();
    let pes = scope(&mut c, &net, service, service, 2);
    let pu = terminal(&mut c, &net, service, 21);
    for (i, l) in input.iter().enumerate() {
        c.procs[pu].send_line(l);
        std::thread::sleep(pace);
        if Some(i + 1) == kill_after {
            let victim = serving(&c, &pes).expect("a PE serves the session");
            c.procs[victim].signal(libc::SIGKILL);
        }
    }
    c.procs[pu].close_stdin();
    assert_eq!(c.procs[pu].wait_exit(Duration::from_secs(60)), Some(0));
    let logs = pes.iter().flat_map(|&p| c.procs[p].stderr()).collect();
    (c.procs[pu].stdout(), logs)
}

#[test]
fn pingpong_counts_on_across_a_pe_crash() {
    let pings = ["ping"; 30];
    let (out, logs) = run_service(2, "pingpong", &pings, Duration::from_millis(60), Some(10));
    let want: Vec<String> = (1..=30).map(|i| format!("pong {i}")).collect();
    assert_eq!(out, want);
    assert!(
        logs.iter().any(|l| l.contains("resumed at pong ")),
        "the second PE resumed from the cookie: {logs:?}"
    );
}

#[test]
fn calcapp_resumes_from_the_last_checkpoint_and_gets_the_undisturbed_result() {
    let jobs = ["300000", "1000000"];
    let (undisturbed, _) = run_service(3, "calcapp", &jobs, Duration::ZERO, None);
    assert_eq!(undisturbed.len(), 2, "{undisturbed:?}");
    assert!(
        undisturbed[1].starts_with("result 1000000 0x"),
        "{undisturbed:?}"
    );
    // 100 chunks of 20 ms: the crash, 1 s in, comes mid-computation.
    let (out, logs) = run_service(4, "calcapp", &jobs, Duration::from_millis(1000), Some(2));
    assert_eq!(out, undisturbed, "the same results as the undisturbed run");
    let resumed: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains(" resumes `1000000` at step "))
        .collect();
    assert_eq!(resumed.len(), 1, "{logs:?}");
    assert!(!resumed[0].contains("at step 0 "), "{resumed:?}");
}

// ----- a lossy, delayed link between two network namespaces -----

/// Two namespaces joined by a veth pair with `tc netem` on both ends;
/// removed when dropped.
struct LossyLink {
    names: [String; 2],
}

impl LossyLink {
    /// `None` when this host cannot make namespaces (not root, no `ip`).
    fn new(tag: &str, delay_ms: u32, loss_pct: u32) -> Option<Self> {
        let names = [format!("rsp{tag}a"), format!("rsp{tag}b")];
        let link = Self { names };
        let [a, b] = &link.names;
        let (va, vb) = (format!("v{tag}a"), format!("v{tag}b"));
        let netem = format!("delay {delay_ms}ms loss {loss_pct}%");
        let steps = [
            format!("netns add {a}"),
            format!("netns add {b}"),
            format!("link add {va} netns {a} type veth peer name {vb} netns {b}"),
            format!("-n {a} addr add 10.77.0.1/24 dev {va}"),
            format!("-n {b} addr add 10.77.0.2/24 dev {vb}"),
            format!("-n {a} addr add 10.77.0.11/24 dev {va}"),
            format!("-n {a} addr add 10.77.0.3/24 dev {va}"),
            format!("-n {a} link set {va} up"),
            format!("-n {b} link set {vb} up"),
            format!("-n {a} link set lo up"),
            format!("-n {b} link set lo up"),
        ];
        for s in steps {
            if !run("ip", &s) {
                eprintln!("`ip {s}` failed");
                return None;
            }
        }
        for (ns, dev) in [(a, &va), (b, &vb)] {
            let s = format!("netns exec {ns} tc qdisc add dev {dev} root netem {netem}");
            if !run("ip", &s) {
                eprintln!("`ip {s}` failed");
                return None;
            }
        }
        Some(link)
    }

    fn exec(&self, side: usize) -> Vec<String> {
        args(&format!("ip netns exec {}", self.names[side]))
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        for n in &self.names {
            run("ip", &format!("netns del {n}"));
        }
    }
}

fn run(cmd: &str, a: &str) -> bool {
    std::process::Command::new(cmd)
        .args(args(a))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn echo_completes_a_thousand_lines_in_order_over_10_percent_loss_and_50_ms_delay() {
    let tag = format!("{}", std::process::id() % 100_000);
    let Some(link) = LossyLink::new(&tag, 50, 10) else {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let mut c = Cluster::default();
    // Registrar and PE on one side, the terminal on the other.
    let server = link.exec(0);
    c.spawn_in(
        "registrar",
        &server,
        &args("registrar --transport udp --addr 10.77.0.1 --enrp-addr 10.77.0.3 --status-interval 200ms"),
        false,
    );
    c.spawn_in(
        "pe",
        &server,
        &args("pe --transport udp --pool echo --local 10.77.0.11 --registrar 10.77.0.1 --service echo"),
        false,
    );
    c.wait_until(Duration::from_secs(10), "the PE is registered", |c| {
        c.procs[0].status().contains(" pes=1 ")
    });
    let pu = c.spawn_in(
        "pu",
        &link.exec(1),
        &args("pu --transport udp --pool echo --registrar 10.77.0.1 --local 10.77.0.2 --reply-timeout 30s"),
        true,
    );
    let lines: Vec<String> = (1..=1000)
        .map(|i| format!("{i:04} over a lossy link"))
        .collect();
    let started = Instant::now();
    for l in &lines {
        c.procs[pu].send_line(l);
    }
    c.procs[pu].close_stdin();
    assert_eq!(c.procs[pu].wait_exit(Duration::from_secs(120)), Some(0));
    assert_eq!(c.procs[pu].stdout(), lines);
    eprintln!(
        "1,000 echo lines over 10 % loss and 2 x 50 ms delay in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_stuck_pe_is_given_up_after_the_answer_timeout() {
    let net = loopback_net(5);
    let mut c = Cluster::default();
    let pes = scope(&mut c, &net, "echo", "echo", 2);
    let pu = c.spawn_with_input(
        "pu",
        &args(&format!(
            "pu {FAST_SCTP} --pool echo --registrar {net}.1 --local {net}.21 \
             --reply-timeout 10s --answer-timeout 300ms"
        )),
    );
    let lines: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
    for (i, l) in lines.iter().enumerate() {
        c.procs[pu].send_line(l);
        std::thread::sleep(Duration::from_millis(40));
        if i == 10 {
            // Stopped, not dead: only the application can tell.
            let victim = serving(&c, &pes).expect("a PE serves the session");
            c.procs[victim].signal(libc::SIGSTOP);
        }
    }
    c.procs[pu].close_stdin();
    assert_eq!(c.procs[pu].wait_exit(Duration::from_secs(20)), Some(0));
    assert_eq!(c.procs[pu].stdout(), lines, "every line once, in order");
    let stderr = c.procs[pu].stderr();
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("failover: PE 0x")
                && l.ends_with("(requested by the application)")),
        "{stderr:?}"
    );
    for &p in &pes {
        c.procs[p].signal(libc::SIGCONT);
    }
}

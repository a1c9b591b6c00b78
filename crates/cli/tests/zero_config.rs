//! Starting a scope as a newcomer does, through the built binary, each test
//! in network namespaces of its own (so that the well-known ports are free
//! and multicast stays inside the test):
//! - on one host, `rserpool registrar`, `rserpool pe --pool echo --service
//!   echo` and `rserpool pu --pool echo` with no other flag exchange data
//!   over SCTP over UDP (the registrar's two endpoints share UDP port 9899,
//!   the PE takes the UDP port equal to its SCTP port);
//! - two registrars on two hosts find each other by ENRP_PRESENCE on the
//!   default multicast group and replicate a PE, without --peer.
//!
//! Skipped (with a line saying so) where namespaces cannot be made.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Cluster, args};

fn ip(a: &str) -> bool {
    Command::new("ip")
        .args(args(a))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Network namespaces removed when dropped.
struct Namespaces(Vec<String>);

impl Namespaces {
    /// `None` when this host cannot make namespaces (not root, no `ip`).
    fn new(names: &[String], steps: &[String]) -> Option<Self> {
        let mut me = Namespaces(Vec::new());
        for n in names {
            ip(&format!("netns del {n}"));
            if !ip(&format!("netns add {n}")) {
                eprintln!("SKIPPED: cannot create network namespaces here");
                return None;
            }
            me.0.push(n.clone());
            assert!(ip(&format!("-n {n} link set lo up")));
        }
        for s in steps {
            assert!(ip(s), "`ip {s}` failed");
        }
        Some(me)
    }

    fn exec(&self, i: usize) -> Vec<String> {
        args(&format!("ip netns exec {}", self.0[i]))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            ip(&format!("netns del {n}"));
        }
    }
}

#[test]
fn no_flags_registrar_pe_and_pu_on_one_host_exchange_data() {
    let tag = std::process::id() % 10_000;
    let Some(ns) = Namespaces::new(&[format!("rspzc{tag}")], &[]) else {
        return;
    };
    let mut c = Cluster::default();
    c.prefix = ns.exec(0);
    let reg = c.spawn("registrar", &args("registrar --status-interval 200ms"));
    c.wait_until(Duration::from_secs(10), "the registrar is ready", |c| {
        c.procs[reg].status().contains("ready=yes")
    });
    c.spawn("pe", &args("pe --pool echo --service echo"));
    c.wait_until(Duration::from_secs(15), "the PE registered", |c| {
        c.procs[reg].status().contains("pes=1 ")
    });
    let pu = c.spawn_with_input("pu", &args("pu --pool echo"));
    c.procs[pu].send_line("hello over zero configuration");
    c.procs[pu].send_line("second line");
    c.procs[pu].close_stdin();
    assert_eq!(c.procs[pu].wait_exit(Duration::from_secs(30)), Some(0));
    assert_eq!(
        c.procs[pu].stdout(),
        vec!["hello over zero configuration", "second line"]
    );
    // One UDP socket for the registrar's ASAP and ENRP endpoints.
    let ss = Command::new("ip")
        .args(ns.exec(0).iter().skip(1))
        .args(["ss", "-Hunlp"])
        .output()
        .expect("ss");
    let ss = String::from_utf8_lossy(&ss.stdout);
    let registrar_sockets: Vec<&str> = ss
        .lines()
        .filter(|l| l.contains(&format!("pid={},", c.procs[reg].child.id())))
        .collect();
    assert_eq!(registrar_sockets.len(), 1, "{ss}");
    assert!(registrar_sockets[0].contains(":9899 "), "{ss}");
}

#[test]
fn registrars_on_two_hosts_find_each_other_by_multicast() {
    let tag = std::process::id() % 10_000;
    let (a, b) = (format!("rspmc{tag}a"), format!("rspmc{tag}b"));
    let (va, vb) = (format!("vmc{tag}a"), format!("vmc{tag}b"));
    let steps = [
        format!("link add {va} netns {a} type veth peer name {vb} netns {b}"),
        format!("-n {a} addr add 10.78.0.1/24 dev {va}"),
        format!("-n {b} addr add 10.78.0.2/24 dev {vb}"),
        format!("-n {a} link set {va} up"),
        format!("-n {b} link set {vb} up"),
        format!("-n {a} route add 224.0.0.0/4 dev {va}"),
        format!("-n {b} route add 224.0.0.0/4 dev {vb}"),
    ];
    let Some(ns) = Namespaces::new(&[a, b], &steps) else {
        return;
    };
    let mut c = Cluster::default();
    // Only the scope rule: no --peer, no announce address.
    let registrar = |ip: &str| {
        args(&format!(
            "registrar --addr {ip} --enrp-allow 10.78.0.0/24 --status-interval 200ms"
        ))
    };
    let ra = c.spawn_in("registrar a", &ns.exec(0), &registrar("10.78.0.1"), false);
    let rb = c.spawn_in("registrar b", &ns.exec(1), &registrar("10.78.0.2"), false);
    c.wait_until(
        Duration::from_secs(15),
        "each registrar has the other as a live peer",
        |c| {
            c.procs[ra].status().contains("peers=1 ")
                && c.procs[rb].status().contains("peers=1 ")
                && c.procs[ra].status().contains("ready=yes")
                && c.procs[rb].status().contains("ready=yes")
        },
    );
    // A PE in b's host with no registrar flag finds b (by its announce or
    // on this host) and a learns of it by ENRP.
    c.spawn_in(
        "pe",
        &ns.exec(1),
        &args("pe --pool echo --service echo"),
        false,
    );
    c.wait_until(Duration::from_secs(20), "a holds b's PE", |c| {
        c.procs[ra].status().contains("pes=1 ") && c.procs[rb].status().contains("pes=1 ")
    });
}

//! `--metrics ADDR`: the pages a Prometheus server scrapes from a
//! registrar, a PE and a pool user (both modes), fetched with a plain
//! HTTP/1.1 GET as separate processes on loopback over SCTP over UDP.
//!
//! Each page is also checked by `promtool check metrics` when promtool is
//! on the PATH.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{BIN, Cluster, args, loopback_net};

const FAST_SCTP: &str = "--transport udp --sctp-heartbeat-interval 200ms \
                         --sctp-dead-peer-timeout 1s --sctp-handshake-timeout 1s";

/// The port every node serves its metrics on (each node has its own IP).
const PORT: u16 = 9464;

/// Sends `request` as is; the whole response, or why there is none.
fn exchange(addr: &str, request: &[u8]) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .map_err(|e| format!("read {addr}: {e}"))?;
    String::from_utf8(response).map_err(|e| e.to_string())
}

/// Status line, headers and body of a response.
fn split(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").unwrap_or((response, ""))
}

/// `GET /metrics`: the page, or why there is none (the node may not be
/// listening yet).
fn scrape(addr: &str) -> Result<String, String> {
    let response = exchange(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n").as_bytes(),
    )?;
    let (head, body) = split(&response);
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(format!("not 200: {head}"));
    }
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_default();
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    Ok(body.to_string())
}

/// The value of the sample written exactly `sample` (name and labels).
fn value(page: &str, sample: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Scrapes `addr` until `sample` satisfies `ok`; the page then.
fn wait_for(
    c: &Cluster,
    addr: &str,
    sample: &str,
    ok: impl Fn(f64) -> bool,
    within: Duration,
) -> String {
    let page = std::cell::RefCell::new(String::new());
    c.wait_until(within, &format!("{sample} at {addr} is as wanted"), |_| {
        let p = scrape(addr).unwrap_or_default();
        let done = value(&p, sample).is_some_and(&ok);
        *page.borrow_mut() = p;
        done
    });
    page.into_inner()
}

/// `promtool check metrics` on `page` when promtool is installed.
fn promtool(name: &str, page: &str) {
    let found = Command::new("which")
        .arg("promtool")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("promtool not on PATH: `promtool check metrics` of the {name} page skipped");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics of the {name} page: {}{}\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A registrar at `{net}.1` (ENRP at `.2`) serving metrics.
fn registrar(c: &mut Cluster, net: &str) -> String {
    let at = format!("{net}.1:{PORT}");
    c.spawn(
        "registrar",
        &args(&format!(
            "registrar {FAST_SCTP} --addr {net}.1 --enrp-addr {net}.2 --no-announce \
             --keep-alive-interval 5s --keep-alive-timeout 1s --metrics {at}"
        )),
    );
    at
}

/// A PE of pool `echo` at `{net}.{host}` serving echo and metrics.
fn pe(c: &mut Cluster, net: &str, host: u8) -> (usize, String) {
    let at = format!("{net}.{host}:{PORT}");
    let i = c.spawn(
        &format!("pe {host}"),
        &args(&format!(
            "pe {FAST_SCTP} --pool echo --id {:#x} --local {net}.{host} --registrar {net}.1 \
             --service echo --metrics {at}",
            0x100 + u32::from(host)
        )),
    );
    (i, at)
}

#[test]
fn registrar_pe_and_resolving_pu_pages() {
    let net = loopback_net(0);
    let mut c = Cluster::default();
    let reg = registrar(&mut c, &net);
    let (_, pe_at) = pe(&mut c, &net, 11);

    let page = wait_for(
        &c,
        &reg,
        "rserpool_handlespace_pool_elements",
        |v| v == 1.0,
        Duration::from_secs(10),
    );
    assert_eq!(value(&page, "rserpool_registrar_ready"), Some(1.0));
    assert_eq!(value(&page, "rserpool_handlespace_pools"), Some(1.0));
    assert!(
        value(
            &page,
            "rserpool_registrar_messages_received_total{type=\"ASAP_REGISTRATION\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{page}"
    );
    assert!(
        value(
            &page,
            "rserpool_registrar_messages_sent_total{type=\"ASAP_REGISTRATION_RESPONSE\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{page}"
    );
    assert!(
        page.lines().any(|l| l
            .starts_with("rserpool_registrar_owned_pool_elements{registrar=\"0x")
            && l.ends_with("} 1")),
        "{page}"
    );
    assert_eq!(
        value(&page, "rserpool_registrar_peers{status=\"alive\"}"),
        Some(0.0)
    );
    assert!(
        value(&page, "rserpool_registrar_associations").is_some_and(|v| v >= 1.0),
        "{page}"
    );
    assert_eq!(
        value(
            &page,
            "rserpool_takeover_suggestions_withheld_total{reason=\"rate_limited\"}"
        ),
        Some(0.0)
    );
    promtool("registrar", &page);

    let page = wait_for(
        &c,
        &pe_at,
        "rserpool_pe_registered",
        |v| v == 1.0,
        Duration::from_secs(10),
    );
    assert_eq!(value(&page, "rserpool_pe_registrations_total"), Some(1.0));
    assert_eq!(value(&page, "rserpool_pe_homes_lost_total"), Some(0.0));
    promtool("PE", &page);

    // The pool user exits after its resolutions: scrape while it runs.
    let pu_at = format!("{net}.21:{PORT}");
    c.spawn(
        "pu",
        &args(&format!(
            "pu {FAST_SCTP} --pool echo --registrar {net}.1 --local {net}.21 --resolve 50 \
             --interval 100ms --metrics {pu_at}"
        )),
    );
    let page = wait_for(
        &c,
        &pu_at,
        "rserpool_pu_resolutions_total{result=\"success\"}",
        |v| v >= 3.0,
        Duration::from_secs(10),
    );
    assert_eq!(
        value(&page, "rserpool_pu_resolutions_total{result=\"failure\"}"),
        Some(0.0)
    );
    assert!(
        value(&page, "rserpool_pu_resolution_duration_seconds_count").is_some_and(|v| v >= 3.0),
        "{page}"
    );
    assert!(
        value(&page, "rserpool_pu_resolution_duration_seconds_sum").is_some_and(|v| v > 0.0),
        "{page}"
    );
    promtool("pool user (--resolve)", &page);

    // The registrar answered those resolutions.
    let page = scrape(&reg).unwrap();
    assert!(
        value(
            &page,
            "rserpool_registrar_messages_received_total{type=\"ASAP_HANDLE_RESOLUTION\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{page}"
    );
}

#[test]
fn bad_requests_get_errors_and_the_page_keeps_being_served() {
    let net = loopback_net(1);
    let mut c = Cluster::default();
    let reg = registrar(&mut c, &net);
    c.wait_until(Duration::from_secs(10), "the registrar serves", |_| {
        scrape(&reg).is_ok()
    });
    let status = |request: &[u8]| {
        let response = exchange(&reg, request).expect("an answer");
        response.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(
        status(b"GET /other HTTP/1.1\r\n\r\n"),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        status(b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(status(b"nonsense\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    assert_eq!(
        status(b"GET /\xff\xfe HTTP/1.1\r\n\r\n"),
        "HTTP/1.1 400 Bad Request"
    );
    let huge = vec![b'A'; 64 * 1024];
    assert_eq!(status(&huge), "HTTP/1.1 400 Bad Request");
    // HEAD: the headers of the page without it.
    let response = exchange(&reg, b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
    let (head, body) = split(&response);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.is_empty(), "{body}");
    // A client that connects and says nothing does not stop others.
    let _silent = TcpStream::connect(&reg).unwrap();
    let page = scrape(&reg).expect("the page after bad requests");
    assert_eq!(value(&page, "rserpool_registrar_ready"), Some(1.0));
}

#[test]
fn terminal_pu_counts_lines_and_failovers() {
    let net = loopback_net(2);
    let mut c = Cluster::default();
    let reg = registrar(&mut c, &net);
    let pes = [pe(&mut c, &net, 11), pe(&mut c, &net, 12)];
    wait_for(
        &c,
        &reg,
        "rserpool_handlespace_pool_elements",
        |v| v == 2.0,
        Duration::from_secs(10),
    );
    let pu_at = format!("{net}.21:{PORT}");
    let pu = c.spawn_with_input(
        "pu",
        &args(&format!(
            "pu {FAST_SCTP} --pool echo --registrar {net}.1 --local {net}.21 \
             --reply-timeout 10s --metrics {pu_at}"
        )),
    );
    for i in 1..=5 {
        c.procs[pu].send_line(&format!("line {i}"));
    }
    let page = wait_for(
        &c,
        &pu_at,
        "rserpool_pu_lines_answered_total",
        |v| v == 5.0,
        Duration::from_secs(10),
    );
    assert_eq!(value(&page, "rserpool_pu_lines_sent_total"), Some(5.0));
    assert_eq!(value(&page, "rserpool_pu_session_connected"), Some(1.0));
    assert_eq!(
        value(&page, "rserpool_pu_failover_duration_seconds_count"),
        Some(0.0)
    );

    // Kill the PE serving the session; the next line goes to the other.
    let serving = pes
        .iter()
        .find(|(i, _)| c.procs[*i].stderr().iter().any(|l| l.contains(" opened (")))
        .expect("a PE serves the session");
    let other = pes.iter().find(|p| p.0 != serving.0).unwrap();
    let page = scrape(&serving.1).unwrap();
    assert_eq!(value(&page, "rserpool_pe_sessions_opened_total"), Some(1.0));
    c.procs[serving.0].signal(libc::SIGKILL);
    c.procs[pu].send_line("line 6");
    let page = wait_for(
        &c,
        &pu_at,
        "rserpool_pu_lines_answered_total",
        |v| v == 6.0,
        Duration::from_secs(15),
    );
    assert_eq!(
        value(
            &page,
            "rserpool_pu_failovers_total{reason=\"association_down\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        value(&page, "rserpool_pu_failover_duration_seconds_count"),
        Some(1.0),
        "{page}"
    );
    assert!(
        value(&page, "rserpool_pu_failover_duration_seconds_sum").is_some_and(|v| v > 0.0),
        "{page}"
    );
    promtool("pool user (terminal)", &page);
    let page = scrape(&other.1).unwrap();
    assert_eq!(value(&page, "rserpool_pe_sessions_opened_total"), Some(1.0));
    c.procs[pu].close_stdin();
    assert_eq!(c.procs[pu].wait_exit(Duration::from_secs(15)), Some(0));
}

/// Runs the binary to its exit; exit code and standard error.
fn run(a: &str) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args(a))
        .stdin(Stdio::null())
        .output()
        .expect("run rserpool");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unusable_metrics_address_stops_start_up() {
    let net = loopback_net(3);
    let taken = std::net::TcpListener::bind(format!("{net}.9:0")).unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (node, flags) in [
        (
            "registrar",
            format!("--transport udp --addr {net}.1 --no-announce"),
        ),
        (
            "pe",
            format!("--transport udp --pool p --local {net}.11 --registrar {net}.1"),
        ),
        (
            "pu",
            format!("--transport udp --pool p --local {net}.21 --registrar {net}.1 --resolve 1"),
        ),
        (
            "pu",
            format!("--transport udp --pool p --local {net}.21 --registrar {net}.1"),
        ),
    ] {
        for (addr, reason) in [
            ("nonsense", "not an IP:PORT address"),
            (taken.as_str(), "in use"),
        ] {
            let (code, stderr) = run(&format!("{node} {flags} --metrics {addr}"));
            assert_eq!(code, Some(2), "{node} --metrics {addr}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{node} --metrics {addr}: {stderr}");
            let want = format!("error: cannot serve metrics on {addr}: ");
            assert!(
                lines[0].starts_with(&want) && lines[0].contains(reason),
                "{node} --metrics {addr}: {stderr}"
            );
        }
    }
}

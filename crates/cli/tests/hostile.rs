//! A hostile neighbour against a real `rserpool registrar` process over SCTP
//! over UDP on loopback: the RFC 5355 trust model keeps a legitimate PE
//! registered and resolvable whatever the attacker sends.
//!
//! Each test runs one registrar (ASAP and ENRP endpoints on IPs of their
//! own), one `rserpool pe` (0x101) and an attacker speaking ASAP and ENRP
//! itself (with the transport and wire crates) from other IPs of the same
//! /24; after every attack `rserpool pu` must still resolve the PE at its
//! real address, and the registrar's `refused=` counter must have counted
//! what it turned down. Every child is killed when the test ends, pass or
//! fail; RSERPOOL_TEST_LOGS=1 prints every process's log even when it
//! passes.

use bytes::Bytes;
use rserpool_net::transport::udp::{UdpConfig, UdpTransport};
use rserpool_net::transport::{
    AssociationId, EndpointConfig, Event, Ppid, Transport, TransportConfig,
};
use rserpool_wire::{
    AsapMessage, CauseCode, EnrpMessage, ErrorCause, Message, PeId, Policy, PoolElement,
    PoolHandle, PrId, RegistrationLife, Servers, TransportAddress, TransportUse, UpdateAction,
    UserTransport,
};
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rserpool");

/// ASAP and ENRP ports of the registrar (RFC 5352 §8.2, RFC 5353 §5.3).
const ASAP_PORT: u16 = 3863;
const ENRP_PORT: u16 = 9901;

/// The legitimate PE.
const PE_ID: u32 = 0x101;
const PE_ID_TEXT: &str = "0x00000101";
const PE_USER_PORT: u16 = 5000;

/// The registrar's ID.
const REGISTRAR_ID: u32 = 1;

/// SCTP timers short enough for failures to show within a second.
const FAST_SCTP: &str = "--transport udp --sctp-heartbeat-interval 200ms \
                         --sctp-dead-peer-timeout 1s --sctp-handshake-timeout 1s";

/// How long the attacker listens for an answer that must not come.
const SILENCE: Duration = Duration::from_secs(1);

/// Generous deadline of everything that should happen "soon".
const SOON: Duration = Duration::from_secs(10);

type Lines = Arc<Mutex<Vec<String>>>;

/// A child process whose output is collected line by line.
struct Proc {
    name: String,
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

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

impl Proc {
    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The last status line (registrars).
    fn status(&self) -> String {
        self.stdout()
            .into_iter()
            .rev()
            .find(|l| l.starts_with("status "))
            .unwrap_or_default()
    }

    /// How many status lines were printed so far.
    fn status_count(&self) -> usize {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("status "))
            .count()
    }
}

/// The value of `key=` in a status line.
fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn number(status: &str, key: &str) -> Option<u64> {
    field(status, key)?.parse().ok()
}

/// Owns every child; kills them all when dropped, and on failure prints
/// what each said.
#[derive(Default)]
struct Procs {
    procs: Vec<Proc>,
}

impl Procs {
    fn spawn(&mut self, name: &str, args: &[String]) -> usize {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rserpool");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
        });
        self.procs.len() - 1
    }

    /// Polls `cond` every 20 ms for at most `within`; the time it took.
    fn wait_until(&self, within: Duration, what: &str, cond: impl Fn(&Self) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if cond(self) {
                return start.elapsed();
            }
            if start.elapsed() > within {
                panic!("timed out after {within:?} waiting until {what}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if thread::panicking() || std::env::var_os("RSERPOOL_TEST_LOGS").is_some() {
            for p in &self.procs {
                eprintln!("----- {} stdout (last 10) -----", p.name);
                for l in p.stdout().iter().rev().take(10).rev() {
                    eprintln!("{l}");
                }
                eprintln!("----- {} stderr -----", p.name);
                for l in p.stderr() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// A /24 of loopback of this process's own (as cluster.rs picks its
/// networks); `test` (0..4) tells the tests of one run apart.
fn loopback_net(test: u32) -> String {
    let pid = std::process::id();
    format!("127.{}.{}", 100 + pid % 100, (pid / 100) % 60 * 4 + test)
}

fn ip_in(net: &str, host: u8) -> IpAddr {
    format!("{net}.{host}").parse().unwrap()
}

/// One run of `rserpool pu`.
struct Resolution {
    code: i32,
    lines: Vec<String>,
}

impl Resolution {
    /// The PE ids it printed.
    fn ids(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("pe=")?.split_whitespace().next())
            .collect()
    }

    /// Resolved to the legitimate PE at its real user transport, every time.
    fn is_the_pe(&self, pe_ip: IpAddr) -> bool {
        let at = format!(" at {pe_ip}:{PE_USER_PORT} ");
        self.code == 0
            && !self.lines.is_empty()
            && self.ids().iter().all(|id| *id == PE_ID_TEXT)
            && self.ids().len() == self.lines.len()
            && self.lines.iter().all(|l| l.contains(&at))
    }
}

/// Runs `rserpool pu --resolve 2` against the registrar's ASAP endpoint.
fn resolve(registrar: IpAddr, request_timeout: &str) -> Resolution {
    let out = Command::new(BIN)
        .args(args(&format!(
            "pu --transport udp --pool echo --registrar {registrar} --resolve 2 --interval 0 \
             --cache 0 --request-timeout {request_timeout} --retransmits 1 \
             --server-hunt-timeout 2s"
        )))
        .output()
        .expect("run pu");
    Resolution {
        code: out.status.code().unwrap_or(-1),
        lines: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
    }
}

/// The registrar, the legitimate PE and the attacker's addresses.
struct Setup {
    procs: Procs,
    reg: usize,
    pe: usize,
    asap: IpAddr,
    enrp: IpAddr,
    pe_ip: IpAddr,
    /// Attacker addresses: neighbours on the same /24.
    attacker: IpAddr,
    attacker2: IpAddr,
}

impl Setup {
    /// Starts the registrar (with `extra` flags) and the PE, and waits
    /// until the PE is registered, owned by the registrar and resolvable.
    fn start(test: u32, extra: &str) -> Self {
        let net = loopback_net(test);
        let ip = |h| ip_in(&net, h);
        let (asap, enrp, pe_ip) = (ip(1), ip(2), ip(11));
        let mut procs = Procs::default();
        let reg = procs.spawn(
            "registrar",
            &args(&format!(
                "registrar {FAST_SCTP} --id {REGISTRAR_ID} --addr {asap} --enrp-addr {enrp} \
                 --status-interval 200ms --keep-alive-interval 300ms --keep-alive-timeout 1s \
                 --balance off --mentor-discovery-timeout 200ms {extra}"
            )),
        );
        procs.wait_until(SOON, "the registrar is ready", |p| {
            p.procs[reg].status().contains(" ready=yes ")
        });
        let pe = procs.spawn(
            "pe 0x101",
            &args(&format!(
                "pe {FAST_SCTP} --pool echo --id {PE_ID:#x} --local {pe_ip} \
                 --user-port {PE_USER_PORT} --registrar {asap} --server-hunt-timeout 1s"
            )),
        );
        let s = Self {
            procs,
            reg,
            pe,
            asap,
            enrp,
            pe_ip,
            attacker: ip(50),
            attacker2: ip(51),
        };
        s.procs
            .wait_until(SOON, "the PE is registered and owned", |p| {
                let st = p.procs[reg].status();
                st.contains(" pes=1 ") && st.contains(" owned=0x00000001:1 ")
            });
        s.assert_pe_resolvable("before any attack");
        s
    }

    fn status(&self) -> String {
        self.procs.procs[self.reg].status()
    }

    /// The registrar's resident memory in KiB (from /proc).
    fn registrar_rss_kib(&self) -> u64 {
        let pid = self.procs.procs[self.reg].child.id();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    fn refused(&self) -> u64 {
        number(&self.status(), "refused").expect("refused= in the status line")
    }

    /// Waits until `refused=` reached at least `at_least`.
    fn wait_refused(&self, at_least: u64, what: &str) -> u64 {
        let reg = self.reg;
        self.procs.wait_until(
            SOON,
            &format!("refused= reaches {at_least} ({what})"),
            |p| number(&p.procs[reg].status(), "refused").is_some_and(|n| n >= at_least),
        );
        self.refused()
    }

    /// Waits for two fresh status lines, so that the last one shows the
    /// state after everything already processed.
    fn fresh_status(&self) -> String {
        let reg = self.reg;
        let n = self.procs.procs[reg].status_count();
        self.procs.wait_until(SOON, "two more status lines", |p| {
            p.procs[reg].status_count() >= n + 2
        });
        self.status()
    }

    /// The PE is still in the handlespace, owned by this registrar, no
    /// peer was admitted, and `rserpool pu` resolves it at its address.
    fn assert_pe_resolvable(&self, after: &str) {
        let st = self.fresh_status();
        assert!(
            st.contains(" pes=1 ") && st.contains(" owned=0x00000001:1 "),
            "{after}: the PE is gone or changed hands: {st}"
        );
        assert_eq!(field(&st, "peers"), Some("0"), "{after}: {st}");
        assert!(st.contains(" peers=0 [] "), "{after}: {st}");
        let r = resolve(self.asap, "1s");
        assert!(
            r.is_the_pe(self.pe_ip),
            "{after}: resolution did not return PE {PE_ID_TEXT} at {}:{PE_USER_PORT} \
             (exit {}): {:?}",
            self.pe_ip,
            r.code,
            r.lines
        );
        let pe = &self.procs.procs[self.pe];
        assert!(
            !pe.stderr()
                .iter()
                .any(|l| l.contains("home lost") || l.contains("refused")),
            "{after}: the PE lost its registration: {:?}",
            pe.stderr()
        );
    }

    fn asap_endpoint(&self) -> SocketAddr {
        SocketAddr::new(self.asap, ASAP_PORT)
    }

    fn enrp_endpoint(&self) -> SocketAddr {
        SocketAddr::new(self.enrp, ENRP_PORT)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What arrived on the attacker's association.
#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug, in failure messages
enum Received {
    Message(Message),
    Undecodable { ppid: u32, len: usize },
    Down(String),
}

/// The attacker: one SCTP-over-UDP association from a neighbour's address.
struct Attacker {
    t: UdpTransport,
    assoc: AssociationId,
    down: bool,
}

impl Attacker {
    async fn connect(local: IpAddr, peer: SocketAddr) -> Self {
        let tunables = TransportConfig {
            heartbeat_interval: Duration::from_millis(200),
            dead_peer_timeout: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(3),
            ..TransportConfig::default()
        };
        let ec = EndpointConfig::client([SocketAddr::new(local, 0)]).with_transport(tunables);
        let udp = UdpConfig {
            udp_port: 0,
            ..UdpConfig::default()
        };
        let mut t = UdpTransport::bind(ec, udp).expect("bind the attacker's endpoint");
        let assoc = t.connect(&[peer]).await.expect("connect");
        let up = tokio::time::timeout(SOON, async {
            loop {
                match t.next_event().await.expect("attacker transport") {
                    Event::AssociationUp { assoc: a, .. } if a == assoc => return Ok(()),
                    Event::AssociationDown { assoc: a, reason } if a == assoc => {
                        return Err(reason.to_string());
                    }
                    _ => {}
                }
            }
        })
        .await;
        match up {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("attacker association {local} -> {peer} failed: {e}"),
            Err(_) => panic!("attacker association {local} -> {peer} not up within {SOON:?}"),
        }
        Self {
            t,
            assoc,
            down: false,
        }
    }

    async fn send_raw(&mut self, ppid: Ppid, data: Bytes) {
        self.t
            .send(self.assoc, 0, ppid, false, data)
            .await
            .expect("attacker send");
    }

    /// Sends `m` with the PPID of its protocol.
    async fn send(&mut self, m: Message) {
        let ppid = Ppid(m.ppid());
        self.send_raw(ppid, encode(&m)).await;
    }

    /// Sends an ENRP message with PPID 12, whatever endpoint this is.
    async fn send_enrp(&mut self, m: EnrpMessage) {
        self.send(Message::Enrp(m)).await;
    }

    async fn send_asap(&mut self, m: AsapMessage) {
        self.send(Message::Asap(m)).await;
    }

    /// The next thing that happens on the association within `within`.
    async fn recv(&mut self, within: Duration) -> Option<Received> {
        if self.down {
            return None;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.t.next_event())
                .await
                .ok()?
                .expect("attacker transport");
            match ev {
                Event::Message(m) if m.assoc == self.assoc => {
                    return Some(match Message::decode_ppid(m.ppid.0, &m.data) {
                        Some(Ok(d)) => Received::Message(d.message),
                        _ => Received::Undecodable {
                            ppid: m.ppid.0,
                            len: m.data.len(),
                        },
                    });
                }
                Event::AssociationDown { assoc, reason } if assoc == self.assoc => {
                    self.down = true;
                    return Some(Received::Down(reason.to_string()));
                }
                _ => {}
            }
        }
    }

    /// Everything that arrives within `within`.
    async fn listen(&mut self, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(r) => got.push(r),
                None => return got,
            }
        }
    }

    /// Waits for the first ASAP message `pick` accepts (others are
    /// collected for the failure message).
    async fn expect_asap<T>(&mut self, what: &str, pick: impl Fn(&AsapMessage) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + SOON;
        let mut other = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(Received::Message(Message::Asap(m))) => match pick(&m) {
                    Some(t) => return t,
                    None => other.push(format!("{m:?}")),
                },
                Some(r) => other.push(format!("{r:?}")),
                None => panic!("no {what} within {SOON:?}; received instead: {other:?}"),
            }
        }
    }

    /// A handle resolution and its answer: once it is answered, everything
    /// sent before it on this association (stream 0, in order) has been
    /// processed by the registrar.
    async fn barrier(&mut self) {
        self.send_asap(resolution()).await;
        self.expect_asap("HANDLE_RESOLUTION_RESPONSE (barrier)", |m| {
            matches!(m, AsapMessage::HandleResolutionResponse { .. }).then_some(())
        })
        .await;
    }
}

fn encode(m: &Message) -> Bytes {
    let mut v = Vec::new();
    m.encode(&mut v).expect("encode");
    v.into()
}

fn echo() -> PoolHandle {
    PoolHandle::try_from("echo").unwrap()
}

fn pr(id: u32) -> PrId {
    PrId::new(id).unwrap()
}

fn resolution() -> AsapMessage {
    AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: echo(),
        items: None,
    }
}

/// PE 0x101 as the attacker would like it: reachable at the attacker's
/// own address.
fn hijacked_pe(attacker: IpAddr, home: Option<PrId>) -> PoolElement {
    PoolElement {
        id: PeId(PE_ID),
        home_registrar: home,
        registration_life: RegistrationLife(60_000),
        user_transport: UserTransport::Address(TransportAddress::sctp(
            6666,
            TransportUse::DataOnly,
            vec![attacker],
        )),
        policy: Policy::RoundRobin,
        asap_transport: Some(TransportAddress::sctp(
            ASAP_PORT,
            TransportUse::DataOnly,
            vec![attacker],
        )),
    }
}

fn has_security_cause(error: &Option<Vec<ErrorCause>>) -> bool {
    error
        .iter()
        .flatten()
        .any(|c| c.code == CauseCode::RejectedSecurity && c.code.code() == 10)
}

/// Fails if anything at all came back.
fn assert_unanswered(what: &str, got: &[Received]) {
    let answers: Vec<&Received> = got
        .iter()
        .filter(|r| !matches!(r, Received::Down(_)))
        .collect();
    assert!(answers.is_empty(), "{what} was answered: {answers:?}");
}

/// Spoofed deregistration, re-registration (redirect) and keep-alive ACK
/// of PE 0x101, and a burst of ENDPOINT_UNREACHABLE for it, all from a
/// neighbour's association to the ASAP endpoint.
#[test]
fn asap_attacks_do_not_disturb_the_pe() {
    let started = Instant::now();
    let s = Setup::start(0, "--max-pes-per-association 5");
    let rt = runtime();
    let attacker = s.attacker;
    let mut a = rt.block_on(Attacker::connect(attacker, s.asap_endpoint()));

    // 1. Spoofed ASAP_DEREGISTRATION.
    let before = s.refused();
    let (pe, error) = rt.block_on(async {
        a.send_asap(AsapMessage::Deregistration {
            pool_handle: echo(),
            pe_id: PeId(PE_ID),
        })
        .await;
        a.expect_asap("DEREGISTRATION_RESPONSE", |m| match m {
            AsapMessage::DeregistrationResponse { pe_id, error, .. } => {
                Some((*pe_id, error.clone()))
            }
            _ => None,
        })
        .await
    });
    assert_eq!(pe, PeId(PE_ID));
    assert!(
        has_security_cause(&error),
        "spoofed deregistration not refused with cause 10: {error:?}"
    );
    s.wait_refused(before + 1, "spoofed deregistration");
    s.assert_pe_resolvable("spoofed deregistration");

    // 2. Spoofed ASAP_REGISTRATION of PE 0x101 pointing at the attacker.
    let before = s.refused();
    let (rejected, pe, error) = rt.block_on(async {
        a.send_asap(AsapMessage::Registration {
            pool_handle: echo(),
            pool_element: hijacked_pe(attacker, None),
        })
        .await;
        a.expect_asap("REGISTRATION_RESPONSE", |m| match m {
            AsapMessage::RegistrationResponse {
                rejected,
                pe_id,
                error,
                ..
            } => Some((*rejected, *pe_id, error.clone())),
            _ => None,
        })
        .await
    });
    assert_eq!(pe, PeId(PE_ID));
    assert!(rejected, "the redirecting registration was accepted");
    assert!(
        has_security_cause(&error),
        "redirecting registration not refused with cause 10: {error:?}"
    );
    s.wait_refused(before + 1, "spoofed registration");
    s.assert_pe_resolvable("spoofed registration (redirect)");

    // 2b. Spoofed ENDPOINT_KEEP_ALIVE_ACK (would keep a dead PE alive):
    // refused and counted, not answered.
    let before = s.refused();
    let got = rt.block_on(async {
        a.send_asap(AsapMessage::EndpointKeepAliveAck {
            pool_handle: echo(),
            pe_id: PeId(PE_ID),
        })
        .await;
        a.listen(SILENCE).await
    });
    assert_unanswered("spoofed ENDPOINT_KEEP_ALIVE_ACK", &got);
    s.wait_refused(before + 1, "spoofed keep-alive ack");

    // 5. A burst of 50 ENDPOINT_UNREACHABLE from one association: counts as
    // one report (a probe, which the PE answers); beyond 20 (the burst of
    // 10/s) they are refused and counted.
    let before = s.refused();
    let elapsed = rt.block_on(async {
        let t0 = Instant::now();
        for _ in 0..50 {
            a.send_asap(AsapMessage::EndpointUnreachable {
                pool_handle: echo(),
                pe_id: PeId(PE_ID),
            })
            .await;
        }
        a.barrier().await;
        t0.elapsed()
    });
    // At most the burst and what refilled while the reports were processed
    // (all of it happened between t0 and the barrier's answer).
    let accepted_max = 20 + (10.0 * elapsed.as_secs_f64()).ceil() as u64;
    let refused_min = 50u64.saturating_sub(accepted_max);
    eprintln!(
        "50 ENDPOINT_UNREACHABLE processed within {elapsed:?}: at least {refused_min} refused"
    );
    if refused_min > 0 {
        s.wait_refused(before + refused_min, "ENDPOINT_UNREACHABLE rate limit");
    }
    // Longer than the keep-alive timeout (1 s) after the probe: the PE has
    // answered it, or it would be gone.
    thread::sleep(Duration::from_millis(1500));
    s.assert_pe_resolvable("50 ENDPOINT_UNREACHABLE");
    let refused_total = s.refused() - before;
    eprintln!("ENDPOINT_UNREACHABLE refused: {refused_total}");
    assert!(
        !s.procs.procs[s.reg]
            .stderr()
            .iter()
            .any(|l| l.contains("0x00000101") && l.to_lowercase().contains("remov")),
        "the registrar removed the PE"
    );

    // The attacker's association survived all of it (refusals are not
    // answered with an abort), and it still gets resolutions.
    rt.block_on(a.barrier());

    // Filling the handlespace from one association: beyond
    // --max-pes-per-association (5) registrations get Lack of Resources
    // (cause 6) and are counted. Another pool, so that `echo` stays the
    // legitimate PE's alone.
    let before = s.refused();
    let junk = PoolHandle::try_from("junk").unwrap();
    let answers = rt.block_on(async {
        let mut answers = Vec::new();
        for k in 0..6u32 {
            let mut pe = hijacked_pe(attacker, None);
            pe.id = PeId(0x200 + k);
            a.send_asap(AsapMessage::Registration {
                pool_handle: junk.clone(),
                pool_element: pe,
            })
            .await;
            answers.push(
                a.expect_asap("REGISTRATION_RESPONSE", |m| match m {
                    AsapMessage::RegistrationResponse {
                        rejected,
                        pe_id,
                        error,
                        ..
                    } => Some((*pe_id, *rejected, error.clone())),
                    _ => None,
                })
                .await,
            );
        }
        // The attacker may remove its own PEs.
        for k in 0..5u32 {
            a.send_asap(AsapMessage::Deregistration {
                pool_handle: junk.clone(),
                pe_id: PeId(0x200 + k),
            })
            .await;
            let error = a
                .expect_asap("DEREGISTRATION_RESPONSE", |m| match m {
                    AsapMessage::DeregistrationResponse { pe_id, error, .. }
                        if *pe_id == PeId(0x200 + k) =>
                    {
                        Some(error.clone())
                    }
                    _ => None,
                })
                .await;
            assert_eq!(error, None, "own PE {:#x} not deregistered", 0x200 + k);
        }
        answers
    });
    for (k, (pe, rejected, error)) in answers.iter().enumerate() {
        assert_eq!(*pe, PeId(0x200 + k as u32));
        if k < 5 {
            assert!(
                !rejected,
                "registration {k} of 5 allowed rejected: {error:?}"
            );
        } else {
            assert!(
                rejected,
                "registration beyond the association's limit accepted"
            );
            assert!(
                error
                    .iter()
                    .flatten()
                    .any(|c| c.code == CauseCode::LackOfResources),
                "{error:?}"
            );
        }
    }
    s.wait_refused(before + 1, "registration beyond the association's limit");
    s.assert_pe_resolvable("registrations beyond the association's limit");
    eprintln!("ASAP attacks test took {:?}", started.elapsed());
}

/// ENRP from a neighbour that is no configured peer, both to the ENRP
/// endpoint (refused and counted) and to the ASAP endpoint (dropped).
#[test]
fn enrp_from_strangers_is_refused() {
    let started = Instant::now();
    let s = Setup::start(1, "");
    let rt = runtime();
    let attacker = s.attacker;
    let me = pr(REGISTRAR_ID);
    let stranger = pr(0x0BAD_0001);
    let servers = |to: Option<PrId>| Servers {
        sender: stranger,
        receiver: to,
    };
    let presence = |sender: PrId, ip: IpAddr| EnrpMessage::Presence {
        servers: Servers {
            sender,
            receiver: None,
        },
        reply_required: true,
        checksum: Some(0),
        server_info: Some(rserpool_wire::ServerInformation {
            server_id: sender,
            transport: TransportAddress::sctp(ENRP_PORT, TransportUse::DataOnly, vec![ip]),
        }),
    };
    let attack = vec![
        presence(stranger, attacker),
        EnrpMessage::HandleUpdate {
            servers: servers(Some(me)),
            takeover_suggested: false,
            action: UpdateAction::AddPe,
            pool_handle: echo(),
            pool_element: hijacked_pe(attacker, Some(stranger)),
        },
        EnrpMessage::HandleUpdate {
            servers: servers(Some(me)),
            takeover_suggested: false,
            action: UpdateAction::DelPe,
            pool_handle: echo(),
            pool_element: hijacked_pe(attacker, Some(me)),
        },
        EnrpMessage::HandleTableRequest {
            servers: servers(Some(me)),
            own_children_only: false,
        },
        EnrpMessage::ListRequest {
            servers: servers(Some(me)),
        },
        EnrpMessage::InitTakeover {
            servers: servers(None),
            target: me,
        },
        EnrpMessage::TakeoverServer {
            servers: servers(None),
            target: me,
        },
        // A takeover suggestion: "take PE 0x101 over" (H=1 keep-alive bait).
        EnrpMessage::HandleUpdate {
            servers: servers(Some(me)),
            takeover_suggested: true,
            action: UpdateAction::AddPe,
            pool_handle: echo(),
            pool_element: hijacked_pe(attacker, Some(stranger)),
        },
    ];
    let sent = attack.len() as u64;

    // 3. Stranger ENRP to the ENRP endpoint: refused, counted, unanswered.
    let before = s.refused();
    let mut e = rt.block_on(Attacker::connect(attacker, s.enrp_endpoint()));
    let got = rt.block_on(async {
        for m in attack.clone() {
            e.send_enrp(m).await;
        }
        e.listen(SILENCE).await
    });
    assert_unanswered("stranger ENRP on the ENRP endpoint", &got);
    s.wait_refused(before + sent, "stranger ENRP on the ENRP endpoint");
    s.assert_pe_resolvable("stranger ENRP on the ENRP endpoint");
    eprintln!("stranger ENRP: refused {} -> {}", before, s.refused());

    // 7. 20 ENRP_PRESENCEs with distinct server IDs from the attacker's
    // addresses (a fresh association from each): the peer table stays empty.
    let before = s.refused();
    let got = rt.block_on(async {
        let mut e2 = Attacker::connect(s.attacker2, s.enrp_endpoint()).await;
        let mut got = Vec::new();
        for k in 0..20u32 {
            let (att, ip) = if k % 2 == 0 {
                (&mut e, attacker)
            } else {
                (&mut e2, s.attacker2)
            };
            att.send_enrp(presence(pr(0x0BAD_1000 + k), ip)).await;
        }
        got.extend(e.listen(SILENCE).await);
        got.extend(e2.listen(Duration::from_millis(100)).await);
        got
    });
    assert_unanswered("20 ENRP_PRESENCEs", &got);
    s.wait_refused(before + 20, "20 ENRP_PRESENCEs");
    s.assert_pe_resolvable("20 ENRP_PRESENCEs");

    // 7b. A peer-table exhaustion attempt: 2,000 PRESENCEs with fresh server
    // IDs. The bound that is deterministic is asserted (no peer, every one
    // refused); memory is reported.
    let before = s.refused();
    let rss_before = s.registrar_rss_kib();
    rt.block_on(async {
        for k in 0..2_000u32 {
            e.send_enrp(presence(pr(0x0BAD_4000 + k), attacker)).await;
        }
    });
    s.wait_refused(before + 2_000, "2,000 ENRP_PRESENCEs");
    assert!(s.status().contains("peers=0 []"), "{}", s.status());
    eprintln!(
        "2,000 presences: registrar RSS {rss_before} KiB before, {} KiB after",
        s.registrar_rss_kib()
    );
    s.assert_pe_resolvable("2,000 ENRP_PRESENCEs");

    // 4. ENRP (PPID 12) on the ASAP endpoint: dropped before the trust
    // model sees it (the ASAP endpoint speaks ASAP only: not even counted as
    // refused), and not answered.
    let before = s.refused();
    let mut asap = rt.block_on(Attacker::connect(attacker, s.asap_endpoint()));
    let got = rt.block_on(async {
        for m in attack {
            asap.send_enrp(m).await;
        }
        // And once more with a fresh sender ID.
        asap.send_enrp(presence(pr(0x0BAD_2000), attacker)).await;
        // Processed in order: once this is answered, the ENRP was handled.
        asap.barrier().await;
        asap.listen(SILENCE).await
    });
    assert_unanswered("ENRP on the ASAP endpoint", &got);
    s.assert_pe_resolvable("ENRP on the ASAP endpoint");
    assert_eq!(
        s.refused(),
        before,
        "ENRP on the ASAP endpoint reached the ENRP handling (counted as refused)"
    );

    let st = s.fresh_status();
    assert!(
        st.contains(" peers=0 [] ") && st.contains(" owned=0x00000001:1 "),
        "{st}"
    );
    let reg_log = s.procs.procs[s.reg].stderr();
    assert!(
        !reg_log
            .iter()
            .any(|l| l.to_lowercase().contains("0x0bad")
                || (l.contains("peer ") && l.ends_with(" up"))),
        "a stranger got into the peer table: {reg_log:?}"
    );
    eprintln!("ENRP attacks test took {:?}", started.elapsed());
}

/// 10,000 handle resolutions as fast as possible on one association to a
/// registrar limited to 100/s (burst 200): only what the bucket allows is
/// answered, the rest is counted as refused, and a legitimate pool user
/// resolving at the same time is served.
#[test]
fn resolution_flood_is_rate_limited() {
    const FLOOD: u64 = 10_000;
    const RATE: f64 = 100.0;
    const BURST: f64 = 2.0 * RATE;
    let started = Instant::now();
    let s = Setup::start(2, &format!("--resolution-rate {RATE}"));
    let rt = runtime();
    let mut a = rt.block_on(Attacker::connect(s.attacker, s.asap_endpoint()));
    let before = s.refused();
    let rss_before = s.registrar_rss_kib();

    // The legitimate pool user resolves over and over, back to back, from
    // before the flood until after it (start, end, outcome of each run).
    let flooding = Arc::new(AtomicBool::new(true));
    let pu = {
        let flooding = flooding.clone();
        let asap = s.asap;
        thread::spawn(move || {
            let mut runs = Vec::new();
            loop {
                let go_on = flooding.load(Ordering::SeqCst);
                let start = Instant::now();
                let r = resolve(asap, "3s");
                runs.push((start, Instant::now(), r));
                if !go_on {
                    return runs;
                }
            }
        })
    };
    // Give the first `rserpool pu` a head start so that it is resolving
    // while the flood arrives.
    thread::sleep(Duration::from_millis(50));

    let (t0, answered, elapsed, other) = rt.block_on(async {
        let data = encode(&Message::Asap(resolution()));
        let mut answered = 0u64;
        let mut other = Vec::new();
        let mut last_answer = None;
        let mut count = |r: Option<Received>, answered: &mut u64| match r {
            Some(Received::Message(Message::Asap(AsapMessage::HandleResolutionResponse {
                ..
            }))) => {
                *answered += 1;
                last_answer = Some(Instant::now());
            }
            Some(r) => other.push(format!("{r:?}")),
            None => {}
        };
        let t0 = Instant::now();
        for _ in 0..FLOOD {
            a.send_raw(Ppid::ASAP, data.clone()).await;
            // Take whatever already arrived, without waiting.
            loop {
                let r = tokio::select! {
                    biased;
                    r = a.recv(Duration::from_secs(3600)) => r,
                    () = std::future::ready(()) => break,
                };
                count(r, &mut answered);
            }
        }
        let sent_in = t0.elapsed();
        let rss_during = s.registrar_rss_kib();
        // The rest: until nothing more comes for a second.
        while let Some(r) = a.recv(Duration::from_secs(1)).await {
            count(Some(r), &mut answered);
            if t0.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        eprintln!(
            "flood of {FLOOD} resolutions sent in {sent_in:?}; registrar RSS {rss_before} KiB \
             before, {rss_during} KiB at the end of sending, {} KiB after",
            s.registrar_rss_kib()
        );
        let last = last_answer.map_or(Duration::ZERO, |t| t.duration_since(t0));
        (t0, answered, last, other)
    });
    flooding.store(false, Ordering::SeqCst);
    // Everything the registrar answered was answered within `elapsed` of
    // the first request: the burst plus the refill over that time.
    let bound = BURST + RATE * elapsed.as_secs_f64();
    let bound = (bound * 1.1).ceil() as u64 + 10;
    eprintln!(
        "flood: {answered} of {FLOOD} answered, last answer after {elapsed:?} (bound {bound})"
    );
    assert!(
        other.is_empty(),
        "unexpected answers to the flood: {other:?}"
    );
    assert!(answered > 0, "not even the burst was answered");
    assert!(
        answered <= bound,
        "{answered} resolutions answered within {elapsed:?}: more than the rate limit allows \
         ({bound})"
    );
    assert!(answered < FLOOD / 2, "the flood was not limited");
    // Every resolution was either answered or refused (and counted).
    s.wait_refused(before + (FLOOD - answered), "the flood's refusals");
    eprintln!("flood: refused {} -> {}", before, s.refused());

    let runs = pu.join().expect("pool user thread");
    // Runs that were resolving while the registrar was answering the flood.
    let flood_end = t0 + elapsed;
    let overlapping = runs
        .iter()
        .filter(|(start, end, _)| *start <= flood_end && *end >= t0)
        .count();
    eprintln!(
        "pool user: {} resolution runs, {overlapping} of them during the flood",
        runs.len()
    );
    for (start, _, r) in &runs {
        assert!(
            r.is_the_pe(s.pe_ip),
            "pool user started {:?} after the flood began failed: exit {} {:?}",
            start.saturating_duration_since(t0),
            r.code,
            r.lines
        );
    }
    assert!(overlapping > 0, "no pool user run overlapped the flood");
    s.assert_pe_resolvable("resolution flood");
    eprintln!("flood test took {:?}", started.elapsed());
}

/// ENDPOINT_UNREACHABLE for the PE from one more association than
/// --max-bad-pe-reports (default 3), all opened by one attacker from one
/// address: one reporter, which should at most make the registrar probe the
/// PE (which answers). (Before reporters were counted per host, the fourth
/// report removed the PE at once.)
#[test]
fn unreachable_reports_over_several_associations_of_one_host() {
    let s = Setup::start(3, "");
    let rt = runtime();
    rt.block_on(async {
        let mut reporters = Vec::new();
        for _ in 0..4 {
            reporters.push(Attacker::connect(s.attacker, s.asap_endpoint()).await);
        }
        for a in &mut reporters {
            a.send_asap(AsapMessage::EndpointUnreachable {
                pool_handle: echo(),
                pe_id: PeId(PE_ID),
            })
            .await;
        }
        for a in &mut reporters {
            a.barrier().await;
        }
    });
    // Longer than the keep-alive timeout (1 s): the PE answered the probe.
    thread::sleep(Duration::from_millis(1500));
    s.assert_pe_resolvable("ENDPOINT_UNREACHABLE from 4 associations of one host");
}

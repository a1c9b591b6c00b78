//! `rserpool demo`: a whole scope in one process on loopback, narrated.
//!
//! Three registrars replicate one pool of echo PEs; a pool user's session
//! sends a line every 250 ms. Then one registrar crashes (its PEs are taken
//! over by the others), the PE serving the session is killed (the session
//! fails over and no line is lost), and the crashed registrar comes back:
//! with the Takeover Suggestion the others hand it PEs until ownership is
//! balanced again, which ends the demo with exit status 0.
//!
//! Every second one line shows what each registrar owns and how the
//! session fares; the output is plain lines, the same on a terminal and in
//! a pipe.

use crate::node::duration::Dur;
use crate::node::{block_on, config_error};
use crate::service::Service;
use rserpool::node::Node;
use rserpool::pe::PoolElement;
use rserpool::pu::{Session, SessionEvent};
use rserpool::transport::bind;
use rserpool::{Backend, SendOptions, TransportOptions};
use rserpool_core::Instant;
use rserpool_core::registrar::{BalancePolicy, BalancedConfig, Registrar, RegistrarConfig};
use rserpool_net::runtime::Endpoints;
use rserpool_net::transport::select::BackendKind;
use rserpool_net::transport::udp::UdpConfig;
use rserpool_net::transport::{EndpointConfig, TransportConfig};
use rserpool_wire::{PeId, PrId};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::oneshot;

/// Flags of `rserpool demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The loopback /24 the nodes use (each gets its own address in it).
    #[arg(long, value_name = "A.B.C", default_value = "127.42.0")]
    net: String,
    /// Pool elements in the pool.
    #[arg(long, value_name = "N", default_value_t = 9)]
    pes: u8,
    /// Give up (exit 1) if the scope is not balanced again by then.
    #[arg(long, value_name = "DUR", default_value = "60s")]
    timeout: Dur,
}

/// Text after the flag list of `rserpool demo --help`.
pub const AFTER_HELP: &str = "\
Runs over SCTP over UDP on loopback addresses A.B.C.1 to A.B.C.(30+N), UDP \
port 9899. Exit status: 0 when ownership is balanced again after the \
crashed registrar came back, 1 if that did not happen within --timeout or \
the session lost a line, 2 if the addresses cannot be bound.";

const REGISTRARS: u8 = 3;

fn fast() -> TransportConfig {
    TransportConfig {
        heartbeat_interval: Duration::from_millis(200),
        dead_peer_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(1),
        ..TransportConfig::default()
    }
}

struct Scope {
    net: [u8; 3],
}

impl Scope {
    fn addr(&self, host: u8, port: u16) -> SocketAddr {
        let [a, b, c] = self.net;
        SocketAddr::new(Ipv4Addr::new(a, b, c, host).into(), port)
    }

    /// Registrar `i` (0-based): ASAP at .(1+2i), ENRP at .(2+2i).
    fn asap(&self, i: u8) -> SocketAddr {
        self.addr(1 + 2 * i, 3863)
    }

    fn enrp(&self, i: u8) -> SocketAddr {
        self.addr(2 + 2 * i, 9901)
    }

    fn registrar_config(&self, i: u8) -> RegistrarConfig {
        RegistrarConfig {
            id: PrId::new(u32::from(i) + 1),
            asap_addresses: vec![self.asap(i)],
            enrp_addresses: vec![self.enrp(i)],
            peers: (0..REGISTRARS)
                .filter(|&j| j != i)
                .map(|j| vec![self.enrp(j)])
                .collect(),
            announce: false,
            mentor_discovery_timeout: Duration::from_secs(1),
            keep_alive_interval: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(1),
            peer_heartbeat_cycle: Duration::from_millis(500),
            max_time_last_heard: Duration::from_secs(1),
            max_time_no_response: Duration::from_millis(500),
            balance: BalancePolicy::Balanced(BalancedConfig {
                tolerance: 0.1,
                ..BalancedConfig::default()
            }),
            move_grace: Duration::from_secs(2),
            // Damping against flapping registrars, shortened so that the
            // demo fits in a minute (the defaults wait 10 s to 10 min).
            peer_settle_time: Duration::from_secs(1),
            peer_settle_time_max: Duration::from_secs(2),
            peer_stable_time: Duration::from_secs(5),
            move_cooldown: Duration::from_secs(5),
            ..RegistrarConfig::default()
        }
    }

    fn start_registrar(&self, i: u8) -> Result<Node<Registrar>, String> {
        let udp = UdpConfig::default();
        let ep = |addr| {
            bind(
                BackendKind::Udp,
                EndpointConfig::server([addr]).with_transport(fast()),
                &udp,
            )
            .map_err(|e| format!("cannot bind {addr}: {e}"))
        };
        let machine = Registrar::new(self.registrar_config(i), u64::from(i), Instant::ZERO)
            .map_err(|e| e.to_string())?;
        let endpoints = Endpoints {
            asap: ep(self.asap(i))?,
            enrp: Some(ep(self.enrp(i))?),
        };
        Ok(Node::spawn(machine, endpoints, None).0)
    }

    fn transport(&self) -> TransportOptions {
        TransportOptions {
            backend: Backend::Udp,
            tunables: fast(),
            udp: None,
        }
    }

    /// Echo PE `k` at .(31+k), trying registrar k mod 3 first; sending on
    /// the returned channel kills it.
    async fn start_pe(&self, k: u8) -> Result<(PeId, oneshot::Sender<()>), String> {
        let mut b = PoolElement::builder("echo")
            .map_err(|e| e.to_string())?
            .local(self.addr(31 + k, 0))
            .transport(self.transport())
            .pe_id(PeId(0x100 + u32::from(k)))
            // Suggestions ride on the HANDLE_UPDATE of a (re-)registration:
            // a short life (re-registration every 3 s) keeps the demo short.
            .configure(|c| c.registration_life = Some(Duration::from_secs(6)));
        for j in 0..REGISTRARS {
            b = b.registrar(self.asap((k + j) % REGISTRARS));
        }
        let mut pe = b.join().await.map_err(|e| e.to_string())?;
        let id = pe.pe_id();
        let (kill, mut killed) = oneshot::channel();
        let signer = std::sync::Arc::new(rserpool::CookieSigner::new(b"rserpool demo"));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    s = pe.accept() => {
                        let Some(s) = s else { return };
                        tokio::spawn(crate::service::serve(Service::Echo, s, signer.clone()));
                    }
                    _ = &mut killed => {
                        pe.abort();
                        return;
                    }
                }
            }
        });
        Ok((id, kill))
    }
}

/// What each registrar owns, by its own count (`None`: down).
async fn ownership(registrars: &[Option<Node<Registrar>>]) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    for r in registrars {
        out.push(match r {
            Some(n) => n.call(|r, _| r.owned_count(r.id())).await,
            None => None,
        });
    }
    out
}

fn bars(owned: &[Option<usize>]) -> String {
    owned
        .iter()
        .enumerate()
        .map(|(i, o)| match o {
            Some(n) => format!("PR{} {:<10} {n:>2}", i + 1, "#".repeat(*n)),
            None => format!("PR{} {:<10} --", i + 1, "(down)"),
        })
        .collect::<Vec<_>>()
        .join("  ")
}

fn balanced(owned: &[Option<usize>], pes: usize) -> bool {
    let counts: Vec<usize> = owned.iter().map(|o| o.unwrap_or(0)).collect();
    let (min, max) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    owned.iter().all(Option::is_some) && counts.iter().sum::<usize>() == pes && max - min <= 1
}

/// Runs the demo; see [`AFTER_HELP`].
pub fn run(args: Args) -> ExitCode {
    let parts: Vec<u8> = args.net.split('.').filter_map(|p| p.parse().ok()).collect();
    let [a, b, c] = parts[..] else {
        return config_error(format!("--net {} is not of the form A.B.C", args.net));
    };
    if a != 127 {
        return config_error("--net must be a loopback /24 (127.x.y)");
    }
    if args.pes == 0 || args.pes > 200 {
        return config_error("--pes must be within 1..=200");
    }
    block_on(demo(Scope { net: [a, b, c] }, args.pes, args.timeout.0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Starting,
    Balanced,
    RegistrarDown,
    PeKilled,
    RegistrarBack,
}

async fn demo(scope: Scope, n: u8, timeout: Duration) -> ExitCode {
    let started = tokio::time::Instant::now();
    let say = |what: &str| println!("{:>5.1}s  {what}", started.elapsed().as_secs_f64());
    let mut registrars = Vec::new();
    for i in 0..REGISTRARS {
        match scope.start_registrar(i) {
            Ok(r) => registrars.push(Some(r)),
            Err(e) => return config_error(e),
        }
    }
    say("3 registrars started, peered over ENRP; Takeover Suggestion on (balanced)");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut pes = Vec::new();
    for k in 0..n {
        match scope.start_pe(k).await {
            Ok(pe) => pes.push(Some(pe)),
            Err(e) => return config_error(e),
        }
    }
    say(&format!(
        "{n} echo PEs joined pool `echo`, PE k registering at registrar k mod 3"
    ));
    let mut session = match Session::builder("echo")
        .map_err(|e| e.to_string())
        .map(|b| {
            b.registrar(scope.asap(0))
                .registrar(scope.asap(1))
                .local(scope.addr(30, 0))
                .transport(scope.transport())
        }) {
        Ok(b) => match b.connect().await {
            Ok(s) => s,
            Err(e) => return config_error(e),
        },
        Err(e) => return config_error(e),
    };
    let resend = SendOptions {
        resend: true,
        ..SendOptions::default()
    };
    let mut sent: Vec<(u64, String)> = Vec::new();
    let mut echoed = 0u64;
    let mut wrong = 0u64;
    let mut failovers = 0u32;
    let mut stage = Stage::Starting;
    let mut stage_at = tokio::time::Instant::now();
    let mut next_line = tokio::time::interval(Duration::from_millis(250));
    let mut next_view = tokio::time::interval(Duration::from_secs(1));
    let deadline = started + timeout;
    loop {
        tokio::select! {
            _ = next_line.tick() => {
                let text = format!("line {}", sent.len() + 1);
                match session.send_with(0, text.clone(), resend).await {
                    Ok(seq) => sent.push((seq, text)),
                    Err(e) => {
                        say(&format!("the session failed: {e}"));
                        return ExitCode::FAILURE;
                    }
                }
            }
            event = session.next() => match event {
                Some(SessionEvent::Data { data, .. }) => {
                    let want = sent.get(echoed as usize);
                    if want.is_some_and(|(_, t)| t.as_bytes() == &data[..]) {
                        if let Some((seq, _)) = want {
                            let _ = session.release(*seq).await;
                        }
                        echoed += 1;
                    } else {
                        wrong += 1;
                    }
                }
                Some(SessionEvent::Connected { pe_id, cookie_echoed }) => {
                    say(&format!("session connected to PE {pe_id}{}", if cookie_echoed { " (cookie echoed)" } else { "" }));
                }
                Some(SessionEvent::Failover { from, to, reason, .. }) => {
                    failovers += 1;
                    say(&format!("failover: PE {from} -> PE {to} ({reason}); unanswered lines go again"));
                }
                Some(SessionEvent::Unavailable { reason, .. }) => {
                    say(&format!("no PE available ({reason:?}); the session keeps trying"));
                }
                None => {
                    say("the session stopped");
                    return ExitCode::FAILURE;
                }
            },
            _ = next_view.tick() => {
                let owned = ownership(&registrars).await;
                let serving = session.pe().map_or_else(|| "-".to_string(), |p| p.to_string());
                say(&format!(
                    "{}  | session: {echoed}/{} lines echoed, PE {serving}, {failovers} failover(s)",
                    bars(&owned),
                    sent.len()
                ));
                let now = tokio::time::Instant::now();
                let since = now - stage_at;
                match stage {
                    Stage::Starting if balanced(&owned, n.into()) && echoed > 0 => {
                        stage = Stage::Balanced;
                        stage_at = now;
                        say("balanced: every registrar owns its share");
                    }
                    Stage::Balanced if since >= Duration::from_secs(2) => {
                        if let Some(r) = registrars[2].take() {
                            r.abort();
                        }
                        stage = Stage::RegistrarDown;
                        stage_at = now;
                        say("registrar 3 crashes: its PEs lose their home; the others take them over");
                    }
                    Stage::RegistrarDown
                        if since >= Duration::from_secs(3)
                            && owned.iter().flatten().sum::<usize>() == usize::from(n) =>
                    {
                        let serving = session.pe();
                        if let Some(i) = pes.iter().position(|p| p.as_ref().is_some_and(|(id, _)| Some(*id) == serving)) {
                            if let Some((id, kill)) = pes[i].take() {
                                let _ = kill.send(());
                                say(&format!("PE {id}, which serves the session, is killed"));
                            }
                        }
                        stage = Stage::PeKilled;
                        stage_at = now;
                    }
                    Stage::PeKilled if failovers > 0 && since >= Duration::from_secs(2) => {
                        match scope.start_registrar(2) {
                            Ok(r) => registrars[2] = Some(r),
                            Err(e) => {
                                say(&format!("registrar 3 cannot come back: {e}"));
                                return ExitCode::FAILURE;
                            }
                        }
                        stage = Stage::RegistrarBack;
                        stage_at = now;
                        say("registrar 3 is back, owning nothing: the others suggest PEs to it (T flag)");
                    }
                    Stage::RegistrarBack if balanced(&owned, usize::from(n) - 1) => {
                        let lost = sent.len() as u64 - echoed;
                        say(&format!(
                            "balanced again; the session echoed {echoed} of {} lines in order \
                             ({lost} in flight), {wrong} out of order, across {failovers} failover(s)",
                            sent.len()
                        ));
                        session.close().await;
                        return if wrong == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE };
                    }
                    _ => {}
                }
                if now >= deadline {
                    say(&format!("not balanced again within {} s; giving up", timeout.as_secs()));
                    return ExitCode::FAILURE;
                }
            }
        }
    }
}

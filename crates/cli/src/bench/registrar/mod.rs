//! `rserpool bench registrar`: a load generator for a running registrar.
//!
//! It opens `--assocs` associations to the registrar's ASAP endpoint (one
//! endpoint each, on the `pe`/`pu` transport: kernel SCTP or SCTP over
//! UDP), registers `--pes` pool elements over them in `--pools` pools at a
//! limited rate, answers every keep-alive, re-registers before the
//! registration life runs out, resolves the pools from `--pu-assocs`
//! associations of its own, and after `--duration` deregisters everything
//! and prints what it achieved. It speaks ASAP itself (with the wire
//! crate) instead of running a `PoolElement` machine per PE, so that a
//! million PEs cost a few dozen bytes each.

mod pe_assoc;
mod pu_assoc;
mod report;
mod stats;

use super::procfs;
use crate::node::addr::EndpointSpec;
use crate::node::duration::Dur;
use crate::node::transport::{self, TransportArgs};
use crate::node::{config_error, policy, shutdown_signal};
use crate::registrar::ASAP_PORT;
use pe_assoc::{PeAssoc, PeRun};
use pu_assoc::PuRun;
use rserpool_net::transport::select::{AnyTransport, BackendKind};
use rserpool_net::transport::{
    AssociationId, CloseMode, EndpointConfig, Event, Ppid, Transport, TransportConfig,
    TransportError,
};
use rserpool_wire::{AsapMessage, Policy, PoolHandle, RegistrationLife};
use stats::{Live, Stats};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Flags of `rserpool bench registrar`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registrar's ASAP endpoint: IP or IP:PORT (port default 3863),
    /// comma-separated for a multi-homed one.
    #[arg(long, value_name = "ADDR")]
    registrar: EndpointSpec,
    /// Associations that register pool elements (one local endpoint each).
    #[arg(long, value_name = "N", default_value_t = 4)]
    assocs: u64,
    /// Pool elements to register, spread evenly over the associations.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pes: u64,
    /// Pools the PEs are spread over, named PREFIX-0, PREFIX-1, ...
    #[arg(long, value_name = "N", default_value_t = 10)]
    pools: u64,
    /// Prefix of the pool handles.
    #[arg(long, value_name = "NAME", default_value = "bench")]
    pool_prefix: String,
    /// Member selection policy of every PE: rr, wrr:W, lu:LOAD, rand, wrand:W, prio:P.
    #[arg(long, value_name = "POLICY", default_value = "rr", value_parser = policy::parse)]
    policy: Policy,
    /// First registrations per second, all associations together.
    #[arg(long, value_name = "N", default_value_t = 20_000.0)]
    register_rate: f64,
    /// Requests (registrations, re-registrations, deregistrations,
    /// resolutions) unanswered at once, all associations together.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    max_outstanding: usize,
    /// Registration Life [default: 60s, as `rserpool pe`].
    #[arg(long, value_name = "DUR")]
    registration_life: Option<Dur>,
    /// Re-registration interval [default: the RFC 5352 rule from the life,
    /// as `rserpool pe`: life - 20s, or half a life of 40s or less].
    #[arg(long, value_name = "DUR")]
    reregistration_interval: Option<Dur>,
    /// Send Registration Life in seconds (RFC 5354) instead of ms (reference implementation).
    #[arg(long)]
    life_in_seconds: bool,
    /// Handle resolutions per second, all resolving associations together
    /// (0: none).
    #[arg(long, value_name = "N", default_value_t = 1000.0)]
    resolve_rate: f64,
    /// Associations that resolve (pool-user side), apart from the PE ones.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pu_assocs: u64,
    /// PEs to ask for per resolution (Handle Resolution Option) [default: the registrar's choice].
    #[arg(long, value_name = "N")]
    items: Option<u32>,
    /// How long to run before deregistering.
    #[arg(long, value_name = "DUR", default_value = "10s")]
    duration: Dur,
    /// A request unanswered this long counts as a timeout.
    #[arg(long, value_name = "DUR", default_value = "5s")]
    request_timeout: Dur,
    /// Leave the PEs registered at the end (they expire with their life).
    #[arg(long)]
    no_deregister: bool,
    /// Local IP of the associations; repeatable, used in turn [default: for
    /// a loopback registrar 127.0.0.10, 127.0.0.11, ... one per association;
    /// else any].
    #[arg(long, value_name = "IP")]
    local: Vec<IpAddr>,
    /// PE ID of the first PE, hex or decimal; the others follow [default: random].
    #[arg(long, value_name = "ID", value_parser = parse_u32)]
    pe_id_base: Option<u32>,
    /// pid of the registrar whose CPU and memory to report [default: the
    /// one `rserpool registrar` process, if the registrar is on loopback].
    #[arg(long, value_name = "PID")]
    registrar_pid: Option<u32>,
    /// Worker threads of the generator.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Print one progress line per second to stderr.
    #[arg(long)]
    progress: bool,
    /// Print the results as one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten, next_help_heading = "Transport")]
    transport: TransportArgs,
}

/// Text after the flag list of `rserpool bench registrar --help`.
pub const AFTER_HELP: &str = "\
Example, against `rserpool registrar --addr 127.0.0.1 --enrp-addr 127.0.0.2`:

  rserpool bench registrar --registrar 127.0.0.1 --pes 10000 --pools 10 \\
      --assocs 4 --duration 30s

Each PE i (0-based) has ID BASE+i, registers over association i mod \
--assocs into pool PREFIX-k (every association carries PEs of every pool), \
and offers an SCTP user transport on its association's local IP. Every \
ENDPOINT_KEEP_ALIVE is answered with ENDPOINT_KEEP_ALIVE_ACK (for each PE \
of the pool on that association when it names no PE); with the H bit the \
PE re-registers at once. Resolutions start once every pool has a PE.

Output: a table with count, rate and latency percentiles (request to \
response) of first registrations, re-registrations, resolutions, \
keep-alive acks and deregistrations; the time it took to register every \
PE; error counts; and the registrar's CPU (user+sys as a fraction of one \
core over the run) and resident memory, read from /proc/PID. Rates count \
what happened within --duration. --json prints the same as one object.

Exit status: 0 after the run, 1 if the registrar could not be reached or \
an association was lost, 2 if the flags are invalid or an endpoint cannot \
be bound.";

fn parse_u32(s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("`{s}` is not a 32-bit number (hex 0x... or decimal)"))
}

/// The run's phase, as the association tasks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Registering, keeping alive, resolving.
    Run,
    /// Stop sending new requests, deregister, close.
    Deregister,
    /// Stop sending new requests and close.
    Stop,
}

/// What the run is made of, checked.
struct Plan {
    registrar: Vec<SocketAddr>,
    pe_run: PeRun,
    pu_run: Option<PuRun>,
    pu_assocs: u64,
    /// Local IP of endpoint k is `locals[k % len]`; unspecified means any.
    locals: Vec<IpAddr>,
    duration: Duration,
    timeout: Duration,
    deregister: bool,
    registrar_pid: Option<Result<u32, String>>,
    threads: usize,
    progress: bool,
    json: bool,
    transport: TransportArgs,
    tunables: TransportConfig,
    life: Option<Duration>,
}

fn plan(a: Args) -> Result<Plan, String> {
    let registrar = a.registrar.resolve(ASAP_PORT);
    let first = registrar[0].ip();
    if a.pes == 0 {
        return Err("--pes must be at least 1".into());
    }
    if a.pes > u64::from(u32::MAX) {
        return Err("--pes must be at most 4294967295 (one PE ID each)".into());
    }
    if a.pools == 0 || a.pools > a.pes {
        return Err(format!(
            "--pools must be within 1..={} (every pool needs a PE)",
            a.pes
        ));
    }
    if a.assocs == 0 || a.assocs > a.pes {
        return Err(format!(
            "--assocs must be within 1..={} (every association needs a PE)",
            a.pes
        ));
    }
    if !(a.register_rate.is_finite() && a.register_rate > 0.0) {
        return Err("--register-rate must be a positive number".into());
    }
    if !(a.resolve_rate.is_finite() && a.resolve_rate >= 0.0) {
        return Err("--resolve-rate must be 0 or a positive number".into());
    }
    let resolving = a.resolve_rate > 0.0;
    if resolving && a.pu_assocs == 0 {
        return Err("--pu-assocs must be at least 1 when --resolve-rate is not 0".into());
    }
    let pu_assocs = if resolving { a.pu_assocs } else { 0 };
    let endpoints = a.assocs + pu_assocs;
    if (a.max_outstanding as u64) < endpoints {
        return Err(format!(
            "--max-outstanding must be at least the number of associations ({endpoints})"
        ));
    }
    if a.duration.0.is_zero() {
        return Err("--duration must be positive".into());
    }
    if a.request_timeout.0.is_zero() {
        return Err("--request-timeout must be positive".into());
    }
    if a.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let life = a.registration_life.map_or(Duration::from_secs(60), |d| d.0);
    let wire_life = if a.life_in_seconds {
        life.as_secs() as u128
    } else {
        life.as_millis()
    };
    if wire_life == 0 || wire_life > i32::MAX as u128 {
        return Err(format!(
            "--registration-life must be within 1..={} {}",
            i32::MAX,
            if a.life_in_seconds { "s" } else { "ms" }
        ));
    }
    let reregister = match a.reregistration_interval {
        Some(d) if d.0.is_zero() => return Err("--reregistration-interval must be positive".into()),
        Some(d) => d.0,
        None if life > Duration::from_secs(40) => {
            (life - Duration::from_secs(20)).min(Duration::from_secs(600))
        }
        None => life / 2,
    };
    if reregister >= life {
        return Err(
            "--reregistration-interval must be shorter than --registration-life (RFC 5352 §3.1)"
                .into(),
        );
    }
    let mut pools = Vec::new();
    for k in 0..a.pools {
        let name = format!("{}-{k}", a.pool_prefix);
        pools.push(
            PoolHandle::try_from(name.as_str())
                .map_err(|e| format!("invalid pool handle `{name}`: {e}"))?,
        );
    }
    let pool_index: HashMap<PoolHandle, usize> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), i))
        .collect();
    let base = match a.pe_id_base {
        Some(b) => {
            if u64::from(b) + a.pes - 1 > u64::from(u32::MAX) {
                return Err("--pe-id-base + --pes exceeds the 32-bit PE ID space".into());
            }
            b
        }
        None => {
            let span = u64::from(u32::MAX) - a.pes;
            (1 + rand::random::<u64>() % span.max(1)) as u32
        }
    };
    let locals = if !a.local.is_empty() {
        if let Some(ip) = a.local.iter().find(|ip| ip.is_ipv4() != first.is_ipv4()) {
            return Err(format!(
                "--local {ip} is not of the registrar's address family"
            ));
        }
        a.local
    } else if first.is_loopback() && first.is_ipv4() {
        // 127.0.0.10 .. 127.0.0.254, then around again.
        (0..endpoints.min(245))
            .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + k as u8)))
            .collect()
    } else if first.is_ipv4() {
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
    } else {
        vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
    };
    let tunables = a.transport.tunables()?;
    let share = |total: f64, n: u64| total / n as f64;
    let outstanding_each = (a.max_outstanding as u64 / endpoints) as usize;
    let pe_run = PeRun {
        assocs: a.assocs,
        pes: a.pes,
        base,
        pools: pools.clone(),
        pool_index,
        policy: a.policy,
        life: RegistrationLife(wire_life as i32),
        reregister,
        timeout: a.request_timeout.0,
        rate: share(a.register_rate, a.assocs),
        max_outstanding: outstanding_each,
    };
    let pu_run = resolving.then(|| PuRun {
        pools,
        items: a.items,
        rate: share(a.resolve_rate, pu_assocs),
        max_outstanding: outstanding_each,
        timeout: a.request_timeout.0,
        start_after: a.pes.min(a.assocs * a.pools),
        pe_tasks: a.assocs,
        index: 0,
    });
    let registrar_pid = match a.registrar_pid {
        Some(pid) => Some(Ok(pid)),
        None if first.is_loopback() => Some(procfs::find_registrar(first)),
        None => None,
    };
    Ok(Plan {
        registrar,
        pe_run,
        pu_run,
        pu_assocs,
        locals,
        duration: a.duration.0,
        timeout: a.request_timeout.0,
        deregister: !a.no_deregister,
        registrar_pid,
        threads: a.threads,
        progress: a.progress,
        json: a.json,
        transport: a.transport,
        tunables,
        life: Some(life),
    })
}

/// Runs the load; see [`AFTER_HELP`].
pub fn run(args: Args) -> ExitCode {
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => return config_error(e),
    };
    let kind = match plan.transport.backend() {
        Ok(k) => k,
        Err(e) => return config_error(e),
    };
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(bench(plan, kind)),
        Err(e) => config_error(format!("cannot start the async runtime: {e}")),
    }
}

/// Encodes and sends one ASAP message on stream 0.
pub(crate) async fn send_asap(
    t: &mut AnyTransport,
    assoc: AssociationId,
    m: &AsapMessage,
) -> Result<(), TransportError> {
    let data = m
        .to_vec()
        .map_err(|e| TransportError::Io(format!("cannot encode {m}: {e}")))?;
    t.send(assoc, 0, Ppid::ASAP, false, data.into()).await
}

/// Sleeps until `at`, for ever without one.
pub(crate) async fn request_deadline_wake(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Shuts the association down and waits (briefly) until it is down, so
/// the registrar sees an orderly close.
pub(crate) async fn close(t: &mut AnyTransport, assoc: AssociationId) {
    if t.close(assoc, CloseMode::Graceful).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match t.next_event().await {
                Ok(Event::AssociationDown { assoc: a, .. }) if a == assoc => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
}

/// One endpoint with its association to the registrar, up.
struct Opened {
    t: AnyTransport,
    assoc: AssociationId,
    local_ip: IpAddr,
}

/// Binds endpoint `k` and starts its association; the error is a config
/// error (exit 2).
fn bind_and_connect(plan: &Plan, kind: BackendKind, k: usize) -> Result<AnyTransport, String> {
    let ip = plan.locals[k % plan.locals.len()];
    let ec = EndpointConfig::client([SocketAddr::new(ip, 0)]).with_transport(plan.tunables.clone());
    // An ephemeral UDP port: the endpoints only connect out, and may share an IP.
    transport::bind(kind, ec, &plan.transport.udp(0))
        .map_err(|e| format!("cannot bind a local endpoint on {ip}: {e}"))
}

/// Opens every association; `Err((message, exit code))`.
async fn open_all(plan: &Plan, kind: BackendKind, n: usize) -> Result<Vec<Opened>, (String, u8)> {
    let mut set = JoinSet::new();
    let limit = plan.tunables.handshake_timeout + Duration::from_secs(1);
    for k in 0..n {
        let mut t = bind_and_connect(plan, kind, k).map_err(|e| (e, crate::node::EXIT_CONFIG))?;
        let local_ip = plan.locals[k % plan.locals.len()];
        let registrar = plan.registrar.clone();
        set.spawn(async move {
            let assoc = t.connect(&registrar).await.map_err(|e| e.to_string())?;
            let up = tokio::time::timeout(limit, async {
                loop {
                    match t.next_event().await {
                        Ok(Event::AssociationUp { assoc: a, .. }) if a == assoc => return Ok(()),
                        Ok(Event::AssociationDown { assoc: a, reason }) if a == assoc => {
                            return Err(reason.to_string());
                        }
                        Ok(_) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")));
            up.map(|()| (k, Opened { t, assoc, local_ip }))
        });
    }
    let mut opened: Vec<Option<Opened>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((k, o))) => opened[k] = Some(o),
            Ok(Err(e)) => {
                return Err((
                    format!(
                        "cannot reach the registrar at {}: {e}",
                        list(&plan.registrar)
                    ),
                    1,
                ));
            }
            Err(e) => return Err((format!("association set-up failed: {e}"), 1)),
        }
    }
    Ok(opened.into_iter().flatten().collect())
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn bench(plan: Plan, kind: BackendKind) -> ExitCode {
    let pe_assocs = plan.pe_run.assocs as usize;
    let total = pe_assocs + plan.pu_assocs as usize;
    let opened = match open_all(&plan, kind, total).await {
        Ok(o) => o,
        Err((e, code)) => {
            eprintln!("error: {e}");
            return ExitCode::from(code);
        }
    };
    let registrar_pid = match &plan.registrar_pid {
        Some(Ok(pid)) => Some(*pid),
        Some(Err(why)) => {
            tracing::warn!("not reporting the registrar's CPU and memory: {why}");
            None
        }
        None => None,
    };
    let live = Arc::new(Live::default());
    let pe_run = Arc::new(plan.pe_run);
    // Resolving stops before the PEs are deregistered, so that no
    // resolution in flight finds its pool gone.
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let (pu_phase_tx, pu_phase_rx) = watch::channel(Phase::Run);
    let mut pe_tasks = JoinSet::new();
    let mut pu_tasks = JoinSet::new();
    let registrar_before = registrar_pid.and_then(procfs::sample);
    let own_before = procfs::sample(std::process::id());
    let start = Instant::now();
    for (k, o) in opened.into_iter().enumerate() {
        if k < pe_assocs {
            let me = PeAssoc {
                index: k as u64,
                user_ip: o.local_ip,
            };
            pe_tasks.spawn(pe_assoc::run(
                o.t,
                o.assoc,
                pe_run.clone(),
                me,
                live.clone(),
                phase_rx.clone(),
            ));
        } else if let Some(pu) = &plan.pu_run {
            let mut pu = pu.clone();
            pu.index = k - pe_assocs;
            pu_tasks.spawn(pu_assoc::run(
                o.t,
                o.assoc,
                pu,
                live.clone(),
                pu_phase_rx.clone(),
            ));
        }
    }
    // Run for the duration (or until a signal, or until every task ended).
    let end = start + plan.duration;
    let mut progress =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last = [0u64; 4];
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut interrupted = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            name = &mut signal => {
                tracing::warn!("{name}: ending the run early");
                interrupted = true;
                break;
            }
            _ = progress.tick(), if plan.progress => {
                let now = [
                    Live::get(&live.registered),
                    Live::get(&live.reregistered),
                    Live::get(&live.keep_alive_acks),
                    Live::get(&live.resolutions),
                ];
                let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
                eprintln!(
                    "t={:>5.1}s registered={} (+{}/s) re-registered +{}/s keep-alive acks +{}/s \
                     resolutions +{}/s outstanding={}",
                    start.elapsed().as_secs_f64(), now[0], d[0], d[1], d[2], d[3],
                    Live::get(&live.outstanding),
                );
                last = now;
            }
        }
    }
    let elapsed = start.elapsed();
    let registrar_after = registrar_pid.and_then(procfs::sample);
    let own_after = procfs::sample(std::process::id());
    // Outstanding requests get the request timeout (resolutions, then
    // registrations); deregistrations are allowed 1 ms each, plus closing.
    // A signal cuts the wind-down short.
    let wind_down = plan.timeout * 3
        + Duration::from_secs_f64(pe_run.pes as f64 / 1000.0)
        + Duration::from_secs(3);
    let mut stats = Stats {
        all_registered_at: Some(start),
        ..Stats::default()
    };
    let mut unfinished = 0;
    let collect = async {
        let _ = pu_phase_tx.send(Phase::Stop);
        while let Some(r) = pu_tasks.join_next().await {
            if let Ok(s) = r {
                stats.merge(&s, false);
            }
        }
        let _ = phase_tx.send(if plan.deregister && !interrupted {
            Phase::Deregister
        } else {
            Phase::Stop
        });
        while let Some(r) = pe_tasks.join_next().await {
            if let Ok(s) = r {
                stats.merge(&s, true);
            }
        }
    };
    let finished = tokio::select! {
        r = tokio::time::timeout(wind_down, collect) => r.is_ok(),
        name = shutdown_signal() => {
            tracing::warn!("{name}: not waiting for the deregistrations");
            false
        }
    };
    if !finished {
        unfinished = pe_tasks.len() + pu_tasks.len();
        pe_tasks.abort_all();
        pu_tasks.abort_all();
    }
    let report = report::Report {
        kind,
        pes: pe_run.pes,
        pools: pe_run.pools.len() as u64,
        assocs: pe_run.assocs,
        pu_assocs: plan.pu_assocs,
        elapsed,
        start,
        life: plan.life,
        reregister: pe_run.reregister,
        stats,
        unfinished,
        registrar_pid,
        registrar: registrar_before.zip(registrar_after),
        generator: own_before.zip(own_after),
    };
    if plan.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.stats.lost.is_some() {
        eprintln!(
            "error: {}",
            report.stats.lost.as_deref().unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

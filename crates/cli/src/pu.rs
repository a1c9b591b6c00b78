//! `rserpool pu`: a pool user. By default a terminal session with a pool:
//! lines from standard input go to a PE of the pool, answers come back on
//! standard output, failovers are told on standard error. With
//! `--resolve N` it resolves the pool handle N times instead and prints
//! the PE the pool's policy selects each time.

use crate::metrics::{Endpoint, ResolveMetrics};
use crate::node::addr::{EndpointSpec, LocalAddr};
use crate::node::duration::Dur;
use crate::node::policy;
use crate::node::transport::{self, TransportArgs};
use crate::node::{Node, block_on, config_error};
use crate::registrar::ASAP_PORT;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_core::pool_user::{RequestId, ResolutionFailure};
use rserpool_core::{HuntConfig, Instant, PoolUser, PoolUserConfig, PoolUserEvent};
use rserpool_net::runtime::{AnnounceChannel, Endpoints};
use rserpool_net::transport::select::BackendKind;
use rserpool_net::transport::{EndpointConfig, Transport};
use rserpool_wire::{PoolHandle, UserTransport};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `rserpool pu`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pool handle to resolve.
    #[arg(long, value_name = "NAME")]
    pool: String,
    /// A registrar's ASAP endpoint (IP or IP:PORT, comma-separated for a
    /// multi-homed one; port default 3863); repeatable.
    #[arg(long = "registrar", value_name = "ADDR")]
    registrar: Vec<EndpointSpec>,
    /// Resolve the pool handle N times and print the PE selected each
    /// time, instead of opening a terminal session.
    #[arg(long, alias = "count", value_name = "N")]
    resolve: Option<u32>,
    /// Terminal: after the end of input, how long to wait for answers
    /// still missing before closing the session [default: 5s].
    #[arg(long, value_name = "DUR")]
    reply_timeout: Option<Dur>,
    /// Terminal: give up the serving PE (and fail over) when a line has
    /// waited this long for its answer: a PE that is stuck while its SCTP
    /// still answers [default: off].
    #[arg(long, value_name = "DUR")]
    answer_timeout: Option<Dur>,
    /// Terminal: how long the association to a chosen PE may take before
    /// the session tries another [default: 5s].
    #[arg(long, value_name = "DUR")]
    connect_timeout: Option<Dur>,
    /// Pause between resolutions (--resolve).
    #[arg(long, value_name = "DUR", default_value = "1s")]
    interval: Dur,
    /// How long a resolution answers from the cache without asking a
    /// registrar (stale_cache_value; 0 asks every time) [default: 5s].
    #[arg(long, value_name = "DUR")]
    cache: Option<Dur>,
    /// T1: wait for HANDLE_RESOLUTION_RESPONSE [default: 15s].
    #[arg(long, value_name = "DUR")]
    request_timeout: Option<Dur>,
    /// Resends after T1 before a resolution fails [default: 2].
    #[arg(long, value_name = "N")]
    retransmits: Option<u32>,
    /// PEs to ask for (Handle Resolution Option) [default: the registrar's choice].
    #[arg(long, value_name = "N")]
    items: Option<u32>,
    /// T5: wait for an association to a registrar [default: 10s].
    #[arg(long, value_name = "DUR")]
    server_hunt_timeout: Option<Dur>,
    /// Local IP or IP:PORT of the ASAP endpoint; repeatable [default: any].
    #[arg(long, value_name = "ADDR")]
    local: Vec<LocalAddr>,
    /// Listen for ASAP_SERVER_ANNOUNCE here (multicast group or IP:PORT) to find registrars.
    #[arg(long, value_name = "ADDR")]
    announce: Option<SocketAddr>,
    /// Seed of the random selection policies [default: random].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics (IP:PORT, for
    /// example 127.0.0.1:9464): resolutions and their latency (--resolve),
    /// lines, failovers and their latency (terminal) [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    #[command(flatten, next_help_heading = "Transport")]
    transport: TransportArgs,
}

/// Text after the flag list of `rserpool pu --help`.
pub const AFTER_HELP: &str = "\
Terminal (the default): each line of standard input goes to a PE of the \
pool as one message; each answer is printed on standard output. When the \
PE fails the session moves to another, reporting on standard error \
`failover: PE 0x... -> PE 0x... (reason)`, hands it the last cookie, and \
sends again the lines that had no answer yet. End of input closes the \
session (after the missing answers, or --reply-timeout).

--resolve N: each resolution prints one line to stdout: the selected PE \
(`pe=0x... at IP:PORT policy=LU load=12.5% cached=no`) or \
`resolution failed: REASON`.

--metrics ADDR serves Prometheus metrics at http://ADDR/metrics while the \
pool user runs (docs/OPERATING.md lists them).

Exit status: 0 when the input ended (terminal) or every resolution \
succeeded, 1 if the session stopped or a resolution failed, 2 if the \
configuration is invalid or the endpoint (or the metrics address) cannot \
be bound.";

pub(crate) struct Plan {
    pub(crate) pool: PoolHandle,
    pub(crate) config: PoolUserConfig,
    /// `--resolve N`: resolve N times instead of a session.
    count: Option<u32>,
    interval: Duration,
    pub(crate) reply_timeout: Duration,
    pub(crate) answer_timeout: Option<Duration>,
    pub(crate) seed: u64,
    pub(crate) local: Vec<SocketAddr>,
    pub(crate) transport: TransportArgs,
    pub(crate) announce: Option<SocketAddr>,
    metrics: Option<String>,
}

fn plan(a: Args) -> Result<Plan, String> {
    let pool = PoolHandle::try_from(a.pool.as_str())
        .map_err(|e| format!("invalid pool handle `{}`: {e}", a.pool))?;
    let mut registrars: Vec<Vec<SocketAddr>> =
        a.registrar.iter().map(|r| r.resolve(ASAP_PORT)).collect();
    let mut announce = a.announce;
    crate::node::default_registrars(&mut registrars, &mut announce);
    if a.resolve == Some(0) {
        return Err("--resolve must be at least 1".into());
    }
    let mut c = PoolUserConfig {
        hunt: HuntConfig {
            registrars,
            ..HuntConfig::default()
        },
        handle_resolution_items: a.items,
        ..PoolUserConfig::default()
    };
    if let Some(d) = a.cache {
        c.stale_cache_value = d.0;
    }
    if let Some(d) = a.request_timeout {
        c.t1_enrp_request = d.0;
    }
    if let Some(n) = a.retransmits {
        c.max_request_retransmit = n;
    }
    if let Some(d) = a.server_hunt_timeout {
        c.hunt.t5_server_hunt = d.0;
        c.hunt.retran_max = c.hunt.retran_max.max(d.0);
    }
    if let Some(d) = a.connect_timeout {
        c.session.connect_timeout = d.0;
    }
    c.validate().map_err(|e| e.to_string())?;
    a.transport.tunables()?;
    Ok(Plan {
        pool,
        config: c,
        count: a.resolve,
        interval: a.interval.0,
        reply_timeout: a.reply_timeout.map_or(Duration::from_secs(5), |d| d.0),
        answer_timeout: a.answer_timeout.map(|d| d.0).filter(|d| !d.is_zero()),
        seed: a.seed.unwrap_or_else(rand::random),
        local: a
            .local
            .iter()
            .map(|l| SocketAddr::new(l.ip, l.port.unwrap_or(0)))
            .collect(),
        transport: a.transport,
        announce,
        metrics: a.metrics,
    })
}

/// Resolves `--count` times; see [`AFTER_HELP`].
pub fn run(args: Args) -> ExitCode {
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => return config_error(e),
    };
    let kind = match plan.transport.backend() {
        Ok(k) => k,
        Err(e) => return config_error(e),
    };
    let metrics = match crate::metrics::bind(plan.metrics.as_deref()) {
        Ok(m) => m,
        Err(e) => return config_error(e),
    };
    if plan.count.is_some() {
        block_on(resolve(plan, kind, metrics))
    } else {
        block_on(crate::terminal::run(plan, kind, metrics))
    }
}

async fn resolve(plan: Plan, kind: BackendKind, endpoint: Option<Endpoint>) -> ExitCode {
    let tunables = match plan.transport.tunables() {
        Ok(t) => t,
        Err(e) => return config_error(e),
    };
    // A pool user only connects out, so an ephemeral UDP port suits it and
    // lets it share an IP with a registrar or PE.
    let ec = EndpointConfig::client(plan.local.iter().copied()).with_transport(tunables);
    let asap = match transport::bind(kind, ec, &plan.transport.udp(0)) {
        Ok(t) => t,
        Err(e) => return config_error(format!("cannot bind the ASAP endpoint: {e}")),
    };
    let announce = match plan.announce {
        Some(at) => match AnnounceChannel::bind(at, Vec::new(), rserpool_wire::PPID_ASAP).await {
            Ok(a) => Some(a),
            Err(e) => return config_error(format!("cannot listen for announces on {at}: {e}")),
        },
        None => None,
    };
    tracing::debug!("pool user on {:?}", asap.local_addrs());
    let rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let pu = match PoolUser::new(plan.config.clone(), rng, Instant::ZERO) {
        Ok(pu) => pu,
        Err(e) => return config_error(e),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ResolveMetrics::register(&mut registry);
    if let Err(e) = crate::metrics::serve(endpoint, registry, crate::metrics::no_refresh) {
        return config_error(e);
    }
    let (mut node, mut events) = Node::spawn(pu, Endpoints { asap, enrp: None }, announce);
    let mut all_ok = true;
    for i in 0..plan.count.unwrap_or(1) {
        if i > 0 {
            tokio::time::sleep(plan.interval).await;
        }
        let started = std::time::Instant::now();
        let pool = plan.pool.clone();
        let Some(request) = node
            .call(move |pu: &mut PoolUser, now| pu.resolve(now, pool))
            .await
        else {
            break;
        };
        let line = match answer(
            &mut node,
            &mut events,
            request,
            &crate::node::hunt_description(&plan.config.hunt.registrars, plan.announce),
        )
        .await
        {
            Ok(from_cache) => {
                let pool = plan.pool.clone();
                match node
                    .call(move |pu: &mut PoolUser, _| pu.select(&pool))
                    .await
                    .flatten()
                {
                    Some(pe) => {
                        metrics.duration.observe(started.elapsed().as_secs_f64());
                        metrics.resolved(true);
                        selected(&pe, from_cache)
                    }
                    None => {
                        all_ok = false;
                        metrics.resolved(false);
                        "resolution failed: no pool element to select".to_string()
                    }
                }
            }
            Err(reason) => {
                all_ok = false;
                metrics.resolved(false);
                format!("resolution failed: {reason}")
            }
        };
        if !crate::node::output::line(&line) {
            break;
        }
    }
    node.stop().await;
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Waits for the event answering `request`: whether it came from the cache,
/// or why it failed. The machine's T1 sequence bounds the wait.
///
/// While it waits, says so on standard error after a second and every five
/// seconds after, naming where it looks (`what`), so that a PU without a
/// registrar is not silent until its timers give up.
async fn answer(
    node: &mut Node<PoolUser>,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<PoolUserEvent>,
    request: RequestId,
    what: &str,
) -> Result<bool, String> {
    let started = tokio::time::Instant::now();
    let mut next_word = started + Duration::from_secs(1);
    loop {
        let e = tokio::select! {
            e = events.recv() => e,
            () = tokio::time::sleep_until(next_word) => {
                let seen = node
                    .call(|pu: &mut PoolUser, _| {
                        let failed: Vec<String> = pu
                            .unreachable_registrars()
                            .iter()
                            .map(|(addrs, n)| {
                                let at: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                                format!("{} not answering ({n} attempt(s))", at.join(","))
                            })
                            .collect();
                        let heard = pu.stats().announces.learned;
                        (failed, heard)
                    })
                    .await;
                let mut detail = String::new();
                if let Some((failed, heard)) = seen {
                    if !failed.is_empty() {
                        detail = format!("; {}", failed.join(", "));
                    }
                    if what.contains("announces") && heard == 0 {
                        detail.push_str("; no registrar announce heard");
                    }
                }
                tracing::warn!(
                    "no answer yet after {:.0} s: {what}{detail}",
                    started.elapsed().as_secs_f64()
                );
                next_word += Duration::from_secs(5);
                continue;
            }
        };
        let Some(e) = e else {
            return Err(format!("runtime stopped: {}", node.failed().await));
        };
        match e {
            PoolUserEvent::Resolved {
                request: r,
                from_cache,
                ..
            } if r == request => return Ok(from_cache),
            PoolUserEvent::ResolutionFailed {
                request: r, reason, ..
            } if r == request => {
                let unreachable = node
                    .call(|pu: &mut PoolUser, _| pu.unreachable_registrars().to_vec())
                    .await
                    .unwrap_or_default();
                let mut text = failure_text(&reason);
                if reason == ResolutionFailure::Timeout && !unreachable.is_empty() {
                    let at: Vec<String> = unreachable
                        .iter()
                        .map(|(addrs, _)| {
                            addrs
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .collect();
                    text = format!("no registrar reachable (tried {})", at.join(", "));
                }
                return Err(text);
            }
            PoolUserEvent::PeerError { causes, .. } => {
                tracing::warn!("registrar reported an error: {causes:?}")
            }
            other => tracing::debug!(event = ?other, "event"),
        }
    }
}

/// Why a resolution failed, for the `resolution failed: ...` line.
pub(crate) fn failure_text(r: &ResolutionFailure) -> String {
    match r {
        ResolutionFailure::Timeout => "no answer from a registrar (timeout)".into(),
        ResolutionFailure::NoRegistrar => "no registrar known".into(),
        ResolutionFailure::NoPoolElements => "the pool has no pool elements".into(),
        ResolutionFailure::Rejected(_) if r.is_unknown_pool() => "unknown pool handle".into(),
        ResolutionFailure::Rejected(causes) => format!(
            "refused by the registrar: {}",
            causes
                .iter()
                .map(|c| format!("{:?}", c.code))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `pe=0x00000101 at 10.0.0.2:5000 policy=LU load=25.0% cached=no`.
fn selected(pe: &rserpool_wire::PoolElement, from_cache: bool) -> String {
    let at = match &pe.user_transport {
        UserTransport::Address(t) => match t.addresses.first() {
            Some(ip) => format!("{}", SocketAddr::new(*ip, t.port)),
            None => format!("port {}", t.port),
        },
        UserTransport::Opaque(b) => format!("opaque transport ({} bytes)", b.len()),
    };
    format!(
        "pe={} at {at} {} cached={}",
        pe.id,
        policy::describe(&pe.policy),
        if from_cache { "yes" } else { "no" }
    )
}

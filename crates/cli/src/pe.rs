//! `rserpool pe`: a pool element that registers a pool membership at a
//! registrar and keeps it until a signal, then deregisters.

use crate::metrics::PeMetrics;
use crate::node::addr::{EndpointSpec, LocalAddr};
use crate::node::duration::Dur;
use crate::node::policy;
use crate::node::transport::{self, NodePlace, TransportArgs};
use crate::node::{block_on, config_error, shutdown_signal};
use crate::registrar::ASAP_PORT;
use crate::service::Service;
use rserpool::pe::Event;
use rserpool_core::pool_element::LifeUnit;
use rserpool_core::{HuntConfig, PoolElementConfig, PoolElementEvent};
use rserpool_net::transport::select::BackendKind;
use rserpool_wire::{PeId, Policy, PoolHandle, TransportAddress, TransportUse, UserTransport};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tracing::{error, info, warn};

/// Flags of `rserpool pe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pool handle to join.
    #[arg(long, value_name = "NAME")]
    pool: String,
    /// A registrar's ASAP endpoint (IP or IP:PORT, comma-separated for a
    /// multi-homed one; port default 3863); repeatable, tried in order.
    #[arg(long = "registrar", value_name = "ADDR")]
    registrar: Vec<EndpointSpec>,
    /// Member selection policy: rr, wrr:W, lu:LOAD (25% or raw), rand, wrand:W, prio:P.
    #[arg(long, value_name = "POLICY", default_value = "rr", value_parser = policy::parse)]
    policy: Policy,
    /// Port where pool users reach this PE's service [default: the ASAP endpoint's port].
    #[arg(long, value_name = "PORT")]
    user_port: Option<u16>,
    /// Address where pool users reach this PE; repeatable [default: the --local IPs].
    #[arg(long, value_name = "IP")]
    user_addr: Vec<IpAddr>,
    /// Local IP or IP:PORT of the ASAP endpoint; repeatable [default: 0.0.0.0, any port].
    #[arg(long, value_name = "ADDR")]
    local: Vec<LocalAddr>,
    /// PE identifier, hex or decimal [default: random].
    #[arg(long, value_name = "ID", value_parser = parse_pe_id)]
    id: Option<PeId>,
    /// Registration Life [default: 60s].
    #[arg(long, value_name = "DUR")]
    registration_life: Option<Dur>,
    /// T4: re-registration interval [default: the RFC 5352 rule from the life].
    #[arg(long, value_name = "DUR")]
    reregistration_interval: Option<Dur>,
    /// T2: wait for REGISTRATION_RESPONSE [default: 30s].
    #[arg(long, value_name = "DUR")]
    registration_timeout: Option<Dur>,
    /// T3: wait for DEREGISTRATION_RESPONSE on shutdown [default: 30s].
    #[arg(long, value_name = "DUR")]
    deregistration_timeout: Option<Dur>,
    /// T5: wait for an association to a registrar [default: 10s].
    #[arg(long, value_name = "DUR")]
    server_hunt_timeout: Option<Dur>,
    /// Send Registration Life in seconds (RFC 5354) instead of ms (reference implementation).
    #[arg(long)]
    life_in_seconds: bool,
    /// Listen for ASAP_SERVER_ANNOUNCE here (multicast group or IP:PORT) to find registrars.
    #[arg(long, value_name = "ADDR")]
    announce: Option<SocketAddr>,
    /// Serve pool users' sessions with this service [default: none:
    /// register only, and refuse sessions].
    #[arg(long, value_enum, value_name = "NAME")]
    service: Option<Service>,
    /// Key that signs the cookies carrying session state, shared by the
    /// pool's PEs [default: derived from the pool handle, which keeps out
    /// mistakes but not attackers].
    #[arg(long, value_name = "KEY")]
    cookie_key: Option<String>,
    /// Seed of the PE's randomness [default: random].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics (IP:PORT, for
    /// example 127.0.0.1:9464): registration state, registrations,
    /// sessions [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    #[command(flatten, next_help_heading = "Transport")]
    transport: TransportArgs,
}

/// Text after the flag list of `rserpool pe --help`.
pub const AFTER_HELP: &str = "\
Services: echo (answers every message with itself), discard, daytime, \
chargen (N lines of the RFC 864 pattern per request N), pingpong (`pong N`, \
counting across failovers) and calcapp (computations in steps that resume \
from cookie checkpoints after a failover). Talk to them with `rserpool pu \
--pool NAME`.

Events (registered, home changed, home lost, deregistered, sessions) are \
logged at info level to stderr. SIGINT or SIGTERM deregisters, then exits.

--metrics ADDR serves Prometheus metrics at http://ADDR/metrics \
(docs/OPERATING.md lists them).

Exit status: 0 after a signal, 1 if the registration was refused or the \
transport failed, 2 if the configuration is invalid or the endpoint \
(or the metrics address) cannot be bound.";

fn parse_pe_id(s: &str) -> Result<PeId, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map(PeId)
    .map_err(|_| format!("`{s}` is not a 32-bit PE ID (hex 0x... or decimal)"))
}

/// What the PE runs with, checked.
struct Plan {
    config: PoolElementConfig,
    /// Where pool users reach the PE, when not the local IPs.
    user_addrs: Vec<IpAddr>,
    /// The port pool users are told, when not the endpoint's.
    user_port: Option<u16>,
    service: Option<Service>,
    cookie_key: Vec<u8>,
    seed: u64,
    local: Vec<SocketAddr>,
    transport: TransportArgs,
    announce: Option<SocketAddr>,
    metrics: Option<String>,
}

fn plan(a: Args) -> Result<Plan, String> {
    let pool = PoolHandle::try_from(a.pool.as_str())
        .map_err(|e| format!("invalid pool handle `{}`: {e}", a.pool))?;
    let mut registrars: Vec<Vec<SocketAddr>> =
        a.registrar.iter().map(|r| r.resolve(ASAP_PORT)).collect();
    let mut announce = a.announce;
    crate::node::default_registrars(&mut registrars, &mut announce);
    let mut local: Vec<SocketAddr> = a
        .local
        .iter()
        .map(|l| SocketAddr::new(l.ip, l.port.unwrap_or(0)))
        .collect();
    if local.is_empty() {
        local.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    }
    let user_addrs = if a.user_addr.is_empty() {
        local.iter().map(SocketAddr::ip).collect()
    } else {
        a.user_addr.clone()
    };
    // An unspecified address (the default) is registered as such, and the
    // registrar puts the addresses it sees the PE's association come from
    // in its place (RFC 5352 §3.1).
    if let Some(ip) = user_addrs.iter().find(|ip| ip.is_multicast()) {
        return Err(format!(
            "pool users cannot reach {ip}: give --user-addr (or a concrete --local IP)"
        ));
    }
    let mut c = PoolElementConfig::new(
        pool,
        UserTransport::Address(TransportAddress::sctp(
            a.user_port.unwrap_or(0),
            TransportUse::DataOnly,
            user_addrs,
        )),
        a.policy,
    );
    c.pe_id = a.id;
    if let Some(d) = a.registration_life {
        c.registration_life = Some(d.0);
    }
    c.t4_reregistration = a.reregistration_interval.map(|d| d.0);
    if let Some(d) = a.registration_timeout {
        c.t2_registration = d.0;
    }
    if let Some(d) = a.deregistration_timeout {
        c.t3_deregistration = d.0;
    }
    if a.life_in_seconds {
        c.life_unit = LifeUnit::Seconds;
    }
    c.hunt = HuntConfig {
        registrars,
        ..HuntConfig::default()
    };
    if let Some(d) = a.server_hunt_timeout {
        c.hunt.t5_server_hunt = d.0;
        c.hunt.retran_max = c.hunt.retran_max.max(d.0);
    }
    c.validate().map_err(|e| e.to_string())?;
    a.transport.tunables()?;
    Ok(Plan {
        config: c,
        user_addrs: a.user_addr.clone(),
        user_port: a.user_port,
        service: a.service,
        cookie_key: a
            .cookie_key
            .unwrap_or_else(|| format!("rserpool cookie key of pool {}", a.pool))
            .into_bytes(),
        seed: a.seed.unwrap_or_else(rand::random),
        local,
        transport: a.transport,
        announce,
        metrics: a.metrics,
    })
}

/// Runs the PE until a signal; see [`AFTER_HELP`].
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
    block_on(serve(plan, kind, metrics))
}

async fn serve(
    plan: Plan,
    kind: BackendKind,
    endpoint: Option<crate::metrics::Endpoint>,
) -> ExitCode {
    let place = NodePlace {
        registrars: &plan.config.hunt.registrars,
        announce: plan.announce,
        local: &plan.local,
        seed: plan.seed,
    };
    // Without --udp-port the PE takes the UDP port equal to its SCTP port,
    // so that it can share a host with a registrar and other PEs.
    let options = match transport::options(&plan.transport, kind, 0, place) {
        Ok(o) => o,
        Err(e) => return config_error(e),
    };
    let mut builder = rserpool::PoolElement::with_config(plan.config.clone()).options(options);
    if !plan.user_addrs.is_empty() {
        builder = builder.user_addrs(plan.user_addrs.clone());
    }
    if let Some(port) = plan.user_port {
        builder = builder.user_port(port);
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = PeMetrics::register(&mut registry);
    if let Err(e) = crate::metrics::serve(endpoint, registry, crate::metrics::no_refresh) {
        return config_error(e);
    }
    let mut pe = match builder.join().await {
        Ok(pe) => pe,
        Err(e) => return config_error(e),
    };
    let id = pe.pe_id();
    let service = match plan.service {
        Some(s) => format!(", serving {s:?}"),
        None => String::new(),
    };
    info!(
        "PE {id} joining pool {} with {} at {:?} over {kind}{service}",
        plan.config.pool_handle,
        plan.config.policy,
        pe.local_addrs(),
    );
    let searching = crate::node::hunt_description(&plan.config.hunt.registrars, plan.announce);
    let signer = std::sync::Arc::new(rserpool::CookieSigner::new(&plan.cookie_key));
    let signal = shutdown_signal();
    tokio::pin!(signal);
    // While the PE has no home it says so after a second and every five
    // seconds after, naming where it looks.
    let mut hunting_since = Some(tokio::time::Instant::now());
    let mut next_word = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        tokio::select! {
            event = pe.next() => match event {
                Some(Event::Registration(e)) => {
                    count_event(&metrics, &e);
                    if !log_event(&e) {
                        return ExitCode::FAILURE;
                    }
                    match e {
                        PoolElementEvent::Registered { .. } | PoolElementEvent::HomeChanged { .. } => {
                            hunting_since = None;
                        }
                        PoolElementEvent::HomeLost { .. } | PoolElementEvent::RegistrationExpired { .. }
                            if hunting_since.is_none() =>
                        {
                            let now = tokio::time::Instant::now();
                            hunting_since = Some(now);
                            next_word = now + Duration::from_secs(1);
                        }
                        _ => {}
                    }
                }
                Some(Event::Session(session)) => match plan.service {
                    Some(service) => {
                        metrics.sessions_opened.inc();
                        let signer = signer.clone();
                        let closed = metrics.sessions_closed.clone();
                        tokio::spawn(async move {
                            crate::service::serve(service, session, signer).await;
                            closed.inc();
                        });
                    }
                    None => {
                        metrics.sessions_refused.inc();
                        info!("{} from {:?} refused: no --service", session.id(), session.peer());
                        let _ = session.close().await;
                    }
                },
                Some(Event::Failed(reason)) => {
                    error!("PE {id} stopped: {reason}");
                    return ExitCode::FAILURE;
                }
                None => {
                    error!("PE {id} stopped");
                    return ExitCode::FAILURE;
                }
            },
            () = tokio::time::sleep_until(next_word), if hunting_since.is_some() => {
                let since = hunting_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
                warn!("not registered yet after {since:.0} s: {searching}");
                next_word += Duration::from_secs(5);
            }
            name = &mut signal => {
                info!("PE {id} deregistering on {name}");
                return deregister(pe).await;
            }
        }
    }
}

/// Deregisters and waits for the answer (the library bounds the wait by
/// T3; a second signal cuts it short).
async fn deregister(pe: rserpool::PoolElement) -> ExitCode {
    let confirmed = tokio::select! {
        c = pe.leave() => c,
        name = shutdown_signal() => {
            warn!("{name} again: exiting without waiting for the registrar");
            false
        }
    };
    if confirmed {
        info!("deregistered");
        ExitCode::SUCCESS
    } else {
        warn!("deregistered without confirmation from a registrar");
        ExitCode::FAILURE
    }
}

/// Follows the registration in the metrics, as the library's
/// [`rserpool::pe::Registration`] status does.
fn count_event(m: &PeMetrics, e: &PoolElementEvent) {
    use PoolElementEvent as E;
    match e {
        E::Registered { .. } => {
            m.registrations.inc();
            m.registered.set(1);
        }
        E::HomeChanged { .. } => {
            m.registered.set(1);
        }
        E::HomeLost { .. } => {
            m.homes_lost.inc();
            m.registered.set(0);
        }
        E::RegistrationExpired { .. } | E::RegistrationRejected { .. } | E::Deregistered { .. } => {
            m.registered.set(0);
        }
        _ => {}
    }
}

/// Logs one event; false if the PE cannot go on (its registration was refused).
fn log_event(e: &PoolElementEvent) -> bool {
    use PoolElementEvent as E;
    match e {
        E::Registered {
            pe_id, server_id, ..
        } => match server_id {
            Some(s) => info!("PE {pe_id} registered at registrar {s}"),
            None => info!("PE {pe_id} registered"),
        },
        E::RegistrationRejected { causes, .. } => {
            error!("registration refused: {}", rserpool::causes_text(causes));
            return false;
        }
        E::HomeChanged { server_id, .. } => info!("home changed to registrar {server_id}"),
        E::HomeLost { reason, .. } => warn!("home registrar lost ({reason:?}); hunting"),
        E::PrUnreachable { addresses } => warn!("registrar {addresses:?} unreachable"),
        E::NoRegistrar { retry_at } => match retry_at {
            Some(_) => warn!("no registrar accepted the registration; retrying"),
            None => info!("no registrar known; waiting for an announce"),
        },
        E::RegistrationExpired { .. } => {
            info!("registration expired at the registrar; registering again")
        }
        E::Deregistered { confirmed, causes } => {
            if *confirmed && causes.is_empty() {
                info!("deregistered");
            } else if *confirmed {
                warn!("deregistration refused: {}", rserpool::causes_text(causes));
            } else {
                warn!("deregistered without confirmation from a registrar");
            }
        }
        E::PeerError { causes, .. } => {
            warn!(
                "registrar reported an error: {}",
                rserpool::causes_text(causes)
            )
        }
        E::SessionOpened { .. }
        | E::SessionData { .. }
        | E::CookieEcho { .. }
        | E::BusinessCard { .. }
        | E::SessionClosed { .. } => {}
    }
    true
}

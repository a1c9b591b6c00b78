//! `rserpool registrar`: a pool registrar (ENRP server) on real sockets.

mod metrics;
pub(crate) mod settings;
pub use settings::{ASAP_PORT, Balance};
mod status;

use crate::node::transport;
use crate::node::{Node, block_on, config_error, shutdown_signal};
use rserpool_core::Instant;
use rserpool_core::registrar::{Registrar, RegistrarEvent};
use rserpool_net::runtime::{AnnounceChannel, Endpoints};
use rserpool_net::transport::select::BackendKind;
use rserpool_net::transport::{EndpointConfig, Transport};
use settings::{Plan, Settings};
use std::process::ExitCode;
use tracing::{info, warn};

/// Flags of `rserpool registrar`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    settings: Settings,
}

/// Text after the flag list of `rserpool registrar --help`.
pub const AFTER_HELP: &str = "\
Events (registrations, removals, peers up and down, takeovers, takeover \
suggestions sent, accepted and declined) are logged at info level to stderr \
(RUST_LOG=debug for more). SIGINT or SIGTERM stops the registrar.

--metrics ADDR serves Prometheus metrics at http://ADDR/metrics, read from \
the registrar on each scrape (docs/OPERATING.md lists them).

Exit status: 0 after a signal, 1 if the transport failed, 2 if the \
configuration is invalid or an endpoint (or the metrics address) cannot be \
bound.

A configuration file (--config) holds the same settings; flags override it:

  id = \"0x1\"
  addr = [\"192.0.2.1\"]
  peer = [\"192.0.2.2\", \"192.0.2.3:9901\"]
  keep-alive-interval = \"2s\"
  balance = \"balanced\"
  capacity = 2
  [transport]
  kind = \"auto\"

With SCTP over UDP every endpoint needs its own UDP port on its IP: run \
the ASAP and ENRP endpoints on different IPs (--enrp-addr) or give ENRP \
its own port (--enrp-udp-port), and give every node on one host its own \
loopback IP (127.0.0.x).";

/// Runs the registrar until a signal; see [`AFTER_HELP`].
pub fn run(args: Args) -> ExitCode {
    let plan = match args.settings.load().and_then(Settings::plan) {
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
    metrics: Option<crate::metrics::Endpoint>,
) -> ExitCode {
    let cfg = &plan.config;
    let bind = |addrs: &[std::net::SocketAddr], udp| {
        let ec =
            EndpointConfig::server(addrs.iter().copied()).with_transport(plan.tunables.clone());
        transport::bind(kind, ec, udp).map_err(|e| format!("cannot bind {}: {e}", list(addrs)))
    };
    let asap = match bind(&cfg.asap_addresses, &plan.asap_udp) {
        Ok(t) => t,
        Err(e) => return config_error(e),
    };
    let enrp = match bind(&cfg.enrp_addresses, &plan.enrp_udp) {
        Ok(t) => t,
        Err(e) => return config_error(e),
    };
    let mut announce: Option<AnnounceChannel> = None;
    for (channel, ppid) in [
        (&plan.announce, rserpool_wire::PPID_ASAP),
        (&plan.enrp_announce, rserpool_wire::PPID_ENRP),
    ] {
        let Some((listen, to)) = channel else {
            continue;
        };
        match AnnounceChannel::bind(*listen, to.clone(), ppid).await {
            Ok(a) => {
                announce = Some(match announce {
                    Some(first) => first.with(a),
                    None => a,
                })
            }
            Err(e) if plan.announce_by_default => {
                info!("not announcing on {listen} ({e}); peers need --peer");
            }
            Err(e) => {
                return config_error(format!("cannot open the announce channel {listen}: {e}"));
            }
        }
    }
    let asap_at = list(&asap.local_addrs());
    let enrp_at = list(&enrp.local_addrs());
    let registrar = match Registrar::new(plan.config.clone(), plan.seed, Instant::ZERO) {
        Ok(r) => r,
        Err(e) => return config_error(e),
    };
    let id = registrar.id();
    info!(
        "registrar {id} serving ASAP on {asap_at} and ENRP on {enrp_at} over {kind}{}",
        match &plan.announce {
            Some((_, to)) => format!(", announcing to {}", list(to)),
            None => String::new(),
        }
    );
    let (mut node, mut events) = Node::spawn(
        registrar,
        Endpoints {
            asap,
            enrp: Some(enrp),
        },
        announce,
    );
    if let Err(e) = serve_metrics(metrics, &node) {
        node.abort();
        return config_error(e);
    }
    let mut status = plan.status_interval.map(|d| {
        let mut i = tokio::time::interval(d);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            Some(e) = events.recv() => log_event(&e),
            _ = tick(status.as_mut()) => {
                if let Some(line) = node.call(|r: &mut Registrar, _| status::line(r)).await {
                    if !crate::node::output::line(&line) {
                        // Nobody reads the status lines any more: keep serving.
                        info!("standard output closed: no more status lines");
                        status = None;
                    }
                }
            }
            name = &mut signal => {
                info!("registrar {id} stopping on {name}");
                node.stop().await;
                return ExitCode::SUCCESS;
            }
            reason = node.failed() => {
                tracing::error!("registrar {id} stopped: {reason}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Serves the registrar's metrics, read from the machine on each scrape.
fn serve_metrics(
    endpoint: Option<crate::metrics::Endpoint>,
    node: &Node<Registrar>,
) -> Result<(), String> {
    let collector = std::sync::Arc::new(metrics::RegistrarCollector::default());
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(collector.clone()));
    let handle = node.handle();
    crate::metrics::serve(endpoint, registry, move || {
        let handle = handle.clone();
        let collector = collector.clone();
        async move {
            // A stopped node keeps its last numbers; the process is ending.
            if let Some(s) = handle
                .call(|r: &mut Registrar, _| metrics::Snapshot::of(r))
                .await
            {
                collector.update(s);
            }
        }
    })
}

async fn tick(i: Option<&mut tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// One log line per event; the ones about trouble at warn.
fn log_event(e: &RegistrarEvent) {
    use RegistrarEvent as E;
    match e {
        E::Ready => info!("ready: serving"),
        E::PeerUp(id) => info!("peer {id} up"),
        E::PeerDown(id) => warn!("peer {id} down"),
        E::Registered {
            pool,
            pe,
            new,
            from,
        } => match (new, from) {
            (_, Some(old)) => info!("PE {pe} of pool {pool} registered here, taken from {old}"),
            (true, None) => info!("PE {pe} of pool {pool} registered"),
            (false, None) => info!("PE {pe} of pool {pool} re-registered"),
        },
        E::RegistrationRejected {
            pool,
            pe,
            cause,
            detail,
        } => warn!("registration of PE {pe} in pool {pool} refused: {detail} (cause {cause})"),
        E::Removed { pool, pe, reason } => info!("PE {pe} of pool {pool} removed: {reason:?}"),
        E::OwnershipLost { pool, pe, to } => info!("PE {pe} of pool {pool} now homed at {to}"),
        E::TakeoverStarted(t) => warn!("takeover of failed peer {t} started"),
        E::TakeoverCompleted { target, pes } => {
            info!("takeover of {target} completed: {pes} PEs claimed")
        }
        E::TakeoverAbandoned(t) => info!("takeover of {t} abandoned"),
        E::SuggestionSent { pool, pe, to } => {
            info!("takeover suggestion sent: PE {pe} of pool {pool} to {to}")
        }
        E::SuggestionAccepted { pool, pe, from } => {
            info!("takeover suggestion accepted: PE {pe} of pool {pool} from {from}")
        }
        E::SuggestionDeclined {
            pool,
            pe,
            from,
            reason,
        } => info!("takeover suggestion declined: PE {pe} of pool {pool} from {from}: {reason:?}"),
        E::ResyncStarted(p) => info!("resynchronising with peer {p} (checksum mismatch)"),
        E::BadMessage { assoc, error } => warn!("bad message on {assoc:?}: {error}"),
    }
}

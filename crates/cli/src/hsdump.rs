//! `rserpool hsdump`: the handlespace of a running registrar, read over
//! ENRP (LIST_REQUEST and HANDLE_TABLE_REQUEST, paged) without joining the
//! scope: it never sends ENRP_PRESENCE, so registrars that follow RFC 5353
//! do not count it as a peer that could own PEs or be taken over.

use crate::node::addr::EndpointSpec;
use crate::node::duration::Dur;
use crate::node::transport::{self, TransportArgs};
use crate::node::{block_on, config_error};
use crate::registrar::settings::ENRP_PORT;
use rserpool_net::transport::{EndpointConfig, Event, Ppid, Transport};
use rserpool_wire::{EnrpMessage, Message, PoolEntry, PrId, ServerInformation, Servers};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `rserpool hsdump`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registrar's ENRP endpoint (IP or IP:PORT, comma-separated for a
    /// multi-homed one; port default 9901).
    #[arg(long = "registrar", value_name = "ADDR", default_value = "127.0.0.1")]
    registrar: EndpointSpec,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Give up when the registrar has not answered everything by then [default: 5s].
    #[arg(long, value_name = "DUR")]
    timeout: Option<Dur>,
    /// Local IP to ask from [default: chosen by the routing table].
    #[arg(long, value_name = "IP")]
    local: Option<std::net::IpAddr>,
    /// Introduce hsdump as a peer (ENRP_PRESENCE) before asking, for
    /// registrars that answer only their peers, such as the reference
    /// implementation's; they list it as a peer until it falls silent.
    #[arg(long)]
    as_peer: bool,
    /// Server ID to ask under (it is never announced) [default: random].
    #[arg(long, value_name = "ID")]
    id: Option<crate::registrar::settings::IdArg>,
    #[command(flatten)]
    transport: TransportArgs,
}

pub const AFTER_HELP: &str = "\
Prints every pool with its pool elements (ID, home registrar, user \
transport, policy), how many PEs each registrar owns, and the registrar's \
peers. The registrar answers only hosts its trust model admits (its own \
addresses, configured peers, --enrp-allow ranges of the registrar).

Exit status: 0 when the whole handlespace was read, 1 when the registrar \
refused or did not answer in time, 2 for bad flags.";

/// What was read.
pub(crate) struct Dump {
    /// The registrar that answered.
    pub registrar: Option<PrId>,
    /// Its peers.
    pub peers: Vec<ServerInformation>,
    /// Its handlespace, one entry per pool.
    pub pools: Vec<PoolEntry>,
}

pub fn run(args: Args) -> ExitCode {
    let kind = match args.transport.backend() {
        Ok(k) => k,
        Err(e) => return config_error(e),
    };
    let tunables = match args.transport.tunables() {
        Ok(t) => t,
        Err(e) => return config_error(e),
    };
    let to = args.registrar.resolve(ENRP_PORT);
    let timeout = args.timeout.map_or(Duration::from_secs(5), |d| d.0);
    let me = args
        .id
        .map(|i| i.0)
        .or_else(|| PrId::new(rand::random::<u32>() | 1))
        .expect("an odd number is not 0");
    block_on(async move {
        let local = args.local.map(|ip| std::net::SocketAddr::new(ip, 0));
        let ec = EndpointConfig::client(local).with_transport(tunables);
        let mut endpoint = match transport::bind(kind, ec, &args.transport.udp(0)) {
            Ok(t) => t,
            Err(e) => return config_error(format!("cannot bind: {e}")),
        };
        let as_peer = args.as_peer;
        match tokio::time::timeout(timeout, read(&mut endpoint, &to, me, as_peer)).await {
            Ok(Ok(dump)) => {
                let text = if args.json { json(&dump) } else { table(&dump) };
                crate::node::output::line(&text);
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
            Err(_) => {
                eprintln!(
                    "error: no complete answer from {} within {} ms (is this host in the registrar's scope?)",
                    list(&to),
                    timeout.as_millis()
                );
                ExitCode::FAILURE
            }
        }
    })
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads the peer list and the whole handle table of the registrar at `to`
/// over one association of `endpoint`, asking as `me` (after an
/// ENRP_PRESENCE if `as_peer`).
pub(crate) async fn read(
    endpoint: &mut impl Transport,
    to: &[std::net::SocketAddr],
    me: PrId,
    as_peer: bool,
) -> Result<Dump, String> {
    let at = list(to);
    let assoc = endpoint
        .connect(to)
        .await
        .map_err(|e| format!("cannot reach {at}: {e}"))?;
    let servers = Servers {
        sender: me,
        receiver: None,
    };
    let encode = |m: EnrpMessage| {
        let mut buf = Vec::new();
        Message::Enrp(m)
            .encode(&mut buf)
            .map(|_| bytes::Bytes::from(buf))
            .map_err(|e| format!("cannot encode a request: {e}"))
    };
    let table_request = encode(EnrpMessage::HandleTableRequest {
        servers,
        own_children_only: false,
    })?;
    let mut dump = Dump {
        registrar: None,
        peers: Vec::new(),
        pools: Vec::new(),
    };
    let (mut have_list, mut have_table) = (false, false);
    while !(have_list && have_table) {
        let event = endpoint
            .next_event()
            .await
            .map_err(|e| format!("transport stopped: {e}"))?;
        match event {
            Event::AssociationUp { assoc: a, .. } if a == assoc => {
                let mut first = Vec::new();
                if as_peer {
                    let local = endpoint.local_addrs();
                    let port = local.first().map_or(0, |a| a.port());
                    let ips: Vec<_> = local.iter().map(|a| a.ip()).collect();
                    first.push(encode(EnrpMessage::Presence {
                        servers,
                        reply_required: false,
                        // It owns no PEs; the reference implementation
                        // wants the parameter all the same.
                        checksum: Some(0),
                        server_info: Some(ServerInformation {
                            server_id: me,
                            transport: rserpool_wire::TransportAddress::sctp(
                                port,
                                rserpool_wire::TransportUse::DataOnly,
                                ips,
                            ),
                        }),
                    })?);
                }
                first.push(encode(EnrpMessage::ListRequest { servers })?);
                first.push(table_request.clone());
                for m in first {
                    endpoint
                        .send(assoc, 0, Ppid::ENRP, false, m)
                        .await
                        .map_err(|e| format!("cannot send to {at}: {e}"))?;
                }
            }
            Event::AssociationDown { assoc: a, reason } if a == assoc => {
                return Err(format!("association to {at} ended: {reason:?}"));
            }
            Event::Message(m) if m.assoc == assoc && m.ppid == Ppid::ENRP => {
                let msg = match rserpool_wire::EnrpMessage::decode_bytes(&m.data) {
                    Ok(d) => d.message,
                    Err(e) => {
                        tracing::debug!(%e, "undecodable ENRP message ignored");
                        continue;
                    }
                };
                dump.registrar = Some(msg.servers().sender);
                match msg {
                    EnrpMessage::ListResponse {
                        rejected, peers, ..
                    } => {
                        if rejected {
                            return Err(refused(&at, as_peer));
                        }
                        dump.peers = peers;
                        have_list = true;
                    }
                    EnrpMessage::HandleTableResponse {
                        rejected,
                        more_to_send,
                        pools,
                        ..
                    } => {
                        if rejected {
                            return Err(refused(&at, as_peer));
                        }
                        dump.pools.extend(pools);
                        if more_to_send {
                            endpoint
                                .send(assoc, 0, Ppid::ENRP, false, table_request.clone())
                                .await
                                .map_err(|e| format!("cannot send to {at}: {e}"))?;
                        } else {
                            have_table = true;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let _ = endpoint
        .close(assoc, rserpool_net::transport::CloseMode::Graceful)
        .await;
    Ok(merge(dump))
}

fn refused(at: &str, as_peer: bool) -> String {
    if as_peer {
        format!("{at} refused the request (it is still starting)")
    } else {
        format!(
            "{at} refused the request: it is still starting, or it answers only its peers (try --as-peer)"
        )
    }
}

/// Pages split a pool at any element: one entry per pool handle.
fn merge(mut dump: Dump) -> Dump {
    let mut by_handle: BTreeMap<Vec<u8>, PoolEntry> = BTreeMap::new();
    for entry in dump.pools.drain(..) {
        let key = entry.pool_handle.as_bytes().to_vec();
        match by_handle.get_mut(&key) {
            Some(e) => e.pool_elements.extend(entry.pool_elements),
            None => {
                by_handle.insert(key, entry);
            }
        }
    }
    dump.pools = by_handle.into_values().collect();
    dump
}

/// PEs per home registrar ("none" for PEs without one).
pub(crate) fn owners(dump: &Dump) -> BTreeMap<String, usize> {
    let mut owned = BTreeMap::new();
    for pe in dump.pools.iter().flat_map(|p| &p.pool_elements) {
        let home = pe
            .home_registrar
            .map_or_else(|| "none".to_string(), |h| h.to_string());
        *owned.entry(home).or_insert(0) += 1;
    }
    owned
}

fn table(dump: &Dump) -> String {
    let mut out = String::new();
    let pes: usize = dump.pools.iter().map(|p| p.pool_elements.len()).sum();
    out.push_str(&format!(
        "registrar {}: {} pool(s), {} PE(s)\n",
        dump.registrar.map_or_else(|| "?".into(), |r| r.to_string()),
        dump.pools.len(),
        pes
    ));
    for pool in &dump.pools {
        out.push_str(&format!(
            "pool {} ({} PE(s))\n",
            pool.pool_handle,
            pool.pool_elements.len()
        ));
        for pe in &pool.pool_elements {
            out.push_str(&format!(
                "  PE {}  home {}  {}  {}\n",
                pe.id,
                pe.home_registrar
                    .map_or_else(|| "none".into(), |h| h.to_string()),
                pe.user_transport,
                pe.policy
            ));
        }
    }
    let owned: Vec<String> = owners(dump)
        .iter()
        .map(|(id, n)| format!("{id}:{n}"))
        .collect();
    out.push_str(&format!(
        "owned: {}\n",
        if owned.is_empty() {
            "-".into()
        } else {
            owned.join(" ")
        }
    ));
    let peers: Vec<String> = dump
        .peers
        .iter()
        .map(|p| format!("{} ({})", p.server_id, p.transport))
        .collect();
    out.push_str(&format!(
        "peers: {}",
        if peers.is_empty() {
            "-".into()
        } else {
            peers.join(", ")
        }
    ));
    out
}

fn json(dump: &Dump) -> String {
    let v = serde_json::json!({
        "registrar": dump.registrar.map(|r| r.to_string()),
        "pools": dump.pools.iter().map(crate::decode::json::pool_entry_json).collect::<Vec<_>>(),
        "owned": owners(dump),
        "peers": dump.peers.iter().map(crate::decode::json::server_info_json).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

//! Sessions through the library over SCTP over UDP on loopback, in one
//! process: a registrar, echo pool elements and a pool user's session.
//!
//! 1. Throughput: messages per second echoed through one session, with
//!    1 (stop and wait) and 64 messages in flight, 100-byte messages.
//! 2. Failover: 100 times, the PE serving the session stops dead (its
//!    runtime aborted: no SHUTDOWN, no deregistration, like `kill -9`); the
//!    time from the stop to the first answer from the next PE, with the
//!    SCTP heartbeat at 100 ms and the dead-peer timeout at 500 ms.
//!
//! `cargo bench -p rserpool --bench sessions` prints a table; `-- --quick`
//! runs 20 failovers and shorter throughput runs.

use bytes::Bytes;
use rserpool::pe::{PoolElement, Received};
use rserpool::pu::{Session, SessionEvent};
use rserpool::transport::bind;
use rserpool::{Backend, SendOptions, TransportOptions};
use rserpool_core::Instant;
use rserpool_core::registrar::{Registrar, RegistrarConfig};
use rserpool_net::runtime::Endpoints;
use rserpool_net::transport::select::BackendKind;
use rserpool_net::transport::udp::UdpConfig;
use rserpool_net::transport::{EndpointConfig, TransportConfig};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

fn at(host: u8, port: u16) -> SocketAddr {
    format!("127.77.{}.{host}:{port}", std::process::id() % 200)
        .parse()
        .unwrap()
}

fn transport() -> TransportOptions {
    TransportOptions {
        backend: Backend::Udp,
        tunables: TransportConfig {
            heartbeat_interval: Duration::from_millis(100),
            dead_peer_timeout: Duration::from_millis(500),
            handshake_timeout: Duration::from_millis(500),
            ..TransportConfig::default()
        },
        udp: None,
    }
}

fn registrar() -> rserpool::node::Node<Registrar> {
    let udp = UdpConfig::default();
    let ep = |addr| {
        let c = EndpointConfig::server([addr]).with_transport(transport().tunables);
        bind(BackendKind::Udp, c, &udp).expect("registrar endpoint")
    };
    let config = RegistrarConfig {
        asap_addresses: vec![at(1, 3863)],
        enrp_addresses: vec![at(2, 9901)],
        announce: false,
        ..RegistrarConfig::default()
    };
    let machine = Registrar::new(config, 1, Instant::ZERO).unwrap();
    let endpoints = Endpoints {
        asap: ep(at(1, 3863)),
        enrp: Some(ep(at(2, 9901))),
    };
    rserpool::node::Node::spawn(machine, endpoints, None).0
}

/// A running echo PE: sending on `kill` kills it; `served` ends when it is dead.
struct Echo {
    id: rserpool::PeId,
    kill: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

/// An echo PE at host `host`, registered.
async fn echo_pe(host: u8) -> Echo {
    let mut pe = PoolElement::builder("bench")
        .unwrap()
        .registrar(at(1, 3863))
        .local(at(host, 0))
        .transport(transport())
        .join()
        .await
        .expect("PE joins");
    pe.registered().await.expect("registered");
    let id = pe.pe_id();
    let (kill, mut killed) = tokio::sync::oneshot::channel();
    let served = tokio::spawn(async move {
        loop {
            tokio::select! {
                s = pe.accept() => {
                    let Some(mut s) = s else { return };
                    tokio::spawn(async move {
                        while let Some(r) = s.recv().await {
                            if let Received::Data { ppid, data } = r {
                                if s.send_with(ppid, data, false).await.is_err() {
                                    break;
                                }
                            }
                        }
                    });
                }
                _ = &mut killed => {
                    pe.abort();
                    return;
                }
            }
        }
    });
    Echo { id, kill, served }
}

async fn session() -> Session {
    Session::builder("bench")
        .unwrap()
        .registrar(at(1, 3863))
        .local(at(30, 0))
        .transport(transport())
        .connect()
        .await
        .unwrap()
}

async fn data(s: &mut Session) -> Bytes {
    loop {
        if let SessionEvent::Data { data, .. } = s.next().await.expect("session runs") {
            return data;
        }
    }
}

/// Echoes through one session for `secs` with `window` messages in flight.
async fn throughput(window: usize, secs: f64) -> f64 {
    let mut s = session().await;
    let payload = Bytes::from(vec![b'x'; 100]);
    let mut in_flight = 0;
    let start = std::time::Instant::now();
    let mut done = 0u64;
    loop {
        while in_flight < window {
            s.send(payload.clone()).await.unwrap();
            in_flight += 1;
        }
        data(&mut s).await;
        in_flight -= 1;
        done += 1;
        if start.elapsed().as_secs_f64() >= secs {
            break;
        }
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    s.close().await;
    rate
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let quick = std::env::args().any(|a| a == "--quick");
    let (trials, secs) = if quick { (20, 1.0) } else { (100, 3.0) };
    let _registrar = registrar();
    let mut pes: VecDeque<Echo> = VecDeque::new();
    pes.push_back(echo_pe(10).await);
    pes.push_back(echo_pe(11).await);

    println!("session throughput (100-byte messages, SCTP over UDP, loopback)");
    println!("| in flight | messages/s |");
    println!("|---|---|");
    for window in [1, 64] {
        println!("| {window} | {:.0} |", throughput(window, secs).await);
    }

    // Failover: the serving PE dies; a fresh PE replaces it each round so
    // that the pool always has two.
    let mut s = session().await;
    let resend = SendOptions {
        resend: true,
        ..SendOptions::default()
    };
    let mut times = Vec::new();
    let mut next_host = 12u8;
    for _ in 0..trials {
        let seq = s.send_with(0, "ping", resend).await.unwrap();
        data(&mut s).await;
        s.release(seq).await.unwrap();
        let serving = s.pe().expect("connected");
        let Some(i) = pes.iter().position(|e| e.id == serving) else {
            panic!(
                "the session is at PE {serving}, not one of {:?}",
                pes.iter().map(|e| e.id).collect::<Vec<_>>()
            );
        };
        let victim = pes.remove(i).unwrap();
        let t0 = std::time::Instant::now();
        let _ = victim.kill.send(());
        let _ = victim.served.await;
        // The answer comes from the next PE: the request is resent there.
        let seq = s.send_with(0, "ping", resend).await.unwrap();
        data(&mut s).await;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        s.release(seq).await.unwrap();
        pes.push_back(echo_pe(next_host).await);
        next_host = if next_host >= 250 { 12 } else { next_host + 1 };
    }
    times.sort_by(f64::total_cmp);
    println!();
    println!(
        "failover time, {} failures (heartbeat 100 ms, dead-peer timeout 500 ms): \
         from the PE's death to the first answer from the next PE",
        times.len()
    );
    println!("| min | median | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
        times[0],
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
}

//! Request/response benchmark of the SCTP-over-UDP transport on loopback.
//!
//! One client endpoint opens N associations (default 100) to one server
//! endpoint in the same process; every association runs R round trips
//! (default 1,000) of an S-byte ASAP message (default 100), with D requests
//! in flight per association (default 1). Prints round trips per second,
//! latency percentiles and CPU time per round trip (both endpoints, user +
//! system, from `getrusage`).
//!
//! By default both endpoints share one tokio runtime with 2 workers
//! (`--threads T` sets the count); `--threads 0` gives each endpoint its own
//! single-threaded runtime in its own OS thread, as two processes would.
//!
//! `cargo bench -p rserpool-net --bench udp_rtt -- [--assocs N] [--rounds R]
//! [--size S] [--depth D] [--threads T]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use rserpool_net::transport::udp::{UdpConfig, UdpStats, UdpTransport};
use rserpool_net::transport::{EndpointConfig, Event, Ppid, Transport, TransportConfig};

struct Args {
    assocs: usize,
    rounds: usize,
    size: usize,
    depth: usize,
    /// 0: each endpoint on its own single-threaded runtime in its own OS
    /// thread, like two processes; n > 0: both on one n-worker runtime.
    threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        assocs: 100,
        rounds: 1000,
        size: 100,
        depth: 1,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} needs a number"))
        };
        match k.as_str() {
            "--assocs" => a.assocs = v(),
            "--rounds" => a.rounds = v(),
            "--size" => a.size = v(),
            "--depth" => a.depth = v(),
            "--threads" => a.threads = v(),
            // `cargo bench` passes --bench; ignore what we do not know.
            _ => {}
        }
    }
    a
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    let a = args();
    if a.threads == 0 {
        // The server side (its driver and the echo loop) lives in its own
        // thread and runtime, as it would in another process.
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let server = bind_server();
                addr_tx
                    .send((server.local_addrs(), server.local_udp_addrs()[0].port()))
                    .expect("main thread alive");
                echo(server, stop_rx).await
            })
        });
        let (addrs, udp_port) = addr_rx.recv().expect("server started");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cstats = rt.block_on(run_client(&a, addrs, udp_port));
        let _ = stop_tx.send(());
        let sstats = server.join().expect("server thread");
        print_datagrams(&a, cstats, sstats);
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let server = bind_server();
            let (addrs, udp_port) = (server.local_addrs(), server.local_udp_addrs()[0].port());
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let echo = tokio::spawn(echo(server, stop_rx));
            let cstats = run_client(&a, addrs, udp_port).await;
            let _ = stop_tx.send(());
            let sstats = echo.await.expect("echo task");
            print_datagrams(&a, cstats, sstats);
        });
    }
}

fn bind_server() -> UdpTransport {
    UdpTransport::bind(
        EndpointConfig::server(["127.0.0.1:0".parse().unwrap()])
            .with_transport(TransportConfig::default()),
        UdpConfig {
            udp_port: 0,
            ..UdpConfig::default()
        },
    )
    .expect("bind server")
}

async fn echo(
    mut server: UdpTransport,
    mut stop_rx: tokio::sync::oneshot::Receiver<()>,
) -> UdpStats {
    loop {
        let ev = tokio::select! {
            ev = server.next_event() => ev,
            _ = &mut stop_rx => break,
        };
        match ev {
            Ok(Event::Message(m)) => {
                if server
                    .send(m.assoc, m.stream, m.ppid, false, m.data)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    server.stats()
}

fn print_datagrams(a: &Args, cstats: UdpStats, sstats: UdpStats) {
    let total = (a.assocs * a.rounds) as f64;
    println!(
        "| datagrams sent client / server | {} / {} |",
        cstats.datagrams_out, sstats.datagrams_out
    );
    println!(
        "| datagrams per round trip | {:.2} |",
        (cstats.datagrams_out + sstats.datagrams_out) as f64 / total
    );
}

async fn run_client(a: &Args, addrs: Vec<std::net::SocketAddr>, udp_port: u16) -> UdpStats {
    let t = TransportConfig::default();
    let mut client = UdpTransport::bind(
        EndpointConfig::client(["127.0.0.1:0".parse().unwrap()]).with_transport(t),
        UdpConfig {
            udp_port: 0,
            remote_udp_port: udp_port,
            ..UdpConfig::default()
        },
    )
    .expect("bind client");

    let mut ids = Vec::new();
    for _ in 0..a.assocs {
        ids.push(client.connect(&addrs).await.expect("connect"));
    }
    let mut up = 0;
    while up < a.assocs {
        match client.next_event().await.expect("client") {
            Event::AssociationUp { .. } => up += 1,
            Event::AssociationDown { assoc, reason } => panic!("{assoc} down: {reason}"),
            Event::Message(_) => {}
        }
    }

    let payload = Bytes::from(vec![0x5au8; a.size]);
    let total = a.assocs * a.rounds;
    let mut sent_at: std::collections::HashMap<u64, std::collections::VecDeque<Instant>> =
        std::collections::HashMap::new();
    let mut remaining: std::collections::HashMap<u64, usize> = ids
        .iter()
        .map(|id| (id.0, a.rounds.saturating_sub(a.depth.min(a.rounds))))
        .collect();
    let mut rtts = Vec::with_capacity(total);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    for id in &ids {
        for _ in 0..a.depth.min(a.rounds) {
            sent_at.entry(id.0).or_default().push_back(Instant::now());
            client
                .send(*id, 0, Ppid::ASAP, false, payload.clone())
                .await
                .expect("send");
        }
    }
    while rtts.len() < total {
        match client.next_event().await.expect("client") {
            Event::Message(m) => {
                if let Some(t) = sent_at.get_mut(&m.assoc.0).and_then(|q| q.pop_front()) {
                    rtts.push(t.elapsed());
                }
                let left = remaining.get_mut(&m.assoc.0).expect("known");
                if *left > 0 {
                    *left -= 1;
                    sent_at
                        .entry(m.assoc.0)
                        .or_default()
                        .push_back(Instant::now());
                    client
                        .send(m.assoc, 0, Ppid::ASAP, false, payload.clone())
                        .await
                        .expect("send");
                }
            }
            Event::AssociationDown { assoc, reason } => panic!("{assoc} down: {reason}"),
            Event::AssociationUp { .. } => {}
        }
    }
    let wall = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let cstats = client.stats();
    drop(client);

    rtts.sort_unstable();
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
    let rate = total as f64 / wall.as_secs_f64();
    let cpu_per_rt = cpu.as_secs_f64() * 1e6 / total as f64;
    println!("Transport benchmark: userland SCTP over UDP, loopback, one process");
    println!(
        "associations {}  round trips/assoc {}  message {} B  in flight/assoc {}  runtime: {}",
        a.assocs,
        a.rounds,
        a.size,
        a.depth,
        if a.threads == 0 {
            "one single-threaded runtime per endpoint, each in its own thread".to_string()
        } else {
            format!("both endpoints on one runtime with {} workers", a.threads)
        }
    );
    println!("| metric | value |");
    println!("|---|---|");
    println!("| round trips | {total} |");
    println!("| wall time | {:.3} s |", wall.as_secs_f64());
    println!("| round trips/s | {rate:.0} |");
    println!(
        "| latency p50 / p90 / p99 | {:.3} / {:.3} / {:.3} ms |",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    println!(
        "| CPU (user+sys, both endpoints) | {:.3} s = {:.1} us per round trip, {:.1} us per message |",
        cpu.as_secs_f64(),
        cpu_per_rt,
        cpu_per_rt / 2.0
    );
    cstats
}

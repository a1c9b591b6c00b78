//! The whole stack in one process: a registrar, a pool element and a pool
//! user, each a sans-IO machine driven by the tokio runtime, talking over the
//! in-memory transport and over real UDP sockets (SCTP over UDP, RFC 6951).
//! The PE registers, the PU resolves the pool and gets the PE.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_core::registrar::{Registrar, RegistrarConfig, RegistrarEvent};
use rserpool_core::{
    HuntConfig, Instant, Machine, PoolElement, PoolElementConfig, PoolElementEvent, PoolUser,
    PoolUserConfig, PoolUserEvent,
};
use rserpool_net::runtime::{self, Command, Endpoints};
use rserpool_net::transport::memory::MemoryNetwork;
use rserpool_net::transport::udp::{UdpConfig, UdpTransport};
use rserpool_net::transport::{EndpointConfig, Transport};
use rserpool_wire::{Policy, PoolHandle, TransportAddress, TransportUse, UserTransport};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Running<M: Machine> {
    commands: mpsc::Sender<Command<M>>,
    events: mpsc::UnboundedReceiver<M::Event>,
}

fn spawn<M, T>(machine: M, endpoints: Endpoints<T>) -> Running<M>
where
    M: Machine + Send + 'static,
    M::Event: Debug + Send + 'static,
    T: Transport,
{
    let (ctx, crx) = mpsc::channel(16);
    let (etx, erx) = mpsc::unbounded_channel();
    tokio::spawn(runtime::run(machine, endpoints, None, crx, etx));
    Running {
        commands: ctx,
        events: erx,
    }
}

async fn wait_for<E: Debug>(
    rx: &mut mpsc::UnboundedReceiver<E>,
    what: &str,
    f: impl Fn(&E) -> bool,
) -> E {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = rx.recv().await.expect("runtime stopped");
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Runs the scenario with endpoints made by `bind` (ASAP of the registrar,
/// ENRP of the registrar, PE, PU).
async fn register_and_resolve<T: Transport>(
    registrar_asap: T,
    registrar_enrp: T,
    pe: T,
    pu: T,
    pe_addr: SocketAddr,
) {
    let registrar_addr = registrar_asap.local_addrs();
    let pool = PoolHandle::try_from("EchoPool").unwrap();
    let registrar = Registrar::new(
        RegistrarConfig {
            asap_addresses: registrar_addr.clone(),
            enrp_addresses: registrar_enrp.local_addrs(),
            announce: false,
            ..RegistrarConfig::default()
        },
        1,
        Instant::ZERO,
    )
    .unwrap();
    let mut reg = spawn(
        registrar,
        Endpoints {
            asap: registrar_asap,
            enrp: Some(registrar_enrp),
        },
    );
    let hunt = HuntConfig {
        registrars: vec![registrar_addr],
        ..HuntConfig::default()
    };
    let mut pe_cfg = PoolElementConfig::new(
        pool.clone(),
        UserTransport::Address(TransportAddress::sctp(
            pe_addr.port(),
            TransportUse::DataOnly,
            vec![pe_addr.ip()],
        )),
        Policy::LeastUsed { load: 7 },
    );
    pe_cfg.hunt = hunt.clone();
    let pe_machine = PoolElement::new(pe_cfg, ChaCha8Rng::seed_from_u64(2), Instant::ZERO).unwrap();
    let pe_id = pe_machine.pe_id();
    let mut pe_run = spawn(
        pe_machine,
        Endpoints {
            asap: pe,
            enrp: None,
        },
    );
    wait_for(&mut pe_run.events, "registration", |e| {
        matches!(e, PoolElementEvent::Registered { .. })
    })
    .await;
    wait_for(&mut reg.events, "registrar's record", |e| {
        matches!(e, RegistrarEvent::Registered { .. })
    })
    .await;

    let pu_machine = PoolUser::new(
        PoolUserConfig {
            hunt,
            ..PoolUserConfig::default()
        },
        ChaCha8Rng::seed_from_u64(3),
        Instant::ZERO,
    )
    .unwrap();
    let mut pu_run = spawn(
        pu_machine,
        Endpoints {
            asap: pu,
            enrp: None,
        },
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let p = pool.clone();
    pu_run
        .commands
        .send(Box::new(move |pu: &mut PoolUser, now| {
            let _ = tx.send(pu.resolve(now, p));
        }))
        .await
        .unwrap();
    let request = rx.await.unwrap();
    wait_for(
        &mut pu_run.events,
        "resolution",
        |e| matches!(e, PoolUserEvent::Resolved { request: r, .. } if *r == request),
    )
    .await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    pu_run
        .commands
        .send(Box::new(move |pu: &mut PoolUser, _| {
            let _ = tx.send(pu.select(&pool));
        }))
        .await
        .unwrap();
    let selected = rx.await.unwrap().expect("a PE");
    assert_eq!(selected.id, pe_id);
    assert_eq!(selected.policy, Policy::LeastUsed { load: 7 });
}

#[tokio::test]
async fn register_and_resolve_over_memory() {
    let net = MemoryNetwork::new();
    let bind = |a: &str| net.bind(EndpointConfig::server([addr(a)])).unwrap();
    register_and_resolve(
        bind("10.0.0.1:3863"),
        bind("10.0.0.1:9901"),
        bind("10.0.0.2:4000"),
        bind("10.0.0.3:4000"),
        addr("10.0.0.2:5000"),
    )
    .await;
}

#[tokio::test]
async fn register_and_resolve_over_sctp_over_udp() {
    // Every node on its own loopback address, all on the standard UDP port
    // 9899 (RFC 6951), as hosts on a network would be.
    let bind = |a: &str| {
        UdpTransport::bind(EndpointConfig::server([addr(a)]), UdpConfig::default()).unwrap()
    };
    register_and_resolve(
        bind("127.0.10.1:3863"),
        bind("127.0.10.11:9901"),
        bind("127.0.10.2:4000"),
        bind("127.0.10.3:4000"),
        addr("127.0.10.2:5000"),
    )
    .await;
}

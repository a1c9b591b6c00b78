//! Simulator throughput, printed as tables (`cargo bench -p rserpool-sim`):
//! the world alone (probe machines: 5 servers, clients each talking to one
//! server every second, the servers announcing every second), and the real
//! roles (5 registrars, 1,000 pool elements, pool users resolving every
//! second), each for 10 minutes of virtual time; `-- scale`: 20 registrars
//! and 60,000 pool elements for 2 minutes.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{ProbeConfig, pinger, probe};
use rserpool_core::Instant;
use rserpool_sim::{Announces, NodeSpec, ScenarioBuilder, Workload, WorldBuilder};
use rserpool_wire::PoolHandle;
use std::time::{Duration, Instant as WallClock};

fn run(servers: usize, clients: usize, virtual_secs: u64, trace: bool) {
    let mut b = WorldBuilder::new(1);
    b.config_mut().trace = trace;
    let server_ids = b.group(
        servers,
        |i| NodeSpec::new(format!("server{i}"), 9901),
        probe(ProbeConfig {
            echo: true,
            announce: Some(Duration::from_secs(1)),
            ..Default::default()
        }),
    );
    let targets: Vec<_> = server_ids.iter().map(|&s| b.addrs(s).to_vec()).collect();
    for i in 0..clients {
        let cfg = pinger(&targets[i % servers], Duration::from_secs(1), u32::MAX);
        b.node(
            NodeSpec::new(format!("client{i}"), 3863).announces(Announces::ALL),
            probe(cfg),
        );
    }
    let mut world = b.build();
    let start = WallClock::now();
    world.run_for(Duration::from_secs(virtual_secs));
    let wall = start.elapsed();
    let stats = world.stats();
    println!(
        "{:>7} {:>7} {:>8} {:>6} {:>12} {:>12} {:>9.2} {:>12.0}",
        servers,
        clients,
        virtual_secs,
        trace,
        stats.events,
        stats.delivered + stats.announces_delivered,
        wall.as_secs_f64(),
        stats.events as f64 / wall.as_secs_f64()
    );
}

fn roles(registrars: usize, pes: usize, pus: usize, virtual_secs: u64) {
    let pool = PoolHandle::try_from("EchoPool").expect("valid handle");
    let mut b = ScenarioBuilder::new(1);
    b.config_mut().trace = false;
    b.registrars(registrars, |_| {});
    b.pool_elements(pes, &pool, |_| {});
    let workload = Workload {
        pool_handle: pool.clone(),
        interval: Duration::from_secs(1),
        first: Duration::from_secs(10),
    };
    b.pool_users(pus, Some(workload), |_| {});
    let mut s = b.build();
    let start = WallClock::now();
    s.world
        .run_until(Instant::from_epoch(Duration::from_secs(virtual_secs)));
    let wall = start.elapsed();
    let stats = s.world.stats();
    println!(
        "{:>10} {:>6} {:>5} {:>8} {:>12} {:>12} {:>10} {:>9.2} {:>12.0}",
        registrars,
        pes,
        pus,
        virtual_secs,
        stats.events,
        stats.sent_total().messages,
        s.registered(),
        wall.as_secs_f64(),
        stats.events as f64 / wall.as_secs_f64()
    );
}

fn main() {
    // `cargo bench -p rserpool-sim -- roles` runs the second table only;
    // `-- scale` only 20 registrars and 60,000 PEs (the most a role may have)
    // for 120 s.
    let only_roles = std::env::args().any(|a| a == "roles");
    let scale = std::env::args().any(|a| a == "scale");
    if scale {
        println!(
            "{:>10} {:>6} {:>5} {:>8} {:>12} {:>12} {:>10} {:>9} {:>12}",
            "registrars",
            "PEs",
            "PUs",
            "virt s",
            "events",
            "messages",
            "registered",
            "wall s",
            "events/s"
        );
        roles(20, 60_000, 0, 120);
        return;
    }
    if !only_roles {
        world_table();
        println!();
    }
    println!(
        "{:>10} {:>6} {:>5} {:>8} {:>12} {:>12} {:>10} {:>9} {:>12}",
        "registrars",
        "PEs",
        "PUs",
        "virt s",
        "events",
        "messages",
        "registered",
        "wall s",
        "events/s"
    );
    roles(5, 100, 10, 600);
    roles(5, 1000, 10, 600);
}

fn world_table() {
    println!(
        "{:>7} {:>7} {:>8} {:>6} {:>12} {:>12} {:>9} {:>12}",
        "servers", "clients", "virt s", "trace", "events", "deliveries", "wall s", "events/s"
    );
    run(5, 100, 600, true);
    run(5, 1000, 600, false);
    run(5, 1000, 600, true);
}

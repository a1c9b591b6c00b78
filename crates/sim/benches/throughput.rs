//! Simulator throughput: a scenario shaped like the takeover experiment
//! (5 servers, 1,000 clients each talking to one server every second, the
//! servers announcing every second) run for 10 minutes of virtual time.
//! Prints a table; run with `cargo bench -p rserpool-sim`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{ProbeConfig, pinger, probe};
use rserpool_sim::{Announces, NodeSpec, WorldBuilder};
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

fn main() {
    println!(
        "{:>7} {:>7} {:>8} {:>6} {:>12} {:>12} {:>9} {:>12}",
        "servers", "clients", "virt s", "trace", "events", "deliveries", "wall s", "events/s"
    );
    run(5, 100, 600, true);
    run(5, 1000, 600, false);
    run(5, 1000, 600, true);
}

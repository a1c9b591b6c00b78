//! The world itself, exercised with the probe machine: determinism, the
//! link model, partitions, crashes, closes and the guards.

mod common;

use common::{Probe, ProbeConfig, ProbeEvent, echo, pinger, probe};
use rserpool_core::{Destination, DownReason, Instant, Machine, Transmit};
use rserpool_sim::{
    Announces, CrashMode, Happening, LinkConfig, NodeId, NodeSpec, World, WorldBuilder, WorldConfig,
};
use rserpool_wire::{AsapMessage, Message, PoolHandle};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

fn at(d: Duration) -> Instant {
    Instant::from_epoch(d)
}

fn config(link: LinkConfig) -> WorldConfig {
    WorldConfig {
        link,
        ..WorldConfig::default()
    }
}

fn link(delay: Duration, jitter: Duration, loss: f64) -> LinkConfig {
    LinkConfig {
        delay,
        jitter,
        loss,
    }
}

/// The probe events of `node`, with their times.
fn events(w: &World<Probe>, node: NodeId) -> Vec<(Instant, ProbeEvent)> {
    w.trace()
        .iter()
        .filter(|e| e.node == node)
        .filter_map(|e| match &e.what {
            Happening::Event(ev) => Some((e.at, ev.clone())),
            _ => None,
        })
        .collect()
}

fn downs(w: &World<Probe>, node: NodeId) -> Vec<(Instant, DownReason)> {
    events(w, node)
        .into_iter()
        .filter_map(|(t, e)| match e {
            ProbeEvent::Down { reason, .. } => Some((t, reason)),
            _ => None,
        })
        .collect()
}

fn ups(w: &World<Probe>, node: NodeId) -> Vec<Instant> {
    events(w, node)
        .into_iter()
        .filter_map(|(t, e)| matches!(e, ProbeEvent::Up { .. }).then_some(t))
        .collect()
}

fn pongs(w: &World<Probe>, node: NodeId) -> Vec<(u32, Duration)> {
    events(w, node)
        .into_iter()
        .filter_map(|(_, e)| match e {
            ProbeEvent::Pong { seq, rtt } => Some((seq, rtt)),
            _ => None,
        })
        .collect()
}

fn pinged(w: &World<Probe>, node: NodeId) -> Vec<u32> {
    events(w, node)
        .into_iter()
        .filter_map(|(_, e)| match e {
            ProbeEvent::Pinged { seq, .. } => Some(seq),
            _ => None,
        })
        .collect()
}

/// One echo server and one pinger.
fn pair(
    seed: u64,
    cfg: WorldConfig,
    interval: Duration,
    count: u32,
) -> (World<Probe>, NodeId, NodeId) {
    let mut b = WorldBuilder::new(seed).with_config(cfg);
    let server = b.node(NodeSpec::new("echo", 3863), probe(echo()));
    let to = b.addrs(server).to_vec();
    let client = b.node(
        NodeSpec::new("pinger", 4000),
        probe(pinger(&to, interval, count)),
    );
    (b.build(), server, client)
}

fn busy_world(seed: u64) -> World<Probe> {
    let mut b = WorldBuilder::new(seed).with_config(config(link(5 * MS, 3 * MS, 0.05)));
    let server = b.node(
        NodeSpec::new("echo", 3863),
        probe(ProbeConfig {
            echo: true,
            announce: Some(S),
            ..Default::default()
        }),
    );
    let to = b.addrs(server).to_vec();
    b.group(
        4,
        |i| NodeSpec::new(format!("pinger{i}"), 4000),
        probe(pinger(&to, 100 * MS, u32::MAX)),
    );
    let mut w = b.build();
    w.run_for(30 * S);
    w
}

#[test]
fn same_seed_same_run_different_seed_different_run() {
    let a = busy_world(7);
    let b = busy_world(7);
    let c = busy_world(8);
    assert!(a.trace().len() > 1000, "a busy run: {}", a.trace().len());
    assert_eq!(a.trace(), b.trace(), "seed 7 twice");
    assert_eq!(a.stats(), b.stats(), "seed 7 twice");
    assert_ne!(a.trace(), c.trace(), "seeds 7 and 8");
}

#[test]
fn machines_get_distinct_seeds_derived_from_the_world_seed() {
    let w = busy_world(3);
    let mut seeds: Vec<u64> = w
        .nodes()
        .map(|n| match events(&w, n)[0].1 {
            ProbeEvent::Born { seed } => seed,
            ref e => panic!("first event {e:?}"),
        })
        .collect();
    assert_eq!(seeds[0], rserpool_sim::machine_seed(3, 0, 0));
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), 5);
}

#[test]
fn delays_follow_the_link_model_and_order_is_kept() {
    let seed = 11;
    let (mut w, server, client) = pair(seed, config(link(10 * MS, 4 * MS, 0.0)), 20 * MS, 1000);
    w.run_for(60 * S);
    let p = pongs(&w, client);
    assert_eq!(p.len(), 1000, "seed {seed}");
    // The first ping also waits for the handshake (one more round trip).
    let rtts: Vec<Duration> = p[1..].iter().map(|(_, r)| *r).collect();
    assert!(
        p[0].1 >= 40 * MS && p[0].1 <= 56 * MS,
        "seed {seed}: {:?}",
        p[0]
    );
    for r in &rtts {
        assert!(*r >= 20 * MS && *r <= 28 * MS, "seed {seed}: rtt {r:?}");
    }
    let mean = rtts.iter().sum::<Duration>() / rtts.len() as u32;
    assert!(
        mean > 23500 * Duration::from_micros(1) && mean < 24500 * Duration::from_micros(1),
        "seed {seed}: mean rtt {mean:?}"
    );
    let seqs = pinged(&w, server);
    assert!(
        seqs.windows(2).all(|s| s[0] < s[1]),
        "seed {seed}: out of order"
    );
    assert_eq!(w.stats().associations_up, 1);
    assert_eq!(w.stats().retransmissions, 0);
}

#[test]
fn loss_costs_retransmission_delay_but_never_a_message() {
    let seed = 12;
    let loss = 0.1;
    // Pings far enough apart that a retransmission never holds up the next
    // one behind it (ordered delivery blocks the head of the line).
    let (mut w, server, client) = pair(
        seed,
        config(link(10 * MS, Duration::ZERO, loss)),
        5 * S,
        2000,
    );
    w.run_for(20_000 * S);
    let p = pongs(&w, client);
    assert_eq!(p.len(), 2000, "seed {seed}: reliable");
    let seqs = pinged(&w, server);
    assert_eq!(
        seqs,
        (1..=2000).collect::<Vec<_>>(),
        "seed {seed}: in order"
    );
    // Expected losses per transfer with the cap of 4: p + p^2 + p^3 + p^4.
    let expected = loss + loss.powi(2) + loss.powi(3) + loss.powi(4);
    let transfers = 2.0 * 2000.0 + 2.0;
    let per_transfer = w.stats().retransmissions as f64 / transfers;
    assert!(
        (per_transfer - expected).abs() < 0.02,
        "seed {seed}: {per_transfer} retransmissions per transfer, expected {expected}"
    );
    // A round trip is slow (>= 1 s) when either direction lost its packet.
    let slow = p.iter().filter(|(_, r)| *r >= S).count() as f64 / p.len() as f64;
    let expected_slow = 1.0 - (1.0 - loss) * (1.0 - loss);
    assert!(
        (slow - expected_slow).abs() < 0.03,
        "seed {seed}: {slow} slow round trips, expected {expected_slow}"
    );
}

#[test]
fn announces_reach_listeners_and_are_lost_independently() {
    let seed = 13;
    let mut b = WorldBuilder::new(seed).with_config(config(link(MS, MS, 0.2)));
    let announcer = b.node(
        NodeSpec::new("announcer", 3863),
        probe(ProbeConfig {
            announce: Some(S),
            ..Default::default()
        }),
    );
    let listeners = b.group(
        10,
        |i| NodeSpec::new(format!("l{i}"), 4000),
        probe(ProbeConfig::default()),
    );
    let deaf = b.node(
        NodeSpec::new("deaf", 4000).announces(Announces::NONE),
        probe(ProbeConfig::default()),
    );
    let mut w = b.build();
    w.run_for(Duration::from_millis(199_500));
    let announced = 200;
    let heard: usize = listeners
        .iter()
        .map(|&n| {
            events(&w, n)
                .iter()
                .filter(|(_, e)| matches!(e, ProbeEvent::Heard { .. }))
                .count()
        })
        .sum();
    let rate = heard as f64 / (announced * listeners.len()) as f64;
    assert!(
        (rate - 0.8).abs() < 0.03,
        "seed {seed}: delivery rate {rate}"
    );
    assert_eq!(w.stats().announces_delivered as usize, heard);
    assert_eq!(
        w.stats().announces_lost as usize + heard,
        announced * listeners.len(),
        "seed {seed}"
    );
    assert_eq!(events(&w, deaf).len(), 1, "only Born");
    let from = w.addrs(announcer)[0];
    assert!(
        events(&w, listeners[0])
            .iter()
            .any(|(_, e)| matches!(e, ProbeEvent::Heard { from: f, .. } if *f == from))
    );
}

#[test]
fn a_short_partition_delays_but_keeps_the_association() {
    let seed = 14;
    let (mut w, server, client) = pair(seed, config(link(MS, Duration::ZERO, 0.0)), 100 * MS, 100);
    w.run_until(at(3 * S));
    w.partition(&[&[server]]);
    w.run_until(at(5 * S));
    w.heal();
    w.run_for(20 * S);
    assert!(downs(&w, client).is_empty(), "seed {seed}");
    assert!(downs(&w, server).is_empty(), "seed {seed}");
    let p = pongs(&w, client);
    assert_eq!(p.len(), 100, "seed {seed}");
    assert!(p.iter().any(|(_, r)| *r >= S), "some waited for the heal");
    assert_eq!(pinged(&w, server), (1..=100).collect::<Vec<_>>());
}

#[test]
fn a_long_partition_takes_the_association_down_at_both_ends_within_the_bound() {
    let seed = 15;
    let (mut w, server, client) = pair(seed, config(link(MS, Duration::ZERO, 0.0)), 100 * MS, 1000);
    w.run_until(at(10 * S));
    w.isolate(client);
    w.run_until(at(30 * S));
    let bound = w.config().transport.failure_detection;
    for node in [client, server] {
        let d = downs(&w, node);
        assert_eq!(d[0].1, DownReason::Lost, "seed {seed}: {d:?}");
        assert!(
            d[0].0 >= at(10 * S) && d[0].0 <= at(10 * S + bound),
            "seed {seed}: {d:?}"
        );
    }
    // The server opens nothing; the pinger's new opens fail while cut off.
    assert_eq!(downs(&w, server).len(), 1);
    let d = downs(&w, client);
    assert!(d.len() > 2 && d[1..].iter().all(|x| x.1 == DownReason::HandshakeFailed));
    w.heal();
    w.run_for(5 * S);
    // The pinger's next ping opens a new association.
    assert_eq!(ups(&w, client).len(), 2, "seed {seed}");
    assert_eq!(ups(&w, server).len(), 2, "seed {seed}");
    let last = pongs(&w, client).last().copied().expect("pongs");
    assert!(last.1 < 10 * MS, "fresh pong {last:?}");
}

#[test]
fn a_cut_link_separates_only_its_two_nodes() {
    let seed = 16;
    let mut b = WorldBuilder::new(seed).with_config(config(link(MS, Duration::ZERO, 0.0)));
    let server = b.node(NodeSpec::new("echo", 3863), probe(echo()));
    let to = b.addrs(server).to_vec();
    let a = b.node(NodeSpec::new("a", 4000), probe(pinger(&to, 100 * MS, 1000)));
    let c = b.node(NodeSpec::new("c", 4000), probe(pinger(&to, 100 * MS, 1000)));
    let mut w = b.build();
    w.run_until(at(S));
    w.cut(server, a);
    w.run_until(at(20 * S));
    assert_eq!(downs(&w, a).first().map(|d| d.1), Some(DownReason::Lost));
    assert!(downs(&w, c).is_empty(), "seed {seed}");
    w.restore(a, server);
    w.run_for(10 * S);
    assert_eq!(ups(&w, a).len(), 2, "seed {seed}: reconnected");
}

#[test]
fn a_host_crash_is_detected_as_lost_within_the_bound_and_restart_reseeds() {
    let seed = 17;
    let (mut w, server, client) = pair(seed, config(link(MS, Duration::ZERO, 0.0)), 100 * MS, 1000);
    w.run_until(at(5 * S));
    assert!(w.crash(server, CrashMode::Host));
    assert!(!w.is_running(server));
    w.run_until(at(20 * S));
    let bound = w.config().transport.failure_detection;
    let d = downs(&w, client);
    assert_eq!(d[0].1, DownReason::Lost, "seed {seed}: {d:?}");
    assert!(
        d[0].0 > at(5 * S) && d[0].0 <= at(5 * S + bound),
        "seed {seed}: {d:?}"
    );
    // While the host is down, opens fail after the handshake timeout.
    assert!(
        d[1..]
            .iter()
            .all(|(_, r)| *r == DownReason::HandshakeFailed)
            && d.len() >= 2,
        "seed {seed}: {d:?}"
    );
    w.restart(server);
    assert_eq!(w.starts(server), 2);
    w.run_for(10 * S);
    let born: Vec<u64> = events(&w, server)
        .iter()
        .filter_map(|(_, e)| match e {
            ProbeEvent::Born { seed } => Some(*seed),
            _ => None,
        })
        .collect();
    assert_eq!(born.len(), 2);
    assert_ne!(born[0], born[1], "a restart gets a new seed");
    assert!(
        ups(&w, server).len() >= 2,
        "seed {seed}: the pinger came back"
    );
    assert!(pongs(&w, client).last().unwrap().0 > 190);
}

#[test]
fn a_host_back_before_detection_aborts_what_its_peers_still_have() {
    let seed = 24;
    let (mut w, server, client) = pair(
        seed,
        config(link(10 * MS, Duration::ZERO, 0.0)),
        100 * MS,
        1000,
    );
    w.run_until(at(5 * S));
    w.crash(server, CrashMode::Host);
    w.run_until(at(6 * S));
    assert!(
        downs(&w, client).is_empty(),
        "seed {seed}: not detected yet"
    );
    w.restart(server);
    w.run_until(at(7 * S));
    let d = downs(&w, client);
    // The restarted host answers the old association's next packet with ABORT.
    assert_eq!(
        d[0],
        (at(6 * S + 10 * MS), DownReason::Aborted),
        "seed {seed}: {d:?}"
    );
    assert_eq!(
        ups(&w, client).len(),
        2,
        "seed {seed}: reconnected to the new incarnation"
    );
}

#[test]
fn a_process_crash_is_aborted_by_the_kernel_at_once() {
    let seed = 18;
    let (mut w, server, client) = pair(
        seed,
        config(link(10 * MS, Duration::ZERO, 0.0)),
        100 * MS,
        1000,
    );
    w.run_until(at(5 * S));
    w.crash(server, CrashMode::Process);
    w.run_until(at(6 * S));
    let d = downs(&w, client);
    assert_eq!(
        d[0],
        (at(5 * S + 10 * MS), DownReason::Aborted),
        "seed {seed}"
    );
    // New opens are answered with ABORT: they fail after one round trip.
    assert!(d.len() > 5, "seed {seed}: {d:?}");
    assert!(
        d[1..]
            .iter()
            .all(|(_, r)| *r == DownReason::HandshakeFailed)
    );
}

#[test]
fn graceful_close_delivers_everything_first() {
    let seed = 19;
    let (mut w, server, client) = pair(seed, config(link(MS, MS, 0.0)), S, 1);
    w.run_until(at(100 * MS));
    let assoc = *w.machine(client).unwrap().up.keys().next().expect("up");
    w.act(client, |m, now| {
        for _ in 0..5 {
            m.ping(now);
        }
        m.close(assoc, false);
        // Sends after the close are refused, not delivered.
        m.push(Transmit::Send {
            to: Destination::Association(assoc),
            message: Message::Asap(AsapMessage::EndpointUnreachable {
                pool_handle: PoolHandle::try_from("x").unwrap(),
                pe_id: rserpool_wire::PeId(9),
            }),
        });
    });
    w.run_for(S);
    assert_eq!(
        pinged(&w, server),
        (1..=6).collect::<Vec<_>>(),
        "seed {seed}"
    );
    assert_eq!(
        pongs(&w, client).len(),
        6,
        "pongs queued before the ack arrive"
    );
    assert_eq!(
        downs(&w, server).iter().map(|d| d.1).collect::<Vec<_>>(),
        [DownReason::Graceful]
    );
    assert_eq!(
        downs(&w, client).iter().map(|d| d.1).collect::<Vec<_>>(),
        [DownReason::Graceful]
    );
    let last_pong = events(&w, client)
        .iter()
        .rposition(|(_, e)| matches!(e, ProbeEvent::Pong { .. }))
        .unwrap();
    let down = events(&w, client)
        .iter()
        .position(|(_, e)| matches!(e, ProbeEvent::Down { .. }))
        .unwrap();
    assert!(last_pong < down);
    assert_eq!(w.stats().refused, 1);
    assert_eq!(w.associations(client), 0);
    assert_eq!(w.associations(server), 0);
}

#[test]
fn abort_tells_the_aborter_at_once_and_the_peer_one_packet_later() {
    let seed = 20;
    let (mut w, server, client) = pair(seed, config(link(10 * MS, Duration::ZERO, 0.0)), S, 1);
    w.run_until(at(100 * MS));
    let assoc = *w.machine(client).unwrap().up.keys().next().expect("up");
    w.act(client, |m, _| m.close(assoc, true));
    w.run_for(S);
    assert_eq!(downs(&w, client), [(at(100 * MS), DownReason::Aborted)]);
    assert_eq!(downs(&w, server), [(at(110 * MS), DownReason::Aborted)]);
    assert_eq!(w.stats().down(DownReason::Aborted), 2);
}

#[test]
fn an_address_nobody_has_fails_the_handshake_after_the_timeout() {
    let seed = 21;
    let nowhere = "192.0.2.1:9".parse().unwrap();
    let mut b = WorldBuilder::new(seed);
    let client = b.node(
        NodeSpec::new("pinger", 4000),
        probe(pinger(&[nowhere], 100 * MS, 3)),
    );
    let mut w = b.build();
    w.run_for(10 * S);
    let timeout = w.config().transport.handshake_timeout;
    assert_eq!(
        downs(&w, client),
        [(at(timeout), DownReason::HandshakeFailed)]
    );
    assert_eq!(w.stats().dropped, 3);
}

#[test]
fn simultaneous_opens_make_one_association() {
    let seed = 22;
    let mut b = WorldBuilder::new(seed).with_config(config(link(5 * MS, Duration::ZERO, 0.0)));
    let addr_a = "10.9.0.1:4000".parse().unwrap();
    let addr_b = "10.9.0.2:4000".parse().unwrap();
    let both = |to| ProbeConfig {
        echo: true,
        ..pinger(&[to], S, 3)
    };
    let a = b.node(
        NodeSpec::new("a", 0).addrs(vec![addr_a]),
        probe(both(addr_b)),
    );
    let c = b.node(
        NodeSpec::new("b", 0).addrs(vec![addr_b]),
        probe(both(addr_a)),
    );
    let mut w = b.build();
    w.run_for(10 * S);
    assert_eq!(w.stats().associations_opened, 1, "seed {seed}");
    assert_eq!(ups(&w, a).len(), 1);
    assert_eq!(ups(&w, c).len(), 1);
    assert_eq!(pongs(&w, a).len(), 3);
    assert_eq!(pongs(&w, c).len(), 3);
}

#[test]
fn staggered_and_stopped_nodes_start_when_told() {
    let mut b = WorldBuilder::new(23);
    let late = b.node(
        NodeSpec::new("late", 1).start_at(at(5 * S)),
        probe(ProbeConfig::default()),
    );
    let stopped = b.node(
        NodeSpec::new("stopped", 1).stopped(),
        probe(ProbeConfig::default()),
    );
    let mut w = b.build();
    w.run_until(at(4 * S));
    assert!(!w.is_running(late));
    w.run_until(at(5 * S));
    assert!(w.is_running(late));
    assert!(!w.is_running(stopped));
    w.restart(stopped);
    assert!(w.is_running(stopped));
    assert_eq!(w.node_named("late"), Some(late));
    assert_eq!(w.node_at(w.addrs(stopped)[0]), Some(stopped));
}

/// Asks to be woken at time zero forever.
struct Stuck;

impl Machine for Stuck {
    type Event = ();
    fn handle_data(&mut self, _: Instant, _: rserpool_core::AssocId, _: u32, _: bytes::Bytes) {}
    fn handle_association(&mut self, _: Instant, _: rserpool_core::AssociationEvent) {}
    fn handle_announce(&mut self, _: Instant, _: std::net::SocketAddr, _: u32, _: bytes::Bytes) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(Instant::ZERO)
    }
}

#[test]
#[should_panic(expected = "seed 99: more than 1000 events at t+1.000s")]
fn a_livelock_panics_naming_the_seed() {
    let mut b = WorldBuilder::new(99);
    b.config_mut().max_events_per_instant = 1000;
    b.node(NodeSpec::new("stuck", 1).start_at(at(S)), |_| Stuck);
    b.build().run_for(2 * S);
}

#[test]
#[should_panic(expected = "seed 5: at t+0.000s node#0 (bad) sent a message that does not encode")]
fn an_unencodable_message_fails_the_run() {
    let mut b = WorldBuilder::new(5);
    let bad = b.node(NodeSpec::new("bad", 1), probe(ProbeConfig::default()));
    let mut w = b.build();
    w.step();
    w.act(bad, |m, _| {
        m.push(Transmit::Announce {
            message: Message::Asap(AsapMessage::BusinessCard {
                pool_handle: PoolHandle::try_from("p").unwrap(),
                policy: None,
                pool_elements: vec![],
            }),
        })
    });
}

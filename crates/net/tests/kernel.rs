//! Kernel SCTP backend tests that need a real SCTP stack: behaviour the
//! backend-generic conformance suite cannot express (multi-homing, kernel
//! peers with default settings, partial delivery of large messages).
//!
//! Hosts without the `sctp` module skip each test with a printed reason.
//! `scripts/vm/run-kernel-tests.sh` runs them in a VM with
//! `RSERPOOL_REQUIRE_KERNEL_SCTP=1`, which turns a skip into a failure so a
//! broken VM cannot pass silently.
#![cfg(target_os = "linux")]

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rserpool_net::transport::kernel::{KernelTransport, probe};
use rserpool_net::transport::{
    AssociationId, CloseMode, CloseReason, EndpointConfig, Event, Ppid, Side, Transport,
    TransportConfig, TransportError,
};

/// True if kernel SCTP is usable; otherwise prints why the test is skipped
/// (or fails when the environment demands kernel SCTP).
fn kernel_sctp(test: &str) -> bool {
    match probe() {
        Ok(()) => true,
        Err(e) if std::env::var_os("RSERPOOL_REQUIRE_KERNEL_SCTP").is_some() => {
            panic!("{test}: kernel SCTP required but unavailable: {e}")
        }
        Err(e) => {
            // Straight to the stream: libtest captures eprintln! of passing
            // tests, and a skip must not look like a pass.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: kernel SCTP unavailable ({e}); scripts/vm/run-kernel-tests.sh runs it"
            );
            false
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

async fn next(t: &mut KernelTransport) -> Event {
    tokio::time::timeout(Duration::from_secs(20), t.next_event())
        .await
        .expect("no event within 20 s")
        .expect("endpoint failed")
}

async fn expect_up(t: &mut KernelTransport) -> (AssociationId, Side, Vec<SocketAddr>) {
    match next(t).await {
        Event::AssociationUp {
            assoc,
            side,
            peer_addrs,
        } => (assoc, side, peer_addrs),
        other => panic!("expected AssociationUp, got {other:?}"),
    }
}

async fn expect_down(t: &mut KernelTransport) -> (AssociationId, CloseReason) {
    match next(t).await {
        Event::AssociationDown { assoc, reason } => (assoc, reason),
        other => panic!("expected AssociationDown, got {other:?}"),
    }
}

async fn expect_msg(t: &mut KernelTransport) -> rserpool_net::transport::Message {
    match next(t).await {
        Event::Message(m) => m,
        other => panic!("expected Message, got {other:?}"),
    }
}

/// A listening server and a client with one association between them.
async fn pair(
    server_addrs: &[&str],
    server_cfg: TransportConfig,
) -> (
    KernelTransport,
    AssociationId,
    KernelTransport,
    AssociationId,
) {
    let mut server = KernelTransport::bind(
        EndpointConfig::server(server_addrs.iter().map(|s| addr(s))).with_transport(server_cfg),
    )
    .expect("bind server");
    let mut client = KernelTransport::bind(EndpointConfig::client([])).expect("bind client");
    let target = server.local_addrs();
    let c = client.connect(&target).await.expect("connect");
    let (up, side, peers) = expect_up(&mut client).await;
    assert_eq!((up, side), (c, Side::Client));
    assert!(
        target.iter().all(|a| peers.contains(a)),
        "client sees {peers:?}, server bound {target:?}"
    );
    let (s, side, _) = expect_up(&mut server).await;
    assert_eq!(side, Side::Server);
    (server, s, client, c)
}

#[tokio::test]
async fn kernel_messages_ppid_streams_and_graceful_close() {
    if !kernel_sctp("kernel_messages_ppid_streams_and_graceful_close") {
        return;
    }
    let (mut server, s, mut client, c) = pair(&["127.0.0.1:0"], TransportConfig::default()).await;
    client
        .send(c, 3, Ppid::ASAP, false, Bytes::from_static(b"request"))
        .await
        .unwrap();
    let m = expect_msg(&mut server).await;
    assert_eq!(
        (m.assoc, m.stream, m.ppid, m.unordered, &m.data[..]),
        (s, 3, Ppid::ASAP, false, &b"request"[..])
    );
    server
        .send(s, 0, Ppid::ENRP, true, Bytes::from_static(b"reply"))
        .await
        .unwrap();
    let m = expect_msg(&mut client).await;
    assert_eq!(
        (m.assoc, m.stream, m.ppid, m.unordered, &m.data[..]),
        (c, 0, Ppid::ENRP, true, &b"reply"[..])
    );
    assert_eq!(
        client
            .send(c, 200, Ppid::ASAP, false, Bytes::from_static(b"x"))
            .await,
        Err(TransportError::InvalidStream(200))
    );
    client.close(c, CloseMode::Graceful).await.unwrap();
    assert_eq!(expect_down(&mut client).await, (c, CloseReason::Graceful));
    assert_eq!(expect_down(&mut server).await, (s, CloseReason::Graceful));
    assert_eq!(
        client
            .send(c, 0, Ppid::ASAP, false, Bytes::from_static(b"late"))
            .await,
        Err(TransportError::UnknownAssociation(c))
    );
}

#[tokio::test]
async fn kernel_ipv6_loopback() {
    if !kernel_sctp("kernel_ipv6_loopback") {
        return;
    }
    let (mut server, s, mut client, c) = pair(&["[::1]:0"], TransportConfig::default()).await;
    assert!(server.local_addrs().iter().all(|a| a.is_ipv6()));
    client
        .send(c, 1, Ppid::ENRP, false, Bytes::from_static(b"v6"))
        .await
        .unwrap();
    let m = expect_msg(&mut server).await;
    assert_eq!((m.assoc, m.ppid, &m.data[..]), (s, Ppid::ENRP, &b"v6"[..]));
    server.close(s, CloseMode::Graceful).await.unwrap();
    assert_eq!(expect_down(&mut server).await, (s, CloseReason::Graceful));
    assert_eq!(expect_down(&mut client).await, (c, CloseReason::Graceful));
}

#[tokio::test]
async fn kernel_abort_is_reported_to_both_sides() {
    if !kernel_sctp("kernel_abort_is_reported_to_both_sides") {
        return;
    }
    let (mut server, s, mut client, c) = pair(&["127.0.0.1:0"], TransportConfig::default()).await;
    client.close(c, CloseMode::Abort).await.unwrap();
    assert_eq!(expect_down(&mut client).await, (c, CloseReason::Aborted));
    assert_eq!(expect_down(&mut server).await, (s, CloseReason::Aborted));
}

#[tokio::test]
async fn kernel_handshake_fails_without_listener() {
    if !kernel_sctp("kernel_handshake_fails_without_listener") {
        return;
    }
    // Bound but not listening: the kernel answers INIT with ABORT.
    let silent = KernelTransport::bind(EndpointConfig::client([addr("127.0.0.1:0")])).unwrap();
    let mut client = KernelTransport::bind(EndpointConfig::client([])).unwrap();
    let c = client.connect(&silent.local_addrs()).await.unwrap();
    assert_eq!(
        expect_down(&mut client).await,
        (c, CloseReason::HandshakeFailed)
    );
    assert!(matches!(
        client.connect(&[]).await,
        Err(TransportError::InvalidAddress(_))
    ));
}

#[tokio::test]
async fn kernel_handshake_timeout() {
    if !kernel_sctp("kernel_handshake_timeout") {
        return;
    }
    // 192.0.2.0/24 (TEST-NET-1) is unroutable inside the test VM: the INIT
    // goes nowhere, so only the handshake timer can end the attempt.
    let cfg = TransportConfig {
        handshake_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let mut client = KernelTransport::bind(EndpointConfig::client([]).with_transport(cfg)).unwrap();
    let started = Instant::now();
    match client.connect(&[addr("192.0.2.1:9")]).await {
        // No route at all: the kernel refuses at once, which is also a
        // handshake that cannot happen. The VM routes it into a blackhole
        // so that the timer path really runs there.
        Err(TransportError::Io(e)) if std::env::var_os("RSERPOOL_VM").is_none() => {
            eprintln!("connect refused synchronously: {e}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(c) => {
            assert_eq!(
                expect_down(&mut client).await,
                (c, CloseReason::HandshakeFailed)
            );
            assert!(started.elapsed() < Duration::from_secs(5));
        }
    }
}

#[tokio::test]
async fn kernel_large_messages_are_reassembled() {
    if !kernel_sctp("kernel_large_messages_are_reassembled") {
        return;
    }
    let (mut server, s, mut client, c) = pair(&["127.0.0.1:0"], TransportConfig::default()).await;
    let max = client.max_message_size();
    eprintln!(
        "max message size: client {max}, server {}",
        server.max_message_size()
    );
    assert!(max >= 200_000, "send buffer too small for handle tables");
    let big: Vec<u8> = (0..max).map(|i| (i * 7 + i / 251) as u8).collect();
    let big = Bytes::from(big);
    // Interleave a small message on another stream to check that pieces of
    // the big one are not mixed with it.
    client
        .send(c, 2, Ppid::ENRP, false, big.clone())
        .await
        .unwrap();
    client
        .send(c, 5, Ppid::ASAP, false, Bytes::from_static(b"small"))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(expect_msg(&mut server).await);
    }
    got.sort_by_key(|m| m.stream);
    assert_eq!(got[0].assoc, s);
    assert_eq!((got[0].stream, got[0].ppid), (2, Ppid::ENRP));
    assert!(got[0].data == big, "large message corrupted");
    assert_eq!((got[1].stream, &got[1].data[..]), (5, &b"small"[..]));
    assert!(matches!(
        client
            .send(c, 0, Ppid::ASAP, false, Bytes::from(vec![0u8; max + 1]))
            .await,
        Err(TransportError::MessageTooLarge { .. })
    ));
}

#[tokio::test]
async fn kernel_oversized_inbound_message_aborts() {
    if !kernel_sctp("kernel_oversized_inbound_message_aborts") {
        return;
    }
    let small = TransportConfig {
        max_message_size: 1000,
        ..Default::default()
    };
    let (mut server, s, mut client, c) = pair(&["127.0.0.1:0"], small).await;
    client
        .send(c, 0, Ppid::ASAP, false, Bytes::from(vec![1u8; 100_000]))
        .await
        .unwrap();
    assert_eq!(expect_down(&mut server).await, (s, CloseReason::Aborted));
    assert_eq!(expect_down(&mut client).await, (c, CloseReason::Aborted));
}

#[tokio::test]
async fn kernel_multihomed_endpoint() {
    if !kernel_sctp("kernel_multihomed_endpoint") {
        return;
    }
    let (mut server, s, mut client, c) =
        pair(&["127.0.0.1:0", "127.0.0.2:0"], TransportConfig::default()).await;
    let local = server.local_addrs();
    assert_eq!(local.len(), 2, "server bound {local:?}");
    assert_eq!(local[0].port(), local[1].port());
    client
        .send(c, 0, Ppid::ASAP, false, Bytes::from_static(b"mh"))
        .await
        .unwrap();
    assert_eq!(expect_msg(&mut server).await.assoc, s);
    client.close(c, CloseMode::Graceful).await.unwrap();
    assert_eq!(expect_down(&mut client).await, (c, CloseReason::Graceful));
    assert_eq!(expect_down(&mut server).await, (s, CloseReason::Graceful));
}

/// A plain kernel SCTP echo peer with default socket options (Nagle on,
/// delayed SACK on), as a third-party RSerPool implementation would have.
async fn default_kernel_echo_peer() -> (SocketAddr, tokio::task::JoinHandle<Vec<u32>>) {
    use lksctp::{EventType, Family, RecvMsg, SctpEndpoint, SendInfo};
    let ep = SctpEndpoint::builder(Family::Ipv4)
        .unwrap()
        .subscribe_events(&[EventType::AssocChange])
        .unwrap()
        .bindx(&[addr("127.0.0.1:0")])
        .unwrap()
        .listen(16)
        .unwrap();
    let local = ep.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut ppids = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match ep.recv_msg(&mut buf).await.unwrap() {
                RecvMsg::Data {
                    len,
                    info: Some(info),
                    eor: true,
                } => {
                    ppids.push(info.ppid.0);
                    let reply = SendInfo {
                        assoc_id: info.assoc_id,
                        sid: info.sid,
                        ppid: lksctp::Ppid(12),
                        ..Default::default()
                    };
                    ep.send_msg(&buf[..len], &reply).await.unwrap();
                }
                RecvMsg::Notification(lksctp::Notification::AssocChange(ch))
                    if ch.state == lksctp::AssocChangeState::ShutdownComplete =>
                {
                    return ppids;
                }
                _ => {}
            }
        }
    });
    (local, task)
}

#[tokio::test]
async fn kernel_request_response_against_default_kernel_peer() {
    if !kernel_sctp("kernel_request_response_against_default_kernel_peer") {
        return;
    }
    let (peer, task) = default_kernel_echo_peer().await;
    let mut client = KernelTransport::bind(EndpointConfig::client([])).unwrap();
    let c = client.connect(&[peer]).await.unwrap();
    expect_up(&mut client).await;
    let rounds = 300;
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let payload = Bytes::from(format!("request {i:04} {}", "x".repeat(80)));
        let t0 = Instant::now();
        client
            .send(c, 0, Ppid::ASAP, false, payload.clone())
            .await
            .unwrap();
        let m = expect_msg(&mut client).await;
        rtts.push(t0.elapsed());
        assert_eq!((m.ppid, &m.data), (Ppid::ENRP, &payload));
    }
    client.close(c, CloseMode::Graceful).await.unwrap();
    assert_eq!(expect_down(&mut client).await, (c, CloseReason::Graceful));
    let ppids = task.await.unwrap();
    assert_eq!(ppids.len(), rounds);
    assert!(
        ppids.iter().all(|p| *p == 11),
        "peer saw PPIDs other than 11"
    );
    rtts.sort();
    let pct = |p: usize| rtts[(rtts.len() - 1) * p / 100];
    let stalls = rtts
        .iter()
        .filter(|d| **d >= Duration::from_millis(150))
        .count();
    println!(
        "RTT vs default kernel peer ({rounds} round trips): min {:?} median {:?} p90 {:?} p99 {:?} max {:?}, {stalls} >= 150 ms",
        rtts[0],
        pct(50),
        pct(90),
        pct(99),
        rtts[rtts.len() - 1]
    );
    // A Nagle/delayed-SACK interaction shows as ~200 ms per exchange; a few
    // slow outliers under an emulated CPU do not.
    assert!(
        stalls * 20 < rounds,
        "{stalls} of {rounds} round trips took >= 150 ms"
    );
}

#[tokio::test]
async fn kernel_silent_peer_is_reported_lost() {
    if !kernel_sctp("kernel_silent_peer_is_reported_lost") {
        return;
    }
    // Needs root and the guest's extra address (scripts/vm/project-tests.sh):
    // deleting the peer's address makes it vanish without an ABORT.
    if std::env::var_os("RSERPOOL_VM").is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED kernel_silent_peer_is_reported_lost: needs the test VM's address setup"
        );
        return;
    }
    let fast = TransportConfig {
        heartbeat_interval: Duration::from_millis(200),
        rto_initial: Duration::from_millis(100),
        rto_min: Duration::from_millis(50),
        rto_max: Duration::from_millis(200),
        dead_peer_timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    let mut server = KernelTransport::bind(
        EndpointConfig::server([addr("198.51.100.2:0")]).with_transport(fast.clone()),
    )
    .unwrap();
    let mut client = KernelTransport::bind(
        EndpointConfig::client([addr("198.51.100.1:0")]).with_transport(fast),
    )
    .unwrap();
    let c = client.connect(&server.local_addrs()).await.unwrap();
    assert_eq!(expect_up(&mut client).await.0, c);
    expect_up(&mut server).await;
    let status = std::process::Command::new("ip")
        .args(["addr", "del", "198.51.100.2/32", "dev", "lo"])
        .status()
        .expect("run ip");
    assert!(status.success(), "ip addr del failed");
    let started = Instant::now();
    client
        .send(c, 0, Ppid::ASAP, false, Bytes::from_static(b"anyone?"))
        .await
        .unwrap();
    assert_eq!(expect_down(&mut client).await, (c, CloseReason::Lost));
    eprintln!("silent peer reported lost after {:?}", started.elapsed());
    drop(server);
}

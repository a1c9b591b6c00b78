//! Behaviour specific to the SCTP-over-UDP backend: addressing (IPv4 and
//! IPv6 on one endpoint, own source port per association, address
//! fallback), and hostile input (INIT floods, out-of-the-blue packets,
//! garbage), checked with a raw UDP socket on loopback.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rserpool_net::transport::udp::{Direction, UdpConfig, UdpTransport};
use rserpool_net::transport::{
    CloseReason, EndpointConfig, Event, Ppid, Transport, TransportConfig,
};

fn cfg() -> TransportConfig {
    TransportConfig {
        heartbeat_interval: Duration::from_millis(200),
        dead_peer_timeout: Duration::from_millis(1500),
        handshake_timeout: Duration::from_secs(2),
        ..TransportConfig::default()
    }
}

fn server(addrs: &[&str], t: TransportConfig) -> UdpTransport {
    UdpTransport::bind(
        EndpointConfig::server(addrs.iter().map(|a| a.parse().unwrap())).with_transport(t),
        UdpConfig {
            udp_port: 0,
            ..UdpConfig::default()
        },
    )
    .unwrap()
}

fn client_of(server: &UdpTransport, local: &str, udp: UdpConfig) -> UdpTransport {
    UdpTransport::bind(
        EndpointConfig::client([local.parse().unwrap()]).with_transport(cfg()),
        UdpConfig {
            udp_port: 0,
            remote_udp_port: server.local_udp_addrs()[0].port(),
            ..udp
        },
    )
    .unwrap()
}

async fn next(t: &mut UdpTransport) -> Event {
    tokio::time::timeout(Duration::from_secs(20), t.next_event())
        .await
        .expect("event within 20 s")
        .expect("endpoint alive")
}

/// SCTP packet with a valid CRC-32C.
fn packet(src: u16, dst: u16, vtag: u32, chunks: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u16(src);
    b.put_u16(dst);
    b.put_u32(vtag);
    b.put_u32(0);
    b.put_slice(chunks);
    let crc = crc32c::crc32c(&b);
    b[8..12].copy_from_slice(&crc.to_le_bytes());
    b.freeze()
}

fn init_chunk(tag: u32) -> Vec<u8> {
    let mut c = vec![1, 0, 0, 20];
    c.extend_from_slice(&tag.to_be_bytes());
    c.extend_from_slice(&65_536u32.to_be_bytes());
    c.extend_from_slice(&[0, 10, 0, 10]);
    c.extend_from_slice(&1u32.to_be_bytes());
    c
}

fn raw_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

async fn exchange(client: &mut UdpTransport, server: &mut UdpTransport, peers: &[SocketAddr]) {
    let a = client.connect(peers).await.unwrap();
    let ev = next(client).await;
    let Event::AssociationUp { assoc, .. } = ev else {
        panic!("client up: {ev:?}")
    };
    assert_eq!(assoc, a);
    let Event::AssociationUp { assoc: s, .. } = next(server).await else {
        panic!("server up")
    };
    client
        .send(a, 0, Ppid::ASAP, false, Bytes::from_static(b"ping"))
        .await
        .unwrap();
    let Event::Message(m) = next(server).await else {
        panic!("message")
    };
    assert_eq!(&m.data[..], b"ping");
    server
        .send(s, 0, Ppid::ASAP, false, Bytes::from_static(b"pong"))
        .await
        .unwrap();
    let Event::Message(m) = next(client).await else {
        panic!("message")
    };
    assert_eq!(&m.data[..], b"pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_on_one_endpoint() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED ipv4_and_ipv6_on_one_endpoint: no IPv6 loopback here");
        return;
    }
    let mut srv = server(&["127.0.0.1:0", "[::1]:0"], cfg());
    let addrs = srv.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[0].port(), addrs[1].port(), "one SCTP port");
    assert_eq!(srv.local_udp_addrs().len(), 2);
    let v4: Vec<SocketAddr> = addrs.iter().copied().filter(|a| a.is_ipv4()).collect();
    let v6: Vec<SocketAddr> = addrs.iter().copied().filter(|a| a.is_ipv6()).collect();

    let mut c4 = client_of(&srv, "127.0.0.1:0", UdpConfig::default());
    exchange(&mut c4, &mut srv, &v4).await;
    let mut c6 = client_of(&srv, "[::1]:0", UdpConfig::default());
    exchange(&mut c6, &mut srv, &v6).await;
    // A v6-only client cannot use v4 addresses: refused at once.
    assert!(c6.connect(&v4).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_next_peer_address() {
    let mut srv = server(&["127.0.0.1:0"], cfg());
    let good = srv.local_addrs()[0];
    let dead: SocketAddr = format!("127.0.0.1:{}", good.port().wrapping_add(7))
        .parse()
        .unwrap();
    let mut c = client_of(&srv, "127.0.0.1:0", UdpConfig::default());
    // Nobody listens on `dead` (the server ABORTs the INIT), so the
    // association comes up on the second address.
    exchange(&mut c, &mut srv, &[dead, good]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_association_has_its_own_source_port() {
    let mut srv = server(&["127.0.0.1:0"], cfg());
    let ports: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let seen = ports.clone();
    let mut c = client_of(
        &srv,
        "127.0.0.1:0",
        UdpConfig {
            capture: Some(Arc::new(move |d, _src, _dst, pkt: &[u8]| {
                // INIT chunks only (type 1 right after the common header).
                if d == Direction::Outgoing && pkt.len() > 12 && pkt[12] == 1 {
                    seen.lock()
                        .unwrap()
                        .insert(u16::from_be_bytes([pkt[0], pkt[1]]));
                }
            })),
            ..UdpConfig::default()
        },
    );
    const N: usize = 20;
    for _ in 0..N {
        c.connect(&srv.local_addrs()).await.unwrap();
    }
    for _ in 0..N {
        assert!(matches!(next(&mut c).await, Event::AssociationUp { .. }));
        assert!(matches!(next(&mut srv).await, Event::AssociationUp { .. }));
    }
    let ports = ports.lock().unwrap();
    assert_eq!(ports.len(), N, "distinct SCTP source ports: {ports:?}");
    assert!(!ports.contains(&srv.local_addrs()[0].port()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_endpoint_connects_from_its_listening_port() {
    // One SCTP endpoint, one port: a peer records the address an association
    // came from (a registrar stores it as the PE's ASAP transport) and others
    // must reach the endpoint there. Only a second association to the same
    // peer needs a port of its own.
    let mut b = server(&["127.0.0.1:0"], cfg());
    let ports: Arc<Mutex<Vec<u16>>> = Arc::default();
    let seen = ports.clone();
    let mut a = UdpTransport::bind(
        EndpointConfig::server(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg()),
        UdpConfig {
            udp_port: 0,
            remote_udp_port: b.local_udp_addrs()[0].port(),
            capture: Some(Arc::new(move |d, _src, _dst, pkt: &[u8]| {
                if d == Direction::Outgoing && pkt.len() > 12 && pkt[12] == 1 {
                    seen.lock()
                        .unwrap()
                        .push(u16::from_be_bytes([pkt[0], pkt[1]]));
                }
            })),
            // One INIT per association (no copy to the peer's SCTP port).
            probe_peer_port: false,
            ..UdpConfig::default()
        },
    )
    .unwrap();
    for _ in 0..2 {
        a.connect(&b.local_addrs()).await.unwrap();
        assert!(matches!(next(&mut a).await, Event::AssociationUp { .. }));
        let Event::AssociationUp { peer_addrs, .. } = next(&mut b).await else {
            panic!("association up at b")
        };
        assert_eq!(peer_addrs.len(), 1);
    }
    let ports = ports.lock().unwrap();
    let listen = a.local_addrs()[0].port();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_eq!(
        ports[0], listen,
        "first association from the listening port"
    );
    assert_ne!(
        ports[1], listen,
        "second association to the same peer on its own port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_flood_leaves_no_state_and_real_clients_get_in() {
    let mut srv = UdpTransport::bind(
        EndpointConfig::server(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg()),
        UdpConfig {
            udp_port: 0,
            init_acks_per_sec: 1500,
            ..UdpConfig::default()
        },
    )
    .unwrap();
    let sctp_port = srv.local_addrs()[0].port();
    let udp = srv.local_udp_addrs()[0];
    let raw = raw_socket();
    const FLOOD: u32 = 3000;
    for i in 0..FLOOD {
        let pkt = packet(
            10_000 + (i % 50_000) as u16,
            sctp_port,
            0,
            &init_chunk(0x1000 + i),
        );
        raw.send_to(&pkt, udp).unwrap();
    }
    // Let the driver take them all in (until its counters stop moving).
    let mut st = srv.stats();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = srv.stats();
        if now == st {
            break;
        }
        st = now;
    }
    // No state at all for the flood; every INIT answered (up to the rate
    // limit) or counted as dropped.
    assert_eq!(st.associations, 0, "{st:?}");
    assert!(st.datagrams_in > 1000, "{st:?}");
    assert_eq!(st.init_acks + st.inits_dropped, st.datagrams_in, "{st:?}");
    assert!(st.init_acks <= 1500 * 2, "rate limit: {st:?}");
    // A COOKIE-ECHO with a forged cookie is dropped silently.
    let mut echo = vec![10u8, 0, 0, 4 + 54];
    echo.extend_from_slice(&[1u8; 54]);
    raw.send_to(&packet(10_000, sctp_port, 0x1000, &echo), udp)
        .unwrap();
    // A real client gets in (the rate-limit window has passed by now).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut c = client_of(&srv, "127.0.0.1:0", UdpConfig::default());
    let addrs = srv.local_addrs();
    exchange(&mut c, &mut srv, &addrs).await;
    let st = srv.stats();
    assert_eq!(st.associations, 1, "{st:?}");
    assert!(st.bad_packets >= 1, "forged cookie counted: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_the_blue_packets_get_the_rfc_answers() {
    let srv = server(&["127.0.0.1:0"], cfg());
    let sctp_port = srv.local_addrs()[0].port();
    let udp = srv.local_udp_addrs()[0];
    let raw = raw_socket();
    let mut buf = [0u8; 256];

    // DATA for an unknown association: ABORT, T bit, our tag reflected.
    let data = [
        0u8, 3, 0, 17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 11, 42, 0, 0, 0,
    ];
    raw.send_to(&packet(5000, sctp_port, 0x1234_5678, &data), udp)
        .unwrap();
    let (n, _) = raw.recv_from(&mut buf).expect("ABORT");
    assert_eq!(n, 16);
    assert_eq!(&buf[0..2], &sctp_port.to_be_bytes());
    assert_eq!(&buf[2..4], &5000u16.to_be_bytes());
    assert_eq!(&buf[4..8], &0x1234_5678u32.to_be_bytes());
    assert_eq!((buf[12], buf[13]), (6, 1));
    let crc = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    buf[8..12].fill(0);
    assert_eq!(crc32c::crc32c(&buf[..n]), crc, "valid CRC-32C");

    // SHUTDOWN-ACK for an unknown association: SHUTDOWN-COMPLETE, T bit.
    raw.send_to(&packet(5000, sctp_port, 0x0bad_cafe, &[8, 0, 0, 4]), udp)
        .unwrap();
    let (n, _) = raw.recv_from(&mut buf).expect("SHUTDOWN-COMPLETE");
    assert_eq!(n, 16);
    assert_eq!(&buf[4..8], &0x0bad_cafeu32.to_be_bytes());
    assert_eq!((buf[12], buf[13]), (14, 1));

    // INIT to a port nobody listens on: ABORT with the Initiate Tag.
    raw.send_to(
        &packet(5000, sctp_port.wrapping_add(1), 0, &init_chunk(0x7777_7777)),
        udp,
    )
    .unwrap();
    let (_, _) = raw.recv_from(&mut buf).expect("ABORT for closed port");
    assert_eq!(&buf[4..8], &0x7777_7777u32.to_be_bytes());
    assert_eq!(buf[12], 6);
    // The tag is the INIT's own Initiate Tag, so T stays clear (RFC 9260
    // 8.4 rule 3); with T set the initiator drops the ABORT.
    assert_eq!(buf[13], 0, "T bit clear");

    // ABORT and SHUTDOWN-COMPLETE out of the blue: silence.
    raw.send_to(&packet(5000, sctp_port, 1, &[6, 0, 0, 4]), udp)
        .unwrap();
    raw.send_to(&packet(5000, sctp_port, 1, &[14, 0, 0, 4]), udp)
        .unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(raw.recv_from(&mut buf).is_err(), "no reply to ABORT");
    let st = srv.stats();
    assert_eq!(st.ootb_replies, 3, "{st:?}");
    assert!(st.out_of_the_blue >= 5, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_dropped() {
    let mut srv = server(&["127.0.0.1:0"], cfg());
    let mut c = client_of(&srv, "127.0.0.1:0", UdpConfig::default());
    let a = c.connect(&srv.local_addrs()).await.unwrap();
    assert!(matches!(next(&mut c).await, Event::AssociationUp { .. }));
    let Event::AssociationUp { assoc: s, .. } = next(&mut srv).await else {
        panic!("up")
    };
    let udp = srv.local_udp_addrs()[0];
    let raw = raw_socket();
    let mut x: u32 = 0x9e37_79b9;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let sctp_port = srv.local_addrs()[0].port();
    for len in 0..400usize {
        let mut v: Vec<u8> = (0..len % 120).map(|_| rnd() as u8).collect();
        if v.len() >= 4 && len % 3 == 0 {
            // Aim at the listening port so it gets past the first checks.
            v[2..4].copy_from_slice(&sctp_port.to_be_bytes());
        }
        if len % 5 == 0 && v.len() >= 16 {
            // Valid checksum, random content.
            v[8..12].fill(0);
            let crc = crc32c::crc32c(&v);
            v[8..12].copy_from_slice(&crc.to_le_bytes());
        }
        raw.send_to(&v, udp).unwrap();
    }
    // Chunks with absurd lengths and a valid checksum.
    for bad in [
        &[0u8, 3, 0xff, 0xff][..],
        &[1, 0, 0, 3],
        &[1, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[3, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
    ] {
        raw.send_to(&packet(5000, sctp_port, 0, bad), udp).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = srv.stats();
    assert!(st.malformed > 0 && st.bad_packets > 0, "{st:?}");
    // The real association is unharmed.
    c.send(a, 0, Ppid::ENRP, false, Bytes::from_static(b"still here"))
        .await
        .unwrap();
    let Event::Message(m) = next(&mut srv).await else {
        panic!("message")
    };
    assert_eq!((m.assoc, &m.data[..]), (s, &b"still here"[..]));
    assert_eq!(c.stats().bad_packets, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_packets_with_wrong_tag_do_not_touch_the_association() {
    let mut srv = server(&["127.0.0.1:0"], cfg());
    let client_ports: Arc<Mutex<Option<(SocketAddr, u16)>>> = Arc::default();
    let seen = client_ports.clone();
    let mut c = client_of(
        &srv,
        "127.0.0.1:0",
        UdpConfig {
            capture: Some(Arc::new(move |d, src, _dst, pkt: &[u8]| {
                if d == Direction::Outgoing && pkt.len() >= 2 {
                    *seen.lock().unwrap() = Some((src, u16::from_be_bytes([pkt[0], pkt[1]])));
                }
            })),
            ..UdpConfig::default()
        },
    );
    let a = c.connect(&srv.local_addrs()).await.unwrap();
    assert!(matches!(next(&mut c).await, Event::AssociationUp { .. }));
    assert!(matches!(next(&mut srv).await, Event::AssociationUp { .. }));
    let (client_udp, client_sctp) = client_ports.lock().unwrap().unwrap();
    let sctp_port = srv.local_addrs()[0].port();
    let raw = raw_socket();
    // From the server's SCTP port to the client's: right tuple, wrong tags.
    raw.send_to(
        &packet(sctp_port, client_sctp, 0x5555, &[6, 0, 0, 4]),
        client_udp,
    )
    .unwrap();
    raw.send_to(
        &packet(sctp_port, client_sctp, 0x5555, &[6, 1, 0, 4]),
        client_udp,
    )
    .unwrap();
    raw.send_to(
        &packet(sctp_port, client_sctp, 0, &init_chunk(99)),
        client_udp,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.stats().bad_vtag, 3, "{:?}", c.stats());
    c.send(a, 0, Ppid::ASAP, false, Bytes::from_static(b"ok"))
        .await
        .unwrap();
    let Event::Message(m) = next(&mut srv).await else {
        panic!("message")
    };
    assert_eq!(&m.data[..], b"ok");
    drop(c);
    // And the server notices the vanished client.
    assert!(matches!(
        next(&mut srv).await,
        Event::AssociationDown {
            reason: CloseReason::Lost,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_inbound_message_aborts_the_association() {
    let small = TransportConfig {
        max_message_size: 100 * 1024,
        ..cfg()
    };
    let mut srv = server(&["127.0.0.1:0"], small);
    let mut c = UdpTransport::bind(
        EndpointConfig::client(["127.0.0.1:0".parse().unwrap()]).with_transport(TransportConfig {
            max_message_size: 1 << 20,
            ..cfg()
        }),
        UdpConfig {
            udp_port: 0,
            remote_udp_port: srv.local_udp_addrs()[0].port(),
            ..UdpConfig::default()
        },
    )
    .unwrap();
    let a = c.connect(&srv.local_addrs()).await.unwrap();
    assert!(matches!(next(&mut c).await, Event::AssociationUp { .. }));
    assert!(matches!(next(&mut srv).await, Event::AssociationUp { .. }));
    c.send(a, 0, Ppid::ENRP, false, Bytes::from(vec![1u8; 200 * 1024]))
        .await
        .unwrap();
    // The receiver refuses to buffer more than its limit: the association
    // ends (no partial delivery) on both sides.
    match next(&mut srv).await {
        Event::AssociationDown { reason, .. } => assert_eq!(reason, CloseReason::Aborted),
        other => panic!("expected AssociationDown, got {other:?}"),
    }
    match next(&mut c).await {
        Event::AssociationDown { assoc, reason } => {
            assert_eq!((assoc, reason), (a, CloseReason::Aborted))
        }
        other => panic!("expected AssociationDown, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_address_parameters_and_cookie_preservative_is_answered() {
    // What a multi-homed kernel peer sends: address parameters, Supported
    // Address Types, a Cookie Preservative and ECN capable.
    let srv = server(&["127.0.0.1:0"], cfg());
    let sctp_port = srv.local_addrs()[0].port();
    let udp = srv.local_udp_addrs()[0];
    let raw = raw_socket();
    let mut params = Vec::new();
    params.extend_from_slice(&[0, 5, 0, 8, 127, 0, 0, 1]);
    params.extend_from_slice(&[0, 5, 0, 8, 10, 1, 2, 3]);
    params.extend_from_slice(&[0, 6, 0, 20, 0x20, 0x01, 0x0d, 0xb8]);
    params.extend_from_slice(&[0; 12]);
    params.extend_from_slice(&[0, 9, 0, 8, 0, 0, 0x27, 0x10]);
    params.extend_from_slice(&[0, 12, 0, 8, 0, 5, 0, 6]);
    params.extend_from_slice(&[0x80, 0, 0, 4]);
    let mut chunk = init_chunk(0x4242_4242);
    chunk.extend_from_slice(&params);
    let len = chunk.len() as u16;
    chunk[2..4].copy_from_slice(&len.to_be_bytes());
    raw.send_to(&packet(5000, sctp_port, 0, &chunk), udp)
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = raw.recv_from(&mut buf).expect("INIT-ACK");
    assert!(n > 16);
    assert_eq!(&buf[4..8], &0x4242_4242u32.to_be_bytes());
    assert_eq!(buf[12], 2, "INIT-ACK");
    assert_eq!(srv.stats().bad_packets, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_packets_with_valid_tags_never_kill_the_endpoint() {
    // Record real client->server packets, then replay them with random
    // bytes changed behind the common header (ports and tag kept, checksum
    // fixed), so they reach the association's parser.
    let mut srv = server(&["127.0.0.1:0"], cfg());
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let rec = seen.clone();
    let mut c = client_of(
        &srv,
        "127.0.0.1:0",
        UdpConfig {
            capture: Some(Arc::new(move |d, _src, _dst, pkt: &[u8]| {
                if d == Direction::Outgoing {
                    rec.lock().unwrap().push(pkt.to_vec());
                }
            })),
            ..UdpConfig::default()
        },
    );
    let a = c.connect(&srv.local_addrs()).await.unwrap();
    assert!(matches!(next(&mut c).await, Event::AssociationUp { .. }));
    assert!(matches!(next(&mut srv).await, Event::AssociationUp { .. }));
    for (i, n) in [10usize, 3000, 200].into_iter().enumerate() {
        c.send(
            a,
            i as u16,
            Ppid::ASAP,
            i == 1,
            Bytes::from(vec![i as u8; n]),
        )
        .await
        .unwrap();
        assert!(matches!(next(&mut srv).await, Event::Message(_)));
    }
    let samples = seen.lock().unwrap().clone();
    assert!(samples.len() >= 4);
    let udp = srv.local_udp_addrs()[0];
    let raw = raw_socket();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..3000 {
        let mut p = samples[round % samples.len()].clone();
        if p.len() <= 12 {
            continue;
        }
        for _ in 0..1 + rnd() % 4 {
            let at = 12 + (rnd() as usize) % (p.len() - 12);
            p[at] = rnd() as u8;
        }
        if rnd() % 8 == 0 {
            let cut = 12 + (rnd() as usize) % (p.len() - 12);
            p.truncate(cut);
        }
        p[8..12].fill(0);
        let crc = crc32c::crc32c(&p);
        p[8..12].copy_from_slice(&crc.to_le_bytes());
        raw.send_to(&p, udp).unwrap();
        if round % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Whatever the mutations did to that association, the endpoint lives:
    // a new client gets through.
    let mut c2 = client_of(&srv, "127.0.0.1:0", UdpConfig::default());
    let b = c2.connect(&srv.local_addrs()).await.unwrap();
    assert!(matches!(next(&mut c2).await, Event::AssociationUp { .. }));
    // The server greets every association it sees come up: a mutated
    // packet may also have restarted the first one, and which Up is c2's
    // is not known here.
    let m = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            tokio::select! {
                ev = srv.next_event() => {
                    if let Ok(Event::AssociationUp { assoc, .. }) = ev {
                        let _ = srv
                            .send(assoc, 0, Ppid::ENRP, false, Bytes::from_static(b"alive"))
                            .await;
                    }
                }
                ev = c2.next_event() => {
                    if let Ok(Event::Message(m)) = ev {
                        return m;
                    }
                }
            }
        }
    })
    .await
    .expect("the endpoint still serves a new client");
    assert_eq!((m.assoc, &m.data[..]), (b, &b"alive"[..]));
}

#[tokio::test]
async fn bad_configuration_is_refused_at_bind() {
    let bad = TransportConfig {
        dead_peer_timeout: Duration::from_millis(100),
        heartbeat_interval: Duration::from_secs(1),
        ..TransportConfig::default()
    };
    let err = UdpTransport::bind(
        EndpointConfig::server(["127.0.0.1:0".parse().unwrap()]).with_transport(bad),
        UdpConfig {
            udp_port: 0,
            ..UdpConfig::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            rserpool_net::transport::TransportError::InvalidConfig(_)
        ),
        "{err}"
    );
    assert!(TransportConfig::default().validate().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_connecting_association_ends_the_whole_connect() {
    let mut srv = server(&["127.0.0.1:0"], cfg());
    let good = srv.local_addrs()[0];
    // Nothing answers on 127.0.0.2, so the first address hangs.
    let silent: SocketAddr = SocketAddr::new("127.0.0.2".parse().unwrap(), good.port());
    let mut c = client_of(&srv, "127.0.0.1:0", UdpConfig::default());
    let a = c.connect(&[silent, good]).await.unwrap();
    c.close(a, rserpool_net::transport::CloseMode::Abort)
        .await
        .unwrap();
    match next(&mut c).await {
        Event::AssociationDown { assoc, reason } => {
            assert_eq!((assoc, reason), (a, CloseReason::HandshakeFailed))
        }
        other => panic!("expected AssociationDown, got {other:?}"),
    }
    // The second address was never tried.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), srv.next_event())
            .await
            .is_err(),
        "server saw an association"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_needs_two_packets_per_round_trip() {
    // SACKs ride in the DATA of the answer and of the next request: no
    // separate SACK packets, no waiting for the delayed-SACK timer.
    let mut srv = server(&["127.0.0.1:0"], cfg());
    let mut c = client_of(&srv, "127.0.0.1:0", UdpConfig::default());
    let a = c.connect(&srv.local_addrs()).await.unwrap();
    assert!(matches!(next(&mut c).await, Event::AssociationUp { .. }));
    let Event::AssociationUp { assoc: s, .. } = next(&mut srv).await else {
        panic!("up")
    };
    let before = c.stats().datagrams_out + srv.stats().datagrams_out;
    const ROUNDS: u64 = 50;
    for i in 0..ROUNDS {
        c.send(a, 0, Ppid::ASAP, false, Bytes::from(vec![i as u8; 100]))
            .await
            .unwrap();
        let Event::Message(m) = next(&mut srv).await else {
            panic!("request")
        };
        srv.send(s, 0, Ppid::ASAP, false, m.data).await.unwrap();
        let Event::Message(_) = next(&mut c).await else {
            panic!("response")
        };
    }
    let after = c.stats().datagrams_out + srv.stats().datagrams_out;
    let sent = after - before;
    // 2 per round trip; heartbeats or one trailing SACK may add a few.
    assert!(
        sent <= 2 * ROUNDS + 4,
        "{sent} datagrams for {ROUNDS} round trips"
    );
}

/// A peer that stops acknowledging (here: its endpoint is gone) cannot make
/// the sender queue without bound: beyond `max_queued_bytes` messages are
/// dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_queue_to_a_silent_peer_is_bounded() {
    let mut srv = server(&["127.0.0.1:0"], cfg());
    let addrs = srv.local_addrs();
    let mut c = UdpTransport::bind(
        EndpointConfig::client(["127.0.0.1:0".parse().unwrap()]).with_transport(TransportConfig {
            max_queued_bytes: 1 << 20,
            ..cfg()
        }),
        UdpConfig {
            udp_port: 0,
            remote_udp_port: srv.local_udp_addrs()[0].port(),
            ..UdpConfig::default()
        },
    )
    .unwrap();
    let a = c.connect(&addrs).await.unwrap();
    assert!(matches!(next(&mut c).await, Event::AssociationUp { .. }));
    assert!(matches!(next(&mut srv).await, Event::AssociationUp { .. }));
    drop(srv);
    let chunk = Bytes::from(vec![0u8; 64 << 10]);
    for _ in 0..64 {
        // 4 MiB offered against a 1 MiB queue.
        let _ = c.send(a, 0, Ppid::ASAP, false, chunk.clone()).await;
    }
    // The driver takes the sends in its own time: wait until the count has
    // stopped moving (not just until the first drop, which raced it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut drops = c.stats().queue_drops;
    let mut still_since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = c.stats().queue_drops;
        if now != drops || now == 0 {
            drops = now;
            still_since = tokio::time::Instant::now();
        } else if still_since.elapsed() >= Duration::from_millis(300) {
            break;
        }
    }
    assert!(
        (40..=64).contains(&drops),
        "at most 1 MiB of 4 MiB queued: {drops} of 64 messages dropped"
    );
}

/// One source address cannot take every association slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_per_source_are_bounded() {
    let mut srv = server(
        &["127.0.0.1:0"],
        TransportConfig {
            max_associations_per_source: 3,
            ..cfg()
        },
    );
    let addrs = srv.local_addrs();
    let mut up = 0;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut c = client_of(&srv, "127.0.0.1:0", UdpConfig::default());
        c.connect(&addrs).await.unwrap();
        if matches!(next(&mut c).await, Event::AssociationUp { .. }) {
            up += 1;
        }
        clients.push(c);
    }
    assert_eq!(up, 3);
    // Another address is still served.
    let mut other = client_of(&srv, "127.0.0.2:0", UdpConfig::default());
    other.connect(&addrs).await.unwrap();
    assert!(matches!(
        next(&mut other).await,
        Event::AssociationUp { .. }
    ));
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(100), srv.next_event()).await
    {
        let _ = ev;
    }
    assert!(srv.stats().inits_dropped >= 2);
}

/// RFC 6951 §5: one encapsulation port per SCTP stack. Two listening
/// endpoints of one process bound to the same UDP port share the socket,
/// and each gets the packets of its own SCTP port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_one_process_share_a_udp_port() {
    let mut a = server(&["127.0.0.1:0"], cfg());
    let shared = a.local_udp_addrs()[0].port();
    let mut b = UdpTransport::bind(
        EndpointConfig::server(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg()),
        UdpConfig {
            udp_port: shared,
            ..UdpConfig::default()
        },
    )
    .unwrap();
    assert_eq!(b.local_udp_addrs()[0].port(), shared);
    assert_ne!(a.local_addrs()[0].port(), b.local_addrs()[0].port());
    // The same SCTP port twice on one socket is refused.
    let again = UdpTransport::bind(
        EndpointConfig::server([a.local_addrs()[0]]).with_transport(cfg()),
        UdpConfig {
            udp_port: shared,
            ..UdpConfig::default()
        },
    );
    assert!(again.unwrap_err().to_string().contains("already in use"));

    let mut c = client_of(&a, "127.0.0.1:0", UdpConfig::default());
    let (to_a, to_b) = (a.local_addrs(), b.local_addrs());
    exchange(&mut c, &mut a, &to_a).await;
    exchange(&mut c, &mut b, &to_b).await;
    // An endpoint going away leaves the other one working.
    drop(a);
    exchange(&mut c, &mut b, &to_b).await;
}

/// Zero configuration: a listener whose preferred UDP port is taken by
/// another process uses the UDP port equal to its SCTP port, and a client
/// that only knows the SCTP address finds it there although the default
/// port answers with an ABORT (someone else is there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_finds_a_listener_on_its_own_udp_port() {
    // Another "process" holds the preferred port (a raw socket, so the
    // mux registry of this process does not share it).
    let squatter = UdpSocket::bind("127.0.0.1:0").unwrap();
    let preferred = squatter.local_addr().unwrap().port();
    let zero = UdpConfig {
        udp_port: preferred,
        remote_udp_port: preferred,
        zero_config: true,
        ..UdpConfig::default()
    };
    let mut srv = UdpTransport::bind(
        EndpointConfig::server(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg()),
        zero.clone(),
    )
    .unwrap();
    let sctp = srv.local_addrs()[0];
    assert_eq!(
        srv.local_udp_addrs()[0].port(),
        sctp.port(),
        "UDP port follows the SCTP port"
    );
    let mut c = UdpTransport::bind(
        EndpointConfig::client(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg()),
        UdpConfig {
            udp_port: 0,
            ..zero.clone()
        },
    )
    .unwrap();
    // The squatter answers every INIT with an ABORT for the initiate tag,
    // as a process without that SCTP port does.
    let squatter = std::thread::spawn(move || {
        squatter
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut aborts = 0;
        while let Ok((n, from)) = squatter.recv_from(&mut buf) {
            let p = &buf[..n];
            if n >= 20 && p[12] == 1 {
                let src = u16::from_be_bytes([p[0], p[1]]);
                let dst = u16::from_be_bytes([p[2], p[3]]);
                let tag = u32::from_be_bytes([p[16], p[17], p[18], p[19]]);
                squatter
                    .send_to(&packet(dst, src, tag, &[6, 0, 0, 4]), from)
                    .unwrap();
                aborts += 1;
            }
        }
        aborts
    });
    exchange(&mut c, &mut srv, &[sctp]).await;
    assert_eq!(c.stats().handshake_timeouts, 0);
    assert!(squatter.join().unwrap() >= 1, "the default port was tried");
}

//! Wireshark as an independent judge of what the SCTP-over-UDP backend puts
//! on the wire.
//!
//! Two UDP endpoints on loopback run a session with every kind of packet
//! the backend sends (handshake, DATA with PPIDs 11 and 12 from tiny to
//! fragmented ~64 KiB messages, SACKs, HEARTBEATs, SHUTDOWN sequence, ABORT,
//! an ABORT reply to an out-of-the-blue packet). A capture hook records every
//! datagram sent and received; the test writes them as a pcap (raw IPv4 +
//! UDP headers around the SCTP packet) and has `tshark` decode it with
//! CRC-32C checking on. Every frame must decode as SCTP with a good checksum,
//! nothing may be malformed, and ASAP (PPID 11) and ENRP (PPID 12) payloads
//! must be recognised.
//!
//! tshark comes from the Debian package `tshark` (`scripts/test.sh`
//! installs it). If it is missing, the test tries to install it as root; only
//! if that fails too does it skip, with the reason printed.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use rserpool_net::transport::udp::{CaptureHook, Direction, UdpConfig, UdpTransport};
use rserpool_net::transport::{
    CloseMode, CloseReason, EndpointConfig, Event, Ppid, Transport, TransportConfig,
};

type Captured = Arc<Mutex<Vec<(SystemTime, SocketAddr, SocketAddr, Vec<u8>)>>>;

fn hook(store: &Captured, dir: Direction) -> CaptureHook {
    let store = store.clone();
    Arc::new(move |d, src, dst, pkt: &[u8]| {
        // Each endpoint records only what it sends, so every packet is in the
        // capture exactly once (plus what the raw test socket sends).
        if d == dir {
            store
                .lock()
                .unwrap()
                .push((SystemTime::now(), src, dst, pkt.to_vec()));
        }
    })
}

fn ipv4(a: SocketAddr) -> [u8; 4] {
    match a.ip() {
        IpAddr::V4(v) => v.octets(),
        IpAddr::V6(_) => panic!("test uses IPv4 loopback"),
    }
}

/// pcap, LINKTYPE_RAW (101): IPv4 + UDP + payload per record.
fn write_pcap(path: &Path, packets: &[(SystemTime, SocketAddr, SocketAddr, Vec<u8>)]) {
    let mut f = BytesMut::new();
    f.put_u32_le(0xa1b2_c3d4);
    f.put_u16_le(2);
    f.put_u16_le(4);
    f.put_i32_le(0);
    f.put_u32_le(0);
    f.put_u32_le(262_144);
    f.put_u32_le(101);
    for (ts, src, dst, payload) in packets {
        let d = ts.duration_since(UNIX_EPOCH).unwrap();
        let total = 20 + 8 + payload.len();
        let mut ip = BytesMut::new();
        ip.put_u8(0x45);
        ip.put_u8(0);
        ip.put_u16(total as u16);
        ip.put_u32(0);
        ip.put_u8(64);
        ip.put_u8(17);
        ip.put_u16(0);
        ip.put_slice(&ipv4(*src));
        ip.put_slice(&ipv4(*dst));
        let mut sum: u32 = ip
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f.put_u32_le(d.as_secs() as u32);
        f.put_u32_le(d.subsec_micros());
        f.put_u32_le(total as u32);
        f.put_u32_le(total as u32);
        f.put_slice(&ip);
        f.put_u16(src.port());
        f.put_u16(dst.port());
        f.put_u16((8 + payload.len()) as u16);
        f.put_u16(0);
        f.put_slice(payload);
    }
    std::fs::write(path, &f).unwrap();
}

fn have_tshark() -> bool {
    let ok = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("tshark") {
        return true;
    }
    let _ = Command::new("sh")
        .arg("-c")
        .arg(
            "[ \"$(id -u)\" = 0 ] && echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections; \
             [ \"$(id -u)\" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tshark >/dev/null 2>&1",
        )
        .status();
    ok("tshark")
}

/// Runs tshark on `pcap`. The endpoints use ephemeral UDP ports instead of
/// 9899 (which Wireshark maps to SCTP by itself), hence the decode-as.
fn tshark(pcap: &Path, udp_port: u16, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-o", "sctp.checksum:CRC-32C"])
        // Messages over one packet are fragmented; without reassembly the
        // first fragment would be dissected as a (truncated) message.
        .args(["-o", "sctp.reassembly:TRUE"])
        .arg("-d")
        .arg(format!("udp.port=={udp_port},sctp"))
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A valid ASAP_COOKIE (type 0x0B) with `n` cookie bytes.
fn asap_cookie(n: usize) -> Bytes {
    let param_len = 4 + n;
    let padded = (param_len + 3) & !3;
    let mut b = BytesMut::new();
    b.put_u8(0x0b);
    b.put_u8(0);
    b.put_u16((4 + padded) as u16);
    b.put_u16(0x000d);
    b.put_u16(param_len as u16);
    b.extend((0..n).map(|i| (i % 251) as u8));
    b.put_bytes(0, padded - param_len);
    b.freeze()
}

/// A valid ENRP_LIST_REQUEST (type 0x05).
fn enrp_list_request(sender: u32, receiver: u32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(0x05);
    b.put_u8(0);
    b.put_u16(12);
    b.put_u32(sender);
    b.put_u32(receiver);
    b.freeze()
}

async fn next(t: &mut UdpTransport) -> Event {
    tokio::time::timeout(Duration::from_secs(20), t.next_event())
        .await
        .expect("event within 20 s")
        .expect("endpoint alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_packet_decodes_as_sctp_with_valid_crc32c() {
    if !have_tshark() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED every_packet_decodes_as_sctp_with_valid_crc32c: tshark not found and could not be installed"
        );
        return;
    }
    let store: Captured = Arc::default();
    let cfg = TransportConfig {
        heartbeat_interval: Duration::from_millis(100),
        ..TransportConfig::default()
    };
    let mut server = UdpTransport::bind(
        EndpointConfig::server(["127.0.0.1:3863".parse().unwrap()]).with_transport(cfg.clone()),
        UdpConfig {
            udp_port: 0,
            capture: Some(hook(&store, Direction::Outgoing)),
            ..UdpConfig::default()
        },
    )
    .unwrap();
    let server_udp = server.local_udp_addrs()[0];
    let mut client = UdpTransport::bind(
        EndpointConfig::client(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg),
        UdpConfig {
            udp_port: 0,
            remote_udp_port: server_udp.port(),
            capture: Some(hook(&store, Direction::Outgoing)),
            // Only the encapsulation port: a probe to UDP port 3863 is
            // dissected as ASAP over UDP (that port's protocol), not SCTP.
            probe_peer_port: false,
            ..UdpConfig::default()
        },
    )
    .unwrap();

    // Association 1: traffic, then idle (heartbeats), then graceful close.
    let a = client.connect(&server.local_addrs()).await.unwrap();
    assert!(matches!(
        next(&mut client).await,
        Event::AssociationUp { .. }
    ));
    let Event::AssociationUp { assoc: sa, .. } = next(&mut server).await else {
        panic!("server up")
    };
    let sizes = [0usize, 100, 1_400, 5_000, 65_520];
    for &n in &sizes {
        client
            .send(a, 0, Ppid::ASAP, false, asap_cookie(n))
            .await
            .unwrap();
        client
            .send(a, 1, Ppid::ENRP, false, enrp_list_request(1, 2))
            .await
            .unwrap();
    }
    for _ in 0..sizes.len() * 2 {
        let Event::Message(m) = next(&mut server).await else {
            panic!("message")
        };
        server
            .send(sa, m.stream, m.ppid, false, m.data)
            .await
            .unwrap();
    }
    for _ in 0..sizes.len() * 2 {
        assert!(matches!(next(&mut client).await, Event::Message(_)));
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    client.close(a, CloseMode::Graceful).await.unwrap();
    assert!(matches!(
        next(&mut client).await,
        Event::AssociationDown {
            reason: CloseReason::Graceful,
            ..
        }
    ));
    assert!(matches!(
        next(&mut server).await,
        Event::AssociationDown {
            reason: CloseReason::Graceful,
            ..
        }
    ));

    // Association 2: aborted.
    let b = client.connect(&server.local_addrs()).await.unwrap();
    assert!(matches!(
        next(&mut client).await,
        Event::AssociationUp { .. }
    ));
    assert!(matches!(
        next(&mut server).await,
        Event::AssociationUp { .. }
    ));
    client.close(b, CloseMode::Abort).await.unwrap();
    assert!(matches!(
        next(&mut server).await,
        Event::AssociationDown {
            reason: CloseReason::Aborted,
            ..
        }
    ));

    // An out-of-the-blue DATA packet gets an ABORT with the T bit.
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut ootb = BytesMut::new();
    // Ports without a registered dissector, so Wireshark leaves the one
    // payload byte alone.
    ootb.put_u16(40_000);
    ootb.put_u16(40_001);
    ootb.put_u32(0xdead_beef);
    ootb.put_u32(0);
    ootb.put_slice(&[0, 3, 0, 17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 42]);
    ootb.put_slice(&[0, 0, 0]);
    let crc = crc32c::crc32c(&ootb);
    ootb[8..12].copy_from_slice(&crc.to_le_bytes());
    raw.send_to(&ootb, server_udp).unwrap();
    store.lock().unwrap().push((
        SystemTime::now(),
        raw.local_addr().unwrap(),
        server_udp,
        ootb.to_vec(),
    ));
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = raw.recv_from(&mut buf).expect("ABORT reply");
    assert_eq!(&buf[4..8], &0xdead_beefu32.to_be_bytes(), "tag reflected");
    assert_eq!((buf[12], buf[13] & 1), (6, 1), "ABORT with T bit");
    assert_eq!(n, 16);

    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(client);
    drop(server);
    let packets = std::mem::take(&mut *store.lock().unwrap());
    assert!(packets.len() > 20, "captured {}", packets.len());
    let dir = std::env::temp_dir().join(format!("rserpool-net-ws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("udp-sctp.pcap");
    write_pcap(&pcap, &packets);

    let fields = tshark(
        &pcap,
        server_udp.port(),
        &[
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.number",
            "-e",
            "frame.protocols",
            "-e",
            "sctp.checksum.status",
            "-e",
            "sctp.data_payload_proto_id",
            "-e",
            "_ws.malformed",
            "-e",
            "sctp.chunk_type",
        ],
    );
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), packets.len(), "one line per frame");
    let mut ppids = std::collections::BTreeSet::new();
    let mut chunk_types = std::collections::BTreeSet::new();
    for line in &lines {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 6, "{line}");
        assert!(f[1].contains(":udp:sctp"), "not decoded as SCTP: {line}");
        assert!(
            f[2] == "1" || f[2].eq_ignore_ascii_case("good"),
            "checksum not good: {line}"
        );
        assert!(f[4].is_empty(), "malformed: {line}");
        for p in f[3].split(',').filter(|s| !s.is_empty()) {
            ppids.insert(p.to_string());
        }
        for c in f[5].split(',').filter(|s| !s.is_empty()) {
            chunk_types.insert(c.parse::<u8>().unwrap());
        }
    }
    assert!(ppids.contains("11") && ppids.contains("12"), "{ppids:?}");
    // INIT, INIT-ACK, SACK, HEARTBEAT(-ACK), ABORT, SHUTDOWN(-ACK,-COMPLETE),
    // COOKIE-ECHO/-ACK and DATA all appeared and decoded.
    for t in [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 14] {
        assert!(
            chunk_types.contains(&t),
            "chunk type {t} missing: {chunk_types:?}"
        );
    }
    // The payloads decode as ASAP and ENRP without expert warnings of the
    // malformed kind.
    let asap = tshark(
        &pcap,
        server_udp.port(),
        &["-Y", "asap", "-T", "fields", "-e", "frame.number"],
    );
    let enrp = tshark(
        &pcap,
        server_udp.port(),
        &["-Y", "enrp", "-T", "fields", "-e", "frame.number"],
    );
    assert!(!asap.trim().is_empty(), "no ASAP decoded");
    assert!(!enrp.trim().is_empty(), "no ENRP decoded");
    let bad = tshark(
        &pcap,
        server_udp.port(),
        &[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= error || !sctp || sctp.checksum.status != 1",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    assert!(bad.trim().is_empty(), "bad frames: {bad}");
    // SHUTDOWN acknowledges the last TSN the client received from the
    // server on that association (not the client's own TSNs).
    let tsns = tshark(
        &pcap,
        server_udp.port(),
        &[
            "-Y",
            "sctp.data_tsn_raw || sctp.shutdown_cumulative_tsn_ack",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "sctp.srcport",
            "-e",
            "sctp.dstport",
            "-e",
            "sctp.data_tsn_raw",
            "-e",
            "sctp.shutdown_cumulative_tsn_ack",
        ],
    );
    let mut checked = 0;
    for line in tsns.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 4 || f[3].is_empty() {
            continue;
        }
        let (client_port, server_port) = (f[0], f[1]);
        let cum: u32 = f[3].split(',').next().unwrap().parse().unwrap();
        let last_from_server = tsns
            .lines()
            .map(|l| l.split('|').collect::<Vec<_>>())
            .filter(|g| g.len() >= 3 && g[0] == server_port && g[1] == client_port)
            .flat_map(|g| {
                g[2].split(',')
                    .filter_map(|t| t.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
            .max()
            .expect("server sent DATA on the association");
        assert_eq!(cum, last_from_server, "SHUTDOWN Cumulative TSN Ack: {line}");
        checked += 1;
    }
    assert!(checked >= 1, "no SHUTDOWN seen");

    let _ = writeln!(
        std::io::stderr(),
        "tshark decoded {} frames as SCTP with valid CRC-32C; PPIDs {ppids:?}; chunk types {chunk_types:?}; {}",
        lines.len(),
        pcap.display()
    );
}

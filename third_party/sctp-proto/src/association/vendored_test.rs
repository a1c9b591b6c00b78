//! Tests of the changes made in the vendored copy (see CHANGES.md). Two
//! endpoint-less associations exchange packets through a hand-driven "wire"
//! with a virtual clock, so every packet can be inspected or altered.

use super::*;
use crate::chunk::chunk_type::*;
use bytes::BytesMut;
use core::time::Duration;

const C_ADDR: &str = "127.0.0.1:5000";
const S_ADDR: &str = "127.0.0.1:5001";

fn cfg() -> TransportConfig {
    TransportConfig::default()
        .with_rto_initial_ms(100)
        .with_rto_min_ms(50)
        .with_rto_max_ms(400)
        .with_heartbeat_interval_ms(100)
        .with_dead_peer_timeout_ms(600)
        .with_sack_delay_ms(20)
        .with_max_send_message_size(1 << 20)
        .with_max_receive_message_size(1 << 20)
}

struct Pair {
    c: Association,
    s: Association,
    now: Instant,
    /// Messages read by the client / server (read after every packet, as a
    /// driver does, so data is taken before a following close).
    inbox_c: Vec<(u16, PayloadProtocolIdentifier, Bytes)>,
    inbox_s: Vec<(u16, PayloadProtocolIdentifier, Bytes)>,
}

fn raw_packets(t: Transmit) -> Vec<Bytes> {
    match t.payload {
        Payload::RawEncode(v) => v,
        Payload::PartialDecode(_) => vec![],
    }
}

fn drain(a: &mut Association, now: Instant) -> Vec<Bytes> {
    let mut out = vec![];
    while let Some(t) = a.poll_transmit(now) {
        out.extend(raw_packets(t));
    }
    out
}

fn events(a: &mut Association) -> Vec<Event> {
    let mut v = vec![];
    while let Some(e) = a.poll() {
        v.push(e);
    }
    v
}

fn chunk_types(pkt: &Bytes) -> Vec<u8> {
    let p = Packet::unmarshal(pkt).expect("valid packet");
    p.chunks.iter().map(|c| c.header().typ.0).collect()
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let c = Association::new_unbound(
            Side::Client,
            Arc::new(cfg().with_local_port(5000).with_remote_port(5001)),
            1200,
            S_ADDR.parse().unwrap(),
            now,
        );
        let s = Association::new_unbound(
            Side::Server,
            Arc::new(cfg()),
            1200,
            C_ADDR.parse().unwrap(),
            now,
        );
        Pair {
            c,
            s,
            now,
            inbox_c: vec![],
            inbox_s: vec![],
        }
    }

    fn established() -> Pair {
        let mut p = Pair::new();
        p.pump();
        assert!(p.c.is_established() && p.s.is_established());
        events(&mut p.c);
        events(&mut p.s);
        p
    }

    fn deliver_to_s(&mut self, pkt: Bytes) {
        self.s
            .handle_packet(self.now, C_ADDR.parse().unwrap(), pkt)
            .unwrap();
        let got = read_ready(&mut self.s);
        self.inbox_s.extend(got);
    }

    fn deliver_to_c(&mut self, pkt: Bytes) {
        self.c
            .handle_packet(self.now, S_ADDR.parse().unwrap(), pkt)
            .unwrap();
        let got = read_ready(&mut self.c);
        self.inbox_c.extend(got);
    }

    /// Delivers packets both ways until both sides are quiet; returns
    /// everything that crossed the wire (true = client to server).
    fn pump(&mut self) -> Vec<(bool, Bytes)> {
        let mut log = vec![];
        loop {
            let from_c = drain(&mut self.c, self.now);
            let from_s = drain(&mut self.s, self.now);
            if from_c.is_empty() && from_s.is_empty() {
                return log;
            }
            for p in from_c {
                log.push((true, p.clone()));
                self.deliver_to_s(p);
            }
            for p in from_s {
                log.push((false, p.clone()));
                self.deliver_to_c(p);
            }
        }
    }

    /// Advances the clock in small steps, firing timers and delivering
    /// packets (server's output is dropped when `server_dead`).
    fn advance(&mut self, d: Duration, server_dead: bool) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(5);
            self.c.handle_timeout(self.now);
            if server_dead {
                drain(&mut self.c, self.now);
            } else {
                self.s.handle_timeout(self.now);
                self.pump();
            }
        }
    }
}

fn write(a: &mut Association, stream: u16, ppi: PayloadProtocolIdentifier, data: &[u8]) {
    if a.stream(stream).is_err() {
        a.open_stream(stream, ppi).unwrap();
    }
    a.stream(stream)
        .unwrap()
        .write_sctp(&Bytes::copy_from_slice(data), ppi)
        .unwrap();
}

/// Reads every complete message, leaving non-stream events queued.
fn read_ready(a: &mut Association) -> Vec<(u16, PayloadProtocolIdentifier, Bytes)> {
    let mut out = vec![];
    for id in a.stream_ids() {
        if let Ok(mut st) = a.stream(id) {
            while let Ok(Some(m)) = st.read_sctp() {
                out.push((id, m.ppi, m.to_bytes()));
            }
        }
    }
    out
}

/// Appends a raw parameter to the single INIT / INIT-ACK chunk of `pkt` and
/// recomputes the checksum.
fn append_param(pkt: &Bytes, param: &[u8]) -> Bytes {
    let mut b = BytesMut::from(&pkt[..]);
    while b.len() % 4 != 0 {
        b.extend_from_slice(&[0]);
    }
    b.extend_from_slice(param);
    let chunk_len = (b.len() - 12) as u16;
    b[14..16].copy_from_slice(&chunk_len.to_be_bytes());
    b[8..12].copy_from_slice(&[0; 4]);
    let crc = crc32c::crc32c(&b);
    b[8..12].copy_from_slice(&crc.to_le_bytes());
    b.freeze()
}

fn with_crc(mut b: BytesMut) -> Bytes {
    b[8..12].copy_from_slice(&[0; 4]);
    let crc = crc32c::crc32c(&b);
    b[8..12].copy_from_slice(&crc.to_le_bytes());
    b.freeze()
}

#[test]
fn ppid_other_values_are_sent_and_received() {
    let mut p = Pair::established();
    write(&mut p.c, 0, PayloadProtocolIdentifier::Other(11), b"asap");
    write(&mut p.c, 1, PayloadProtocolIdentifier::Other(12), b"enrp");
    let wire = p.pump();
    let got = core::mem::take(&mut p.inbox_s);
    assert_eq!(
        got,
        vec![
            (
                0,
                PayloadProtocolIdentifier::Other(11),
                Bytes::from_static(b"asap")
            ),
            (
                1,
                PayloadProtocolIdentifier::Other(12),
                Bytes::from_static(b"enrp")
            ),
        ]
    );
    // On the wire the PPID field (offset 12 in the DATA chunk) is 11 / 12.
    let mut seen = vec![];
    for (_, pkt) in &wire {
        let mut off = 12;
        while off + 16 <= pkt.len() {
            let len = u16::from_be_bytes([pkt[off + 2], pkt[off + 3]]) as usize;
            if pkt[off] == 0 {
                seen.push(u32::from_be_bytes(
                    pkt[off + 12..off + 16].try_into().unwrap(),
                ));
            }
            off += (len + 3) & !3;
        }
    }
    assert_eq!(seen, vec![11, 12]);
    assert_eq!(u32::from(PayloadProtocolIdentifier::from(12u32)), 12);
    assert_eq!(
        PayloadProtocolIdentifier::from(0u32),
        PayloadProtocolIdentifier::Unknown
    );
}

#[test]
fn shutdown_carries_last_tsn_received_and_ends_graceful_on_both_sides() {
    let mut p = Pair::established();
    for _ in 0..3 {
        write(&mut p.s, 0, PayloadProtocolIdentifier::Other(11), b"x");
    }
    write(&mut p.c, 0, PayloadProtocolIdentifier::Other(11), b"y");
    p.pump();
    core::mem::take(&mut p.inbox_c);
    core::mem::take(&mut p.inbox_s);
    let server_last_tsn = p.s.my_next_tsn.wrapping_sub(1);
    assert_ne!(server_last_tsn, p.c.my_next_tsn.wrapping_sub(1));

    p.c.shutdown().unwrap();
    let mut wire = p.pump();
    // Both sides still owe delayed SACKs; let the SACK timer fire.
    let end = p.now + Duration::from_millis(200);
    while p.now < end && !(p.c.is_closed() && p.s.is_closed()) {
        p.now += Duration::from_millis(5);
        p.c.handle_timeout(p.now);
        p.s.handle_timeout(p.now);
        wire.extend(p.pump());
    }
    let shutdown = wire
        .iter()
        .find(|(from_c, pkt)| *from_c && chunk_types(pkt).contains(&CT_SHUTDOWN.0))
        .expect("SHUTDOWN sent");
    let pkt = Packet::unmarshal(&shutdown.1).unwrap();
    let sd = pkt.chunks[0]
        .as_any()
        .downcast_ref::<ChunkShutdown>()
        .unwrap();
    assert_eq!(sd.cumulative_tsn_ack, server_last_tsn);

    assert!(p.c.is_closed(), "initiator must reach Closed");
    assert!(p.s.is_closed());
    for a in [&mut p.c, &mut p.s] {
        let ev = events(a);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::AssociationLost {
                    reason: AssociationError::ShutdownComplete
                }
            )),
            "{ev:?}"
        );
    }
}

#[test]
fn shutdown_waits_for_queued_data() {
    let mut p = Pair::established();
    write(
        &mut p.c,
        0,
        PayloadProtocolIdentifier::Other(11),
        &[7u8; 5000],
    );
    p.c.shutdown().unwrap();
    p.pump();
    let got = core::mem::take(&mut p.inbox_s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2.len(), 5000);
    assert!(p.c.is_closed() && p.s.is_closed());
}

#[test]
fn init_and_init_ack_with_address_params_and_cookie_preservative() {
    let mut p = Pair::new();
    let init = drain(&mut p.c, p.now).pop().expect("INIT");
    let ipv4 = [0, 5, 0, 8, 192, 0, 2, 1];
    let mut ipv6 = vec![0, 6, 0, 20];
    ipv6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    ipv6.extend_from_slice(&[0; 12]);
    let preservative = [0, 9, 0, 8, 0, 0, 0x27, 0x10];
    let init = append_param(&init, &ipv4);
    let init = append_param(&init, &ipv6);
    let init = append_param(&init, &preservative);
    // An unknown parameter whose upper bits say "stop processing" ends the
    // parameter list, not the chunk.
    let init = append_param(&init, &[0x00, 0x42, 0, 4]);
    p.deliver_to_s(init);
    let init_ack = drain(&mut p.s, p.now)
        .pop()
        .expect("INIT-ACK despite params");
    assert_eq!(chunk_types(&init_ack), vec![CT_INIT_ACK.0]);
    let init_ack = append_param(&init_ack, &ipv4);
    let init_ack = append_param(&init_ack, &ipv6);
    p.deliver_to_c(init_ack);
    p.pump();
    assert!(p.c.is_established() && p.s.is_established());
}

#[test]
fn heartbeats_keep_an_idle_association_alive() {
    let mut p = Pair::established();
    p.advance(Duration::from_secs(3), false);
    assert!(p.c.is_established() && p.s.is_established());
    assert!(p.c.heartbeats_sent() >= 5, "{}", p.c.heartbeats_sent());
}

#[test]
fn dead_peer_is_detected_within_the_bound() {
    let mut p = Pair::established();
    let start = p.now;
    p.advance(Duration::from_secs(2), true);
    let ev = events(&mut p.c);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::AssociationLost {
                reason: AssociationError::TimedOut
            }
        )),
        "{ev:?}"
    );
    assert!(p.c.is_closed());
    // Detection time: between the bound and the bound plus one step.
    let _ = start;
}

#[test]
fn dead_peer_detected_while_data_is_outstanding() {
    let mut p = Pair::established();
    write(&mut p.c, 0, PayloadProtocolIdentifier::Other(11), b"lost");
    let mut t = Duration::ZERO;
    while !p.c.is_closed() && t < Duration::from_secs(5) {
        p.advance(Duration::from_millis(5), true);
        t += Duration::from_millis(5);
    }
    assert!(p.c.is_closed());
    assert!(t <= Duration::from_millis(610), "took {t:?}");
}

#[test]
fn sack_is_bundled_with_the_response() {
    let mut p = Pair::established();
    write(
        &mut p.c,
        0,
        PayloadProtocolIdentifier::Other(11),
        b"request",
    );
    for pkt in drain(&mut p.c, p.now) {
        p.deliver_to_s(pkt);
    }
    assert_eq!(core::mem::take(&mut p.inbox_s).len(), 1);
    write(
        &mut p.s,
        0,
        PayloadProtocolIdentifier::Other(11),
        b"response",
    );
    let out = drain(&mut p.s, p.now);
    assert_eq!(out.len(), 1, "one packet for SACK + DATA");
    assert_eq!(chunk_types(&out[0]), vec![CT_SACK.0, CT_PAYLOAD_DATA.0]);
    p.deliver_to_c(out[0].clone());
    assert_eq!(p.c.outbound_queue.inflight_len(), 0, "request acknowledged");
}

#[test]
fn abort_is_sent_and_reported_on_both_sides() {
    let mut p = Pair::established();
    write(
        &mut p.c,
        0,
        PayloadProtocolIdentifier::Other(11),
        b"dropped?",
    );
    p.c.abort();
    let out = drain(&mut p.c, p.now);
    assert!(out.iter().any(|pkt| chunk_types(pkt) == vec![CT_ABORT.0]));
    assert!(events(&mut p.c).iter().any(|e| matches!(
        e,
        Event::AssociationLost {
            reason: AssociationError::LocallyAborted
        }
    )));
    for pkt in out {
        p.deliver_to_s(pkt);
    }
    assert!(p.s.is_closed());
    assert!(events(&mut p.s).iter().any(|e| matches!(
        e,
        Event::AssociationLost {
            reason: AssociationError::AssociationClosed
        }
    )));
}

#[test]
fn error_chunk_and_unknown_chunks_do_not_kill_the_association() {
    let mut p = Pair::established();
    let tag = p.c.my_verification_tag();
    let mut b = BytesMut::new();
    b.extend_from_slice(&5001u16.to_be_bytes());
    b.extend_from_slice(&5000u16.to_be_bytes());
    b.extend_from_slice(&tag.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    // ERROR chunk, cause "Out of Resource" (4).
    b.extend_from_slice(&[CT_ERROR.0, 0, 0, 8, 0, 4, 0, 4]);
    // Unknown chunk type 0xC7 (skip and report) with 4 value bytes.
    b.extend_from_slice(&[0xC7, 0, 0, 8, 1, 2, 3, 4]);
    // HEARTBEAT after them must still be processed.
    b.extend_from_slice(&[CT_HEARTBEAT.0, 0, 0, 12, 0, 1, 0, 8, 9, 9, 9, 9]);
    let pkt = with_crc(b);
    assert_eq!(
        chunk_types(&pkt),
        vec![CT_ERROR.0, CT_HEARTBEAT.0],
        "unknown chunk skipped"
    );
    p.deliver_to_c(pkt);
    assert!(p.c.is_established());
    let out = drain(&mut p.c, p.now);
    let types: Vec<_> = out.iter().map(chunk_types).collect();
    assert!(types.contains(&vec![CT_HEARTBEAT_ACK.0]), "{types:?}");
}

#[test]
fn protocol_violation_aborts_instead_of_silently_closing() {
    let mut p = Pair::established();
    let mut b = BytesMut::new();
    b.extend_from_slice(&5001u16.to_be_bytes());
    b.extend_from_slice(&5000u16.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    // INIT with Initiate Tag 0: RFC 9260 3.3.2 says abort.
    b.extend_from_slice(&[CT_INIT.0, 0, 0, 20]);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&65536u32.to_be_bytes());
    b.extend_from_slice(&[0, 1, 0, 1]);
    b.extend_from_slice(&1u32.to_be_bytes());
    p.deliver_to_c(with_crc(b));
    assert!(p.c.is_closed());
    let out = drain(&mut p.c, p.now);
    assert!(
        out.iter().any(|pkt| chunk_types(pkt) == vec![CT_ABORT.0]),
        "peer must be told"
    );
    assert!(events(&mut p.c).iter().any(|e| matches!(
        e,
        Event::AssociationLost {
            reason: AssociationError::TransportError
        }
    )));
}

#[test]
fn mutated_packets_never_panic() {
    // Real packets of a session, mutated behind the common header (tag
    // kept, checksum fixed) and fed to an established association; a fresh
    // pair replaces one that the garbage closed. Must never panic.
    let mut p = Pair::established();
    let mut samples: Vec<Bytes> = vec![];
    write(
        &mut p.c,
        0,
        PayloadProtocolIdentifier::Other(11),
        &[1u8; 3000],
    );
    write(&mut p.c, 1, PayloadProtocolIdentifier::Other(12), b"x");
    samples.extend(p.pump().into_iter().filter(|(c, _)| *c).map(|(_, b)| b));
    p.c.shutdown().unwrap();
    samples.extend(p.pump().into_iter().filter(|(c, _)| *c).map(|(_, b)| b));
    assert!(samples.len() >= 3);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut p = Pair::established();
    for round in 0..30_000 {
        if p.s.is_closed() || !p.s.is_established() {
            p = Pair::established();
        }
        let mut b = BytesMut::from(&samples[round % samples.len()][..]);
        b[4..8].copy_from_slice(&p.s.my_verification_tag().to_be_bytes());
        for _ in 0..1 + rnd() % 4 {
            let at = 12 + (rnd() as usize) % (b.len() - 12);
            b[at] = rnd() as u8;
        }
        if rnd() % 8 == 0 {
            let cut = 12 + (rnd() as usize) % (b.len() - 12);
            b.truncate(cut);
        }
        let _ =
            p.s.handle_packet(p.now, C_ADDR.parse().unwrap(), with_crc(b));
        let _ = drain(&mut p.s, p.now);
        let _ = events(&mut p.s);
    }
}

#[test]
fn stateless_cookie_handshake_and_rejections() {
    let now = Instant::now();
    let secret = crate::random_secret();
    let c_ip: IpAddr = "127.0.0.1".parse().unwrap();
    let mut c = Association::new_unbound(
        Side::Client,
        Arc::new(cfg().with_local_port(5000).with_remote_port(5001)),
        1200,
        S_ADDR.parse().unwrap(),
        now,
    );
    let init = drain(&mut c, now).pop().expect("INIT");
    let init_ack =
        Association::stateless_init_ack(&init, c_ip, &secret, 1000, &cfg()).expect("INIT-ACK");
    assert_eq!(chunk_types(&init_ack), vec![CT_INIT_ACK.0]);
    c.handle_packet(now, S_ADDR.parse().unwrap(), init_ack)
        .unwrap();
    let echo = drain(&mut c, now).pop().expect("COOKIE-ECHO");
    assert_eq!(chunk_types(&echo), vec![CT_COOKIE_ECHO.0]);

    let accept = |pkt: Bytes, peer: &str, secret: &[u8], at: u64| {
        Association::accept_cookie_echo(
            pkt,
            peer.parse().unwrap(),
            secret,
            at,
            60,
            Arc::new(cfg()),
            1200,
            now,
        )
    };
    // Wrong secret, other peer address, too old, tampered: refused.
    assert!(accept(echo.clone(), C_ADDR, &[0u8; 32], 1001).is_err());
    assert!(accept(echo.clone(), "127.0.0.9:5000", &secret, 1001).is_err());
    assert!(accept(echo.clone(), C_ADDR, &secret, 1061).is_err());
    let mut bad = BytesMut::from(&echo[..]);
    bad[20] ^= 1;
    assert!(accept(with_crc(bad), C_ADDR, &secret, 1001).is_err());

    // The real one builds an established association.
    let mut s = accept(echo, C_ADDR, &secret, 1001).expect("accepted");
    assert!(s.is_established());
    let ack = drain(&mut s, now);
    assert_eq!(chunk_types(&ack[0]), vec![CT_COOKIE_ACK.0]);
    for pkt in ack {
        c.handle_packet(now, S_ADDR.parse().unwrap(), pkt).unwrap();
    }
    assert!(c.is_established());
    let mut p = Pair {
        c,
        s,
        now,
        inbox_c: vec![],
        inbox_s: vec![],
    };
    events(&mut p.c);
    events(&mut p.s);
    write(&mut p.c, 0, PayloadProtocolIdentifier::Other(11), b"hello");
    write(&mut p.s, 2, PayloadProtocolIdentifier::Other(12), b"world");
    p.pump();
    assert_eq!(p.inbox_s.len(), 1);
    assert_eq!(p.inbox_c.len(), 1);
    assert_eq!(&p.inbox_c[0].2[..], b"world");
}

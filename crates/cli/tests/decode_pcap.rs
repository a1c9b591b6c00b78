//! `rserpool decode` on captures: the real rsplib capture of 2007 (a
//! robustness corpus, see `../shared/data/README.md`) and small captures
//! built here for each link layer, encapsulation and fragmentation case.

use etherparse::{IpNumber, PacketBuilder};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgWriter};
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `../shared/data/rsplib-demo-2007.pcap` from the workspace root.
fn corpus() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/rsplib-demo-2007.pcap");
    assert!(
        path.is_file(),
        "{} is missing: shared/ must sit beside the checkout",
        path.display()
    );
    path
}

fn rserpool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rserpool"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run rserpool")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Counts heap bytes per thread, so a decode's peak can be measured while
/// other tests run on other threads.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are const-initialised thread locals without destructors.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let _ = LIVE.try_with(|live| {
                live.set(live.get() + layout.size());
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
            });
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(layout.size())));
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes allocated at the peak of `f`, above what was live before it.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

#[test]
fn rsplib_capture_every_rserpool_chunk_decodes_or_fails_cleanly() {
    let path = corpus();
    let path = path.to_str().unwrap();
    let o = rserpool(&["decode", "--json", "-x", "--allow-errors", path]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let records = json_lines(&o);
    // ../shared/data/README.md: 693 SCTP DATA chunks carry PPID 11 or 12.
    assert_eq!(records.len(), 693);

    // The counter itself works.
    let (v, heap) = peak_heap(|| vec![0u8; 1000]);
    assert!(heap >= v.len(), "allocation counter saw {heap} bytes");

    let mut decoded = 0;
    let mut worst_time = (Duration::ZERO, 0);
    let mut worst_heap = (0.0f64, 0, 0);
    for r in &records {
        let frame = r["frame"].as_u64().unwrap();
        let ppid = r["ppid"].as_u64().unwrap() as u32;
        assert!(ppid == 11 || ppid == 12, "frame {frame}");
        assert_eq!(
            r["chunks"], 1,
            "frame {frame}: the capture has no fragmented messages"
        );
        let hex = r["payload"].as_str().unwrap();
        let payload = bytes::Bytes::from(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        );
        assert_eq!(r["length"].as_u64().unwrap() as usize, payload.len());
        // The binary's verdict is the library's verdict on the same bytes.
        let start = Instant::now();
        let (result, heap) = peak_heap(|| rserpool_wire::Message::decode_ppid(ppid, &payload));
        let took = start.elapsed();
        let result = result.expect("PPID 11 or 12");
        match (&result, r.get("errors")) {
            (Ok(d), None) => {
                decoded += 1;
                assert_eq!(
                    r["type"].as_str().unwrap(),
                    d.message.to_string().split(' ').next().unwrap()
                );
            }
            (Err(e), Some(errors)) => {
                assert_eq!(
                    errors[0]["offset"].as_u64().unwrap() as usize,
                    e.offset,
                    "frame {frame}"
                );
                assert_eq!(errors[0]["message"].as_str().unwrap(), e.kind.to_string());
                assert!(
                    e.offset <= payload.len(),
                    "frame {frame}: offset {} past the end",
                    e.offset
                );
            }
            (res, _) => panic!("frame {frame}: binary says {r}, library says {res:?}"),
        }
        // Decoding allocates at most a small multiple of the input: no length
        // or count field from the wire drives an allocation by itself.
        assert!(
            heap <= 4096 + 16 * payload.len(),
            "frame {frame}: {heap} heap bytes for {} input bytes",
            payload.len()
        );
        let ratio = heap as f64 / payload.len().max(1) as f64;
        if ratio > worst_heap.0 {
            worst_heap = (ratio, heap, frame);
        }
        if took > worst_time.0 {
            worst_time = (took, frame);
        }
    }
    // Reported, not asserted: timings belong in benchmarks.
    eprintln!(
        "rsplib capture: {} messages, {decoded} decoded; slowest decode {:?} (frame {}); \
         most heap per input byte {:.1} ({} bytes, frame {})",
        records.len(),
        worst_time.0,
        worst_time.1,
        worst_heap.0,
        worst_heap.1,
        worst_heap.2
    );
    let summary = stderr(&o);
    let want = format!("693 messages: {decoded} decoded, {} error", 693 - decoded);
    assert!(summary.starts_with(&want), "{summary}");
    assert!(summary.contains("4835 frames"), "{summary}");
    assert!(
        summary.contains("693 DATA chunks with PPID 11 or 12"),
        "{summary}"
    );

    // Without --allow-errors the errors make the exit status 1.
    let o = rserpool(&["decode", path]);
    assert_eq!(o.status.code(), Some(if decoded < 693 { 1 } else { 0 }));
    assert_eq!(stdout(&o).lines().count(), 693);
}

#[test]
fn rsplib_capture_matches_tshark_chunk_by_chunk() {
    let path = corpus();
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args([
            "-Y",
            "sctp.data_payload_proto_id == 11 || sctp.data_payload_proto_id == 12",
        ])
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "sctp.data_payload_proto_id",
        ])
        .output();
    let tshark = match tshark {
        Ok(o) if o.status.success() => o,
        _ => {
            // scripts/test.sh installs tshark, so CI always runs the comparison.
            eprintln!("tshark not available: skipping the cross-check");
            return;
        }
    };
    // One row per frame; a frame with several DATA chunks lists their PPIDs with commas.
    let mut theirs = Vec::new();
    for line in String::from_utf8(tshark.stdout).unwrap().lines() {
        let (frame, ppids) = line.split_once('\t').unwrap();
        for p in ppids.split(',').filter(|p| *p == "11" || *p == "12") {
            theirs.push((frame.parse::<u64>().unwrap(), p.parse::<u64>().unwrap()));
        }
    }
    let o = rserpool(&["decode", "--json", "--allow-errors", path.to_str().unwrap()]);
    let ours: Vec<(u64, u64)> = json_lines(&o)
        .iter()
        .map(|r| (r["frame"].as_u64().unwrap(), r["ppid"].as_u64().unwrap()))
        .collect();
    assert_eq!(theirs.len(), 693);
    assert_eq!(ours, theirs);
}

#[test]
fn protocol_filter_on_a_capture() {
    let path = corpus();
    let asap = rserpool(&[
        "decode",
        "--asap",
        "--json",
        "--allow-errors",
        path.to_str().unwrap(),
    ]);
    let enrp = rserpool(&[
        "decode",
        "--ppid",
        "12",
        "--json",
        "--allow-errors",
        path.to_str().unwrap(),
    ]);
    let (asap, enrp) = (json_lines(&asap), json_lines(&enrp));
    assert!(asap.iter().all(|r| r["ppid"] == 11));
    assert!(enrp.iter().all(|r| r["ppid"] == 12));
    assert_eq!(asap.len() + enrp.len(), 693);
}

// ---- Small captures built here ----------------------------------------

/// WIRE.md §11 vectors.
const ASAP_HRES: &str = "050000180009000c4563686f506f6f6c803f000800000003";
const ENRP_TAKEOVER: &str = "07000010000000010000000000000009";
/// An ASAP_HANDLE_RESOLUTION with a stop-and-report parameter at offset 16.
const ASAP_BAD: &str = "050000180009000c4563686f506f6f6c4033000800000003";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn data_chunk(flags: u8, tsn: u32, ppid: u32, payload: &[u8]) -> Vec<u8> {
    let mut c = vec![0, flags];
    c.extend_from_slice(&((16 + payload.len()) as u16).to_be_bytes());
    c.extend_from_slice(&tsn.to_be_bytes());
    c.extend_from_slice(&[0, 1, 0, 0]); // stream 1, SSN 0
    c.extend_from_slice(&ppid.to_be_bytes());
    c.extend_from_slice(payload);
    c
}

fn sctp_packet(src: u16, dst: u16, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src.to_be_bytes());
    p.extend_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 42, 0, 0, 0, 0]);
    for c in chunks {
        p.extend_from_slice(c);
        p.resize(p.len().next_multiple_of(4), 0);
    }
    p
}

fn eth_ipv4(sctp: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .write(&mut f, IpNumber(132), sctp)
        .unwrap();
    f
}

fn write_pcap(dir: &Path, name: &str, datalink: DataLink, frames: &[Vec<u8>]) -> PathBuf {
    let path = dir.join(name);
    let header = PcapHeader {
        datalink,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&path).unwrap(), header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_secs(1_000_000) + Duration::from_millis(250 * i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
    path
}

#[test]
fn ethernet_ipv4_multi_chunk_packet() {
    let dir = tempfile::tempdir().unwrap();
    let sack = vec![3, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 0];
    let packet = sctp_packet(
        3863,
        1234,
        &[
            sack,
            data_chunk(3, 1, 11, &unhex(ASAP_HRES)),
            data_chunk(3, 2, 51, b"not rserpool"),
            data_chunk(3, 3, 12, &unhex(ENRP_TAKEOVER)),
        ],
    );
    let other = eth_ipv4(&sctp_packet(5, 6, &[data_chunk(3, 9, 0, b"x")]));
    let path = write_pcap(
        dir.path(),
        "multi.pcap",
        DataLink::ETHERNET,
        &[other, eth_ipv4(&packet)],
    );
    let o = rserpool(&["decode", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "#2 0.250000 10.0.0.1:3863 -> 10.0.0.2:1234 ASAP_HANDLE_RESOLUTION handle=EchoPool items=3\n\
         #2 0.250000 10.0.0.1:3863 -> 10.0.0.2:1234 ENRP_INIT_TAKEOVER from=0x00000001 target=0x00000009\n"
    );
    assert!(
        stderr(&o).starts_with(
            "2 messages: 2 decoded, 0 errors\n2 frames, 2 SCTP packets, 2 DATA chunks"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_message_in_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let frames = [
        eth_ipv4(&sctp_packet(
            3863,
            1234,
            &[data_chunk(3, 1, 11, &unhex(ASAP_BAD))],
        )),
        eth_ipv4(&sctp_packet(
            3863,
            1234,
            &[data_chunk(3, 2, 11, &unhex(ASAP_HRES))],
        )),
    ];
    let path = write_pcap(dir.path(), "bad.pcap", DataLink::ETHERNET, &frames);
    let o = rserpool(&["decode", "--pcap", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.starts_with("#1 0.000000 10.0.0.1:3863 -> 10.0.0.2:1234 ASAP error at offset 16: unrecognized parameter type 0x4033 (stop and report)\n#2 "),
        "{out}"
    );
    let err = stderr(&o);
    assert!(err.starts_with("2 messages: 1 decoded, 1 error\n"), "{err}");
    assert!(
        err.contains("1  ASAP unrecognized parameter type 0x4033"),
        "{err}"
    );
    let o = rserpool(&["decode", "--keep-going", "--pcap", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn pcapng_linux_cooked_v2_ipv6_udp_encapsulated() {
    let dir = tempfile::tempdir().unwrap();
    let sctp = sctp_packet(9901, 9901, &[data_chunk(3, 1, 12, &unhex(ENRP_TAKEOVER))]);
    let mut ip = Vec::new();
    let src: [u8; 16] = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let dst: [u8; 16] = "2001:db8::2"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    PacketBuilder::ipv6(src, dst, 64)
        .udp(9899, 9899)
        .write(&mut ip, &sctp)
        .unwrap();
    // SLL2: protocol 0x86dd, reserved, ifindex, ARPHRD_ETHER, outgoing, 6-byte address.
    let mut frame = vec![
        0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    frame.extend_from_slice(&ip);

    let path = dir.path().join("sll2.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    let idb = InterfaceDescriptionBlock {
        linktype: DataLink::LINUX_SLL2,
        snaplen: 65535,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    };
    w.write_block(&Block::InterfaceDescription(idb)).unwrap();
    for (i, ns) in [5_000_000_000u64, 5_000_123_456].into_iter().enumerate() {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(ns),
            original_len: frame.len() as u32,
            data: Cow::Borrowed(&frame[..if i == 0 { frame.len() } else { 30 }]),
            options: vec![],
        };
        w.write_block(&Block::EnhancedPacket(epb)).unwrap();
    }
    drop(w);
    let o = rserpool(&["decode", "--json", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = json_lines(&o);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["src"], "[2001:db8::1]:9901");
    assert_eq!(r[0]["udp_encapsulated"], true);
    assert_eq!(r[0]["type"], "ENRP_INIT_TAKEOVER");
    assert_eq!(r[0]["time"], 0.0);
    // The second frame is cut short by the snap length: counted, not fatal.
    assert!(stderr(&o).contains("1 unreadable frame"), "{}", stderr(&o));
}

#[test]
fn fragmented_user_message_is_reassembled() {
    let dir = tempfile::tempdir().unwrap();
    let msg = unhex(ASAP_HRES);
    let (a, rest) = msg.split_at(10);
    let (b, c) = rest.split_at(7);
    // Out of order: middle, last, first.
    let frames = [
        eth_ipv4(&sctp_packet(1, 3863, &[data_chunk(0, 101, 11, b)])),
        eth_ipv4(&sctp_packet(1, 3863, &[data_chunk(1, 102, 11, c)])),
        eth_ipv4(&sctp_packet(1, 3863, &[data_chunk(2, 100, 11, a)])),
        // A lone middle fragment never completes.
        eth_ipv4(&sctp_packet(1, 3863, &[data_chunk(0, 500, 11, b"zz")])),
    ];
    let path = write_pcap(dir.path(), "frag.pcap", DataLink::ETHERNET, &frames);
    let o = rserpool(&["decode", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "#3 0.500000 10.0.0.1:1 -> 10.0.0.2:3863 ASAP_HANDLE_RESOLUTION handle=EchoPool items=3 [reassembled from 3 chunks]\n"
    );
    let err = stderr(&o);
    assert!(
        err.contains("3 DATA chunks with PPID 11 or 12, 1 reassembled message"),
        "{err}"
    );
    assert!(err.contains("1 fragment of incomplete messages"), "{err}");
}

#[test]
fn ip_fragments_and_garbage_frames_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let good = eth_ipv4(&sctp_packet(
        3863,
        1,
        &[data_chunk(3, 1, 11, &unhex(ASAP_HRES))],
    ));
    let mut fragment = good.clone();
    fragment[14 + 6] = 0x20; // IPv4 "more fragments"
    let mut bad_chunk = good.clone();
    bad_chunk[14 + 20 + 12 + 3] = 0xff; // chunk length past the end
    let frames = [
        fragment,
        vec![0xff; 7],
        good[..40].to_vec(),
        bad_chunk,
        good.clone(),
    ];
    let path = write_pcap(dir.path(), "mixed.pcap", DataLink::ETHERNET, &frames);
    let o = rserpool(&["decode", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(stdout(&o).starts_with("#5 "));
    let err = stderr(&o);
    assert!(
        err.contains("1 IP fragment skipped, 2 unreadable frames, 1 malformed SCTP packet"),
        "{err}"
    );
}

#[test]
fn raw_ip_capture_and_unsupported_link_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut ip = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(
            &mut ip,
            IpNumber(132),
            &sctp_packet(9901, 9902, &[data_chunk(3, 1, 12, &unhex(ENRP_TAKEOVER))]),
        )
        .unwrap();
    let path = write_pcap(
        dir.path(),
        "raw.pcap",
        DataLink::RAW,
        std::slice::from_ref(&ip),
    );
    let o = rserpool(&["decode", path.to_str().unwrap()]);
    assert!(
        stdout(&o).starts_with("#1 0.000000 192.0.2.1:9901 -> 192.0.2.2:9902 ENRP_INIT_TAKEOVER"),
        "{}",
        stdout(&o)
    );

    let path = write_pcap(dir.path(), "wlan.pcap", DataLink::IEEE802_11, &[ip]);
    let o = rserpool(&["decode", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("1 frame of unsupported link type"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("IEEE802_11"), "{}", stderr(&o));
}

#[test]
fn bad_and_cut_short_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello\n").unwrap();
    let o = rserpool(&["decode", "--pcap", text.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("is not a pcap or pcapng file"), "{err}");
    assert_eq!(
        err.lines().next().unwrap().matches("rserpool").count(),
        1,
        "{err}"
    );

    let o = rserpool(&[
        "decode",
        "--pcap",
        dir.path().join("missing.pcap").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot open"), "{}", stderr(&o));

    // A capture cut in the middle of its second frame: the first still decodes.
    let frame = eth_ipv4(&sctp_packet(
        3863,
        1,
        &[data_chunk(3, 1, 11, &unhex(ASAP_HRES))],
    ));
    let path = write_pcap(
        dir.path(),
        "cut.pcap",
        DataLink::ETHERNET,
        &[frame.clone(), frame],
    );
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
    let o = rserpool(&["decode", path.to_str().unwrap()]);
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(stderr(&o).contains("frame 2"), "{}", stderr(&o));
}

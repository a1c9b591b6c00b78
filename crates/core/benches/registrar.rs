//! Registrar benchmark: the real [`Registrar`] machine, driven sans-IO the
//! way the daemon drives it. Every input is an encoded message handed to
//! `handle_data`; every output is drained and encoded as the driver does;
//! two ENRP peers receive the handle updates. Prints a markdown table with
//! the reference implementation's handlespace-only figures
//! (`PERF-ANCHOR.md`) beside ours and the ratio.
//!
//! Run: `nice -n 5 cargo bench -p rserpool-core --bench registrar`
//! Options: `--sizes 1000,100000,1000000` `--runs 3` (median of runs per
//! cell; N = 10^6 runs once unless `--runs-large` says otherwise)
//! `--pes-per-assoc 1` (PEs sharing one ASAP association) `--no-memory`
//! `--skip resolve,keep-alive` (phases left out, e.g. to profile the others).
//!
//! Operations (RoundRobin, P = N/100 pools, one IPv4 address per PE):
//! * registration: N ASAP_REGISTRATIONs into an empty registrar;
//! * re-registration: the same N registrations again (the periodic one);
//! * deregistration: N ASAP_DEREGISTRATIONs;
//! * handle resolution: ASAP_HANDLE_RESOLUTION for 1 PE of a random pool;
//! * keep-alive cycle: the keep-alive timer of every PE fires (the registrar
//!   sends ASAP_ENDPOINT_KEEP_ALIVE and arms the answer's deadline), then
//!   every ASAP_ENDPOINT_KEEP_ALIVE_ACK arrives.
//!
//! Times are thread CPU time and include decoding every input, encoding
//! every output and the ENRP_HANDLE_UPDATEs to both peers.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_core::registrar::{Registrar, RegistrarConfig};
use rserpool_core::{AssocId, AssociationEvent, Instant, Machine, Transmit};
use rserpool_wire::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A bijective mix of u32: distinct, random-looking PE IDs.
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The inverse of [`mix`].
fn unmix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x4302_1123);
    x ^= (x >> 15) ^ (x >> 30);
    x = x.wrapping_mul(0x1d69_e2a5);
    x ^= x >> 16;
    x
}

const OWN: u32 = 1;
const PEERS: [u32; 2] = [2, 3];
/// Association IDs: peers first, then the pool users', then the PEs'.
const FIRST_PU_ASSOC: u64 = 10;
/// Pool users resolving in turn: each stays within the registrar's
/// per-association resolution limit (2,000/s) although virtual time moves
/// only 1 us per request, so the bench measures answered resolutions.
const PUS: u64 = 2_000;
const FIRST_PE_ASSOC: u64 = FIRST_PU_ASSOC + PUS;
const LIFE_MS: i32 = 3_600_000;

fn pr(v: u32) -> PrId {
    PrId::new(v).expect("non-zero")
}

fn encode(m: &Message) -> Bytes {
    let mut v = Vec::with_capacity(128);
    m.encode(&mut v).expect("encodable");
    Bytes::from(v)
}

fn asap(m: AsapMessage) -> Bytes {
    encode(&Message::Asap(m))
}

/// Messages encoded back to back into one buffer and handed out as slices
/// of it, as a driver that receives many datagrams into one buffer does
/// (one allocation and one shared reference count for all of them).
fn batch(msgs: impl Iterator<Item = AsapMessage>) -> Vec<Bytes> {
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for m in msgs {
        Message::Asap(m).encode(&mut buf).expect("encodable");
        ends.push(buf.len());
    }
    let buf = Bytes::from(buf);
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let b = buf.slice(start..end);
            start = end;
            b
        })
        .collect()
}

/// The scope one run registers.
struct Scope {
    n: usize,
    pools: Vec<PoolHandle>,
    per_assoc: usize,
}

impl Scope {
    fn new(n: usize, per_assoc: usize) -> Self {
        let p = (n / 100).max(1);
        Self {
            n,
            pools: (0..p)
                .map(|i| PoolHandle::try_from(format!("pool{i}").as_str()).unwrap())
                .collect(),
            per_assoc,
        }
    }

    fn pool(&self, i: usize) -> &PoolHandle {
        &self.pools[i % self.pools.len()]
    }

    fn pe_id(&self, i: usize) -> PeId {
        PeId(mix(i as u32))
    }

    fn assoc(&self, i: usize) -> AssocId {
        AssocId(FIRST_PE_ASSOC + (i / self.per_assoc) as u64)
    }

    fn addr(&self, i: usize) -> SocketAddr {
        let a = (i / self.per_assoc) as u32;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + a)), 20000)
    }

    fn registration(&self, i: usize) -> AsapMessage {
        AsapMessage::Registration {
            pool_handle: self.pool(i).clone(),
            pool_element: PoolElement {
                id: self.pe_id(i),
                home_registrar: None,
                registration_life: RegistrationLife(LIFE_MS),
                user_transport: UserTransport::Address(TransportAddress::sctp(
                    9000,
                    TransportUse::DataOnly,
                    vec![self.addr(i).ip()],
                )),
                policy: Policy::RoundRobin,
                asap_transport: None,
            },
        }
    }

    fn deregistration(&self, i: usize) -> AsapMessage {
        AsapMessage::Deregistration {
            pool_handle: self.pool(i).clone(),
            pe_id: self.pe_id(i),
        }
    }
}

/// The registrar under test, with its driver's bookkeeping.
struct Rig {
    r: Registrar,
    now: Instant,
    buf: Vec<u8>,
    sent: u64,
}

impl Rig {
    fn new() -> Self {
        let cfg = RegistrarConfig {
            id: Some(pr(OWN)),
            announce: false,
            ..RegistrarConfig::default()
        };
        let now = Instant::ZERO;
        let mut rig = Self {
            r: Registrar::new(cfg, 1, now).expect("valid config"),
            now,
            buf: Vec::with_capacity(1 << 16),
            sent: 0,
        };
        rig.drain();
        for (a, p) in PEERS.iter().enumerate() {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, *p as u8)), 9901);
            rig.r.handle_association(
                now,
                AssociationEvent::Up {
                    assoc: AssocId(a as u64 + 1),
                    peer: vec![addr],
                },
            );
        }
        rig.presence();
        for k in 0..PUS {
            let pu = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc612_0000 + k as u32)), 5000);
            rig.r.handle_association(
                now,
                AssociationEvent::Up {
                    assoc: AssocId(FIRST_PU_ASSOC + k),
                    peer: vec![pu],
                },
            );
        }
        rig.drain();
        rig
    }

    /// Both peers say they are alive (and own nothing).
    fn presence(&mut self) {
        for (a, p) in PEERS.iter().enumerate() {
            let m = encode(&Message::Enrp(EnrpMessage::Presence {
                servers: Servers {
                    sender: pr(*p),
                    receiver: Some(pr(OWN)),
                },
                reply_required: false,
                checksum: Some(0xFFFF),
                server_info: None,
            }));
            self.r
                .handle_data(self.now, AssocId(a as u64 + 1), PPID_ENRP, m);
        }
        self.drain();
    }

    /// Takes every output and encodes it, as the driver does.
    fn drain(&mut self) {
        while let Some(t) = self.r.poll_transmit() {
            if let Transmit::Send { message, .. } | Transmit::Announce { message } = t {
                self.buf.clear();
                message.encode(&mut self.buf).expect("encodable");
                self.sent += 1;
            }
        }
        while self.r.poll_event().is_some() {}
    }

    /// As [`Rig::drain`], noting the PE of every keep-alive sent.
    fn drain_keep_alives(&mut self, due: &mut Vec<(PoolHandle, PeId)>) {
        while let Some(t) = self.r.poll_transmit() {
            if let Transmit::Send { message, .. } | Transmit::Announce { message } = t {
                if let Message::Asap(AsapMessage::EndpointKeepAlive {
                    pool_handle,
                    pe_id: Some(pe),
                    ..
                }) = &message
                {
                    due.push((pool_handle.clone(), *pe));
                }
                self.buf.clear();
                message.encode(&mut self.buf).expect("encodable");
                self.sent += 1;
            }
        }
        while self.r.poll_event().is_some() {}
    }

    fn tick(&mut self) {
        self.now = self.now + Duration::from_micros(1);
    }

    fn up(&mut self, s: &Scope) {
        for a in 0..s.n.div_ceil(s.per_assoc) {
            let i = a * s.per_assoc;
            self.r.handle_association(
                self.now,
                AssociationEvent::Up {
                    assoc: s.assoc(i),
                    peer: vec![s.addr(i)],
                },
            );
        }
    }

    fn feed(&mut self, s: &Scope, i: usize, m: Bytes) {
        self.tick();
        self.r.handle_data(self.now, s.assoc(i), PPID_ASAP, m);
        self.drain();
    }
}

#[derive(Default, Clone, Copy)]
struct Cells {
    register: f64,
    reregister: f64,
    deregister: f64,
    resolve: f64,
    keep_alive: f64,
}

/// One run at size `n`: CPU seconds per operation kind, as rates.
fn run(s: &Scope, rng: &mut ChaCha8Rng, skip: &[String]) -> Cells {
    let mut rig = Rig::new();
    rig.up(s);
    let regs = batch((0..s.n).map(|i| s.registration(i)));

    let t = cpu_now();
    for (i, m) in regs.iter().enumerate() {
        rig.feed(s, i, m.clone());
    }
    let register = s.n as f64 / (cpu_now() - t);
    assert_eq!(rig.r.handlespace().len(), s.n, "every PE registered");

    let t = cpu_now();
    for (i, m) in regs.iter().enumerate() {
        rig.feed(s, i, m.clone());
    }
    let reregister = s.n as f64 / (cpu_now() - t);
    drop(regs);

    let skipped = |what: &str| skip.iter().any(|k| k == what);
    let resolve = if skipped("resolve") {
        f64::NAN
    } else {
        resolve_phase(s, rng, &mut rig)
    };
    let keep_alive = if skipped("keep-alive") {
        f64::NAN
    } else {
        keep_alive_phase(s, &mut rig)
    };

    let deregs = batch((0..s.n).map(|i| s.deregistration(i)));
    let t = cpu_now();
    for (i, m) in deregs.iter().enumerate() {
        rig.feed(s, i, m.clone());
    }
    let deregister = s.n as f64 / (cpu_now() - t);
    assert_eq!(rig.r.handlespace().len(), 0, "every PE deregistered");

    Cells {
        register,
        reregister,
        deregister,
        resolve,
        keep_alive,
    }
}

/// Handle resolutions for one PE of a random pool: resolutions per second.
fn resolve_phase(s: &Scope, rng: &mut ChaCha8Rng, rig: &mut Rig) -> f64 {
    let queries =
        batch(
            (0..s.n.clamp(1_000_000, 2_000_000)).map(|_| AsapMessage::HandleResolution {
                subscribe: false,
                pool_handle: s.pool(rng.random_range(0..s.pools.len())).clone(),
                items: Some(1),
            }),
        );
    let refused = rig.r.stats().refused.total();
    let t = cpu_now();
    for (k, m) in queries.iter().enumerate() {
        rig.tick();
        let pu = AssocId(FIRST_PU_ASSOC + k as u64 % PUS);
        rig.r.handle_data(rig.now, pu, PPID_ASAP, m.clone());
        rig.drain();
    }
    let resolve = queries.len() as f64 / (cpu_now() - t);
    assert_eq!(
        rig.r.stats().refused.total(),
        refused,
        "every resolution answered, none refused by the rate limit"
    );
    drop(queries);

    resolve
}

/// Keep-alive cycles per second in steady state.
fn keep_alive_phase(s: &Scope, rig: &mut Rig) -> f64 {
    // Keep-alive cycles in steady state: time advances in 1 ms steps, each
    // step fires the due timers and every keep-alive sent is answered at
    // once (intervals are jittered 0.5-1.5 x 5 s, so each PE sees one to
    // three cycles in the window). The answer is encoded from the
    // keep-alive, as the PE does, into a receive arena, as a driver
    // receives datagrams into one buffer: a table of 10^6 prepared answers
    // would add a cache miss per cycle that no daemon has.
    assert_eq!(unmix(s.pe_id(12345).0), 12345);
    rig.presence();
    let mut due = Vec::new();
    let mut arena = bytes::BytesMut::new();
    let mut scratch = Vec::with_capacity(256);
    let mut cycles = 0usize;
    let t = cpu_now();
    for step in 0..15_200 {
        if step % 5_000 == 0 {
            rig.presence();
        }
        rig.now = rig.now + Duration::from_millis(1);
        rig.r.handle_timeout(rig.now);
        rig.drain_keep_alives(&mut due);
        cycles += due.len();
        for (pool_handle, pe_id) in due.drain(..) {
            if arena.capacity() < 256 {
                arena.reserve(1 << 16);
            }
            scratch.clear();
            Message::Asap(AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id })
                .encode(&mut scratch)
                .expect("encodable");
            arena.extend_from_slice(&scratch);
            let i = unmix(pe_id.0) as usize;
            rig.feed(s, i, arena.split().freeze());
        }
    }
    let cpu = cpu_now() - t;
    assert!(
        cycles >= s.n,
        "every PE got a keep-alive ({cycles} sent to {} PEs)",
        s.n
    );
    let keep_alive = cycles as f64 / cpu;
    assert_eq!(rig.r.handlespace().len(), s.n, "no PE lost to keep-alives");
    keep_alive
}

/// Registrar memory per PE: RSS growth over N registrations whose messages
/// are built and dropped one by one (so a kept slice of a received buffer
/// shows), then after one re-registration of every PE.
fn memory(s: &Scope) -> (f64, f64) {
    let mut rig = Rig::new();
    let before = rss_bytes();
    rig.up(s);
    for i in 0..s.n {
        let m = asap(s.registration(i));
        rig.feed(s, i, m);
    }
    let filled = rss_bytes();
    for i in 0..s.n {
        let m = asap(s.registration(i));
        rig.feed(s, i, m);
    }
    let again = rss_bytes();
    let per = |b: u64| b.saturating_sub(before) as f64 / s.n as f64;
    std::hint::black_box(&rig.r);
    (per(filled), per(again))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

/// The reference implementation's handlespace alone (PERF-ANCHOR.md,
/// RoundRobin, P = N/100 rows where they exist, else P = 1): register,
/// deregister, HR k=1, keep-alive ack.
fn anchor(n: usize) -> Option<[f64; 4]> {
    match n {
        1_000 => Some([1.56e6, 1.98e6, 6.59e6, 4.77e6]),
        10_000 => Some([909e3, 1.10e6, 3.14e6, 2.34e6]),
        100_000 => Some([353e3, 367e3, 926e3, 880e3]),
        1_000_000 => Some([171e3, 157e3, 277e3, 399e3]),
        _ => None,
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = arg::<String>(&args, "--sizes")
        .unwrap_or_else(|| "1000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().replace('_', "").parse().expect("--sizes: numbers"))
        .collect();
    let runs: usize = arg(&args, "--runs").unwrap_or(3);
    let runs_large: usize = arg(&args, "--runs-large").unwrap_or(1);
    let per_assoc: usize = arg(&args, "--pes-per-assoc").unwrap_or(1).max(1);
    let memory_n: usize = arg(&args, "--memory-n").unwrap_or(1_000_000);
    let no_memory = args.iter().any(|a| a == "--no-memory");
    let skip: Vec<String> = arg::<String>(&args, "--skip")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(n) = arg::<usize>(&args, "--memory-only") {
        let (filled, again) = memory(&Scope::new(n, per_assoc));
        println!(
            "memory at N = {n}: {filled:.0} B per PE (RSS growth); {again:.0} B after one re-registration of every PE (reference handlespace: 528 B)"
        );
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);

    println!(
        "registrar machine, RoundRobin, P = N/100, {per_assoc} PE(s) per association, 2 ENRP peers; load average before: {}",
        load_average()
    );
    println!();
    println!(
        "| N | registration | re-registration | deregistration | HR k=1 | keep-alive cycle | anchor reg / dereg / HR / KA ack | ratio reg / dereg / HR / KA |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut ka_at_million = None;
    for &n in &sizes {
        let s = Scope::new(n, per_assoc);
        let r = if n >= 1_000_000 { runs_large } else { runs }.max(1);
        let cells: Vec<Cells> = (0..r).map(|_| run(&s, &mut rng, &skip)).collect();
        let m = |f: fn(&Cells) -> f64| median(cells.iter().map(f).collect());
        let c = Cells {
            register: m(|c| c.register),
            reregister: m(|c| c.reregister),
            deregister: m(|c| c.deregister),
            resolve: m(|c| c.resolve),
            keep_alive: m(|c| c.keep_alive),
        };
        if n == 1_000_000 {
            ka_at_million = Some(c.keep_alive);
        }
        let (a, ratio) = match anchor(n) {
            Some(a) => (
                format!(
                    "{} / {} / {} / {}",
                    fmt_rate(a[0]),
                    fmt_rate(a[1]),
                    fmt_rate(a[2]),
                    fmt_rate(a[3])
                ),
                format!(
                    "{:.2} / {:.2} / {:.2} / {:.2}",
                    c.register / a[0],
                    c.deregister / a[1],
                    c.resolve / a[2],
                    c.keep_alive / a[3]
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {n} | {} | {} | {} | {} | {} | {a} | {ratio} |",
            fmt_rate(c.register),
            fmt_rate(c.reregister),
            fmt_rate(c.deregister),
            fmt_rate(c.resolve),
            fmt_rate(c.keep_alive),
        );
    }
    println!();
    if let Some(ka) = ka_at_million {
        println!(
            "keep-alive monitoring of 10^6 PEs every 5 s: {:.3} of a core ({} cycles/s needed)",
            200_000.0 / ka,
            fmt_rate(200_000.0)
        );
    }
    if !no_memory {
        // In a fresh process: the runs above leave freed memory behind that
        // a second fill would reuse without growing the RSS.
        let out = std::process::Command::new(&args[0])
            .args(["--memory-only", &memory_n.to_string()])
            .args(["--pes-per-assoc", &per_assoc.to_string()])
            .output()
            .expect("re-run the benchmark for the memory figure");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!("load average after: {}", load_average());
}

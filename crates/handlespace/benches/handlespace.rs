//! Handlespace benchmark: the operations and sizes of
//! `/work/shared/PERF-ANCHOR.md`, printed as markdown tables with the
//! anchor's figure and the ratio (ours / anchor) per cell.
//!
//! Run: `nice -n 5 cargo bench -p rserpool-handlespace --bench handlespace`
//! Options: `--sizes 1000,10000` `--policies rr,lu,rand,wrand` `--runs 3`
//! (median of runs per cell) `--no-memory`.
//!
//! Times are thread CPU time. Each registration-path operation includes
//! what the registrar does around it, as in the anchor: registration =
//! register + arm the keep-alive timer + next-deadline lookup; re-registration
//! likewise; keep-alive ack = find + re-arm; deregistration = find + remove.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_handlespace::{EntryId, Handlespace, TimerKind};
use rserpool_wire::*;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pol {
    Rr,
    Lu,
    Rand,
    Wrand,
}

impl Pol {
    fn name(self) -> &'static str {
        match self {
            Pol::Rr => "RoundRobin",
            Pol::Lu => "LeastUsed",
            Pol::Rand => "Random",
            Pol::Wrand => "WeightedRandom",
        }
    }
    fn policy(self, v: u32) -> Policy {
        match self {
            Pol::Rr => Policy::RoundRobin,
            Pol::Lu => Policy::LeastUsed { load: v },
            Pol::Rand => Policy::Random,
            Pol::Wrand => Policy::WeightedRandom {
                weight: 1 + v % 1000,
            },
        }
    }
}

/// `gets` queries of the own registrar's checksum, as every PRESENCE
/// carries it. Out of line so that the loop's placement (a 1 ns operation
/// moves by 20 % with its alignment) does not depend on the code around it.
#[inline(never)]
fn checksum_gets(hs: &Handlespace, gets: u64) -> u32 {
    let mut acc = 0u32;
    let own = PrId::new(1).unwrap();
    for j in 0..gets {
        acc = acc.wrapping_add(u32::from(hs.checksum(black_box(own))) ^ j as u32);
    }
    acc
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

struct Input {
    handles: Vec<PoolHandle>,
    /// (pool index, element) per PE.
    pes: Vec<(u32, PoolElement)>,
}

fn make_input(pol: Pol, n: usize, pools: usize, rng: &mut ChaCha8Rng) -> Input {
    let handles = (0..pools)
        .map(|p| PoolHandle::try_from(format!("pool{p}").as_str()).unwrap())
        .collect();
    let pes = (0..n)
        .map(|i| {
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
            let e = PoolElement {
                id: PeId(mix(i as u32)),
                home_registrar: PrId::new(1 + (i % 4) as u32),
                registration_life: RegistrationLife(30_000),
                user_transport: UserTransport::Address(TransportAddress::sctp(
                    9000,
                    TransportUse::DataOnly,
                    vec![a],
                )),
                policy: pol.policy(rng.random()),
                asap_transport: Some(TransportAddress::sctp(
                    30000,
                    TransportUse::DataOnly,
                    vec![a],
                )),
            };
            ((i % pools) as u32, e)
        })
        .collect();
    Input { handles, pes }
}

const KEEP_ALIVE: u64 = 5_000_000;

/// Operations per measurement of the fast operations.
const MIN_OPS: usize = 1_000_000;

/// Registers every PE (registration path), returns CPU seconds.
fn fill(hs: &mut Handlespace, input: &Input, now: &mut u64) -> f64 {
    let work: Vec<(u32, PoolElement)> = input.pes.clone();
    let t = cpu_now();
    for (p, e) in work {
        *now += 1;
        let h = &input.handles[p as usize];
        let out = hs.register(h, e, *now).unwrap();
        hs.set_timer_entry(
            out.entry,
            TimerKind::KeepAlive,
            *now + KEEP_ALIVE + (*now * 7919) % 1_000_000,
        );
        black_box(hs.next_deadline());
    }
    cpu_now() - t
}

fn empty(hs: &mut Handlespace, input: &Input, order: &[u32]) -> f64 {
    // The driver's list of what to remove, built outside the timed part.
    let keys: Vec<(&PoolHandle, PeId)> = order
        .iter()
        .map(|&i| {
            let (p, e) = &input.pes[i as usize];
            (&input.handles[*p as usize], e.id)
        })
        .collect();
    let t = cpu_now();
    for (h, id) in keys {
        black_box(hs.deregister(h, id));
    }
    cpu_now() - t
}

#[derive(Default, Clone)]
struct Row {
    register: f64,
    fill: f64,
    rereg_same: f64,
    rereg_chg: f64,
    dereg: f64,
    hr1: f64,
    hr3: f64,
    find: f64,
    ka: f64,
    cs_get: f64,
    cs_full: f64,
    cs_owner: f64,
}

fn run_row(pol: Pol, n: usize, pools: usize, seed: u64, with_lookup: bool) -> Row {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let input = make_input(pol, n, pools, &mut rng);
    let m = n.min(200_000);
    let picks: Vec<u32> = (0..m).map(|_| rng.random_range(0..n as u32)).collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    // One fill of a new handlespace, repeated on fresh ones for small N.
    let mut now = 0u64;
    let reps = (1_000_000 / n).clamp(1, 50);
    let mut fill_time = 0.0;
    for _ in 1..reps {
        let mut hs = Handlespace::default();
        fill_time += fill(&mut hs, &input, &mut now);
    }
    let mut hs = Handlespace::default();
    fill_time += fill(&mut hs, &input, &mut now);
    let mut row = Row {
        fill: (reps * n) as f64 / fill_time,
        ..Row::default()
    };

    // Re-registration with the same values, then with a changed value,
    // in batches of pre-built elements until enough operations ran.
    for changed in [false, true] {
        let (mut ops, mut time) = (0usize, 0.0);
        while ops < MIN_OPS {
            let work: Vec<(u32, PoolElement)> = picks
                .iter()
                .map(|&i| {
                    let (p, mut e) = input.pes[i as usize].clone();
                    if changed {
                        match pol {
                            Pol::Rr | Pol::Rand => {
                                e.registration_life = RegistrationLife(60_000 + ops as i32)
                            }
                            _ => e.policy = pol.policy(rng.random()),
                        }
                    }
                    (p, e)
                })
                .collect();
            let t = cpu_now();
            for (p, e) in work {
                now += 1;
                let out = hs.register(&input.handles[p as usize], e, now).unwrap();
                hs.set_timer_entry(out.entry, TimerKind::KeepAlive, now + KEEP_ALIVE);
                black_box(hs.next_deadline());
            }
            time += cpu_now() - t;
            ops += m;
        }
        let r = ops as f64 / time;
        if changed {
            row.rereg_chg = r;
        } else {
            row.rereg_same = r;
        }
    }

    // Handle resolution.
    let mut out: Vec<EntryId> = Vec::with_capacity(8);
    let hr_ops = MIN_OPS * 2;
    let pool_picks: Vec<u32> = (0..hr_ops.min(1 << 20))
        .map(|_| rng.random_range(0..pools as u32))
        .collect();
    let mut sel = ChaCha8Rng::seed_from_u64(seed ^ 0x5e1);
    for k in [1u32, 3] {
        let t = cpu_now();
        for j in 0..hr_ops {
            let h = &input.handles[pool_picks[j & (pool_picks.len() - 1)] as usize];
            hs.resolve(h, Some(k), &mut sel, &mut out).unwrap();
            black_box(&out);
        }
        let r = hr_ops as f64 / (cpu_now() - t);
        if k == 1 {
            row.hr1 = r;
        } else {
            row.hr3 = r;
        }
    }

    if with_lookup {
        let keys: Vec<(&PoolHandle, PeId)> = picks
            .iter()
            .map(|&i| {
                let (p, e) = &input.pes[i as usize];
                (&input.handles[*p as usize], e.id)
            })
            .collect();
        let rounds = MIN_OPS.div_ceil(m);
        let t = cpu_now();
        for _ in 0..rounds {
            for &(h, id) in &keys {
                black_box(hs.get(h, id));
            }
        }
        row.find = (rounds * m) as f64 / (cpu_now() - t);
        let t = cpu_now();
        for _ in 0..rounds {
            for &(h, id) in &keys {
                now += 1;
                black_box(hs.set_timer(h, id, TimerKind::KeepAlive, now + KEEP_ALIVE));
            }
        }
        row.ka = (rounds * m) as f64 / (cpu_now() - t);
        let gets = 50_000_000u64;
        let t = cpu_now();
        black_box(checksum_gets(&hs, gets));
        row.cs_get = gets as f64 / (cpu_now() - t);
        for owner in [false, true] {
            let mut reps = 0;
            let t = cpu_now();
            while reps < 3 || (cpu_now() - t < 0.3 && reps < 100_000) {
                if owner {
                    black_box(hs.recompute_checksum(PrId::new(1).unwrap()));
                } else {
                    black_box(hs.recompute_total_checksum());
                }
                reps += 1;
            }
            let r = reps as f64 / (cpu_now() - t);
            if owner {
                row.cs_owner = r;
            } else {
                row.cs_full = r;
            }
        }
    }

    // Registration and deregistration in fill/empty cycles (each part timed).
    let mut dereg_time = empty(&mut hs, &input, &order);
    let cycles = (1_000_000 / n).clamp(1, 200);
    let mut reg_time = 0.0;
    for _ in 0..cycles {
        reg_time += fill(&mut hs, &input, &mut now);
        dereg_time += empty(&mut hs, &input, &order);
    }
    row.register = (cycles * n) as f64 / reg_time;
    row.dereg = ((cycles + 1) * n) as f64 / dereg_time;
    row
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn median_row(rows: &[Row]) -> Row {
    let f = |g: fn(&Row) -> f64| median(rows.iter().map(g).collect());
    Row {
        register: f(|r| r.register),
        fill: f(|r| r.fill),
        rereg_same: f(|r| r.rereg_same),
        rereg_chg: f(|r| r.rereg_chg),
        dereg: f(|r| r.dereg),
        hr1: f(|r| r.hr1),
        hr3: f(|r| r.hr3),
        find: f(|r| r.find),
        ka: f(|r| r.ka),
        cs_get: f(|r| r.cs_get),
        cs_full: f(|r| r.cs_full),
        cs_owner: f(|r| r.cs_owner),
    }
}

/// The anchor (PERF-ANCHOR.md): register, fill, re-reg same, re-reg chg,
/// deregister, HR k=1, HR k=3 per (policy, N, P).
#[rustfmt::skip]
const ANCHOR: &[(&str, usize, usize, [f64; 7])] = &[
    ("RoundRobin", 1000, 1, [1.41e6, 1.62e6, 2.70e6, 1.78e6, 1.87e6, 8.21e6, 8.41e6]),
    ("RoundRobin", 1000, 10, [1.56e6, 1.71e6, 3.32e6, 2.21e6, 1.98e6, 6.59e6, 6.25e6]),
    ("RoundRobin", 10000, 1, [983e3, 1.07e6, 1.85e6, 1.05e6, 1.24e6, 5.41e6, 5.05e6]),
    ("RoundRobin", 10000, 100, [909e3, 935e3, 1.64e6, 1.03e6, 1.10e6, 3.14e6, 2.93e6]),
    ("RoundRobin", 100000, 1, [404e3, 377e3, 501e3, 362e3, 390e3, 2.61e6, 2.62e6]),
    ("RoundRobin", 100000, 1000, [353e3, 497e3, 686e3, 504e3, 367e3, 926e3, 886e3]),
    ("RoundRobin", 1000000, 1, [231e3, 222e3, 220e3, 166e3, 175e3, 1.99e6, 1.98e6]),
    ("RoundRobin", 1000000, 10000, [171e3, 148e3, 219e3, 238e3, 157e3, 277e3, 249e3]),
    ("LeastUsed", 1000, 1, [1.47e6, 1.56e6, 3.28e6, 1.76e6, 2.08e6, 11.78e6, 11.60e6]),
    ("LeastUsed", 1000, 10, [1.63e6, 1.62e6, 3.29e6, 2.00e6, 2.06e6, 9.81e6, 9.01e6]),
    ("LeastUsed", 10000, 1, [854e3, 868e3, 1.76e6, 934e3, 1.18e6, 8.02e6, 8.41e6]),
    ("LeastUsed", 10000, 100, [962e3, 843e3, 1.75e6, 1.13e6, 1.20e6, 4.70e6, 4.49e6]),
    ("LeastUsed", 100000, 1, [318e3, 321e3, 575e3, 291e3, 357e3, 7.91e6, 7.50e6]),
    ("LeastUsed", 100000, 1000, [368e3, 499e3, 675e3, 458e3, 394e3, 1.89e6, 1.88e6]),
    ("LeastUsed", 1000000, 1, [159e3, 144e3, 201e3, 131e3, 159e3, 6.90e6, 6.75e6]),
    ("LeastUsed", 1000000, 10000, [199e3, 162e3, 213e3, 199e3, 162e3, 511e3, 497e3]),
    ("Random", 1000, 1, [1.51e6, 1.64e6, 3.09e6, 1.94e6, 2.14e6, 3.16e6, 1.02e6]),
    ("Random", 1000, 10, [1.56e6, 1.64e6, 3.08e6, 2.07e6, 2.11e6, 3.81e6, 1.34e6]),
    ("Random", 10000, 1, [938e3, 1.02e6, 1.86e6, 1.04e6, 1.25e6, 2.02e6, 674e3]),
    ("Random", 10000, 100, [992e3, 1.03e6, 1.70e6, 1.32e6, 1.23e6, 2.55e6, 1.07e6]),
    ("Random", 100000, 1, [394e3, 391e3, 598e3, 379e3, 436e3, 692e3, 222e3]),
    ("Random", 100000, 1000, [385e3, 508e3, 645e3, 532e3, 410e3, 868e3, 382e3]),
    ("Random", 1000000, 1, [208e3, 187e3, 225e3, 205e3, 187e3, 297e3, 98e3]),
    ("Random", 1000000, 10000, [209e3, 172e3, 218e3, 255e3, 169e3, 333e3, 165e3]),
    ("WeightedRandom", 1000, 1, [1.60e6, 1.63e6, 3.32e6, 1.95e6, 2.27e6, 3.24e6, 1.07e6]),
    ("WeightedRandom", 1000, 10, [1.58e6, 1.72e6, 3.19e6, 2.16e6, 2.11e6, 3.84e6, 1.31e6]),
    ("WeightedRandom", 10000, 1, [706e3, 661e3, 1.69e6, 1.11e6, 962e3, 2.05e6, 655e3]),
    ("WeightedRandom", 10000, 100, [985e3, 1.05e6, 1.89e6, 1.35e6, 1.22e6, 2.67e6, 1.08e6]),
    ("WeightedRandom", 100000, 1, [386e3, 395e3, 577e3, 397e3, 445e3, 691e3, 255e3]),
    ("WeightedRandom", 100000, 1000, [364e3, 518e3, 680e3, 505e3, 395e3, 934e3, 402e3]),
    ("WeightedRandom", 1000000, 1, [207e3, 183e3, 223e3, 204e3, 177e3, 298e3, 96e3]),
    ("WeightedRandom", 1000000, 10000, [201e3, 172e3, 210e3, 253e3, 164e3, 313e3, 167e3]),
];

/// find, keep-alive ack, checksum get, full handlespace recompute, full
/// ownership recompute per (N, P).
#[rustfmt::skip]
const ANCHOR_LOOKUP: &[(usize, usize, [f64; 5])] = &[
    (1000, 1, [13.87e6, 5.41e6, 395.23e6, 84e3, 75e3]),
    (1000, 10, [12.82e6, 4.77e6, 402.50e6, 79e3, 78e3]),
    (10000, 1, [5.93e6, 2.74e6, 417.10e6, 4e3, 4e3]),
    (10000, 100, [4.92e6, 2.34e6, 381.63e6, 4e3, 4e3]),
    (100000, 1, [1.55e6, 1.01e6, 415.37e6, 53.7, 56.0]),
    (100000, 1000, [1.62e6, 880e3, 391.36e6, 66.4, 60.2]),
    (1000000, 1, [520e3, 416e3, 417.99e6, 4.2, 4.2]),
    (1000000, 10000, [498e3, 399e3, 391.74e6, 4.3, 4.2]),
];

fn fmt(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn cell(ours: f64, anchor: f64) -> String {
    format!(
        "{} / {} = **{:.1}x**",
        fmt(ours),
        fmt(anchor),
        ours / anchor
    )
}

fn memory(pol: Pol, n: usize, pools: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let before = rss_bytes();
    let input = make_input(pol, n, pools, &mut rng);
    let mut hs = Handlespace::default();
    let Input { handles, pes } = input;
    for (now, (p, e)) in pes.into_iter().enumerate() {
        let now = now as u64;
        let out = hs.register(&handles[p as usize], e, now).unwrap();
        hs.set_timer_entry(out.entry, TimerKind::KeepAlive, now + KEEP_ALIVE);
        hs.set_timer_entry(out.entry, TimerKind::Lifetime, now + 3 * KEEP_ALIVE);
    }
    let after = rss_bytes();
    println!(
        "MEM {} {} {} {:.0} {:.0}",
        pol.name(),
        n,
        pools,
        (after.saturating_sub(before)) as f64 / n as f64,
        after as f64 / 1e6
    );
    black_box(&hs);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        let pol = match args[i + 1].as_str() {
            "rr" => Pol::Rr,
            "lu" => Pol::Lu,
            "rand" => Pol::Rand,
            _ => Pol::Wrand,
        };
        memory(
            pol,
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
        return;
    }
    let sizes: Vec<usize> = opt("--sizes")
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![1_000, 10_000, 100_000, 1_000_000]);
    let pols: Vec<Pol> = opt("--policies")
        .map(|s| {
            s.split(',')
                .map(|x| match x {
                    "rr" => Pol::Rr,
                    "lu" => Pol::Lu,
                    "rand" => Pol::Rand,
                    _ => Pol::Wrand,
                })
                .collect()
        })
        .unwrap_or(vec![Pol::Rr, Pol::Lu, Pol::Rand, Pol::Wrand]);
    let runs: usize = opt("--runs").map_or(3, |r| r.parse().unwrap());
    println!(
        "PoolElement: {} bytes inline",
        std::mem::size_of::<PoolElement>()
    );
    println!();
    println!(
        "| policy | N | P | register | register (fill) | re-reg same | re-reg load chg | deregister | HR k=1 | HR k=3 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut lookups = Vec::new();
    for &pol in &pols {
        for &n in &sizes {
            for pools in [1, (n / 100).max(1)] {
                let with_lookup = pol == pols[0];
                let rows: Vec<Row> = (0..runs)
                    .map(|r| run_row(pol, n, pools, 42 + r as u64, with_lookup))
                    .collect();
                let row = median_row(&rows);
                let a = ANCHOR
                    .iter()
                    .find(|x| x.0 == pol.name() && x.1 == n && x.2 == pools)
                    .map(|x| x.3);
                let ours = [
                    row.register,
                    row.fill,
                    row.rereg_same,
                    row.rereg_chg,
                    row.dereg,
                    row.hr1,
                    row.hr3,
                ];
                let cells: Vec<String> = match a {
                    Some(a) => ours.iter().zip(a).map(|(&o, a)| cell(o, a)).collect(),
                    None => ours.iter().map(|&o| fmt(o)).collect(),
                };
                println!("| {} | {n} | {pools} | {} |", pol.name(), cells.join(" | "));
                if with_lookup {
                    lookups.push((n, pools, row));
                }
            }
        }
    }
    println!();
    println!(
        "| N | P | find | keep-alive ack | checksum get | full handlespace checksum | full ownership checksum |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, pools, row) in lookups {
        let ours = [row.find, row.ka, row.cs_get, row.cs_full, row.cs_owner];
        let a = ANCHOR_LOOKUP
            .iter()
            .find(|x| x.0 == n && x.1 == pools)
            .map(|x| x.2);
        let cells: Vec<String> = match a {
            Some(a) => ours.iter().zip(a).map(|(&o, a)| cell(o, a)).collect(),
            None => ours.iter().map(|&o| fmt(o)).collect(),
        };
        println!("| {n} | {pools} | {} |", cells.join(" | "));
    }
    if !args.iter().any(|a| a == "--no-memory") {
        println!();
        println!(
            "Resident memory per PE at N = 1,000,000 (fresh process each; anchor 528 B with 1 pool, 531 B with 10,000):"
        );
        println!();
        println!("| policy | P | bytes per PE | process RSS |");
        println!("|---|---|---|---|");
        let exe = std::env::current_exe().unwrap();
        for pol in ["rr", "lu", "rand", "wrand"] {
            for pools in ["1", "10000"] {
                let out = std::process::Command::new(&exe)
                    .args(["--memory-child", pol, "1000000", pools])
                    .output()
                    .unwrap();
                let s = String::from_utf8_lossy(&out.stdout);
                if let Some(line) = s.lines().find(|l| l.starts_with("MEM ")) {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    println!("| {} | {} | {} B | {} MB |", f[1], f[3], f[4], f[5]);
                }
            }
        }
    }
}

//! `rserpool sim takeover`: the draft's Takeover Suggestion experiment on
//! the simulator. Registrars are cut off long enough that their PEs move to
//! the others, then come back; the table shows how ownership (each
//! registrar's count of the PEs it owns in its own handlespace) returns.

use crate::node::config_error;
use crate::node::duration::Dur;
use crate::registrar::Balance;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rserpool_core::registrar::{BalancePolicy, BalancedConfig};
use rserpool_core::{Instant, PoolElementEvent};
use rserpool_sim::{Happening, NodeId, RoleEvent, Scenario, ScenarioBuilder};
use rserpool_wire::PoolHandle;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

/// When the outage starts: every PE has registered and re-registered once.
const OUTAGE_AT: Duration = Duration::from_secs(60);
/// PEs start one after another within this time (from 1 s on), so their
/// re-registrations are spread as in a deployment.
const START_SPREAD: Duration = Duration::from_secs(10);
/// Ownership counts as balanced at max/mean <= this (the draft's criterion).
const BALANCED: f64 = 1.1;
/// How often ownership is checked after the recovery, to time the balance.
const FINE: Duration = Duration::from_millis(100);
/// Mixed into the seed for the PEs' registrar orders, so that they are not
/// the stream the world draws from.
const HUNT_ORDER_SALT: u64 = 0x6875_6e74;

/// Examples and output, shown by `rserpool sim takeover --help`.
pub const AFTER_HELP: &str = "\
The scope: N registrars that know each other, M pool elements of one pool, \
each PE knowing every registrar in an order of its own (shuffled by the \
seed), registration life 3 x T4. At 60 s the last --down registrars become \
unreachable for everybody (each on a network side of its own) for --outage; \
their PEs move to the others. Then the network heals.

Each sample prints the time, the phase (normal, outage, recovered), the PEs \
each registrar owns by its own handlespace, max/mean of those counts, the PEs \
that changed home registrar so far (PoolElementEvent::HomeChanged: takeovers \
and accepted suggestions), and the takeover suggestions the registrars sent, \
accepted and declined so far. The summary gives the time from the recovery \
until max/mean <= 1.1 (checked every 0.1 s), the PE moves after the recovery \
against the fewest that balance the scope, and the final shares. --csv \
prints the samples as CSV rows only.

The same seed prints the same bytes.

Examples:
  rserpool sim takeover
  rserpool sim takeover --policy xor --seed 3
  rserpool sim takeover --registrars 3 --pes 60 --down 1 --outage 100s --duration 300s --csv";

/// Flags of `rserpool sim takeover`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// World seed: registrar and PE IDs, the PEs' registrar orders, timer
    /// and network jitter.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Registrars in the scope.
    #[arg(long, value_name = "N", default_value_t = 5)]
    registrars: usize,
    /// Pool elements.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pes: usize,
    /// Registrars (the last ones) that become unreachable; 0 for none.
    #[arg(long, value_name = "N", default_value_t = 2)]
    down: usize,
    /// How long they stay unreachable.
    #[arg(long, value_name = "DUR", default_value = "163s")]
    outage: Dur,
    /// Takeover Suggestion policy of every registrar.
    #[arg(long, value_enum, default_value_t = Balance::Balanced)]
    policy: Balance,
    /// Balanced policy: no suggestion while a registrar owns at most this
    /// fraction above its fair share [default: 0.05].
    #[arg(long, value_name = "FRACTION")]
    tolerance: Option<f64>,
    /// PE re-registration interval T4.
    #[arg(long, value_name = "DUR", default_value = "30s")]
    t4: Dur,
    /// Simulated time to run.
    #[arg(long, value_name = "DUR", default_value = "600s")]
    duration: Dur,
    /// Print a sample this often.
    #[arg(long, value_name = "DUR", default_value = "10s")]
    sample: Dur,
    /// Print the samples as CSV (with a header row) and nothing else.
    #[arg(long)]
    csv: bool,
}

/// The checked parameters of one run.
struct Plan {
    seed: u64,
    registrars: usize,
    pes: usize,
    down: usize,
    outage: Duration,
    policy: Balance,
    balance: BalancePolicy,
    t4: Duration,
    duration: Duration,
    sample: Duration,
    csv: bool,
}

impl Plan {
    fn new(a: Args) -> Result<Self, String> {
        if a.registrars == 0 || a.registrars > 250 {
            return Err("--registrars must be 1 to 250".into());
        }
        if a.pes == 0 || a.pes > 60_000 {
            return Err("--pes must be 1 to 60000".into());
        }
        if a.down >= a.registrars {
            return Err("--down must leave at least one registrar reachable".into());
        }
        let balance = match (a.policy, a.tolerance) {
            (Balance::Off | Balance::Xor, Some(_)) => {
                return Err("--tolerance applies only to --policy balanced".into());
            }
            (Balance::Off, None) => BalancePolicy::Off,
            (Balance::Xor, None) => BalancePolicy::Xor,
            (Balance::Balanced, t) => {
                let mut b = BalancedConfig::default();
                if let Some(t) = t {
                    if !(t.is_finite() && t >= 0.0) {
                        return Err("--tolerance must be a number >= 0".into());
                    }
                    b.tolerance = t;
                }
                BalancePolicy::Balanced(b)
            }
        };
        if a.t4.0 < Duration::from_millis(100) {
            return Err("--t4 must be at least 100ms".into());
        }
        if a.sample.0 < FINE {
            return Err("--sample must be at least 100ms".into());
        }
        if a.duration.0.is_zero() || a.duration.0 > Duration::from_secs(86_400) {
            return Err("--duration must be more than 0 and at most a day".into());
        }
        Ok(Self {
            seed: a.seed,
            registrars: a.registrars,
            pes: a.pes,
            down: a.down,
            outage: a.outage.0,
            policy: a.policy,
            balance,
            t4: a.t4.0,
            duration: a.duration.0,
            sample: a.sample.0,
            csv: a.csv,
        })
    }

    /// The end of the outage (if there is one).
    fn heal_at(&self) -> Option<Duration> {
        (self.down > 0).then(|| OUTAGE_AT + self.outage)
    }

    fn phase(&self, t: Duration) -> &'static str {
        match self.heal_at() {
            Some(heal) if t >= heal => "recovered",
            Some(_) if t >= OUTAGE_AT => "outage",
            _ => "normal",
        }
    }

    /// The moments the run stops at: every sample, the start and end of the
    /// outage, and every [`FINE`] step after the recovery.
    fn marks(&self) -> BTreeSet<Duration> {
        let mut marks = BTreeSet::new();
        let every = |from: Duration, step: Duration, marks: &mut BTreeSet<Duration>| {
            let mut t = from;
            while t <= self.duration {
                marks.insert(t);
                t += step;
            }
        };
        every(Duration::ZERO, self.sample, &mut marks);
        if let Some(heal) = self.heal_at() {
            if OUTAGE_AT <= self.duration {
                marks.insert(OUTAGE_AT);
            }
            every(heal, FINE, &mut marks);
        }
        marks
    }

    fn is_sample(&self, t: Duration) -> bool {
        t.as_nanos() % self.sample.as_nanos() == 0
    }

    fn build(&self) -> Scenario {
        let pool = PoolHandle::try_from("EchoPool").expect("a valid pool handle");
        let mut b = ScenarioBuilder::new(self.seed);
        b.registrars(self.registrars, |pr| {
            pr.config.balance = self.balance.clone();
            // PEs know the registrars from their configuration.
            pr.config.announce = false;
        });
        let m = self.pes;
        // Each PE knows the registrars in an order of its own, as in a
        // deployment (and in the draft's experiment): the PEs of a lost
        // registrar scatter over the others instead of all trying the next.
        let mut order = ChaCha8Rng::seed_from_u64(self.seed ^ HUNT_ORDER_SALT);
        b.pool_elements(m, &pool, |pe| {
            pe.config.hunt.registrars.shuffle(&mut order);
            pe.config.registration_life = Some(3 * self.t4);
            pe.config.t4_reregistration = Some(self.t4);
            let offset = START_SPREAD.mul_f64((pe.index as f64 + 0.5) / m as f64);
            pe.start = Some(Instant::from_epoch(Duration::from_secs(1) + offset));
        });
        b.build()
    }
}

/// Runs the experiment and prints it to stdout.
pub fn run(args: Args) -> ExitCode {
    let plan = match Plan::new(args) {
        Ok(p) => p,
        Err(e) => return config_error(e),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    match Experiment::new(&plan)
        .run(&mut out)
        .and_then(|()| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`| head`) is not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sums of the registrars' takeover suggestion counters.
#[derive(Default)]
struct Suggestions {
    sent: u64,
    accepted: u64,
    declined: u64,
}

/// One run in progress and what it measured so far.
struct Experiment<'p> {
    plan: &'p Plan,
    s: Scenario,
    /// PEs that changed home so far.
    moves: usize,
    /// PEs that changed home after the recovery.
    moves_after: usize,
    /// Ownership when the network healed.
    at_recovery: Option<Vec<usize>>,
    /// Time from the recovery until max/mean <= [`BALANCED`].
    balanced_after: Option<Duration>,
    /// Highest max/mean once balanced.
    worst_after: f64,
}

impl<'p> Experiment<'p> {
    fn new(plan: &'p Plan) -> Self {
        Self {
            plan,
            s: plan.build(),
            moves: 0,
            moves_after: 0,
            at_recovery: None,
            balanced_after: None,
            worst_after: 0.0,
        }
    }

    fn run(mut self, out: &mut impl Write) -> io::Result<()> {
        let plan = self.plan;
        // Start the registrars, so that their IDs can be shown.
        self.s.world.run_until(Instant::ZERO);
        self.header(out)?;
        let heal = plan.heal_at();
        for t in plan.marks() {
            let recovered = self.at_recovery.is_some();
            self.s.world.run_until(Instant::from_epoch(t));
            let moved = self.drain_moves();
            self.moves += moved;
            if recovered {
                self.moves_after += moved;
            }
            if heal.is_some() && t == OUTAGE_AT {
                self.cut_off();
            }
            if heal == Some(t) {
                self.s.world.heal();
                self.at_recovery = Some(self.owned());
            }
            if let Some(heal) = heal.filter(|_| self.at_recovery.is_some()) {
                self.watch_balance(t - heal);
            }
            if plan.is_sample(t) {
                self.sample(out, t)?;
            }
        }
        if !plan.csv {
            self.summary(out)?;
        }
        Ok(())
    }

    /// Counts the PEs that changed home since the last call (and drops the
    /// trace, which would otherwise grow for the whole run).
    fn drain_moves(&mut self) -> usize {
        self.s
            .world
            .take_trace()
            .iter()
            .filter(|e| {
                matches!(
                    e.what,
                    Happening::Event(RoleEvent::PoolElement(PoolElementEvent::HomeChanged { .. }))
                )
            })
            .count()
    }

    /// Puts the last `down` registrars each on a network side of its own.
    fn cut_off(&mut self) {
        let split = self.plan.registrars - self.plan.down;
        let rest: Vec<NodeId> = self.s.registrars[..split]
            .iter()
            .chain(&self.s.pool_elements)
            .copied()
            .collect();
        let alone: Vec<[NodeId; 1]> = self.s.registrars[split..].iter().map(|n| [*n]).collect();
        let mut groups: Vec<&[NodeId]> = vec![&rest];
        groups.extend(alone.iter().map(|g| &g[..]));
        self.s.world.partition(&groups);
    }

    /// Each registrar's count of the PEs it owns by its own handlespace.
    fn owned(&self) -> Vec<usize> {
        self.s
            .registrars
            .iter()
            .map(|n| self.s.registrar(*n).map_or(0, |r| r.owned_count(r.id())))
            .collect()
    }

    fn watch_balance(&mut self, since_heal: Duration) {
        let owned = self.owned();
        // A PE in the middle of moving is counted at both registrars or at
        // neither: judge only consistent moments.
        if owned.iter().sum::<usize>() != self.plan.pes {
            return;
        }
        let im = imbalance(&owned);
        if self.balanced_after.is_none() && im <= BALANCED {
            self.balanced_after = Some(since_heal);
        }
        if self.balanced_after.is_some() {
            self.worst_after = self.worst_after.max(im);
        }
    }

    fn suggestions(&self) -> Suggestions {
        let mut sum = Suggestions::default();
        for r in self
            .s
            .registrars
            .iter()
            .filter_map(|n| self.s.registrar(*n))
        {
            let st = r.stats();
            sum.sent += st.suggestions_sent;
            sum.accepted += st.suggestions_accepted;
            sum.declined += st.suggestions_declined;
        }
        sum
    }

    /// Width of an ownership column.
    fn width(&self) -> usize {
        (self.plan.pes.to_string().len() + 1).max(5)
    }

    fn header(&self, out: &mut impl Write) -> io::Result<()> {
        let p = self.plan;
        let names: Vec<String> = (0..p.registrars).map(|i| format!("pr{i}")).collect();
        if p.csv {
            return writeln!(
                out,
                "time_s,phase,{},max_mean,moves,suggestions_sent,suggestions_accepted,suggestions_declined",
                names.join(",")
            );
        }
        let policy = match &p.balance {
            BalancePolicy::Balanced(b) => format!("balanced (tolerance {})", b.tolerance),
            _ => policy_name(p.policy).to_string(),
        };
        writeln!(
            out,
            "rserpool sim takeover: seed {}, {} registrars, {} PEs, policy {policy}",
            p.seed, p.registrars, p.pes
        )?;
        writeln!(
            out,
            "T4 (re-registration) {}, registration life {}, PEs start from 1 s to 11 s",
            secs(p.t4),
            secs(3 * p.t4)
        )?;
        match p.heal_at() {
            Some(heal) => writeln!(
                out,
                "outage: {} unreachable from {} to {} ({}); run {}, sample every {}",
                names[p.registrars - p.down..].join(" "),
                secs(OUTAGE_AT),
                secs(heal),
                secs(p.outage),
                secs(p.duration),
                secs(p.sample)
            )?,
            None => writeln!(
                out,
                "no outage; run {}, sample every {}",
                secs(p.duration),
                secs(p.sample)
            )?,
        }
        let ids: Vec<String> = self
            .s
            .registrars
            .iter()
            .zip(&names)
            .map(|(n, name)| match self.s.registrar(*n) {
                Some(r) => format!("{name}=0x{:08x}", r.id().get()),
                None => format!("{name}=-"),
            })
            .collect();
        writeln!(out, "registrar IDs: {}", ids.join(" "))?;
        writeln!(out)?;
        let w = self.width();
        write!(out, "{:>7}  {:<9}", "time_s", "phase")?;
        for name in &names {
            write!(out, " {name:>w$}")?;
        }
        writeln!(
            out,
            " {:>8} {:>6} {:>5} {:>8} {:>8}",
            "max/mean", "moves", "sent", "accepted", "declined"
        )
    }

    fn sample(&self, out: &mut impl Write, t: Duration) -> io::Result<()> {
        let owned = self.owned();
        let ratio = if owned.iter().sum::<usize>() == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", imbalance(&owned))
        };
        let sug = self.suggestions();
        let phase = self.plan.phase(t);
        let time = t.as_secs_f64();
        if self.plan.csv {
            let counts: Vec<String> = owned.iter().map(usize::to_string).collect();
            return writeln!(
                out,
                "{time:.1},{phase},{},{ratio},{},{},{},{}",
                counts.join(","),
                self.moves,
                sug.sent,
                sug.accepted,
                sug.declined
            );
        }
        let w = self.width();
        write!(out, "{time:>7.1}  {phase:<9}")?;
        for c in &owned {
            write!(out, " {c:>w$}")?;
        }
        writeln!(
            out,
            " {ratio:>8} {:>6} {:>5} {:>8} {:>8}",
            self.moves, sug.sent, sug.accepted, sug.declined
        )
    }

    fn summary(&self, out: &mut impl Write) -> io::Result<()> {
        let p = self.plan;
        writeln!(out)?;
        writeln!(out, "summary:")?;
        match (p.heal_at(), &self.at_recovery) {
            (None, _) => writeln!(out, "  no outage")?,
            (Some(heal), None) => {
                writeln!(out, "  the run ended before the recovery at {}", secs(heal))?
            }
            (Some(heal), Some(at)) => {
                writeln!(
                    out,
                    "  at recovery ({}): {} (max/mean {:.3})",
                    secs(heal),
                    counts(at),
                    imbalance(at)
                )?;
                match self.balanced_after {
                    Some(d) => writeln!(
                        out,
                        "  max/mean <= {BALANCED} reached {} after recovery; worst afterwards {:.3}",
                        secs(d),
                        self.worst_after
                    )?,
                    None => writeln!(
                        out,
                        "  max/mean <= {BALANCED} never reached in the {} after recovery",
                        secs(p.duration.saturating_sub(heal))
                    )?,
                }
                let fair = p.pes / p.registrars;
                let minimum: usize = at.iter().map(|c| c.saturating_sub(fair)).sum();
                writeln!(
                    out,
                    "  PE moves after recovery: {} (minimum {minimum}: the excess over the fair share {fair})",
                    self.moves_after
                )?;
            }
        }
        let end = self.owned();
        let total = end.iter().sum::<usize>().max(1) as f64;
        let shares: Vec<String> = end
            .iter()
            .map(|c| format!("{:.1}%", 100.0 * *c as f64 / total))
            .collect();
        writeln!(
            out,
            "  final ({}): {} (max/mean {:.3}); shares {}",
            secs(p.duration),
            counts(&end),
            imbalance(&end),
            shares.join(" ")
        )
    }
}

fn policy_name(b: Balance) -> &'static str {
    match b {
        Balance::Off => "off",
        Balance::Xor => "xor",
        Balance::Balanced => "balanced",
    }
}

/// max/mean of ownership counts (1 when nobody owns anything).
fn imbalance(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return 1.0;
    }
    let mean = total as f64 / counts.len() as f64;
    counts.iter().copied().max().unwrap_or(0) as f64 / mean
}

fn counts(c: &[usize]) -> String {
    c.iter().map(usize::to_string).collect::<Vec<_>>().join(" ")
}

/// A duration as seconds, without decimals when whole.
fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(down: usize, outage: u64, duration: u64, sample_ms: u64) -> Plan {
        Plan {
            seed: 1,
            registrars: 3,
            pes: 10,
            down,
            outage: Duration::from_secs(outage),
            policy: Balance::Off,
            balance: BalancePolicy::Off,
            t4: Duration::from_secs(30),
            duration: Duration::from_secs(duration),
            sample: Duration::from_millis(sample_ms),
            csv: false,
        }
    }

    #[test]
    fn marks_cover_samples_outage_and_fine_steps_after_the_heal() {
        let p = plan(1, 25, 100, 30_000);
        let marks = p.marks();
        let s = Duration::from_secs;
        for t in [s(0), s(30), s(60), s(90), s(85), s(85) + FINE, s(100)] {
            assert!(marks.contains(&t), "{t:?} missing");
        }
        assert!(
            !marks.contains(&(s(85) - FINE)),
            "fine steps before the heal"
        );
        assert!(p.is_sample(s(90)) && !p.is_sample(s(85)));
        assert_eq!(p.phase(s(59)), "normal");
        assert_eq!(p.phase(s(60)), "outage");
        assert_eq!(p.phase(s(85)), "recovered");
    }

    #[test]
    fn without_down_registrars_there_is_no_outage() {
        let p = plan(0, 25, 100, 10_000);
        assert_eq!(p.marks().len(), 11);
        assert_eq!(p.phase(Duration::from_secs(70)), "normal");
    }

    #[test]
    fn imbalance_is_max_over_mean() {
        assert_eq!(imbalance(&[10, 10, 10]), 1.0);
        assert!((imbalance(&[20, 10, 0]) - 2.0).abs() < 1e-9);
        assert_eq!(imbalance(&[0, 0]), 1.0);
    }
}

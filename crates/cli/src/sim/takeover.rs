//! `rserpool sim takeover`: the draft's Takeover Suggestion experiment on
//! the simulator. Registrars are cut off long enough that their PEs move to
//! the others, then come back; the table shows how ownership (each
//! registrar's count of the PEs it owns in its own handlespace) returns.

use super::svg::{self, Chart, Line, Panel, Stroke};
use crate::node::config_error;
use crate::node::duration::Dur;
use crate::registrar::Balance;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rserpool_core::registrar::{BalancePolicy, BalancedConfig};
use rserpool_core::{Instant, PoolElementEvent};
use rserpool_sim::{CrashMode, Happening, NodeId, RoleEvent, Scenario, ScenarioBuilder};
use rserpool_wire::PoolHandle;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// When the outage starts: every PE has registered and re-registered once.
const OUTAGE_AT: Duration = Duration::from_secs(60);
/// PEs start one after another within this time (from 1 s on), so their
/// re-registrations are spread as in a deployment.
const START_SPREAD: Duration = Duration::from_secs(10);
/// Ownership counts as balanced at max/mean <= this (the draft's criterion).
const BALANCED: f64 = 1.1;
/// `sim run` also times the return to this max/mean.
const BALANCED_TIGHT: f64 = 1.05;
/// How often ownership is checked after the recovery, to time the balance.
pub(super) const FINE: Duration = Duration::from_millis(100);
/// Mixed into the seed for the PEs' registrar orders, so that they are not
/// the stream the world draws from.
const HUNT_ORDER_SALT: u64 = 0x6875_6e74;
/// --svg: the whole run is plotted from about this many samples (at least
/// one a second), which bounds the memory whatever --duration is.
const PLOT_POINTS: u32 = 2000;
/// --svg: how long after the (last) recovery the plot keeps every [`FINE`]
/// sample, for the panel that zooms in on the return of the PEs.
const ZOOM: Duration = Duration::from_secs(90);
/// --svg: the zoomed panel starts this long before the recovery.
const ZOOM_BEFORE: Duration = Duration::from_secs(5);
/// `sim run`: how long into each outage every [`FINE`] step is checked, to
/// time the re-homing of the PEs.
const REHOME_WATCH: Duration = Duration::from_secs(120);
/// --flap without --cycles: as many outages as crates/sim/tests/flapping.rs.
const FLAP_CYCLES: u32 = 6;

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

--flap PERIOD repeats the outage every PERIOD (--cycles times): a flapping \
registrar. The recovery is then the last heal; the summary adds the PE moves \
from the first cut to the last heal.

--svg FILE also writes a chart of the run: the PEs each registrar owns over \
time (sampled every second, or every --duration/2000 if coarser), max/mean, \
and the 90 s after the recovery at every 0.1 s.

The same seed prints the same bytes.

Examples:
  rserpool sim takeover
  rserpool sim takeover --policy xor --seed 3
  rserpool sim takeover --registrars 3 --pes 60 --down 1 --outage 100s --duration 300s --csv
  rserpool sim takeover --policy off --svg off.svg
  rserpool sim takeover --down 1 --outage 20s --flap 60s --cycles 6 --duration 480s";

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
    /// Repeat the outage every PERIOD (a flapping registrar), --cycles
    /// times.
    #[arg(long, value_name = "PERIOD")]
    flap: Option<Dur>,
    /// With --flap: how many outages [default: 6].
    #[arg(long, value_name = "N")]
    cycles: Option<u32>,
    /// Also write an SVG chart of the ownership over time to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

/// Who an outage hits, and how.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Target {
    /// Indices of the registrars.
    pub who: Vec<usize>,
    /// `None`: each is cut off on a network side of its own and the network
    /// heals at the end; `Some`: they crash, and restart at the end.
    pub crash: Option<CrashMode>,
}

/// The checked parameters of one run.
pub(super) struct Plan {
    /// The first words of the header and of the chart's title.
    pub title: String,
    pub seed: u64,
    pub registrars: usize,
    pub pes: usize,
    pub down: usize,
    pub outage: Duration,
    pub policy: Balance,
    pub balance: BalancePolicy,
    pub t4: Duration,
    pub duration: Duration,
    pub sample: Duration,
    pub csv: bool,
    /// --flap: the period and the number of outages.
    pub flap: Option<(Duration, u32)>,
    /// (cut, heal) of every outage, in order, none overlapping; empty
    /// without --down.
    pub outages: Vec<(Duration, Duration)>,
    /// Who each outage hits (same order as `outages`).
    pub targets: Vec<Target>,
    /// `sim run`: the events as the header says them; the run also samples
    /// every [`FINE`] step early in each outage and the summary says more.
    pub events_text: Option<String>,
    pub svg: Option<PathBuf>,
    /// Step of the plot's samples over the whole run.
    pub plot_step: Duration,
}

/// The policy of `policy` with the balanced policy's `tolerance`.
pub(super) fn balance_policy(
    policy: Balance,
    tolerance: Option<f64>,
    flag: &str,
) -> Result<BalancePolicy, String> {
    Ok(match (policy, tolerance) {
        (Balance::Off | Balance::Xor, Some(_)) => {
            return Err(format!("{flag} applies only to policy balanced"));
        }
        (Balance::Off, None) => BalancePolicy::Off,
        (Balance::Xor, None) => BalancePolicy::Xor,
        (Balance::Balanced, t) => {
            let mut b = BalancedConfig::default();
            if let Some(t) = t {
                if !(t.is_finite() && t >= 0.0) {
                    return Err(format!("{flag} must be a number >= 0"));
                }
                b.tolerance = t;
            }
            BalancePolicy::Balanced(b)
        }
    })
}

/// Step of the plot's samples for a run of `duration`.
pub(super) fn plot_step(duration: Duration) -> Duration {
    (duration / PLOT_POINTS)
        .as_nanos()
        .div_ceil(FINE.as_nanos())
        .try_into()
        .map_or(Duration::from_secs(1), |n: u32| FINE * n)
        .max(Duration::from_secs(1))
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
            (p, t) => balance_policy(p, t, "--tolerance")?,
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
        let flap = match (a.flap, a.cycles) {
            (None, Some(_)) => return Err("--cycles applies only with --flap".into()),
            (None, None) => None,
            (Some(_), _) if a.down == 0 => {
                return Err("--flap needs registrars to cut off (--down)".into());
            }
            (Some(p), _) if p.0 <= a.outage.0 => {
                return Err("--flap must be longer than --outage".into());
            }
            (Some(_), Some(n)) if !(1..=10_000).contains(&n) => {
                return Err("--cycles must be 1 to 10000".into());
            }
            (Some(p), n) => Some((p.0, n.unwrap_or(FLAP_CYCLES))),
        };
        // Dur is at most 1e9 s and cycles at most 1e4: no overflow.
        let outages = match (a.down, flap) {
            (0, _) => Vec::new(),
            (_, None) => vec![(OUTAGE_AT, OUTAGE_AT + a.outage.0)],
            (_, Some((period, n))) => (0..n)
                .map(|k| {
                    let cut = OUTAGE_AT + period * k;
                    (cut, cut + a.outage.0)
                })
                .collect(),
        };
        let plot_step = plot_step(a.duration.0);
        let target = Target {
            who: (a.registrars - a.down..a.registrars).collect(),
            crash: None,
        };
        Ok(Self {
            title: "rserpool sim takeover".into(),
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
            flap,
            targets: vec![target; outages.len()],
            outages,
            events_text: None,
            svg: a.svg,
            plot_step,
        })
    }

    /// The end of the (last) outage, if there is one: the recovery.
    fn heal_at(&self) -> Option<Duration> {
        self.outages.last().map(|o| o.1)
    }

    /// The outage that starts at `t`.
    fn cut_at(&self, t: Duration) -> Option<usize> {
        self.outages.binary_search_by_key(&t, |o| o.0).ok()
    }

    /// The outage that ends at `t`.
    fn heal_at_time(&self, t: Duration) -> Option<usize> {
        self.outages.binary_search_by_key(&t, |o| o.1).ok()
    }

    #[cfg(test)]
    fn is_cut(&self, t: Duration) -> bool {
        self.cut_at(t).is_some()
    }

    #[cfg(test)]
    fn is_heal(&self, t: Duration) -> bool {
        self.heal_at_time(t).is_some()
    }

    /// The outage going on at `t`.
    fn outage_during(&self, t: Duration) -> Option<usize> {
        let started = self.outages.partition_point(|o| o.0 <= t);
        let i = started.checked_sub(1)?;
        (t < self.outages[i].1).then_some(i)
    }

    /// Every registrar some outage hits.
    fn hit(&self) -> BTreeSet<usize> {
        self.targets
            .iter()
            .flat_map(|t| t.who.iter().copied())
            .collect()
    }

    fn phase(&self, t: Duration) -> &'static str {
        // The outage that started last at or before t.
        let started = self.outages.partition_point(|o| o.0 <= t);
        match started.checked_sub(1).map(|i| self.outages[i]) {
            Some((_, heal)) if t < heal => "outage",
            Some(_) => "recovered",
            None => "normal",
        }
    }

    /// Who is cut off when, as the header and the chart say it.
    fn outage_text(&self) -> Option<String> {
        if let Some(text) = &self.events_text {
            return Some(text.clone());
        }
        let (cut, heal) = *self.outages.first()?;
        let who = (self.registrars - self.down..self.registrars)
            .map(|i| format!("pr{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        Some(match self.flap {
            None => format!(
                "{who} unreachable from {} to {} ({})",
                secs(cut),
                secs(heal),
                secs(self.outage)
            ),
            Some((period, n)) => format!(
                "{who} unreachable for {} in every {} from {}, {n} times (last heal at {})",
                secs(self.outage),
                secs(period),
                secs(cut),
                secs(self.heal_at().unwrap_or(heal))
            ),
        })
    }

    fn policy_text(&self) -> String {
        match &self.balance {
            BalancePolicy::Balanced(b) => format!("balanced (tolerance {})", b.tolerance),
            _ => policy_name(self.policy).to_string(),
        }
    }

    /// The moments the run stops at: every sample, the start and end of
    /// every outage, every [`FINE`] step after the recovery and, for --svg,
    /// every plot step.
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
        for &(cut, heal) in &self.outages {
            marks.extend([cut, heal].into_iter().filter(|t| *t <= self.duration));
        }
        if let Some(heal) = self.heal_at() {
            every(heal, FINE, &mut marks);
        }
        if self.events_text.is_some() {
            // Early in each outage, to time the re-homing.
            for &(cut, heal) in &self.outages {
                let mut t = cut;
                while t < heal.min(cut + REHOME_WATCH) && t <= self.duration {
                    marks.insert(t);
                    t += FINE;
                }
            }
        }
        if self.svg.is_some() {
            every(Duration::ZERO, self.plot_step, &mut marks);
        }
        marks
    }

    fn is_sample(&self, t: Duration) -> bool {
        t.as_nanos() % self.sample.as_nanos() == 0
    }

    /// Whether the chart keeps the ownership at `t`: every plot step, and
    /// every mark (each [`FINE`] step) for [`ZOOM`] after the recovery.
    fn is_plot_point(&self, t: Duration) -> bool {
        self.svg.is_some()
            && (t.as_nanos() % self.plot_step.as_nanos() == 0
                || self
                    .heal_at()
                    .is_some_and(|heal| t >= heal && t <= heal + ZOOM))
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
    match Plan::new(args) {
        Ok(p) => run_plan(&p),
        Err(e) => config_error(e),
    }
}

/// Runs a checked plan and prints it to stdout (and --svg).
pub(super) fn run_plan(plan: &Plan) -> ExitCode {
    // Opened before the run, so that a bad path fails at once and not after
    // minutes of simulation.
    let chart = match &plan.svg {
        None => None,
        Some(path) => match File::create(path) {
            Ok(f) => Some((path, f)),
            Err(e) => return config_error(format!("--svg {}: {e}", path.display())),
        },
    };
    let mut out = io::BufWriter::new(Stdout {
        inner: io::stdout().lock(),
        closed: false,
        // The chart needs the whole run even if the reader of the table
        // went away.
        run_on: chart.is_some(),
    });
    let mut exp = Experiment::new(plan);
    match exp.run(&mut out).and_then(|()| out.flush()) {
        Ok(()) => {}
        // A reader that stopped early (`| head`) is not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some((path, mut f)) = chart {
        if let Err(e) = f
            .write_all(exp.chart().as_bytes())
            .and_then(|()| f.sync_all())
        {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Standard output that, if `run_on`, swallows everything once the reader
/// has gone (`| head`), so that the run goes on for the chart.
struct Stdout<W> {
    inner: W,
    closed: bool,
    run_on: bool,
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if self.run_on && e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if self.run_on && e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r,
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
    /// `moves` when the first outage started.
    moves_at_first_cut: Option<usize>,
    /// PEs that changed home from the first cut to the recovery.
    moves_flapping: usize,
    /// --svg: (time, ownership per registrar) at every plot point.
    plot: Vec<(Duration, Vec<u32>)>,
    /// `sim run`: time from the recovery until max/mean <=
    /// [`BALANCED_TIGHT`].
    tight_after: Option<Duration>,
    /// `sim run`: for each outage, the time from its start until the
    /// registrars it did not hit owned every PE.
    rehomed: Vec<Option<Duration>>,
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
            moves_at_first_cut: None,
            moves_flapping: 0,
            plot: Vec::new(),
            tight_after: None,
            rehomed: vec![None; plan.outages.len()],
        }
    }

    fn run(&mut self, out: &mut impl Write) -> io::Result<()> {
        let plan = self.plan;
        // Start the registrars, so that their IDs can be shown.
        self.s.world.run_until(Instant::ZERO);
        self.header(out)?;
        let heal = plan.heal_at();
        for t in plan.marks() {
            self.s.world.run_until(Instant::from_epoch(t));
            let moved = self.drain_moves();
            self.moves += moved;
            if self.at_recovery.is_some() {
                self.moves_after += moved;
            }
            // An outage may end when the next starts: the end first.
            if let Some(i) = plan.heal_at_time(t) {
                self.end_outage(i);
            }
            if let Some(i) = plan.cut_at(t) {
                self.moves_at_first_cut.get_or_insert(self.moves);
                self.start_outage(i);
            }
            // Once per mark: counting walks every registrar's handlespace.
            let owned = self.owned();
            if heal == Some(t) {
                self.moves_flapping = self.moves - self.moves_at_first_cut.unwrap_or(self.moves);
                self.at_recovery = Some(owned.clone());
            }
            if let Some(heal) = heal.filter(|_| self.at_recovery.is_some()) {
                self.watch_balance(&owned, t - heal);
            }
            if plan.events_text.is_some() {
                self.watch_rehoming(&owned, t);
            }
            if plan.is_sample(t) {
                self.sample(out, t, &owned)?;
            }
            if plan.is_plot_point(t) {
                let row = owned.iter().map(|&c| c as u32).collect();
                self.plot.push((t, row));
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

    /// Starts outage `i`: crashes its registrars, or puts each on a network
    /// side of its own.
    fn start_outage(&mut self, i: usize) {
        let target = &self.plan.targets[i];
        if let Some(mode) = target.crash {
            for &r in &target.who {
                self.s.world.crash(self.s.registrars[r], mode);
            }
            return;
        }
        let rest: Vec<NodeId> = (0..self.plan.registrars)
            .filter(|r| !target.who.contains(r))
            .map(|r| self.s.registrars[r])
            .chain(self.s.pool_elements.iter().copied())
            .collect();
        let alone: Vec<[NodeId; 1]> = target.who.iter().map(|&r| [self.s.registrars[r]]).collect();
        let mut groups: Vec<&[NodeId]> = vec![&rest];
        groups.extend(alone.iter().map(|g| &g[..]));
        self.s.world.partition(&groups);
    }

    /// Ends outage `i`: restarts its registrars, or heals the network.
    fn end_outage(&mut self, i: usize) {
        let target = &self.plan.targets[i];
        if target.crash.is_none() {
            self.s.world.heal();
            return;
        }
        for &r in &target.who {
            let node = self.s.registrars[r];
            if !self.s.world.is_running(node) {
                self.s.world.restart(node);
            }
        }
    }

    /// `sim run`: times the re-homing in the outage going on at `t`.
    fn watch_rehoming(&mut self, owned: &[usize], t: Duration) {
        let Some(i) = self.plan.outage_during(t) else {
            return;
        };
        if self.rehomed[i].is_some() {
            return;
        }
        let who = &self.plan.targets[i].who;
        let others: usize = owned
            .iter()
            .enumerate()
            .filter(|(r, _)| !who.contains(r))
            .map(|(_, c)| c)
            .sum();
        if others >= self.plan.pes {
            self.rehomed[i] = Some(t - self.plan.outages[i].0);
        }
    }

    /// Each registrar's count of the PEs it owns by its own handlespace.
    fn owned(&self) -> Vec<usize> {
        self.s
            .registrars
            .iter()
            .map(|n| self.s.registrar(*n).map_or(0, |r| r.owned_count(r.id())))
            .collect()
    }

    fn watch_balance(&mut self, owned: &[usize], since_heal: Duration) {
        // A PE in the middle of moving is counted at both registrars or at
        // neither: judge only consistent moments.
        if owned.iter().sum::<usize>() != self.plan.pes {
            return;
        }
        let im = imbalance(owned);
        if self.balanced_after.is_none() && im <= BALANCED {
            self.balanced_after = Some(since_heal);
        }
        if self.tight_after.is_none() && im <= BALANCED_TIGHT {
            self.tight_after = Some(since_heal);
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
        writeln!(
            out,
            "{}: seed {}, {} registrars, {} PEs, policy {}",
            p.title,
            p.seed,
            p.registrars,
            p.pes,
            p.policy_text()
        )?;
        writeln!(
            out,
            "T4 (re-registration) {}, registration life {}, PEs start from 1 s to 11 s",
            secs(p.t4),
            secs(3 * p.t4)
        )?;
        match p.outage_text() {
            Some(text) => writeln!(
                out,
                "outage: {text}; run {}, sample every {}",
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
        let ids: Vec<String> = self.labels().iter().map(|l| l.replace(' ', "=")).collect();
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

    /// `pr<i> 0x<id>` for every registrar.
    fn labels(&self) -> Vec<String> {
        self.s
            .registrars
            .iter()
            .enumerate()
            .map(|(i, n)| match self.s.registrar(*n) {
                Some(r) => format!("pr{i} 0x{:08x}", r.id().get()),
                None => format!("pr{i} -"),
            })
            .collect()
    }

    fn sample(&self, out: &mut impl Write, t: Duration, owned: &[usize]) -> io::Result<()> {
        let ratio = if owned.iter().sum::<usize>() == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", imbalance(owned))
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
        for c in owned {
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
                if let (Some((_, n)), Some(&(cut, _))) = (p.flap, p.outages.first()) {
                    let hours = (heal - cut).as_secs_f64() / 3600.0;
                    writeln!(
                        out,
                        "  flapping: {n} outages; PE moves from the first cut ({}) to the last heal: {} ({:.2} per PE per hour)",
                        secs(cut),
                        self.moves_flapping,
                        self.moves_flapping as f64 / p.pes as f64 / hours
                    )?;
                }
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
                writeln!(
                    out,
                    "  PE moves after recovery: {} (minimum {}: the excess over the fair share {})",
                    self.moves_after,
                    minimum_moves(at, p.pes / p.registrars),
                    p.pes / p.registrars
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
        )?;
        if p.events_text.is_some() {
            self.run_summary(out)?;
        }
        Ok(())
    }

    /// `sim run`'s lines after [`Self::summary`]'s: the balance at
    /// [`BALANCED_TIGHT`], the re-homing, the PEs lost.
    fn run_summary(&self, out: &mut impl Write) -> io::Result<()> {
        let p = self.plan;
        if let (Some(heal), Some(_)) = (p.heal_at(), &self.at_recovery) {
            match self.tight_after {
                Some(d) => writeln!(
                    out,
                    "  max/mean <= {BALANCED_TIGHT} reached {} after recovery",
                    secs(d)
                )?,
                None => writeln!(
                    out,
                    "  max/mean <= {BALANCED_TIGHT} never reached in the {} after recovery",
                    secs(p.duration.saturating_sub(heal))
                )?,
            }
        }
        let started: Vec<usize> = (0..p.outages.len())
            .filter(|&i| p.outages[i].0 <= p.duration)
            .collect();
        if !started.is_empty() {
            let timed: Vec<Duration> = started.iter().filter_map(|&i| self.rehomed[i]).collect();
            match (self.rehomed[started[0]], timed.iter().max()) {
                (Some(first), Some(slowest)) => writeln!(
                    out,
                    "  re-homing: the others owned every PE {} after the first outage started; slowest {} ({} of {} outages timed)",
                    secs(first),
                    secs(*slowest),
                    timed.len(),
                    started.len()
                )?,
                _ => writeln!(
                    out,
                    "  re-homing: the others did not own every PE within {} of the first outage ({} of {} outages timed)",
                    secs(REHOME_WATCH.min(p.outages[started[0]].1 - p.outages[started[0]].0)),
                    timed.len(),
                    started.len()
                )?,
            }
        }
        let registered = self.s.registered();
        writeln!(
            out,
            "  PEs lost: {} (registered at the end: {registered} of {})",
            p.pes.saturating_sub(registered),
            p.pes
        )
    }
}

/// The chart of --svg.
impl Experiment<'_> {
    fn chart(&self) -> String {
        let p = self.plan;
        let mut c = Chart::new();
        c.text(
            &format!(
                "{}: policy {}, {} registrars, {} PEs, seed {}",
                p.title,
                p.policy_text(),
                p.registrars,
                p.pes,
                p.seed
            ),
            16.0,
            true,
        );
        let outage = p
            .outage_text()
            .map_or_else(|| "no outage".to_string(), |o| format!("{o};"));
        c.text(
            &format!(
                "{outage} T4 {}, registration life {}; run {}",
                secs(p.t4),
                secs(3 * p.t4),
                secs(p.duration)
            ),
            12.0,
            false,
        );
        for line in self.outcome_text() {
            c.text(&line, 12.0, false);
        }
        let labels = self.labels();
        let hit = p.hit();
        let crashes = p.targets.iter().filter(|t| t.crash.is_some()).count();
        let verb = match crashes {
            0 => "cut off",
            n if n == p.targets.len() => "crashed",
            _ => "cut off or crashed",
        };
        let legend: Vec<(Stroke, String)> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let l = if hit.contains(&i) {
                    format!("{l} ({verb})")
                } else {
                    l.clone()
                };
                (Stroke::nth(i), l)
            })
            .collect();
        c.legend(&legend);

        let series: Vec<Vec<(f64, f64)>> = (0..p.registrars)
            .map(|i| {
                self.plot
                    .iter()
                    .map(|(t, row)| (t.as_secs_f64(), f64::from(row[i])))
                    .collect()
            })
            .collect();
        let lines: Vec<Line<'_>> = series
            .iter()
            .zip(&labels)
            .enumerate()
            .map(|(i, (points, name))| Line {
                name,
                stroke: Stroke::nth(i),
                points,
            })
            .collect();
        let fair = p.pes as f64 / p.registrars as f64;
        let rules = [(fair, format!("fair share {}", trim_float(fair)))];
        let bands: Vec<(f64, f64)> = p
            .outages
            .iter()
            .map(|(a, z)| (a.as_secs_f64(), z.as_secs_f64()))
            .collect();
        let who: Vec<String> = hit.iter().map(|i| format!("pr{i}")).collect();
        let band_label = format!(
            "{} ({} {verb})",
            if p.flap.is_some() || p.outages.len() > 1 {
                "outages"
            } else {
                "outage"
            },
            who.join(" ")
        );
        let band_label = band_label.as_str();
        let whole = (0.0, p.duration.as_secs_f64());
        let most = |from: f64, to: f64| {
            self.plot
                .iter()
                .filter(|(t, _)| (from..=to).contains(&t.as_secs_f64()))
                .flat_map(|(_, row)| row.iter().copied())
                .max()
                .map_or(0.0, f64::from)
        };
        let y_top = |most: f64| svg::nice_ceiling(most.max(fair * 1.1), 6);
        c.panel(&Panel {
            id: "ownership",
            heading: "PEs owned per registrar (each by its own handlespace)",
            height: 360.0,
            x: whole,
            y: (0.0, y_top(most(whole.0, whole.1))),
            x_label: "simulated time (s)",
            y_label: "PEs owned",
            bands: &bands,
            band_label,
            rules: &rules,
            lines: &lines,
        });

        let ratio: Vec<(f64, f64)> = self
            .plot
            .iter()
            .filter(|(_, row)| row.iter().any(|&c| c > 0))
            .map(|(t, row)| {
                let row: Vec<usize> = row.iter().map(|&c| c as usize).collect();
                (t.as_secs_f64(), imbalance(&row))
            })
            .collect();
        let worst = ratio.iter().map(|r| r.1).fold(1.2, f64::max);
        c.panel(&Panel {
            id: "max-mean",
            heading: "max/mean of the ownership counts",
            height: 190.0,
            x: whole,
            y: (1.0, 1.0 + svg::nice_ceiling(worst - 1.0, 5)),
            x_label: "simulated time (s)",
            y_label: "max/mean",
            bands: &bands,
            band_label,
            rules: &[(BALANCED, format!("{BALANCED} (balanced)"))],
            lines: &[Line {
                name: "max/mean",
                stroke: Stroke::black(),
                points: &ratio,
            }],
        });

        if let Some(heal) = p.heal_at().filter(|h| *h <= p.duration) {
            let from = heal.saturating_sub(ZOOM_BEFORE).as_secs_f64();
            let to = (heal + ZOOM).min(p.duration).as_secs_f64();
            let heading = format!(
                "the {} after the recovery at {}, every {}",
                secs(ZOOM.min(p.duration - heal)),
                secs(heal),
                secs(FINE)
            );
            c.panel(&Panel {
                id: "after-recovery",
                heading: &heading,
                height: 300.0,
                x: (from, to.max(from + 1.0)),
                y: (0.0, y_top(most(from, to))),
                x_label: "simulated time (s)",
                y_label: "PEs owned",
                bands: &bands,
                band_label,
                rules: &rules,
                lines: &lines,
            });
        }
        c.finish()
    }

    /// The summary in two short lines.
    fn outcome_text(&self) -> Vec<String> {
        let p = self.plan;
        let end = format!("final max/mean {:.3}", imbalance(&self.owned()));
        let (Some(heal), Some(at)) = (p.heal_at(), &self.at_recovery) else {
            return vec![end];
        };
        let balance = match self.balanced_after {
            Some(d) => format!(
                "max/mean \u{2264} {BALANCED} reached {} after the recovery (worst afterwards {:.3})",
                secs(d),
                self.worst_after
            ),
            None => format!(
                "max/mean \u{2264} {BALANCED} never reached in the {} after the recovery",
                secs(p.duration.saturating_sub(heal))
            ),
        };
        let mut moves = format!(
            "PE moves after the recovery {} (minimum {}); {end}",
            self.moves_after,
            minimum_moves(at, p.pes / p.registrars),
        );
        if p.flap.is_some() {
            moves += &format!(
                "; PE moves from the first cut to the last heal {}",
                self.moves_flapping
            );
        }
        vec![balance, moves]
    }
}

/// The fewest PE moves that bring every registrar down to `fair`.
fn minimum_moves(owned: &[usize], fair: usize) -> usize {
    owned.iter().map(|c| c.saturating_sub(fair)).sum()
}

/// A number without decimals when whole, else with one.
fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
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
        let outages = if down > 0 {
            vec![(OUTAGE_AT, OUTAGE_AT + Duration::from_secs(outage))]
        } else {
            Vec::new()
        };
        Plan {
            title: "rserpool sim takeover".into(),
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
            flap: None,
            targets: vec![
                Target {
                    who: (3 - down..3).collect(),
                    crash: None,
                };
                outages.len()
            ],
            outages,
            events_text: None,
            svg: None,
            plot_step: Duration::from_secs(1),
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

    fn args(duration_s: u64, flap_s: Option<u64>) -> Args {
        Args {
            seed: 1,
            registrars: 3,
            pes: 10,
            down: 1,
            outage: Dur(Duration::from_secs(20)),
            policy: Balance::Off,
            tolerance: None,
            t4: Dur(Duration::from_secs(30)),
            duration: Dur(Duration::from_secs(duration_s)),
            sample: Dur(Duration::from_secs(10)),
            csv: false,
            flap: flap_s.map(|f| Dur(Duration::from_secs(f))),
            cycles: None,
            svg: Some(PathBuf::from("unused.svg")),
        }
    }

    #[test]
    fn flapping_outages_repeat_and_the_recovery_is_the_last_heal() {
        let p = Plan::new(args(600, Some(60))).expect("a valid plan");
        let s = Duration::from_secs;
        assert_eq!(p.outages.len(), FLAP_CYCLES as usize);
        assert_eq!(p.outages[1], (s(120), s(140)));
        assert_eq!(p.heal_at(), Some(s(380)));
        assert!(p.is_cut(s(180)) && p.is_heal(s(200)) && !p.is_cut(s(200)));
        assert_eq!(p.phase(s(79)), "outage");
        assert_eq!(p.phase(s(80)), "recovered");
        assert_eq!(p.phase(s(130)), "outage");
        let marks = p.marks();
        assert!(
            p.outages
                .iter()
                .all(|(c, h)| marks.contains(c) && marks.contains(h))
        );
    }

    #[test]
    fn the_plot_keeps_a_bounded_number_of_samples() {
        let short = Plan::new(args(600, None)).expect("a valid plan");
        assert_eq!(short.plot_step, Duration::from_secs(1));
        // A day: 43.2 s steps, about 2,000 samples plus the zoom after the
        // recovery.
        let day = Plan::new(args(86_400, None)).expect("a valid plan");
        assert_eq!(day.plot_step, Duration::from_millis(43_200));
        let kept = day
            .marks()
            .into_iter()
            .filter(|t| day.is_plot_point(*t))
            .count();
        assert!(kept <= 2_001 + 901, "{kept}");
    }

    #[test]
    fn imbalance_is_max_over_mean() {
        assert_eq!(imbalance(&[10, 10, 10]), 1.0);
        assert!((imbalance(&[20, 10, 0]) - 2.0).abs() < 1e-9);
        assert_eq!(imbalance(&[0, 0]), 1.0);
    }
}

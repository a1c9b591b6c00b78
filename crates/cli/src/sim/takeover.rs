//! `rserpool sim takeover`: the draft's Takeover Suggestion experiment on
//! the simulator. Registrars are cut off long enough that their PEs move to
//! the others, then come back; the table shows how ownership (each
//! registrar's count of the PEs it owns in its own handlespace) returns.
//!
//! The experiment itself is `rserpool_sim::experiments::takeover`; this
//! module checks the arguments and prints (table, CSV, chart).

use super::progress::Progress;
use super::svg::{self, Chart, Line, Panel, Stroke};
use crate::node::config_error;
use crate::node::duration::Dur;
use crate::registrar::Balance;
use rserpool_core::registrar::BalancePolicy;
use rserpool_sim::experiments::events::secs;
use rserpool_sim::experiments::takeover::{
    self as experiment, BALANCED, BALANCED_TIGHT, Experiment, FINE, Outcome, Policy, REHOME_WATCH,
    Sample, ZOOM,
};
use rserpool_wire::PrId;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Deref;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// --svg: the zoomed panel starts this long before the recovery.
const ZOOM_BEFORE: Duration = Duration::from_secs(5);
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

/// The experiment's plan and how to show it.
pub(super) struct Plan {
    /// What runs.
    pub exp: experiment::Plan,
    /// The first words of the header and of the chart's title.
    pub title: String,
    pub down: usize,
    pub outage: Duration,
    pub policy: Balance,
    pub csv: bool,
    /// --flap: the period and the number of outages.
    pub flap: Option<(Duration, u32)>,
    /// `sim run`: the events as the header says them; the summary says more.
    pub events_text: Option<String>,
    /// `sim run`: the CSV rows end with each registrar's messages per
    /// second since the previous row.
    pub rates: bool,
    pub svg: Option<PathBuf>,
}

// The printing reads the run's parameters as often as its own.
impl Deref for Plan {
    type Target = experiment::Plan;

    fn deref(&self) -> &experiment::Plan {
        &self.exp
    }
}

/// The library's name of a `--policy`.
pub(super) fn policy(b: Balance) -> Policy {
    match b {
        Balance::Off => Policy::Off,
        Balance::Xor => Policy::Xor,
        Balance::Balanced => Policy::Balanced,
    }
}

impl Plan {
    fn new(a: Args) -> Result<Self, String> {
        if a.registrars == 0 || a.registrars > 250 {
            return Err("--registrars must be 1 to 250".into());
        }
        if a.pes == 0 || a.pes > MAX_PES {
            return Err(format!("--pes must be 1 to {MAX_PES}"));
        }
        if a.down >= a.registrars {
            return Err("--down must leave at least one registrar reachable".into());
        }
        if a.tolerance.is_some() && a.policy != Balance::Balanced {
            return Err("--tolerance applies only to --policy balanced".into());
        }
        let balance = experiment::balance_policy(policy(a.policy), a.tolerance, "--tolerance")?;
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
        let (outages, targets) = experiment::cut_off_last(a.registrars, a.down, a.outage.0, flap);
        Ok(Self {
            exp: experiment::Plan {
                seed: a.seed,
                registrars: a.registrars,
                pes: a.pes,
                balance,
                t4: a.t4.0,
                duration: a.duration.0,
                sample: a.sample.0,
                outages,
                targets,
                watch_rehoming: false,
                plot_step: a.svg.is_some().then(|| experiment::plot_step(a.duration.0)),
                policies: Vec::new(),
                capacities: Vec::new(),
                tuning: experiment::Tuning::default(),
            },
            title: "rserpool sim takeover".into(),
            down: a.down,
            outage: a.outage.0,
            policy: a.policy,
            csv: a.csv,
            flap,
            events_text: None,
            rates: false,
            svg: a.svg,
        })
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

    /// Whether the scope is the plain one of `sim takeover` (one policy,
    /// equal capacities, default timers): its output stays as it always was.
    fn plain(&self) -> bool {
        self.policies.is_empty()
            && self.capacities.is_empty()
            && self.tuning == experiment::Tuning::default()
    }

    /// What the balance criterion compares: the largest count to the mean,
    /// or with capacities, to the registrar's own fair share.
    fn ratio_name(&self) -> &'static str {
        if self.capacities.is_empty() {
            "max/mean"
        } else {
            "max/fair"
        }
    }

    /// The header lines that say how the scope differs from the plain one.
    fn scope_text(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.policies.is_empty() {
            let names: Vec<&str> = self.policies.iter().map(policy_word).collect();
            lines.push(format!("policies per registrar: {}", names.join(" ")));
        }
        if !self.capacities.is_empty() {
            let caps: Vec<String> = self.capacities.iter().map(u32::to_string).collect();
            let fair: Vec<String> = self
                .fair_shares(self.pes)
                .iter()
                .map(|f| format!("{f:.1}"))
                .collect();
            lines.push(format!(
                "capacities per registrar: {} (fair shares {}); {} is the largest count over its fair share",
                caps.join(" "),
                fair.join(" "),
                self.ratio_name()
            ));
        }
        let t = &self.tuning;
        let mut tuned: Vec<String> = [
            ("move cooldown", t.cooldown),
            ("peer settle time", t.settle),
            ("peer settle time max", t.settle_max),
            ("peer stable time", t.stable),
            ("move grace", t.grace),
        ]
        .iter()
        .filter_map(|(name, v)| v.map(|v| format!("{name} {}", secs(v))))
        .collect();
        if let BalancePolicy::Balanced(b) = self
            .policies
            .iter()
            .chain([&self.balance])
            .find(|b| matches!(b, BalancePolicy::Balanced(_)))
            .unwrap_or(&self.balance)
        {
            let default = rserpool_core::registrar::BalancedConfig::default();
            if b.rate != default.rate || b.burst != default.burst {
                tuned.push(format!("suggestions {}/s, burst {}", b.rate, b.burst));
            }
        }
        if !tuned.is_empty() {
            lines.push(format!("balancing: {}", tuned.join(", ")));
        }
        lines
    }
}

/// A registrar's policy in one word.
fn policy_word(b: &BalancePolicy) -> &'static str {
    match b {
        BalancePolicy::Off => "off",
        BalancePolicy::Xor => "xor",
        BalancePolicy::Balanced(_) => "balanced",
    }
}

/// The most PEs `--pes` and a scenario file accept: the million the issue
/// asks for, within what the simulator can address
/// ([`rserpool_sim::MAX_PER_ROLE`]).
pub(super) const MAX_PES: usize = 1_000_000;

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
    let report = Report { plan };
    let mut exp = Experiment::new(&plan.exp);
    let mut progress = Progress::new(plan.duration);
    let printed = report.samples(&mut exp, &mut out, &mut progress);
    progress.finish();
    let outcome = exp.finish();
    let printed = printed
        .and_then(|()| {
            if plan.csv {
                Ok(())
            } else {
                report.summary(&mut out, &outcome)
            }
        })
        .and_then(|()| out.flush());
    match printed {
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
            .write_all(report.chart(&outcome).as_bytes())
            .and_then(|()| f.sync_all())
        {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Prints a run of a plan.
struct Report<'p> {
    plan: &'p Plan,
}

impl Report<'_> {
    /// Runs `exp` to the end, printing the header and every sample as it
    /// goes; stops at the first error of `out`.
    fn samples(
        &self,
        exp: &mut Experiment<'_>,
        out: &mut impl Write,
        progress: &mut Progress,
    ) -> io::Result<()> {
        self.header(out, &exp.registrar_ids())?;
        while let Some(sample) = exp.next_sample() {
            progress.reached(sample.t);
            if progress.shown() {
                // Out of the buffer now, while the bar is off the screen.
                progress.suspend(|| self.sample(out, &sample).and_then(|()| out.flush()))?;
            } else {
                self.sample(out, &sample)?;
            }
        }
        Ok(())
    }

    /// Width of an ownership column.
    fn width(&self) -> usize {
        (self.plan.pes.to_string().len() + 1).max(5)
    }

    fn header(&self, out: &mut impl Write, ids: &[Option<PrId>]) -> io::Result<()> {
        let p = self.plan;
        let names: Vec<String> = (0..p.registrars).map(|i| format!("pr{i}")).collect();
        if p.csv {
            write!(
                out,
                "time_s,phase,{},max_mean,moves,suggestions_sent,suggestions_accepted,suggestions_declined",
                names.join(",")
            )?;
            if p.rates {
                for name in &names {
                    write!(out, ",msgs_per_s_{name}")?;
                }
            }
            return writeln!(out);
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
        for line in p.scope_text() {
            writeln!(out, "{line}")?;
        }
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
        let ids: Vec<String> = Self::labels(ids)
            .iter()
            .map(|l| l.replace(' ', "="))
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
            p.ratio_name(),
            "moves",
            "sent",
            "accepted",
            "declined"
        )
    }

    /// `pr<i> 0x<id>` for every registrar.
    fn labels(ids: &[Option<PrId>]) -> Vec<String> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| match id {
                Some(id) => format!("pr{i} 0x{:08x}", id.get()),
                None => format!("pr{i} -"),
            })
            .collect()
    }

    fn sample(&self, out: &mut impl Write, s: &Sample) -> io::Result<()> {
        let ratio = s.imbalance().map_or_else(
            || "-".to_string(),
            |_| format!("{:.3}", self.plan.load_ratio(&s.owned)),
        );
        let sug = s.suggestions;
        let phase = s.phase.name();
        let time = s.t.as_secs_f64();
        let owned = &s.owned;
        if self.plan.csv {
            let counts: Vec<String> = owned.iter().map(usize::to_string).collect();
            write!(
                out,
                "{time:.1},{phase},{},{ratio},{},{},{},{}",
                counts.join(","),
                s.moves,
                sug.sent,
                sug.accepted,
                sug.declined
            )?;
            if self.plan.rates {
                for rate in s.messages_per_second() {
                    // The first row has no interval to divide by.
                    if s.interval.is_zero() {
                        write!(out, ",-")?;
                    } else {
                        write!(out, ",{rate:.1}")?;
                    }
                }
            }
            return writeln!(out);
        }
        let w = self.width();
        write!(out, "{time:>7.1}  {phase:<9}")?;
        for c in owned {
            write!(out, " {c:>w$}")?;
        }
        writeln!(
            out,
            " {ratio:>8} {:>6} {:>5} {:>8} {:>8}",
            s.moves, sug.sent, sug.accepted, sug.declined
        )
    }

    fn summary(&self, out: &mut impl Write, o: &Outcome) -> io::Result<()> {
        let p = self.plan;
        let r = p.ratio_name();
        writeln!(out)?;
        writeln!(out, "summary:")?;
        match (p.heal_at(), &o.at_recovery) {
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
                        o.moves_flapping,
                        o.moves_flapping as f64 / p.pes as f64 / hours
                    )?;
                }
                writeln!(
                    out,
                    "  at recovery ({}): {} ({r} {:.3})",
                    secs(heal),
                    counts(at),
                    p.load_ratio(at)
                )?;
                match o.balanced_after {
                    Some(d) => writeln!(
                        out,
                        "  {r} <= {BALANCED} reached {} after recovery; worst afterwards {:.3}",
                        secs(d),
                        o.worst_after
                    )?,
                    None => writeln!(
                        out,
                        "  {r} <= {BALANCED} never reached in the {} after recovery",
                        secs(p.duration.saturating_sub(heal))
                    )?,
                }
                if p.capacities.is_empty() {
                    writeln!(
                        out,
                        "  PE moves after recovery: {} (minimum {}: the excess over the fair share {})",
                        o.moves_after,
                        p.minimum_moves(at),
                        p.pes / p.registrars
                    )?;
                } else {
                    writeln!(
                        out,
                        "  PE moves after recovery: {} (minimum {}: the excess over the fair shares)",
                        o.moves_after,
                        p.minimum_moves(at)
                    )?;
                }
            }
        }
        let end = &o.final_owned;
        let total = end.iter().sum::<usize>().max(1) as f64;
        let shares: Vec<String> = end
            .iter()
            .map(|c| format!("{:.1}%", 100.0 * *c as f64 / total))
            .collect();
        writeln!(
            out,
            "  final ({}): {} ({r} {:.3}); shares {}",
            secs(p.duration),
            counts(end),
            p.load_ratio(end),
            shares.join(" ")
        )?;
        if !p.plain() {
            self.scope_summary(out, o)?;
        }
        if p.events_text.is_some() {
            self.run_summary(out, o)?;
        }
        Ok(())
    }

    /// The lines only a scope of mixed policies, unequal capacities or
    /// other timers gets: each registrar against its fair share, and how
    /// often single PEs moved (ping-pong shows as PEs moving many times).
    fn scope_summary(&self, out: &mut impl Write, o: &Outcome) -> io::Result<()> {
        let p = self.plan;
        let end = &o.final_owned;
        let total: usize = end.iter().sum();
        let per_fair: Vec<String> = end
            .iter()
            .zip(p.fair_shares(total))
            .map(|(&c, f)| {
                if f > 0.0 {
                    format!("{:.2}", c as f64 / f)
                } else {
                    "-".to_string()
                }
            })
            .collect();
        writeln!(
            out,
            "  final count over fair share per registrar: {}",
            per_fair.join(" ")
        )?;
        writeln!(
            out,
            "  PE moves per PE over the run: most {}, {} of {} PEs moved, {:.2} moves per PE",
            o.most_moves_of_a_pe(),
            o.pes_moved(),
            p.pes,
            o.moves as f64 / p.pes as f64
        )
    }

    /// `sim run`'s lines after [`Self::summary`]'s: the balance at
    /// [`BALANCED_TIGHT`], the re-homing, the PEs lost.
    fn run_summary(&self, out: &mut impl Write, o: &Outcome) -> io::Result<()> {
        let p = self.plan;
        if let (Some(heal), Some(_)) = (p.heal_at(), &o.at_recovery) {
            match o.tight_after {
                Some(d) => writeln!(
                    out,
                    "  {} <= {BALANCED_TIGHT} reached {} after recovery",
                    p.ratio_name(),
                    secs(d)
                )?,
                None => writeln!(
                    out,
                    "  {} <= {BALANCED_TIGHT} never reached in the {} after recovery",
                    p.ratio_name(),
                    secs(p.duration.saturating_sub(heal))
                )?,
            }
        }
        let started: Vec<usize> = (0..p.outages.len())
            .filter(|&i| p.outages[i].0 <= p.duration)
            .collect();
        if !started.is_empty() {
            let timed: Vec<Duration> = started.iter().filter_map(|&i| o.rehomed[i]).collect();
            match (o.rehomed[started[0]], timed.iter().max()) {
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
        let registered = o.registered;
        writeln!(
            out,
            "  PEs lost: {} (registered at the end: {registered} of {})",
            p.pes.saturating_sub(registered),
            p.pes
        )
    }
}

/// The chart of --svg.
impl Report<'_> {
    fn chart(&self, o: &Outcome) -> String {
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
        for line in self.outcome_text(o) {
            c.text(&line, 12.0, false);
        }
        let labels = Self::labels(&o.registrar_ids);
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
                o.plot
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
        let rules: Vec<(f64, String)> = if p.capacities.is_empty() {
            vec![(fair, format!("fair share {}", trim_float(fair)))]
        } else {
            let by_capacity: std::collections::BTreeMap<u32, f64> = p
                .capacities
                .iter()
                .copied()
                .zip(p.fair_shares(p.pes))
                .collect();
            by_capacity
                .iter()
                .map(|(c, f)| {
                    (
                        *f,
                        format!("fair share {} (capacity {c})", trim_float(f.round())),
                    )
                })
                .collect()
        };
        let fair = rules.iter().map(|r| r.0).fold(fair, f64::max);
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
            o.plot
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

        let ratio: Vec<(f64, f64)> = o
            .plot
            .iter()
            .filter(|(_, row)| row.iter().any(|&c| c > 0))
            .map(|(t, row)| {
                let row: Vec<usize> = row.iter().map(|&c| c as usize).collect();
                (t.as_secs_f64(), p.load_ratio(&row))
            })
            .collect();
        let worst = ratio.iter().map(|r| r.1).fold(1.2, f64::max);
        c.panel(&Panel {
            id: "max-mean",
            heading: if p.capacities.is_empty() {
                "max/mean of the ownership counts"
            } else {
                "max/fair: the largest count over its registrar's fair share (by capacity)"
            },
            height: 190.0,
            x: whole,
            y: (1.0, 1.0 + svg::nice_ceiling(worst - 1.0, 5)),
            x_label: "simulated time (s)",
            y_label: p.ratio_name(),
            bands: &bands,
            band_label,
            rules: &[(BALANCED, format!("{BALANCED} (balanced)"))],
            lines: &[Line {
                name: p.ratio_name(),
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
    fn outcome_text(&self, o: &Outcome) -> Vec<String> {
        let p = self.plan;
        let r = p.ratio_name();
        let end = format!("final {r} {:.3}", p.load_ratio(&o.final_owned));
        let (Some(heal), Some(at)) = (p.heal_at(), &o.at_recovery) else {
            return vec![end];
        };
        let balance = match o.balanced_after {
            Some(d) => format!(
                "{r} \u{2264} {BALANCED} reached {} after the recovery (worst afterwards {:.3})",
                secs(d),
                o.worst_after
            ),
            None => format!(
                "{r} \u{2264} {BALANCED} never reached in the {} after the recovery",
                secs(p.duration.saturating_sub(heal))
            ),
        };
        let mut moves = format!(
            "PE moves after the recovery {} (minimum {}); {end}",
            o.moves_after,
            p.minimum_moves(at),
        );
        if p.flap.is_some() {
            moves += &format!(
                "; PE moves from the first cut to the last heal {}",
                o.moves_flapping
            );
        }
        vec![balance, moves]
    }
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

fn counts(c: &[usize]) -> String {
    c.iter().map(usize::to_string).collect::<Vec<_>>().join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(p.plot_step, Some(s(1)));
        assert_eq!(
            p.outage_text().as_deref(),
            Some("pr2 unreachable for 20 s in every 60 s from 60 s, 6 times (last heal at 380 s)")
        );
    }

    #[test]
    fn bad_arguments_are_refused_with_the_flag() {
        let mut a = args(600, None);
        a.tolerance = Some(0.1);
        let e = Plan::new(a).err().expect("xor/off take no tolerance");
        assert_eq!(e, "--tolerance applies only to --policy balanced");
        let mut a = args(600, Some(10));
        a.cycles = Some(2);
        let e = Plan::new(a).err().expect("a flap shorter than the outage");
        assert_eq!(e, "--flap must be longer than --outage");
    }

    #[test]
    fn a_million_pes_are_accepted() {
        let mut a = args(600, None);
        a.pes = 1_000_000;
        assert_eq!(Plan::new(a).map(|p| p.pes).ok(), Some(1_000_000));
        let mut a = args(600, None);
        a.pes = 1_000_001;
        let e = Plan::new(a).err().expect("more than the most");
        assert_eq!(e, "--pes must be 1 to 1000000");
        const { assert!(MAX_PES <= rserpool_sim::MAX_PER_ROLE) };
    }
}

//! `rserpool sim run FILE.toml`: the experiment of `sim takeover` with its
//! parameters and reliability events (registrars cut off or crashed, once or
//! flapping) read from a scenario file (see scenarios/ and
//! docs/EXPERIMENTS.md).

use super::takeover::{self, MAX_PES, Plan};
use crate::node::config_error;
use crate::node::duration::Dur;
use crate::registrar::Balance;
use rserpool_core::registrar::{BalancePolicy, BalancedConfig};
use rserpool_sim::CrashMode;
use rserpool_sim::experiments::events;
use rserpool_sim::experiments::takeover::{self as experiment, FINE, Policy};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Examples and the file format, shown by `rserpool sim run --help`.
pub const AFTER_HELP: &str = "\
The scenario file (TOML; every key but `events` is optional, unknown keys \
are errors):

  seed = 1                  # world seed
  duration = \"600s\"         # simulated time to run
  sample = \"10s\"            # print a sample this often
  policy = \"balanced\"       # off | xor | balanced
  tolerance = 0.05          # balanced only
  [registrars]
  count = 5
  capacities = [2, 1, 1, 1, 1]  # optional, one per registrar (known to all by ID)
  policies = [\"balanced\", \"balanced\", \"xor\", \"balanced\", \"balanced\"]  # optional, one per registrar
  [balance]                 # optional; a key left out keeps the registrar default
  rate = 50.0               # suggestions per second a registrar may send
  burst = 100.0             # suggestions in a burst
  cooldown = \"120s\"         # a PE moved by a suggestion stays this long
  settle = \"10s\"            # a peer counts for balancing this long after it came back
  settle_max = \"600s\"       # a flapping peer's settle time doubles up to this
  stable = \"120s\"           # a peer that drops off sooner after coming back flaps
  grace = \"15s\"             # how long a suggested move may take
  [pes]
  count = 1000
  t4 = \"30s\"                # re-registration interval; life 3 x T4
  [[events]]
  at = \"60s\"                # when the first outage starts
  kind = \"cut\"              # cut (each alone on a network side) | crash
  registrars = [3, 4]       # indices, pr0 is 0
  for = \"163s\"              # until the heal (cut) or the restart (crash)
  every = \"60s\"             # optional: flapping, a new outage every period
  cycles = 6                # with every: how many outages
  crash = \"host\"            # crash only: host (peers notice by timeout) | process (ABORT)

Outages must not overlap. The output is that of `sim takeover`; the --csv \
rows end with msgs_per_s_pr0, msgs_per_s_pr1, ...: the ASAP and ENRP \
messages each registrar sent and received per second since the previous row \
(its workload). A run longer than a few seconds shows a progress bar on \
stderr if stderr is a terminal. The summary adds the time until max/mean \
<= 1.05 after the last recovery, the re-homing (time from the start of an \
outage until the registrars it did not hit own every PE, checked every 0.1 s \
for the first 120 s) and the PEs not registered at the end.

Examples:
  rserpool sim run scenarios/draft-5x1000.toml
  rserpool sim run scenarios/crash.toml --svg crash.svg
  rserpool sim run scenarios/flapping.toml --duration 200s --csv";

/// Flags of `rserpool sim run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario file (TOML).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Simulated time to run, instead of the file's `duration`.
    #[arg(long, value_name = "DUR")]
    duration: Option<Dur>,
    /// World seed, instead of the file's `seed`.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Print the samples as CSV (with a header row) and nothing else; the
    /// rows end with each registrar's messages per second.
    #[arg(long)]
    csv: bool,
    /// Also write an SVG chart of the ownership over time to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "one")]
    seed: u64,
    duration: Option<Dur>,
    sample: Option<Dur>,
    #[serde(default = "balanced")]
    policy: Balance,
    tolerance: Option<f64>,
    #[serde(default)]
    registrars: Registrars,
    #[serde(default)]
    balance: BalanceKeys,
    #[serde(default)]
    pes: Pes,
    #[serde(default)]
    events: Vec<Event>,
}

fn one() -> u64 {
    1
}

fn balanced() -> Balance {
    Balance::Balanced
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registrars {
    #[serde(default = "five")]
    count: usize,
    capacities: Option<Vec<u32>>,
    policies: Option<Vec<Balance>>,
}

fn five() -> usize {
    5
}

impl Default for Registrars {
    fn default() -> Self {
        Self {
            count: 5,
            capacities: None,
            policies: None,
        }
    }
}

/// `[balance]`: the registrars' balancing parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceKeys {
    rate: Option<f64>,
    burst: Option<f64>,
    cooldown: Option<Dur>,
    settle: Option<Dur>,
    settle_max: Option<Dur>,
    stable: Option<Dur>,
    grace: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pes {
    #[serde(default = "thousand")]
    count: usize,
    t4: Option<Dur>,
}

fn thousand() -> usize {
    1000
}

impl Default for Pes {
    fn default() -> Self {
        Self {
            count: 1000,
            t4: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Cut,
    Crash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Crash {
    Host,
    Process,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    at: Dur,
    kind: Kind,
    registrars: Vec<usize>,
    #[serde(rename = "for")]
    lasts: Dur,
    every: Option<Dur>,
    cycles: Option<u32>,
    crash: Option<Crash>,
}

/// Runs the scenario of the file.
pub fn run(args: Args) -> ExitCode {
    match plan(&args) {
        Ok(p) => takeover::run_plan(&p),
        Err(e) => config_error(format!("{}: {e}", args.file.display())),
    }
}

/// Reads and checks the file: the plan, or the reason in one line.
fn plan(args: &Args) -> Result<Plan, String> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| e.to_string())?;
    let f: File = toml::from_str(&text).map_err(|e| toml_error(&text, &e))?;
    to_plan(f, args)
}

/// A TOML error in one line, with the line number.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

fn to_plan(f: File, args: &Args) -> Result<Plan, String> {
    let registrars = f.registrars.count;
    if registrars == 0 || registrars > 250 {
        return Err("registrars.count must be 1 to 250".into());
    }
    let pes = f.pes.count;
    if pes == 0 || pes > MAX_PES {
        return Err(format!("pes.count must be 1 to {MAX_PES}"));
    }
    let (balance, policies) = policies(&f, registrars)?;
    let capacities = match &f.registrars.capacities {
        None => Vec::new(),
        Some(c) if c.len() != registrars => {
            return Err(format!(
                "registrars.capacities has {} values for {registrars} registrars",
                c.len()
            ));
        }
        Some(c) if c.contains(&0) => {
            return Err("registrars.capacities must be at least 1 each".into());
        }
        Some(c) => c.clone(),
    };
    let b = &f.balance;
    let tuning = experiment::Tuning {
        cooldown: b.cooldown.map(|d| d.0),
        settle: b.settle.map(|d| d.0),
        settle_max: b.settle_max.map(|d| d.0),
        stable: b.stable.map(|d| d.0),
        grace: b.grace.map(|d| d.0),
    };
    let t4 = f.pes.t4.map_or(Duration::from_secs(30), |d| d.0);
    if t4 < Duration::from_millis(100) {
        return Err("pes.t4 must be at least 100ms".into());
    }
    let sample = f.sample.map_or(Duration::from_secs(10), |d| d.0);
    if sample < FINE {
        return Err("sample must be at least 100ms".into());
    }
    let (duration, key) = match (&args.duration, &f.duration) {
        (Some(d), _) => (d.0, "--duration"),
        (None, Some(d)) => (d.0, "duration"),
        (None, None) => (Duration::from_secs(600), "duration"),
    };
    if duration.is_zero() || duration > Duration::from_secs(86_400) {
        return Err(format!("{key} must be more than 0 and at most a day"));
    }
    let events: Vec<events::Event> = f
        .events
        .iter()
        .map(|e| events::Event {
            at: e.at.0,
            kind: match e.kind {
                Kind::Cut => events::Kind::Cut,
                Kind::Crash => events::Kind::Crash,
            },
            registrars: e.registrars.clone(),
            lasts: e.lasts.0,
            every: e.every.map(|d| d.0),
            cycles: e.cycles,
            crash: e.crash.map(|c| match c {
                Crash::Host => CrashMode::Host,
                Crash::Process => CrashMode::Process,
            }),
        })
        .collect();
    let x = events::expand(&events, registrars)?;
    let events_text = if x.descriptions.is_empty() {
        "none".to_string()
    } else {
        x.descriptions.join("; ")
    };
    Ok(Plan {
        exp: experiment::Plan {
            seed: args.seed.unwrap_or(f.seed),
            registrars,
            pes,
            balance,
            t4,
            duration,
            sample,
            outages: x.outages.clone(),
            targets: x.targets.clone(),
            watch_rehoming: true,
            plot_step: args.svg.is_some().then(|| experiment::plot_step(duration)),
            policies,
            capacities,
            tuning,
        },
        title: format!("rserpool sim run {}", args.file.display()),
        down: x.targets.first().map_or(0, |t| t.who.len()),
        outage: x.outages.first().map_or(Duration::ZERO, |o| o.1 - o.0),
        policy: f.policy,
        csv: args.csv,
        flap: x.flap,
        events_text: Some(events_text),
        rates: true,
        svg: args.svg.clone(),
    })
}

/// The policy of the scope and, with `registrars.policies`, of each
/// registrar; every balanced one gets the file's tolerance, rate and burst.
fn policies(f: &File, registrars: usize) -> Result<(BalancePolicy, Vec<BalancePolicy>), String> {
    let per = f.registrars.policies.as_deref().unwrap_or_default();
    if !per.is_empty() && per.len() != registrars {
        return Err(format!(
            "registrars.policies has {} values for {registrars} registrars",
            per.len()
        ));
    }
    let any_balanced = f.policy == Balance::Balanced || per.contains(&Balance::Balanced);
    let main = if any_balanced {
        Policy::Balanced
    } else {
        takeover::policy(f.policy)
    };
    // Checks the tolerance (and refuses it without a balanced registrar).
    let mut balanced = match experiment::balance_policy(main, f.tolerance, "tolerance")? {
        BalancePolicy::Balanced(c) => c,
        _ => BalancedConfig::default(),
    };
    if !any_balanced && (f.balance.rate.is_some() || f.balance.burst.is_some()) {
        return Err("balance.rate and balance.burst apply only to policy balanced".into());
    }
    if let Some(rate) = f.balance.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err("balance.rate must be a number > 0".into());
        }
        balanced.rate = rate;
    }
    if let Some(burst) = f.balance.burst {
        if !(burst.is_finite() && burst >= 1.0) {
            return Err("balance.burst must be a number >= 1".into());
        }
        balanced.burst = burst;
    }
    let make = |b: Balance| match b {
        Balance::Off => BalancePolicy::Off,
        Balance::Xor => BalancePolicy::Xor,
        Balance::Balanced => BalancePolicy::Balanced(balanced.clone()),
    };
    Ok((make(f.policy), per.iter().map(|&b| make(b)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            file: PathBuf::from("test.toml"),
            duration: None,
            seed: None,
            csv: false,
            svg: None,
        }
    }

    fn parse(text: &str) -> Result<Plan, String> {
        let f: File = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        to_plan(f, &args())
    }

    #[test]
    fn flapping_events_expand_to_outages() {
        let p = parse(
            "[[events]]\nat = \"60s\"\nkind = \"cut\"\nregistrars = [4]\nfor = \"20s\"\nevery = \"60s\"\ncycles = 3\n",
        )
        .expect("a valid file");
        let s = Duration::from_secs;
        assert_eq!(
            p.outages,
            [(s(60), s(80)), (s(120), s(140)), (s(180), s(200))]
        );
        assert_eq!(p.targets[2].who, [4]);
        assert_eq!(p.flap, Some((s(60), 3)));
    }

    #[test]
    fn per_registrar_keys_and_balance_keys_reach_the_plan() {
        let p = parse(
            "policy = \"xor\"\ntolerance = 0.1\n[registrars]\ncount = 3\ncapacities = [2, 1, 1]\n\
             policies = [\"balanced\", \"xor\", \"off\"]\n[balance]\nrate = 5.0\ncooldown = \"30s\"\nsettle = \"2s\"\n",
        )
        .expect("a valid file");
        assert_eq!(p.capacities, [2, 1, 1]);
        assert_eq!(p.balance, BalancePolicy::Xor);
        match p.policy_of(0) {
            BalancePolicy::Balanced(b) => assert_eq!((b.tolerance, b.rate), (0.1, 5.0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.policy_of(2), &BalancePolicy::Off);
        assert_eq!(p.tuning.cooldown, Some(Duration::from_secs(30)));
        assert_eq!(p.tuning.settle, Some(Duration::from_secs(2)));
        assert_eq!(p.tuning.stable, None);
        let e = parse("policy = \"xor\"\n[balance]\nburst = 5.0\n")
            .err()
            .expect("no balanced registrar");
        assert!(e.contains("balance.burst"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse("seed = 1\nbogus = 2\n").err().expect("an error");
        assert!(e.contains("bogus") && e.starts_with("line 2:"), "{e}");
        let e = parse("[[events]]\nat = \"1s\"\nkind = \"cut\"\nregistrars = [5]\nfor = \"1s\"\n")
            .err()
            .expect("an error");
        assert!(e.contains("events[0].registrars"), "{e}");
        let e = parse(
            "[[events]]\nat = \"1s\"\nkind = \"cut\"\nregistrars = [1]\nfor = \"10s\"\n\
             [[events]]\nat = \"5s\"\nkind = \"crash\"\nregistrars = [2]\nfor = \"10s\"\n",
        )
        .err()
        .expect("an error");
        assert!(e.contains("overlap"), "{e}");
    }
}

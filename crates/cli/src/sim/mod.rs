//! `rserpool sim`: experiments on the deterministic simulator of
//! `rserpool-sim` (the real registrar and pool element machines on virtual
//! time), printed as they run; the same seed prints the same bytes.

mod progress;
mod run;
mod svg;
mod takeover;

use std::process::ExitCode;

/// Examples, shown by `rserpool sim --help`.
pub const AFTER_HELP: &str = "\
Examples:
  rserpool sim takeover                       # the draft's experiment: 5 registrars, 1,000 PEs
  rserpool sim takeover --policy off          # without Takeover Suggestion
  rserpool sim takeover --seed 7 --csv > run.csv
  rserpool sim takeover --svg run.svg         # and a chart of the ownership over time
  rserpool sim run scenarios/crash.toml       # an experiment described in a scenario file

docs/SIMULATION.md describes the experiments and the simulated network.";

/// Flags of `rserpool sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    experiment: Experiment,
}

/// The experiments.
#[derive(Debug, clap::Subcommand)]
enum Experiment {
    /// Registrars become unreachable, their PEs move to the others; after the
    /// heal, watch how ownership returns (Takeover Suggestion).
    #[command(after_long_help = takeover::AFTER_HELP)]
    Takeover(takeover::Args),
    /// Runs the experiment a scenario file describes: the scope, the policy
    /// and reliability events (registrars cut off or crashed, once or
    /// flapping).
    #[command(after_long_help = run::AFTER_HELP)]
    Run(run::Args),
}

/// Runs the experiment asked for.
pub fn run(args: Args) -> ExitCode {
    match args.experiment {
        Experiment::Takeover(a) => takeover::run(a),
        Experiment::Run(a) => run::run(a),
    }
}

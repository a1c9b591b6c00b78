//! `rserpool bench`: load generators that drive a running daemon over the
//! real transport and report what it achieved.

mod procfs;
mod registrar;

use std::process::ExitCode;

/// Flags of `rserpool bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    /// Load a running registrar: register, keep alive, re-register and
    /// resolve pool elements, then print rates, latencies and the
    /// registrar's CPU and memory.
    #[command(after_long_help = registrar::AFTER_HELP)]
    Registrar(registrar::Args),
}

/// Text after the subcommand list of `rserpool bench --help`.
pub const AFTER_HELP: &str = "\
`rserpool bench registrar --help` lists the load generator's flags, its \
output and exit codes.";

/// Runs the chosen load generator.
pub fn run(args: Args) -> ExitCode {
    match args.target {
        Target::Registrar(a) => registrar::run(a),
    }
}

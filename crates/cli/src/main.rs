//! The `rserpool` command-line tool: one binary, one subcommand per task.
//!
//! Each subcommand lives in a module of its own that exposes an `Args`
//! struct (clap derive) and a `run` function returning the process exit code.

mod decode;
mod style;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Reliable Server Pooling (RFC 5351-5356) tools.
#[derive(Debug, Parser)]
#[command(name = "rserpool", version)]
#[command(propagate_version = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode ASAP and ENRP messages from hex or from a pcap/pcapng capture.
    #[command(after_long_help = decode::AFTER_HELP)]
    Decode(decode::Args),
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => decode::run(args),
    }
}

/// Logs go to stderr so they never mix with decoded output; `RUST_LOG`
/// (for example `RUST_LOG=debug`) shows why frames were skipped.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

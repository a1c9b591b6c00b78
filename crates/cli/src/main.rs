//! The `rserpool` command-line tool: one binary, one subcommand per task.
//!
//! Each subcommand lives in a module of its own that exposes an `Args`
//! struct (clap derive) and a `run` function returning the process exit code.

mod bench;
mod decode;
mod demo;
mod hsdump;
mod metrics;
mod monitor;
mod node;
mod pe;
mod pu;
mod registrar;
mod service;
mod sim;
mod style;
mod terminal;

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
    /// Run a pool registrar (ENRP server) until SIGINT or SIGTERM.
    #[command(after_long_help = registrar::AFTER_HELP)]
    Registrar(Box<registrar::Args>),
    /// Run a pool element: register in a pool, serve sessions (--service), deregister on SIGINT or SIGTERM.
    #[command(after_long_help = pe::AFTER_HELP)]
    Pe(pe::Args),
    /// Run a pool user: a terminal session with a pool, or resolutions (--resolve).
    #[command(after_long_help = pu::AFTER_HELP)]
    Pu(pu::Args),
    /// Load a running daemon over the real transport and report rates, latencies and its CPU and memory.
    #[command(after_long_help = bench::AFTER_HELP)]
    Bench(bench::Args),
    /// Run a whole scope in this process on loopback and narrate failover and takeover.
    #[command(after_long_help = demo::AFTER_HELP)]
    Demo(demo::Args),
    /// Print the handlespace of a running registrar (pools, PEs, owners, peers) without joining its scope.
    #[command(after_long_help = hsdump::AFTER_HELP)]
    Hsdump(hsdump::Args),
    /// Show a scope live: PEs per registrar, who answers, and what changes (terminal view or plain lines).
    #[command(after_long_help = monitor::AFTER_HELP)]
    Monitor(monitor::Args),
    /// Run an experiment on the deterministic simulator and print it as it runs.
    #[command(after_long_help = sim::AFTER_HELP)]
    Sim(sim::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_long_help = "Example: rserpool completions bash > /etc/bash_completion.d/rserpool"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (rserpool.1 and one per subcommand) into a directory.
    #[command(
        after_long_help = "Example: rserpool man target/man && man target/man/rserpool-registrar.1"
    )]
    Man {
        /// Where to write them (created if missing).
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => {
            init_tracing("warn");
            decode::run(args)
        }
        Command::Registrar(args) => {
            init_tracing("info");
            registrar::run(*args)
        }
        Command::Pe(args) => {
            init_tracing("info");
            pe::run(args)
        }
        Command::Pu(args) => {
            init_tracing("warn");
            pu::run(args)
        }
        Command::Bench(args) => {
            init_tracing("warn");
            bench::run(args)
        }
        Command::Hsdump(args) => {
            init_tracing("warn");
            hsdump::run(args)
        }
        Command::Monitor(args) => {
            // Log lines would be drawn over the terminal view; what goes
            // wrong (a registrar not answering) is shown in the view itself.
            init_tracing("error");
            monitor::run(args)
        }
        Command::Sim(args) => {
            init_tracing("warn");
            sim::run(args)
        }
        Command::Demo(args) => {
            init_tracing("error");
            demo::run(args)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "rserpool", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => match write_man_pages(&dir) {
            Ok(n) => {
                eprintln!("{n} man pages written to {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write man pages to {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// Renders `rserpool.1` and `rserpool-SUB.1` for every subcommand.
fn write_man_pages(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut n = 0;
    let mut write = |name: String, c: clap::Command| -> std::io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.1")), buf)?;
        n += 1;
        Ok(())
    };
    for sub in cmd.get_subcommands() {
        let name = format!("rserpool-{}", sub.get_name());
        write(name.clone(), sub.clone().name(name))?;
    }
    write("rserpool".into(), cmd)?;
    Ok(n)
}

/// Logs go to stderr so they never mix with output on stdout; `RUST_LOG`
/// (for example `RUST_LOG=debug`) overrides `default`: the daemons log
/// their events at info, the one-shot tools only trouble.
fn init_tracing(default: &str) {
    // The userland SCTP's own warnings ("peer silent for 1001 ms") speak of
    // its internals; what they mean reaches the log as the node's own
    // events (home lost, failover, association down).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},sctp_proto=error"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
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

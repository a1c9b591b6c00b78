//! What the subcommands that run a protocol machine share: transports,
//! durations, addresses, policies, signals, and driving the machine on the
//! runtime of `rserpool-net`.

pub mod addr;
pub mod duration;
pub mod output;
pub mod policy;
pub mod transport;

use rserpool_core::{Instant, Machine};
use rserpool_net::runtime::{self, AnnounceChannel, Command, Endpoints, RuntimeError};
use rserpool_net::transport::Transport;
use std::fmt::Debug;
use std::process::ExitCode;
use tokio::sync::{mpsc, oneshot};

/// Exit code of a configuration that cannot work (as clap's usage errors).
pub const EXIT_CONFIG: u8 = 2;

/// Where a PE or PU looks for a registrar, for its progress lines:
/// "asking 10.0.0.1:3863 then 10.0.0.2:3863; listening for registrar
/// announces on 239.0.0.50:3863".
pub fn hunt_description(
    registrars: &[Vec<std::net::SocketAddr>],
    announce: Option<std::net::SocketAddr>,
) -> String {
    let mut parts = Vec::new();
    let list: Vec<String> = registrars
        .iter()
        .map(|r| {
            r.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    if !list.is_empty() {
        parts.push(format!("asking {}", list.join(" then ")));
    }
    if let Some(a) = announce {
        parts.push(format!("listening for registrar announces on {a}"));
    }
    parts.join("; ")
}

/// Reports a start-up failure on one line and returns exit code 2.
pub fn config_error(reason: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {reason}");
    ExitCode::from(EXIT_CONFIG)
}

/// Runs a node to completion on a single-threaded tokio runtime (each node
/// is one task plus its transport's driver, which one thread serves well).
pub fn block_on(node: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(node),
        Err(e) => config_error(format!("cannot start the async runtime: {e}")),
    }
}

/// Resolves when SIGINT or SIGTERM arrives; returns the signal's name.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            // Without handlers the default action (exit) still applies.
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// A machine running on the runtime in a task of its own.
pub struct Node<M: Machine> {
    commands: mpsc::Sender<Command<M>>,
    /// `None` once the task has been awaited.
    task: Option<tokio::task::JoinHandle<Result<M, RuntimeError>>>,
}

impl<M> Node<M>
where
    M: Machine + Send + 'static,
    M::Event: Debug + Send + 'static,
{
    /// Starts driving `machine` over `endpoints`; also returns the
    /// machine's events, in order.
    pub fn spawn<T: Transport>(
        machine: M,
        endpoints: Endpoints<T>,
        announce: Option<AnnounceChannel>,
    ) -> (Self, mpsc::UnboundedReceiver<M::Event>) {
        let (commands, rx) = mpsc::channel(16);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(runtime::run(machine, endpoints, announce, rx, tx));
        let node = Self {
            commands,
            task: Some(task),
        };
        (node, events)
    }

    /// Runs `f` on the machine and returns its result; `None` if the
    /// runtime has stopped.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let cmd: Command<M> = Box::new(move |m, now| {
            let _ = tx.send(f(m, now));
        });
        self.commands.send(cmd).await.ok()?;
        rx.await.ok()
    }

    /// Resolves when the runtime stops by itself (an endpoint failed).
    pub async fn failed(&mut self) -> String {
        let Some(task) = self.task.as_mut() else {
            return "runtime stopped".to_string();
        };
        let result = task.await;
        self.task = None;
        match result {
            Ok(Ok(_)) => "runtime stopped".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("runtime task failed: {e}"),
        }
    }

    /// Stops the runtime after it has sent what the machine queued.
    pub async fn stop(self) {
        drop(self.commands);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

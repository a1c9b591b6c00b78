//! A protocol machine of `rserpool-core` running on the tokio runtime of
//! `rserpool-net` in a task of its own, and the handle that talks to it.

use rserpool_core::{Instant, Machine};
use rserpool_net::runtime::{self, AnnounceChannel, Command, Endpoints, RuntimeError};
use rserpool_net::transport::Transport;
use std::fmt::Debug;
use tokio::sync::{mpsc, oneshot};

/// A machine running on the runtime in a task of its own. The runtime
/// stops (shutting its associations down gracefully) when the `Node` is
/// stopped or dropped; [`NodeHandle`]s do not keep it alive.
pub struct Node<M: Machine> {
    commands: mpsc::Sender<Command<M>>,
    /// `None` once the task has been awaited.
    task: Option<tokio::task::JoinHandle<Result<M, RuntimeError>>>,
}

/// Runs commands on a [`Node`]'s machine while the node runs.
pub struct NodeHandle<M: Machine> {
    commands: mpsc::WeakSender<Command<M>>,
}

impl<M: Machine> Clone for NodeHandle<M> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
        }
    }
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
        let (commands, rx) = mpsc::channel(64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(runtime::run(machine, endpoints, announce, rx, tx));
        let node = Self {
            commands,
            task: Some(task),
        };
        (node, events)
    }

    /// A handle for other tasks.
    pub fn handle(&self) -> NodeHandle<M> {
        NodeHandle {
            commands: self.commands.downgrade(),
        }
    }

    /// Runs `f` on the machine and returns its result; `None` if the
    /// runtime has stopped.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, Instant) -> R + Send + 'static,
    ) -> Option<R> {
        call(&self.commands, f).await
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

    /// Stops the runtime at once, as a crash would: nothing more is sent,
    /// associations are not shut down (peers notice by their timers).
    pub fn abort(self) {
        if let Some(task) = self.task {
            task.abort();
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

impl<M> NodeHandle<M>
where
    M: Machine + Send + 'static,
{
    /// Runs `f` on the machine; `None` if the node has stopped.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let commands = self.commands.upgrade()?;
        call(&commands, f).await
    }
}

async fn call<M: Machine, R: Send + 'static>(
    commands: &mpsc::Sender<Command<M>>,
    f: impl FnOnce(&mut M, Instant) -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = oneshot::channel();
    let cmd: Command<M> = Box::new(move |m, now| {
        let _ = tx.send(f(m, now));
    });
    commands.send(cmd).await.ok()?;
    rx.await.ok()
}

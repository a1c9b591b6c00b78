//! The runtime that drives a sans-IO machine of `rserpool-core` (registrar,
//! pool element or pool user) over real transports on tokio.
//!
//! One task owns the machine and its endpoints and multiplexes, with
//! `tokio::select!`: transport events, the machine's next deadline, announce
//! datagrams and commands from the application. After each input it drains
//! what the machine wants sent. This is the only place where the protocol
//! meets a clock: `Instant`s handed to the machine count from the runtime's
//! start.

mod announce;
mod associations;

pub use announce::AnnounceChannel;

use crate::transport::{CloseMode, Event, Ppid, Transport};
use associations::{Associations, Route};
use bytes::Bytes;
use rserpool_core::{AssociationEvent, Destination, DownReason, Instant, Machine, Transmit};
use std::fmt::Debug;
use tokio::sync::mpsc;

/// A command from the application: runs with the machine and the current time.
pub type Command<M> = Box<dyn FnOnce(&mut M, Instant) + Send>;

/// Which endpoint carries which protocol.
#[derive(Debug)]
pub struct Endpoints<T> {
    /// The ASAP endpoint (port 3863 for a registrar; any for PEs and PUs).
    pub asap: T,
    /// The ENRP endpoint (port 9901), for registrars.
    pub enrp: Option<T>,
}

/// Why the runtime stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// An endpoint failed for good.
    #[error("transport endpoint failed: {0}")]
    Transport(#[from] crate::transport::TransportError),
}

/// Drives `machine` until every command sender is dropped or an endpoint fails;
/// forwards the machine's events to `events` (dropped if nobody listens).
pub async fn run<M, T>(
    mut machine: M,
    mut endpoints: Endpoints<T>,
    mut announce: Option<AnnounceChannel>,
    mut commands: mpsc::Receiver<Command<M>>,
    events: mpsc::UnboundedSender<M::Event>,
) -> Result<M, RuntimeError>
where
    M: Machine,
    M::Event: Debug,
    T: Transport,
{
    let epoch = tokio::time::Instant::now();
    let now = move || Instant::from_epoch(epoch.elapsed());
    let mut assocs = Associations::default();
    loop {
        flush(
            &now,
            &mut machine,
            &mut endpoints,
            &mut assocs,
            announce.as_ref(),
            &events,
        )
        .await?;
        let deadline = machine.poll_timeout().map(|at| epoch + at.since_epoch());
        tokio::select! {
            ev = endpoints.asap.next_event() => {
                input(&mut machine, &mut endpoints, &mut assocs, 0, ev?, now()).await?;
            }
            ev = next_enrp(&mut endpoints.enrp) => {
                input(&mut machine, &mut endpoints, &mut assocs, 1, ev?, now()).await?;
            }
            datagram = recv_announce(announce.as_mut()) => {
                if let Some((from, ppid, data)) = datagram {
                    machine.handle_announce(now(), from, ppid, data);
                }
            }
            () = sleep_until(deadline) => {
                machine.handle_timeout(now());
            }
            cmd = commands.recv() => {
                match cmd {
                    Some(cmd) => cmd(&mut machine, now()),
                    None => {
                        flush(&now, &mut machine, &mut endpoints, &mut assocs, announce.as_ref(), &events).await?;
                        close_all(&mut endpoints, &assocs).await;
                        return Ok(machine);
                    }
                }
            }
        }
    }
}

/// How long a stopping node waits for its associations to shut down.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Shuts every association down gracefully (SHUTDOWN, not a silent drop
/// that leaves peers to time the association out), waiting up to
/// [`CLOSE_WAIT`] for them to go down.
async fn close_all<T: Transport>(endpoints: &mut Endpoints<T>, assocs: &Associations) {
    let up = assocs.all_up();
    if up.is_empty() {
        return;
    }
    let mut open: std::collections::HashSet<(usize, crate::transport::AssociationId)> =
        std::collections::HashSet::new();
    for (i, a) in up {
        if endpoint(endpoints, i)
            .close(a, CloseMode::Graceful)
            .await
            .is_ok()
        {
            open.insert((i, a));
        }
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while !open.is_empty() {
            tokio::select! {
                ev = endpoints.asap.next_event() => match ev {
                    Ok(Event::AssociationDown { assoc, .. }) => { open.remove(&(0, assoc)); }
                    Ok(_) => {}
                    Err(_) => break,
                },
                ev = next_enrp(&mut endpoints.enrp) => match ev {
                    Ok(Event::AssociationDown { assoc, .. }) => { open.remove(&(1, assoc)); }
                    Ok(_) => {}
                    Err(_) => break,
                },
            }
        }
    })
    .await;
}

async fn next_enrp<T: Transport>(
    enrp: &mut Option<T>,
) -> Result<Event, crate::transport::TransportError> {
    match enrp {
        Some(t) => t.next_event().await,
        None => std::future::pending().await,
    }
}

async fn recv_announce(
    a: Option<&mut AnnounceChannel>,
) -> Option<(std::net::SocketAddr, u32, Bytes)> {
    match a {
        Some(a) => a.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn endpoint<T>(e: &mut Endpoints<T>, index: usize) -> &mut T {
    match (index, e.enrp.as_mut()) {
        (1, Some(t)) => t,
        _ => &mut e.asap,
    }
}

async fn input<M: Machine, T: Transport>(
    machine: &mut M,
    endpoints: &mut Endpoints<T>,
    assocs: &mut Associations,
    index: usize,
    event: Event,
    now: Instant,
) -> Result<(), RuntimeError> {
    match event {
        Event::AssociationUp {
            assoc, peer_addrs, ..
        } => {
            let (id, queued) = assocs.up(index, assoc, peer_addrs.clone());
            machine.handle_association(
                now,
                AssociationEvent::Up {
                    assoc: id,
                    peer: peer_addrs,
                },
            );
            for out in queued {
                send_raw(endpoint(endpoints, index), assoc, out).await;
            }
        }
        Event::AssociationDown { assoc, reason } => {
            if let Some(id) = assocs.down(index, assoc) {
                machine.handle_association(
                    now,
                    AssociationEvent::Down {
                        assoc: id,
                        reason: down_reason(reason),
                    },
                );
            }
        }
        Event::Message(m) => match assocs.id_of(index, m.assoc) {
            Some(_) if !ppid_belongs(endpoints, index, m.ppid.0) => {
                // A registrar's ASAP and ENRP endpoints each carry their own
                // protocol only: ENRP on the ASAP port would let anyone who
                // can reach PEs' registrar speak as a peer (RFC 5355 §3).
                tracing::debug!(assoc = %m.assoc, ppid = m.ppid.0, "message of the other endpoint's protocol dropped");
            }
            Some(id) => machine.handle_data(now, id, m.ppid.0, m.data),
            None => tracing::debug!(assoc = %m.assoc, "message on an unknown association dropped"),
        },
    }
    Ok(())
}

/// With separate ASAP and ENRP endpoints, ENRP (PPID 12) arrives only on
/// the ENRP endpoint and nothing else does.
fn ppid_belongs<T>(endpoints: &Endpoints<T>, index: usize, ppid: u32) -> bool {
    if endpoints.enrp.is_none() {
        return true;
    }
    (ppid == rserpool_wire::PPID_ENRP) == (index == 1)
}

fn down_reason(r: crate::transport::CloseReason) -> DownReason {
    use crate::transport::CloseReason as C;
    match r {
        C::Graceful => DownReason::Graceful,
        C::Aborted => DownReason::Aborted,
        C::Lost => DownReason::Lost,
        C::HandshakeFailed => DownReason::HandshakeFailed,
    }
}

async fn send_raw<T: Transport>(t: &mut T, assoc: crate::transport::AssociationId, out: Outgoing) {
    if let Err(e) = t
        .send(assoc, 0, Ppid(out.ppid), out.unordered, out.data)
        .await
    {
        // The association's own Down event follows; the machine's timers cover the loss.
        tracing::debug!(%assoc, error = %e, "send failed");
    }
}

/// One message on its way to an association.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) ppid: u32,
    pub(crate) unordered: bool,
    pub(crate) data: Bytes,
}

impl Outgoing {
    fn new(ppid: u32, data: Bytes) -> Self {
        Self {
            ppid,
            unordered: false,
            data,
        }
    }
}

/// Sends `out` to `to`: on the association, or the one to those
/// addresses, opened if there is none (the message then waits for it).
async fn deliver<M: Machine, T: Transport>(
    now: &impl Fn() -> Instant,
    machine: &mut M,
    endpoints: &mut Endpoints<T>,
    assocs: &mut Associations,
    to: Destination,
    out: Outgoing,
) {
    let index = usize::from(out.ppid == rserpool_wire::PPID_ENRP && endpoints.enrp.is_some());
    match to {
        Destination::Association(id) => match assocs.route(id) {
            Some(Route::Up(i, a)) => send_raw(endpoint(endpoints, i), a, out).await,
            Some(Route::Pending(_)) => assocs.queue(id, out),
            None => tracing::debug!(?id, "send on a closed association dropped"),
        },
        Destination::Addresses(addrs) => match assocs.find(index, &addrs) {
            Some(Route::Up(i, a)) => send_raw(endpoint(endpoints, i), a, out).await,
            Some(Route::Pending(id)) => assocs.queue(id, out),
            None => open(now, machine, endpoints, assocs, index, addrs, Some(out)).await,
        },
    }
}

/// Opens an association on endpoint `index` to `addrs`, with `first`
/// waiting for it; a connect refused at once is reported to the machine
/// as a failed handshake.
async fn open<M: Machine, T: Transport>(
    now: &impl Fn() -> Instant,
    machine: &mut M,
    endpoints: &mut Endpoints<T>,
    assocs: &mut Associations,
    index: usize,
    addrs: Vec<std::net::SocketAddr>,
    first: Option<Outgoing>,
) {
    match endpoint(endpoints, index).connect(&addrs).await {
        Ok(a) => assocs.connecting(index, a, addrs, first),
        Err(e) => {
            tracing::debug!(error = %e, ?addrs, "connect failed");
            let id = assocs.failed();
            machine.handle_association(
                now(),
                AssociationEvent::Down {
                    assoc: id,
                    reason: DownReason::HandshakeFailed,
                },
            );
        }
    }
}

/// Carries out everything the machine has queued.
async fn flush<M: Machine, T: Transport>(
    now: &impl Fn() -> Instant,
    machine: &mut M,
    endpoints: &mut Endpoints<T>,
    assocs: &mut Associations,
    announce: Option<&AnnounceChannel>,
    events: &mpsc::UnboundedSender<M::Event>,
) -> Result<(), RuntimeError>
where
    M::Event: Debug,
{
    while let Some(t) = machine.poll_transmit() {
        match t {
            Transmit::Send { to, message } => {
                let ppid = message.ppid();
                let mut data = Vec::new();
                if let Err(e) = message.encode(&mut data) {
                    tracing::warn!(error = %e, %message, "message cannot be encoded; dropped");
                    continue;
                }
                deliver(
                    now,
                    machine,
                    endpoints,
                    assocs,
                    to,
                    Outgoing::new(ppid, Bytes::from(data)),
                )
                .await;
            }
            Transmit::Data {
                to,
                ppid,
                unordered,
                data,
            } => {
                let out = Outgoing {
                    ppid,
                    unordered,
                    data,
                };
                deliver(now, machine, endpoints, assocs, to, out).await;
            }
            Transmit::Connect { to } => {
                if assocs.find(0, &to).is_none() {
                    open(now, machine, endpoints, assocs, 0, to, None).await;
                }
            }
            Transmit::Announce { message } => {
                if let Some(a) = announce {
                    a.send(&message).await;
                }
            }
            Transmit::Abandon { to } => {
                if let Some((i, a)) = assocs.abandon(&to) {
                    if let Err(e) = endpoint(endpoints, i).close(a, CloseMode::Abort).await {
                        tracing::debug!(error = %e, "abandoning a connect failed");
                    }
                }
            }
            Transmit::Close { assoc, abort } => {
                if let Some(Route::Up(i, a)) = assocs.route(assoc) {
                    let mode = if abort {
                        CloseMode::Abort
                    } else {
                        CloseMode::Graceful
                    };
                    if let Err(e) = endpoint(endpoints, i).close(a, mode).await {
                        tracing::debug!(error = %e, "close failed");
                    }
                }
            }
        }
    }
    while let Some(e) = machine.poll_event() {
        tracing::debug!(event = ?e, "machine event");
        let _ = events.send(e);
    }
    Ok(())
}

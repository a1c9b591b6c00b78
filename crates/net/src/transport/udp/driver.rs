//! The tokio task that runs an [`Endpoint`]: it feeds it the datagrams the
//! shared sockets route here, the handle's commands and the clock, and
//! carries out what it asks (packets onto the sockets, events to the
//! handle).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::debug;

use super::endpoint::{Endpoint, PortClaims};
use super::mux::{EndpointKey, Inbound, Mux};
use super::socket::send_batch;
use super::{Command, Direction, EVENT_HIGH_WATER, Shared, UdpConfig, inc};
use crate::transport::Event;

/// Port claims on the process's shared sockets.
pub(super) struct MuxPorts {
    pub muxes: Vec<Arc<Mux>>,
    pub endpoint: EndpointKey,
}

impl PortClaims for MuxPorts {
    fn taken(&self, port: u16) -> bool {
        self.muxes.iter().any(|m| m.taken(port, self.endpoint))
    }

    fn claim(&mut self, port: u16) {
        for m in &self.muxes {
            m.claim(port, self.endpoint);
        }
    }

    fn release(&mut self, port: u16) {
        for m in &self.muxes {
            m.release(port, self.endpoint);
        }
    }
}

pub(super) struct Driver {
    pub endpoint: Endpoint,
    /// The shared sockets, one per local IP, as the endpoint indexes them.
    pub muxes: Vec<Arc<Mux>>,
    /// Datagrams for this endpoint's SCTP ports, from every mux.
    pub inbound: mpsc::Receiver<Vec<Inbound>>,
    pub commands: mpsc::Receiver<Command>,
    pub events: mpsc::UnboundedSender<Event>,
    pub shared: Arc<Shared>,
    pub udp: UdpConfig,
    /// Reused buffers for what the endpoint hands out.
    pub tx: Vec<(usize, SocketAddr, Bytes)>,
    pub out: Vec<Event>,
}

impl Driver {
    pub(super) async fn run(mut self) {
        loop {
            let next_timer = self.endpoint.poll_timeout();
            let sleep = async {
                match next_timer {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    let now = Instant::now();
                    self.endpoint.handle_command(now, cmd);
                    // Batch: take what else is queued without waiting.
                    for _ in 0..256 {
                        match self.commands.try_recv() {
                            Ok(c) => self.endpoint.handle_command(now, c),
                            Err(_) => break,
                        }
                    }
                }
                batch = self.inbound.recv(), if !self.paused() => {
                    let Some(batch) = batch else { return };
                    self.handle_batch(batch);
                    self.drain_inbound();
                }
                () = sleep => {}
                // Reading is paused: look again soon.
                () = tokio::time::sleep(Duration::from_millis(5)), if self.paused() => {}
            }
            let now = Instant::now();
            self.endpoint.handle_timeout(now);
            self.endpoint.flush(now);
            if !self.deliver().await {
                return;
            }
        }
    }

    fn paused(&self) -> bool {
        self.shared.queued_events.load(Ordering::Relaxed) >= EVENT_HIGH_WATER
    }

    fn handle_batch(&mut self, batch: Vec<Inbound>) {
        let now = Instant::now();
        for d in batch {
            match d.from {
                Some(from) => {
                    if let Some(cap) = &self.udp.capture {
                        cap(
                            Direction::Incoming,
                            from,
                            self.muxes[d.tag].local_addr(),
                            &d.data,
                        );
                    }
                    self.endpoint.handle_datagram(now, d.tag, from, d.data)
                }
                None => inc(&self.shared.counters.malformed),
            }
        }
    }

    /// Takes what is already queued, up to a batch limit.
    fn drain_inbound(&mut self) {
        for _ in 0..64 {
            if self.paused() {
                break;
            }
            match self.inbound.try_recv() {
                Ok(batch) => self.handle_batch(batch),
                Err(_) => break,
            }
        }
    }

    /// Sends the endpoint's packets and hands its events to the user;
    /// false when the user side is gone.
    async fn deliver(&mut self) -> bool {
        self.endpoint.take_transmits(&mut self.tx);
        self.transmit().await;
        self.endpoint.take_events(&mut self.out);
        let n = self.out.len();
        self.shared.queued_events.fetch_add(n, Ordering::Relaxed);
        for ev in self.out.drain(..) {
            if self.events.send(ev).is_err() {
                return false;
            }
        }
        true
    }

    /// Sends the gathered packets, per socket in order, as few system calls
    /// as possible (`sendmmsg` on Linux). A full socket buffer is waited
    /// out rather than dropping packets.
    async fn transmit(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        let q = std::mem::take(&mut self.tx);
        if let Some(cap) = &self.udp.capture {
            for (sock, to, p) in &q {
                cap(Direction::Outgoing, self.muxes[*sock].local_addr(), *to, p);
            }
        }
        if self.muxes.len() == 1 {
            self.send_all(0, &q).await;
        } else {
            for sock in 0..self.muxes.len() {
                let part: Vec<(usize, SocketAddr, Bytes)> =
                    q.iter().filter(|x| x.0 == sock).cloned().collect();
                if !part.is_empty() {
                    self.send_all(sock, &part).await;
                }
            }
        }
        let mut q = q;
        q.clear();
        self.tx = q;
    }

    async fn send_all(&self, sock: usize, pkts: &[(usize, SocketAddr, Bytes)]) {
        let s = self.muxes[sock].socket();
        let counters = &self.shared.counters;
        let mut i = 0;
        while i < pkts.len() {
            match send_batch(s, &pkts[i..]) {
                Ok(n) => {
                    counters
                        .datagrams_out
                        .fetch_add(n as u64, Ordering::Relaxed);
                    i += n.max(1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Socket buffer full: wait for room rather than drop.
                    let _ = s.writable().await;
                }
                Err(e) => {
                    // E.g. ECONNREFUSED from an earlier ICMP: SCTP's own
                    // retransmission and dead-peer logic handle the loss.
                    inc(&counters.send_errors);
                    debug!(to = %pkts[i].1, %e, "udp send error");
                    i += 1;
                }
            }
        }
    }
}

//! The announce channel: ASAP_SERVER_ANNOUNCE (and ENRP presences) as UDP
//! datagrams, to a multicast group or a configured list of addresses.

use bytes::Bytes;
use rserpool_wire::Message;
use std::net::{IpAddr, SocketAddr};
use tokio::net::UdpSocket;

/// A UDP socket that receives announces and sends them to fixed destinations.
#[derive(Debug)]
pub struct AnnounceChannel {
    socket: UdpSocket,
    destinations: Vec<SocketAddr>,
    ppid: u32,
    buf: Vec<u8>,
}

impl AnnounceChannel {
    /// Binds `listen` (joining it as a group if it is a multicast address)
    /// for datagrams of protocol `ppid` (11 for ASAP announces), and sends
    /// announces to `destinations`.
    pub async fn bind(
        listen: SocketAddr,
        destinations: Vec<SocketAddr>,
        ppid: u32,
    ) -> std::io::Result<Self> {
        let domain = socket2::Domain::for_address(listen);
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        // Several PEs and PUs on one host listen on the same announce port.
        s.set_reuse_address(true)?;
        #[cfg(unix)]
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        let bind_addr = match listen.ip() {
            IpAddr::V4(ip) if ip.is_multicast() => {
                SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), listen.port())
            }
            _ => listen,
        };
        s.bind(&bind_addr.into())?;
        if let IpAddr::V4(ip) = listen.ip() {
            if ip.is_multicast() {
                s.join_multicast_v4(&ip, &std::net::Ipv4Addr::UNSPECIFIED)?;
                s.set_multicast_loop_v4(true)?;
            }
        }
        Ok(Self {
            socket: UdpSocket::from_std(s.into())?,
            destinations,
            ppid,
            buf: vec![0; 65_536],
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub(super) async fn recv(&mut self) -> Option<(SocketAddr, u32, Bytes)> {
        match self.socket.recv_from(&mut self.buf).await {
            Ok((n, from)) => Some((from, self.ppid, Bytes::copy_from_slice(&self.buf[..n]))),
            Err(e) => {
                tracing::debug!(error = %e, "announce receive failed");
                None
            }
        }
    }

    pub(super) async fn send(&self, message: &Message) {
        let mut data = Vec::new();
        if message.encode(&mut data).is_err() {
            return;
        }
        for d in &self.destinations {
            if let Err(e) = self.socket.send_to(&data, d).await {
                tracing::debug!(error = %e, to = %d, "announce send failed");
            }
        }
    }
}

//! The announce channel: ASAP_SERVER_ANNOUNCE (and ENRP presences) as UDP
//! datagrams, to a multicast group or a configured list of addresses.

use bytes::Bytes;
use rserpool_wire::Message;
use std::net::{IpAddr, SocketAddr};
use tokio::net::UdpSocket;

/// UDP sockets that receive announces and send them to fixed
/// destinations: one per protocol (ASAP server announces, ENRP presences),
/// each socket's datagrams decoded as its protocol.
#[derive(Debug)]
pub struct AnnounceChannel {
    channels: Vec<Channel>,
}

#[derive(Debug)]
struct Channel {
    socket: UdpSocket,
    destinations: Vec<SocketAddr>,
    ppid: u32,
    buf: Vec<u8>,
}

impl AnnounceChannel {
    /// Binds `listen` (joining it as a group if it is a multicast address)
    /// for datagrams of protocol `ppid` (11 for ASAP announces, 12 for ENRP
    /// presences), and sends announces of that protocol to `destinations`.
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
            channels: vec![Channel {
                socket: UdpSocket::from_std(s.into())?,
                destinations,
                ppid,
                buf: vec![0; 65_536],
            }],
        })
    }

    /// This channel and `other` as one (e.g. ASAP announces and ENRP
    /// presences, on their own groups).
    pub fn with(mut self, other: AnnounceChannel) -> Self {
        self.channels.extend(other.channels);
        self
    }

    /// The bound address (of the first protocol's socket).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.channels[0].socket.local_addr()
    }

    pub(super) async fn recv(&mut self) -> Option<(SocketAddr, u32, Bytes)> {
        let channels = &mut self.channels;
        std::future::poll_fn(|cx| {
            for c in channels.iter_mut() {
                let mut rb = tokio::io::ReadBuf::new(&mut c.buf);
                match c.socket.poll_recv_from(cx, &mut rb) {
                    std::task::Poll::Ready(Ok(from)) => {
                        let data = Bytes::copy_from_slice(rb.filled());
                        return std::task::Poll::Ready(Some((from, c.ppid, data)));
                    }
                    std::task::Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "announce receive failed");
                        return std::task::Poll::Ready(None);
                    }
                    std::task::Poll::Pending => {}
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    pub(super) async fn send(&self, message: &Message) {
        let mut data = Vec::new();
        if message.encode(&mut data).is_err() {
            return;
        }
        for c in self.channels.iter().filter(|c| c.ppid == message.ppid()) {
            for d in &c.destinations {
                if let Err(e) = c.socket.send_to(&data, d).await {
                    tracing::debug!(error = %e, to = %d, "announce send failed");
                }
            }
        }
    }
}

//! The system-call layer of SCTP over UDP: socket set-up and batched
//! sending and receiving (`sendmmsg` / `recvmmsg` on Linux).

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::{debug, trace};

pub(super) fn make_socket(addr: SocketAddr, buffer: usize) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Keep families apart: IPv4 peers go through the IPv4 socket, so
        // association keys never see IPv4-mapped IPv6 addresses.
        s.set_only_v6(true)?;
    }
    // Failure to enlarge buffers is not fatal, only slower under bursts.
    if let Err(e) = s.set_recv_buffer_size(buffer) {
        debug!(%e, "SO_RCVBUF");
    }
    if let Err(e) = s.set_send_buffer_size(buffer) {
        debug!(%e, "SO_SNDBUF");
    }
    force_buffers(&s, buffer);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// The kernel caps SO_RCVBUF/SO_SNDBUF at `net.core.[rw]mem_max`; a process
/// with CAP_NET_ADMIN may exceed it with the FORCE variants.
#[cfg(target_os = "linux")]
fn force_buffers(s: &socket2::Socket, buffer: usize) {
    use std::os::fd::AsRawFd;
    if s.recv_buffer_size().unwrap_or(0) >= buffer {
        return;
    }
    let v: libc::c_int = buffer.min(i32::MAX as usize) as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt on a valid fd with a c_int option value of the
        // size we pass; failure (EPERM) is reported through the return value.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            trace!("forcing socket buffer size not permitted");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn force_buffers(_: &socket2::Socket, _: usize) {}

/// Receive buffers for reading several datagrams per system call.
pub(super) struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    /// (source, length, truncated) of the datagrams of the last `recv`.
    got: Vec<(Option<SocketAddr>, usize, bool)>,
}

/// Datagrams per `recvmmsg`. Each buffer holds the largest UDP payload, as
/// a peer's packets are not bounded by our MTU.
#[cfg(target_os = "linux")]
const RECV_BATCH: usize = 16;
#[cfg(not(target_os = "linux"))]
const RECV_BATCH: usize = 1;

impl RecvBatch {
    pub(super) fn new() -> Self {
        RecvBatch {
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; 65_536]).collect(),
            got: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Datagram `i` of the last `recv`: its source (None if unusable or
    /// truncated, which the caller counts as malformed) and bytes.
    pub(super) fn take(&self, i: usize) -> (Option<SocketAddr>, Bytes) {
        let (from, len, truncated) = self.got[i];
        let from = if truncated { None } else { from };
        (from, Bytes::copy_from_slice(&self.bufs[i][..len]))
    }

    /// Reads what is queued (up to the batch size) without waiting.
    #[cfg(target_os = "linux")]
    pub(super) fn recv(&mut self, s: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let n = self.bufs.len();
        // SAFETY: sockaddr_storage is plain old data; zero is valid.
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; n];
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let (addr_base, iov_base) = (addrs.as_mut_ptr(), iovs.as_mut_ptr());
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                // SAFETY: mmsghdr is plain old data; zero is valid.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: i < n = addrs.len() = iovs.len(); both vectors
                // outlive the recvmmsg call.
                unsafe {
                    m.msg_hdr.msg_name = addr_base.add(i) as *mut libc::c_void;
                    m.msg_hdr.msg_iov = iov_base.add(i);
                }
                m.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let got = s.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: `msgs` holds n initialised headers pointing into
            // `addrs`, `iovs` and `self.bufs`, all alive and not otherwise
            // borrowed during the call.
            let r = unsafe {
                libc::recvmmsg(
                    s.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as usize)
            }
        })?;
        self.got.clear();
        for (m, a) in msgs.iter().zip(&addrs).take(got) {
            let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.got
                .push((sockaddr_to_std(a), m.msg_len as usize, truncated));
        }
        Ok(got)
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn recv(&mut self, s: &UdpSocket) -> io::Result<usize> {
        let (len, from) = s.try_recv_from(&mut self.bufs[0])?;
        self.got.clear();
        self.got.push((Some(from), len, false));
        Ok(1)
    }
}

#[cfg(target_os = "linux")]
fn sockaddr_to_std(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match a.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(v6.sin6_port)))
        }
        _ => None,
    }
}

/// Sends up to 64 datagrams with one `sendmmsg`; returns how many went out.
#[cfg(target_os = "linux")]
pub(super) fn send_batch(s: &UdpSocket, pkts: &[(usize, SocketAddr, Bytes)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    const MAX: usize = 64;
    let pkts = &pkts[..pkts.len().min(MAX)];
    let addrs: Vec<socket2::SockAddr> = pkts.iter().map(|(_, a, _)| (*a).into()).collect();
    let mut iovs: Vec<libc::iovec> = pkts
        .iter()
        .map(|(_, _, p)| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let iov_base = iovs.as_mut_ptr();
    let mut msgs: Vec<libc::mmsghdr> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = a.as_ptr() as *mut libc::c_void;
            m.msg_hdr.msg_namelen = a.len();
            // SAFETY: i < iovs.len(); the pointer stays valid while `iovs`
            // lives, which outlasts the call below.
            m.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    s.try_io(tokio::io::Interest::WRITABLE, || {
        // SAFETY: `msgs` points at `msgs.len()` initialised headers whose
        // names, iovecs and buffers (`addrs`, `iovs`, `pkts`) are alive and
        // unchanged for the duration of the call.
        let n = unsafe {
            libc::sendmmsg(
                s.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Sends one datagram; returns how many went out.
#[cfg(not(target_os = "linux"))]
pub(super) fn send_batch(s: &UdpSocket, pkts: &[(usize, SocketAddr, Bytes)]) -> io::Result<usize> {
    s.try_send_to(&pkts[0].2, pkts[0].1).map(|_| 1)
}

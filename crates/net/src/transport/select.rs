//! Automatic choice between kernel SCTP and userland SCTP over UDP.
//!
//! Production Linux hosts have kernel SCTP; many build hosts, CI runners and
//! containers do not (no module, or `socket(IPPROTO_SCTP)` blocked). The
//! daemon should run on both without configuration, and say once, plainly,
//! which one it got, because the two are not interchangeable on the wire: a
//! peer must speak RFC 6951 encapsulation to reach the UDP backend.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

#[cfg(target_os = "linux")]
use super::kernel::KernelTransport;
use super::udp::{UdpConfig, UdpTransport};
use super::{AssociationId, CloseMode, EndpointConfig, Event, Ppid, Transport, TransportError};

/// A transport backend for real networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The kernel's SCTP (Linux).
    Kernel,
    /// Userland SCTP encapsulated in UDP (RFC 6951).
    Udp,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Kernel => "kernel SCTP",
            BackendKind::Udp => "SCTP over UDP (RFC 6951)",
        })
    }
}

/// Whether this host can use kernel SCTP; the error says why not.
pub fn probe_kernel_sctp() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        super::kernel::probe()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel SCTP backend is Linux only",
        ))
    }
}

/// Picks kernel SCTP when the kernel supports it, else SCTP over UDP, and
/// logs one line when it falls back.
pub fn select_backend() -> BackendKind {
    let (kind, note) = decide(probe_kernel_sctp());
    if let Some(line) = note {
        // Normal on hosts without the sctp module; the other backend is
        // interoperable (RFC 6951), so this is news, not a warning.
        tracing::info!("{line}");
    }
    kind
}

/// An endpoint of whichever backend [`select_backend`] picked.
///
/// The trait's methods are not object-safe (they return futures), so the
/// choice is an enum rather than a `Box<dyn Transport>`; the variants are
/// boxed because their sizes differ a lot and a process has few endpoints.
#[derive(Debug)]
pub enum AnyTransport {
    /// Kernel SCTP.
    #[cfg(target_os = "linux")]
    Kernel(Box<KernelTransport>),
    /// SCTP over UDP.
    Udp(Box<UdpTransport>),
}

impl AnyTransport {
    /// Binds `config` on the backend [`select_backend`] picks; `udp` is used
    /// only if that is SCTP over UDP.
    pub fn bind(config: EndpointConfig, udp: UdpConfig) -> Result<Self, TransportError> {
        match select_backend() {
            #[cfg(target_os = "linux")]
            BackendKind::Kernel => Ok(AnyTransport::Kernel(Box::new(KernelTransport::bind(
                config,
            )?))),
            _ => Ok(AnyTransport::Udp(Box::new(UdpTransport::bind(
                config, udp,
            )?))),
        }
    }

    /// Which backend this endpoint runs on.
    pub fn kind(&self) -> BackendKind {
        match self {
            #[cfg(target_os = "linux")]
            AnyTransport::Kernel(_) => BackendKind::Kernel,
            AnyTransport::Udp(_) => BackendKind::Udp,
        }
    }
}

/// Forwards a call to whichever backend the endpoint runs on.
macro_rules! dispatch {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            #[cfg(target_os = "linux")]
            AnyTransport::Kernel($t) => $e,
            AnyTransport::Udp($t) => $e,
        }
    };
}

impl Transport for AnyTransport {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        dispatch!(self, t => t.local_addrs())
    }

    fn max_message_size(&self) -> usize {
        dispatch!(self, t => t.max_message_size())
    }

    async fn connect(
        &mut self,
        peer_addrs: &[SocketAddr],
    ) -> Result<AssociationId, TransportError> {
        dispatch!(self, t => t.connect(peer_addrs).await)
    }

    async fn send(
        &mut self,
        assoc: AssociationId,
        stream: u16,
        ppid: Ppid,
        unordered: bool,
        data: Bytes,
    ) -> Result<(), TransportError> {
        dispatch!(self, t => t.send(assoc, stream, ppid, unordered, data).await)
    }

    async fn close(&mut self, assoc: AssociationId, mode: CloseMode) -> Result<(), TransportError> {
        dispatch!(self, t => t.close(assoc, mode).await)
    }

    async fn next_event(&mut self) -> Result<Event, TransportError> {
        dispatch!(self, t => t.next_event().await)
    }
}

/// The decision and the log line for a probe result; separate so that the
/// fallback can be tested on hosts that do have SCTP.
fn decide(probe: io::Result<()>) -> (BackendKind, Option<String>) {
    match probe {
        Ok(()) => (BackendKind::Kernel, None),
        Err(e) => (
            BackendKind::Udp,
            Some(format!(
                "kernel SCTP unavailable ({e}): using SCTP over UDP (RFC 6951)"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_to_udp_with_the_reason() {
        let err = io::Error::from_raw_os_error(94);
        let (kind, note) = decide(Err(err));
        assert_eq!(kind, BackendKind::Udp);
        let note = note.unwrap();
        assert!(note.starts_with("kernel SCTP unavailable ("), "{note}");
        assert!(
            note.ends_with("): using SCTP over UDP (RFC 6951)"),
            "{note}"
        );
    }

    #[test]
    fn prefers_the_kernel_silently() {
        assert_eq!(decide(Ok(())), (BackendKind::Kernel, None));
    }

    #[tokio::test]
    async fn selected_backend_carries_messages() {
        let udp = UdpConfig {
            udp_port: 0,
            ..UdpConfig::default()
        };
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut server = AnyTransport::bind(EndpointConfig::server([lo]), udp.clone()).unwrap();
        let remote_udp_port = match &server {
            AnyTransport::Udp(u) => u.local_udp_addrs()[0].port(),
            #[cfg(target_os = "linux")]
            AnyTransport::Kernel(_) => crate::transport::udp::SCTP_UDP_PORT,
        };
        let mut client = AnyTransport::bind(
            EndpointConfig::client([lo]),
            UdpConfig {
                remote_udp_port,
                ..udp
            },
        )
        .unwrap();
        assert_eq!(client.kind(), select_backend());
        let c = client.connect(&server.local_addrs()).await.unwrap();
        let wait = std::time::Duration::from_secs(10);
        let ev = tokio::time::timeout(wait, client.next_event())
            .await
            .unwrap();
        assert!(matches!(ev, Ok(Event::AssociationUp { assoc, .. }) if assoc == c));
        client
            .send(c, 0, Ppid::ASAP, false, Bytes::from_static(b"hi"))
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(wait, server.next_event())
                .await
                .unwrap()
            {
                Ok(Event::Message(m)) => {
                    assert_eq!((m.ppid, &m.data[..]), (Ppid::ASAP, &b"hi"[..]));
                    break;
                }
                Ok(Event::AssociationUp { .. }) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn probe_agrees_with_selection() {
        let expected = if probe_kernel_sctp().is_ok() {
            BackendKind::Kernel
        } else {
            BackendKind::Udp
        };
        assert_eq!(select_backend(), expected);
    }
}

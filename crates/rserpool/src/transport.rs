//! Which SCTP a node runs on, and binding its endpoints.

#[cfg(target_os = "linux")]
use rserpool_net::transport::kernel::KernelTransport;
use rserpool_net::transport::select::{
    AnyTransport, BackendKind, probe_kernel_sctp, select_backend,
};
use rserpool_net::transport::udp::{UdpConfig, UdpTransport};
use rserpool_net::transport::{EndpointConfig, TransportConfig, TransportError};

/// Which SCTP implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The kernel's SCTP (Linux); binding fails if it is unavailable.
    Kernel,
    /// Userland SCTP over UDP (RFC 6951).
    Udp,
    /// Kernel SCTP if the kernel has it, else SCTP over UDP.
    #[default]
    Auto,
}

impl Backend {
    /// The backend this choice comes to on this host.
    pub fn resolve(self) -> Result<BackendKind, String> {
        match self {
            Backend::Auto => Ok(select_backend()),
            Backend::Udp => Ok(BackendKind::Udp),
            Backend::Kernel => match probe_kernel_sctp() {
                Ok(()) => Ok(BackendKind::Kernel),
                Err(e) => Err(format!("kernel SCTP unavailable ({e})")),
            },
        }
    }
}

/// How a node's endpoint is bound: the backend, its tunables, and the
/// options of SCTP over UDP.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// The SCTP implementation.
    pub backend: Backend,
    /// SCTP tunables (heartbeats, timeouts, limits).
    pub tunables: TransportConfig,
    /// SCTP over UDP: local and remote UDP ports and socket options.
    /// `None` is zero configuration ([`UdpConfig::zero_config`]): a pool
    /// element listens on the UDP port equal to its SCTP port, a pool user
    /// on an ephemeral port, and both reach peers on 9899 or on the UDP
    /// port equal to the peer's SCTP port, whichever answers.
    pub udp: Option<UdpConfig>,
}

/// Binds one endpoint on backend `kind`; `udp` matters only to SCTP over UDP.
pub fn bind(
    kind: BackendKind,
    config: EndpointConfig,
    udp: &UdpConfig,
) -> Result<AnyTransport, TransportError> {
    match kind {
        #[cfg(target_os = "linux")]
        BackendKind::Kernel => Ok(AnyTransport::Kernel(Box::new(KernelTransport::bind(
            config,
        )?))),
        #[cfg(not(target_os = "linux"))]
        BackendKind::Kernel => Err(TransportError::Io(
            "the kernel SCTP backend is Linux only".into(),
        )),
        BackendKind::Udp => Ok(AnyTransport::Udp(Box::new(UdpTransport::bind(
            config,
            udp.clone(),
        )?))),
    }
}

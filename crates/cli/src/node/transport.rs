//! Which SCTP the node runs on, and binding its endpoints.
//!
//! The choice between kernel SCTP and SCTP over UDP is made once, at
//! start-up (`--transport`, automatic by default); endpoints are
//! `AnyTransport`s of that backend, bound by the library (`rserpool::transport`).

use super::duration::Dur;
use rserpool::Backend;
use rserpool_net::transport::TransportConfig;
use rserpool_net::transport::select::BackendKind;
use rserpool_net::transport::udp::{SCTP_UDP_PORT, UdpConfig};

/// Which SCTP implementation to use (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportChoice {
    /// The kernel's SCTP (Linux); start-up fails if it is unavailable.
    Kernel,
    /// Userland SCTP over UDP (RFC 6951).
    Udp,
    /// Kernel SCTP if the kernel has it, else SCTP over UDP.
    #[default]
    Auto,
}

/// Transport flags shared by every node (in a registrar's configuration
/// file, the `[transport]` table, with `kind` for `--transport`).
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TransportArgs {
    /// SCTP implementation [default: auto]
    #[arg(long = "transport", value_enum, value_name = "KIND")]
    #[serde(rename = "kind")]
    pub choice: Option<TransportChoice>,
    /// Local UDP port of SCTP over UDP [default: 9899 for a registrar (its
    /// SCTP ports if another process has 9899), for a PE the UDP port equal
    /// to its SCTP port, for a pool user an ephemeral port]. Without this
    /// flag and --remote-udp-port, new associations try both 9899 and the
    /// UDP port equal to the peer's SCTP port.
    #[arg(long, value_name = "PORT")]
    pub udp_port: Option<u16>,
    /// UDP port that outgoing SCTP-over-UDP associations are sent to
    /// [default: 9899].
    #[arg(long, value_name = "PORT")]
    pub remote_udp_port: Option<u16>,
    /// SCTP HEARTBEAT interval on idle associations [default: 1s].
    #[arg(long, value_name = "DUR")]
    pub sctp_heartbeat_interval: Option<Dur>,
    /// Silence after which SCTP declares a peer lost [default: 5s].
    #[arg(long, value_name = "DUR")]
    pub sctp_dead_peer_timeout: Option<Dur>,
    /// Longest SCTP association set-up [default: 5s].
    #[arg(long, value_name = "DUR")]
    pub sctp_handshake_timeout: Option<Dur>,
    /// Most associations peers at one IP address may open here (SCTP over
    /// UDP) [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_associations_per_source: Option<usize>,
    /// Most bytes queued for sending on one association before messages
    /// are dropped (SCTP over UDP) [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub max_queued_bytes: Option<usize>,
}

impl TransportArgs {
    /// Flags given here win over `file`.
    pub fn overlay(self, file: Self) -> Self {
        Self {
            choice: self.choice.or(file.choice),
            udp_port: self.udp_port.or(file.udp_port),
            remote_udp_port: self.remote_udp_port.or(file.remote_udp_port),
            sctp_heartbeat_interval: self
                .sctp_heartbeat_interval
                .or(file.sctp_heartbeat_interval),
            sctp_dead_peer_timeout: self.sctp_dead_peer_timeout.or(file.sctp_dead_peer_timeout),
            sctp_handshake_timeout: self.sctp_handshake_timeout.or(file.sctp_handshake_timeout),
            max_associations_per_source: self
                .max_associations_per_source
                .or(file.max_associations_per_source),
            max_queued_bytes: self.max_queued_bytes.or(file.max_queued_bytes),
        }
    }

    /// The backend to run on: the one asked for, or the automatic choice
    /// (which logs one line when it falls back to UDP).
    pub fn backend(&self) -> Result<BackendKind, String> {
        match self.choice.unwrap_or_default() {
            TransportChoice::Auto => Backend::Auto.resolve(),
            TransportChoice::Udp => Backend::Udp.resolve(),
            TransportChoice::Kernel => Backend::Kernel
                .resolve()
                .map_err(|e| format!("{e}; use --transport udp or auto")),
        }
    }

    /// The SCTP tunables.
    pub fn tunables(&self) -> Result<TransportConfig, String> {
        let mut t = TransportConfig::default();
        if let Some(d) = self.sctp_heartbeat_interval {
            t.heartbeat_interval = d.0;
        }
        if let Some(d) = self.sctp_dead_peer_timeout {
            t.dead_peer_timeout = d.0;
        }
        if let Some(d) = self.sctp_handshake_timeout {
            t.handshake_timeout = d.0;
        }
        if let Some(n) = self.max_associations_per_source {
            t.max_associations_per_source = n;
        }
        if let Some(n) = self.max_queued_bytes {
            t.max_queued_bytes = n;
        }
        for (name, d) in [
            ("sctp-heartbeat-interval", t.heartbeat_interval),
            ("sctp-dead-peer-timeout", t.dead_peer_timeout),
            ("sctp-handshake-timeout", t.handshake_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        t.validate().map_err(|e| e.to_string())?;
        Ok(t)
    }

    /// The SCTP-over-UDP options; `default_udp_port` applies without `--udp-port`.
    pub fn udp(&self, default_udp_port: u16) -> UdpConfig {
        UdpConfig {
            udp_port: self.udp_port.unwrap_or(default_udp_port),
            remote_udp_port: self.remote_udp_port.unwrap_or(SCTP_UDP_PORT),
            zero_config: self.udp_port.is_none() && self.remote_udp_port.is_none(),
            ..UdpConfig::default()
        }
    }
}

/// Where a PE or PU looks for registrars and binds, from its flags.
pub struct NodePlace<'a> {
    /// The registrars to ask, in order.
    pub registrars: &'a [Vec<std::net::SocketAddr>],
    /// The announce channel to listen to.
    pub announce: Option<std::net::SocketAddr>,
    /// Local addresses of the endpoint.
    pub local: &'a [std::net::SocketAddr],
    /// Seed of the node's random choices.
    pub seed: u64,
}

/// The library's options for a PE or PU on backend `kind` with these
/// transport flags; `default_udp_port` applies without `--udp-port`.
pub fn options(
    args: &TransportArgs,
    kind: BackendKind,
    default_udp_port: u16,
    place: NodePlace<'_>,
) -> Result<rserpool::Options, String> {
    Ok(rserpool::Options {
        registrars: place.registrars.to_vec(),
        announce: place.announce,
        local: place.local.to_vec(),
        transport: rserpool::TransportOptions {
            backend: match kind {
                BackendKind::Kernel => Backend::Kernel,
                BackendKind::Udp => Backend::Udp,
            },
            tunables: args.tunables()?,
            udp: Some(args.udp(default_udp_port)),
        },
        seed: Some(place.seed),
    })
}

pub use rserpool::transport::bind;

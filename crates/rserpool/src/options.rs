//! What pool elements and pool users share: where they find registrars
//! and how they bind their endpoint.

use crate::error::Error;
use crate::transport::{TransportOptions, bind};
use rserpool_core::HuntConfig;
use rserpool_net::runtime::AnnounceChannel;
use rserpool_net::transport::select::{AnyTransport, BackendKind};
use rserpool_net::transport::udp::UdpConfig;
use rserpool_net::transport::{EndpointConfig, Transport};
use rserpool_wire::PoolHandle;
use std::net::SocketAddr;

/// Where a node finds registrars and how it binds its endpoint.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Registrars to ask, in order, each one SCTP endpoint (all its
    /// addresses, with the ASAP port, 3863 by default).
    pub registrars: Vec<Vec<SocketAddr>>,
    /// Listen for ASAP_SERVER_ANNOUNCEs on this multicast group (or
    /// address) to learn registrars.
    pub announce: Option<SocketAddr>,
    /// Local addresses of the endpoint (IP and SCTP port; port 0 picks one).
    /// Empty: any address, an ephemeral port.
    pub local: Vec<SocketAddr>,
    /// The SCTP underneath.
    pub transport: TransportOptions,
    /// Seed of the node's random choices (PE identifier, selection
    /// policies); `None` draws one.
    pub seed: Option<u64>,
}

impl Options {
    /// Puts the registrar list into `hunt` (whose timers stay as they are).
    pub(crate) fn hunt(&self, hunt: &mut HuntConfig) -> Result<(), Error> {
        if self.registrars.is_empty() && self.announce.is_none() {
            return Err(Error::Config(
                "give at least one registrar, or an announce address to learn them from".into(),
            ));
        }
        hunt.registrars = self.registrars.clone();
        Ok(())
    }

    /// Binds the endpoint (listening or not) and joins the announce channel.
    pub(crate) async fn bind(
        &self,
        listen: bool,
    ) -> Result<(AnyTransport, Option<AnnounceChannel>, BackendKind), Error> {
        let kind = self.transport.backend.resolve().map_err(Error::Config)?;
        self.transport
            .tunables
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        let config = EndpointConfig {
            local_addrs: self.local.clone(),
            listen,
            transport: self.transport.tunables.clone(),
        };
        let udp = self.transport.udp.clone().unwrap_or(UdpConfig {
            udp_port: 0,
            zero_config: true,
            ..UdpConfig::default()
        });
        let endpoint = bind(kind, config, &udp).map_err(Error::Bind)?;
        let announce = match self.announce {
            Some(addr) => Some(
                AnnounceChannel::bind(addr, Vec::new(), rserpool_wire::PPID_ASAP)
                    .await
                    .map_err(|e| Error::Announce {
                        addr,
                        reason: e.to_string(),
                    })?,
            ),
            None => None,
        };
        tracing::debug!(local = ?endpoint.local_addrs(), %kind, "endpoint bound");
        Ok((endpoint, announce, kind))
    }
}

/// Parses a pool handle given as text.
pub(crate) fn pool_handle(name: &str) -> Result<PoolHandle, Error> {
    PoolHandle::try_from(name).map_err(|e| Error::InvalidPoolHandle {
        handle: name.to_string(),
        reason: e.to_string(),
    })
}

/// The seed to use.
pub(crate) fn seed(options: &Options) -> u64 {
    options.seed.unwrap_or_else(rand::random)
}

/// The setters every builder that holds an [`Options`] in `self.options`
/// offers, written once.
macro_rules! option_setters {
    () => {
        /// Adds a registrar (its ASAP endpoint, port 3863 by default).
        pub fn registrar(mut self, addr: std::net::SocketAddr) -> Self {
            self.options.registrars.push(vec![addr]);
            self
        }

        /// Learns registrars from ASAP_SERVER_ANNOUNCEs on this group or address.
        pub fn announce(mut self, addr: std::net::SocketAddr) -> Self {
            self.options.announce = Some(addr);
            self
        }

        /// Adds a local address of the endpoint (port 0 picks one).
        pub fn local(mut self, addr: std::net::SocketAddr) -> Self {
            self.options.local.push(addr);
            self
        }

        /// The SCTP underneath.
        pub fn transport(mut self, transport: crate::TransportOptions) -> Self {
            self.options.transport = transport;
            self
        }

        /// Seed of the node's random choices.
        pub fn seed(mut self, seed: u64) -> Self {
            self.options.seed = Some(seed);
            self
        }

        /// Replaces the registrar and binding options wholesale.
        pub fn options(mut self, options: crate::Options) -> Self {
            self.options = options;
            self
        }
    };
}
pub(crate) use option_setters;

//! Who may speak ENRP to this registrar (RFC 5355 §3: the registrars of an
//! operational scope trust each other, and nobody else may change the
//! handlespace through ENRP).
//!
//! The check is by the association's peer addresses, so that mutual
//! authentication (TLS with pre-shared keys, RFC 5353 §6) can later replace
//! or strengthen it at the same place: [`Admission::admits`].

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`, or one
/// address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    base: IpAddr,
    prefix: u8,
}

impl AddrRange {
    /// The range of `prefix` leading bits of `base`.
    pub fn new(base: IpAddr, prefix: u8) -> Option<Self> {
        let max = if base.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { base, prefix })
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.base, ip) {
            (IpAddr::V4(b), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(b) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(b), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(b) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// The /24 (IPv4) or /64 (IPv6) around `ip`: "the same network" for the
    /// default scope rule.
    pub fn network_of(ip: IpAddr) -> Self {
        let prefix = if ip.is_ipv4() { 24 } else { 64 };
        Self { base: ip, prefix }
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for AddrRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let base: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an address range (ADDR or ADDR/PREFIX)"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0..={max}"))?,
        };
        Ok(Self { base, prefix })
    }
}

/// Which registrars may become peers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PeerScope {
    /// The configured peers, registrars on this registrar's own ENRP
    /// addresses (other registrars on this host), and registrars an
    /// admitted peer introduces (LIST_RESPONSE). Nobody else: a neighbour on
    /// the same network is a stranger until configured or introduced.
    #[default]
    Configured,
    /// These ranges, the configured peers and the registrars an admitted
    /// peer introduces.
    Ranges(Vec<AddrRange>),
    /// Anyone (RFC 5353 without RFC 5355's trust model): only for closed
    /// test networks.
    Any,
}

/// Most addresses remembered as introduced by admitted peers.
const MAX_INTRODUCED: usize = 4096;

/// The admission state: the scope rule and the addresses it admits.
#[derive(Debug)]
pub(crate) struct Admission {
    any: bool,
    ranges: Vec<AddrRange>,
    introduced: HashSet<IpAddr>,
}

impl Admission {
    pub(crate) fn new(
        scope: &PeerScope,
        own: &[SocketAddr],
        configured: &[Vec<SocketAddr>],
    ) -> Self {
        let configured_ips = configured.iter().flatten().map(|a| a.ip());
        let mut ranges: Vec<AddrRange> = configured_ips
            .clone()
            .filter_map(|ip| AddrRange::new(ip, if ip.is_ipv4() { 32 } else { 128 }))
            .collect();
        let any = match scope {
            PeerScope::Any => true,
            PeerScope::Ranges(r) => {
                ranges.extend(r.iter().copied());
                false
            }
            PeerScope::Configured => {
                let own = own
                    .iter()
                    .map(|a| a.ip())
                    .filter(|ip| !ip.is_unspecified())
                    .filter_map(|ip| AddrRange::new(ip, if ip.is_ipv4() { 32 } else { 128 }));
                ranges.extend(own);
                false
            }
        };
        Self {
            any,
            ranges,
            introduced: HashSet::new(),
        }
    }

    /// Whether an association with these peer addresses may speak ENRP.
    pub(crate) fn admits(&self, addrs: &[SocketAddr]) -> bool {
        self.any
            || addrs.iter().any(|a| {
                self.introduced.contains(&a.ip()) || self.ranges.iter().any(|r| r.contains(a.ip()))
            })
    }

    /// An admitted peer vouches for these addresses (its peer list).
    pub(crate) fn introduce(&mut self, addrs: &[SocketAddr]) {
        for a in addrs {
            if self.introduced.len() >= MAX_INTRODUCED {
                return;
            }
            self.introduced.insert(a.ip());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: AddrRange = "10.1.0.0/16".parse().unwrap();
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: AddrRange = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let all: AddrRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        let v6: AddrRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<AddrRange>().is_err());
        assert!("ten/8".parse::<AddrRange>().is_err());
        assert_eq!(r.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn default_scope_admits_own_host_and_configured_peers_only() {
        let a = Admission::new(
            &PeerScope::Configured,
            &[sa("10.0.0.1:9901")],
            &[vec![sa("192.0.2.50:9901")]],
        );
        assert!(
            a.admits(&[sa("10.0.0.1:20000")]),
            "another registrar on this host"
        );
        assert!(a.admits(&[sa("192.0.2.50:9901")]));
        assert!(
            !a.admits(&[sa("192.0.2.51:9901")]),
            "a neighbour of the peer"
        );
        assert!(!a.admits(&[sa("10.0.0.77:9901")]), "a neighbour");
        assert!(!a.admits(&[sa("127.0.0.9:9901")]));
    }

    #[test]
    fn introduced_addresses_are_admitted() {
        let mut a = Admission::new(&PeerScope::Ranges(vec![]), &[], &[]);
        assert!(!a.admits(&[sa("203.0.113.5:9901")]));
        a.introduce(&[sa("203.0.113.5:9901")]);
        assert!(a.admits(&[sa("203.0.113.5:9901")]));
        assert!(Admission::new(&PeerScope::Any, &[], &[]).admits(&[sa("198.51.100.1:1")]));
    }
}

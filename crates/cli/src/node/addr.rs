//! SCTP endpoints on the command line: `IP`, `IP:PORT`, or several
//! addresses of one multi-homed endpoint separated by commas
//! (`10.0.0.1,10.0.1.1:3863`); IPv6 with a port in brackets (`[::1]:3863`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// One SCTP endpoint: its addresses, each with a port if one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec(Vec<(IpAddr, Option<u16>)>);

impl EndpointSpec {
    /// The addresses, those without a port getting the last port given in
    /// the list, else `default_port`.
    pub fn resolve(&self, default_port: u16) -> Vec<SocketAddr> {
        let port = self
            .0
            .iter()
            .rev()
            .find_map(|(_, p)| *p)
            .unwrap_or(default_port);
        self.0
            .iter()
            .map(|(ip, p)| SocketAddr::new(*ip, p.unwrap_or(port)))
            .collect()
    }
}

impl FromStr for EndpointSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            if let Ok(a) = part.parse::<SocketAddr>() {
                if a.port() == 0 {
                    return Err(format!("port 0 in `{part}`: give the endpoint's port"));
                }
                out.push((a.ip(), Some(a.port())));
            } else if let Ok(ip) = part.parse::<IpAddr>() {
                out.push((ip, None));
            } else {
                return Err(format!(
                    "`{part}` is not an IP address or IP:PORT (IPv6 with a port: [::1]:3863)"
                ));
            }
        }
        if let Some((ip, _)) = out
            .iter()
            .find(|(ip, _)| ip.is_unspecified() || ip.is_multicast())
        {
            return Err(format!("{ip} cannot be a peer's address"));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (ip, port)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match port {
                Some(p) => write!(f, "{}", SocketAddr::new(*ip, *p))?,
                None => write!(f, "{ip}")?,
            }
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for EndpointSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A local address to bind: an IP, optionally with a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    /// The IP.
    pub ip: IpAddr,
    /// The port, if given.
    pub port: Option<u16>,
}

impl FromStr for LocalAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self {
                ip: a.ip(),
                port: Some(a.port()),
            });
        }
        s.parse::<IpAddr>()
            .map(|ip| Self { ip, port: None })
            .map_err(|_| format!("`{s}` is not an IP address or IP:PORT"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_default_and_spread_over_the_list() {
        let e: EndpointSpec = "10.0.0.1".parse().unwrap();
        assert_eq!(e.resolve(3863), vec![sa("10.0.0.1:3863")]);
        let e: EndpointSpec = "10.0.0.1,10.0.1.1:4000".parse().unwrap();
        assert_eq!(
            e.resolve(3863),
            vec![sa("10.0.0.1:4000"), sa("10.0.1.1:4000")]
        );
        let e: EndpointSpec = "[::1]:9901, ::2".parse().unwrap();
        assert_eq!(e.resolve(1), vec![sa("[::1]:9901"), sa("[::2]:9901")]);
        assert_eq!(e.to_string(), "[::1]:9901,::2");
    }

    #[test]
    fn bad_endpoints_say_why() {
        assert!(
            "x".parse::<EndpointSpec>()
                .unwrap_err()
                .contains("not an IP")
        );
        assert!(
            "0.0.0.0"
                .parse::<EndpointSpec>()
                .unwrap_err()
                .contains("cannot be")
        );
        assert!(
            "10.0.0.1:0"
                .parse::<EndpointSpec>()
                .unwrap_err()
                .contains("port 0")
        );
        assert!("10.0.0.1:99999".parse::<EndpointSpec>().is_err());
    }

    #[test]
    fn local_addresses() {
        let l: LocalAddr = "127.0.0.3".parse().unwrap();
        assert_eq!((l.ip, l.port), (sa("127.0.0.3:1").ip(), None));
        let l: LocalAddr = "127.0.0.3:5000".parse().unwrap();
        assert_eq!(l.port, Some(5000));
        assert!("nope".parse::<LocalAddr>().is_err());
    }
}

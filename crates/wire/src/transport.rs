//! Address and transport parameters (RFC 5354 §3.1-3.7 and §3.16).

use crate::IpAddrs;
use crate::codec::{Context, RawParam, Reader, Writer};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::limits::MAX_ADDRESSES;
use crate::param::ParamType;
use bytes::Bytes;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a transport endpoint also carries the ASAP control channel (SCTP only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportUse {
    /// User data only (0x0000).
    DataOnly,
    /// User data and the ASAP control channel (0x0001).
    DataPlusControl,
}

impl TransportUse {
    fn to_u16(self) -> u16 {
        match self {
            Self::DataOnly => 0,
            Self::DataPlusControl => 1,
        }
    }
}

/// The transport protocol of a transport parameter, with its protocol-specific field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SCTP (0x0004): may carry several addresses and the control channel.
    Sctp(TransportUse),
    /// TCP (0x0005): data only, one address.
    Tcp,
    /// UDP (0x0006): data only, one address.
    Udp,
    /// UDP-Lite (0x0007): data only, one address.
    UdpLite,
    /// DCCP (0x0003) with its service code: data only, one address.
    Dccp {
        /// The DCCP service code.
        service_code: u32,
    },
}

impl Protocol {
    fn param_type(self) -> ParamType {
        match self {
            Self::Sctp(_) => ParamType::SctpTransport,
            Self::Tcp => ParamType::TcpTransport,
            Self::Udp => ParamType::UdpTransport,
            Self::UdpLite => ParamType::UdpLiteTransport,
            Self::Dccp { .. } => ParamType::DccpTransport,
        }
    }

    /// The protocol's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sctp(_) => "SCTP",
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::UdpLite => "UDP-Lite",
            Self::Dccp { .. } => "DCCP",
        }
    }
}

/// A transport address parameter: protocol, port and IP addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransportAddress {
    /// The protocol and its specific field.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// The addresses: one or more for SCTP, exactly one otherwise.
    pub addresses: IpAddrs,
}

impl TransportAddress {
    /// An SCTP transport.
    pub fn sctp(port: u16, transport_use: TransportUse, addresses: impl Into<IpAddrs>) -> Self {
        Self {
            protocol: Protocol::Sctp(transport_use),
            port,
            addresses: addresses.into(),
        }
    }

    /// The parameter type code this transport is encoded with.
    pub fn param_type(&self) -> ParamType {
        self.protocol.param_type()
    }

    pub(crate) fn is_transport_type(t: u16) -> bool {
        (0x0003..=0x0007).contains(&t)
    }

    pub(crate) fn decode(p: RawParam<'_>, ctx: &mut Context) -> Result<Self, DecodeError> {
        let mut v = p.value;
        let port = v.u16()?;
        let use_at = v.offset();
        let second = v.u16()?;
        let protocol = match ParamType::from_u16(p.param_type) {
            Some(ParamType::SctpTransport) => Protocol::Sctp(match second {
                0 => TransportUse::DataOnly,
                1 => TransportUse::DataPlusControl,
                other => {
                    return Err(DecodeError::new(
                        use_at,
                        DecodeErrorKind::InvalidValue {
                            what: "transport use",
                            found: other.into(),
                        },
                    ));
                }
            }),
            // RFC 5354 calls the TCP word reserved; the reference implementation
            // and Wireshark read it as a transport use. Ignoring it accepts both.
            Some(ParamType::TcpTransport) => Protocol::Tcp,
            Some(ParamType::UdpTransport) => Protocol::Udp,
            Some(ParamType::UdpLiteTransport) => Protocol::UdpLite,
            Some(ParamType::DccpTransport) => Protocol::Dccp {
                service_code: v.u32()?,
            },
            _ => {
                return Err(DecodeError::new(
                    p.offset,
                    DecodeErrorKind::UnexpectedParameter {
                        expected: "a transport parameter",
                        found: p.param_type,
                    },
                ));
            }
        };
        let mut addresses = Vec::new();
        ctx.nested(p.offset, |ctx| {
            while let Some(a) = v.next_param(ctx)? {
                if addresses.len() == MAX_ADDRESSES {
                    return Err(DecodeError::new(
                        a.offset,
                        DecodeErrorKind::TooMany {
                            what: "addresses",
                            limit: MAX_ADDRESSES,
                        },
                    ));
                }
                addresses.push(decode_address(a)?);
            }
            Ok(())
        })?;
        let (min, max) = match protocol {
            Protocol::Sctp(_) => (1, MAX_ADDRESSES),
            _ => (1, 1),
        };
        if addresses.len() < min || addresses.len() > max {
            return Err(DecodeError::new(
                p.offset,
                DecodeErrorKind::InvalidValue {
                    what: "number of addresses in transport",
                    found: addresses.len() as u64,
                },
            ));
        }
        Ok(Self {
            protocol,
            port,
            addresses: addresses.into(),
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        let n = self.addresses.len();
        let ok = match self.protocol {
            Protocol::Sctp(_) => (1..=MAX_ADDRESSES).contains(&n),
            _ => n == 1,
        };
        if !ok {
            return Err(EncodeError::Invalid {
                what: "transport parameter",
                why: "SCTP needs 1..=MAX_ADDRESSES addresses, other transports exactly one",
            });
        }
        w.tlv(self.protocol.param_type() as u16, |w| {
            w.u16(self.port);
            match self.protocol {
                Protocol::Sctp(u) => w.u16(u.to_u16()),
                Protocol::Dccp { service_code } => {
                    w.u16(0);
                    w.u32(service_code);
                }
                _ => w.u16(0),
            }
            for a in &self.addresses {
                encode_address(*a, w)?;
            }
            Ok(())
        })
    }
}

impl fmt::Display for TransportAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.protocol.name())?;
        for (i, a) in self.addresses.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match a {
                IpAddr::V4(a) => write!(f, "{a}")?,
                IpAddr::V6(a) => write!(f, "[{a}]")?,
            }
        }
        write!(f, ":{}", self.port)?;
        if let Protocol::Sctp(TransportUse::DataPlusControl) = self.protocol {
            f.write_str("+ctrl")?;
        }
        Ok(())
    }
}

/// A pool element's user transport: an address parameter or an opaque one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserTransport {
    /// SCTP, TCP, UDP, UDP-Lite or DCCP with addresses.
    Address(TransportAddress),
    /// Opaque Transport (RFC 5354 §3.16): bytes only the application understands.
    Opaque(Bytes),
}

impl UserTransport {
    pub(crate) fn decode(p: RawParam<'_>, ctx: &mut Context) -> Result<Self, DecodeError> {
        if p.param_type == ParamType::OpaqueTransport as u16 {
            let mut v = p.value;
            Ok(Self::Opaque(v.rest()))
        } else {
            TransportAddress::decode(p, ctx).map(Self::Address)
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::Address(t) => t.encode(w),
            Self::Opaque(b) => w.tlv(ParamType::OpaqueTransport as u16, |w| {
                w.bytes(b);
                Ok(())
            }),
        }
    }
}

impl fmt::Display for UserTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(t) => t.fmt(f),
            Self::Opaque(b) => write!(f, "opaque[{}]", b.len()),
        }
    }
}

fn decode_address(p: RawParam<'_>) -> Result<IpAddr, DecodeError> {
    let mut v = p.value;
    let addr = match ParamType::from_u16(p.param_type) {
        Some(ParamType::Ipv4Address) if v.remaining() == 4 => {
            IpAddr::V4(Ipv4Addr::from(v.array::<4>()?))
        }
        Some(ParamType::Ipv6Address) if v.remaining() == 16 => {
            IpAddr::V6(Ipv6Addr::from(v.array::<16>()?))
        }
        Some(ParamType::Ipv4Address) | Some(ParamType::Ipv6Address) => {
            let want = if p.param_type == 1 { 8 } else { 20 };
            return Err(DecodeError::new(
                p.offset + 2,
                DecodeErrorKind::BadLength {
                    what: "address",
                    found: v.remaining() + 4,
                    min: want,
                    max: want,
                },
            ));
        }
        _ => {
            return Err(DecodeError::new(
                p.offset,
                DecodeErrorKind::UnexpectedParameter {
                    expected: "IPv4 or IPv6 Address",
                    found: p.param_type,
                },
            ));
        }
    };
    Ok(addr)
}

fn encode_address(a: IpAddr, w: &mut Writer) -> Result<(), EncodeError> {
    match a {
        IpAddr::V4(a) => w.tlv(ParamType::Ipv4Address as u16, |w| {
            w.bytes(&a.octets());
            Ok(())
        }),
        IpAddr::V6(a) => w.tlv(ParamType::Ipv6Address as u16, |w| {
            w.bytes(&a.octets());
            Ok(())
        }),
    }
}

/// Reads the mandatory user transport parameter of a Pool Element.
pub(crate) fn read_user_transport(
    r: &mut Reader<'_>,
    ctx: &mut Context,
) -> Result<UserTransport, DecodeError> {
    let is_user_transport =
        |t| TransportAddress::is_transport_type(t) || t == ParamType::OpaqueTransport as u16;
    if let Some(p) = r.next_if(ctx, is_user_transport)? {
        return UserTransport::decode(p, ctx);
    }
    Err(match r.peek(ctx)? {
        Some(found) => r.error(DecodeErrorKind::UnexpectedParameter {
            expected: "user transport",
            found,
        }),
        None => r.error(DecodeErrorKind::MissingParameter {
            expected: "user transport",
        }),
    })
}

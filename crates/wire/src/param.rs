//! Parameter type codes (RFC 5354 §3 and the Handle Resolution Option draft).

/// The parameter types this crate understands, with their 16-bit codes.
///
/// Types are matched on all 16 bits: the reference implementation masks off
/// the two action bits before matching, which would accept `0x8009` as a Pool
/// Handle; RFC 5354 gives those bits only a meaning for *unknown* types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ParamType {
    /// IPv4 Address (0x0001).
    Ipv4Address = 0x0001,
    /// IPv6 Address (0x0002).
    Ipv6Address = 0x0002,
    /// DCCP Transport (0x0003).
    DccpTransport = 0x0003,
    /// SCTP Transport (0x0004).
    SctpTransport = 0x0004,
    /// TCP Transport (0x0005).
    TcpTransport = 0x0005,
    /// UDP Transport (0x0006).
    UdpTransport = 0x0006,
    /// UDP-Lite Transport (0x0007).
    UdpLiteTransport = 0x0007,
    /// Pool Member Selection Policy (0x0008).
    Policy = 0x0008,
    /// Pool Handle (0x0009).
    PoolHandle = 0x0009,
    /// Pool Element (0x000A).
    PoolElement = 0x000A,
    /// Server Information (0x000B).
    ServerInformation = 0x000B,
    /// Operation Error (0x000C).
    OperationError = 0x000C,
    /// Cookie (0x000D).
    Cookie = 0x000D,
    /// PE Identifier (0x000E).
    PeIdentifier = 0x000E,
    /// PE Checksum (0x000F).
    PeChecksum = 0x000F,
    /// Opaque Transport (0x0010).
    OpaqueTransport = 0x0010,
    /// Handle Resolution Option (0x803F, draft-dreibholz-rserpool-asap-hropt).
    HandleResolutionOption = 0x803F,
}

impl ParamType {
    /// The known type with this code, if any.
    pub fn from_u16(v: u16) -> Option<Self> {
        use ParamType::*;
        Some(match v {
            0x0001 => Ipv4Address,
            0x0002 => Ipv6Address,
            0x0003 => DccpTransport,
            0x0004 => SctpTransport,
            0x0005 => TcpTransport,
            0x0006 => UdpTransport,
            0x0007 => UdpLiteTransport,
            0x0008 => Policy,
            0x0009 => PoolHandle,
            0x000A => PoolElement,
            0x000B => ServerInformation,
            0x000C => OperationError,
            0x000D => Cookie,
            0x000E => PeIdentifier,
            0x000F => PeChecksum,
            0x0010 => OpaqueTransport,
            0x803F => HandleResolutionOption,
            _ => return None,
        })
    }

    /// The parameter's name as the RFC spells it.
    pub fn name(self) -> &'static str {
        use ParamType::*;
        match self {
            Ipv4Address => "IPv4 Address",
            Ipv6Address => "IPv6 Address",
            DccpTransport => "DCCP Transport",
            SctpTransport => "SCTP Transport",
            TcpTransport => "TCP Transport",
            UdpTransport => "UDP Transport",
            UdpLiteTransport => "UDP-Lite Transport",
            Policy => "Pool Member Selection Policy",
            PoolHandle => "Pool Handle",
            PoolElement => "Pool Element",
            ServerInformation => "Server Information",
            OperationError => "Operation Error",
            Cookie => "Cookie",
            PeIdentifier => "PE Identifier",
            PeChecksum => "PE Checksum",
            OpaqueTransport => "Opaque Transport",
            HandleResolutionOption => "Handle Resolution Option",
        }
    }

    /// A readable description of any 16-bit code, known or not.
    pub fn describe(v: u16) -> String {
        match Self::from_u16(v) {
            Some(t) => format!("{} (0x{v:04x})", t.name()),
            None => format!("0x{v:04x}"),
        }
    }
}

//! From a captured frame to the SCTP packet inside it: link layer (Ethernet,
//! Linux cooked v1 and v2, raw IP, BSD loopback), IPv4 or IPv6, and SCTP
//! either directly on IP or encapsulated in UDP (RFC 6951).

use super::sctp::{IP_PROTO_SCTP, UDP_ENCAPSULATION_PORT};
use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use std::fmt;
use std::net::IpAddr;

/// The link layers this reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II, with VLAN tags.
    Ethernet,
    /// Linux cooked capture v1 (`any` interface, older libpcap).
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    /// Raw IPv4 or IPv6 with no link header.
    RawIp,
    /// BSD loopback: a 4-byte address family, then IP.
    Loopback,
}

impl LinkType {
    /// The link type of a capture's data link code, if supported.
    pub fn from_datalink(dl: DataLink) -> Option<Self> {
        Some(match dl {
            DataLink::ETHERNET => Self::Ethernet,
            DataLink::LINUX_SLL => Self::LinuxSll,
            DataLink::LINUX_SLL2 => Self::LinuxSll2,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Self::RawIp,
            DataLink::NULL | DataLink::LOOP => Self::Loopback,
            _ => return None,
        })
    }
}

/// What a frame holds, as far as this tool cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An SCTP packet.
    Sctp {
        /// Source IP address.
        src: IpAddr,
        /// Destination IP address.
        dst: IpAddr,
        /// Whether it came in UDP (RFC 6951).
        udp_encapsulated: bool,
        /// The SCTP packet, from its common header.
        packet: &'a [u8],
    },
    /// A fragment of an IP datagram (not reassembled).
    IpFragment,
    /// Anything else (other protocols, ARP, non-IP).
    Other,
}

/// A frame that could not be dissected down to its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const SLL2_HEADER_LEN: usize = 20;
const LOOPBACK_HEADER_LEN: usize = 4;

/// Dissects one frame.
pub fn dissect(link: LinkType, frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    let sliced = match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(frame),
        LinkType::LinuxSll => SlicedPacket::from_linux_sll(frame),
        LinkType::LinuxSll2 => {
            if frame.len() < SLL2_HEADER_LEN {
                return Err(FrameError(format!(
                    "Linux cooked v2 header needs {SLL2_HEADER_LEN} bytes, frame has {}",
                    frame.len()
                )));
            }
            let protocol = u16::from_be_bytes([frame[0], frame[1]]);
            SlicedPacket::from_ether_type(EtherType(protocol), &frame[SLL2_HEADER_LEN..])
        }
        LinkType::RawIp => SlicedPacket::from_ip(frame),
        LinkType::Loopback => match frame.get(LOOPBACK_HEADER_LEN..) {
            // The family word's byte order depends on the capturing host; the IP
            // version nibble says the same more reliably.
            Some(ip) if !ip.is_empty() => SlicedPacket::from_ip(ip),
            _ => return Err(FrameError("loopback frame without IP packet".into())),
        },
    }
    .map_err(|e| FrameError(e.to_string()))?;
    let (src, dst) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
        ),
        _ => return Ok(Frame::Other),
    };
    let Some(payload) = sliced.ip_payload() else {
        return Ok(Frame::Other);
    };
    if payload.fragmented {
        return Ok(Frame::IpFragment);
    }
    if payload.ip_number.0 == IP_PROTO_SCTP {
        return Ok(Frame::Sctp {
            src,
            dst,
            udp_encapsulated: false,
            packet: payload.payload,
        });
    }
    if let Some(TransportSlice::Udp(udp)) = &sliced.transport {
        if udp.source_port() == UDP_ENCAPSULATION_PORT
            || udp.destination_port() == UDP_ENCAPSULATION_PORT
        {
            return Ok(Frame::Sctp {
                src,
                dst,
                udp_encapsulated: true,
                packet: udp.payload(),
            });
        }
    }
    Ok(Frame::Other)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{IpNumber, PacketBuilder};
    use proptest::prelude::*;

    const SCTP: &[u8] = &[0x0f, 0x17, 0x04, 0xd2, 0, 0, 0, 1, 0, 0, 0, 0];

    /// Ethernet + IPv4 + SCTP.
    pub(crate) fn eth_ipv4_sctp(src: [u8; 4], dst: [u8; 4], sctp: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, dst, 64)
            .write(&mut out, IpNumber(IP_PROTO_SCTP), sctp)
            .unwrap();
        out
    }

    #[test]
    fn ethernet_ipv4_sctp() {
        let f = eth_ipv4_sctp([10, 0, 0, 1], [10, 0, 0, 2], SCTP);
        let Frame::Sctp {
            src,
            dst,
            udp_encapsulated,
            packet,
        } = dissect(LinkType::Ethernet, &f).unwrap()
        else {
            panic!()
        };
        assert_eq!(src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert!(!udp_encapsulated);
        assert_eq!(packet, SCTP);
    }

    #[test]
    fn raw_ipv6_and_udp_encapsulation() {
        let mut f = Vec::new();
        PacketBuilder::ipv6([0xfe; 16], [0xfd; 16], 64)
            .udp(UDP_ENCAPSULATION_PORT, 40000)
            .write(&mut f, SCTP)
            .unwrap();
        let Frame::Sctp {
            src,
            udp_encapsulated,
            packet,
            ..
        } = dissect(LinkType::RawIp, &f).unwrap()
        else {
            panic!()
        };
        assert!(src.is_ipv6() && udp_encapsulated);
        assert_eq!(packet, SCTP);
        // Other UDP ports are not SCTP.
        let mut f = Vec::new();
        PacketBuilder::ipv4([1; 4], [2; 4], 64)
            .udp(53, 40000)
            .write(&mut f, SCTP)
            .unwrap();
        assert_eq!(dissect(LinkType::RawIp, &f).unwrap(), Frame::Other);
    }

    #[test]
    fn linux_cooked_v2_and_loopback() {
        let ip = {
            let mut out = Vec::new();
            PacketBuilder::ipv4([1; 4], [2; 4], 64)
                .write(&mut out, IpNumber(IP_PROTO_SCTP), SCTP)
                .unwrap();
            out
        };
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        assert!(matches!(
            dissect(LinkType::LinuxSll2, &sll2).unwrap(),
            Frame::Sctp { .. }
        ));
        assert!(dissect(LinkType::LinuxSll2, &sll2[..10]).is_err());
        let mut lo = 2u32.to_le_bytes().to_vec();
        lo.extend_from_slice(&ip);
        assert!(matches!(
            dissect(LinkType::Loopback, &lo).unwrap(),
            Frame::Sctp { .. }
        ));
    }

    #[test]
    fn ipv4_fragments_are_recognised() {
        let mut f = eth_ipv4_sctp([1; 4], [2; 4], SCTP);
        f[14 + 6] = 0x20; // more fragments
        // The header checksum is not verified, so no need to fix it.
        assert_eq!(dissect(LinkType::Ethernet, &f).unwrap(), Frame::IpFragment);
    }

    #[test]
    fn truncated_frames_are_errors() {
        let f = eth_ipv4_sctp([1; 4], [2; 4], SCTP);
        assert!(dissect(LinkType::Ethernet, &f[..30]).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), link in 0usize..5) {
            let link = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Loopback][link];
            let _ = dissect(link, &bytes);
        }
    }
}

//! SCTP packets (RFC 9260 §3): the common header and a bounds-checked walk
//! over the chunks, keeping the user data (DATA, and I-DATA of RFC 8260).

use std::fmt;

/// IP protocol number of SCTP.
pub const IP_PROTO_SCTP: u8 = 132;
/// UDP port of SCTP over UDP (RFC 6951 §5.1).
pub const UDP_ENCAPSULATION_PORT: u16 = 9899;

const COMMON_HEADER_LEN: usize = 12;
const CHUNK_HEADER_LEN: usize = 4;
const CHUNK_DATA: u8 = 0;
const CHUNK_I_DATA: u8 = 64;
const DATA_HEADER_LEN: usize = 16;
const I_DATA_HEADER_LEN: usize = 20;
const FLAG_UNORDERED: u8 = 0x04;
const FLAG_BEGIN: u8 = 0x02;
const FLAG_END: u8 = 0x01;

/// Why an SCTP packet or one of its chunks cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SctpError {
    /// Shorter than the 12-byte common header.
    ShortPacket {
        /// The packet's length.
        len: usize,
    },
    /// A chunk's length field is below its header size or past the packet's end.
    BadChunkLength {
        /// Offset of the chunk in the packet.
        offset: usize,
        /// The chunk type.
        chunk_type: u8,
        /// The length field.
        length: usize,
        /// Bytes left in the packet from the chunk's start.
        available: usize,
    },
}

impl fmt::Display for SctpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortPacket { len } => {
                write!(
                    f,
                    "SCTP packet of {len} bytes is shorter than its common header"
                )
            }
            Self::BadChunkLength {
                offset,
                chunk_type,
                length,
                available,
            } => write!(
                f,
                "SCTP chunk type {chunk_type} at offset {offset} has length {length} \
                 ({available} bytes left)"
            ),
        }
    }
}

/// The SCTP common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag: tells associations between the same ports apart.
    pub vtag: u32,
}

/// Which chunk type carried the user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// DATA (type 0): fragments are ordered by TSN, each carries the PPID.
    Data,
    /// I-DATA (type 64): fragments are ordered by FSN within a message ID,
    /// only the first carries the PPID.
    IData,
}

/// A DATA or I-DATA chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChunk<'a> {
    /// The chunk type.
    pub kind: DataKind,
    /// U flag.
    pub unordered: bool,
    /// B flag: first fragment of a user message.
    pub begin: bool,
    /// E flag: last fragment of a user message.
    pub end: bool,
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream: u16,
    /// Stream sequence number (DATA) or message identifier (I-DATA).
    pub message_id: u32,
    /// Payload protocol identifier; `None` on I-DATA fragments other than the first.
    pub ppid: Option<u32>,
    /// Fragment sequence number: 0 for DATA and for the first I-DATA fragment.
    pub fsn: u32,
    /// The user data.
    pub payload: &'a [u8],
}

impl DataChunk<'_> {
    /// Whether the chunk holds a whole user message.
    pub fn is_complete(&self) -> bool {
        self.begin && self.end
    }
}

/// What one chunk of a packet is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// User data.
    Data(DataChunk<'a>),
    /// Any other chunk (control chunks), by type.
    Other(u8),
}

/// Reads the common header and returns it with an iterator over the chunks.
pub fn parse(packet: &[u8]) -> Result<(CommonHeader, Chunks<'_>), SctpError> {
    if packet.len() < COMMON_HEADER_LEN {
        return Err(SctpError::ShortPacket { len: packet.len() });
    }
    let header = CommonHeader {
        src_port: be16(packet, 0),
        dst_port: be16(packet, 2),
        vtag: be32(packet, 4),
    };
    Ok((
        header,
        Chunks {
            packet,
            offset: COMMON_HEADER_LEN,
        },
    ))
}

/// The chunks of a packet; stops after the first malformed one.
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    packet: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<'a>, SctpError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.packet.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        let offset = self.offset;
        // Ending the walk here makes every later call return None.
        self.offset = self.packet.len();
        let bad = |chunk_type: u8, length: usize| SctpError::BadChunkLength {
            offset,
            chunk_type,
            length,
            available: rest.len(),
        };
        if rest.len() < CHUNK_HEADER_LEN {
            return Some(Err(bad(rest[0], 0)));
        }
        let chunk_type = rest[0];
        let flags = rest[1];
        let length = usize::from(be16(rest, 2));
        let min = match chunk_type {
            CHUNK_DATA => DATA_HEADER_LEN,
            CHUNK_I_DATA => I_DATA_HEADER_LEN,
            _ => CHUNK_HEADER_LEN,
        };
        if length < min || length > rest.len() {
            return Some(Err(bad(chunk_type, length)));
        }
        let body = &rest[..length];
        // The last chunk's padding may be missing; the walk then simply ends.
        self.offset = offset.saturating_add(length.next_multiple_of(4));
        let begin = flags & FLAG_BEGIN != 0;
        let common = |kind, message_id, ppid, fsn, header_len: usize| DataChunk {
            kind,
            unordered: flags & FLAG_UNORDERED != 0,
            begin,
            end: flags & FLAG_END != 0,
            tsn: be32(body, 4),
            stream: be16(body, 8),
            message_id,
            ppid,
            fsn,
            payload: &body[header_len..],
        };
        Some(Ok(match chunk_type {
            CHUNK_DATA => Chunk::Data(common(
                DataKind::Data,
                u32::from(be16(body, 10)),
                Some(be32(body, 12)),
                0,
                DATA_HEADER_LEN,
            )),
            CHUNK_I_DATA => {
                let field = be32(body, 16);
                let (ppid, fsn) = if begin {
                    (Some(field), 0)
                } else {
                    (None, field)
                };
                Chunk::Data(common(
                    DataKind::IData,
                    be32(body, 12),
                    ppid,
                    fsn,
                    I_DATA_HEADER_LEN,
                ))
            }
            other => Chunk::Other(other),
        }))
    }
}

// Callers have checked the length; these only index within it.
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An SCTP packet with these chunks (each already a complete chunk).
    pub(crate) fn packet(src: u16, dst: u16, vtag: u32, chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&src.to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&vtag.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        for c in chunks {
            p.extend_from_slice(c);
            p.resize(p.len().next_multiple_of(4), 0);
        }
        p
    }

    /// A DATA chunk.
    pub(crate) fn data(
        flags: u8,
        tsn: u32,
        stream: u16,
        ssn: u16,
        ppid: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut c = vec![CHUNK_DATA, flags];
        c.extend_from_slice(&((DATA_HEADER_LEN + payload.len()) as u16).to_be_bytes());
        c.extend_from_slice(&tsn.to_be_bytes());
        c.extend_from_slice(&stream.to_be_bytes());
        c.extend_from_slice(&ssn.to_be_bytes());
        c.extend_from_slice(&ppid.to_be_bytes());
        c.extend_from_slice(payload);
        c
    }

    /// An I-DATA chunk; `ppid_or_fsn` is the PPID when B is set.
    pub(crate) fn i_data(
        flags: u8,
        tsn: u32,
        stream: u16,
        mid: u32,
        ppid_or_fsn: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut c = vec![CHUNK_I_DATA, flags];
        c.extend_from_slice(&((I_DATA_HEADER_LEN + payload.len()) as u16).to_be_bytes());
        c.extend_from_slice(&tsn.to_be_bytes());
        c.extend_from_slice(&stream.to_be_bytes());
        c.extend_from_slice(&[0, 0]);
        c.extend_from_slice(&mid.to_be_bytes());
        c.extend_from_slice(&ppid_or_fsn.to_be_bytes());
        c.extend_from_slice(payload);
        c
    }

    fn sack() -> Vec<u8> {
        vec![3, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 0]
    }

    #[test]
    fn walks_control_and_data_chunks_with_padding() {
        let p = packet(
            3863,
            1234,
            7,
            &[
                sack(),
                data(0x03, 10, 1, 2, 11, b"abcde"),
                i_data(0x02, 11, 3, 9, 12, b"xy"),
            ],
        );
        let (h, chunks) = parse(&p).unwrap();
        assert_eq!((h.src_port, h.dst_port, h.vtag), (3863, 1234, 7));
        let chunks: Vec<_> = chunks.collect::<Result<_, _>>().unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0], Chunk::Other(3));
        let Chunk::Data(d) = &chunks[1] else { panic!() };
        assert_eq!(
            (d.kind, d.tsn, d.stream, d.message_id, d.ppid),
            (DataKind::Data, 10, 1, 2, Some(11))
        );
        assert!(d.is_complete() && !d.unordered);
        assert_eq!(d.payload, b"abcde");
        let Chunk::Data(d) = &chunks[2] else { panic!() };
        assert_eq!(
            (d.kind, d.message_id, d.ppid, d.fsn),
            (DataKind::IData, 9, Some(12), 0)
        );
        assert!(d.begin && !d.end);
    }

    #[test]
    fn i_data_continuation_carries_fsn_not_ppid() {
        let p = packet(1, 2, 3, &[i_data(0x01, 12, 3, 9, 1, b"z")]);
        let Chunk::Data(d) = parse(&p).unwrap().1.next().unwrap().unwrap() else {
            panic!()
        };
        assert_eq!((d.ppid, d.fsn, d.end), (None, 1, true));
    }

    #[test]
    fn rejects_short_packets_and_bad_lengths() {
        assert_eq!(
            parse(&[0; 11]).unwrap_err(),
            SctpError::ShortPacket { len: 11 }
        );
        let mut c = data(0x03, 1, 0, 0, 11, b"abcd");
        c[3] = 200; // length past the end
        let p = packet(1, 2, 3, &[c]);
        let err = parse(&p).unwrap().1.next().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                SctpError::BadChunkLength {
                    offset: 12,
                    length: 200,
                    ..
                }
            ),
            "{err}"
        );
        // A DATA chunk shorter than its header.
        let p = packet(1, 2, 3, &[vec![0, 3, 0, 8, 0, 0, 0, 0]]);
        assert!(parse(&p).unwrap().1.next().unwrap().is_err());
        // A zero-length chunk must not loop forever.
        let p = packet(1, 2, 3, &[vec![5, 0, 0, 0]]);
        let mut it = parse(&p).unwrap().1;
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    proptest! {
        #[test]
        fn never_panics_and_terminates(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((_, chunks)) = parse(&bytes) {
                // Every chunk is at least 4 bytes, so the walk is bounded by the length.
                prop_assert!(chunks.count() <= bytes.len() / 4 + 1);
            }
        }
    }
}

//! Reassembly of user messages that SCTP split over several DATA or I-DATA
//! chunks: DATA fragments are consecutive TSNs from a B chunk to an E chunk
//! (RFC 9260 §6.9), I-DATA fragments share a message ID and count up from
//! FSN 0 (RFC 8260 §2.1). Memory is bounded: fragments that would exceed the
//! limits are dropped and counted.

use super::sctp::{DataChunk, DataKind};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// Largest user message reassembled: an ASAP or ENRP message has a 16-bit length.
pub const MAX_MESSAGE_BYTES: usize = 1 << 16;
/// Largest amount of fragment data held at once, over all streams.
pub const MAX_PENDING_BYTES: usize = 16 << 20;

/// One direction of one association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// The receiver's verification tag.
    pub vtag: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    flow: Flow,
    kind: DataKind,
    stream: u16,
    unordered: bool,
    /// The I-DATA message ID; 0 for DATA, whose fragments are told apart by TSN.
    message_id: u32,
}

#[derive(Debug)]
struct Piece<M> {
    begin: bool,
    end: bool,
    ppid: Option<u32>,
    data: Vec<u8>,
    meta: M,
}

#[derive(Debug)]
struct Pending<M> {
    /// By TSN (DATA) or FSN (I-DATA).
    pieces: BTreeMap<u32, Piece<M>>,
    bytes: usize,
}

/// A user message put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled<M> {
    /// The payload protocol identifier of the first fragment.
    pub ppid: u32,
    /// The whole message.
    pub payload: Vec<u8>,
    /// How many chunks it came in.
    pub chunks: usize,
    /// The caller's data of the fragment that completed it (the last to arrive).
    pub meta: M,
}

/// What became of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<M> {
    /// It completed a message.
    Complete(Reassembled<M>),
    /// It is held until the rest arrives.
    Held,
    /// It was dropped: its message, or all pending data, would exceed the limits.
    Dropped,
}

/// Holds fragments until their message is complete.
#[derive(Debug)]
pub struct Reassembler<M> {
    pending: HashMap<Key, Pending<M>>,
    pending_bytes: usize,
}

impl<M> Default for Reassembler<M> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            pending_bytes: 0,
        }
    }
}

impl<M> Reassembler<M> {
    /// Adds a fragment (a chunk without both B and E set) of `flow`.
    pub fn push(&mut self, flow: Flow, chunk: &DataChunk<'_>, meta: M) -> Outcome<M> {
        let key = Key {
            flow,
            kind: chunk.kind,
            stream: chunk.stream,
            unordered: chunk.unordered,
            message_id: match chunk.kind {
                DataKind::Data => 0,
                DataKind::IData => chunk.message_id,
            },
        };
        let seq = match chunk.kind {
            DataKind::Data => chunk.tsn,
            DataKind::IData => chunk.fsn,
        };
        let len = chunk.payload.len();
        let entry = self.pending.entry(key).or_insert_with(|| Pending {
            pieces: BTreeMap::new(),
            bytes: 0,
        });
        // A retransmitted fragment replaces the copy held.
        let replaced = entry.pieces.get(&seq).map_or(0, |p| p.data.len());
        let key_bytes = entry.bytes - replaced + len;
        let total = self.pending_bytes - replaced + len;
        if key_bytes > MAX_MESSAGE_BYTES + 64 || total > MAX_PENDING_BYTES {
            if entry.pieces.is_empty() {
                self.pending.remove(&key);
            }
            return Outcome::Dropped;
        }
        entry.bytes = key_bytes;
        self.pending_bytes = total;
        entry.pieces.insert(
            seq,
            Piece {
                begin: chunk.begin,
                end: chunk.end,
                ppid: chunk.ppid,
                data: chunk.payload.to_vec(),
                meta,
            },
        );
        match self.take_complete(key, seq) {
            Some(m) => Outcome::Complete(m),
            None => Outcome::Held,
        }
    }

    /// Fragments still waiting for the rest of their message.
    pub fn pending_fragments(&self) -> usize {
        self.pending.values().map(|p| p.pieces.len()).sum()
    }

    /// Removes and returns the message that `seq` belongs to, if all its fragments are here.
    fn take_complete(&mut self, key: Key, seq: u32) -> Option<Reassembled<M>> {
        let entry = self.pending.get_mut(&key)?;
        let pieces = &entry.pieces;
        // Walk back to the B fragment and forward to the E fragment; each walk
        // is bounded by the number of pieces, so wrapping TSNs cannot loop.
        let mut first = seq;
        for _ in 0..pieces.len() {
            if pieces.get(&first)?.begin {
                break;
            }
            first = first.wrapping_sub(1);
        }
        if !pieces.get(&first)?.begin {
            return None;
        }
        let mut last = first;
        let mut count = 1;
        while !pieces.get(&last)?.end {
            if count == pieces.len() {
                return None;
            }
            last = last.wrapping_add(1);
            count += 1;
        }
        let mut payload = Vec::new();
        let mut ppid = None;
        let mut meta = None;
        let mut s = first;
        for _ in 0..count {
            let piece = entry.pieces.remove(&s)?;
            ppid = ppid.or(piece.ppid);
            payload.extend_from_slice(&piece.data);
            entry.bytes -= piece.data.len();
            self.pending_bytes -= piece.data.len();
            if s == seq {
                meta = Some(piece.meta);
            }
            s = s.wrapping_add(1);
        }
        if entry.pieces.is_empty() {
            self.pending.remove(&key);
        }
        Some(Reassembled {
            // The B fragment of both chunk kinds carries the PPID.
            ppid: ppid?,
            payload,
            chunks: count,
            meta: meta?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flow() -> Flow {
        Flow {
            src: "10.0.0.1:3863".parse().unwrap(),
            dst: "10.0.0.2:1234".parse().unwrap(),
            vtag: 1,
        }
    }

    fn frag(
        kind: DataKind,
        flags: (bool, bool),
        tsn: u32,
        mid: u32,
        fsn: u32,
        payload: &[u8],
    ) -> DataChunk<'_> {
        let (begin, end) = flags;
        DataChunk {
            kind,
            unordered: false,
            begin,
            end,
            tsn,
            stream: 0,
            message_id: mid,
            ppid: (kind == DataKind::Data || begin).then_some(11),
            fsn,
            payload,
        }
    }

    #[test]
    fn data_fragments_in_any_order() {
        let mut r = Reassembler::default();
        let d = DataKind::Data;
        assert_eq!(
            r.push(flow(), &frag(d, (false, true), 12, 0, 0, b"ef"), 3),
            Outcome::Held
        );
        assert_eq!(
            r.push(flow(), &frag(d, (true, false), 10, 0, 0, b"ab"), 1),
            Outcome::Held
        );
        assert_eq!(r.pending_fragments(), 2);
        let Outcome::Complete(m) = r.push(flow(), &frag(d, (false, false), 11, 0, 0, b"cd"), 2)
        else {
            panic!()
        };
        // The meta is the completing fragment's (pushed last), not the E fragment's.
        assert_eq!(
            (m.ppid, m.payload.as_slice(), m.chunks, m.meta),
            (11, &b"abcdef"[..], 3, 2)
        );
        assert_eq!(r.pending_fragments(), 0);
        assert_eq!(r.pending_bytes, 0);
    }

    #[test]
    fn data_tsn_wraps() {
        let mut r = Reassembler::default();
        let d = DataKind::Data;
        r.push(flow(), &frag(d, (true, false), u32::MAX, 0, 0, b"a"), ());
        let Outcome::Complete(m) = r.push(flow(), &frag(d, (false, true), 0, 0, 0, b"b"), ())
        else {
            panic!()
        };
        assert_eq!(m.payload, b"ab");
    }

    #[test]
    fn i_data_by_message_id_and_fsn() {
        let mut r = Reassembler::default();
        let i = DataKind::IData;
        // Two messages interleaved on one stream.
        r.push(flow(), &frag(i, (true, false), 1, 7, 0, b"a"), ());
        r.push(flow(), &frag(i, (true, false), 2, 8, 0, b"x"), ());
        assert!(matches!(
            r.push(flow(), &frag(i, (false, true), 3, 8, 1, b"y"), ()),
            Outcome::Complete(_)
        ));
        let Outcome::Complete(m) = r.push(flow(), &frag(i, (false, true), 4, 7, 1, b"b"), ())
        else {
            panic!()
        };
        assert_eq!((m.payload.as_slice(), m.ppid), (&b"ab"[..], 11));
        assert_eq!(r.pending_fragments(), 0);
    }

    #[test]
    fn oversized_messages_are_dropped() {
        let mut r = Reassembler::default();
        let big = vec![0; MAX_MESSAGE_BYTES / 2 + 1];
        let d = DataKind::Data;
        assert_eq!(
            r.push(flow(), &frag(d, (true, false), 1, 0, 0, &big), ()),
            Outcome::Held
        );
        assert_eq!(
            r.push(flow(), &frag(d, (false, false), 2, 0, 0, &big), ()),
            Outcome::Held
        );
        assert_eq!(
            r.push(flow(), &frag(d, (false, true), 3, 0, 0, &big), ()),
            Outcome::Dropped
        );
    }

    proptest! {
        #[test]
        fn random_fragments_stay_bounded(
            frags in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u32..8, 0u32..3, 0usize..40), 0..60)
        ) {
            let mut r = Reassembler::default();
            let data = [0u8; 40];
            for (i, (b, e, seq, mid, len)) in frags.into_iter().enumerate() {
                let kind = if mid == 0 { DataKind::Data } else { DataKind::IData };
                let c = frag(kind, (b, e), seq, mid, if b { 0 } else { seq }, &data[..len]);
                if let Outcome::Complete(m) = r.push(flow(), &c, i) {
                    prop_assert!(m.chunks >= 1);
                }
                let held: usize = r.pending.values().flat_map(|p| p.pieces.values()).map(|p| p.data.len()).sum();
                prop_assert_eq!(held, r.pending_bytes);
            }
        }
    }
}

//! The PE checksum of RFC 5353 §3.6.2: a 16-bit Internet checksum (RFC 1071)
//! over `pad4(pool handle) || PE identifier` for every PE a registrar owns.
//!
//! The checksum is kept as the exact integer sum of all 16-bit words, so PEs can
//! be added and removed in O(1) and the folded result is exactly what RFC 1071
//! gives over the concatenation (including its two zeros: an empty set gives
//! 0xFFFF, a non-empty set whose words sum to a multiple of 0xFFFF gives 0).

use crate::ids::{PeId, PoolHandle};

/// An incrementally maintained PE checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PeChecksum {
    total: u64,
}

/// The integer sum of the 16-bit big-endian words of `bytes`, zero-padded.
fn sum_words(bytes: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// The sum of the 16-bit words one PE contributes.
///
/// The pool handle is padded to a multiple of four, so the PE ID starts on an
/// even offset: the block's sum is the handle's sum plus the ID's two words.
/// Handles are at most [`crate::limits::MAX_POOL_HANDLE_LEN`] bytes, so this
/// cannot overflow.
pub fn pe_sum(pool_handle: &PoolHandle, pe_id: PeId) -> u32 {
    sum_words(pool_handle.as_bytes()) + (pe_id.0 >> 16) + (pe_id.0 & 0xFFFF)
}

impl PeChecksum {
    /// The checksum of the empty set.
    pub const EMPTY: Self = Self { total: 0 };

    /// Adds a PE's contribution (see [`pe_sum`]).
    pub fn add(&mut self, contribution: u32) {
        self.total += u64::from(contribution);
    }

    /// Removes a PE's contribution (see [`pe_sum`]); it must have been added before.
    pub fn remove(&mut self, contribution: u32) {
        self.total = self.total.wrapping_sub(u64::from(contribution));
    }

    /// Adds a PE.
    pub fn insert(&mut self, pool_handle: &PoolHandle, pe_id: PeId) {
        self.add(pe_sum(pool_handle, pe_id));
    }

    /// The 16-bit checksum as it goes on the wire.
    pub fn value(self) -> u16 {
        let mut s = self.total;
        while s > 0xFFFF {
            s = (s & 0xFFFF) + (s >> 16);
        }
        !(s as u16)
    }

    /// Computes the checksum of a set of PEs from scratch (for cross-checks).
    pub fn compute<'a>(pes: impl IntoIterator<Item = (&'a PoolHandle, PeId)>) -> Self {
        let mut c = Self::EMPTY;
        for (h, id) in pes {
            c.insert(h, id);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ph(s: &str) -> PoolHandle {
        PoolHandle::try_from(s).unwrap()
    }

    #[test]
    fn spec_vectors() {
        // docs/spec/WIRE.md §10.
        assert_eq!(PeChecksum::EMPTY.value(), 0xFFFF);
        let echo = ph("EchoPool");
        let c1 = PeChecksum::compute([(&echo, PeId(0x1122_3344))]);
        assert_eq!(c1.value(), 0x4DEB);
        let p3 = ph("Pool3");
        let c2 = PeChecksum::compute([(&echo, PeId(0x1122_3344)), (&p3, PeId(0xDEAD_BEEF))]);
        assert_eq!(c2.value(), 0xBD71);
        assert_eq!(PeChecksum::compute([(&ph("ABC"), PeId(1))]).value(), 0x7BBC);
    }

    #[test]
    fn remove_undoes_add() {
        let echo = ph("EchoPool");
        let p3 = ph("Pool3");
        let mut c = PeChecksum::compute([(&echo, PeId(0x1122_3344))]);
        c.insert(&p3, PeId(0xDEAD_BEEF));
        c.remove(pe_sum(&p3, PeId(0xDEAD_BEEF)));
        assert_eq!(c.value(), 0x4DEB);
        c.remove(pe_sum(&echo, PeId(0x1122_3344)));
        assert_eq!(c.value(), 0xFFFF);
    }
}

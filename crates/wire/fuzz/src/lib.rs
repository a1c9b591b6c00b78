//! The properties both fuzz targets check, and the allocation counter they use.
//!
//! For any input, decoding must not panic and must
//! - on error, point at an offset inside the input (`offset <= len`);
//! - on success, re-encode without error to a multiple of four bytes, no
//!   longer than the input padded to four, that decodes to the same message
//!   and re-encodes to the very same bytes (canonical encoding is a fixed point);
//! - never hold more heap than [`ALLOC_FACTOR`] × input + [`ALLOC_SLACK`]
//!   bytes at once while decoding, so a hostile count or length field cannot
//!   make the decoder reserve memory the input does not pay for.

use rserpool_wire::{AsapMessage, DecodeError, Decoded, EncodeError, EnrpMessage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Peak heap a decode may hold, per input byte.
///
/// The decoded form is larger than the wire form: the densest input known
/// (`make-seeds.sh`, "dense") is an ENRP_HANDLE_TABLE_RESPONSE of many pools
/// with one 28-byte PE each, where every pool's `Vec<PoolElement>` starts at
/// capacity 4 (4 × 136 bytes); with the copy of the input it holds about 18.5
/// bytes of heap per input byte. A reservation driven by a wire count or
/// length field would exceed this bound by orders of magnitude.
pub const ALLOC_FACTOR: usize = 32;

/// Peak heap a decode may hold regardless of input size, in bytes.
pub const ALLOC_SLACK: usize = 4096;

/// The system allocator, counting the bytes live and the peak since the last reset.
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static WORST_RATIO_X100: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we forward.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A top-level decoder under test.
pub trait Codec: Sized + PartialEq + Debug + std::fmt::Display {
    /// Decodes one message.
    fn decode(buf: &[u8]) -> Result<Decoded<Self>, DecodeError>;
    /// Encodes the message.
    fn to_vec(&self) -> Result<Vec<u8>, EncodeError>;
}

impl Codec for AsapMessage {
    fn decode(buf: &[u8]) -> Result<Decoded<Self>, DecodeError> {
        AsapMessage::decode(buf)
    }
    fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        AsapMessage::to_vec(self)
    }
}

impl Codec for EnrpMessage {
    fn decode(buf: &[u8]) -> Result<Decoded<Self>, DecodeError> {
        EnrpMessage::decode(buf)
    }
    fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        EnrpMessage::to_vec(self)
    }
}

/// Decodes `data` with the heap peak measured; returns the result and the peak in bytes.
fn decode_measured<M: Codec>(data: &[u8]) -> (Result<Decoded<M>, DecodeError>, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let result = M::decode(data);
    (result, PEAK.load(Relaxed).saturating_sub(base))
}

/// Checks every property of the crate docs on one input; panics (a fuzzer finding) on a violation.
pub fn check<M: Codec>(data: &[u8]) {
    let (result, peak) = decode_measured::<M>(data);
    let budget = ALLOC_FACTOR * data.len() + ALLOC_SLACK;
    assert!(
        peak <= budget,
        "decoding {} bytes held {peak} bytes of heap at once (budget {budget})",
        data.len()
    );
    report_ratio(data.len(), peak);

    let decoded = match result {
        Err(e) => {
            assert!(
                e.offset <= data.len(),
                "error offset {} beyond input length {}: {e}",
                e.offset,
                data.len()
            );
            // Formatting and building the reply must not panic either.
            let _ = e.to_string();
            let _ = e.report();
            return;
        }
        Ok(d) => d,
    };
    let _ = decoded.report();
    let _ = decoded.message.to_string();

    let bytes = decoded.message.to_vec().unwrap_or_else(|e| {
        panic!(
            "decoded message does not encode: {e}\n{:?}",
            decoded.message
        )
    });
    assert_eq!(bytes.len() % 4, 0, "encoding not padded to 4: {bytes:02x?}");
    // Never longer than the input with its padding: then every accepted length
    // (at most 65532, see limits::MAX_MESSAGE_LEN) also fits when encoded again.
    assert!(
        bytes.len() <= (data.len() + 3) & !3,
        "encoding ({} bytes) longer than the padded input ({} bytes)",
        bytes.len(),
        data.len()
    );
    let again = M::decode(&bytes)
        .unwrap_or_else(|e| panic!("re-encoding does not decode: {e}\n{bytes:02x?}"));
    assert_eq!(
        again.message, decoded.message,
        "round trip changed the message"
    );
    assert!(
        again.unrecognized.is_empty(),
        "re-encoding carries unknown parameters"
    );
    let bytes2 = again.message.to_vec().expect("second encoding");
    assert_eq!(
        bytes2, bytes,
        "encoding is not canonical (not a fixed point)"
    );
}

/// With `RSERPOOL_FUZZ_ALLOC_REPORT` set, prints each new worst heap-per-input-byte ratio.
///
/// Inputs under 64 bytes are left out: their peak is the fixed slack, not a ratio.
fn report_ratio(len: usize, peak: usize) {
    if len < 64 {
        return;
    }
    let ratio = peak * 100 / len.max(1);
    if WORST_RATIO_X100.fetch_max(ratio, Relaxed) < ratio
        && std::env::var_os("RSERPOOL_FUZZ_ALLOC_REPORT").is_some()
    {
        eprintln!(
            "alloc: new worst {}.{:02} bytes of heap per input byte ({peak} for {len})",
            ratio / 100,
            ratio % 100
        );
    }
}

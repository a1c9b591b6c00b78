//! The unit of the Registration Life field, shared by registrars and pool elements.

use std::time::Duration;

/// The unit of the Registration Life field on the wire.
///
/// RFC 5354 §3.10 and RFC 5352 §3.1 say seconds; the reference
/// implementation (rsplib) and Wireshark use milliseconds. The field is a raw
/// number, so both ends must agree; milliseconds is the default for
/// interworking with rsplib.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LifeUnit {
    /// Milliseconds, as rsplib.
    #[default]
    Milliseconds,
    /// Seconds, as RFC 5354 reads.
    Seconds,
}

impl LifeUnit {
    /// The duration of a Registration Life value; `None` for infinite (negative).
    pub fn duration(self, life: i32) -> Option<Duration> {
        let v = u64::try_from(life).ok()?;
        Some(match self {
            Self::Milliseconds => Duration::from_millis(v),
            Self::Seconds => Duration::from_secs(v),
        })
    }
}

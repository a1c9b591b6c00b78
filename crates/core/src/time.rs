//! Time as the state machines see it: an instant chosen by the caller.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, measured from an epoch the caller chooses (process start
/// for the daemon, zero for the simulator). The state machines never read a
/// clock; every input carries one of these.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The epoch.
    pub const ZERO: Self = Self(Duration::ZERO);

    /// The instant `d` after the epoch.
    pub const fn from_epoch(d: Duration) -> Self {
        Self(d)
    }

    /// Time since the epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// Microseconds since the epoch, the unit the handlespace keeps deadlines in.
    pub fn as_micros(self) -> u64 {
        u64::try_from(self.0.as_micros()).unwrap_or(u64::MAX)
    }

    /// The instant with this many microseconds since the epoch.
    pub const fn from_micros(us: u64) -> Self {
        Self(Duration::from_micros(us))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }
}

impl Sub<Duration> for Instant {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:.3}s", self.0.as_secs_f64())
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

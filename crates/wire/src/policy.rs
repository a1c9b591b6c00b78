//! Pool member selection policies (RFC 5356 §7, draft-dreibholz-rserpool-delay,
//! and the reference implementation's private-use policies).

use crate::codec::{RawParam, Writer};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::param::ParamType;
use std::fmt;

/// A policy type code, known or not (RFC 5356 §7.1).
///
/// Bit 31 marks private (non-IETF) policies, bit 30 adaptive ones that use load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyType {
    /// Round Robin (0x00000001), which every component must support.
    RoundRobin,
    /// Weighted Round Robin (0x00000002).
    WeightedRoundRobin,
    /// Random (0x00000003).
    Random,
    /// Weighted Random (0x00000004).
    WeightedRandom,
    /// Priority (0x00000005).
    Priority,
    /// Least Used (0x40000001).
    LeastUsed,
    /// Least Used with Degradation (0x40000002).
    LeastUsedWithDegradation,
    /// Priority Least Used (0x40000003).
    PriorityLeastUsed,
    /// Randomized Least Used (0x40000004).
    RandomizedLeastUsed,
    /// Randomized Priority Least Used (0xB0001001, reference implementation).
    RandomizedPriorityLeastUsed,
    /// Randomized Least Used with Degradation (0xB0001002, reference implementation).
    RandomizedLeastUsedWithDegradation,
    /// Priority Least Used with Degradation (0xB0001003, reference implementation).
    PriorityLeastUsedWithDegradation,
    /// Randomized Priority Least Used with Degradation (0xB0001004, reference implementation).
    RandomizedPriorityLeastUsedWithDegradation,
    /// Weighted Random with Delay Penalty Factor (0xB0002001, delay draft).
    WeightedRandomDpf,
    /// Least Used with Delay Penalty Factor (0xB0002002, delay draft).
    LeastUsedDpf,
    /// Least Used with Degradation and Delay Penalty Factor (0xB0002003, reference implementation).
    LeastUsedWithDegradationDpf,
    /// A policy type this crate does not know.
    Unknown(u32),
}

impl PolicyType {
    const TABLE: [(PolicyType, u32, &'static str); 16] = [
        (Self::RoundRobin, 0x0000_0001, "RR"),
        (Self::WeightedRoundRobin, 0x0000_0002, "WRR"),
        (Self::Random, 0x0000_0003, "RAND"),
        (Self::WeightedRandom, 0x0000_0004, "WRAND"),
        (Self::Priority, 0x0000_0005, "PRIO"),
        (Self::LeastUsed, 0x4000_0001, "LU"),
        (Self::LeastUsedWithDegradation, 0x4000_0002, "LUD"),
        (Self::PriorityLeastUsed, 0x4000_0003, "PLU"),
        (Self::RandomizedLeastUsed, 0x4000_0004, "RLU"),
        (Self::RandomizedPriorityLeastUsed, 0xB000_1001, "RPLU"),
        (
            Self::RandomizedLeastUsedWithDegradation,
            0xB000_1002,
            "RLUD",
        ),
        (Self::PriorityLeastUsedWithDegradation, 0xB000_1003, "PLUD"),
        (
            Self::RandomizedPriorityLeastUsedWithDegradation,
            0xB000_1004,
            "RPLUD",
        ),
        (Self::WeightedRandomDpf, 0xB000_2001, "WRAND-DPF"),
        (Self::LeastUsedDpf, 0xB000_2002, "LU-DPF"),
        (Self::LeastUsedWithDegradationDpf, 0xB000_2003, "LUD-DPF"),
    ];

    /// The 32-bit code.
    pub fn code(self) -> u32 {
        match self {
            Self::Unknown(c) => c,
            known => Self::TABLE
                .iter()
                .find(|(t, _, _)| *t == known)
                .map_or(0, |(_, c, _)| *c),
        }
    }

    /// The policy type with this code.
    pub fn from_code(code: u32) -> Self {
        Self::TABLE
            .iter()
            .find(|(_, c, _)| *c == code)
            .map_or(Self::Unknown(code), |(t, _, _)| *t)
    }

    /// The policy's usual abbreviation ("RR", "LU", ...), or the hex code if unknown.
    pub fn short_name(self) -> String {
        Self::TABLE.iter().find(|(t, _, _)| *t == self).map_or_else(
            || format!("{:#010x}", self.code()),
            |(_, _, n)| (*n).to_string(),
        )
    }

    /// Whether the policy is adaptive (uses load), per bit 30 of its code.
    pub fn is_adaptive(self) -> bool {
        self.code() & 0x4000_0000 != 0
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short_name())
    }
}

/// A pool member selection policy with its policy-specific values.
///
/// Load and degradation are fractions of `u32::MAX` (0 = 0 %, `0xFFFFFFFF` =
/// 100 %); weight is relative capacity; a larger priority is better; the
/// delay penalty factors are fractions of `u32::MAX` per millisecond of
/// distance, and distance is a one-way delay in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the field names are the RFC's own terms, documented above
pub enum Policy {
    /// Round Robin.
    RoundRobin,
    /// Weighted Round Robin.
    WeightedRoundRobin { weight: u32 },
    /// Random.
    Random,
    /// Weighted Random.
    WeightedRandom { weight: u32 },
    /// Priority.
    Priority { priority: u32 },
    /// Least Used.
    LeastUsed { load: u32 },
    /// Least Used with Degradation.
    LeastUsedWithDegradation { load: u32, degradation: u32 },
    /// Priority Least Used.
    PriorityLeastUsed { load: u32, degradation: u32 },
    /// Randomized Least Used.
    RandomizedLeastUsed { load: u32 },
    /// Randomized Priority Least Used (reference implementation).
    RandomizedPriorityLeastUsed { load: u32, degradation: u32 },
    /// Randomized Least Used with Degradation (reference implementation).
    RandomizedLeastUsedWithDegradation { load: u32, degradation: u32 },
    /// Priority Least Used with Degradation (reference implementation).
    PriorityLeastUsedWithDegradation { load: u32, degradation: u32 },
    /// Randomized Priority Least Used with Degradation (reference implementation).
    RandomizedPriorityLeastUsedWithDegradation { load: u32, degradation: u32 },
    /// Weighted Random with Delay Penalty Factor.
    WeightedRandomDpf {
        weight: u32,
        weight_dpf: u32,
        distance: u32,
    },
    /// Least Used with Delay Penalty Factor.
    LeastUsedDpf {
        load: u32,
        load_dpf: u32,
        distance: u32,
    },
    /// Least Used with Degradation and Delay Penalty Factor (reference implementation).
    LeastUsedWithDegradationDpf {
        load: u32,
        degradation: u32,
        load_dpf: u32,
        distance: u32,
    },
    /// A policy this crate does not know, kept with its raw data so it can be
    /// relayed; encoding refuses a code of a known policy type.
    Unknown { code: u32, data: Box<[u8]> },
}

impl Policy {
    /// The policy's type.
    pub fn policy_type(&self) -> PolicyType {
        use Policy::*;
        match self {
            RoundRobin => PolicyType::RoundRobin,
            WeightedRoundRobin { .. } => PolicyType::WeightedRoundRobin,
            Random => PolicyType::Random,
            WeightedRandom { .. } => PolicyType::WeightedRandom,
            Priority { .. } => PolicyType::Priority,
            LeastUsed { .. } => PolicyType::LeastUsed,
            LeastUsedWithDegradation { .. } => PolicyType::LeastUsedWithDegradation,
            PriorityLeastUsed { .. } => PolicyType::PriorityLeastUsed,
            RandomizedLeastUsed { .. } => PolicyType::RandomizedLeastUsed,
            RandomizedPriorityLeastUsed { .. } => PolicyType::RandomizedPriorityLeastUsed,
            RandomizedLeastUsedWithDegradation { .. } => {
                PolicyType::RandomizedLeastUsedWithDegradation
            }
            PriorityLeastUsedWithDegradation { .. } => PolicyType::PriorityLeastUsedWithDegradation,
            RandomizedPriorityLeastUsedWithDegradation { .. } => {
                PolicyType::RandomizedPriorityLeastUsedWithDegradation
            }
            WeightedRandomDpf { .. } => PolicyType::WeightedRandomDpf,
            LeastUsedDpf { .. } => PolicyType::LeastUsedDpf,
            LeastUsedWithDegradationDpf { .. } => PolicyType::LeastUsedWithDegradationDpf,
            Unknown { code, .. } => PolicyType::Unknown(*code),
        }
    }

    /// The policy-specific values in wire order.
    fn values(&self) -> Vec<u32> {
        use Policy::*;
        match *self {
            RoundRobin | Random => vec![],
            WeightedRoundRobin { weight } | WeightedRandom { weight } => vec![weight],
            Priority { priority } => vec![priority],
            LeastUsed { load } | RandomizedLeastUsed { load } => vec![load],
            LeastUsedWithDegradation { load, degradation }
            | PriorityLeastUsed { load, degradation }
            | RandomizedPriorityLeastUsed { load, degradation }
            | RandomizedLeastUsedWithDegradation { load, degradation }
            | PriorityLeastUsedWithDegradation { load, degradation }
            | RandomizedPriorityLeastUsedWithDegradation { load, degradation } => {
                vec![load, degradation]
            }
            WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => vec![weight, weight_dpf, distance],
            LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => vec![load, load_dpf, distance],
            LeastUsedWithDegradationDpf {
                load,
                degradation,
                load_dpf,
                distance,
            } => vec![load, degradation, load_dpf, distance],
            Unknown { .. } => vec![],
        }
    }

    /// Builds a known policy from its type and values; `None` if the count is wrong.
    fn from_values(t: PolicyType, v: &[u32]) -> Option<Self> {
        use PolicyType as T;
        Some(match (t, v) {
            (T::RoundRobin, []) => Self::RoundRobin,
            (T::Random, []) => Self::Random,
            (T::WeightedRoundRobin, &[weight]) => Self::WeightedRoundRobin { weight },
            (T::WeightedRandom, &[weight]) => Self::WeightedRandom { weight },
            (T::Priority, &[priority]) => Self::Priority { priority },
            (T::LeastUsed, &[load]) => Self::LeastUsed { load },
            (T::RandomizedLeastUsed, &[load]) => Self::RandomizedLeastUsed { load },
            (T::LeastUsedWithDegradation, &[load, degradation]) => {
                Self::LeastUsedWithDegradation { load, degradation }
            }
            (T::PriorityLeastUsed, &[load, degradation]) => {
                Self::PriorityLeastUsed { load, degradation }
            }
            (T::RandomizedPriorityLeastUsed, &[load, degradation]) => {
                Self::RandomizedPriorityLeastUsed { load, degradation }
            }
            (T::RandomizedLeastUsedWithDegradation, &[load, degradation]) => {
                Self::RandomizedLeastUsedWithDegradation { load, degradation }
            }
            (T::PriorityLeastUsedWithDegradation, &[load, degradation]) => {
                Self::PriorityLeastUsedWithDegradation { load, degradation }
            }
            (T::RandomizedPriorityLeastUsedWithDegradation, &[load, degradation]) => {
                Self::RandomizedPriorityLeastUsedWithDegradation { load, degradation }
            }
            (T::WeightedRandomDpf, &[weight, weight_dpf, distance]) => Self::WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            },
            (T::LeastUsedDpf, &[load, load_dpf, distance]) => Self::LeastUsedDpf {
                load,
                load_dpf,
                distance,
            },
            (T::LeastUsedWithDegradationDpf, &[load, degradation, load_dpf, distance]) => {
                Self::LeastUsedWithDegradationDpf {
                    load,
                    degradation,
                    load_dpf,
                    distance,
                }
            }
            _ => return None,
        })
    }

    /// The load value, for adaptive policies.
    pub fn load(&self) -> Option<u32> {
        use Policy::*;
        match *self {
            LeastUsed { load }
            | RandomizedLeastUsed { load }
            | LeastUsedWithDegradation { load, .. }
            | PriorityLeastUsed { load, .. }
            | RandomizedPriorityLeastUsed { load, .. }
            | RandomizedLeastUsedWithDegradation { load, .. }
            | PriorityLeastUsedWithDegradation { load, .. }
            | RandomizedPriorityLeastUsedWithDegradation { load, .. }
            | LeastUsedDpf { load, .. }
            | LeastUsedWithDegradationDpf { load, .. } => Some(load),
            _ => None,
        }
    }

    /// The weight value, for weighted policies.
    pub fn weight(&self) -> Option<u32> {
        match *self {
            Self::WeightedRoundRobin { weight }
            | Self::WeightedRandom { weight }
            | Self::WeightedRandomDpf { weight, .. } => Some(weight),
            _ => None,
        }
    }

    pub(crate) fn decode(p: RawParam<'_>) -> Result<Self, DecodeError> {
        let mut v = p.value;
        let param_len = 4 + v.remaining();
        let code = v.u32()?;
        let t = PolicyType::from_code(code);
        if let PolicyType::Unknown(code) = t {
            return Ok(Self::Unknown {
                code,
                data: v.rest()[..].into(),
            });
        }
        let n = v.remaining() / 4;
        let exact = v.remaining() % 4 == 0 && n <= 4;
        let mut values = [0u32; 4];
        if exact {
            for slot in values.iter_mut().take(n) {
                *slot = v.u32()?;
            }
        }
        match exact.then(|| Self::from_values(t, &values[..n])).flatten() {
            Some(policy) => Ok(policy),
            None => Err(DecodeError::new(
                p.offset + 2,
                DecodeErrorKind::BadLength {
                    what: "policy parameter",
                    found: param_len,
                    min: 8 + 4 * Self::from_type_default(t).values().len(),
                    max: 8 + 4 * Self::from_type_default(t).values().len(),
                },
            )),
        }
    }

    /// The policy of type `t` with all values zero.
    pub fn from_type_default(t: PolicyType) -> Self {
        // `PolicyType::Unknown` may hold a known code; its variant is the one
        // way to encode it.
        let t = PolicyType::from_code(t.code());
        (0..=4)
            .find_map(|n| Self::from_values(t, &[0u32; 4][..n]))
            .unwrap_or(Self::Unknown {
                code: t.code(),
                data: Box::default(),
            })
    }

    pub(crate) fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        // A known code with raw data would bypass the value count of its
        // variant (and decode as that variant, or not at all).
        if matches!(self, Self::Unknown { code, .. }
            if !matches!(PolicyType::from_code(*code), PolicyType::Unknown(_)))
        {
            return Err(EncodeError::Invalid {
                what: "policy",
                why: "Policy::Unknown with the code of a known policy type",
            });
        }
        w.tlv(ParamType::Policy as u16, |w| {
            w.u32(self.policy_type().code());
            if let Self::Unknown { data, .. } = self {
                w.bytes(data);
            }
            for x in self.values() {
                w.u32(x);
            }
            Ok(())
        })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Policy::*;
        let t = self.policy_type();
        match self {
            Unknown { code, data } => write!(f, "policy {code:#010x}[{} bytes]", data.len()),
            RoundRobin | Random => write!(f, "{t}"),
            WeightedRoundRobin { weight } | WeightedRandom { weight } => {
                write!(f, "{t}(weight={weight})")
            }
            Priority { priority } => write!(f, "{t}(prio={priority})"),
            WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => write!(
                f,
                "{t}(weight={weight} dpf={weight_dpf:#x} dist={distance}ms)"
            ),
            LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => write!(
                f,
                "{t}(load={} dpf={load_dpf:#x} dist={distance}ms)",
                pct(*load)
            ),
            LeastUsedWithDegradationDpf {
                load,
                degradation,
                load_dpf,
                distance,
            } => write!(
                f,
                "{t}(load={} deg={} dpf={load_dpf:#x} dist={distance}ms)",
                pct(*load),
                pct(*degradation)
            ),
            _ => {
                let v = self.values();
                write!(f, "{t}(load={}", pct(v[0]))?;
                if let Some(d) = v.get(1) {
                    write!(f, " deg={}", pct(*d))?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Formats a `u32` fraction as a percentage.
fn pct(v: u32) -> String {
    format!("{:.1}%", f64::from(v) * 100.0 / f64::from(u32::MAX))
}

//! Why a registration is refused, and the Operation Error cause that says so.

use rserpool_wire::{CauseCode, ErrorCause, Policy, PolicyType, UserTransport};

/// A refused registration (RFC 5352 §3.1, RFC 5354 §3.12 causes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The policy type cannot be selected by (cause 0x3, Invalid Values).
    #[error("unsupported pool policy {0}")]
    UnsupportedPolicy(PolicyType),
    /// The PE's policy type differs from the pool's (cause 0x5).
    #[error("inconsistent pooling policy: pool uses {pool}, PE uses {pe}")]
    InconsistentPolicy {
        /// The pool's policy (type with zero values), sent back in the cause.
        pool: Policy,
        /// The PE's policy type.
        pe: PolicyType,
    },
    /// The PE's transport protocol differs from the pool's (cause 0x7).
    #[error("inconsistent transport type: pool uses {pool}")]
    InconsistentTransportType {
        /// The pool's transport (that of its first PE), sent back in the cause.
        pool: UserTransport,
    },
    /// The PE's transport use (data only / data + control) differs (cause 0x8).
    #[error("inconsistent data/control configuration")]
    InconsistentDataControl,
    /// The PE ID is registered in this pool by a PE at other addresses (cause 0x4).
    #[error("PE identifier already in use by another PE")]
    NonUniquePeId,
    /// A configured limit was reached (cause 0x6).
    #[error("lack of resources: {0}")]
    LackOfResources(&'static str),
}

impl RegisterError {
    /// The error cause for the registration response.
    pub fn cause(&self) -> ErrorCause {
        match self {
            Self::UnsupportedPolicy(t) => ErrorCause {
                code: CauseCode::InvalidValues,
                // The offending parameter: the policy as the PE sent its type.
                info: ErrorCause::inconsistent_policy(&Policy::from_type_default(*t)).info,
            },
            Self::InconsistentPolicy { pool, .. } => ErrorCause::inconsistent_policy(pool),
            Self::InconsistentTransportType { pool } => ErrorCause::inconsistent_transport(pool),
            Self::InconsistentDataControl => ErrorCause::new(CauseCode::InconsistentDataControl),
            Self::NonUniquePeId => ErrorCause::new(CauseCode::NonUniquePeId),
            Self::LackOfResources(_) => ErrorCause::new(CauseCode::LackOfResources),
        }
    }
}

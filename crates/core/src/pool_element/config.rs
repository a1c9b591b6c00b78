//! What a pool element registers and how it times its dealings with registrars.

use crate::asap_client::{ClientConfigError, HuntConfig, nonzero};
use rserpool_wire::{PeId, Policy, PoolHandle, RegistrationLife, UserTransport};
use std::time::Duration;

pub use crate::life::LifeUnit;

/// Configuration of a [`PoolElement`](super::PoolElement).
///
/// Every timer and constant of RFC 5352 §7 that the PE uses is here, with the
/// RFC's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolElementConfig {
    /// The pool to join.
    pub pool_handle: PoolHandle,
    /// Where PUs reach this PE (exactly one user transport, RFC 5354 §3.10).
    pub user_transport: UserTransport,
    /// The member selection policy with this PE's value (weight, load, ...).
    pub policy: Policy,
    /// A fixed PE identifier; `None` draws one from the machine's RNG
    /// (RFC 5352 §3.1 R2.2 asks for a good random source).
    pub pe_id: Option<PeId>,
    /// Registration Life; `None` registers for ever (-1 on the wire).
    /// Default 60 s: a PE that vanishes without deregistering leaves the
    /// handlespace within a minute, while T4 (40 s) still leaves the 20 s
    /// margin RFC 5352 builds into T4.
    pub registration_life: Option<Duration>,
    /// The unit `registration_life` is sent in.
    pub life_unit: LifeUnit,
    /// T2-registration: wait for REGISTRATION_RESPONSE (RFC 5352 default 30 s).
    pub t2_registration: Duration,
    /// T3-deregistration: wait for DEREGISTRATION_RESPONSE (RFC 5352 default 30 s).
    pub t3_deregistration: Duration,
    /// T4-reregistration; `None` uses the RFC 5352 rule
    /// min(10 min, Registration Life - 20 s) (see [`Self::reregistration_interval`]).
    /// rsplib users set this and a life of three times it.
    pub t4_reregistration: Option<Duration>,
    /// MAX-REG-ATTEMPT: REGISTRATIONs sent to one registrar without an
    /// answer before it is given up (RFC 5352 default 2).
    pub max_reg_attempt: u32,
    /// Registrar discovery and hunt.
    pub hunt: HuntConfig,
    /// Send ASAP_BUSINESS_CARD (this PE's pool handle and parameter) when a
    /// pool user starts a session (RFC 5352 §3.9 says a PE should). Default on.
    pub business_card: bool,
}

impl PoolElementConfig {
    /// A configuration with the RFC 5352 defaults for everything but what the PE offers.
    pub fn new(pool_handle: PoolHandle, user_transport: UserTransport, policy: Policy) -> Self {
        Self {
            pool_handle,
            user_transport,
            policy,
            pe_id: None,
            registration_life: Some(Duration::from_secs(60)),
            life_unit: LifeUnit::default(),
            t2_registration: Duration::from_secs(30),
            t3_deregistration: Duration::from_secs(30),
            t4_reregistration: None,
            max_reg_attempt: 2,
            hunt: HuntConfig::default(),
            business_card: true,
        }
    }

    /// The interval between re-registrations: the configured T4, else
    /// min(10 min, life - 20 s) per RFC 5352 §7.1. For lives of 40 s or
    /// less, where that rule leaves too little, half the life.
    pub fn reregistration_interval(&self) -> Duration {
        const MAX: Duration = Duration::from_secs(600);
        const MARGIN: Duration = Duration::from_secs(20);
        if let Some(t4) = self.t4_reregistration {
            return t4;
        }
        match self.registration_life {
            None => MAX,
            Some(life) if life > 2 * MARGIN => MAX.min(life - MARGIN),
            Some(life) => life / 2,
        }
    }

    /// The Registration Life field as sent.
    pub fn wire_life(&self) -> RegistrationLife {
        let Some(life) = self.registration_life else {
            return RegistrationLife::INFINITE;
        };
        let n = match self.life_unit {
            LifeUnit::Milliseconds => life.as_millis(),
            LifeUnit::Seconds => life.as_secs().into(),
        };
        RegistrationLife(i32::try_from(n).unwrap_or(i32::MAX))
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ClientConfigError> {
        nonzero("t2_registration", self.t2_registration)?;
        nonzero("t3_deregistration", self.t3_deregistration)?;
        if let Some(t4) = self.t4_reregistration {
            nonzero("t4_reregistration", t4)?;
        }
        if self.max_reg_attempt == 0 {
            return Err(ClientConfigError::new(
                "max_reg_attempt",
                "must be at least 1",
            ));
        }
        if let Some(life) = self.registration_life {
            let n = match self.life_unit {
                LifeUnit::Milliseconds => life.as_millis(),
                LifeUnit::Seconds => life.as_secs().into(),
            };
            if n == 0 {
                return Err(ClientConfigError::new(
                    "registration_life",
                    "is zero in the configured unit",
                ));
            }
            if n > i32::MAX as u128 {
                return Err(ClientConfigError::new(
                    "registration_life",
                    "does not fit the 32-bit wire field in the configured unit",
                ));
            }
            if self.reregistration_interval() >= life {
                return Err(ClientConfigError::new(
                    "t4_reregistration",
                    "must be shorter than the registration life (RFC 5352 §3.1 R2.3)",
                ));
            }
        }
        self.hunt.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rserpool_wire::{TransportAddress, TransportUse};

    fn config() -> PoolElementConfig {
        PoolElementConfig::new(
            PoolHandle::try_from("p").unwrap(),
            UserTransport::Address(TransportAddress::sctp(
                7,
                TransportUse::DataOnly,
                vec!["127.0.0.1".parse().unwrap()],
            )),
            Policy::RoundRobin,
        )
    }

    #[test]
    fn a11_t4_follows_rfc_rule() {
        let mut c = config();
        c.registration_life = Some(Duration::from_secs(60));
        assert_eq!(c.reregistration_interval(), Duration::from_secs(40));
        c.registration_life = Some(Duration::from_secs(3600));
        assert_eq!(c.reregistration_interval(), Duration::from_secs(600));
        c.registration_life = None;
        assert_eq!(c.reregistration_interval(), Duration::from_secs(600));
        assert_eq!(c.wire_life(), RegistrationLife::INFINITE);
        c.registration_life = Some(Duration::from_secs(10));
        assert_eq!(c.reregistration_interval(), Duration::from_secs(5));
        c.t4_reregistration = Some(Duration::from_secs(3));
        assert_eq!(c.reregistration_interval(), Duration::from_secs(3));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn life_unit_and_validation() {
        let mut c = config();
        assert_eq!(c.wire_life(), RegistrationLife(60_000));
        c.life_unit = LifeUnit::Seconds;
        assert_eq!(c.wire_life(), RegistrationLife(60));
        c.registration_life = Some(Duration::from_millis(500));
        assert_eq!(c.validate().unwrap_err().field, "registration_life");
        c.life_unit = LifeUnit::Milliseconds;
        c.registration_life = Some(Duration::from_secs(30 * 24 * 3600));
        assert_eq!(c.validate().unwrap_err().field, "registration_life");
        c.registration_life = Some(Duration::from_secs(60));
        c.t4_reregistration = Some(Duration::from_secs(90));
        assert_eq!(c.validate().unwrap_err().field, "t4_reregistration");
        c.t4_reregistration = None;
        c.max_reg_attempt = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_reg_attempt")
        );
    }
}

//! The Pool Element parameter (RFC 5354 §3.10).

use crate::codec::{Context, RawParam, Writer};
use crate::error::{DecodeError, EncodeError};
use crate::ids::{PeId, PrId};
use crate::param::ParamType;
use crate::policy::Policy;
use crate::transport::{TransportAddress, UserTransport, read_user_transport};
use std::fmt;

/// How long a registration stays valid without renewal.
///
/// The unit is a local convention: RFC 5352/5354 say seconds, the reference
/// implementation and Wireshark use milliseconds. This type carries the raw
/// wire value; the registrar's configuration says how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationLife(pub i32);

impl RegistrationLife {
    /// Never expires (-1).
    pub const INFINITE: Self = Self(-1);

    /// Whether this is the infinite lifetime (any negative value is read as infinite).
    pub fn is_infinite(self) -> bool {
        self.0 < 0
    }
}

/// A pool element as the registrars and users know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolElement {
    /// The PE's identifier.
    pub id: PeId,
    /// Its home registrar; `None` (0 on the wire) when not yet known.
    pub home_registrar: Option<PrId>,
    /// Its registration lifetime.
    pub registration_life: RegistrationLife,
    /// Where users reach it.
    pub user_transport: UserTransport,
    /// Its selection policy and policy values (load, weight, ...).
    pub policy: Policy,
    /// The SCTP addresses it registered from, filled in by the home registrar.
    pub asap_transport: Option<TransportAddress>,
}

impl PoolElement {
    pub(crate) fn decode(p: RawParam<'_>, ctx: &mut Context) -> Result<Self, DecodeError> {
        ctx.nested(p.offset, |ctx| {
            let mut v = p.value;
            let id = PeId(v.u32()?);
            let home_registrar = PrId::new(v.u32()?);
            let registration_life = RegistrationLife(v.u32()? as i32);
            let user_transport = read_user_transport(&mut v, ctx)?;
            let policy = Policy::decode(v.expect(ctx, ParamType::Policy)?)?;
            let asap_transport = match v.optional(ctx, ParamType::SctpTransport)? {
                Some(t) => Some(TransportAddress::decode(t, ctx)?),
                None => None,
            };
            v.finish(ctx)?;
            Ok(Self {
                id,
                home_registrar,
                registration_life,
                user_transport,
                policy,
                asap_transport,
            })
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        if let Some(t) = &self.asap_transport {
            if t.param_type() != ParamType::SctpTransport {
                return Err(EncodeError::Invalid {
                    what: "ASAP transport",
                    why: "must be an SCTP transport (RFC 5354 §3.10)",
                });
            }
        }
        w.tlv(ParamType::PoolElement as u16, |w| {
            w.u32(self.id.0);
            w.u32(PrId::raw(self.home_registrar));
            w.u32(self.registration_life.0 as u32);
            self.user_transport.encode(w)?;
            self.policy.encode(w)?;
            if let Some(t) = &self.asap_transport {
                t.encode(w)?;
            }
            Ok(())
        })
    }
}

impl fmt::Display for PoolElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pe={}", self.id)?;
        if let Some(h) = self.home_registrar {
            write!(f, " home={h}")?;
        }
        if self.registration_life.is_infinite() {
            f.write_str(" life=inf")?;
        } else {
            write!(f, " life={}", self.registration_life.0)?;
        }
        write!(f, " {} {}", self.policy, self.user_transport)?;
        if let Some(t) = &self.asap_transport {
            write!(f, " asap={t}")?;
        }
        Ok(())
    }
}

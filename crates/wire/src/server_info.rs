//! The Server Information parameter (RFC 5354 §3.11).

use crate::codec::{Context, RawParam, Writer};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::{PrId, read_pr_id};
use crate::param::ParamType;
use crate::transport::{Protocol, TransportAddress};
use std::fmt;

/// A registrar's identity and where its peers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerInformation {
    /// The registrar's server ID.
    pub server_id: PrId,
    /// Its SCTP transport (addresses and ENRP port).
    pub transport: TransportAddress,
}

impl ServerInformation {
    pub(crate) fn decode(p: RawParam<'_>, ctx: &mut Context) -> Result<Self, DecodeError> {
        ctx.nested(p.offset, |ctx| {
            let mut v = p.value;
            let server_id = read_pr_id(&mut v, "server ID in server information")?;
            let tp = v.expect(ctx, ParamType::SctpTransport)?;
            let transport = TransportAddress::decode(tp, ctx)?;
            v.finish(ctx)?;
            Ok(Self {
                server_id,
                transport,
            })
        })
    }

    /// Whether the parameter carries server ID 0, which rsplib sends for a
    /// peer it knows only by address.
    pub(crate) fn is_unidentified(p: &RawParam<'_>) -> bool {
        p.value.clone().u32().is_ok_and(|id| id == 0)
    }

    pub(crate) fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        if !matches!(self.transport.protocol, Protocol::Sctp(_)) {
            return Err(EncodeError::Invalid {
                what: "server information",
                why: "transport must be SCTP",
            });
        }
        w.tlv(ParamType::ServerInformation as u16, |w| {
            w.u32(self.server_id.get());
            self.transport.encode(w)
        })
    }
}

impl fmt::Display for ServerInformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server={} {}", self.server_id, self.transport)
    }
}

pub(crate) fn decode_checksum(p: RawParam<'_>) -> Result<u16, DecodeError> {
    let mut v = p.value;
    if v.remaining() != 2 {
        return Err(DecodeError::new(
            p.offset + 2,
            DecodeErrorKind::BadLength {
                what: "PE checksum",
                found: v.remaining() + 4,
                min: 6,
                max: 6,
            },
        ));
    }
    v.u16()
}

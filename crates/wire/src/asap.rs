//! ASAP messages (RFC 5352 §2.2; SCTP PPID 11, port 3863).

use crate::cause::{decode_operation_error, encode_operation_error, fmt_causes};
use crate::codec::{Context, Reader, Writer, decode_header, encode_message};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::{PeId, PoolHandle, PrId, decode_pe_id, encode_pe_id, read_pr_id};
use crate::limits::MAX_ANNOUNCED_TRANSPORTS;
use crate::param::ParamType;
use crate::policy::Policy;
use crate::pool_element::PoolElement;
use crate::transport::TransportAddress;
use crate::{Decoded, ErrorCause};
use bytes::Bytes;
use std::fmt;

/// ASAP message type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AsapType {
    /// ASAP_REGISTRATION (0x01).
    Registration = 0x01,
    /// ASAP_DEREGISTRATION (0x02).
    Deregistration = 0x02,
    /// ASAP_REGISTRATION_RESPONSE (0x03).
    RegistrationResponse = 0x03,
    /// ASAP_DEREGISTRATION_RESPONSE (0x04).
    DeregistrationResponse = 0x04,
    /// ASAP_HANDLE_RESOLUTION (0x05).
    HandleResolution = 0x05,
    /// ASAP_HANDLE_RESOLUTION_RESPONSE (0x06).
    HandleResolutionResponse = 0x06,
    /// ASAP_ENDPOINT_KEEP_ALIVE (0x07).
    EndpointKeepAlive = 0x07,
    /// ASAP_ENDPOINT_KEEP_ALIVE_ACK (0x08).
    EndpointKeepAliveAck = 0x08,
    /// ASAP_ENDPOINT_UNREACHABLE (0x09).
    EndpointUnreachable = 0x09,
    /// ASAP_SERVER_ANNOUNCE (0x0A).
    ServerAnnounce = 0x0A,
    /// ASAP_COOKIE (0x0B).
    Cookie = 0x0B,
    /// ASAP_COOKIE_ECHO (0x0C).
    CookieEcho = 0x0C,
    /// ASAP_BUSINESS_CARD (0x0D).
    BusinessCard = 0x0D,
    /// ASAP_ERROR (0x0E).
    Error = 0x0E,
}

impl AsapType {
    /// The type with this code.
    pub fn from_u8(v: u8) -> Option<Self> {
        use AsapType::*;
        Some(match v {
            0x01 => Registration,
            0x02 => Deregistration,
            0x03 => RegistrationResponse,
            0x04 => DeregistrationResponse,
            0x05 => HandleResolution,
            0x06 => HandleResolutionResponse,
            0x07 => EndpointKeepAlive,
            0x08 => EndpointKeepAliveAck,
            0x09 => EndpointUnreachable,
            0x0A => ServerAnnounce,
            0x0B => Cookie,
            0x0C => CookieEcho,
            0x0D => BusinessCard,
            0x0E => Error,
            _ => return None,
        })
    }

    /// The RFC's name of the message type.
    pub fn name(self) -> &'static str {
        use AsapType::*;
        match self {
            Registration => "ASAP_REGISTRATION",
            Deregistration => "ASAP_DEREGISTRATION",
            RegistrationResponse => "ASAP_REGISTRATION_RESPONSE",
            DeregistrationResponse => "ASAP_DEREGISTRATION_RESPONSE",
            HandleResolution => "ASAP_HANDLE_RESOLUTION",
            HandleResolutionResponse => "ASAP_HANDLE_RESOLUTION_RESPONSE",
            EndpointKeepAlive => "ASAP_ENDPOINT_KEEP_ALIVE",
            EndpointKeepAliveAck => "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
            EndpointUnreachable => "ASAP_ENDPOINT_UNREACHABLE",
            ServerAnnounce => "ASAP_SERVER_ANNOUNCE",
            Cookie => "ASAP_COOKIE",
            CookieEcho => "ASAP_COOKIE_ECHO",
            BusinessCard => "ASAP_BUSINESS_CARD",
            Error => "ASAP_ERROR",
        }
    }
}

/// Flag bit 0 (mask 0x01), the only flag ASAP defines for any message.
const FLAG_BIT0: u8 = 0x01;

/// An ASAP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AsapMessage {
    /// A PE registers (or re-registers) at its home registrar.
    Registration {
        /// The pool to join.
        pool_handle: PoolHandle,
        /// The PE (its ASAP transport is normally left for the registrar to fill in).
        pool_element: PoolElement,
    },
    /// A PE leaves its pool.
    Deregistration {
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE.
        pe_id: PeId,
    },
    /// The registrar's answer to a registration.
    RegistrationResponse {
        /// R flag: the registration was rejected.
        rejected: bool,
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE.
        pe_id: PeId,
        /// Why it was rejected (R set) or which values were changed (R clear).
        error: Option<Vec<ErrorCause>>,
    },
    /// The registrar's answer to a deregistration, or notice of an expired registration.
    DeregistrationResponse {
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE.
        pe_id: PeId,
        /// Present when the deregistration was rejected.
        error: Option<Vec<ErrorCause>>,
    },
    /// A PU or PE asks for PEs of a pool.
    HandleResolution {
        /// S flag: subscribe to updates of the pool.
        subscribe: bool,
        /// The pool.
        pool_handle: PoolHandle,
        /// Handle Resolution Option: how many PEs the requester wants.
        items: Option<u32>,
    },
    /// The registrar's answer to a handle resolution.
    HandleResolutionResponse {
        /// A flag: the subscription was accepted.
        accepted: bool,
        /// The pool.
        pool_handle: PoolHandle,
        /// The pool's overall policy (absent means Round Robin).
        policy: Option<Policy>,
        /// The selected PEs.
        pool_elements: Vec<PoolElement>,
        /// Present on failure (for example Unknown Pool Handle).
        error: Option<Vec<ErrorCause>>,
    },
    /// A registrar checks that a PE is alive, and may claim to be its home.
    EndpointKeepAlive {
        /// H flag: the sender wants to be the PE's home registrar.
        home: bool,
        /// The sender's server ID.
        server_id: PrId,
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE addressed (the reference implementation's addition to RFC 5352).
        pe_id: Option<PeId>,
    },
    /// A PE answers a keep-alive.
    EndpointKeepAliveAck {
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE.
        pe_id: PeId,
    },
    /// A PU or PE reports a PE it could not reach.
    EndpointUnreachable {
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE.
        pe_id: PeId,
    },
    /// A registrar announces itself to PUs and PEs (multicast).
    ServerAnnounce {
        /// The registrar's server ID.
        server_id: PrId,
        /// Where to reach it; empty means SCTP at the packet's source, port 3863.
        transports: Vec<TransportAddress>,
    },
    /// A PE hands its state cookie to a PU (control channel).
    Cookie {
        /// The opaque cookie.
        cookie: Bytes,
    },
    /// A PU presents the cookie to the PE it failed over to.
    CookieEcho {
        /// The opaque cookie.
        cookie: Bytes,
    },
    /// A PE or PU tells the other its pool and failover order.
    BusinessCard {
        /// The pool.
        pool_handle: PoolHandle,
        /// The pool's policy; the reference implementation inserts one here.
        policy: Option<Policy>,
        /// The PEs in failover order.
        pool_elements: Vec<PoolElement>,
    },
    /// Reports errors, for example an unrecognized parameter.
    Error {
        /// The causes.
        causes: Vec<ErrorCause>,
    },
}

impl AsapMessage {
    /// The message type.
    pub fn message_type(&self) -> AsapType {
        use AsapMessage as M;
        match self {
            M::Registration { .. } => AsapType::Registration,
            M::Deregistration { .. } => AsapType::Deregistration,
            M::RegistrationResponse { .. } => AsapType::RegistrationResponse,
            M::DeregistrationResponse { .. } => AsapType::DeregistrationResponse,
            M::HandleResolution { .. } => AsapType::HandleResolution,
            M::HandleResolutionResponse { .. } => AsapType::HandleResolutionResponse,
            M::EndpointKeepAlive { .. } => AsapType::EndpointKeepAlive,
            M::EndpointKeepAliveAck { .. } => AsapType::EndpointKeepAliveAck,
            M::EndpointUnreachable { .. } => AsapType::EndpointUnreachable,
            M::ServerAnnounce { .. } => AsapType::ServerAnnounce,
            M::Cookie { .. } => AsapType::Cookie,
            M::CookieEcho { .. } => AsapType::CookieEcho,
            M::BusinessCard { .. } => AsapType::BusinessCard,
            M::Error { .. } => AsapType::Error,
        }
    }

    /// The pool handle the message is about, if it carries one.
    pub fn pool_handle(&self) -> Option<&PoolHandle> {
        use AsapMessage as M;
        match self {
            M::Registration { pool_handle, .. }
            | M::Deregistration { pool_handle, .. }
            | M::RegistrationResponse { pool_handle, .. }
            | M::DeregistrationResponse { pool_handle, .. }
            | M::HandleResolution { pool_handle, .. }
            | M::HandleResolutionResponse { pool_handle, .. }
            | M::EndpointKeepAlive { pool_handle, .. }
            | M::EndpointKeepAliveAck { pool_handle, .. }
            | M::EndpointUnreachable { pool_handle, .. }
            | M::BusinessCard { pool_handle, .. } => Some(pool_handle),
            M::ServerAnnounce { .. }
            | M::Cookie { .. }
            | M::CookieEcho { .. }
            | M::Error { .. } => None,
        }
    }

    /// Decodes one message from a copy of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, DecodeError> {
        Self::decode_bytes(&Bytes::copy_from_slice(buf))
    }

    /// Decodes one message; opaque fields become slices of `buf` (no copy).
    pub fn decode_bytes(buf: &Bytes) -> Result<Decoded<Self>, DecodeError> {
        let (t, flags, mut r) = decode_header(buf)?;
        let Some(t) = AsapType::from_u8(t) else {
            return Err(crate::unknown_type(t, buf));
        };
        let mut ctx = Context::default();
        let message = decode_body(t, flags & FLAG_BIT0 != 0, &mut r, &mut ctx)?;
        r.finish(&mut ctx)?;
        Ok(Decoded {
            message,
            unrecognized: ctx.reports,
        })
    }

    /// Appends the encoded message (with padding) to `out`; `out` is unchanged on error.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        use AsapMessage as M;
        let flag = match self {
            M::RegistrationResponse { rejected: f, .. }
            | M::HandleResolution { subscribe: f, .. }
            | M::HandleResolutionResponse { accepted: f, .. }
            | M::EndpointKeepAlive { home: f, .. } => *f,
            _ => false,
        };
        let flags = if flag { FLAG_BIT0 } else { 0 };
        encode_message(self.message_type() as u8, flags, out, |w| {
            self.encode_body(w)
        })
    }

    /// The encoded message as a new buffer.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    fn encode_body(&self, w: &mut Writer) -> Result<(), EncodeError> {
        use AsapMessage as M;
        match self {
            M::Registration {
                pool_handle,
                pool_element,
            } => {
                pool_handle.encode(w)?;
                pool_element.encode(w)
            }
            M::Deregistration { pool_handle, pe_id }
            | M::EndpointKeepAliveAck { pool_handle, pe_id }
            | M::EndpointUnreachable { pool_handle, pe_id } => {
                pool_handle.encode(w)?;
                encode_pe_id(*pe_id, w)
            }
            M::RegistrationResponse {
                pool_handle,
                pe_id,
                error,
                ..
            }
            | M::DeregistrationResponse {
                pool_handle,
                pe_id,
                error,
            } => {
                pool_handle.encode(w)?;
                encode_pe_id(*pe_id, w)?;
                match error {
                    Some(causes) => encode_operation_error(causes, w),
                    None => Ok(()),
                }
            }
            M::HandleResolution {
                pool_handle, items, ..
            } => {
                pool_handle.encode(w)?;
                match items {
                    Some(n) => w.tlv(ParamType::HandleResolutionOption as u16, |w| {
                        w.u32(*n);
                        Ok(())
                    }),
                    None => Ok(()),
                }
            }
            M::HandleResolutionResponse {
                pool_handle,
                policy,
                pool_elements,
                error,
                ..
            } => {
                pool_handle.encode(w)?;
                if let Some(p) = policy {
                    p.encode(w)?;
                }
                for pe in pool_elements {
                    pe.encode(w)?;
                }
                match error {
                    Some(causes) => encode_operation_error(causes, w),
                    None => Ok(()),
                }
            }
            M::EndpointKeepAlive {
                server_id,
                pool_handle,
                pe_id,
                ..
            } => {
                w.u32(server_id.get());
                pool_handle.encode(w)?;
                match pe_id {
                    Some(id) => encode_pe_id(*id, w),
                    None => Ok(()),
                }
            }
            M::ServerAnnounce {
                server_id,
                transports,
            } => {
                if transports.len() > MAX_ANNOUNCED_TRANSPORTS {
                    return Err(EncodeError::Invalid {
                        what: "server announce",
                        why: "more than MAX_ANNOUNCED_TRANSPORTS transports",
                    });
                }
                w.u32(server_id.get());
                for t in transports {
                    t.encode(w)?;
                }
                Ok(())
            }
            M::Cookie { cookie } | M::CookieEcho { cookie } => {
                w.tlv(ParamType::Cookie as u16, |w| {
                    w.bytes(cookie);
                    Ok(())
                })
            }
            M::BusinessCard {
                pool_handle,
                policy,
                pool_elements,
            } => {
                if pool_elements.is_empty() {
                    return Err(EncodeError::Invalid {
                        what: "business card",
                        why: "needs at least one pool element",
                    });
                }
                pool_handle.encode(w)?;
                if let Some(p) = policy {
                    p.encode(w)?;
                }
                for pe in pool_elements {
                    pe.encode(w)?;
                }
                Ok(())
            }
            M::Error { causes } => encode_operation_error(causes, w),
        }
    }
}

fn read_pe_id(r: &mut Reader<'_>, ctx: &mut Context) -> Result<PeId, DecodeError> {
    decode_pe_id(r.expect(ctx, ParamType::PeIdentifier)?)
}

fn read_error(
    r: &mut Reader<'_>,
    ctx: &mut Context,
) -> Result<Option<Vec<ErrorCause>>, DecodeError> {
    match r.optional(ctx, ParamType::OperationError)? {
        Some(p) => decode_operation_error(p, ctx).map(Some),
        None => Ok(None),
    }
}

fn read_policy(r: &mut Reader<'_>, ctx: &mut Context) -> Result<Option<Policy>, DecodeError> {
    match r.optional(ctx, ParamType::Policy)? {
        Some(p) => Policy::decode(p).map(Some),
        None => Ok(None),
    }
}

fn read_pool_elements(
    r: &mut Reader<'_>,
    ctx: &mut Context,
) -> Result<Vec<PoolElement>, DecodeError> {
    let mut out = Vec::new();
    while let Some(p) = r.optional(ctx, ParamType::PoolElement)? {
        out.push(PoolElement::decode(p, ctx)?);
    }
    Ok(out)
}

fn read_cookie(r: &mut Reader<'_>, ctx: &mut Context) -> Result<Bytes, DecodeError> {
    let mut v = r.expect(ctx, ParamType::Cookie)?.value;
    Ok(v.rest())
}

fn decode_body(
    t: AsapType,
    flag: bool,
    r: &mut Reader<'_>,
    ctx: &mut Context,
) -> Result<AsapMessage, DecodeError> {
    use AsapMessage as M;
    Ok(match t {
        AsapType::Registration => M::Registration {
            pool_handle: PoolHandle::read(r, ctx)?,
            pool_element: PoolElement::decode(r.expect(ctx, ParamType::PoolElement)?, ctx)?,
        },
        AsapType::Deregistration => M::Deregistration {
            pool_handle: PoolHandle::read(r, ctx)?,
            pe_id: read_pe_id(r, ctx)?,
        },
        AsapType::RegistrationResponse => M::RegistrationResponse {
            rejected: flag,
            pool_handle: PoolHandle::read(r, ctx)?,
            pe_id: read_pe_id(r, ctx)?,
            error: read_error(r, ctx)?,
        },
        AsapType::DeregistrationResponse => M::DeregistrationResponse {
            pool_handle: PoolHandle::read(r, ctx)?,
            pe_id: read_pe_id(r, ctx)?,
            error: read_error(r, ctx)?,
        },
        AsapType::HandleResolution => M::HandleResolution {
            subscribe: flag,
            pool_handle: PoolHandle::read(r, ctx)?,
            items: match r.optional(ctx, ParamType::HandleResolutionOption)? {
                Some(p) => {
                    let mut v = p.value;
                    let n = v.u32()?;
                    v.expect_end("handle resolution option")?;
                    Some(n)
                }
                None => None,
            },
        },
        AsapType::HandleResolutionResponse => M::HandleResolutionResponse {
            accepted: flag,
            pool_handle: PoolHandle::read(r, ctx)?,
            policy: read_policy(r, ctx)?,
            pool_elements: read_pool_elements(r, ctx)?,
            error: read_error(r, ctx)?,
        },
        AsapType::EndpointKeepAlive => M::EndpointKeepAlive {
            home: flag,
            server_id: read_pr_id(r, "server identifier")?,
            pool_handle: PoolHandle::read(r, ctx)?,
            pe_id: match r.optional(ctx, ParamType::PeIdentifier)? {
                Some(p) => Some(decode_pe_id(p)?),
                None => None,
            },
        },
        AsapType::EndpointKeepAliveAck => M::EndpointKeepAliveAck {
            pool_handle: PoolHandle::read(r, ctx)?,
            pe_id: read_pe_id(r, ctx)?,
        },
        AsapType::EndpointUnreachable => M::EndpointUnreachable {
            pool_handle: PoolHandle::read(r, ctx)?,
            pe_id: read_pe_id(r, ctx)?,
        },
        AsapType::ServerAnnounce => {
            let server_id = read_pr_id(r, "server identifier")?;
            let mut transports = Vec::new();
            while let Some(p) = r.next_if(ctx, TransportAddress::is_transport_type)? {
                if transports.len() == MAX_ANNOUNCED_TRANSPORTS {
                    return Err(DecodeError::new(
                        p.offset,
                        DecodeErrorKind::TooMany {
                            what: "announced transports",
                            limit: MAX_ANNOUNCED_TRANSPORTS,
                        },
                    ));
                }
                transports.push(TransportAddress::decode(p, ctx)?);
            }
            M::ServerAnnounce {
                server_id,
                transports,
            }
        }
        AsapType::Cookie => M::Cookie {
            cookie: read_cookie(r, ctx)?,
        },
        AsapType::CookieEcho => M::CookieEcho {
            cookie: read_cookie(r, ctx)?,
        },
        AsapType::BusinessCard => {
            let pool_handle = PoolHandle::read(r, ctx)?;
            let policy = read_policy(r, ctx)?;
            let pool_elements = read_pool_elements(r, ctx)?;
            if pool_elements.is_empty() {
                return Err(r.error(DecodeErrorKind::MissingParameter {
                    expected: "Pool Element",
                }));
            }
            M::BusinessCard {
                pool_handle,
                policy,
                pool_elements,
            }
        }
        AsapType::Error => M::Error {
            causes: decode_operation_error(r.expect(ctx, ParamType::OperationError)?, ctx)?,
        },
    })
}

impl fmt::Display for AsapMessage {
    /// A one-line summary in the spirit of Wireshark's Info column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AsapMessage as M;
        f.write_str(self.message_type().name())?;
        match self {
            M::Registration {
                pool_handle,
                pool_element,
            } => write!(f, " handle={pool_handle} {pool_element}"),
            M::Deregistration { pool_handle, pe_id }
            | M::EndpointKeepAliveAck { pool_handle, pe_id }
            | M::EndpointUnreachable { pool_handle, pe_id } => {
                write!(f, " handle={pool_handle} pe={pe_id}")
            }
            M::RegistrationResponse {
                rejected,
                pool_handle,
                pe_id,
                error,
            } => {
                if *rejected {
                    f.write_str(" [R]")?;
                }
                write!(f, " handle={pool_handle} pe={pe_id}")?;
                fmt_error(f, error)
            }
            M::DeregistrationResponse {
                pool_handle,
                pe_id,
                error,
            } => {
                write!(f, " handle={pool_handle} pe={pe_id}")?;
                fmt_error(f, error)
            }
            M::HandleResolution {
                subscribe,
                pool_handle,
                items,
            } => {
                if *subscribe {
                    f.write_str(" [S]")?;
                }
                write!(f, " handle={pool_handle}")?;
                if let Some(n) = items {
                    write!(f, " items={n}")?;
                }
                Ok(())
            }
            M::HandleResolutionResponse {
                accepted,
                pool_handle,
                policy,
                pool_elements,
                error,
            } => {
                if *accepted {
                    f.write_str(" [A]")?;
                }
                write!(f, " handle={pool_handle}")?;
                if let Some(p) = policy {
                    write!(f, " policy={}", p.policy_type())?;
                }
                fmt_pes(f, pool_elements)?;
                fmt_error(f, error)
            }
            M::EndpointKeepAlive {
                home,
                server_id,
                pool_handle,
                pe_id,
            } => {
                if *home {
                    f.write_str(" [H]")?;
                }
                write!(f, " server={server_id} handle={pool_handle}")?;
                if let Some(id) = pe_id {
                    write!(f, " pe={id}")?;
                }
                Ok(())
            }
            M::ServerAnnounce {
                server_id,
                transports,
            } => {
                write!(f, " server={server_id}")?;
                for t in transports {
                    write!(f, " {t}")?;
                }
                Ok(())
            }
            M::Cookie { cookie } | M::CookieEcho { cookie } => {
                write!(f, " cookie[{}]", cookie.len())
            }
            M::BusinessCard {
                pool_handle,
                policy,
                pool_elements,
            } => {
                write!(f, " handle={pool_handle}")?;
                if let Some(p) = policy {
                    write!(f, " policy={}", p.policy_type())?;
                }
                fmt_pes(f, pool_elements)
            }
            M::Error { causes } => {
                f.write_str(" ")?;
                fmt_causes(f, causes)
            }
        }
    }
}

pub(crate) fn fmt_error(
    f: &mut fmt::Formatter<'_>,
    error: &Option<Vec<ErrorCause>>,
) -> fmt::Result {
    if let Some(causes) = error {
        f.write_str(" error=")?;
        fmt_causes(f, causes)?;
    }
    Ok(())
}

pub(crate) fn fmt_pes(f: &mut fmt::Formatter<'_>, pes: &[PoolElement]) -> fmt::Result {
    for pe in pes {
        write!(f, " {{{pe}}}")?;
    }
    Ok(())
}

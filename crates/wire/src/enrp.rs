//! ENRP messages (RFC 5353 §2; SCTP PPID 12, port 9901), including the
//! Takeover Suggestion flag of draft-dreibholz-rserpool-enrp-takeover.

use crate::asap::fmt_pes;
use crate::cause::{decode_operation_error, encode_operation_error, fmt_causes};
use crate::codec::{Context, Reader, Writer, decode_header, encode_message};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::{PoolHandle, PrId, read_pr_id};
use crate::param::ParamType;
use crate::pool_element::PoolElement;
use crate::server_info::{ServerInformation, decode_checksum};
use crate::{Decoded, ErrorCause};
use bytes::Bytes;
use std::fmt;

/// ENRP message type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EnrpType {
    /// ENRP_PRESENCE (0x01).
    Presence = 0x01,
    /// ENRP_HANDLE_TABLE_REQUEST (0x02).
    HandleTableRequest = 0x02,
    /// ENRP_HANDLE_TABLE_RESPONSE (0x03).
    HandleTableResponse = 0x03,
    /// ENRP_HANDLE_UPDATE (0x04).
    HandleUpdate = 0x04,
    /// ENRP_LIST_REQUEST (0x05).
    ListRequest = 0x05,
    /// ENRP_LIST_RESPONSE (0x06).
    ListResponse = 0x06,
    /// ENRP_INIT_TAKEOVER (0x07).
    InitTakeover = 0x07,
    /// ENRP_INIT_TAKEOVER_ACK (0x08).
    InitTakeoverAck = 0x08,
    /// ENRP_TAKEOVER_SERVER (0x09).
    TakeoverServer = 0x09,
    /// ENRP_ERROR (0x0A).
    Error = 0x0A,
}

impl EnrpType {
    /// The type with this code.
    pub fn from_u8(v: u8) -> Option<Self> {
        use EnrpType::*;
        Some(match v {
            0x01 => Presence,
            0x02 => HandleTableRequest,
            0x03 => HandleTableResponse,
            0x04 => HandleUpdate,
            0x05 => ListRequest,
            0x06 => ListResponse,
            0x07 => InitTakeover,
            0x08 => InitTakeoverAck,
            0x09 => TakeoverServer,
            0x0A => Error,
            _ => return None,
        })
    }

    /// The RFC's name of the message type.
    pub fn name(self) -> &'static str {
        use EnrpType::*;
        match self {
            Presence => "ENRP_PRESENCE",
            HandleTableRequest => "ENRP_HANDLE_TABLE_REQUEST",
            HandleTableResponse => "ENRP_HANDLE_TABLE_RESPONSE",
            HandleUpdate => "ENRP_HANDLE_UPDATE",
            ListRequest => "ENRP_LIST_REQUEST",
            ListResponse => "ENRP_LIST_RESPONSE",
            InitTakeover => "ENRP_INIT_TAKEOVER",
            InitTakeoverAck => "ENRP_INIT_TAKEOVER_ACK",
            TakeoverServer => "ENRP_TAKEOVER_SERVER",
            Error => "ENRP_ERROR",
        }
    }
}

const FLAG_BIT0: u8 = 0x01;
const FLAG_BIT1: u8 = 0x02;

/// The action of an ENRP_HANDLE_UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateAction {
    /// ADD_PE (0): add the PE or update its attributes.
    AddPe,
    /// DEL_PE (1): remove the PE.
    DelPe,
}

/// The sender and receiver IDs every ENRP message starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Servers {
    /// The sending registrar.
    pub sender: PrId,
    /// The receiving registrar; `None` (0) when group-cast.
    pub receiver: Option<PrId>,
}

/// The PEs of one pool inside an ENRP_HANDLE_TABLE_RESPONSE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolEntry {
    /// The pool.
    pub pool_handle: PoolHandle,
    /// Its PEs (at least one).
    pub pool_elements: Vec<PoolElement>,
}

/// An ENRP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnrpMessage {
    /// Heartbeat and announcement of a registrar, with its PE checksum.
    Presence {
        /// Sender and receiver.
        servers: Servers,
        /// R flag: the receiver must answer with its own presence.
        reply_required: bool,
        /// The checksum over the PEs the sender owns.
        checksum: Option<u16>,
        /// The sender's identity and addresses.
        server_info: Option<ServerInformation>,
    },
    /// Asks a peer for its handlespace (or one page of it).
    HandleTableRequest {
        /// Sender and receiver.
        servers: Servers,
        /// W flag: only the PEs the receiver owns.
        own_children_only: bool,
    },
    /// One page of a handlespace download.
    HandleTableResponse {
        /// Sender and receiver.
        servers: Servers,
        /// R flag: the request is rejected (no entries follow).
        rejected: bool,
        /// M flag: more pages follow.
        more_to_send: bool,
        /// The pools and their PEs.
        pools: Vec<PoolEntry>,
    },
    /// Announces an added, changed or removed PE to the peers.
    HandleUpdate {
        /// Sender and receiver.
        servers: Servers,
        /// T flag: the sender suggests that the receiver take over this PE.
        takeover_suggested: bool,
        /// Add/update or delete.
        action: UpdateAction,
        /// The pool.
        pool_handle: PoolHandle,
        /// The PE with all its attributes.
        pool_element: PoolElement,
    },
    /// Asks a peer for the registrars it knows.
    ListRequest {
        /// Sender and receiver.
        servers: Servers,
    },
    /// The registrars a peer knows.
    ListResponse {
        /// Sender and receiver.
        servers: Servers,
        /// R flag: the request is rejected.
        rejected: bool,
        /// The known registrars.
        peers: Vec<ServerInformation>,
    },
    /// Starts the takeover of a registrar believed dead.
    InitTakeover {
        /// Sender and receiver.
        servers: Servers,
        /// The registrar to take over.
        target: PrId,
    },
    /// Agrees to a takeover.
    InitTakeoverAck {
        /// Sender and receiver.
        servers: Servers,
        /// The registrar being taken over.
        target: PrId,
    },
    /// Announces that the sender took over the target's PEs.
    TakeoverServer {
        /// Sender and receiver.
        servers: Servers,
        /// The registrar taken over.
        target: PrId,
    },
    /// Reports errors.
    Error {
        /// Sender and receiver.
        servers: Servers,
        /// The causes.
        causes: Vec<ErrorCause>,
    },
}

impl EnrpMessage {
    /// The message type.
    pub fn message_type(&self) -> EnrpType {
        use EnrpMessage as M;
        match self {
            M::Presence { .. } => EnrpType::Presence,
            M::HandleTableRequest { .. } => EnrpType::HandleTableRequest,
            M::HandleTableResponse { .. } => EnrpType::HandleTableResponse,
            M::HandleUpdate { .. } => EnrpType::HandleUpdate,
            M::ListRequest { .. } => EnrpType::ListRequest,
            M::ListResponse { .. } => EnrpType::ListResponse,
            M::InitTakeover { .. } => EnrpType::InitTakeover,
            M::InitTakeoverAck { .. } => EnrpType::InitTakeoverAck,
            M::TakeoverServer { .. } => EnrpType::TakeoverServer,
            M::Error { .. } => EnrpType::Error,
        }
    }

    /// The sender and receiver IDs.
    pub fn servers(&self) -> Servers {
        use EnrpMessage as M;
        match self {
            M::Presence { servers, .. }
            | M::HandleTableRequest { servers, .. }
            | M::HandleTableResponse { servers, .. }
            | M::HandleUpdate { servers, .. }
            | M::ListRequest { servers }
            | M::ListResponse { servers, .. }
            | M::InitTakeover { servers, .. }
            | M::InitTakeoverAck { servers, .. }
            | M::TakeoverServer { servers, .. }
            | M::Error { servers, .. } => *servers,
        }
    }

    fn flags(&self) -> u8 {
        use EnrpMessage as M;
        let bit = |b: bool, m: u8| if b { m } else { 0 };
        match self {
            M::Presence { reply_required, .. } => bit(*reply_required, FLAG_BIT0),
            M::HandleTableRequest {
                own_children_only, ..
            } => bit(*own_children_only, FLAG_BIT0),
            M::HandleTableResponse {
                rejected,
                more_to_send,
                ..
            } => bit(*rejected, FLAG_BIT0) | bit(*more_to_send, FLAG_BIT1),
            M::HandleUpdate {
                takeover_suggested, ..
            } => bit(*takeover_suggested, FLAG_BIT0),
            M::ListResponse { rejected, .. } => bit(*rejected, FLAG_BIT0),
            _ => 0,
        }
    }

    /// Decodes one message from a copy of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, DecodeError> {
        Self::decode_bytes(&Bytes::copy_from_slice(buf))
    }

    /// Decodes one message; opaque fields become slices of `buf` (no copy).
    pub fn decode_bytes(buf: &Bytes) -> Result<Decoded<Self>, DecodeError> {
        let (t, flags, mut r) = decode_header(buf)?;
        let Some(t) = EnrpType::from_u8(t) else {
            return Err(crate::unknown_type(t, buf));
        };
        let mut ctx = Context::default();
        let servers = Servers {
            sender: read_pr_id(&mut r, "sending server ID")?,
            receiver: PrId::new(r.u32()?),
        };
        let message = decode_body(t, flags, servers, &mut r, &mut ctx)?;
        r.finish(&mut ctx)?;
        Ok(Decoded {
            message,
            unrecognized: ctx.reports,
        })
    }

    /// Appends the encoded message (with padding) to `out`; `out` is unchanged on error.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_message(self.message_type() as u8, self.flags(), out, |w| {
            let s = self.servers();
            w.u32(s.sender.get());
            w.u32(PrId::raw(s.receiver));
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
        use EnrpMessage as M;
        match self {
            M::Presence {
                checksum,
                server_info,
                ..
            } => {
                if let Some(c) = checksum {
                    w.tlv(ParamType::PeChecksum as u16, |w| {
                        w.u16(*c);
                        Ok(())
                    })?;
                }
                match server_info {
                    Some(s) => s.encode(w),
                    None => Ok(()),
                }
            }
            M::HandleTableRequest { .. } | M::ListRequest { .. } => Ok(()),
            M::HandleTableResponse { pools, .. } => {
                for entry in pools {
                    if entry.pool_elements.is_empty() {
                        return Err(EncodeError::Invalid {
                            what: "handle table pool entry",
                            why: "needs at least one pool element",
                        });
                    }
                    entry.pool_handle.encode(w)?;
                    for pe in &entry.pool_elements {
                        pe.encode(w)?;
                    }
                }
                Ok(())
            }
            M::HandleUpdate {
                action,
                pool_handle,
                pool_element,
                ..
            } => {
                w.u16(match action {
                    UpdateAction::AddPe => 0,
                    UpdateAction::DelPe => 1,
                });
                w.u16(0);
                pool_handle.encode(w)?;
                pool_element.encode(w)
            }
            M::ListResponse { peers, .. } => {
                for p in peers {
                    p.encode(w)?;
                }
                Ok(())
            }
            M::InitTakeover { target, .. }
            | M::InitTakeoverAck { target, .. }
            | M::TakeoverServer { target, .. } => {
                w.u32(target.get());
                Ok(())
            }
            M::Error { causes, .. } => encode_operation_error(causes, w),
        }
    }
}

fn decode_body(
    t: EnrpType,
    flags: u8,
    servers: Servers,
    r: &mut Reader<'_>,
    ctx: &mut Context,
) -> Result<EnrpMessage, DecodeError> {
    use EnrpMessage as M;
    let bit0 = flags & FLAG_BIT0 != 0;
    Ok(match t {
        EnrpType::Presence => M::Presence {
            servers,
            reply_required: bit0,
            checksum: match r.optional(ctx, ParamType::PeChecksum)? {
                Some(p) => Some(decode_checksum(p)?),
                None => None,
            },
            server_info: match r.optional(ctx, ParamType::ServerInformation)? {
                Some(p) => Some(ServerInformation::decode(p, ctx)?),
                None => None,
            },
        },
        EnrpType::HandleTableRequest => M::HandleTableRequest {
            servers,
            own_children_only: bit0,
        },
        EnrpType::HandleTableResponse => {
            let mut pools = Vec::new();
            while let Some(p) = r.optional(ctx, ParamType::PoolHandle)? {
                let pool_handle = PoolHandle::decode(p)?;
                let mut pool_elements = Vec::new();
                while let Some(pe) = r.optional(ctx, ParamType::PoolElement)? {
                    pool_elements.push(PoolElement::decode(pe, ctx)?);
                }
                if pool_elements.is_empty() {
                    return Err(r.error(DecodeErrorKind::MissingParameter {
                        expected: "Pool Element",
                    }));
                }
                pools.push(PoolEntry {
                    pool_handle,
                    pool_elements,
                });
            }
            M::HandleTableResponse {
                servers,
                rejected: bit0,
                more_to_send: flags & FLAG_BIT1 != 0,
                pools,
            }
        }
        EnrpType::HandleUpdate => {
            let at = r.offset();
            let action = match r.u16()? {
                0 => UpdateAction::AddPe,
                1 => UpdateAction::DelPe,
                other => {
                    return Err(DecodeError::new(
                        at,
                        DecodeErrorKind::InvalidValue {
                            what: "update action",
                            found: other.into(),
                        },
                    ));
                }
            };
            let _reserved = r.u16()?;
            M::HandleUpdate {
                servers,
                takeover_suggested: bit0,
                action,
                pool_handle: PoolHandle::read(r, ctx)?,
                pool_element: PoolElement::decode(r.expect(ctx, ParamType::PoolElement)?, ctx)?,
            }
        }
        EnrpType::ListRequest => M::ListRequest { servers },
        EnrpType::ListResponse => {
            let mut peers = Vec::new();
            while let Some(p) = r.optional(ctx, ParamType::ServerInformation)? {
                // rsplib lists a static peer whose ID it has not learnt yet
                // with server ID 0: that entry names no registrar, but the
                // others in the list still do.
                if ServerInformation::is_unidentified(&p) {
                    continue;
                }
                peers.push(ServerInformation::decode(p, ctx)?);
            }
            M::ListResponse {
                servers,
                rejected: bit0,
                peers,
            }
        }
        EnrpType::InitTakeover => M::InitTakeover {
            servers,
            target: read_pr_id(r, "target server ID")?,
        },
        EnrpType::InitTakeoverAck => M::InitTakeoverAck {
            servers,
            target: read_pr_id(r, "target server ID")?,
        },
        EnrpType::TakeoverServer => M::TakeoverServer {
            servers,
            target: read_pr_id(r, "target server ID")?,
        },
        EnrpType::Error => M::Error {
            servers,
            causes: decode_operation_error(r.expect(ctx, ParamType::OperationError)?, ctx)?,
        },
    })
}

impl fmt::Display for EnrpMessage {
    /// A one-line summary in the spirit of Wireshark's Info column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EnrpMessage as M;
        f.write_str(self.message_type().name())?;
        let flag = |f: &mut fmt::Formatter<'_>, on: bool, name: &str| {
            if on { write!(f, " [{name}]") } else { Ok(()) }
        };
        match self {
            M::Presence { reply_required, .. } => flag(f, *reply_required, "R")?,
            M::HandleTableRequest {
                own_children_only, ..
            } => flag(f, *own_children_only, "W")?,
            M::HandleTableResponse {
                rejected,
                more_to_send,
                ..
            } => {
                flag(f, *rejected, "R")?;
                flag(f, *more_to_send, "M")?;
            }
            M::HandleUpdate {
                takeover_suggested, ..
            } => flag(f, *takeover_suggested, "T")?,
            M::ListResponse { rejected, .. } => flag(f, *rejected, "R")?,
            _ => {}
        }
        let s = self.servers();
        write!(f, " from={}", s.sender)?;
        if let Some(r) = s.receiver {
            write!(f, " to={r}")?;
        }
        match self {
            M::Presence {
                checksum,
                server_info,
                ..
            } => {
                if let Some(c) = checksum {
                    write!(f, " checksum={c:#06x}")?;
                }
                if let Some(s) = server_info {
                    write!(f, " {}", s.transport)?;
                }
                Ok(())
            }
            M::HandleTableRequest { .. } | M::ListRequest { .. } => Ok(()),
            M::HandleTableResponse { pools, .. } => {
                for p in pools {
                    write!(f, " handle={}", p.pool_handle)?;
                    fmt_pes(f, &p.pool_elements)?;
                }
                Ok(())
            }
            M::HandleUpdate {
                action,
                pool_handle,
                pool_element,
                ..
            } => {
                let a = match action {
                    UpdateAction::AddPe => "ADD_PE",
                    UpdateAction::DelPe => "DEL_PE",
                };
                write!(f, " {a} handle={pool_handle} {pool_element}")
            }
            M::ListResponse { peers, .. } => {
                for p in peers {
                    write!(f, " {{{p}}}")?;
                }
                Ok(())
            }
            M::InitTakeover { target, .. }
            | M::InitTakeoverAck { target, .. }
            | M::TakeoverServer { target, .. } => write!(f, " target={target}"),
            M::Error { causes, .. } => {
                f.write_str(" ")?;
                fmt_causes(f, causes)
            }
        }
    }
}

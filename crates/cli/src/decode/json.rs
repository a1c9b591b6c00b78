//! Decoded messages as JSON, built from the typed message.
//!
//! The representation is the CLI's, not the wire crate's: message types use
//! the RFC names, flags are keyed by their RFC letter, identifiers are hex
//! strings as Wireshark shows them, and opaque bytes are lower-case hex.

use super::hex;
use rserpool_wire::{
    AsapMessage, DecodeError, DecodeErrorKind, EnrpMessage, ErrorCause, Message, ParamType, Policy,
    PoolElement, PoolEntry, PoolHandle, PrId, Protocol, ServerInformation, TransportAddress,
    TransportUse, UpdateAction, UserTransport,
};
use serde_json::{Map, Value, json};

/// Adds `protocol`, `type`, `type_code`, `flags` and `fields` of `msg` to `out`.
pub fn message(msg: &Message, out: &mut Map<String, Value>) {
    let (protocol, name, code, flags, fields) = match msg {
        Message::Asap(m) => {
            let (flags, fields) = asap(m);
            let t = m.message_type();
            ("ASAP", t.name(), t as u8, flags, fields)
        }
        Message::Enrp(m) => {
            let (flags, fields) = enrp(m);
            let t = m.message_type();
            ("ENRP", t.name(), t as u8, flags, fields)
        }
    };
    out.insert("protocol".into(), protocol.into());
    out.insert("type".into(), name.into());
    out.insert("type_code".into(), code.into());
    out.insert("flags".into(), Value::Object(flags));
    out.insert("fields".into(), Value::Object(fields));
}

/// A decoding error: offset, a stable kind name and the readable text.
pub fn error(protocol: &str, e: &DecodeError) -> Value {
    json!({
        "protocol": protocol,
        "offset": e.offset,
        "kind": error_kind(&e.kind),
        "message": e.kind.to_string(),
    })
}

/// A stable snake_case name for the kind of a decoding error.
pub fn error_kind(kind: &DecodeErrorKind) -> &'static str {
    use DecodeErrorKind::*;
    match kind {
        Truncated { .. } => "truncated",
        BadLength { .. } => "bad_length",
        TrailingBytes { .. } => "trailing_bytes",
        UnknownMessageType { .. } => "unknown_message_type",
        UnrecognizedParameter { .. } => "unrecognized_parameter",
        UnexpectedParameter { .. } => "unexpected_parameter",
        MissingParameter { .. } => "missing_parameter",
        InvalidValue { .. } => "invalid_value",
        TooMany { .. } => "too_many",
        TooDeep => "too_deep",
        _ => "other",
    }
}

/// The type code and name of a skipped unrecognized parameter.
pub fn unrecognized(tlv: &[u8]) -> Value {
    let code = match tlv {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    json!({ "type": ParamType::describe(code), "parameter": hex::encode(tlv) })
}

fn flags(pairs: &[(&str, bool)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::Bool(*v)))
        .collect()
}

fn obj(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn handle(h: &PoolHandle) -> Value {
    Value::String(h.to_string())
}

fn pr_id(id: PrId) -> Value {
    Value::String(id.to_string())
}

fn opt_pr_id(id: Option<PrId>) -> Value {
    id.map_or(Value::Null, pr_id)
}

fn asap(m: &AsapMessage) -> (Map<String, Value>, Map<String, Value>) {
    use AsapMessage as M;
    match m {
        M::Registration {
            pool_handle,
            pool_element,
        } => (
            flags(&[]),
            obj(vec![
                ("pool_handle", handle(pool_handle)),
                ("pool_element", pool_element_json(pool_element)),
            ]),
        ),
        M::Deregistration { pool_handle, pe_id }
        | M::EndpointKeepAliveAck { pool_handle, pe_id }
        | M::EndpointUnreachable { pool_handle, pe_id } => (
            flags(&[]),
            obj(vec![
                ("pool_handle", handle(pool_handle)),
                ("pe_id", pe_id.to_string().into()),
            ]),
        ),
        M::RegistrationResponse {
            rejected,
            pool_handle,
            pe_id,
            error,
        } => (
            flags(&[("R", *rejected)]),
            obj(vec![
                ("pool_handle", handle(pool_handle)),
                ("pe_id", pe_id.to_string().into()),
                ("error", causes(error.as_deref())),
            ]),
        ),
        M::DeregistrationResponse {
            pool_handle,
            pe_id,
            error,
        } => (
            flags(&[]),
            obj(vec![
                ("pool_handle", handle(pool_handle)),
                ("pe_id", pe_id.to_string().into()),
                ("error", causes(error.as_deref())),
            ]),
        ),
        M::HandleResolution {
            subscribe,
            pool_handle,
            items,
        } => (
            flags(&[("S", *subscribe)]),
            obj(vec![
                ("pool_handle", handle(pool_handle)),
                ("items", items.map_or(Value::Null, Value::from)),
            ]),
        ),
        M::HandleResolutionResponse {
            accepted,
            pool_handle,
            policy,
            pool_elements,
            error,
        } => (
            flags(&[("A", *accepted)]),
            obj(vec![
                ("pool_handle", handle(pool_handle)),
                ("policy", policy.as_ref().map_or(Value::Null, policy_json)),
                (
                    "pool_elements",
                    pool_elements.iter().map(pool_element_json).collect(),
                ),
                ("error", causes(error.as_deref())),
            ]),
        ),
        M::EndpointKeepAlive {
            home,
            server_id,
            pool_handle,
            pe_id,
        } => (
            flags(&[("H", *home)]),
            obj(vec![
                ("server_id", pr_id(*server_id)),
                ("pool_handle", handle(pool_handle)),
                (
                    "pe_id",
                    pe_id.map_or(Value::Null, |id| id.to_string().into()),
                ),
            ]),
        ),
        M::ServerAnnounce {
            server_id,
            transports,
        } => (
            flags(&[]),
            obj(vec![
                ("server_id", pr_id(*server_id)),
                (
                    "transports",
                    transports.iter().map(transport_json).collect(),
                ),
            ]),
        ),
        M::Cookie { cookie } | M::CookieEcho { cookie } => (
            flags(&[]),
            obj(vec![("cookie", hex::encode(cookie).into())]),
        ),
        M::BusinessCard {
            pool_handle,
            policy,
            pool_elements,
        } => (
            flags(&[]),
            obj(vec![
                ("pool_handle", handle(pool_handle)),
                ("policy", policy.as_ref().map_or(Value::Null, policy_json)),
                (
                    "pool_elements",
                    pool_elements.iter().map(pool_element_json).collect(),
                ),
            ]),
        ),
        M::Error { causes: c } => (flags(&[]), obj(vec![("causes", causes(Some(c)))])),
    }
}

fn enrp(m: &EnrpMessage) -> (Map<String, Value>, Map<String, Value>) {
    use EnrpMessage as M;
    let s = m.servers();
    let mut fields = obj(vec![
        ("sender", pr_id(s.sender)),
        ("receiver", opt_pr_id(s.receiver)),
    ]);
    let (fl, rest) = match m {
        M::Presence {
            reply_required,
            checksum,
            server_info,
            ..
        } => (
            flags(&[("R", *reply_required)]),
            obj(vec![
                (
                    "checksum",
                    checksum.map_or(Value::Null, |c| format!("{c:#06x}").into()),
                ),
                (
                    "server_information",
                    server_info.as_ref().map_or(Value::Null, server_info_json),
                ),
            ]),
        ),
        M::HandleTableRequest {
            own_children_only, ..
        } => (flags(&[("W", *own_children_only)]), Map::new()),
        M::HandleTableResponse {
            rejected,
            more_to_send,
            pools,
            ..
        } => (
            flags(&[("R", *rejected), ("M", *more_to_send)]),
            obj(vec![("pools", pools.iter().map(pool_entry_json).collect())]),
        ),
        M::HandleUpdate {
            takeover_suggested,
            action,
            pool_handle,
            pool_element,
            ..
        } => (
            flags(&[("T", *takeover_suggested)]),
            obj(vec![
                (
                    "action",
                    match action {
                        UpdateAction::AddPe => "ADD_PE",
                        UpdateAction::DelPe => "DEL_PE",
                    }
                    .into(),
                ),
                ("pool_handle", handle(pool_handle)),
                ("pool_element", pool_element_json(pool_element)),
            ]),
        ),
        M::ListRequest { .. } => (flags(&[]), Map::new()),
        M::ListResponse {
            rejected, peers, ..
        } => (
            flags(&[("R", *rejected)]),
            obj(vec![(
                "peers",
                peers.iter().map(server_info_json).collect(),
            )]),
        ),
        M::InitTakeover { target, .. }
        | M::InitTakeoverAck { target, .. }
        | M::TakeoverServer { target, .. } => (flags(&[]), obj(vec![("target", pr_id(*target))])),
        M::Error { causes: c, .. } => (flags(&[]), obj(vec![("causes", causes(Some(c)))])),
    };
    fields.extend(rest);
    (fl, fields)
}

pub(crate) fn pool_entry_json(e: &PoolEntry) -> Value {
    json!({
        "pool_handle": handle(&e.pool_handle),
        "pool_elements": e.pool_elements.iter().map(pool_element_json).collect::<Vec<_>>(),
    })
}

fn pool_element_json(pe: &PoolElement) -> Value {
    json!({
        "pe_id": pe.id.to_string(),
        "home_registrar": opt_pr_id(pe.home_registrar),
        "registration_life": pe.registration_life.0,
        "user_transport": match &pe.user_transport {
            UserTransport::Address(t) => transport_json(t),
            UserTransport::Opaque(b) => json!({ "opaque": hex::encode(b) }),
        },
        "policy": policy_json(&pe.policy),
        "asap_transport": pe.asap_transport.as_ref().map_or(Value::Null, transport_json),
    })
}

pub(crate) fn server_info_json(s: &ServerInformation) -> Value {
    json!({ "server_id": pr_id(s.server_id), "transport": transport_json(&s.transport) })
}

fn transport_json(t: &TransportAddress) -> Value {
    let mut o = obj(vec![
        ("protocol", t.protocol.name().into()),
        ("port", t.port.into()),
        (
            "addresses",
            t.addresses.iter().map(|a| a.to_string()).collect(),
        ),
    ]);
    match t.protocol {
        Protocol::Sctp(u) => {
            let u = match u {
                TransportUse::DataOnly => "data",
                TransportUse::DataPlusControl => "data+control",
            };
            o.insert("transport_use".into(), u.into());
        }
        Protocol::Dccp { service_code } => {
            o.insert("service_code".into(), service_code.into());
        }
        Protocol::Tcp | Protocol::Udp | Protocol::UdpLite => {}
    }
    Value::Object(o)
}

fn policy_json(p: &Policy) -> Value {
    use Policy::*;
    let t = p.policy_type();
    let mut o = obj(vec![
        ("type", t.short_name().into()),
        ("code", format!("{:#010x}", t.code()).into()),
    ]);
    let values: Vec<(&str, u32)> = match *p {
        RoundRobin | Random => vec![],
        WeightedRoundRobin { weight } | WeightedRandom { weight } => vec![("weight", weight)],
        Priority { priority } => vec![("priority", priority)],
        LeastUsed { load } | RandomizedLeastUsed { load } => vec![("load", load)],
        LeastUsedWithDegradation { load, degradation }
        | PriorityLeastUsed { load, degradation }
        | RandomizedPriorityLeastUsed { load, degradation }
        | RandomizedLeastUsedWithDegradation { load, degradation }
        | PriorityLeastUsedWithDegradation { load, degradation }
        | RandomizedPriorityLeastUsedWithDegradation { load, degradation } => {
            vec![("load", load), ("degradation", degradation)]
        }
        WeightedRandomDpf {
            weight,
            weight_dpf,
            distance,
        } => vec![
            ("weight", weight),
            ("weight_dpf", weight_dpf),
            ("distance", distance),
        ],
        LeastUsedDpf {
            load,
            load_dpf,
            distance,
        } => vec![
            ("load", load),
            ("load_dpf", load_dpf),
            ("distance", distance),
        ],
        LeastUsedWithDegradationDpf {
            load,
            degradation,
            load_dpf,
            distance,
        } => vec![
            ("load", load),
            ("degradation", degradation),
            ("load_dpf", load_dpf),
            ("distance", distance),
        ],
        Unknown { ref data, .. } => {
            o.insert("data".into(), hex::encode(data).into());
            vec![]
        }
    };
    for (k, v) in values {
        o.insert(k.into(), v.into());
    }
    Value::Object(o)
}

fn causes(c: Option<&[ErrorCause]>) -> Value {
    match c {
        None => Value::Null,
        Some(c) => c
            .iter()
            .map(|c| {
                json!({
                    "code": c.code.code(),
                    "name": c.code.name(),
                    "info": hex::encode(&c.info),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_update_with_all_fields() {
        let b = super::super::hex::parse_line(
            "040100600102030405060708000000000009000c4563686f506f6f6c000a004411223344aabbccdd000075300004001813880001000100080a000001000100080a0000020008000c4000000180000000000400109c400000000100080a000001",
        )
        .unwrap()
        .unwrap();
        let m = EnrpMessage::decode(&b).unwrap().message;
        let mut out = Map::new();
        message(&Message::Enrp(m), &mut out);
        let v = Value::Object(out);
        assert_eq!(v["type"], "ENRP_HANDLE_UPDATE");
        assert_eq!(v["type_code"], 4);
        assert_eq!(v["flags"], json!({"T": true}));
        let f = &v["fields"];
        assert_eq!(f["sender"], "0x01020304");
        assert_eq!(f["receiver"], "0x05060708");
        assert_eq!(f["action"], "ADD_PE");
        assert_eq!(f["pool_handle"], "EchoPool");
        let pe = &f["pool_element"];
        assert_eq!(pe["pe_id"], "0x11223344");
        assert_eq!(pe["registration_life"], 30000);
        assert_eq!(
            pe["policy"],
            json!({"type": "LU", "code": "0x40000001", "load": 0x8000_0000u32})
        );
        assert_eq!(
            pe["user_transport"],
            json!({"protocol": "SCTP", "port": 5000, "addresses": ["10.0.0.1", "10.0.0.2"], "transport_use": "data+control"})
        );
        assert_eq!(pe["asap_transport"]["port"], 40000);
    }
}

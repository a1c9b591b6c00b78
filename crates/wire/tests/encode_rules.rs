//! The encoder refuses what the wire format does not allow, leaves the
//! output buffer untouched when it does, and never produces bytes that this
//! crate's own decoder rejects: every limit the decoder enforces is also an
//! encoding error, and the largest accepted values round-trip.

use bytes::Bytes;
use rserpool_wire::limits::*;
use rserpool_wire::*;
use std::net::{IpAddr, Ipv4Addr};

fn ph() -> PoolHandle {
    PoolHandle::try_from("EchoPool").unwrap()
}

fn v4(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

fn transport(protocol: Protocol, n: u32) -> TransportAddress {
    TransportAddress {
        protocol,
        port: 1,
        addresses: (0..n).map(v4).collect(),
    }
}

fn pe(user_transport: UserTransport, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(1),
        home_registrar: None,
        registration_life: RegistrationLife::INFINITE,
        user_transport,
        policy,
        asap_transport: None,
    }
}

fn registration(pool_element: PoolElement) -> Message {
    Message::Asap(AsapMessage::Registration {
        pool_handle: ph(),
        pool_element,
    })
}

fn error_with(n: usize) -> Message {
    Message::Asap(AsapMessage::Error {
        causes: vec![ErrorCause::new(CauseCode::LackOfResources); n],
    })
}

/// Encodes into a buffer that already holds data; on error the buffer must
/// be exactly as before.
fn encode_after_prefix(m: &Message) -> Result<Vec<u8>, EncodeError> {
    let prefix = vec![0xAB; 5];
    let mut out = prefix.clone();
    match m.encode(&mut out) {
        Ok(()) => {
            assert_eq!(&out[..5], &prefix[..]);
            Ok(out.split_off(5))
        }
        Err(e) => {
            assert_eq!(out, prefix, "output changed by a failed encode: {e}");
            Err(e)
        }
    }
}

fn assert_round_trips(m: &Message) {
    let b = encode_after_prefix(m).unwrap_or_else(|e| panic!("{m}: {e}"));
    let d = Message::decode_ppid(m.ppid(), &Bytes::from(b))
        .unwrap()
        .unwrap_or_else(|e| panic!("{m}: {e}"));
    assert_eq!(&d.message, m);
}

/// W-16, W-17, W-19, W-20, W-23: transport rules are encoding errors.
#[test]
fn w16_w17_w20_w23_invalid_transports_are_refused() {
    let lu = Policy::LeastUsed { load: 0 };
    let cases = [
        // An SCTP transport needs at least one address, others exactly one.
        registration(pe(
            UserTransport::Address(transport(Protocol::Sctp(TransportUse::DataOnly), 0)),
            lu.clone(),
        )),
        registration(pe(
            UserTransport::Address(transport(
                Protocol::Sctp(TransportUse::DataOnly),
                MAX_ADDRESSES as u32 + 1,
            )),
            lu.clone(),
        )),
        registration(pe(
            UserTransport::Address(transport(Protocol::Tcp, 2)),
            lu.clone(),
        )),
        registration(pe(
            UserTransport::Address(transport(Protocol::Udp, 0)),
            lu.clone(),
        )),
        registration(pe(
            UserTransport::Address(transport(Protocol::Dccp { service_code: 1 }, 2)),
            lu.clone(),
        )),
        // The ASAP transport of a PE is SCTP.
        registration(PoolElement {
            asap_transport: Some(transport(Protocol::UdpLite, 1)),
            ..pe(UserTransport::Opaque(Bytes::new()), lu.clone())
        }),
        // Server Information carries an SCTP transport.
        Message::Enrp(EnrpMessage::ListResponse {
            servers: Servers {
                sender: PrId::new(1).unwrap(),
                receiver: None,
            },
            rejected: false,
            peers: vec![ServerInformation {
                server_id: PrId::new(2).unwrap(),
                transport: transport(Protocol::Tcp, 1),
            }],
        }),
        Message::Asap(AsapMessage::ServerAnnounce {
            server_id: PrId::new(1).unwrap(),
            transports: vec![transport(Protocol::Tcp, 1); MAX_ANNOUNCED_TRANSPORTS + 1],
        }),
    ];
    for m in &cases {
        let e = encode_after_prefix(m).expect_err(&m.to_string());
        assert!(matches!(e, EncodeError::Invalid { .. }), "{m}: {e}");
    }
    // The limits themselves are fine.
    assert_round_trips(&registration(pe(
        UserTransport::Address(transport(
            Protocol::Sctp(TransportUse::DataPlusControl),
            MAX_ADDRESSES as u32,
        )),
        lu,
    )));
    assert_round_trips(&Message::Asap(AsapMessage::ServerAnnounce {
        server_id: PrId::new(1).unwrap(),
        transports: vec![transport(Protocol::Tcp, 1); MAX_ANNOUNCED_TRANSPORTS],
    }));
}

/// Lists the format requires to be non-empty are encoding errors when empty.
#[test]
fn empty_mandatory_lists_are_refused() {
    let servers = Servers {
        sender: PrId::new(1).unwrap(),
        receiver: None,
    };
    let cases = [
        Message::Asap(AsapMessage::BusinessCard {
            pool_handle: ph(),
            policy: None,
            pool_elements: vec![],
        }),
        error_with(0),
        Message::Asap(AsapMessage::RegistrationResponse {
            rejected: true,
            pool_handle: ph(),
            pe_id: PeId(1),
            error: Some(vec![]),
        }),
        Message::Enrp(EnrpMessage::Error {
            servers,
            causes: vec![],
        }),
        Message::Enrp(EnrpMessage::HandleTableResponse {
            servers,
            rejected: false,
            more_to_send: false,
            pools: vec![PoolEntry {
                pool_handle: ph(),
                pool_elements: vec![],
            }],
        }),
    ];
    for m in &cases {
        let e = encode_after_prefix(m).expect_err(&m.to_string());
        assert!(matches!(e, EncodeError::Invalid { .. }), "{m}: {e}");
    }
}

/// Regression: an Operation Error with more than MAX_CAUSES causes used to be
/// encoded, and this crate's decoder then refused the message it had sent
/// (TooMany error causes). The encoder now refuses it.
#[test]
fn more_causes_than_the_decoder_accepts_are_refused() {
    assert_round_trips(&error_with(MAX_CAUSES));
    let m = error_with(MAX_CAUSES + 1);
    let e = encode_after_prefix(&m).expect_err("65 causes encoded");
    assert!(matches!(e, EncodeError::Invalid { .. }), "{e}");
}

/// Regression: `Policy::Unknown` with the code of a policy this crate knows
/// was encoded as that policy with whatever data it held, so a wrong value
/// count gave a policy parameter this crate's decoder refuses (and a right
/// one decoded as a different variant). The encoder now refuses it; the
/// known variant is the one way to send a known policy.
#[test]
fn unknown_policy_with_a_known_code_is_refused() {
    for (code, data) in [
        (0x4000_0001u32, &[1u8, 2, 3][..]),
        (0x4000_0001, &[0, 0, 0, 1][..]),
        (0x0000_0001, &[][..]),
    ] {
        let m = registration(pe(
            UserTransport::Opaque(Bytes::new()),
            Policy::Unknown {
                code,
                data: data.into(),
            },
        ));
        let e = encode_after_prefix(&m).expect_err(&m.to_string());
        assert!(matches!(e, EncodeError::Invalid { .. }), "{code:#x}: {e}");
    }
    // The constructor the registrar uses for its Invalid Values cause maps a
    // known code wrapped in `PolicyType::Unknown` to its variant.
    assert_eq!(
        Policy::from_type_default(PolicyType::Unknown(0x4000_0001)),
        Policy::LeastUsed { load: 0 }
    );
    assert!(
        !ErrorCause::inconsistent_policy(&Policy::from_type_default(PolicyType::Unknown(1)))
            .info
            .is_empty()
    );
    // An unknown code still goes through with its data.
    assert_round_trips(&registration(pe(
        UserTransport::Opaque(Bytes::new()),
        Policy::Unknown {
            code: 0x8000_0001,
            data: Box::new([1, 2, 3]),
        },
    )));
}

/// W-02, W-26: the largest message the length field holds is encoded; one
/// byte more is a `TooLong` error, not a truncated length.
#[test]
fn w02_w26_message_size_limit() {
    // Header 4 + Cookie header 4 + cookie, padded: at most 65532 bytes.
    let fits = Message::Asap(AsapMessage::Cookie {
        cookie: Bytes::from(vec![0x5A; 65524]),
    });
    assert_round_trips(&fits);
    assert_eq!(encode_after_prefix(&fits).unwrap().len(), 65532);
    let too_long = Message::Asap(AsapMessage::Cookie {
        cookie: Bytes::from(vec![0x5A; 65525]),
    });
    let e = encode_after_prefix(&too_long).unwrap_err();
    assert!(matches!(e, EncodeError::TooLong { .. }), "{e}");
    // A parameter that alone passes 16 bits.
    let huge = Message::Asap(AsapMessage::CookieEcho {
        cookie: Bytes::from(vec![0; 70000]),
    });
    let e = encode_after_prefix(&huge).unwrap_err();
    assert!(
        matches!(
            e,
            EncodeError::TooLong {
                what: "parameter",
                ..
            }
        ),
        "{e}"
    );
    // Many PEs: the message, not a parameter, overflows.
    let pes = vec![
        pe(
            UserTransport::Address(transport(Protocol::Sctp(TransportUse::DataOnly), 30)),
            Policy::RoundRobin,
        );
        300
    ];
    let e = encode_after_prefix(&Message::Asap(AsapMessage::HandleResolutionResponse {
        accepted: false,
        pool_handle: ph(),
        policy: None,
        pool_elements: pes,
        error: None,
    }))
    .unwrap_err();
    assert!(
        matches!(
            e,
            EncodeError::TooLong {
                what: "message",
                ..
            }
        ),
        "{e}"
    );
}

/// W-27: pool handles of 1 and MAX_POOL_HANDLE_LEN arbitrary bytes; 0 and
/// one more are refused by the constructor.
#[test]
fn w27_pool_handle_length_limits() {
    assert!(PoolHandle::new(Bytes::new()).is_err());
    assert!(PoolHandle::new(vec![0u8; MAX_POOL_HANDLE_LEN + 1]).is_err());
    for h in [vec![0x00], vec![0xFF; MAX_POOL_HANDLE_LEN]] {
        assert_round_trips(&Message::Asap(AsapMessage::Deregistration {
            pool_handle: PoolHandle::new(h).unwrap(),
            pe_id: PeId(0),
        }));
    }
}

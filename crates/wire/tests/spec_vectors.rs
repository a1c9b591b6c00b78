//! The hex test vectors of `docs/spec/WIRE.md` §11 (each checked there
//! with Wireshark): every one decodes to the expected fields and re-encodes to
//! exactly the same bytes.

use rserpool_wire::*;
use std::net::IpAddr;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn asap(s: &str) -> AsapMessage {
    let b = hex(s);
    let d = AsapMessage::decode(&b).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(d.message.to_vec().unwrap(), b, "re-encoding of {s}");
    d.message
}

fn enrp(s: &str) -> EnrpMessage {
    let b = hex(s);
    let d = EnrpMessage::decode(&b).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(d.message.to_vec().unwrap(), b, "re-encoding of {s}");
    d.message
}

fn pr(v: u32) -> PrId {
    PrId::new(v).unwrap()
}

#[test]
fn handle_update_with_takeover_flag() {
    let m = enrp(
        "040100600102030405060708000000000009000c4563686f506f6f6c000a004411223344aabbccdd000075300004001813880001000100080a000001000100080a0000020008000c4000000180000000000400109c400000000100080a000001",
    );
    let EnrpMessage::HandleUpdate {
        servers,
        takeover_suggested,
        action,
        pool_handle,
        pool_element: pe,
    } = m
    else {
        panic!("{m:?}")
    };
    assert!(takeover_suggested);
    assert_eq!(servers.sender, pr(0x01020304));
    assert_eq!(servers.receiver, Some(pr(0x05060708)));
    assert_eq!(action, UpdateAction::AddPe);
    assert_eq!(pool_handle.as_bytes(), b"EchoPool");
    assert_eq!(pe.id, PeId(0x11223344));
    assert_eq!(pe.home_registrar, Some(pr(0xaabbccdd)));
    assert_eq!(pe.registration_life, RegistrationLife(30000));
    assert_eq!(pe.policy, Policy::LeastUsed { load: 0x8000_0000 });
    let UserTransport::Address(t) = &pe.user_transport else {
        panic!()
    };
    assert_eq!(t.protocol, Protocol::Sctp(TransportUse::DataPlusControl));
    assert_eq!(t.port, 5000);
    assert_eq!(
        t.addresses,
        vec![
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "10.0.0.2".parse().unwrap()
        ]
    );
    let a = pe.asap_transport.unwrap();
    assert_eq!(a.port, 40000);
}

#[test]
fn presence_and_table_messages() {
    let m = enrp(
        "0101002c0102030400000000000f0006beef0000000b0018010203040004001026ad0000000100080a000009",
    );
    let EnrpMessage::Presence {
        reply_required,
        checksum,
        server_info,
        servers,
    } = m
    else {
        panic!()
    };
    assert!(reply_required);
    assert_eq!(servers.receiver, None);
    assert_eq!(checksum, Some(0xbeef));
    let si = server_info.unwrap();
    assert_eq!(si.server_id, pr(0x01020304));
    assert_eq!(si.transport.port, 9901);

    assert!(matches!(
        enrp("0201000c0000000100000002"),
        EnrpMessage::HandleTableRequest {
            own_children_only: true,
            ..
        }
    ));
    assert!(matches!(
        enrp("0301000c0000000200000001"),
        EnrpMessage::HandleTableResponse {
            rejected: true,
            more_to_send: false,
            ..
        }
    ));
    let m = enrp("07000010000000010000000000000009");
    assert_eq!(
        m,
        EnrpMessage::InitTakeover {
            servers: Servers {
                sender: pr(1),
                receiver: None
            },
            target: pr(9)
        }
    );
}

#[test]
fn asap_vectors() {
    assert_eq!(
        asap("050000180009000c4563686f506f6f6c803f000800000003"),
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: PoolHandle::try_from("EchoPool").unwrap(),
            items: Some(3)
        }
    );
    let m = asap("060000180009000c4563686f506f6f6c000c000800090004");
    let AsapMessage::HandleResolutionResponse { error, .. } = m else {
        panic!()
    };
    assert_eq!(error.unwrap()[0].code, CauseCode::UnknownPoolHandle);
    assert_eq!(
        asap("0701001caabbccdd0009000c4563686f506f6f6c000e000811223344"),
        AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: pr(0xaabbccdd),
            pool_handle: PoolHandle::try_from("EchoPool").unwrap(),
            pe_id: Some(PeId(0x11223344))
        }
    );
    assert!(matches!(
        asap("080000180009000c4563686f506f6f6c000e000811223344"),
        AsapMessage::EndpointKeepAliveAck {
            pe_id: PeId(0x11223344),
            ..
        }
    ));
    assert_eq!(
        asap("0b000010000d00096162636465000000"),
        AsapMessage::Cookie {
            cookie: bytes::Bytes::from_static(b"abcde")
        }
    );
    let m = asap("0e000014000c00100001000c4444000778797a00");
    let AsapMessage::Error { causes } = m else {
        panic!()
    };
    assert_eq!(causes[0].code, CauseCode::UnrecognizedParameter);
    assert_eq!(&causes[0].info[..], &hex("4444000778797a00")[..]);
}

#[test]
fn unknown_parameter_actions() {
    // HANDLE_RESOLUTION with an extra TLV of each action class (W-09..W-12).
    let with = |t: u16| {
        let mut b = hex("050000180009000c4563686f506f6f6c");
        b.extend_from_slice(&t.to_be_bytes());
        b.extend_from_slice(&[0, 8, 1, 2, 3, 4]);
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        AsapMessage::decode(&b)
    };
    let e = with(0x0033).unwrap_err();
    assert!(matches!(
        e.kind,
        DecodeErrorKind::UnrecognizedParameter { report: false, .. }
    ));
    assert!(e.report().is_none());
    assert_eq!(e.offset, 16);
    let e = with(0x4033).unwrap_err();
    let cause = e.report().unwrap();
    assert_eq!(cause.code, CauseCode::UnrecognizedParameter);
    assert_eq!(&cause.info[..], &[0x40, 0x33, 0, 8, 1, 2, 3, 4]);
    let d = with(0x8033).unwrap();
    assert!(d.unrecognized.is_empty() && d.report().is_none());
    let d = with(0xC033).unwrap();
    assert_eq!(d.report().unwrap().len(), 1);
}

#[test]
fn unknown_message_types() {
    let e = AsapMessage::decode(&[0x30, 0, 0, 4]).unwrap_err();
    assert!(e.report().is_none());
    let e = EnrpMessage::decode(&[0x70, 0, 0, 4]).unwrap_err();
    let c = e.report().unwrap();
    assert_eq!(c.code, CauseCode::UnrecognizedMessage);
    assert_eq!(&c.info[..], &[0x70, 0, 0, 4]);
}

#[test]
fn checksum_vectors() {
    let h = PoolHandle::try_from("EchoPool").unwrap();
    assert_eq!(
        PeChecksum::compute([(&h, PeId(0x11223344))]).value(),
        0x4DEB
    );
}

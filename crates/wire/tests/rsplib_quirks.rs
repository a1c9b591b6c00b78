//! Encodings the reference implementation (rsplib) really sends, found by
//! scripts/vm/rsplib-interop.sh, that a strict reading would refuse.

use rserpool_wire::*;

/// One Server Information parameter (RFC 5354 §3.11): `id`, SCTP port 9901,
/// one IPv4 address.
fn server_info(id: u32, ip: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0x00, 0x0b, 0x00, 24];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x00, 0x04, 0x00, 16, 0x26, 0xad, 0x00, 0x00]);
    p.extend_from_slice(&[0x00, 0x01, 0x00, 8]);
    p.extend_from_slice(&ip);
    p
}

/// An ENRP_LIST_RESPONSE from 0x0a0a0a0a to 0x0b0b0b0b listing `entries`.
fn list_response(entries: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = entries.concat();
    let mut m = vec![0x06, 0x00];
    m.extend_from_slice(&u16::try_from(12 + body.len()).unwrap().to_be_bytes());
    m.extend_from_slice(&0x0a0a_0a0a_u32.to_be_bytes());
    m.extend_from_slice(&0x0b0b_0b0b_u32.to_be_bytes());
    m.extend_from_slice(&body);
    m
}

/// E-LIST: rsplib's ENRP_LIST_RESPONSE names a static peer it has not heard
/// from yet with server ID 0 (seen as "invalid server ID in server
/// information: 0x0" from a real rspregistrar). That entry is skipped; the
/// message and the identified peers in it are kept.
#[test]
fn list_response_skips_rsplib_unidentified_static_peer() {
    let bytes = list_response(&[
        server_info(0, [10, 0, 0, 1]),
        server_info(0x1234_5678, [10, 0, 0, 2]),
    ]);
    let d = EnrpMessage::decode(&bytes).unwrap();
    let EnrpMessage::ListResponse {
        peers, rejected, ..
    } = &d.message
    else {
        panic!("{}", d.message)
    };
    assert!(!rejected);
    assert_eq!(peers.len(), 1, "{}", d.message);
    assert_eq!(peers[0].server_id.get(), 0x1234_5678);
}

/// Server ID 0 stays invalid where it names the subject of the message.
#[test]
fn server_id_zero_still_refused_as_takeover_target() {
    let mut m = vec![0x07, 0x00, 0x00, 16];
    m.extend_from_slice(&0x0a0a_0a0a_u32.to_be_bytes());
    m.extend_from_slice(&0x0b0b_0b0b_u32.to_be_bytes());
    m.extend_from_slice(&0_u32.to_be_bytes());
    assert!(EnrpMessage::decode(&m).is_err());
}

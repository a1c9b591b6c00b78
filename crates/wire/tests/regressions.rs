//! Inputs found by fuzzing (`scripts/fuzz.sh`, docs/FUZZING.md), each kept
//! after its fix so that it stays fixed.

use rserpool_wire::*;

/// An ASAP_COOKIE whose Cookie parameter has length `param_len`, without trailing padding.
fn cookie_message(param_len: usize) -> Vec<u8> {
    let msg_len = param_len + 4;
    let mut m = vec![0x0b, 0x00];
    m.extend_from_slice(&u16::try_from(msg_len).unwrap().to_be_bytes());
    m.extend_from_slice(&[0x00, 0x0d]);
    m.extend_from_slice(&u16::try_from(param_len).unwrap().to_be_bytes());
    m.resize(msg_len, b'c');
    m
}

/// W-02, W-26 / A-43: the largest cookie a message can carry decodes and is
/// encoded (echoed) byte for byte.
#[test]
fn w02_w26_largest_cookie_round_trips() {
    let bytes = cookie_message(65528);
    assert_eq!(bytes.len(), 65532);
    let d = AsapMessage::decode(&bytes).unwrap();
    let AsapMessage::Cookie { cookie } = &d.message else {
        panic!("{}", d.message)
    };
    assert_eq!(cookie.len(), 65524);
    assert_eq!(d.message.to_vec().unwrap(), bytes);
}

/// W-02, W-03: a cookie just below the limit, sent without its padding, is
/// encoded again with the padding, and still fits the length field.
#[test]
fn w02_w03_unpadded_cookie_below_limit_reencodes() {
    for param_len in 65525..=65527 {
        let bytes = cookie_message(param_len);
        let d = AsapMessage::decode(&bytes).unwrap_or_else(|e| panic!("{param_len}: {e}"));
        let again = d
            .message
            .to_vec()
            .unwrap_or_else(|e| panic!("{param_len}: {e}"));
        assert_eq!(again.len(), 65532);
        assert_eq!(AsapMessage::decode(&again).unwrap().message, d.message);
    }
}

/// Round-trip property of the asap fuzz target, on a hand-built input (the
/// fuzzer's mutations stay under 4096 bytes): a message length of 65533-65535
/// was accepted, but the message, padded to a multiple of four, no longer fits
/// the 16-bit length field, so `to_vec` failed and a PU could not echo such a
/// cookie. Such lengths are now a clear error at the length field.
#[test]
fn message_length_whose_padding_passes_16_bits_is_rejected() {
    for msg_len in 65533..=65535 {
        let bytes = cookie_message(msg_len - 4);
        let e = AsapMessage::decode(&bytes).unwrap_err();
        assert_eq!(e.offset, 2, "{e}");
        assert_eq!(
            e.kind,
            DecodeErrorKind::BadLength {
                what: "message",
                found: msg_len,
                min: 4,
                max: 65532,
            }
        );
        // ENRP shares the common header (RFC 5354 §4) and its check.
        let mut enrp = bytes.clone();
        enrp[0] = 0x0a;
        let e = EnrpMessage::decode(&enrp).unwrap_err();
        assert_eq!(e.offset, 2, "{e}");
        assert!(
            matches!(
                e.kind,
                DecodeErrorKind::BadLength {
                    what: "message",
                    ..
                }
            ),
            "{e}"
        );
    }
}

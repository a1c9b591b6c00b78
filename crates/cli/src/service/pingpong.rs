//! `pingpong`: every message is answered `pong N`; N lives in the cookie.
//!
//! Two forms, told apart by the PPID. Text (any PPID but the one below):
//! each message is answered `pong N`. The reference implementation's
//! PingPong protocol (PPID 0x29097602, 33 in older versions; Wireshark's
//! `pingpongprotocol`): a Ping (type 1, flags, length of the whole message,
//! MessageNo, data) is answered with a Pong (type 2, flags, length,
//! MessageNo, ReplyNo, the same data), so rsplib's `pingpongclient` can use
//! this PE. Either way N, the ReplyNo, counts the session's answers and
//! continues across a failover from the cookie.

use super::checkpoint::{Checkpoint, restore};
use bytes::{BufMut, Bytes, BytesMut};
use rserpool::CookieSigner;
use rserpool::pe::{Received, Session};

const NAME: &str = "pingpong";
/// The PingPong protocol's PPID.
pub const PPID: u32 = 0x2909_7602;
/// Its PPID in rsplib versions before the IANA-style numbers.
pub const OLD_PPID: u32 = 33;
const PING: u8 = 1;
const PONG: u8 = 2;
const HEADER: usize = 4;

/// A Ping's MessageNo and data, if `m` is one.
fn ping(m: &[u8]) -> Option<(u64, &[u8])> {
    if m.len() < HEADER + 8 || m[0] != PING {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([m[2], m[3]]));
    if len < HEADER + 8 || len > m.len() {
        return None;
    }
    let no = u64::from_be_bytes(m[4..12].try_into().ok()?);
    Some((no, &m[12..len]))
}

fn pong(message_no: u64, reply_no: u64, data: &[u8]) -> Option<Bytes> {
    let len = u16::try_from(HEADER + 16 + data.len()).ok()?;
    let mut b = BytesMut::with_capacity(usize::from(len));
    b.put_u8(PONG);
    b.put_u8(0);
    b.put_u16(len);
    b.put_u64(message_no);
    b.put_u64(reply_no);
    b.put_slice(data);
    Some(b.freeze())
}

pub async fn serve(mut session: Session, signer: &CookieSigner) {
    let mut count: u64 = 0;
    let mut binary = 0u64;
    while let Some(r) = session.recv().await {
        match r {
            Received::CookieEcho(cookie) => {
                if let Some(c) = restore(&cookie, signer, NAME) {
                    count = c.number("count").unwrap_or(0);
                    tracing::info!("{} resumed at pong {count}", session.id());
                }
            }
            Received::Data { ppid, data } => {
                let answer = if ppid == PPID || ppid == OLD_PPID {
                    binary += 1;
                    match ping(&data) {
                        Some((no, payload)) => pong(no, count + 1, payload),
                        None => {
                            tracing::warn!("{}: malformed Ping dropped", session.id());
                            continue;
                        }
                    }
                } else {
                    Some(Bytes::from(format!("pong {}", count + 1)))
                };
                let Some(answer) = answer else {
                    continue;
                };
                count += 1;
                // The answer, then the state that includes it: the pool
                // user keeps only the newest cookie, and both leave in one
                // flush (one SCTP packet).
                let cookie = Checkpoint::new(NAME).set("count", count).seal(signer);
                if session.send_with(ppid, answer, false).await.is_err()
                    || session.set_cookie(cookie).await.is_err()
                {
                    return;
                }
            }
            Received::BusinessCard { .. } => {}
        }
    }
    if binary > 0 {
        tracing::info!(
            "{}: {binary} PingPong protocol pings answered, last ReplyNo {count}",
            session.id()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_answered_by_a_pong_with_the_same_number_and_data() {
        let mut m = vec![PING, 0, 0, 15];
        m.extend_from_slice(&7u64.to_be_bytes());
        m.extend_from_slice(b"abc");
        let (no, data) = ping(&m).unwrap();
        assert_eq!((no, data), (7, &b"abc"[..]));
        let p = pong(no, 3, data).unwrap();
        assert_eq!(p[0], PONG);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 23);
        assert_eq!(&p[4..12], &7u64.to_be_bytes());
        assert_eq!(&p[12..20], &3u64.to_be_bytes());
        assert_eq!(&p[20..], b"abc");
    }

    #[test]
    fn truncated_or_foreign_messages_are_no_pings() {
        assert!(ping(&[PING, 0, 0, 12, 0, 0]).is_none());
        let mut m = vec![PONG, 0, 0, 12];
        m.extend_from_slice(&1u64.to_be_bytes());
        assert!(ping(&m).is_none());
        let mut m = vec![PING, 0, 0, 40];
        m.extend_from_slice(&1u64.to_be_bytes());
        assert!(ping(&m).is_none(), "length beyond the message");
    }
}

//! `chargen`: N lines of the RFC 864 pattern per request; where the
//! pattern stands lives in the cookie.

use super::checkpoint::{Checkpoint, restore};
use super::request_text;
use rserpool::CookieSigner;
use rserpool::pe::{Received, Session};

const NAME: &str = "chargen";
const MAX_LINES: u64 = 1000;
/// RFC 864: 72 characters of the 95 printable ASCII ones, each line
/// starting one character later.
const WIDTH: usize = 72;

/// Line `n` of the pattern.
fn line(n: u64) -> String {
    (0..WIDTH)
        .map(|i| char::from(b' ' + ((n as usize + i) % 95) as u8))
        .collect()
}

pub async fn serve(mut session: Session, signer: &CookieSigner) {
    let mut next: u64 = 0;
    while let Some(r) = session.recv().await {
        match r {
            Received::CookieEcho(cookie) => {
                if let Some(c) = restore(&cookie, signer, NAME) {
                    next = c.number("next").unwrap_or(0);
                }
            }
            Received::Data { ppid, data } => {
                let n = request_text(&data)
                    .parse::<u64>()
                    .unwrap_or(1)
                    .clamp(1, MAX_LINES);
                let text: Vec<String> = (next..next + n).map(line).collect();
                next += n;
                let cookie = Checkpoint::new(NAME).set("next", next).seal(signer);
                if session
                    .send_with(ppid, text.join("\n"), false)
                    .await
                    .is_err()
                    || session.set_cookie(cookie).await.is_err()
                {
                    return;
                }
            }
            Received::BusinessCard { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pattern_shifts_by_one_per_line_and_wraps_after_95() {
        assert!(super::line(0).starts_with(" !\"#$%"));
        assert!(super::line(1).starts_with("!\"#$%&"));
        assert_eq!(super::line(95), super::line(0));
        assert_eq!(super::line(3).len(), 72);
    }
}

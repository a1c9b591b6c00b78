//! `pingpong`: every message is answered `pong N`; N lives in the cookie.

use super::checkpoint::{Checkpoint, restore};
use rserpool::CookieSigner;
use rserpool::pe::{Received, Session};

const NAME: &str = "pingpong";

pub async fn serve(mut session: Session, signer: &CookieSigner) {
    let mut count: u64 = 0;
    while let Some(r) = session.recv().await {
        match r {
            Received::CookieEcho(cookie) => {
                if let Some(c) = restore(&cookie, signer, NAME) {
                    count = c.number("count").unwrap_or(0);
                    tracing::info!("{} resumed at pong {count}", session.id());
                }
            }
            Received::Data { ppid, .. } => {
                count += 1;
                // The answer, then the state that includes it: the pool
                // user keeps only the newest cookie, and both leave in one
                // flush (one SCTP packet).
                let cookie = Checkpoint::new(NAME).set("count", count).seal(signer);
                if session
                    .send_with(ppid, format!("pong {count}"), false)
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

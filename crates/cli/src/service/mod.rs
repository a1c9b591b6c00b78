//! The classic RSerPool demonstration services a pool element can offer
//! (`rserpool pe --service NAME`), each one request/answer protocol on a
//! session: one message in, at most one message back.
//!
//! What each promises a pool user that fails over (the terminal, `rserpool
//! pu`, resends what went unanswered):
//! - `echo`: every message comes back once, unchanged, in order.
//! - `discard`: messages are dropped; nothing comes back.
//! - `daytime`: every message is answered with the PE's time (RFC 3339, UTC).
//! - `chargen`: a message holding a number N (default 1, at most 1000) is
//!   answered with N lines of the RFC 864 character pattern; the pattern
//!   continues across a failover where the last answer left it.
//! - `pingpong`: every message is answered `pong N`, N counting the
//!   session's answers; the count continues across a failover.
//! - `calcapp`: a message holding a number of steps starts a computation
//!   that runs in steps and checkpoints in cookies; after a failover the
//!   next PE resumes from the last checkpoint, and the answer (`result
//!   STEPS VALUE`) is the one an undisturbed run gives.
//!
//! State that must survive a failover travels in cookies signed with the
//! pool's key ([`rserpool::CookieSigner`]), so a PE only resumes from state
//! a PE of its pool wrote.

mod calcapp;
mod chargen;
mod checkpoint;
mod pingpong;

use rserpool::CookieSigner;
use rserpool::pe::{Received, Session};
use std::sync::Arc;

/// A service (`--service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// Answers every message with itself.
    Echo,
    /// Drops every message.
    Discard,
    /// Answers every message with the time.
    Daytime,
    /// Answers N with N lines of the character generator pattern.
    Chargen,
    /// Answers every message with `pong N`, counting across failovers.
    Pingpong,
    /// Runs computations in steps, resumable from checkpoints after a failover.
    Calcapp,
}

/// Serves one session until it ends.
pub async fn serve(service: Service, session: Session, signer: Arc<CookieSigner>) {
    let id = session.id();
    let peer = session
        .peer()
        .first()
        .map_or_else(|| "?".to_string(), ToString::to_string);
    let name = format!("{service:?}").to_lowercase();
    tracing::info!("{id} from {peer} opened ({name})");
    match service {
        Service::Echo => echo(session).await,
        Service::Discard => discard(session).await,
        Service::Daytime => daytime(session).await,
        Service::Chargen => chargen::serve(session, &signer).await,
        Service::Pingpong => pingpong::serve(session, &signer).await,
        Service::Calcapp => calcapp::serve(session, &signer).await,
    }
    tracing::info!("{id} closed");
}

async fn echo(mut session: Session) {
    while let Some(r) = session.recv().await {
        if let Received::Data { ppid, data } = r {
            if session.send_with(ppid, data, false).await.is_err() {
                return;
            }
        }
    }
}

async fn discard(mut session: Session) {
    while session.recv().await.is_some() {}
}

async fn daytime(mut session: Session) {
    while let Some(r) = session.recv().await {
        if let Received::Data { ppid, .. } = r {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            if session
                .send_with(ppid, now.to_string(), false)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// The text of a request, without the line end a terminal sends.
fn request_text(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .trim_end_matches(['\r', '\n'])
        .trim()
        .to_string()
}

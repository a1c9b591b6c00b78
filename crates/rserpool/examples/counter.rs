//! A stateful service that survives the crash of its pool element: every
//! `add N` adds N to a running total kept per session. After each answer
//! the PE hands the pool user a cookie holding the total, signed with a key
//! all PEs of the pool share; when the PE dies, the session moves to
//! another PE, which verifies the cookie and continues from that total.
//!
//! Run a registrar, two servers, and the client; kill the server the
//! client talks to (it prints its PE) and watch the total carry on:
//!
//! ```sh
//! rserpool registrar --addr 127.0.0.1 &
//! cargo run -p rserpool --example counter -- server 127.0.0.1:3863 127.0.0.2:0 &
//! cargo run -p rserpool --example counter -- server 127.0.0.1:3863 127.0.0.3:0 &
//! cargo run -p rserpool --example counter -- client 127.0.0.1:3863 100
//! ```

use rserpool::pe::{PoolElement, Received};
use rserpool::pu::{Session, SessionEvent};
use rserpool::{CookieSigner, SendOptions};
use std::time::Duration;

const KEY: &[u8] = b"counter example: share a real secret among the pool's PEs";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let registrar = args
        .get(1)
        .map_or("127.0.0.1:3863", String::as_str)
        .parse()?;
    match args.first().map(String::as_str) {
        Some("server") => {
            let local = args.get(2).map_or("127.0.0.2:0", String::as_str).parse()?;
            server(registrar, local).await
        }
        Some("client") => {
            let rounds = args.get(2).map_or(Ok(100), |n| n.parse())?;
            client(registrar, rounds).await
        }
        _ => Err("usage: counter server REGISTRAR LOCAL | counter client REGISTRAR ROUNDS".into()),
    }
}

async fn server(
    registrar: std::net::SocketAddr,
    local: std::net::SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut pe = PoolElement::builder("counter")?
        .registrar(registrar)
        .local(local)
        .join()
        .await?;
    pe.registered().await?;
    println!("PE {} serving pool counter", pe.pe_id());
    while let Some(mut session) = pe.accept().await {
        tokio::spawn(async move {
            let signer = CookieSigner::new(KEY);
            let mut total: i64 = 0;
            while let Some(received) = session.recv().await {
                match received {
                    // A session that failed over: continue from its total,
                    // if a PE of this pool signed it.
                    Received::CookieEcho(cookie) => match signer.verify(&cookie) {
                        Ok(state) => {
                            total = String::from_utf8_lossy(&state).parse().unwrap_or(0);
                            println!("{} resumed at total {total}", session.id());
                        }
                        Err(e) => println!("{}: cookie refused ({e})", session.id()),
                    },
                    Received::Data { data, .. } => {
                        let text = String::from_utf8_lossy(&data);
                        let n: i64 = text
                            .trim()
                            .strip_prefix("add ")
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        total += n;
                        let answer = session.send(format!("total {total}")).await;
                        let cookie = session
                            .set_cookie(signer.sign(total.to_string().as_bytes()))
                            .await;
                        if answer.is_err() || cookie.is_err() {
                            break;
                        }
                    }
                    Received::BusinessCard { .. } => {}
                }
            }
        });
    }
    Ok(())
}

async fn client(
    registrar: std::net::SocketAddr,
    rounds: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut session = Session::builder("counter")?
        .registrar(registrar)
        .connect()
        .await?;
    // Each request is kept until its answer arrives, and sent again to the
    // next PE if the current one fails first.
    let resend = SendOptions {
        resend: true,
        ..SendOptions::default()
    };
    for _ in 0..rounds {
        let seq = session.send_with(0, "add 1", resend).await?;
        loop {
            match session.next().await.ok_or("session stopped")? {
                SessionEvent::Data { data, .. } => {
                    println!("{}", String::from_utf8_lossy(&data));
                    session.release(seq).await?;
                    break;
                }
                SessionEvent::Connected { pe_id, .. } => eprintln!("talking to PE {pe_id}"),
                SessionEvent::Failover {
                    from, to, reason, ..
                } => {
                    eprintln!("failover: PE {from} -> PE {to} ({reason})")
                }
                SessionEvent::Unavailable { reason, .. } => {
                    eprintln!("no PE available: {reason:?}")
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    session.close().await;
    Ok(())
}

//! A pool user of pool "echo": sends each word of its command line as one
//! message and prints the answers, telling of failovers on the way.
//!
//! ```sh
//! cargo run -p rserpool --example echo_client -- 127.0.0.1:3863 hello world
//! ```

use rserpool::pu::{Session, SessionEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let registrar = args.next().unwrap_or("127.0.0.1:3863".into()).parse()?;
    let words: Vec<String> = args.collect();

    let mut session = Session::builder("echo")?
        .registrar(registrar)
        .connect()
        .await?;
    for w in &words {
        session.send(w.clone()).await?;
    }
    let mut answered = 0;
    while answered < words.len() {
        match session.next().await {
            Some(SessionEvent::Data { data, .. }) => {
                println!("{}", String::from_utf8_lossy(&data));
                answered += 1;
            }
            Some(SessionEvent::Connected { pe_id, .. }) => eprintln!("connected to PE {pe_id}"),
            Some(SessionEvent::Failover {
                from, to, reason, ..
            }) => {
                eprintln!("failover: PE {from} -> PE {to} ({reason})")
            }
            Some(SessionEvent::Unavailable { reason, .. }) => {
                eprintln!("no PE available: {reason:?}");
            }
            None => break,
        }
    }
    session.close().await;
    Ok(())
}

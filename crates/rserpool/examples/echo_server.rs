//! An echo pool element: joins pool "echo" at a registrar and answers
//! every message with itself.
//!
//! ```sh
//! rserpool registrar --addr 127.0.0.1 &
//! cargo run -p rserpool --example echo_server -- 127.0.0.1:3863 127.0.0.2:0
//! cargo run -p rserpool --example echo_client -- 127.0.0.1:3863 hello world
//! ```

use rserpool::pe::{PoolElement, Received};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let mut args = std::env::args().skip(1);
    let registrar = args.next().unwrap_or("127.0.0.1:3863".into()).parse()?;
    let local = args.next().unwrap_or("127.0.0.2:0".into()).parse()?;

    let mut pe = PoolElement::builder("echo")?
        .registrar(registrar)
        .local(local)
        .join()
        .await?;
    pe.registered().await?;
    println!(
        "PE {} serving pool echo at {:?}",
        pe.pe_id(),
        pe.local_addrs()
    );

    loop {
        tokio::select! {
            session = pe.accept() => {
                let Some(mut session) = session else { break };
                tokio::spawn(async move {
                    while let Some(received) = session.recv().await {
                        if let Received::Data { ppid, data } = received {
                            if session.send_with(ppid, data, false).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Deregister before going away, so no pool user is sent here.
    pe.leave().await;
    Ok(())
}

//! The library end to end on loopback over SCTP over UDP: a registrar, two
//! pool elements serving an echo service that checkpoints in cookies, and
//! a pool user's session that fails over from one PE to the other and
//! carries the newest cookie along.
//!
//! Every node has its own 127.x.y.z address (all use UDP port 9899,
//! RFC 6951); SCTP timers are shortened so that a PE that stops is noticed
//! within a second.

use bytes::Bytes;
use rserpool::pe::{PoolElement, Received};
use rserpool::pu::{Session, SessionEvent};
use rserpool::transport::bind;
use rserpool::{Backend, FailoverReason, TransportOptions};
use rserpool_core::Instant;
use rserpool_core::registrar::{Registrar, RegistrarConfig};
use rserpool_net::runtime::Endpoints;
use rserpool_net::transport::select::BackendKind;
use rserpool_net::transport::udp::UdpConfig;
use rserpool_net::transport::{EndpointConfig, TransportConfig};
use std::net::SocketAddr;
use std::time::Duration;

fn net() -> String {
    let pid = std::process::id();
    format!("127.{}.{}", 100 + pid % 100, 240 + (pid / 100) % 15)
}

fn at(host: u8, port: u16) -> SocketAddr {
    format!("{}.{host}:{port}", net()).parse().unwrap()
}

fn fast() -> TransportOptions {
    TransportOptions {
        backend: Backend::Udp,
        tunables: TransportConfig {
            heartbeat_interval: Duration::from_millis(200),
            dead_peer_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            ..TransportConfig::default()
        },
        udp: None,
    }
}

/// A registrar with its ASAP endpoint at `host` and ENRP at `host + 1`
/// (tests in one process each use their own hosts).
fn start_registrar(host: u8) -> rserpool::node::Node<Registrar> {
    let udp = UdpConfig::default();
    let ep = |addr, listen| {
        let mut c = EndpointConfig::server([addr]).with_transport(fast().tunables);
        c.listen = listen;
        bind(BackendKind::Udp, c, &udp).expect("registrar endpoint binds")
    };
    let asap = ep(at(host, 3863), true);
    let enrp = ep(at(host + 1, 9901), true);
    let registrar = Registrar::new(
        RegistrarConfig {
            asap_addresses: vec![at(host, 3863)],
            enrp_addresses: vec![at(host + 1, 9901)],
            announce: false,
            ..RegistrarConfig::default()
        },
        7,
        Instant::ZERO,
    )
    .unwrap();
    rserpool::node::Node::spawn(
        registrar,
        Endpoints {
            asap,
            enrp: Some(enrp),
        },
        None,
    )
    .0
}

/// An echo PE that answers `n:text` and leaves the count of lines it and
/// its predecessors echoed in the cookie.
async fn echo_pe(host: u8) -> PoolElement {
    let mut pe = PoolElement::builder("echo")
        .unwrap()
        .registrar(at(1, 3863))
        .local(at(host, 0))
        .transport(fast())
        .join()
        .await
        .expect("PE starts");
    tokio::time::timeout(Duration::from_secs(5), pe.registered())
        .await
        .expect("registered in time")
        .expect("registration accepted");
    pe
}

fn serve(mut pe: PoolElement) -> tokio::task::JoinHandle<PoolElement> {
    tokio::spawn(async move {
        // Serve sessions until the test takes the PE back (aborting the task).
        while let Some(mut s) = pe.accept().await {
            tokio::spawn(async move {
                let mut count: u64 = 0;
                while let Some(r) = s.recv().await {
                    match r {
                        Received::CookieEcho(c) => {
                            count = String::from_utf8_lossy(&c).parse().unwrap_or(0);
                        }
                        Received::Data { data, .. } => {
                            count += 1;
                            let reply = format!("{count}:{}", String::from_utf8_lossy(&data));
                            if s.send(reply).await.is_err()
                                || s.set_cookie(count.to_string()).await.is_err()
                            {
                                break;
                            }
                        }
                        Received::BusinessCard { .. } => {}
                    }
                }
            });
        }
        pe
    })
}

async fn next_data(session: &mut Session, events: &mut Vec<SessionEvent>) -> Bytes {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match session.next().await.expect("session runs") {
                SessionEvent::Data { data, .. } => return data,
                other => events.push(other),
            }
        }
    })
    .await
    .expect("an answer in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_fails_over_to_the_other_pe_and_resumes_from_the_cookie() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let _registrar = start_registrar(1);
    let pe_a = echo_pe(11).await;
    let pe_b = echo_pe(12).await;
    let ids = [pe_a.pe_id(), pe_b.pe_id()];
    let mut servers = [Some(serve(pe_a)), Some(serve(pe_b))];

    let mut session = Session::builder("echo")
        .unwrap()
        .registrar(at(1, 3863))
        .local(at(21, 0))
        .transport(fast())
        .connect()
        .await
        .unwrap();
    let mut events = Vec::new();
    for i in 1..=3 {
        session.send(format!("line {i}")).await.unwrap();
        let reply = next_data(&mut session, &mut events).await;
        assert_eq!(reply, Bytes::from(format!("{i}:line {i}")));
    }
    let first = session.pe().expect("connected");
    assert!(ids.contains(&first));
    assert!(matches!(
        events[..],
        [SessionEvent::Connected {
            cookie_echoed: false,
            ..
        }]
    ));

    // The serving PE stops without deregistering: its runtime ends and
    // its associations close.
    let i = ids.iter().position(|id| *id == first).unwrap();
    let task = servers[i].take().unwrap();
    task.abort();
    let _ = task.await;

    // "line 4" may go to the PE that stopped before the session notices:
    // the session does not resend what a failed PE may have processed, so
    // the application resends what went unanswered and went to the old PE,
    // as a client of a request-reply service does.
    events.clear();
    let seq = session.send("line 4").await.unwrap();
    assert_eq!(seq, 3);
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match session.next().await.expect("session runs") {
                SessionEvent::Data { data, .. } => return data,
                e @ SessionEvent::Failover { resumes_at, .. } => {
                    events.push(e);
                    if seq < resumes_at {
                        session.send("line 4").await.unwrap();
                    }
                }
                other => events.push(other),
            }
        }
    })
    .await
    .expect("an answer in time");
    assert_eq!(
        reply,
        Bytes::from_static(b"4:line 4"),
        "the other PE continued from the cookie; events {events:?}"
    );
    let other = ids[1 - i];
    assert_eq!(session.pe(), Some(other));
    assert!(
        events.iter().any(|e| matches!(
            e,
            SessionEvent::Failover { from, to, reason: FailoverReason::AssociationDown(_), .. }
                if *from == first && *to == other
        )),
        "{events:?}"
    );
    assert!(events.contains(&SessionEvent::Connected {
        pe_id: other,
        cookie_echoed: true
    }));
    session.close().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_its_reason() {
    assert!(matches!(
        Session::builder(""),
        Err(rserpool::Error::InvalidPoolHandle { .. })
    ));
    let no_registrar = Session::builder("echo").unwrap().connect().await;
    assert!(matches!(no_registrar, Err(rserpool::Error::Config(_))));
    let unreachable = PoolElement::builder("echo")
        .unwrap()
        .registrar(at(1, 3863))
        .user_addrs(vec!["239.1.2.3".parse().unwrap()])
        .transport(fast())
        .join()
        .await;
    assert!(
        matches!(&unreachable, Err(rserpool::Error::Config(m)) if m.contains("cannot reach 239.1.2.3")),
        "{:?}",
        unreachable.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_user_that_floods_an_application_not_reading_loses_its_session() {
    let _registrar = start_registrar(3);
    let mut pe = PoolElement::builder("flood")
        .unwrap()
        .registrar(at(3, 3863))
        .local(at(13, 0))
        .transport(fast())
        .join()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), pe.registered())
        .await
        .unwrap()
        .unwrap();
    let mut session = Session::builder("flood")
        .unwrap()
        .registrar(at(3, 3863))
        .local(at(22, 0))
        .transport(fast())
        .connect()
        .await
        .unwrap();
    let n = rserpool::pe::SESSION_QUEUE + 500;
    for i in 0..n {
        session.send(format!("{i}")).await.unwrap();
    }
    // The application accepts the session and never reads it: the PE
    // closes it rather than queue without bound, and the pool user, with
    // no other PE to go to, says so.
    let accepted = tokio::time::timeout(Duration::from_secs(5), pe.accept())
        .await
        .expect("the session is offered")
        .expect("the PE runs");
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = session.next().await.expect("session runs");
            if matches!(
                e,
                SessionEvent::Failover { .. } | SessionEvent::Unavailable { .. }
            ) {
                return e;
            }
        }
    })
    .await
    .expect("the session is closed by the PE");
    drop(accepted);
    eprintln!("after {n} unread messages: {event:?}");
}

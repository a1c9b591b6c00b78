//! Conformance tests of the `Transport` trait, written once and run against
//! every backend. A backend joins by implementing [`Backend`] and invoking
//! `conformance_tests!(module_name, backend_value)` at the bottom of this
//! file. Loopback only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rserpool_net::transport::memory::MemoryNetwork;
use rserpool_net::transport::udp::{UdpConfig, UdpTransport};
use rserpool_net::transport::{
    AssociationId, CloseMode, CloseReason, EndpointConfig, Event, Message, Ppid, Side, Transport,
    TransportConfig, TransportError,
};

/// How a backend creates endpoints for the tests.
pub trait Backend: Send + Sync + 'static {
    /// The backend's endpoint type.
    type T: Transport;
    /// A listening endpoint on loopback.
    fn server(&self, cfg: TransportConfig) -> Self::T;
    /// A non-listening endpoint on loopback that can reach `server`.
    fn client(&self, server: &Self::T, cfg: TransportConfig) -> Self::T;
    /// Makes `t` vanish without telling its peers (crashed or unplugged
    /// host). The default drops it.
    fn kill(&self, t: Self::T) {
        drop(t)
    }
    /// An address on loopback where nothing accepts associations, reachable
    /// from `client`.
    fn dead_addr(&self, server: &Self::T) -> SocketAddr {
        let a = server.local_addrs()[0];
        SocketAddr::new(a.ip(), a.port().wrapping_add(1).max(1))
    }
}

/// Tunables that keep the tests fast: loss is detected within 1.5 s.
pub fn test_config() -> TransportConfig {
    TransportConfig {
        heartbeat_interval: Duration::from_millis(200),
        dead_peer_timeout: Duration::from_millis(1500),
        rto_initial: Duration::from_millis(100),
        rto_min: Duration::from_millis(50),
        rto_max: Duration::from_millis(500),
        handshake_timeout: Duration::from_secs(2),
        ..TransportConfig::default()
    }
}

/// Scheduling slack on top of protocol timeouts (busy 2-core CI machines).
const SLACK: Duration = Duration::from_millis(1500);

async fn next<T: Transport>(t: &mut T) -> Event {
    tokio::time::timeout(Duration::from_secs(20), t.next_event())
        .await
        .expect("no event within 20 s")
        .expect("endpoint failed")
}

async fn expect_up<T: Transport>(t: &mut T) -> (AssociationId, Side, Vec<SocketAddr>) {
    match next(t).await {
        Event::AssociationUp {
            assoc,
            side,
            peer_addrs,
        } => (assoc, side, peer_addrs),
        other => panic!("expected AssociationUp, got {other:?}"),
    }
}

async fn expect_down<T: Transport>(t: &mut T) -> (AssociationId, CloseReason) {
    match next(t).await {
        Event::AssociationDown { assoc, reason } => (assoc, reason),
        other => panic!("expected AssociationDown, got {other:?}"),
    }
}

async fn expect_msg<T: Transport>(t: &mut T) -> Message {
    match next(t).await {
        Event::Message(m) => m,
        other => panic!("expected Message, got {other:?}"),
    }
}

fn payload(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// A server, a client and one association between them.
async fn pair<B: Backend>(
    b: &B,
    cfg: TransportConfig,
) -> (B::T, AssociationId, B::T, AssociationId) {
    let mut server = b.server(cfg.clone());
    let mut client = b.client(&server, cfg);
    let c_assoc = client.connect(&server.local_addrs()).await.unwrap();
    let (up, side, peer) = expect_up(&mut client).await;
    assert_eq!(up, c_assoc);
    assert_eq!(side, Side::Client);
    assert!(!peer.is_empty());
    let (s_assoc, side, peer) = expect_up(&mut server).await;
    assert_eq!(side, Side::Server);
    assert!(!peer.is_empty());
    (server, s_assoc, client, c_assoc)
}

/// Connect, then messages with PPIDs 11 and 12, several streams and sizes up
/// to 64 KiB both ways, intact and in order per stream.
pub async fn connect_and_exchange<B: Backend>(b: B) {
    let (mut server, s_assoc, mut client, c_assoc) = pair(&b, test_config()).await;
    let sizes = [1usize, 100, 1000, 1500, 4000, 16_384, 65_536];
    for (i, &len) in sizes.iter().enumerate() {
        let ppid = if i % 2 == 0 { Ppid::ASAP } else { Ppid::ENRP };
        let stream = (i % 3) as u16;
        client
            .send(c_assoc, stream, ppid, false, payload(len, i as u8))
            .await
            .unwrap();
    }
    for (i, &len) in sizes.iter().enumerate() {
        let m = expect_msg(&mut server).await;
        assert_eq!(m.assoc, s_assoc);
        assert_eq!(m.ppid, if i % 2 == 0 { Ppid(11) } else { Ppid(12) });
        assert_eq!(m.stream, (i % 3) as u16);
        assert!(!m.unordered);
        assert_eq!(m.data, payload(len, i as u8), "message {i} of {len} bytes");
        // Answer on the same stream with the other PPID.
        let back = if m.ppid == Ppid::ASAP {
            Ppid::ENRP
        } else {
            Ppid::ASAP
        };
        server
            .send(s_assoc, m.stream, back, false, m.data.clone())
            .await
            .unwrap();
    }
    for (i, &len) in sizes.iter().enumerate() {
        let m = expect_msg(&mut client).await;
        assert_eq!(m.assoc, c_assoc);
        assert_eq!(m.ppid, if i % 2 == 0 { Ppid::ENRP } else { Ppid::ASAP });
        assert_eq!(m.data.len(), len);
    }
}

/// An unordered message at a raised size limit (300 KiB) arrives whole with
/// its flag; one byte more is refused locally.
pub async fn unordered_and_large_messages<B: Backend>(b: B) {
    let cfg = TransportConfig {
        max_message_size: 300 * 1024,
        ..test_config()
    };
    let (mut server, _s_assoc, mut client, c_assoc) = pair(&b, cfg).await;
    assert_eq!(client.max_message_size(), 300 * 1024);
    client
        .send(c_assoc, 1, Ppid::ENRP, true, payload(300 * 1024, 7))
        .await
        .unwrap();
    let m = expect_msg(&mut server).await;
    assert!(m.unordered);
    assert_eq!(m.stream, 1);
    assert_eq!(m.data, payload(300 * 1024, 7));
    let err = client
        .send(c_assoc, 0, Ppid::ENRP, false, payload(300 * 1024 + 1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::MessageTooLarge { .. }),
        "{err}"
    );
}

/// 100 associations from one client endpoint at once, each echoing a message.
pub async fn many_associations<B: Backend>(b: B) {
    const N: usize = 100;
    let mut server = b.server(test_config());
    let mut client = b.client(&server, test_config());
    let addrs = server.local_addrs();
    // Echo server.
    let echo = tokio::spawn(async move {
        let mut up = 0;
        let mut echoed = 0;
        while echoed < N {
            match next(&mut server).await {
                Event::AssociationUp { .. } => up += 1,
                Event::Message(m) => {
                    server
                        .send(m.assoc, m.stream, m.ppid, false, m.data)
                        .await
                        .unwrap();
                    echoed += 1;
                }
                Event::AssociationDown { assoc, reason } => {
                    panic!("server: {assoc} down ({reason})")
                }
            }
        }
        (server, up)
    });
    let mut ids = Vec::new();
    for _ in 0..N {
        ids.push(client.connect(&addrs).await.unwrap());
    }
    let mut up = 0;
    let mut replies = 0;
    while replies < N {
        match next(&mut client).await {
            Event::AssociationUp { assoc, .. } => {
                up += 1;
                let i = ids.iter().position(|a| *a == assoc).expect("known id");
                client
                    .send(assoc, 0, Ppid::ASAP, false, payload(100, i as u8))
                    .await
                    .unwrap();
            }
            Event::Message(m) => {
                let i = ids.iter().position(|a| *a == m.assoc).expect("known id");
                assert_eq!(m.data, payload(100, i as u8));
                replies += 1;
            }
            Event::AssociationDown { assoc, reason } => panic!("client: {assoc} down ({reason})"),
        }
    }
    assert_eq!(up, N);
    let (_server, server_up) = echo.await.unwrap();
    assert_eq!(server_up, N);
}

/// A peer that vanishes is reported `Lost` within the dead-peer bound.
pub async fn peer_killed_is_lost<B: Backend>(b: B) {
    let cfg = test_config();
    let bound = cfg.dead_peer_timeout + SLACK;
    let (server, _s_assoc, mut client, c_assoc) = pair(&b, cfg).await;
    let t0 = Instant::now();
    b.kill(server);
    // Traffic towards the dead peer must not hide the loss.
    client
        .send(c_assoc, 0, Ppid::ASAP, false, payload(10, 0))
        .await
        .unwrap();
    let (assoc, reason) = expect_down(&mut client).await;
    let took = t0.elapsed();
    assert_eq!(assoc, c_assoc);
    assert_eq!(reason, CloseReason::Lost);
    assert!(
        took <= bound,
        "loss detected after {took:?}, bound {bound:?}"
    );
    eprintln!("peer loss detected after {took:?}");
    let err = client
        .send(c_assoc, 0, Ppid::ASAP, false, payload(1, 0))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::UnknownAssociation(c_assoc));
}

/// Graceful close from either side delivers queued data first and reports
/// `Graceful` on both sides.
pub async fn graceful_close<B: Backend>(b: B) {
    let (mut server, s_assoc, mut client, c_assoc) = pair(&b, test_config()).await;
    // Data queued before the close is delivered before the close.
    for i in 0..5u8 {
        client
            .send(c_assoc, 0, Ppid::ASAP, false, payload(2000, i))
            .await
            .unwrap();
    }
    client.close(c_assoc, CloseMode::Graceful).await.unwrap();
    for i in 0..5u8 {
        let m = expect_msg(&mut server).await;
        assert_eq!(m.data, payload(2000, i));
    }
    assert_eq!(
        expect_down(&mut server).await,
        (s_assoc, CloseReason::Graceful)
    );
    assert_eq!(
        expect_down(&mut client).await,
        (c_assoc, CloseReason::Graceful)
    );

    // And the other way round, started by the server.
    let c2 = client.connect(&server.local_addrs()).await.unwrap();
    expect_up(&mut client).await;
    let (s2, _, _) = expect_up(&mut server).await;
    server.close(s2, CloseMode::Graceful).await.unwrap();
    assert_eq!(expect_down(&mut server).await, (s2, CloseReason::Graceful));
    assert_eq!(expect_down(&mut client).await, (c2, CloseReason::Graceful));
}

/// Abort is reported `Aborted` on both sides; the id is dead afterwards.
pub async fn abort<B: Backend>(b: B) {
    let (mut server, s_assoc, mut client, c_assoc) = pair(&b, test_config()).await;
    client.close(c_assoc, CloseMode::Abort).await.unwrap();
    assert_eq!(
        expect_down(&mut client).await,
        (c_assoc, CloseReason::Aborted)
    );
    assert_eq!(
        expect_down(&mut server).await,
        (s_assoc, CloseReason::Aborted)
    );
    let err = server
        .send(s_assoc, 0, Ppid::ENRP, false, payload(1, 0))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::UnknownAssociation(s_assoc));
}

/// Connecting where nobody listens ends in `HandshakeFailed` within the
/// handshake timeout; no address at all is refused at once.
pub async fn handshake_failure<B: Backend>(b: B) {
    let cfg = test_config();
    let bound = cfg.handshake_timeout + SLACK;
    let server = b.server(cfg.clone());
    let mut client = b.client(&server, cfg);
    let t0 = Instant::now();
    let assoc = client.connect(&[b.dead_addr(&server)]).await.unwrap();
    assert_eq!(
        expect_down(&mut client).await,
        (assoc, CloseReason::HandshakeFailed)
    );
    assert!(t0.elapsed() <= bound, "took {:?}", t0.elapsed());
    assert!(matches!(
        client.connect(&[]).await,
        Err(TransportError::InvalidAddress(_))
    ));
}

/// Commands on unknown associations or streams fail synchronously.
pub async fn command_errors<B: Backend>(b: B) {
    let (_server, _s, mut client, c_assoc) = pair(&b, test_config()).await;
    let bogus = AssociationId(u64::MAX);
    assert_eq!(
        client
            .send(bogus, 0, Ppid::ASAP, false, payload(1, 0))
            .await
            .unwrap_err(),
        TransportError::UnknownAssociation(bogus)
    );
    assert_eq!(
        client.close(bogus, CloseMode::Abort).await.unwrap_err(),
        TransportError::UnknownAssociation(bogus)
    );
    let streams = test_config().streams;
    assert_eq!(
        client
            .send(c_assoc, streams, Ppid::ASAP, false, payload(1, 0))
            .await
            .unwrap_err(),
        TransportError::InvalidStream(streams)
    );
}

/// Generates one `#[tokio::test]` per conformance test for a backend.
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn connect_and_exchange() {
                super::connect_and_exchange($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unordered_and_large_messages() {
                super::unordered_and_large_messages($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_associations() {
                super::many_associations($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn peer_killed_is_lost() {
                super::peer_killed_is_lost($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn graceful_close() {
                super::graceful_close($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn abort() {
                super::abort($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn handshake_failure() {
                super::handshake_failure($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn command_errors() {
                super::command_errors($backend).await
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Backends

/// In-memory backend: every test gets its own network.
pub struct Memory(MemoryNetwork);

impl Backend for Memory {
    type T = rserpool_net::transport::memory::MemoryTransport;
    fn server(&self, cfg: TransportConfig) -> Self::T {
        self.0
            .bind(EndpointConfig::server(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg))
            .unwrap()
    }
    fn client(&self, _server: &Self::T, cfg: TransportConfig) -> Self::T {
        self.0
            .bind(EndpointConfig::client(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg))
            .unwrap()
    }
}

/// Userland SCTP over UDP on loopback; every endpoint has its own UDP port,
/// clients are pointed at their server's.
pub struct Udp;

impl Backend for Udp {
    type T = UdpTransport;
    fn server(&self, cfg: TransportConfig) -> Self::T {
        let udp = UdpConfig {
            udp_port: 0,
            ..UdpConfig::default()
        };
        UdpTransport::bind(
            EndpointConfig::server(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg),
            udp,
        )
        .unwrap()
    }
    fn client(&self, server: &Self::T, cfg: TransportConfig) -> Self::T {
        let udp = UdpConfig {
            udp_port: 0,
            remote_udp_port: server.local_udp_addrs()[0].port(),
            ..UdpConfig::default()
        };
        UdpTransport::bind(
            EndpointConfig::client(["127.0.0.1:0".parse().unwrap()]).with_transport(cfg),
            udp,
        )
        .unwrap()
    }
}

conformance_tests!(memory, Memory(MemoryNetwork::new()));
conformance_tests!(udp, Udp);

/// Kernel SCTP (Linux). Runs only in the test VM (`scripts/vm`), where
/// `RSERPOOL_VM=1` says that lo carries the extra addresses this backend's
/// `kill` needs (it deletes the server's address, the only way to make a
/// kernel peer fall silent instead of sending SHUTDOWN or ABORT); elsewhere
/// each test prints why it is skipped.
#[cfg(target_os = "linux")]
pub struct Kernel;

/// The server's address; `kill` removes it, `server` (re)adds it.
#[cfg(target_os = "linux")]
const KERNEL_SERVER_IP: &str = "198.51.100.2";
/// The client's address: SCTP will not use a loopback source towards a
/// non-loopback peer.
#[cfg(target_os = "linux")]
const KERNEL_CLIENT_IP: &str = "198.51.100.1";

#[cfg(target_os = "linux")]
fn ip_cmd(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// The kernel backend, or `None` (with the reason printed) where it cannot
/// run; a missing kernel SCTP fails instead under
/// `RSERPOOL_REQUIRE_KERNEL_SCTP`.
#[cfg(target_os = "linux")]
pub fn kernel_backend() -> Option<Kernel> {
    use std::io::Write;
    let skip = |why: String| {
        // Not eprintln!: libtest hides the output of passing tests, and a
        // skip must not look like a pass.
        let _ = writeln!(std::io::stderr(), "SKIPPED kernel conformance test: {why}");
        None
    };
    if let Err(e) = rserpool_net::transport::kernel::probe() {
        if std::env::var_os("RSERPOOL_REQUIRE_KERNEL_SCTP").is_some() {
            panic!("kernel SCTP required but unavailable: {e}");
        }
        return skip(format!(
            "kernel SCTP unavailable ({e}); scripts/vm/run-kernel-tests.sh runs it"
        ));
    }
    if std::env::var_os("RSERPOOL_VM").is_none() {
        return skip("runs only in the test VM (RSERPOOL_VM=1; it changes addresses on lo)".into());
    }
    Some(Kernel)
}

#[cfg(target_os = "linux")]
impl Backend for Kernel {
    type T = rserpool_net::transport::kernel::KernelTransport;
    fn server(&self, cfg: TransportConfig) -> Self::T {
        ip_cmd(&[
            "addr",
            "replace",
            &format!("{KERNEL_SERVER_IP}/32"),
            "dev",
            "lo",
        ]);
        let a = SocketAddr::new(KERNEL_SERVER_IP.parse().unwrap(), 0);
        Self::T::bind(EndpointConfig::server([a]).with_transport(cfg)).unwrap()
    }
    fn client(&self, _server: &Self::T, cfg: TransportConfig) -> Self::T {
        let a = SocketAddr::new(KERNEL_CLIENT_IP.parse().unwrap(), 0);
        Self::T::bind(EndpointConfig::client([a]).with_transport(cfg)).unwrap()
    }
    fn kill(&self, t: Self::T) {
        ip_cmd(&[
            "addr",
            "del",
            &format!("{KERNEL_SERVER_IP}/32"),
            "dev",
            "lo",
        ]);
        // Its SHUTDOWN or ABORT now has no route: the peer just goes quiet.
        drop(t);
    }
}

#[cfg(target_os = "linux")]
conformance_tests!(
    kernel,
    match kernel_backend() {
        Some(b) => b,
        None => return,
    }
);

//! What the subcommands that run a protocol machine share: transport
//! flags, durations, addresses, policies, signals. Running the machines is
//! the library's ([`rserpool::node`]), the same code applications use.

pub mod addr;
pub mod duration;
pub mod output;
pub mod policy;
pub mod transport;

pub use rserpool::node::Node;
use std::process::ExitCode;

/// Exit code of a configuration that cannot work (as clap's usage errors).
pub const EXIT_CONFIG: u8 = 2;

/// The multicast group registrars announce themselves on by default (the
/// reference implementation's ASAP announce group).
pub const ANNOUNCE_GROUP: std::net::SocketAddr = std::net::SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(239, 0, 0, 50)),
    3863,
);

/// The multicast group registrars send ENRP presences to by default.
pub const ENRP_ANNOUNCE_GROUP: std::net::SocketAddr = std::net::SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(239, 0, 0, 51)),
    9901,
);

/// Where a PE or PU with neither `--registrar` nor `--announce` looks: the
/// registrars announcing on [`ANNOUNCE_GROUP`] (when this host can join a
/// multicast group at all) and a registrar on this host.
pub fn default_registrars(
    registrars: &mut Vec<Vec<std::net::SocketAddr>>,
    announce: &mut Option<std::net::SocketAddr>,
) {
    if !registrars.is_empty() || announce.is_some() {
        return;
    }
    registrars.push(vec![std::net::SocketAddr::new(
        std::net::Ipv4Addr::LOCALHOST.into(),
        crate::registrar::ASAP_PORT,
    )]);
    if multicast_available() {
        *announce = Some(ANNOUNCE_GROUP);
    }
}

/// Whether a multicast group can be joined here (there is a route for it).
fn multicast_available() -> bool {
    let std::net::IpAddr::V4(group) = ANNOUNCE_GROUP.ip() else {
        return false;
    };
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.join_multicast_v4(&group, &std::net::Ipv4Addr::UNSPECIFIED))
        .is_ok()
}

/// Where a PE or PU looks for a registrar, for its progress lines:
/// "asking 10.0.0.1:3863 then 10.0.0.2:3863; listening for registrar
/// announces on 239.0.0.50:3863".
pub fn hunt_description(
    registrars: &[Vec<std::net::SocketAddr>],
    announce: Option<std::net::SocketAddr>,
) -> String {
    let mut parts = Vec::new();
    let list: Vec<String> = registrars
        .iter()
        .map(|r| {
            r.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    if !list.is_empty() {
        parts.push(format!("asking {}", list.join(" then ")));
    }
    if let Some(a) = announce {
        parts.push(format!("listening for registrar announces on {a}"));
    }
    parts.join("; ")
}

/// Reports a start-up failure on one line and returns exit code 2.
pub fn config_error(reason: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {reason}");
    ExitCode::from(EXIT_CONFIG)
}

/// Runs a node to completion on a single-threaded tokio runtime (each node
/// is one task plus its transport's driver, which one thread serves well).
pub fn block_on(node: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(node),
        Err(e) => config_error(format!("cannot start the async runtime: {e}")),
    }
}

/// Resolves when SIGINT or SIGTERM arrives; returns the signal's name.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            // Without handlers the default action (exit) still applies.
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

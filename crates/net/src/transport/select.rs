//! Automatic choice between kernel SCTP and userland SCTP over UDP.
//!
//! Production Linux hosts have kernel SCTP; many build hosts, CI runners and
//! containers do not (no module, or `socket(IPPROTO_SCTP)` blocked). The
//! daemon should run on both without configuration, and say once, plainly,
//! which one it got, because the two are not interchangeable on the wire: a
//! peer must speak RFC 6951 encapsulation to reach the UDP backend.

use std::fmt;
use std::io;

/// The UDP port of SCTP over UDP (RFC 6951, IANA "sctp-tunneling").
pub const SCTP_UDP_PORT: u16 = 9899;

/// A transport backend for real networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The kernel's SCTP (Linux).
    Kernel,
    /// Userland SCTP encapsulated in UDP (RFC 6951).
    Udp,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Kernel => "kernel SCTP",
            BackendKind::Udp => "SCTP over UDP (RFC 6951)",
        })
    }
}

/// Whether this host can use kernel SCTP; the error says why not.
pub fn probe_kernel_sctp() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        super::kernel::probe()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel SCTP backend is Linux only",
        ))
    }
}

/// Picks kernel SCTP when the kernel supports it, else SCTP over UDP, and
/// logs one line when it falls back.
pub fn select_backend() -> BackendKind {
    let (kind, note) = decide(probe_kernel_sctp());
    if let Some(line) = note {
        tracing::warn!("{line}");
    }
    kind
}

/// The decision and the log line for a probe result; separate so that the
/// fallback can be tested on hosts that do have SCTP.
fn decide(probe: io::Result<()>) -> (BackendKind, Option<String>) {
    match probe {
        Ok(()) => (BackendKind::Kernel, None),
        Err(e) => (
            BackendKind::Udp,
            Some(format!(
                "kernel SCTP unavailable ({e}), using SCTP over UDP (RFC 6951) on port {SCTP_UDP_PORT}"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_to_udp_with_the_reason() {
        let err = io::Error::from_raw_os_error(94);
        let (kind, note) = decide(Err(err));
        assert_eq!(kind, BackendKind::Udp);
        let note = note.unwrap();
        assert!(note.starts_with("kernel SCTP unavailable ("), "{note}");
        assert!(
            note.ends_with("), using SCTP over UDP (RFC 6951) on port 9899"),
            "{note}"
        );
    }

    #[test]
    fn prefers_the_kernel_silently() {
        assert_eq!(decide(Ok(())), (BackendKind::Kernel, None));
    }

    #[test]
    fn probe_agrees_with_selection() {
        let expected = if probe_kernel_sctp().is_ok() {
            BackendKind::Kernel
        } else {
            BackendKind::Udp
        };
        assert_eq!(select_backend(), expected);
    }
}

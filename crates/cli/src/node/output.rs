//! Lines on standard output that survive a reader that went away
//! (`rserpool registrar | head -1`): Rust's `println!` panics on a closed
//! pipe.

use std::io::{ErrorKind, Write};

/// Writes `line` and a newline to standard output; `false` once the reader
/// has gone (the caller stops printing, or ends).
pub fn line(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => false,
        Err(e) => {
            tracing::warn!("cannot write to standard output: {e}");
            false
        }
    }
}

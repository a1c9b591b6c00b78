//! Printing decoded messages (summary lines, Debug trees, JSON lines) and
//! the closing counts.

use super::{Args, FrameInfo, Origin, Outcome, hex, json};
use crate::style::Style;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;

/// How many error kinds the summary lists without `-v`.
const TOP_ERRORS: usize = 5;

/// Writes one record per message to stdout.
pub struct Printer {
    style: Style,
    json: bool,
    verbose: bool,
    show_hex: bool,
    stdout: std::io::Stdout,
}

impl Printer {
    /// A printer for these options.
    pub fn new(args: &Args) -> Self {
        Self {
            style: Style::for_stdout(args.color),
            json: args.json,
            verbose: args.verbose,
            show_hex: args.show_hex,
            stdout: std::io::stdout(),
        }
    }

    /// Prints one message; breaks when stdout is gone (for example `| head`).
    pub fn message(
        &mut self,
        origin: &Origin,
        payload: &[u8],
        outcome: &Outcome,
    ) -> ControlFlow<()> {
        let text = if self.json {
            self.json_record(origin, payload, outcome)
        } else {
            self.text_record(origin, payload, outcome)
        };
        let mut out = self.stdout.lock();
        match writeln!(out, "{text}") {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }

    fn text_record(&self, origin: &Origin, payload: &[u8], outcome: &Outcome) -> String {
        let s = self.style;
        let mut line = String::new();
        match origin {
            Origin::Frame(f) => line.push_str(&s.dim(&frame_prefix(f))),
            Origin::Hex { label, show_label } => {
                if *show_label && matches!(outcome, Outcome::Failed(_)) {
                    line.push_str(&format!("{label}: "));
                }
            }
        }
        match outcome {
            Outcome::Decoded { decoded, also } => {
                let summary = decoded.message.to_string();
                let (name, rest) = summary.split_once(' ').unwrap_or((&summary, ""));
                line.push_str(&s.strong(name));
                if !rest.is_empty() {
                    line.push(' ');
                    line.push_str(rest);
                }
                if !decoded.unrecognized.is_empty() {
                    let types: Vec<String> = decoded
                        .unrecognized
                        .iter()
                        .map(|p| format!("0x{}", hex::encode(p.get(..2).unwrap_or(p))))
                        .collect();
                    let _ = write!(
                        line,
                        " [skipped unrecognized parameter {}]",
                        types.join(", ")
                    );
                }
                if let Origin::Frame(f) = origin {
                    if f.chunks > 1 {
                        let _ = write!(line, " [reassembled from {} chunks]", f.chunks);
                    }
                }
                if let Some(p) = also {
                    let _ = write!(
                        line,
                        " (also decodes as {}: pass --{})",
                        p.name(),
                        p.name().to_lowercase()
                    );
                }
            }
            Outcome::Failed(errors) => {
                let text = match (errors.as_slice(), origin) {
                    ([(p, e)], Origin::Frame(_)) => format!("{} error {e}", p.name()),
                    ([(_, e)], Origin::Hex { .. }) => format!("error {e}"),
                    (all, _) => {
                        let parts: Vec<String> = all
                            .iter()
                            .map(|(p, e)| format!("not {} ({e})", p.name()))
                            .collect();
                        format!("error: {}", parts.join(", "))
                    }
                };
                line.push_str(&s.error(&text));
            }
        }
        if self.show_hex {
            let _ = write!(line, "\n    hex: {}", hex::encode(payload));
        }
        if self.verbose {
            let tree = match outcome {
                Outcome::Decoded { decoded, .. } => format!("{decoded:#?}"),
                Outcome::Failed(errors) => format!("{errors:#?}"),
            };
            for l in tree.lines() {
                let _ = write!(line, "\n    {l}");
            }
        }
        line
    }

    fn json_record(&self, origin: &Origin, payload: &[u8], outcome: &Outcome) -> String {
        let mut o = Map::new();
        match origin {
            Origin::Frame(f) => {
                o.insert("frame".into(), f.number.into());
                o.insert("time".into(), f.time.map_or(Value::Null, Value::from));
                o.insert("src".into(), f.src.to_string().into());
                o.insert("dst".into(), f.dst.to_string().into());
                if f.udp_encapsulated {
                    o.insert("udp_encapsulated".into(), true.into());
                }
                o.insert("ppid".into(), f.ppid.into());
                o.insert("chunks".into(), f.chunks.into());
            }
            Origin::Hex { label, .. } => {
                o.insert("input".into(), label.clone().into());
            }
        }
        o.insert("length".into(), payload.len().into());
        let failed = match outcome {
            Outcome::Decoded { decoded, also } => {
                json::message(&decoded.message, &mut o);
                if !decoded.unrecognized.is_empty() {
                    let u = decoded
                        .unrecognized
                        .iter()
                        .map(|p| json::unrecognized(p))
                        .collect();
                    o.insert("unrecognized".into(), u);
                }
                if let Some(p) = also {
                    o.insert("also_decodes_as".into(), p.name().into());
                }
                false
            }
            Outcome::Failed(errors) => {
                if let [(p, _)] = errors.as_slice() {
                    o.insert("protocol".into(), p.name().into());
                }
                let e = errors
                    .iter()
                    .map(|(p, e)| json::error(p.name(), e))
                    .collect();
                o.insert("errors".into(), e);
                true
            }
        };
        if failed || self.show_hex {
            o.insert("payload".into(), hex::encode(payload).into());
        }
        if self.verbose {
            let debug = match outcome {
                Outcome::Decoded { decoded, .. } => format!("{decoded:?}"),
                Outcome::Failed(errors) => format!("{errors:?}"),
            };
            o.insert("debug".into(), debug.into());
        }
        Value::Object(o).to_string()
    }

    /// Prints the closing counts on stderr (after the last record).
    pub fn finish(&mut self, stats: &Stats) {
        let _ = self.stdout.lock().flush();
        if stats.captures == 0 && stats.messages < 2 {
            return;
        }
        eprintln!(
            "{}: {} decoded, {}",
            plural(stats.messages, "message"),
            stats.decoded,
            plural(stats.errors, "error")
        );
        if stats.captures > 0 {
            eprintln!("{}", stats.capture.describe());
        }
        if stats.errors > 0 {
            let mut kinds: Vec<(&String, &usize)> = stats.error_kinds.iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let shown = if self.verbose {
                kinds.len()
            } else {
                TOP_ERRORS
            };
            eprintln!(
                "{}:",
                if kinds.len() > shown {
                    "most common errors (-v lists all)"
                } else {
                    "errors"
                }
            );
            for (kind, n) in kinds.iter().take(shown) {
                eprintln!("  {n:>6}  {kind}");
            }
        }
    }
}

fn frame_prefix(f: &FrameInfo) -> String {
    let time = f.time.map_or_else(|| "-".to_owned(), |t| format!("{t:.6}"));
    let udp = if f.udp_encapsulated { " udp" } else { "" };
    format!("#{} {time} {} -> {}{udp} ", f.number, f.src, f.dst)
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// What was read and how it went.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages decoded or attempted.
    pub messages: usize,
    /// Messages that decoded.
    pub decoded: usize,
    /// Messages that did not.
    pub errors: usize,
    /// Errors grouped by protocol and kind (without the offset).
    pub error_kinds: HashMap<String, usize>,
    /// Unreadable input: bad hex, unopenable or non-capture files.
    pub input_errors: usize,
    /// Capture files read.
    pub captures: usize,
    /// Counts over all captures.
    pub capture: CaptureStats,
}

impl Stats {
    /// Counts one decoding.
    pub fn count(&mut self, outcome: &Outcome) {
        self.messages += 1;
        match outcome {
            Outcome::Decoded { .. } => self.decoded += 1,
            Outcome::Failed(errors) => {
                self.errors += 1;
                let key: Vec<String> = errors
                    .iter()
                    .map(|(p, e)| format!("{} {}", p.name(), e.kind))
                    .collect();
                *self.error_kinds.entry(key.join("; ")).or_default() += 1;
            }
        }
    }

    /// The process's exit status (see the exit status in `--help`).
    pub fn exit_code(&self, allow_errors: bool) -> ExitCode {
        if self.input_errors > 0 {
            ExitCode::from(2)
        } else if self.errors > 0 && !allow_errors {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Counts of what the captures held.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Frames read.
    pub frames: usize,
    /// Frames holding an SCTP packet.
    pub sctp_packets: usize,
    /// DATA/I-DATA chunks with a wanted PPID that made up messages.
    pub chunks: usize,
    /// Messages put together from several chunks.
    pub reassembled: usize,
    /// IP fragments skipped.
    pub ip_fragments: usize,
    /// Frames whose link or IP layer could not be read.
    pub unreadable_frames: usize,
    /// SCTP packets or chunks that are malformed.
    pub bad_sctp: usize,
    /// Frames of a link type this tool does not read.
    pub unsupported_link: usize,
    /// Fragments dropped by the reassembly limits.
    pub dropped_fragments: usize,
    /// Fragments whose message never completed.
    pub incomplete_fragments: usize,
}

impl CaptureStats {
    fn describe(&self) -> String {
        let mut s = format!(
            "{}, {}, {} with PPID 11 or 12",
            plural(self.frames, "frame"),
            plural(self.sctp_packets, "SCTP packet"),
            plural(self.chunks, "DATA chunk"),
        );
        let extra = [
            (
                self.reassembled,
                "reassembled message",
                "reassembled messages",
            ),
            (
                self.ip_fragments,
                "IP fragment skipped",
                "IP fragments skipped",
            ),
            (
                self.unreadable_frames,
                "unreadable frame",
                "unreadable frames",
            ),
            (
                self.bad_sctp,
                "malformed SCTP packet",
                "malformed SCTP packets",
            ),
            (
                self.unsupported_link,
                "frame of unsupported link type",
                "frames of unsupported link types",
            ),
            (
                self.dropped_fragments,
                "fragment dropped (reassembly limits)",
                "fragments dropped (reassembly limits)",
            ),
            (
                self.incomplete_fragments,
                "fragment of incomplete messages",
                "fragments of incomplete messages",
            ),
        ];
        for (n, one, many) in extra {
            if n > 0 {
                let _ = write!(s, ", {n} {}", if n == 1 { one } else { many });
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_and_capture_counts() {
        assert_eq!(plural(1, "message"), "1 message");
        assert_eq!(plural(0, "error"), "0 errors");
        let c = CaptureStats {
            frames: 3,
            sctp_packets: 2,
            chunks: 1,
            ip_fragments: 1,
            ..Default::default()
        };
        assert_eq!(
            c.describe(),
            "3 frames, 2 SCTP packets, 1 DATA chunk with PPID 11 or 12, 1 IP fragment skipped"
        );
    }
}

//! `rserpool decode`: ASAP and ENRP messages from hex text or from captures,
//! printed as one-line summaries, Debug trees or JSON lines.

mod capture;
mod hex;
pub(crate) mod json;
mod output;
mod packet;
mod reassembly;
mod sctp;

use self::output::{Printer, Stats};
use crate::style::ColorChoice;
use bytes::Bytes;
use rserpool_wire::{
    AsapMessage, DecodeError, Decoded, EnrpMessage, Message, PPID_ASAP, PPID_ENRP,
};
use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Examples and exit status, shown by `rserpool decode --help`.
pub const AFTER_HELP: &str = "\
Examples:
  rserpool decode --asap 050000180009000c4563686f506f6f6c803f000800000003
  echo '0b:00:00:10 000d0009 61626364 65000000  # a cookie' | rserpool decode --asap
  rserpool decode 0201000c0000000100000002          # no protocol given: tries ASAP, then ENRP
  rserpool decode capture.pcapng                    # a capture is recognised by its magic number
  rserpool decode --pcap trace.pcap --enrp --json   # only ENRP, as JSON lines
  rserpool decode --pcap trace.pcap --allow-errors -v

Hex input: one message per argument, or per line of stdin or of a text file;
spaces, colons and 0x prefixes are ignored, and so is everything after '#'.
Without --asap, --enrp or --ppid each message is tried as ASAP and then as
ENRP; the type name printed (ASAP_... or ENRP_...) tells which one fitted.

Captures (pcap or pcapng; Ethernet, Linux cooked v1/v2, raw IP, loopback;
IPv4 and IPv6; SCTP on IP or in UDP port 9899): every SCTP DATA or I-DATA
chunk with PPID 11 (ASAP) or 12 (ENRP) is decoded, fragmented user messages
are reassembled. Lines start with the frame number, the time since the first
frame, and source -> destination. IP fragments are skipped and counted. A
summary goes to stderr; RUST_LOG=debug tells why frames were skipped.

Exit status:
  0  every message decoded (or --allow-errors was given)
  1  at least one message did not decode; each failure is printed in place
     with the offset where decoding stopped, and all others still are
  2  bad usage or unreadable input (bad hex, a file that is not a capture)";

/// Arguments of `rserpool decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hex messages (one per argument), or files: a pcap/pcapng capture or a
    /// text file of hex lines. Without any, hex lines are read from stdin
    /// ("-" reads stdin too).
    #[arg(value_name = "HEX|FILE")]
    inputs: Vec<String>,

    /// Read this pcap or pcapng capture.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// Decode as ASAP (PPID 11); with a capture, show only ASAP.
    #[arg(long, conflicts_with_all = ["enrp", "ppid"])]
    asap: bool,

    /// Decode as ENRP (PPID 12); with a capture, show only ENRP.
    #[arg(long, conflicts_with = "ppid")]
    enrp: bool,

    /// Decode as the protocol of this SCTP PPID: 11 (ASAP) or 12 (ENRP).
    #[arg(long, value_name = "11|12", value_parser = clap::value_parser!(u32).range(11..=12))]
    ppid: Option<u32>,

    /// Print one JSON object per message instead of a summary line.
    #[arg(long)]
    json: bool,

    /// Also print each message's full structure (Rust Debug form).
    #[arg(short, long)]
    verbose: bool,

    /// Also print each message's bytes in hex (JSON output always has them for errors).
    #[arg(short = 'x', long = "hex")]
    show_hex: bool,

    /// Exit 0 even when some messages fail to decode (they are still printed and counted).
    #[arg(long, visible_alias = "keep-going")]
    allow_errors: bool,

    /// Colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    color: ColorChoice,
}

/// The protocol to decode hex input as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Asap,
    Enrp,
    /// Try ASAP, then ENRP.
    Auto,
}

impl Choice {
    fn from_args(a: &Args) -> Self {
        match (a.asap, a.enrp, a.ppid) {
            (true, _, _) | (_, _, Some(PPID_ASAP)) => Self::Asap,
            (_, true, _) | (_, _, Some(PPID_ENRP)) => Self::Enrp,
            _ => Self::Auto,
        }
    }

    fn wants_ppid(self, ppid: u32) -> bool {
        match self {
            Self::Asap => ppid == PPID_ASAP,
            Self::Enrp => ppid == PPID_ENRP,
            Self::Auto => ppid == PPID_ASAP || ppid == PPID_ENRP,
        }
    }
}

/// ASAP or ENRP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// ASAP, PPID 11.
    Asap,
    /// ENRP, PPID 12.
    Enrp,
}

impl Proto {
    fn of_ppid(ppid: u32) -> Option<Self> {
        match ppid {
            PPID_ASAP => Some(Self::Asap),
            PPID_ENRP => Some(Self::Enrp),
            _ => None,
        }
    }

    /// The protocol's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Asap => "ASAP",
            Self::Enrp => "ENRP",
        }
    }

    fn decode(self, payload: &Bytes) -> Result<Decoded<Message>, DecodeError> {
        match self {
            Self::Asap => AsapMessage::decode_bytes(payload).map(|d| Decoded {
                message: Message::Asap(d.message),
                unrecognized: d.unrecognized,
            }),
            Self::Enrp => EnrpMessage::decode_bytes(payload).map(|d| Decoded {
                message: Message::Enrp(d.message),
                unrecognized: d.unrecognized,
            }),
        }
    }
}

/// The result of decoding one message.
#[derive(Debug)]
pub enum Outcome {
    /// It decoded.
    Decoded {
        /// The message and its skipped unrecognized parameters.
        decoded: Decoded<Message>,
        /// With no protocol given: the other protocol, when the bytes decode as that too.
        also: Option<Proto>,
    },
    /// It did not; one error per protocol tried.
    Failed(Vec<(Proto, DecodeError)>),
}

fn decode(choice: Choice, payload: &Bytes) -> Outcome {
    let one = |p: Proto| match p.decode(payload) {
        Ok(decoded) => Outcome::Decoded {
            decoded,
            also: None,
        },
        Err(e) => Outcome::Failed(vec![(p, e)]),
    };
    match choice {
        Choice::Asap => one(Proto::Asap),
        Choice::Enrp => one(Proto::Enrp),
        Choice::Auto => match (Proto::Asap.decode(payload), Proto::Enrp.decode(payload)) {
            (Ok(decoded), Ok(_)) => Outcome::Decoded {
                decoded,
                also: Some(Proto::Enrp),
            },
            (Ok(decoded), Err(_)) | (Err(_), Ok(decoded)) => Outcome::Decoded {
                decoded,
                also: None,
            },
            (Err(a), Err(e)) => Outcome::Failed(vec![(Proto::Asap, a), (Proto::Enrp, e)]),
        },
    }
}

/// Where a message came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Hex text; the label names the argument or line.
    Hex {
        /// "argument 2", "line 7", "hex.txt:7".
        label: String,
        /// Whether the label is worth printing (more than one message could come).
        show_label: bool,
    },
    /// A capture.
    Frame(FrameInfo),
}

/// A message's place in a capture.
#[derive(Debug, Clone)]
pub struct FrameInfo {
    /// Frame number (of the last chunk, for a reassembled message).
    pub number: u64,
    /// Seconds since the first frame.
    pub time: Option<f64>,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Whether SCTP came over UDP.
    pub udp_encapsulated: bool,
    /// The SCTP PPID.
    pub ppid: u32,
    /// How many DATA chunks carried the message.
    pub chunks: usize,
}

/// Runs the subcommand.
pub fn run(args: Args) -> ExitCode {
    let choice = Choice::from_args(&args);
    let mut printer = Printer::new(&args);
    let mut stats = Stats::default();
    let sources = match sources(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rserpool decode: {e}");
            return ExitCode::from(2);
        }
    };
    let many = sources.len() > 1;
    for source in sources {
        let flow = match source {
            Source::Capture(path) => run_capture(&path, choice, &mut printer, &mut stats),
            Source::HexArg { index, bytes } => {
                let label = format!("argument {index}");
                hex_message(choice, bytes, label, many, &mut printer, &mut stats)
            }
            Source::HexLines { name, path } => {
                let reader: Box<dyn BufRead> = match &path {
                    None => {
                        if std::io::stdin().is_terminal() {
                            eprintln!(
                                "rserpool decode: reading hex messages from the terminal, \
                                 one per line (Ctrl-D ends; --help for more)"
                            );
                        }
                        Box::new(std::io::stdin().lock())
                    }
                    Some(p) => match std::fs::File::open(p) {
                        Ok(f) => Box::new(std::io::BufReader::new(f)),
                        Err(e) => {
                            eprintln!("rserpool decode: cannot open {}: {e}", p.display());
                            stats.input_errors += 1;
                            continue;
                        }
                    },
                };
                hex_lines(reader, name.as_deref(), choice, &mut printer, &mut stats)
            }
        };
        if flow.is_break() {
            break;
        }
    }
    printer.finish(&stats);
    stats.exit_code(args.allow_errors)
}

enum Source {
    Capture(PathBuf),
    HexArg {
        index: usize,
        bytes: Vec<u8>,
    },
    /// Lines of stdin (`path` None) or of a text file.
    HexLines {
        name: Option<String>,
        path: Option<PathBuf>,
    },
}

fn sources(args: &Args) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    if let Some(p) = &args.pcap {
        out.push(Source::Capture(p.clone()));
    }
    for (i, arg) in args.inputs.iter().enumerate() {
        if arg == "-" {
            out.push(Source::HexLines {
                name: None,
                path: None,
            });
            continue;
        }
        let path = Path::new(arg);
        if path.is_file() {
            let format =
                capture::Format::of_file(path).map_err(|e| format!("cannot read {arg}: {e}"))?;
            out.push(match format {
                Some(_) => Source::Capture(path.to_owned()),
                None => Source::HexLines {
                    name: Some(arg.clone()),
                    path: Some(path.to_owned()),
                },
            });
            continue;
        }
        match hex::parse_line(arg) {
            Ok(Some(bytes)) => out.push(Source::HexArg {
                index: i + 1,
                bytes,
            }),
            Ok(None) => return Err(format!("argument {} is empty", i + 1)),
            Err(e) if looks_like_path(arg) => {
                return Err(format!("{arg}: no such file (and not hex: {e})"));
            }
            Err(e) => return Err(format!("argument {}: {e}", i + 1)),
        }
    }
    if out.is_empty() {
        out.push(Source::HexLines {
            name: None,
            path: None,
        });
    }
    Ok(out)
}

fn looks_like_path(arg: &str) -> bool {
    arg.contains(['/', '\\', '.'])
}

fn hex_message(
    choice: Choice,
    bytes: Vec<u8>,
    label: String,
    show_label: bool,
    printer: &mut Printer,
    stats: &mut Stats,
) -> ControlFlow<()> {
    let payload = Bytes::from(bytes);
    let outcome = decode(choice, &payload);
    stats.count(&outcome);
    printer.message(&Origin::Hex { label, show_label }, &payload, &outcome)
}

fn hex_lines(
    reader: Box<dyn BufRead + '_>,
    name: Option<&str>,
    choice: Choice,
    printer: &mut Printer,
    stats: &mut Stats,
) -> ControlFlow<()> {
    for (n, line) in reader.lines().enumerate() {
        let label = match name {
            Some(file) => format!("{file}:{}", n + 1),
            None => format!("line {}", n + 1),
        };
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rserpool decode: {label}: {e}");
                stats.input_errors += 1;
                return ControlFlow::Continue(());
            }
        };
        match hex::parse_line(&line) {
            Ok(None) => {}
            Ok(Some(bytes)) => hex_message(choice, bytes, label, true, printer, stats)?,
            Err(e) => {
                eprintln!("rserpool decode: {label}: {e}");
                stats.input_errors += 1;
            }
        }
    }
    ControlFlow::Continue(())
}

/// Per-frame bookkeeping of a capture being read.
struct CaptureRun<'a> {
    choice: Choice,
    printer: &'a mut Printer,
    stats: &'a mut Stats,
    first_time: Option<Duration>,
    reassembler: reassembly::Reassembler<(u64, Option<f64>)>,
    unsupported_links: std::collections::BTreeSet<String>,
    stopped: bool,
}

fn run_capture(
    path: &Path,
    choice: Choice,
    printer: &mut Printer,
    stats: &mut Stats,
) -> ControlFlow<()> {
    let mut run = CaptureRun {
        choice,
        printer,
        stats,
        first_time: None,
        reassembler: reassembly::Reassembler::default(),
        unsupported_links: Default::default(),
        stopped: false,
    };
    let end = capture::read(path, |frame| {
        if !run.stopped {
            run.stopped = run.frame(frame).is_break();
        }
    });
    let stopped = run.stopped;
    let pending = run.reassembler.pending_fragments();
    let links = std::mem::take(&mut run.unsupported_links);
    let stats = run.stats;
    stats.capture.incomplete_fragments += pending;
    stats.captures += 1;
    if !links.is_empty() {
        let links: Vec<_> = links.into_iter().collect();
        tracing::warn!(
            "{}: frames of unsupported link type {} skipped",
            path.display(),
            links.join(", ")
        );
    }
    match end {
        Ok(end) => {
            if let Some(why) = end.damaged {
                eprintln!("rserpool decode: warning: {}: {why}", path.display());
            }
        }
        Err(e) => {
            eprintln!("rserpool decode: {e}");
            stats.input_errors += 1;
        }
    }
    if stopped {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

impl CaptureRun<'_> {
    fn frame(&mut self, frame: capture::CapturedFrame<'_>) -> ControlFlow<()> {
        let c = &mut self.stats.capture;
        c.frames += 1;
        let time = frame.time.map(|t| {
            let t0 = *self.first_time.get_or_insert(t);
            t.saturating_sub(t0).as_secs_f64()
        });
        let Some(link) = packet::LinkType::from_datalink(frame.datalink) else {
            c.unsupported_link += 1;
            self.unsupported_links
                .insert(format!("{:?}", frame.datalink));
            return ControlFlow::Continue(());
        };
        let (src, dst, udp_encapsulated, bytes) = match packet::dissect(link, frame.data) {
            Ok(packet::Frame::Sctp {
                src,
                dst,
                udp_encapsulated,
                packet,
            }) => (src, dst, udp_encapsulated, packet),
            Ok(packet::Frame::IpFragment) => {
                c.ip_fragments += 1;
                tracing::debug!(frame = frame.number, "IP fragment skipped");
                return ControlFlow::Continue(());
            }
            Ok(packet::Frame::Other) => return ControlFlow::Continue(()),
            Err(e) => {
                c.unreadable_frames += 1;
                tracing::debug!(frame = frame.number, "frame skipped: {e}");
                return ControlFlow::Continue(());
            }
        };
        c.sctp_packets += 1;
        let (header, chunks) = match sctp::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                c.bad_sctp += 1;
                tracing::debug!(frame = frame.number, "{e}");
                return ControlFlow::Continue(());
            }
        };
        let flow = reassembly::Flow {
            src: SocketAddr::new(src, header.src_port),
            dst: SocketAddr::new(dst, header.dst_port),
            vtag: header.vtag,
        };
        for chunk in chunks {
            let chunk = match chunk {
                Ok(sctp::Chunk::Data(d)) => d,
                Ok(sctp::Chunk::Other(_)) => continue,
                Err(e) => {
                    self.stats.capture.bad_sctp += 1;
                    tracing::debug!(frame = frame.number, "{e}");
                    break;
                }
            };
            let info = |ppid, chunks, number, time| FrameInfo {
                number,
                time,
                src: flow.src,
                dst: flow.dst,
                udp_encapsulated,
                ppid,
                chunks,
            };
            if chunk.is_complete() {
                // B is set, so the PPID is there for DATA and I-DATA alike.
                let ppid = chunk.ppid.unwrap_or_default();
                if self.choice.wants_ppid(ppid) {
                    let payload = Bytes::copy_from_slice(chunk.payload);
                    self.emit(info(ppid, 1, frame.number, time), &payload)?;
                }
                continue;
            }
            if chunk.ppid.is_some_and(|p| !self.choice.wants_ppid(p)) {
                continue;
            }
            match self.reassembler.push(flow, &chunk, (frame.number, time)) {
                reassembly::Outcome::Complete(m) => {
                    if self.choice.wants_ppid(m.ppid) {
                        self.stats.capture.reassembled += 1;
                        let (number, time) = m.meta;
                        let payload = Bytes::from(m.payload);
                        self.emit(info(m.ppid, m.chunks, number, time), &payload)?;
                    }
                }
                reassembly::Outcome::Held => {}
                reassembly::Outcome::Dropped => {
                    self.stats.capture.dropped_fragments += 1;
                    tracing::debug!(frame = frame.number, "fragment dropped: reassembly limits");
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn emit(&mut self, info: FrameInfo, payload: &Bytes) -> ControlFlow<()> {
        let choice = match Proto::of_ppid(info.ppid) {
            Some(Proto::Asap) => Choice::Asap,
            Some(Proto::Enrp) => Choice::Enrp,
            None => return ControlFlow::Continue(()),
        };
        self.stats.capture.chunks += info.chunks;
        let outcome = decode(choice, payload);
        self.stats.count(&outcome);
        self.printer
            .message(&Origin::Frame(info), payload, &outcome)
    }
}

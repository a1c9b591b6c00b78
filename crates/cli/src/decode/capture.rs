//! Reading pcap and pcapng files frame by frame.

use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

/// The two capture file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap, microsecond or nanosecond timestamps, either byte order.
    Pcap,
    /// pcapng.
    PcapNg,
}

impl Format {
    /// The format whose magic number `head` starts with.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        match head.get(..4)? {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d] => Some(Self::Pcap),
            [0x0a, 0x0d, 0x0d, 0x0a] => Some(Self::PcapNg),
            _ => None,
        }
    }

    /// Whether the file at `path` starts like a capture file.
    pub fn of_file(path: &Path) -> std::io::Result<Option<Self>> {
        let mut head = [0u8; 4];
        let mut f = File::open(path)?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(Self::sniff(&head[..n]))
    }
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct CapturedFrame<'a> {
    /// 1-based position in the file, as Wireshark numbers frames.
    pub number: u64,
    /// Capture time since the Unix epoch; `None` when the format has none.
    pub time: Option<Duration>,
    /// The link layer of the frame's interface.
    pub datalink: DataLink,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// A capture file that cannot be read at all.
#[derive(Debug)]
pub struct CaptureError(pub String);

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How reading ended.
#[derive(Debug, Default)]
pub struct ReadEnd {
    /// Why the file ended early (a cut-short or corrupt capture), if it did.
    pub damaged: Option<String>,
}

/// Calls `each` for every frame of the capture at `path`.
pub fn read(path: &Path, mut each: impl FnMut(CapturedFrame<'_>)) -> Result<ReadEnd, CaptureError> {
    let open_err = |e: std::io::Error| CaptureError(format!("cannot open {}: {e}", path.display()));
    let format = Format::of_file(path).map_err(open_err)?.ok_or_else(|| {
        CaptureError(format!(
            "{} is not a pcap or pcapng file (unknown magic number)",
            path.display()
        ))
    })?;
    let file = BufReader::new(File::open(path).map_err(open_err)?);
    let bad_header = |e: pcap_file::PcapError| {
        CaptureError(format!("{}: bad capture header: {e}", path.display()))
    };
    match format {
        Format::Pcap => {
            let mut reader = PcapReader::new(file).map_err(bad_header)?;
            let datalink = reader.header().datalink;
            let mut number = 0;
            while let Some(packet) = reader.next_packet() {
                number += 1;
                match packet {
                    Ok(p) => each(CapturedFrame {
                        number,
                        time: Some(p.timestamp),
                        datalink,
                        data: &p.data,
                    }),
                    Err(e) => return Ok(damaged(number, e)),
                }
            }
        }
        Format::PcapNg => {
            let mut reader = PcapNgReader::new(file).map_err(bad_header)?;
            let mut interfaces: Vec<Interface> = Vec::new();
            let mut number = 0;
            while let Some(block) = reader.next_block() {
                let block = match block {
                    Ok(b) => b,
                    Err(e) => return Ok(damaged(number + 1, e)),
                };
                let (interface, ticks, data) = match &block {
                    Block::SectionHeader(_) => {
                        interfaces.clear();
                        continue;
                    }
                    Block::InterfaceDescription(idb) => {
                        interfaces.push(Interface::new(idb.linktype, &idb.options));
                        continue;
                    }
                    // pcap-file reads the raw 64-bit count as nanoseconds; the
                    // interface's resolution converts it below.
                    Block::EnhancedPacket(p) => (
                        p.interface_id as usize,
                        Some(p.timestamp.as_nanos()),
                        &p.data,
                    ),
                    Block::Packet(p) => (
                        usize::from(p.interface_id),
                        Some(u128::from(p.timestamp)),
                        &p.data,
                    ),
                    Block::SimplePacket(p) => (0, None, &p.data),
                    _ => continue,
                };
                number += 1;
                let Some(ifc) = interfaces.get(interface) else {
                    return Ok(ReadEnd {
                        damaged: Some(format!(
                            "frame {number} refers to interface {interface}, which is not described"
                        )),
                    });
                };
                each(CapturedFrame {
                    number,
                    time: ticks.map(|t| ifc.time(t)),
                    datalink: ifc.datalink,
                    data,
                });
            }
        }
    }
    Ok(ReadEnd::default())
}

fn damaged(number: u64, e: pcap_file::PcapError) -> ReadEnd {
    ReadEnd {
        damaged: Some(format!(
            "capture is cut short or corrupt at frame {number}: {e}"
        )),
    }
}

/// What a pcapng interface description says about its frames.
#[derive(Debug, Clone, Copy)]
struct Interface {
    datalink: DataLink,
    /// Timestamp ticks per second.
    ticks_per_second: u128,
    /// Seconds added to every timestamp.
    offset: u64,
}

impl Interface {
    fn new(datalink: DataLink, options: &[InterfaceDescriptionOption<'_>]) -> Self {
        let mut ticks_per_second = 1_000_000;
        let mut offset = 0;
        for o in options {
            match *o {
                // Bit 7 set: a negative power of two; clear: of ten (pcapng §4.2).
                InterfaceDescriptionOption::IfTsResol(r) => {
                    let exp = u32::from(r & 0x7f);
                    let tps = if r & 0x80 != 0 {
                        2u128.checked_pow(exp)
                    } else {
                        10u128.checked_pow(exp)
                    };
                    ticks_per_second = tps.unwrap_or(ticks_per_second);
                }
                InterfaceDescriptionOption::IfTsOffset(s) => offset = s,
                _ => {}
            }
        }
        Self {
            datalink,
            ticks_per_second,
            offset,
        }
    }

    fn time(&self, ticks: u128) -> Duration {
        let secs = ticks / self.ticks_per_second;
        let nanos = (ticks % self.ticks_per_second) * 1_000_000_000 / self.ticks_per_second;
        let secs = u64::try_from(secs)
            .unwrap_or(u64::MAX)
            .saturating_add(self.offset);
        // nanos < 1e9 by construction.
        Duration::new(secs, nanos as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(
            Format::sniff(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]),
            Some(Format::Pcap)
        );
        assert_eq!(Format::sniff(&[0xa1, 0xb2, 0x3c, 0x4d]), Some(Format::Pcap));
        assert_eq!(
            Format::sniff(&[0x0a, 0x0d, 0x0d, 0x0a]),
            Some(Format::PcapNg)
        );
        assert_eq!(Format::sniff(b"0b00"), None);
        assert_eq!(Format::sniff(&[0xd4]), None);
    }

    #[test]
    fn pcapng_time_resolutions() {
        let ifc = |r| {
            Interface::new(
                DataLink::ETHERNET,
                &[InterfaceDescriptionOption::IfTsResol(r)],
            )
        };
        assert_eq!(ifc(6).time(1_500_000), Duration::from_millis(1500));
        assert_eq!(ifc(9).time(1_500_000_000), Duration::from_millis(1500));
        assert_eq!(ifc(0x80 | 10).time(1536), Duration::from_millis(1500));
        // A resolution too fine to represent falls back to microseconds.
        assert_eq!(ifc(120).time(2_000_000), Duration::from_secs(2));
        let default = Interface::new(DataLink::ETHERNET, &[]);
        assert_eq!(default.time(2_000_001), Duration::new(2, 1000));
    }
}

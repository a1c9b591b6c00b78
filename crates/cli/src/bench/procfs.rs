//! CPU time and memory of a local process from `/proc` (Linux), and finding
//! a running `rserpool registrar` there.

use std::fs;
use std::net::IpAddr;
use std::time::Duration;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// User plus system CPU time so far.
    pub cpu: Duration,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub peak_rss_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` if the process
/// is gone or this is not Linux.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let (utime, stime) = cpu_ticks(&stat)?;
    let kib = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let ticks = utime + stime;
    let hz = clock_ticks_per_sec();
    Some(Sample {
        cpu: Duration::from_secs(ticks / hz)
            + Duration::from_nanos(ticks % hz * 1_000_000_000 / hz),
        rss_kib: kib("VmRSS:")?,
        peak_rss_kib: kib("VmHWM:").unwrap_or(0),
    })
}

/// utime and stime (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks.
fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100)
}

/// The pid of the one `rserpool registrar` process on this host; when there
/// are several, the one whose command line names `ip`. `Err` says why none
/// was chosen.
pub fn find_registrar(ip: IpAddr) -> Result<u32, String> {
    let own = std::process::id();
    let mut found: Vec<(u32, Vec<String>)> = Vec::new();
    let dir = fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if is_registrar(&argv) {
            found.push((pid, argv));
        }
    }
    match found.len() {
        0 => Err("no `rserpool registrar` process found".into()),
        1 => Ok(found[0].0),
        n => {
            let ip = ip.to_string();
            let named: Vec<u32> = found
                .iter()
                .filter(|(_, argv)| argv.iter().any(|a| a.split(',').any(|p| p == ip)))
                .map(|(pid, _)| *pid)
                .collect();
            match named[..] {
                [pid] => Ok(pid),
                _ => Err(format!(
                    "{n} `rserpool registrar` processes found; give --registrar-pid"
                )),
            }
        }
    }
}

/// `rserpool registrar ...`: the program is named rserpool and its
/// subcommand is `registrar`.
fn is_registrar(argv: &[String]) -> bool {
    let Some(prog) = argv.first() else {
        return false;
    };
    let name = prog.rsplit('/').next().unwrap_or(prog);
    name == "rserpool" && argv.get(1).is_some_and(|a| a == "registrar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let stat = "1234 (rser pool) S 1 1234 1234 0 -1 4194560 500 0 0 0 \
                    250 75 0 0 20 0 3 0 100 1000 200 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some((250, 75)));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn recognises_registrar_command_lines() {
        let v = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert!(is_registrar(&v(
            "/work/target/release/rserpool registrar --addr 127.0.0.1"
        )));
        assert!(is_registrar(&v("rserpool registrar")));
        assert!(!is_registrar(&v("rserpool pe --pool x")));
        assert!(!is_registrar(&v("/usr/bin/rserpoolx registrar")));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.peak_rss_kib >= s.rss_kib);
    }
}

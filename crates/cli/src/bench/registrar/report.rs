//! The results: a table for people, one JSON object for scripts.

use super::super::procfs::Sample;
use super::stats::Stats;
use hdrhistogram::Histogram;
use rserpool_net::transport::select::BackendKind;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;
use tokio::time::Instant;

/// Everything the output shows.
pub struct Report {
    pub kind: BackendKind,
    pub pes: u64,
    pub pools: u64,
    pub assocs: u64,
    pub pu_assocs: u64,
    /// Length of the measured run (until the deregistration started).
    pub elapsed: Duration,
    pub start: Instant,
    pub life: Option<Duration>,
    pub reregister: Duration,
    pub stats: Stats,
    /// Tasks that had not finished winding down in time.
    pub unfinished: usize,
    pub registrar_pid: Option<u32>,
    /// The registrar at the start and the end of the run.
    pub registrar: Option<(Sample, Sample)>,
    /// This process at the start and the end of the run.
    pub generator: Option<(Sample, Sample)>,
}

/// One row of the table: a counter with latencies (or none).
struct Row<'a> {
    name: &'static str,
    count: u64,
    /// Whether a rate per second makes sense (not for the wind-down).
    rate: bool,
    latency: Option<&'a Histogram<u64>>,
}

fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// CPU used between two samples as a fraction of one core over `wall`.
fn cores(s: &(Sample, Sample), wall: Duration) -> f64 {
    s.1.cpu.saturating_sub(s.0.cpu).as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "max": h.max(),
    })
}

impl Report {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn rows(&self) -> Vec<Row<'_>> {
        let s = &self.stats;
        vec![
            Row {
                name: "registrations",
                count: s.registrations,
                rate: true,
                latency: Some(&s.registration),
            },
            Row {
                name: "re-registrations",
                count: s.reregistrations,
                rate: true,
                latency: Some(&s.reregistration),
            },
            Row {
                name: "resolutions",
                count: s.resolutions,
                rate: true,
                latency: Some(&s.resolution),
            },
            Row {
                name: "keep-alive acks",
                count: s.keep_alive_acks,
                rate: true,
                latency: None,
            },
            Row {
                name: "deregistrations",
                count: s.deregistrations,
                rate: false,
                latency: Some(&s.deregistration),
            },
        ]
    }

    /// Time from the start until every PE's first registration was accepted.
    fn all_registered(&self) -> Option<Duration> {
        (self.stats.registrations == self.pes)
            .then_some(self.stats.all_registered_at?)
            .map(|at| at.duration_since(self.start))
    }

    fn errors(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        vec![
            ("rejections", s.rejections),
            ("registration_timeouts", s.registration_timeouts),
            ("deregistration_timeouts", s.deregistration_timeouts),
            ("expired", s.expired),
            ("resolution_errors", s.resolution_errors),
            ("resolution_timeouts", s.resolution_timeouts),
            ("late_answers", s.late),
            ("unknown_keep_alives", s.unknown_keep_alives),
            ("protocol_errors", s.protocol_errors),
        ]
    }

    /// The table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "rserpool bench registrar: {} PEs in {} pools over {} associations + {} resolving, \
             {}, {:.1} s",
            self.pes,
            self.pools,
            self.assocs,
            self.pu_assocs,
            self.kind,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            o,
            "{:<18}{:>10}{:>11}{:>10}{:>10}{:>10}{:>10}",
            "", "count", "rate/s", "p50", "p90", "p99", "max"
        );
        for r in self.rows() {
            let rate = if r.rate {
                format!("{:.1}", self.rate(r.count))
            } else {
                "-".into()
            };
            let lat: [String; 4] = match r.latency.filter(|h| !h.is_empty()) {
                Some(h) => [
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.9)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max()),
                ],
                None => ["-".into(), "-".into(), "-".into(), "-".into()],
            };
            let _ = writeln!(
                o,
                "{:<18}{:>10}{:>11}{:>10}{:>10}{:>10}{:>10}",
                r.name, r.count, rate, lat[0], lat[1], lat[2], lat[3]
            );
        }
        match self.all_registered() {
            Some(d) => {
                let _ = writeln!(
                    o,
                    "all {} PEs registered in {:.2} s ({:.1}/s)",
                    self.pes,
                    d.as_secs_f64(),
                    self.pes as f64 / d.as_secs_f64().max(1e-9)
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "registered {} of {} PEs within the run",
                    self.stats.registrations, self.pes
                );
            }
        }
        let _ = writeln!(
            o,
            "keep-alives received {} ({} with H), acks sent {}; re-registration every {:.1} s, \
             life {}",
            self.stats.keep_alives,
            self.stats.keep_alives_home,
            self.stats.keep_alive_acks,
            self.reregister.as_secs_f64(),
            self.life
                .map_or("infinite".into(), |l| format!("{:.1} s", l.as_secs_f64()))
        );
        let errors = self
            .errors()
            .iter()
            .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(o, "errors: {errors}");
        if let Some(lost) = &self.stats.lost {
            let _ = writeln!(o, "association lost: {lost}");
        }
        if self.unfinished > 0 {
            let _ = writeln!(
                o,
                "{} associations did not finish winding down in time",
                self.unfinished
            );
        }
        match (self.registrar_pid, &self.registrar) {
            (Some(pid), Some(s)) => {
                let _ = writeln!(
                    o,
                    "registrar pid {pid}: CPU {:.3} cores (user+sys over {:.1} s), RSS {}, peak RSS {}",
                    cores(s, self.elapsed),
                    self.elapsed.as_secs_f64(),
                    mib(s.1.rss_kib),
                    mib(s.1.peak_rss_kib)
                );
            }
            (Some(pid), None) => {
                let _ = writeln!(o, "registrar pid {pid}: /proc/{pid} unreadable");
            }
            (None, _) => {
                let _ = writeln!(
                    o,
                    "registrar: CPU and memory not measured (give --registrar-pid)"
                );
            }
        }
        if let Some(s) = &self.generator {
            let _ = writeln!(
                o,
                "generator: CPU {:.3} cores, RSS {}",
                cores(s, self.elapsed),
                mib(s.1.rss_kib)
            );
        }
        o
    }

    /// The JSON object (latencies in microseconds).
    pub fn json(&self) -> Value {
        let rows = self.rows();
        let count = |name: &str| rows.iter().find(|r| r.name == name).map_or(0, |r| r.count);
        let s = &self.stats;
        let proc = |p: Option<u32>, s: &Option<(Sample, Sample)>| match s {
            Some(s) => json!({
                "pid": p,
                "cpu_cores": cores(s, self.elapsed),
                "cpu_seconds": s.1.cpu.saturating_sub(s.0.cpu).as_secs_f64(),
                "rss_kib": s.1.rss_kib,
                "peak_rss_kib": s.1.peak_rss_kib,
            }),
            None => Value::Null,
        };
        let mut errors = serde_json::Map::new();
        for (k, v) in self.errors() {
            errors.insert(k.into(), v.into());
        }
        json!({
            "transport": self.kind.to_string(),
            "pes": self.pes,
            "pools": self.pools,
            "assocs": self.assocs,
            "pu_assocs": self.pu_assocs,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "registration_life_s": self.life.map(|l| l.as_secs_f64()),
            "reregistration_interval_s": self.reregister.as_secs_f64(),
            "all_registered_s": self.all_registered().map(|d| d.as_secs_f64()),
            "rates_per_s": {
                "registrations": self.rate(count("registrations")),
                "reregistrations": self.rate(count("re-registrations")),
                "resolutions": self.rate(count("resolutions")),
                "keep_alive_acks": self.rate(count("keep-alive acks")),
            },
            "counts": {
                "registrations": s.registrations,
                "reregistrations": s.reregistrations,
                "resolutions": s.resolutions,
                "keep_alives": s.keep_alives,
                "keep_alives_home": s.keep_alives_home,
                "keep_alive_acks": s.keep_alive_acks,
                "deregistrations": s.deregistrations,
            },
            "errors": errors,
            "latency_us": {
                "registration": percentiles(&s.registration),
                "reregistration": percentiles(&s.reregistration),
                "resolution": percentiles(&s.resolution),
                "deregistration": percentiles(&s.deregistration),
            },
            "association_lost": s.lost,
            "unfinished_assocs": self.unfinished,
            "registrar": proc(self.registrar_pid, &self.registrar),
            "generator": proc(Some(std::process::id()), &self.generator),
        })
    }
}

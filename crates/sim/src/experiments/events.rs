//! Reliability events of a scenario file (`rserpool sim run`): registrars
//! cut off or crashed, once or flapping, checked and expanded into the
//! outages of a [`Plan`](super::takeover::Plan).

use super::takeover::Target;
use crate::node::CrashMode;
use std::time::Duration;

/// What an event does to its registrars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Each alone on a network side of its own until the network heals.
    Cut,
    /// They crash, and restart with a fresh state at the end.
    Crash,
}

/// One event as a scenario file gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// When the (first) outage starts.
    pub at: Duration,
    /// Cut off or crashed.
    pub kind: Kind,
    /// Indices of the registrars hit.
    pub registrars: Vec<usize>,
    /// How long each outage lasts.
    pub lasts: Duration,
    /// Flapping: a new outage this often ...
    pub every: Option<Duration>,
    /// ... this many times (6 if not given).
    pub cycles: Option<u32>,
    /// Kind [`Kind::Crash`] only: how (default [`CrashMode::Host`]).
    pub crash: Option<CrashMode>,
}

/// Outages when [`Event::every`] has no [`Event::cycles`].
pub const DEFAULT_CYCLES: u32 = 6;

/// The events of a file, checked and expanded.
#[derive(Clone, Debug, PartialEq)]
pub struct Expanded {
    /// (start, end) of every outage, sorted, none overlapping.
    pub outages: Vec<(Duration, Duration)>,
    /// Who each outage hits.
    pub targets: Vec<Target>,
    /// One line per event saying what happens (`pr3 pr4 unreachable from
    /// 60 s for 163 s`).
    pub descriptions: Vec<String>,
    /// With more than one outage: the time between the first two starts,
    /// and the number of outages.
    pub flap: Option<(Duration, u32)>,
}

/// Checks `events` against a scope of `registrars`; the reason names the
/// event (`events[n].key`) in one line.
pub fn expand(events: &[Event], registrars: usize) -> Result<Expanded, String> {
    let mut outages: Vec<((Duration, Duration), Target)> = Vec::new();
    let mut descriptions = Vec::new();
    for (n, e) in events.iter().enumerate() {
        let name = format!("events[{n}]");
        if e.registrars.is_empty() {
            return Err(format!("{name}.registrars is empty"));
        }
        if let Some(r) = e.registrars.iter().find(|r| **r >= registrars) {
            return Err(format!(
                "{name}.registrars: {r} is not a registrar (0 to {})",
                registrars - 1
            ));
        }
        let mut who = e.registrars.clone();
        who.sort_unstable();
        who.dedup();
        if who.len() == registrars {
            return Err(format!(
                "{name}.registrars must leave at least one registrar"
            ));
        }
        if e.lasts.is_zero() {
            return Err(format!("{name}.for must be more than 0"));
        }
        let crash = match (e.kind, e.crash) {
            (Kind::Cut, Some(_)) => {
                return Err(format!("{name}.crash applies only to kind \"crash\""));
            }
            (Kind::Cut, None) => None,
            (Kind::Crash, mode) => Some(mode.unwrap_or(CrashMode::Host)),
        };
        let (period, cycles) = match (e.every, e.cycles) {
            (None, Some(_)) => return Err(format!("{name}.cycles applies only with every")),
            (None, None) => (None, 1),
            (Some(p), _) if p <= e.lasts => {
                return Err(format!("{name}.every must be longer than for"));
            }
            (Some(_), Some(c)) if !(1..=10_000).contains(&c) => {
                return Err(format!("{name}.cycles must be 1 to 10000"));
            }
            (Some(p), c) => (Some(p), c.unwrap_or(DEFAULT_CYCLES)),
        };
        let names: Vec<String> = who.iter().map(|r| format!("pr{r}")).collect();
        let verb = match crash {
            None => "unreachable",
            Some(CrashMode::Host) => "crashed (host)",
            Some(CrashMode::Process) => "crashed (process)",
        };
        let mut text = format!(
            "{} {verb} from {} for {}",
            names.join(" "),
            secs(e.at),
            secs(e.lasts)
        );
        if let Some(p) = period {
            text += &format!(" in every {}, {cycles} times", secs(p));
        }
        descriptions.push(text);
        for k in 0..cycles {
            let cut = e.at + period.unwrap_or_default() * k;
            let target = Target {
                who: who.clone(),
                crash,
            };
            outages.push(((cut, cut + e.lasts), target));
        }
    }
    outages.sort_by_key(|o| o.0);
    for w in outages.windows(2) {
        if w[1].0.0 < w[0].0.1 {
            return Err(format!(
                "events overlap: an outage from {} to {} and one from {}",
                secs(w[0].0.0),
                secs(w[0].0.1),
                secs(w[1].0.0)
            ));
        }
    }
    let flap = (outages.len() > 1).then(|| {
        let first = outages[0].0.0;
        (outages[1].0.0 - first, outages.len() as u32)
    });
    let (outages, targets) = outages.into_iter().unzip();
    Ok(Expanded {
        outages,
        targets,
        descriptions,
        flap,
    })
}

/// A duration as seconds, without decimals when whole.
pub fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(at: u64, registrars: Vec<usize>, lasts: u64) -> Event {
        Event {
            at: Duration::from_secs(at),
            kind: Kind::Cut,
            registrars,
            lasts: Duration::from_secs(lasts),
            every: None,
            cycles: None,
            crash: None,
        }
    }

    #[test]
    fn flapping_events_expand_to_outages() {
        let s = Duration::from_secs;
        let mut e = cut(60, vec![4], 20);
        e.every = Some(s(60));
        e.cycles = Some(3);
        let x = expand(&[e], 5).expect("valid events");
        assert_eq!(
            x.outages,
            [(s(60), s(80)), (s(120), s(140)), (s(180), s(200))]
        );
        assert_eq!(x.targets[2].who, [4]);
        assert_eq!(x.flap, Some((s(60), 3)));
        assert_eq!(
            x.descriptions,
            ["pr4 unreachable from 60 s for 20 s in every 60 s, 3 times"]
        );
    }

    #[test]
    fn bad_events_are_named() {
        let e = expand(&[cut(1, vec![5], 1)], 5).expect_err("no registrar 5");
        assert!(e.contains("events[0].registrars"), "{e}");
        let mut crash = cut(5, vec![2], 10);
        crash.kind = Kind::Crash;
        let e = expand(&[cut(1, vec![1], 10), crash], 5).expect_err("overlap");
        assert!(e.contains("overlap"), "{e}");
        let e = expand(&[cut(1, vec![0, 1], 10)], 2).expect_err("nobody left");
        assert!(e.contains("at least one"), "{e}");
        let mut c = cut(1, vec![1], 10);
        c.crash = Some(CrashMode::Process);
        let e = expand(&[c], 3).expect_err("crash mode on a cut");
        assert!(e.contains("events[0].crash"), "{e}");
    }
}

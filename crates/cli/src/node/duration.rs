//! Durations on the command line and in configuration files: a number with
//! a unit (`250ms`, `5s`, `1.5s`, `2m`). A bare number is refused (only `0`
//! is unambiguous): `--registration-life 60` meaning 60 ms went unnoticed.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration given as text with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 500ms, 5s, 1.5s, 2m)"))?;
    let scale = match unit.trim() {
        "" if value == 0.0 => return Ok(Duration::ZERO),
        "" => {
            return Err(format!(
                "`{text}` needs a unit: write {num}ms, {num}s or {num}m"
            ));
        }
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s or m)"
            ));
        }
    };
    let d = scale.as_secs_f64() * value;
    if !d.is_finite() || d > 1e9 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(d))
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse(s).map(Dur)
    }
}

/// Reads a string with a unit (or the number 0).
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, such as \"500ms\" or \"5s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        self.visit_f64(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        parse(&v.to_string()).map_err(|e| E::custom(format!("{e} (in quotes)")))
    }
}

impl<'de> serde::Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor).map(Dur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_required() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            "1.5s".parse::<Dur>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!("2m".parse::<Dur>().unwrap().0, Duration::from_secs(120));
        assert_eq!("0".parse::<Dur>().unwrap().0, Duration::ZERO);
        let e = "60".parse::<Dur>().unwrap_err();
        assert!(e.contains("needs a unit") && e.contains("60s"), "{e}");
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(
            "5 hours"
                .parse::<Dur>()
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            "fast"
                .parse::<Dur>()
                .unwrap_err()
                .contains("not a duration")
        );
        assert!("-1s".parse::<Dur>().is_err());
        assert!("1e300s".parse::<Dur>().is_err());
    }

    #[test]
    fn toml_takes_strings_with_units() {
        #[derive(serde::Deserialize)]
        struct T {
            a: Dur,
            b: Dur,
        }
        let t: T = toml::from_str("a = \"2s\"\nb = 0").unwrap();
        assert_eq!(t.a.0, Duration::from_secs(2));
        assert_eq!(t.b.0, Duration::ZERO);
        let e = toml::from_str::<T>("a = 3\nb = 0")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("needs a unit"), "{e}");
    }
}

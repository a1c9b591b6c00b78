//! Durations on the command line and in configuration files: a number with
//! a unit (`250ms`, `5s`, `1.5s`, `2m`); a bare number takes the unit the
//! flag documents.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration given as text with a unit; bare numbers are milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

/// A duration given as text with a unit; bare numbers are seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

/// Parses `text`; a number without unit is multiplied by `bare`.
fn parse(text: &str, bare: Duration) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 500ms, 5s, 1.5s, 2m)"))?;
    let scale = match unit.trim() {
        "" => bare,
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

impl FromStr for Millis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse(s, Duration::from_millis(1)).map(Millis)
    }
}

impl FromStr for Secs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse(s, Duration::from_secs(1)).map(Secs)
    }
}

/// Reads a string with a unit or a bare (integer or float) number.
struct DurationVisitor(Duration);

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"500ms\" or \"5s\", or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v, self.0).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        self.visit_f64(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        parse(&v.to_string(), self.0).map_err(E::custom)
    }
}

impl<'de> serde::Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor(Duration::from_millis(1)))
            .map(Millis)
    }
}

impl<'de> serde::Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor(Duration::from_secs(1)))
            .map(Secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_numbers() {
        assert_eq!(
            "250ms".parse::<Millis>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            "250".parse::<Millis>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            "1.5s".parse::<Millis>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!("2".parse::<Secs>().unwrap().0, Duration::from_secs(2));
        assert_eq!("0.5".parse::<Secs>().unwrap().0, Duration::from_millis(500));
        assert_eq!("2m".parse::<Secs>().unwrap().0, Duration::from_secs(120));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(
            "5 hours"
                .parse::<Millis>()
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            "fast"
                .parse::<Millis>()
                .unwrap_err()
                .contains("not a duration")
        );
        assert!("-1s".parse::<Millis>().is_err());
        assert!("1e300".parse::<Secs>().is_err());
    }

    #[test]
    fn toml_accepts_strings_and_numbers() {
        #[derive(serde::Deserialize)]
        struct T {
            a: Millis,
            b: Secs,
            c: Millis,
        }
        let t: T = toml::from_str("a = \"2s\"\nb = 3\nc = 1.5").unwrap();
        assert_eq!(t.a.0, Duration::from_secs(2));
        assert_eq!(t.b.0, Duration::from_secs(3));
        assert_eq!(t.c.0, Duration::from_micros(1500));
    }
}

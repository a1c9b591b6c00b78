//! Member selection policies on the command line (`rr`, `wrr:3`, `lu:25%`,
//! ...) and as printed for a selected pool element.

use rserpool_wire::Policy;

/// Parses `rr`, `wrr:W`, `rand`, `wrand:W`, `prio:P` or `lu:LOAD` (LOAD as
/// a percentage such as `25%`, or the raw 32-bit value).
pub fn parse(s: &str) -> Result<Policy, String> {
    let (name, value) = match s.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    let number = |what: &str| -> Result<u32, String> {
        let v = value.ok_or_else(|| format!("`{name}` needs a {what}: {name}:N"))?;
        v.parse()
            .map_err(|_| format!("`{v}` is not a valid {what} (0..=4294967295)"))
    };
    let policy = match name.to_ascii_lowercase().as_str() {
        "rr" => Policy::RoundRobin,
        "rand" => Policy::Random,
        "wrr" => Policy::WeightedRoundRobin {
            weight: number("weight")?,
        },
        "wrand" => Policy::WeightedRandom {
            weight: number("weight")?,
        },
        "prio" => Policy::Priority {
            priority: number("priority")?,
        },
        "lu" => Policy::LeastUsed {
            load: load(value.ok_or("`lu` needs a load: lu:25% or lu:N")?)?,
        },
        _ => {
            return Err(format!(
                "unknown policy `{name}` (rr, wrr:W, lu:LOAD, rand, wrand:W, prio:P)"
            ));
        }
    };
    if value.is_some() && matches!(policy, Policy::RoundRobin | Policy::Random) {
        return Err(format!("`{name}` takes no value"));
    }
    Ok(policy)
}

/// A load: `N%` of the full scale, or the raw value.
fn load(v: &str) -> Result<u32, String> {
    if let Some(p) = v.strip_suffix('%') {
        let pct: f64 = p
            .parse()
            .map_err(|_| format!("`{v}` is not a percentage"))?;
        if !(0.0..=100.0).contains(&pct) {
            return Err(format!("load `{v}` is outside 0%..100%"));
        }
        return Ok((pct / 100.0 * f64::from(u32::MAX)).round() as u32);
    }
    v.parse()
        .map_err(|_| format!("`{v}` is not a load (25% or 0..=4294967295)"))
}

/// The policy's name and values as `key=value` words: `policy=LU load=25.0%`.
pub fn describe(p: &Policy) -> String {
    let pct = |v: u32| format!("{:.1}%", f64::from(v) * 100.0 / f64::from(u32::MAX));
    let name = format!("policy={}", p.policy_type().short_name());
    match p {
        Policy::WeightedRoundRobin { weight } | Policy::WeightedRandom { weight } => {
            format!("{name} weight={weight}")
        }
        Policy::Priority { priority } => format!("{name} prio={priority}"),
        Policy::LeastUsed { load } | Policy::RandomizedLeastUsed { load } => {
            format!("{name} load={}", pct(*load))
        }
        Policy::RoundRobin | Policy::Random => name,
        // The rest are printed as the wire crate shows them.
        other => format!("{name} ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_parses() {
        assert_eq!(parse("rr"), Ok(Policy::RoundRobin));
        assert_eq!(parse("rand"), Ok(Policy::Random));
        assert_eq!(parse("wrr:3"), Ok(Policy::WeightedRoundRobin { weight: 3 }));
        assert_eq!(parse("wrand:2"), Ok(Policy::WeightedRandom { weight: 2 }));
        assert_eq!(parse("prio:7"), Ok(Policy::Priority { priority: 7 }));
        assert_eq!(parse("lu:100%"), Ok(Policy::LeastUsed { load: u32::MAX }));
        assert_eq!(parse("lu:0%"), Ok(Policy::LeastUsed { load: 0 }));
        assert_eq!(parse("LU:12"), Ok(Policy::LeastUsed { load: 12 }));
    }

    #[test]
    fn bad_policies_say_why() {
        assert!(parse("fastest").unwrap_err().contains("unknown policy"));
        assert!(parse("wrr").unwrap_err().contains("needs a weight"));
        assert!(parse("wrr:-1").unwrap_err().contains("not a valid weight"));
        assert!(parse("lu:150%").unwrap_err().contains("outside"));
        assert!(parse("rr:1").unwrap_err().contains("takes no value"));
    }

    #[test]
    fn descriptions() {
        assert_eq!(describe(&parse("lu:25%").unwrap()), "policy=LU load=25.0%");
        assert_eq!(describe(&parse("wrr:3").unwrap()), "policy=WRR weight=3");
        assert_eq!(describe(&parse("rr").unwrap()), "policy=RR");
    }
}

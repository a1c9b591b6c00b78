//! Experiments on whole scopes, as plain results: the library behind
//! `rserpool sim takeover` and `rserpool sim run`, so that the binary only
//! parses arguments and prints, and tests assert on the same numbers the
//! binary shows.
//!
//! [`takeover`] runs the draft's Takeover Suggestion experiment (registrars
//! cut off or crashed, then back; ownership per registrar over time);
//! [`events`] turns the reliability events of a scenario file into its
//! outages.
//!
//! ```
//! use rserpool_sim::experiments::takeover::{Experiment, Plan};
//! use std::time::Duration;
//!
//! let mut plan = Plan::draft();
//! plan.registrars = 3;
//! plan.pes = 30;
//! plan.duration = Duration::from_secs(20);
//! let mut run = Experiment::new(&plan);
//! let samples = run.run_to_end();
//! assert_eq!(samples.len(), 3); // 0 s, 10 s, 20 s
//! let outcome = run.finish();
//! assert_eq!(outcome.final_owned.iter().sum::<usize>(), 30);
//! ```

pub mod events;
pub mod takeover;

/// max/mean of ownership counts (1 when nobody owns anything).
pub fn imbalance(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return 1.0;
    }
    let mean = total as f64 / counts.len() as f64;
    counts.iter().copied().max().unwrap_or(0) as f64 / mean
}

/// The fewest PE moves that bring every registrar down to `fair`.
pub fn minimum_moves(owned: &[usize], fair: usize) -> usize {
    owned.iter().map(|c| c.saturating_sub(fair)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imbalance_is_max_over_mean() {
        assert_eq!(imbalance(&[10, 10, 10]), 1.0);
        assert!((imbalance(&[20, 10, 0]) - 2.0).abs() < 1e-9);
        assert_eq!(imbalance(&[0, 0]), 1.0);
    }

    #[test]
    fn minimum_moves_is_the_excess_over_the_fair_share() {
        assert_eq!(minimum_moves(&[340, 330, 330, 0, 0], 200), 400);
        assert_eq!(minimum_moves(&[200, 200], 200), 0);
    }
}

//! The world's randomness: one seeded stream for the network, and a seed of
//! its own for every machine incarnation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// The network's random stream (jitter and loss), drawn in event order, so
/// the same seed gives the same run.
#[derive(Debug)]
pub(crate) struct NetRng(ChaCha8Rng);

impl NetRng {
    pub(crate) fn new(world_seed: u64) -> Self {
        // A stream of its own, so machine seeds (derived below) and network
        // draws never share numbers.
        let mut rng = ChaCha8Rng::seed_from_u64(world_seed);
        rng.set_stream(1);
        Self(rng)
    }

    /// A duration uniformly distributed in `[0, max]`.
    pub(crate) fn up_to(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        let max_ns = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.0.random_range(0..=max_ns))
    }

    /// True with probability `p`; draws nothing when `p` is zero.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.random_bool(p.min(1.0))
    }
}

/// The seed handed to incarnation `incarnation` of node `node` in the world
/// seeded `world_seed`.
///
/// It depends only on these three numbers, so adding a node to a scenario
/// does not change the seeds of the others.
pub fn machine_seed(world_seed: u64, node: u32, incarnation: u32) -> u64 {
    let who = (u64::from(node) << 32) | u64::from(incarnation);
    splitmix64(world_seed ^ splitmix64(who ^ 0x0005_eed0_fa11_5eed))
}

/// SplitMix64's finaliser: a bijective mix with good avalanche.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_seeds_differ_by_node_incarnation_and_world() {
        let a = machine_seed(1, 0, 0);
        assert_ne!(a, machine_seed(1, 1, 0));
        assert_ne!(a, machine_seed(1, 0, 1));
        assert_ne!(a, machine_seed(2, 0, 0));
        assert_eq!(a, machine_seed(1, 0, 0));
    }

    #[test]
    fn up_to_stays_in_range_and_chance_zero_never_fires() {
        let mut rng = NetRng::new(7);
        let max = Duration::from_millis(3);
        for _ in 0..1000 {
            assert!(rng.up_to(max) <= max);
            assert!(!rng.chance(0.0));
        }
        assert_eq!(rng.up_to(Duration::ZERO), Duration::ZERO);
    }
}

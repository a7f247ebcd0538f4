//! The deterministic generator that decides whether a rule with `rate` < 1 fires: splitmix64,
//! seeded by the faults request (or a fixed default), persisted with the world so that a run is
//! reproducible given the same order of calls, across emulator processes too.

use serde::{Deserialize, Serialize};

/// The seed of a world no request has seeded.
pub const DEFAULT_SEED: u64 = 42;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// The seed it started from (shown to users, who may want to repeat a run).
    pub seed: u64,
    state: u64,
}

impl Default for Generator {
    fn default() -> Generator {
        Generator::seeded(DEFAULT_SEED)
    }
}

impl Generator {
    pub fn seeded(seed: u64) -> Generator {
        Generator { seed, state: seed }
    }

    /// The next draw, uniform in [0, 1).
    pub fn draw(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_sequence_and_another_seed_does_not() {
        let draws = |seed| {
            let mut generator = Generator::seeded(seed);
            (0..32).map(|_| generator.draw()).collect::<Vec<f64>>()
        };
        assert_eq!(draws(42), draws(42));
        assert_ne!(draws(42), draws(43));
        assert!(draws(7).iter().all(|draw| (0.0..1.0).contains(draw)));
    }

    #[test]
    fn draws_spread_over_the_interval() {
        let mut generator = Generator::default();
        let below_half = (0..10_000).filter(|_| generator.draw() < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
    }
}

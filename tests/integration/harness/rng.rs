//! A small seeded random generator for the fault tests.

use std::time::{SystemTime, UNIX_EPOCH};
/// A small seeded random generator (SplitMix64): the fault tests print their seed, and a seed
/// given in `RT_CLEANUP_FAULT_SEED` replays a run.
pub struct Rng {
    state: u64,
    seed: u64,
}

impl Rng {
    /// From `RT_CLEANUP_FAULT_SEED`, else from the clock; prints the seed for a replay.
    pub fn seeded(test: &str) -> Self {
        let seed = std::env::var("RT_CLEANUP_FAULT_SEED")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{test}: seed {seed} (RT_CLEANUP_FAULT_SEED={seed} replays it)");
        Self { state: seed, seed }
    }

    /// The seed it started from (a forked generator's is the number it was forked with).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A generator of its own for another thread, seeded from this one, so that one seed
    /// still replays every thread's choices.
    pub fn fork(&mut self) -> Self {
        let seed = self.next_u64();
        Self { state: seed, seed }
    }

    /// True with a chance of `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.between(1, 100) <= percent
    }

    /// One of `choices`, which must not be empty.
    pub fn pick<'a, T>(&mut self, choices: &'a [T]) -> &'a T {
        &choices[self.between(0, choices.len() as u64 - 1) as usize]
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

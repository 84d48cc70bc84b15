//! A small seeded random generator for the fault tests.

use std::time::{SystemTime, UNIX_EPOCH};
/// A small seeded random generator (SplitMix64): the fault tests print their seed, and a seed
/// given in `RT_CLEANUP_FAULT_SEED` replays a run.
pub struct Rng(u64);

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
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

//! A tiny deterministic random source for the behaviour models.
//!
//! Every simulated device owns one, seeded from the fleet seed and its index, so a
//! run is reproducible and tests can pin outcomes. Not for anything secret.

/// SplitMix64: eight bytes of state, good statistical quality, no dependencies.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for device `index` of a fleet seeded with `fleet_seed`; distinct
    /// indices give unrelated streams.
    pub fn for_device(fleet_seed: u64, index: u64) -> Self {
        let mut mixer = Self(fleet_seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
        Self(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // 53 high bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p.clamp(0.0, 1.0)
    }

    /// Approximately standard normal (Irwin–Hall with 12 uniforms): bounded to ±6,
    /// which is exactly what a sensor model wants.
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }

    /// True with the probability that a Poisson process with `rate_per_sec` fires at
    /// least once in `dt_secs`.
    pub fn poisson_fires(&mut self, rate_per_sec: f64, dt_secs: f64) -> bool {
        let p = 1.0 - (-rate_per_sec.max(0.0) * dt_secs.max(0.0)).exp();
        self.chance(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let mut a = SimRng::for_device(7, 3);
        let mut b = SimRng::for_device(7, 3);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(
            SimRng::for_device(7, 3).next_u64(),
            SimRng::for_device(7, 4).next_u64()
        );
    }

    #[test]
    fn unit_and_normal_stay_in_their_ranges() {
        let mut r = SimRng::new(1);
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            let n = r.normal();
            assert!((-6.0..=6.0).contains(&n));
            sum += n;
        }
        assert!((sum / 10_000.0).abs() < 0.1, "mean {}", sum / 10_000.0);
    }
}

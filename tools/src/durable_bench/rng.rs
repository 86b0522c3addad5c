//! The bench's random numbers: xorshift64* seeded per thread and run, and Floyd's sampling of
//! distinct keys. Deterministic from the seed, so a run's key choices can be replayed.

use rustc_hash::FxHashSet;

/// xorshift64* (Vigna): a 64-bit state that is never zero.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A generator from any seed: the seed goes through one splitmix64 step, so nearby seeds
    /// give unrelated streams and seed 0 does not give the all-zero state.
    pub fn seeded(seed: u64) -> XorShift64 {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift64 {
            state: if z == 0 { 1 } else { z },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A float in `[0, 1)` (the top 53 bits).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `0..n` (Lemire's multiply-shift; its bias is below n / 2^64).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Floyd's algorithm: `k` distinct numbers of `0..n`, each `k`-subset equally likely, in `k`
/// draws whatever `k` is against `n`. `seen` is scratch space, reused between calls (hashed with
/// FxHash: the picking runs between a thread's commits, so its cost lowers the rate measured).
pub fn sample_distinct(
    rng: &mut XorShift64,
    n: usize,
    k: usize,
    seen: &mut FxHashSet<usize>,
    out: &mut Vec<usize>,
) {
    assert!(k <= n, "cannot pick {k} distinct numbers below {n}");
    seen.clear();
    out.clear();
    for j in n - k..n {
        let t = rng.below(j + 1);
        let pick = if seen.insert(t) { t } else { j };
        seen.insert(pick);
        out.push(pick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_give_repeatable_distinct_streams() {
        let take = |seed| {
            let mut r = XorShift64::seeded(seed);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(take(0), take(0));
        assert_ne!(take(0), take(1));
        assert!(take(0).iter().all(|&x| x != 0));
    }

    #[test]
    fn samples_are_distinct_in_range_and_cover_everything() {
        let mut rng = XorShift64::seeded(42);
        let (mut seen, mut out) = (FxHashSet::default(), Vec::new());
        let mut hits = [0u32; 10];
        for _ in 0..2000 {
            sample_distinct(&mut rng, 10, 3, &mut seen, &mut out);
            assert_eq!(out.len(), 3);
            let distinct: std::collections::HashSet<_> = out.iter().collect();
            assert_eq!(distinct.len(), 3, "{out:?}");
            for &x in &out {
                hits[x] += 1;
            }
        }
        // 600 expected each; far from it would mean a biased draw.
        assert!(hits.iter().all(|&h| (450..750).contains(&h)), "{hits:?}");
        sample_distinct(&mut rng, 5, 5, &mut seen, &mut out);
        out.sort_unstable();
        assert_eq!(out, [0, 1, 2, 3, 4]);
    }
}

//! Key choice for `vellum bench kv`: uniform, or YCSB's scrambled Zipfian (θ = 0.99: the
//! generator of Gray et al., "Quickly generating billion-record synthetic databases", whose ranks
//! are hashed over the key space so the hot keys are spread over the index and the log).

use crate::durable_bench::rng::XorShift64;

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    Uniform,
    Zipf,
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipf => "zipf",
        })
    }
}

/// The Zipfian constants for `n` items (computing `zeta(n)` is O(n), done once per bench).
#[derive(Debug, Clone, Copy)]
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

impl Zipf {
    pub fn new(n: u64, theta: f64) -> Zipf {
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zeta_n = zeta(n);
        let zeta_2 = zeta(2.min(n));
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Zipf {
            n,
            theta,
            alpha,
            zeta_n,
            eta,
        }
    }

    /// A rank in `[0, n)`: 0 the most frequent.
    fn rank(&self, rng: &mut XorShift64) -> u64 {
        let u = rng.unit();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

/// Draws key numbers in `[0, keys)`.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    keys: u64,
    zipf: Option<Zipf>,
}

impl KeyChooser {
    pub fn new(keys: u64, distribution: Distribution, zipf: Option<Zipf>) -> KeyChooser {
        KeyChooser {
            keys,
            zipf: (distribution == Distribution::Zipf)
                .then_some(zipf)
                .flatten(),
        }
    }

    pub fn next(&self, rng: &mut XorShift64) -> u64 {
        match &self.zipf {
            None => rng.below(self.keys as usize) as u64,
            // Scrambled: the rank's hash, so rank 0 is not key 0 (YCSB's ScrambledZipfian).
            Some(z) => scramble(z.rank(rng)) % self.keys,
        }
    }
}

/// A 64-bit mix (splitmix64's finaliser).
fn scramble(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_ranks_follow_the_law_at_the_head() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = XorShift64::seeded(3);
        let mut counts = vec![0u64; 1000];
        let n = 200_000;
        for _ in 0..n {
            counts[z.rank(&mut rng) as usize] += 1;
        }
        // P(rank 0) = 1 / zeta(1000) ≈ 0.134; P(rank 1) ≈ 0.134 / 2^0.99.
        let p0 = counts[0] as f64 / n as f64;
        let p1 = counts[1] as f64 / n as f64;
        assert!((p0 - 0.134).abs() < 0.01, "{p0}");
        assert!((p1 - 0.068).abs() < 0.01, "{p1}");
        assert!(counts.iter().all(|&c| c < counts[0] + 1));
    }

    #[test]
    fn uniform_keys_cover_the_space_evenly() {
        let k = KeyChooser::new(10, Distribution::Uniform, None);
        let mut rng = XorShift64::seeded(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[k.next(&mut rng) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }
}

//! The one source of chance in a run: a small seeded generator.
//!
//! Every random choice the simulator makes comes from an [`Rng`] derived
//! from the run's seed, so a seed replays exactly. Each kind of fault draws
//! from a stream of its own ([`Stream`]): turning one kind off (to shrink a
//! failing run) leaves the others' draws as they were, as far as the run's
//! course allows.
//!
//! The generator is xoshiro256** seeded through splitmix64, as their
//! authors recommend; it is not for keys, only for reproducible chance.

/// The independent streams a run draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The cluster's shape: servers, clocks, the dishonest one.
    Setup,
    /// Delays, drops, duplicates, reordering.
    Network,
    /// Partitions and heals.
    Partition,
    /// Crashes and restarts.
    Crash,
    /// Clock jumps.
    Clock,
    /// Payments and status queries.
    Clients,
    /// The dishonest server's choices.
    Liar,
}

impl Stream {
    fn index(self) -> u64 {
        match self {
            Stream::Setup => 1,
            Stream::Network => 2,
            Stream::Partition => 3,
            Stream::Crash => 4,
            Stream::Clock => 5,
            Stream::Clients => 6,
            Stream::Liar => 7,
        }
    }
}

/// splitmix64: one step of the seeding generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seeded xoshiro256** generator.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator of `stream` for the run of `seed`.
    pub fn new(seed: u64, stream: Stream) -> Rng {
        let mut state = seed ^ stream.index().wrapping_mul(0xd1b5_4a32_d192_ed03);
        let s = [
            splitmix(&mut state),
            splitmix(&mut state),
            splitmix(&mut state),
            splitmix(&mut state),
        ];
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A number in `0..n` (0 when `n` is 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// A number in `-max..=max`.
    pub fn signed(&mut self, max: u64) -> i64 {
        let max = max.min(i64::MAX as u64 / 2);
        self.range(0, 2 * max) as i64 - max as i64
    }

    /// True with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// An index into a list of `len` items.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Fills 32 bytes, for made-up hashes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_streams_differ() {
        let draw = |seed, stream| {
            let mut rng = Rng::new(seed, stream);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, Stream::Network), draw(7, Stream::Network));
        assert_ne!(draw(7, Stream::Network), draw(7, Stream::Crash));
        assert_ne!(draw(7, Stream::Network), draw(8, Stream::Network));
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut rng = Rng::new(1, Stream::Setup);
        for _ in 0..1_000 {
            assert!(rng.range(3, 5) >= 3 && rng.range(3, 5) <= 5);
            assert!(rng.signed(10).abs() <= 10);
            assert!(rng.below(7) < 7);
        }
        assert_eq!(rng.range(4, 4), 4);
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
    }
}

//! Seeded permutations, shared by the batcher and the validation split.
//!
//! The generator is `Xoshiro256PlusPlus` seeded through `seed_from_u64`, and the
//! Fisher–Yates shuffle and its bounded draws are written here (not taken from
//! `rand`'s `SliceRandom`) so that an order depends on the seed alone, not on the
//! version of `rand`.

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Mixes a seed and a stream number (an epoch, say) into one generator seed
/// (SplitMix64 finaliser), so that nearby streams give unrelated orders.
pub fn mix_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw from `0..bound` (`bound > 0`), by Lemire's multiply-and-reject.
fn below(rng: &mut Xoshiro256PlusPlus, bound: u64) -> u64 {
    debug_assert!(bound > 0);
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = (rng.next_u64() as u128) * (bound as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Shuffles `items` in place (Fisher–Yates) with a generator seeded from `seed`.
pub fn shuffle_in_place<T>(items: &mut [T], seed: u64) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A random permutation of `0..n` determined by `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    shuffle_in_place(&mut p, seed);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_deterministic_and_complete() {
        let a = permutation(1000, 7);
        let b = permutation(1000, 7);
        assert_eq!(a, b);
        assert_ne!(a, permutation(1000, 8));
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_ne!(mix_seed(1, 0), mix_seed(1, 1));
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut counts = [0usize; 6];
        for _ in 0..60_000 {
            counts[below(&mut rng, 6) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}

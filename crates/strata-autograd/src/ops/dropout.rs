//! Inverted dropout (section 12.2.5).
//!
//! At training time each unit is zeroed with probability `p` and the kept ones
//! are scaled by `1/(1 − p)`, so the next layer sees the same expected input as
//! at test time, when dropout is the identity.
//!
//! Backward: `∂E/∂x = ∂E/∂y · mask`, with the same mask.

use crate::error::{AutogradError, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use rand::Rng;
use strata_kernels::elementwise;
use strata_tensor::{buffers, Tensor};

struct DropoutBackward<T> {
    mask: Vec<T>,
}

impl<T: Real> Backward<T> for DropoutBackward<T> {
    fn backward(
        &self,
        _inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let mut dx = buffers::take(grad.numel());
        elementwise::apply_mask(&grad.to_contiguous_slice(), &self.mask, &mut dx);
        Ok(vec![Some(tensor(dx, grad.shape()))])
    }
}

impl<T: Real> Tape<T> {
    /// Dropout with drop probability `p ∈ [0, 1)`: in training (`train = true`)
    /// zeroes each element with probability `p` and scales the rest by
    /// `1/(1 − p)`; in evaluation returns `x` unchanged.
    pub fn dropout(&mut self, x: Var, p: f64, train: bool, rng: &mut impl Rng) -> Result<Var> {
        self.dropout_drawn(x, p, train, |bits| rng.fill(bits))
    }

    /// As [`Tape::dropout`], the masks of item `b` (along the first axis)
    /// drawn from their own stream, seeded by `(seed, first_item + b)`: an
    /// item's mask does not depend on which other items share its batch, so a
    /// minibatch split across processes drops exactly the units that one
    /// process would.
    pub fn dropout_items(
        &mut self,
        x: Var,
        p: f64,
        train: bool,
        seed: u64,
        first_item: u64,
    ) -> Result<Var> {
        let items = self.value(x)?.shape().first().copied().unwrap_or(1).max(1);
        self.dropout_drawn(x, p, train, |bits| {
            let per = bits.len() / items;
            if per == 0 {
                return;
            }
            for (b, chunk) in bits.chunks_exact_mut(per).enumerate() {
                item_stream(seed, first_item + b as u64).fill(chunk);
            }
        })
    }

    fn dropout_drawn(
        &mut self,
        x: Var,
        p: f64,
        train: bool,
        draw: impl FnOnce(&mut [u32]),
    ) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(AutogradError::BadProbability { p });
        }
        if !train || p == 0.0 {
            return Ok(x);
        }
        let xv = self.value(x)?;
        let keep = T::of(1.0 / (1.0 - p));
        // 32 random bits per unit, drawn in bulk: unit i is dropped when
        // bits[i] < p·2³², i.e. with probability p (to within 2⁻³²).
        let mut bits = vec![0u32; xv.numel()];
        draw(&mut bits[..]);
        let mut mask = buffers::take(bits.len());
        elementwise::dropout_mask(&bits, (p * 4_294_967_296.0) as u64, keep, &mut mask);
        let mut y = buffers::take(xv.numel());
        elementwise::apply_mask(&xv.to_contiguous_slice(), &mask, &mut y);
        let out = tensor(y, xv.shape());
        self.push_op(&[x], out, || Box::new(DropoutBackward { mask }))
    }
}

/// The random stream of item `item` under `seed` (a SplitMix64 step over
/// both, so neighbouring items get unrelated streams).
fn item_stream(seed: u64, item: u64) -> rand_xoshiro::Xoshiro256PlusPlus {
    let mut z = seed ^ item.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(z ^ (z >> 31))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tensor::Tensor;

    fn masks(x: &Tensor<f32>, first: u64) -> Vec<f32> {
        let mut tape = Tape::new();
        let v = tape.input(x.clone());
        let y = tape.dropout_items(v, 0.5, true, 7, first).unwrap();
        tape.value(y).unwrap().to_vec()
    }

    #[test]
    fn item_masks_do_not_depend_on_the_batch() {
        let x = Tensor::from_vec(vec![1.0f32; 6 * 40], &[6, 40]).unwrap();
        let whole = masks(&x, 0);
        // Items 0..3 and 3..6 drawn as two half batches: the same masks.
        let half = Tensor::from_vec(vec![1.0f32; 3 * 40], &[3, 40]).unwrap();
        let mut split = masks(&half, 0);
        split.extend(masks(&half, 3));
        assert_eq!(whole, split);
        // Kept units are scaled by 1/(1 − p); about half are dropped.
        assert!(whole.iter().all(|&v| v == 0.0 || v == 2.0));
        let dropped = whole.iter().filter(|&&v| v == 0.0).count();
        assert!((80..160).contains(&dropped), "{dropped} of 240 dropped");
        // Different items, different masks.
        assert_ne!(whole[..40], whole[40..80]);
    }
}

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
        rng.fill(&mut bits[..]);
        let mut mask = buffers::take(bits.len());
        elementwise::dropout_mask(&bits, (p * 4_294_967_296.0) as u64, keep, &mut mask);
        let mut y = buffers::take(xv.numel());
        elementwise::apply_mask(&xv.to_contiguous_slice(), &mask, &mut y);
        let out = tensor(y, xv.shape());
        self.push_op(&[x], out, || Box::new(DropoutBackward { mask }))
    }
}

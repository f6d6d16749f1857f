//! ReLU, `F(u) = max(0, u)`, elementwise.
//!
//! Backward: `∂E/∂u = ∂E/∂y · 𝕀[u > 0]` (the chapter's `𝕀[o_u > 0]`), read
//! off the output so no copy of the input is kept.

use crate::error::Result;
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::elementwise;
use strata_tensor::{buffers, Tensor};

struct ReluBackward;

impl<T: Real> Backward<T> for ReluBackward {
    fn backward(
        &self,
        _inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let mut dx = buffers::take(grad.numel());
        elementwise::relu_backward(
            &output.to_contiguous_slice(),
            &grad.to_contiguous_slice(),
            &mut dx,
        );
        Ok(vec![Some(tensor(dx, grad.shape()))])
    }
}

impl<T: Real> Tape<T> {
    /// `max(0, x)` elementwise.
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        let xv = self.value(x)?;
        // One pass from input to output (no copy first): a zeroed buffer
        // from the allocator is untouched pages, filled by the kernel's threads.
        let mut y = buffers::take(xv.numel());
        elementwise::relu(&xv.to_contiguous_slice(), &mut y);
        let out = tensor(y, xv.shape());
        self.push_op(&[x], out, || Box::new(ReluBackward))
    }
}

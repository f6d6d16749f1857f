//! GELU in its tanh form, `F(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))`,
//! elementwise (airbench's activation; smooth where ReLU has a kink).
//!
//! Backward: `∂E/∂x = ∂E/∂y · F'(x)`, read off the input (kept on the tape).

use crate::error::Result;
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::gelu;
use strata_tensor::{buffers, Tensor};

struct GeluBackward;

impl<T: Real> Backward<T> for GeluBackward {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let mut dx = buffers::take(grad.numel());
        gelu::gelu_backward(
            &inputs[0].to_contiguous_slice(),
            &grad.to_contiguous_slice(),
            &mut dx,
        );
        Ok(vec![Some(tensor(dx, grad.shape()))])
    }
}

impl<T: Real> Tape<T> {
    /// GELU (tanh form) elementwise.
    pub fn gelu(&mut self, x: Var) -> Result<Var> {
        let xv = self.value(x)?;
        let mut y = buffers::take(xv.numel());
        gelu::gelu(&xv.to_contiguous_slice(), &mut y);
        let out = tensor(y, xv.shape());
        self.push_op(&[x], out, || Box::new(GeluBackward))
    }
}

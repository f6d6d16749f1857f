//! Reshape and flatten: the same elements under another shape.
//!
//! Backward: the gradient reshaped back to the input's shape.

use crate::error::Result;
use crate::{Backward, Real, Tape, Var};
use strata_tensor::Tensor;

struct ReshapeBackward;

impl<T: Real> Backward<T> for ReshapeBackward {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(grad.reshape(inputs[0].shape())?)])
    }
}

impl<T: Real> Tape<T> {
    /// `x` viewed with `shape` (same element count).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let out = self.value(x)?.reshape(shape)?;
        self.push_op(&[x], out, || Box::new(ReshapeBackward))
    }

    /// Flattens every axis after the first: `[N, …] → [N, Π…]`.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let out = self.value(x)?.flatten_from(1)?;
        self.push_op(&[x], out, || Box::new(ReshapeBackward))
    }
}

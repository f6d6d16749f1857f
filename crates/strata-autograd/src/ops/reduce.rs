//! Sum and mean of all elements, giving a scalar.
//!
//! Backward: `∂E/∂x_i = ∂E/∂y` for the sum, `(1/n)·∂E/∂y` for the mean.

use crate::error::Result;
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::reduce;
use strata_tensor::Tensor;

struct FillBackward<T>(T);

impl<T: Real> Backward<T> for FillBackward<T> {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let g = grad.item()? * self.0;
        Ok(vec![Some(Tensor::full(inputs[0].shape(), g))])
    }
}

impl<T: Real> Tape<T> {
    /// `Σ_i x_i`, a scalar.
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        let s = reduce::sum(&self.value(x)?.to_contiguous_slice());
        self.push_op(&[x], tensor(vec![s], &[]), || {
            Box::new(FillBackward(T::one()))
        })
    }

    /// `(1/n) Σ_i x_i`, a scalar.
    pub fn mean(&mut self, x: Var) -> Result<Var> {
        let xv = self.value(x)?;
        let n = xv.numel().max(1);
        let s = reduce::mean(&xv.to_contiguous_slice());
        self.push_op(&[x], tensor(vec![s], &[]), || {
            Box::new(FillBackward(T::one() / T::of(n as f64)))
        })
    }
}

//! The L2 penalty `(λ/2) Σ_k w_kᵀ w_k` over a set of weight tensors (section 12.1.2).
//!
//! Backward: `∂R/∂w_k = λ w_k`.

use crate::error::Result;
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::elementwise;
use strata_tensor::Tensor;

struct L2Backward<T>(T);

impl<T: Real> Backward<T> for L2Backward<T> {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let c = self.0 * grad.item()?;
        Ok(inputs
            .iter()
            .zip(needs)
            .map(|(w, &n)| {
                n.then(|| {
                    let mut g = w.to_vec();
                    elementwise::scale(c, &mut g);
                    tensor(g, w.shape())
                })
            })
            .collect())
    }
}

impl<T: Real> Tape<T> {
    /// `(λ/2) Σ_k ‖w_k‖²` over `weights`, a scalar.
    pub fn l2_penalty(&mut self, weights: &[Var], lambda: T) -> Result<Var> {
        let mut total = T::zero();
        for &w in weights {
            total = total + elementwise::sum_squares(&self.value(w)?.to_contiguous_slice());
        }
        let half = T::of(0.5);
        self.push_op(weights, tensor(vec![half * lambda * total], &[]), || {
            Box::new(L2Backward(lambda))
        })
    }
}

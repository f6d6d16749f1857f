//! Bias broadcast: `y[n, c, …] = x[n, c, …] + b[c]` — a linear layer's bias
//! (`x` of shape N×C) or a convolution's per-channel bias (N×C×H×W).
//!
//! Backward: `∂E/∂x = ∂E/∂y`, `∂E/∂b_c = Σ_{n,…} ∂E/∂y[n, c, …]`.

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::reduce;
use strata_tensor::Tensor;

struct BiasBackward {
    outer: usize,
    channels: usize,
    inner: usize,
}

impl<T: Real> Backward<T> for BiasBackward {
    fn backward(
        &self,
        _inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let dx = needs[0].then(|| grad.clone());
        let db = needs[1].then(|| {
            let g = grad.to_contiguous_slice();
            let mut db = vec![T::zero(); self.channels];
            reduce::sum_channels(&g, self.outer, self.channels, self.inner, &mut db);
            tensor(db, &[self.channels])
        });
        Ok(vec![dx, db])
    }
}

impl<T: Real> Tape<T> {
    /// Adds a bias of shape `[C]` along axis 1 of `x` (shape `[N, C, …]`).
    pub fn add_bias(&mut self, x: Var, bias: Var) -> Result<Var> {
        let (xv, bv) = (self.value(x)?, self.value(bias)?);
        let s = xv.shape();
        if s.len() < 2 || bv.rank() != 1 || bv.shape()[0] != s[1] {
            return Err(shape_err(
                "add_bias",
                "bias must be one value per channel (axis 1 of the input)",
                &[s, bv.shape()],
            ));
        }
        let (outer, channels) = (s[0], s[1]);
        let inner: usize = s[2..].iter().product();
        let mut y = xv.to_vec();
        let b = bv.to_contiguous_slice();
        strata_kernels::elementwise::add_channel_bias(&mut y, &b, inner);
        let out = tensor(y, s);
        self.push_op(&[x, bias], out, || {
            Box::new(BiasBackward {
                outer,
                channels,
                inner,
            })
        })
    }
}

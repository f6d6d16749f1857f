//! Elementwise sum of two equally shaped values (residual connections,
//! loss + penalty) and scaling by a constant.
//!
//! Backward: `∂E/∂a = ∂E/∂b = ∂E/∂y` for `y = a + b` (gated by `y > 0` when a
//! ReLU is fused after the sum); `∂E/∂x = c·∂E/∂y` for `y = c·x`.

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::elementwise;
use strata_tensor::{buffers, Tensor};

/// `relu`: a ReLU fused after the sum, whose output gates the gradient.
struct AddBackward {
    relu: bool,
}

impl<T: Real> Backward<T> for AddBackward {
    fn backward(
        &self,
        _inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let g = if self.relu {
            let mut g = buffers::take(grad.numel());
            elementwise::relu_backward(
                &output.to_contiguous_slice(),
                &grad.to_contiguous_slice(),
                &mut g,
            );
            tensor(g, grad.shape())
        } else {
            grad.clone()
        };
        Ok(needs.iter().map(|&n| n.then(|| g.clone())).collect())
    }
}

struct ScaleBackward<T>(T);

impl<T: Real> Backward<T> for ScaleBackward<T> {
    fn backward(
        &self,
        _inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let mut g = buffers::take(grad.numel());
        elementwise::scale_into(self.0, &grad.to_contiguous_slice(), &mut g);
        Ok(vec![Some(tensor(g, grad.shape()))])
    }
}

impl<T: Real> Tape<T> {
    /// `a + b` for equally shaped `a` and `b`.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.add_act(a, b, false)
    }

    /// `a + b`, followed when `relu` by ReLU in the same pass (the original
    /// residual layer's `F(x) + x` and its output ReLU).
    pub fn add_act(&mut self, a: Var, b: Var, relu: bool) -> Result<Var> {
        let (av, bv) = (self.value(a)?, self.value(b)?);
        if av.shape() != bv.shape() {
            return Err(shape_err(
                "add",
                "operands must have the same shape",
                &[av.shape(), bv.shape()],
            ));
        }
        let mut y = buffers::take(av.numel());
        let (ad, bd) = (av.to_contiguous_slice(), bv.to_contiguous_slice());
        if relu {
            elementwise::add_relu(&ad, &bd, &mut y);
        } else {
            elementwise::add(&ad, &bd, &mut y);
        }
        let out = tensor(y, av.shape());
        self.push_op(&[a, b], out, || Box::new(AddBackward { relu }))
    }

    /// `c·x` for a constant `c`.
    pub fn scale(&mut self, x: Var, c: T) -> Result<Var> {
        let xv = self.value(x)?;
        let mut y = buffers::take(xv.numel());
        elementwise::scale_into(c, &xv.to_contiguous_slice(), &mut y);
        let out = tensor(y, xv.shape());
        self.push_op(&[x], out, || Box::new(ScaleBackward(c)))
    }
}

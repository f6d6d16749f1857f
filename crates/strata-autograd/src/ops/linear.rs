//! A fully connected layer as one op: `y = F(x Wᵀ + b)`, with `F` the
//! identity or ReLU, for a minibatch `x` (`[M, K]`), weights `W` (`[N, K]`,
//! one row per unit) and bias `b` (`[N]`).
//!
//! The forward pass is one GEMM whose epilogue adds the bias and applies the
//! ReLU while each output tile is still in cache (no separate bias and ReLU
//! passes, no intermediate buffers).
//!
//! Backward, with `z = x Wᵀ + b` and `∂E/∂z = ∂E/∂y · 𝕀[y > 0]` (ReLU) or
//! `∂E/∂y` (identity): `∂E/∂x = (∂E/∂z)·W`, `∂E/∂W = (∂E/∂z)ᵀ·x`,
//! `∂E/∂b_n = Σ_m ∂E/∂z[m, n]`.

use std::borrow::Cow;

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::gemm::{gemm, gemm_bias_act, gemm_prepacked, Bias, Epilogue, PackedB, Trans};
use strata_kernels::{elementwise, reduce};
use strata_tensor::{buffers, Tensor};

struct LinearBackward {
    relu: bool,
}

impl<T: Real> Backward<T> for LinearBackward {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, w) = (inputs[0], inputs[1]);
        let (m, k, n) = (x.shape()[0], x.shape()[1], w.shape()[0]);
        let g = grad.to_contiguous_slice();
        let dz: Cow<'_, [T]> = if self.relu {
            let mut dz = buffers::take(g.len());
            elementwise::relu_backward(&output.to_contiguous_slice(), &g, &mut dz);
            Cow::Owned(dz)
        } else {
            g
        };
        let (xd, wd) = (x.to_contiguous_slice(), w.to_contiguous_slice());
        let one = T::one();
        let dx = needs[0].then(|| {
            // dx (m×k) = dz (m×n) · W (n×k)
            let mut dx = buffers::take(m * k);
            gemm(
                Trans::No,
                Trans::No,
                m,
                k,
                n,
                one,
                &dz,
                n,
                &wd,
                k,
                T::zero(),
                &mut dx,
                k,
            );
            tensor(dx, x.shape())
        });
        let dw = needs[1].then(|| {
            // dW (n×k) = dzᵀ (n×m) · x (m×k)
            let mut dw = buffers::take(n * k);
            gemm(
                Trans::Yes,
                Trans::No,
                n,
                k,
                m,
                one,
                &dz,
                n,
                &xd,
                k,
                T::zero(),
                &mut dw,
                k,
            );
            tensor(dw, w.shape())
        });
        let mut out = vec![dx, dw];
        if needs.len() > 2 {
            out.push(needs[2].then(|| {
                let mut db = vec![T::zero(); n];
                reduce::sum_rows(&dz, m, n, &mut db);
                tensor(db, &[n])
            }));
        }
        Ok(out)
    }
}

impl<T: Real> Tape<T> {
    /// A fully connected layer, `F(x Wᵀ + b)`: `x` is `[M, K]`, `w` is
    /// `[N, K]`, `bias` (optional) is `[N]`, and `F` is ReLU when `relu` is
    /// set (else the identity). One GEMM with a fused epilogue; the same
    /// values as `matmul`, `add_bias` and `relu` in turn (except that the
    /// fused ReLU lets NaN through).
    pub fn linear(&mut self, x: Var, w: Var, bias: Option<Var>, relu: bool) -> Result<Var> {
        named::linear(self, x, w, None, bias, relu)
    }

    /// [`Tape::linear`] with `Wᵀ` already packed for the matrix product
    /// ([`PackedB::new`]`(Trans::Yes, K, N, w, K)` of `w`'s values): no
    /// packing pass over the weights per call. The caller keeps `packed` in
    /// step with `w` (the gradients still come from `w`).
    pub fn linear_prepacked(
        &mut self,
        x: Var,
        w: Var,
        packed: &PackedB<T>,
        bias: Option<Var>,
        relu: bool,
    ) -> Result<Var> {
        named::linear(self, x, w, Some(packed), bias, relu)
    }
}

/// The op under the name the profiler files it as (`linear`), for both
/// entry points.
mod named {
    use super::*;

    pub(super) fn linear<T: Real>(
        tape: &mut Tape<T>,
        x: Var,
        w: Var,
        packed: Option<&PackedB<T>>,
        bias: Option<Var>,
        relu: bool,
    ) -> Result<Var> {
        let (xv, wv) = (tape.value(x)?, tape.value(w)?);
        let bv = bias.map(|b| tape.value(b)).transpose()?;
        let (xs, ws) = (xv.shape(), wv.shape());
        if xs.len() != 2 || ws.len() != 2 || xs[1] != ws[1] {
            return Err(shape_err(
                "linear",
                "x must be [minibatch, inputs] and W [units, inputs]",
                &[xs, ws],
            ));
        }
        let (m, k, n) = (xs[0], xs[1], ws[0]);
        if let Some(b) = bv {
            if b.shape() != [n] {
                return Err(shape_err(
                    "linear",
                    "bias must hold one value per unit",
                    &[ws, b.shape()],
                ));
            }
        }
        let bd = bv.map(|b| b.to_contiguous_slice());
        let epilogue = Epilogue {
            bias: bd.as_deref().map_or(Bias::None, Bias::PerCol),
            relu,
        };
        let mut y = buffers::take(m * n);
        match packed {
            Some(p) if (p.k(), p.n()) != (k, n) => {
                return Err(shape_err(
                    "linear",
                    format!("packed weights are {}×{}, W gives {k}×{n}", p.k(), p.n()),
                    &[xs, ws],
                ))
            }
            Some(p) => gemm_prepacked(
                Trans::No,
                m,
                T::one(),
                &xv.to_contiguous_slice(),
                k,
                p,
                T::zero(),
                &mut y,
                n,
                epilogue,
            ),
            None => gemm_bias_act(
                Trans::No,
                Trans::Yes,
                m,
                n,
                k,
                T::one(),
                &xv.to_contiguous_slice(),
                k,
                &wv.to_contiguous_slice(),
                k,
                T::zero(),
                &mut y,
                n,
                epilogue,
            ),
        }
        let out = tensor(y, &[m, n]);
        let inputs: Vec<Var> = [x, w].into_iter().chain(bias).collect();
        tape.push_op(&inputs, out, || Box::new(LinearBackward { relu }))
    }
}

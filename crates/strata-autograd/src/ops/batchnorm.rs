//! Batch normalisation (section 12.4.4) of `[N, C]` (per feature) or
//! `[N, C, H, W]` (per channel) values:
//! `x̂ = (x − m)/√(s² + ε)`, `o = γ·x̂ + β`.
//!
//! The chapter writes the divisor as `s + ε`; we use `√(s² + ε)` (ε inside the
//! root, as in Ioffe and Szegedy), which keeps the gradient bounded when a
//! channel's variance is zero. In training `m`, `s²` are the minibatch mean
//! and (biased) variance and the backward pass goes through them:
//! `∂E/∂x = γ/√(s² + ε) · (g − mean(g) − x̂·mean(g·x̂))` per channel, with
//! `∂E/∂γ = Σ g·x̂`, `∂E/∂β = Σ g`. In evaluation `m`, `s²` are fixed
//! estimates, so the op is a per-channel affine map.

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::batchnorm as bn;
use strata_tensor::{buffers, Tensor};

/// Per-channel minibatch statistics of a training-mode batch norm.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStats<T> {
    /// Mean of each channel over the minibatch (and pixels).
    pub mean: Vec<T>,
    /// Biased variance of each channel.
    pub var: Vec<T>,
    /// Number of values each statistic was computed from (`N·H·W`).
    pub count: usize,
}

struct BatchNormBackward<T> {
    dims: (usize, usize, usize),
    mean: Vec<T>,
    invstd: Vec<T>,
    train: bool,
    /// ReLU fused after the normalisation: the output gates the gradient.
    relu: bool,
}

impl<T: Real> Backward<T> for BatchNormBackward<T> {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let (n, c, s) = self.dims;
        let out = self.relu.then(|| output.to_contiguous_slice());
        let (x, gamma) = (
            inputs[0].to_contiguous_slice(),
            inputs[1].to_contiguous_slice(),
        );
        let g = grad.to_contiguous_slice();
        let mut dx = buffers::take(x.len());
        let (mut dg, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
        if self.train {
            bn::batch_norm_train_backward(
                &x,
                &g,
                out.as_deref(),
                n,
                c,
                s,
                &gamma,
                &self.mean,
                &self.invstd,
                &mut dx,
                &mut dg,
                &mut db,
            );
        } else {
            bn::batch_norm_eval_backward(
                &x,
                &g,
                out.as_deref(),
                n,
                c,
                s,
                &gamma,
                &self.mean,
                &self.invstd,
                needs[0].then_some(&mut dx[..]),
                &mut dg,
                &mut db,
            );
        }
        Ok(vec![
            needs[0].then(|| tensor(dx, inputs[0].shape())),
            needs[1].then(|| tensor(dg, &[c])),
            needs[2].then(|| tensor(db, &[c])),
        ])
    }
}

impl<T: Real> Tape<T> {
    fn bn_dims(&self, x: Var, gamma: Var, beta: Var) -> Result<(usize, usize, usize)> {
        let (xs, gs, bs) = (self.shape(x)?, self.shape(gamma)?, self.shape(beta)?);
        if xs.len() < 2 || gs != [xs[1]] || bs != [xs[1]] {
            return Err(shape_err(
                "batch_norm",
                "input must be [N, C, …] with γ and β of shape [C]",
                &[xs, gs, bs],
            ));
        }
        Ok((xs[0], xs[1], xs[2..].iter().product()))
    }

    /// Training-mode batch norm of `x` (`[N, C, …]`) with scale `gamma` and
    /// shift `beta` (`[C]`), normalising by the minibatch statistics, which are
    /// also returned (to update running estimates). Needs more than one value
    /// per channel.
    pub fn batch_norm_train(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f64,
    ) -> Result<(Var, BatchStats<T>)> {
        self.batch_norm_train_act(x, gamma, beta, eps, false)
    }

    /// [`Tape::batch_norm_train`] followed, when `relu`, by ReLU in the same
    /// op: `max(0, γ·x̂ + β)`, one pass over the activations fewer each way.
    pub fn batch_norm_train_act(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f64,
        relu: bool,
    ) -> Result<(Var, BatchStats<T>)> {
        let (n, c, s) = self.bn_dims(x, gamma, beta)?;
        if n * s < 2 {
            return Err(shape_err(
                "batch_norm",
                "training needs more than one value per channel",
                &[self.shape(x)?],
            ));
        }
        let (xv, gv, bv) = (self.value(x)?, self.value(gamma)?, self.value(beta)?);
        let shape = xv.shape().to_vec();
        let mut y = buffers::take(xv.numel());
        let (mut mean, mut var, mut invstd) =
            (vec![T::zero(); c], vec![T::zero(); c], vec![T::zero(); c]);
        bn::batch_norm_train_act(
            &xv.to_contiguous_slice(),
            n,
            c,
            s,
            &gv.to_contiguous_slice(),
            &bv.to_contiguous_slice(),
            T::of(eps),
            relu,
            &mut y,
            &mut mean,
            &mut var,
            &mut invstd,
        );
        let stats = BatchStats {
            mean: mean.clone(),
            var,
            count: n * s,
        };
        let out = tensor(y, &shape);
        let v = self.push_op(&[x, gamma, beta], out, || {
            Box::new(BatchNormBackward {
                dims: (n, c, s),
                mean,
                invstd,
                train: true,
                relu,
            })
        })?;
        Ok((v, stats))
    }

    /// Evaluation-mode batch norm: normalises with fixed per-channel `mean`
    /// and `var` (running estimates), `o = γ·(x − m)/√(var + ε) + β`.
    pub fn batch_norm_eval(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        mean: &[T],
        var: &[T],
        eps: f64,
    ) -> Result<Var> {
        self.batch_norm_eval_act(x, gamma, beta, mean, var, eps, false)
    }

    /// [`Tape::batch_norm_eval`] followed, when `relu`, by ReLU in the same op.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_eval_act(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        mean: &[T],
        var: &[T],
        eps: f64,
        relu: bool,
    ) -> Result<Var> {
        let (n, c, s) = self.bn_dims(x, gamma, beta)?;
        if mean.len() != c || var.len() != c {
            return Err(shape_err(
                "batch_norm",
                format!("running statistics must have {c} entries"),
                &[self.shape(x)?, &[mean.len()], &[var.len()]],
            ));
        }
        let (xv, gv, bv) = (self.value(x)?, self.value(gamma)?, self.value(beta)?);
        let shape = xv.shape().to_vec();
        let invstd: Vec<T> = var
            .iter()
            .map(|&v| T::one() / (v + T::of(eps)).sqrt())
            .collect();
        let (gd, bd) = (gv.to_contiguous_slice(), bv.to_contiguous_slice());
        let scale: Vec<T> = gd.iter().zip(&invstd).map(|(&g, &k)| g * k).collect();
        let shift: Vec<T> = (0..c).map(|i| bd[i] - mean[i] * scale[i]).collect();
        let mut y = buffers::take(xv.numel());
        bn::channel_affine_act(
            &xv.to_contiguous_slice(),
            n,
            c,
            s,
            &scale,
            &shift,
            relu,
            &mut y,
        );
        let out = tensor(y, &shape);
        let mean = mean.to_vec();
        self.push_op(&[x, gamma, beta], out, || {
            Box::new(BatchNormBackward {
                dims: (n, c, s),
                mean,
                invstd,
                train: false,
                relu,
            })
        })
    }
}

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
//!
//! Synchronised batch norm ([`Tape::batch_norm_train_synced`]) is the same op
//! when a minibatch of `G` values per channel is split over processes that
//! each hold `c_r` of them: the sums behind `m`, `s²` and the two backward
//! means are added over the processes by a [`BatchSum`] before dividing by
//! `G`, so every process normalises by the whole minibatch's statistics.

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use std::sync::Arc;
use strata_kernels::batchnorm as bn;
use strata_tensor::{buffers, Tensor};

/// Adds `f64` values elementwise over the processes that share a minibatch
/// (an all-reduce sum; every process calls it in the same order with the
/// same length). What synchronised batch norm needs of a process group.
pub trait BatchSum: Send + Sync {
    /// Replaces `values` by their sum over the processes.
    fn sum(&self, values: &mut [f64]) -> std::result::Result<(), String>;
}

/// The sum over one process: the values as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct AloneSum;

impl BatchSum for AloneSum {
    fn sum(&self, _: &mut [f64]) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Cross-process state of a synchronised batch norm's backward pass.
struct Synced {
    sum: Arc<dyn BatchSum>,
    /// Values per channel here (`c_r`) and in the whole minibatch (`G`).
    local: usize,
    global: f64,
}

/// `sum` as an error of this crate (a lost process, a failed call).
fn sum_over(sum: &dyn BatchSum, values: &mut [f64]) -> Result<()> {
    sum.sum(values)
        .map_err(|e| crate::AutogradError::Backward(format!("synchronised batch norm: {e}")))
}

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
    /// Set when the statistics span several processes.
    synced: Option<Synced>,
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
        // In training a fused ReLU's gate is recomputed from x, γ and β; in
        // evaluation the output gates.
        let out = (self.relu && !self.train).then(|| output.to_contiguous_slice());
        let (x, gamma, beta) = (
            inputs[0].to_contiguous_slice(),
            inputs[1].to_contiguous_slice(),
            inputs[2].to_contiguous_slice(),
        );
        let relu = self.relu.then_some(bn::FusedRelu {
            gamma: &gamma,
            beta: &beta,
        });
        let g = grad.to_contiguous_slice();
        let mut dx = buffers::take(x.len());
        let (mut dg, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
        if let Some(sy) = &self.synced {
            // ∂E/∂x = γ·invstd·(g − A/c_r − x̂·B/c_r), where A and B are
            // Σ g and Σ g·x̂ over all processes, each weighted by c_r/G: a
            // process's loss is the mean over its c_r values, and the caller
            // weights its gradient by c_r/G before summing (see fit).
            let (sg, sgx) =
                bn::batch_norm_grad_sums(&x, &g, relu, n, c, s, &self.mean, &self.invstd);
            let w = sy.local as f64 / sy.global;
            let mut sums: Vec<f64> = sg.iter().chain(&sgx).map(|v| w * v.as_f64()).collect();
            sum_over(&*sy.sum, &mut sums)?;
            let per = 1.0 / sy.local.max(1) as f64;
            let mg: Vec<T> = sums[..c].iter().map(|&v| T::of(v * per)).collect();
            let mgx: Vec<T> = sums[c..].iter().map(|&v| T::of(v * per)).collect();
            bn::batch_norm_grad_apply(
                &x,
                &g,
                relu,
                n,
                c,
                s,
                &gamma,
                &self.mean,
                &self.invstd,
                &mg,
                &mgx,
                &mut dx,
            );
            dg.copy_from_slice(&sgx);
            db.copy_from_slice(&sg);
        } else if self.train {
            bn::batch_norm_train_backward(
                &x,
                &g,
                relu,
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
        self.bn_train_local(x, gamma, beta, eps, relu, None)
    }

    /// [`Tape::batch_norm_train_act`] with the statistics from the per-slice
    /// terms of `x` ([`strata_kernels::batchnorm::slice_stats`],
    /// `slices[i·C + ch]`), as [`Tape::conv2d_slice_stats`] returns them
    /// with the convolution that computed `x`: the same values and
    /// gradients, bit for bit, one pass over `x` fewer. `slices` must hold
    /// one entry per image and channel of `x`.
    pub fn batch_norm_train_act_from(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f64,
        relu: bool,
        slices: &[(T, T)],
    ) -> Result<(Var, BatchStats<T>)> {
        self.bn_train_local(x, gamma, beta, eps, relu, Some(slices))
    }

    fn bn_train_local(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f64,
        relu: bool,
        slices: Option<&[(T, T)]>,
    ) -> Result<(Var, BatchStats<T>)> {
        let (n, c, s) = self.bn_dims(x, gamma, beta)?;
        if n * s < 2 {
            return Err(shape_err(
                "batch_norm",
                "training needs more than one value per channel",
                &[self.shape(x)?],
            ));
        }
        if let Some(st) = slices {
            if st.len() != n * c {
                return Err(shape_err(
                    "batch_norm",
                    format!(
                        "the slice statistics must hold one entry per image and channel \
                         ({n}·{c} = {}), got {}",
                        n * c,
                        st.len()
                    ),
                    &[self.shape(x)?],
                ));
            }
        }
        let (xv, gv, bv) = (self.value(x)?, self.value(gamma)?, self.value(beta)?);
        let shape = xv.shape().to_vec();
        let mut y = buffers::take(xv.numel());
        let (mut mean, mut var, mut invstd) =
            (vec![T::zero(); c], vec![T::zero(); c], vec![T::zero(); c]);
        let (xs, gs, bs) = (
            xv.to_contiguous_slice(),
            gv.to_contiguous_slice(),
            bv.to_contiguous_slice(),
        );
        let stats = (&mut mean[..], &mut var[..], &mut invstd[..]);
        match slices {
            Some(st) => bn::batch_norm_train_act_from_slices(
                &xs,
                n,
                c,
                s,
                &gs,
                &bs,
                T::of(eps),
                relu,
                st,
                &mut y,
                stats.0,
                stats.1,
                stats.2,
            ),
            None => bn::batch_norm_train_act(
                &xs,
                n,
                c,
                s,
                &gs,
                &bs,
                T::of(eps),
                relu,
                &mut y,
                stats.0,
                stats.1,
                stats.2,
            ),
        }
        let stats = BatchStats {
            mean: mean.clone(),
            var,
            count: n * s,
        };
        let out = tensor(y, &shape);
        let v = self.push_op(
            &[x, gamma, beta],
            out,
            batch_norm_train_act((n, c, s), mean, invstd, relu),
        )?;
        Ok((v, stats))
    }

    /// [`Tape::batch_norm_train_act`] over a minibatch split across
    /// processes: `sum` adds the per-channel sums of every process (three
    /// calls forward, for the count and `Σ x`, then `Σ (x − m)²`; one
    /// backward, for `Σ g` and `Σ g·x̂`), so `m` and `s²` are the whole
    /// minibatch's. The returned statistics are those, with the whole
    /// minibatch's count. Every process must record the same layers in the
    /// same order. With [`AloneSum`] it equals the unsynchronised op.
    pub fn batch_norm_train_synced(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f64,
        relu: bool,
        sum: &Arc<dyn BatchSum>,
    ) -> Result<(Var, BatchStats<T>)> {
        let (n, c, s) = self.bn_dims(x, gamma, beta)?;
        let local = n * s;
        // The count first, so that the check below fails on every process.
        let mut count = [local as f64];
        sum_over(&**sum, &mut count)?;
        let global = count[0];
        if global < 2.0 {
            return Err(shape_err(
                "batch_norm",
                "training needs more than one value per channel",
                &[self.shape(x)?],
            ));
        }
        let (xv, gv, bv) = (self.value(x)?, self.value(gamma)?, self.value(beta)?);
        let shape = xv.shape().to_vec();
        let xs = xv.to_contiguous_slice();
        let mut sums: Vec<f64> = bn::channel_sum(&xs, n, c, s)
            .iter()
            .map(|v| v.as_f64())
            .collect();
        sum_over(&**sum, &mut sums)?;
        let mean: Vec<T> = sums.iter().map(|&v| T::of(v / global)).collect();
        let mut sq: Vec<f64> = bn::channel_sq_dev(&xs, n, c, s, &mean)
            .iter()
            .map(|v| v.as_f64())
            .collect();
        sum_over(&**sum, &mut sq)?;
        let var: Vec<T> = sq.iter().map(|&v| T::of(v / global)).collect();
        let invstd: Vec<T> = sq
            .iter()
            .map(|&v| T::of(1.0 / (v / global + eps).sqrt()))
            .collect();
        let mut y = buffers::take(xv.numel());
        bn::batch_norm_normalise_act(
            &xs,
            n,
            c,
            s,
            &gv.to_contiguous_slice(),
            &bv.to_contiguous_slice(),
            &mean,
            &invstd,
            relu,
            &mut y,
        );
        let stats = BatchStats {
            mean: mean.clone(),
            var,
            count: global as usize,
        };
        let out = tensor(y, &shape);
        let synced = Synced {
            sum: Arc::clone(sum),
            local,
            global,
        };
        let v = self.push_op(&[x, gamma, beta], out, || {
            Box::new(BatchNormBackward {
                dims: (n, c, s),
                mean,
                invstd,
                train: true,
                relu,
                synced: Some(synced),
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
                synced: None,
            })
        })
    }
}

/// The backward record of the local training op, made by a function of
/// this name so that the profile files it as `batch_norm_train_act` (the
/// name comes from the closure's type), statistics from slices or not.
fn batch_norm_train_act<T: Real>(
    dims: (usize, usize, usize),
    mean: Vec<T>,
    invstd: Vec<T>,
    relu: bool,
) -> impl FnOnce() -> Box<dyn Backward<T>> {
    move || {
        Box::new(BatchNormBackward {
            dims,
            mean,
            invstd,
            train: true,
            relu,
            synced: None,
        })
    }
}

//! Batch normalisation layer (section 12.4.4).
//!
//! `xⁿ = (x − m)/√(s² + ε)`, `o = γ·xⁿ + β`, per feature of `[N, C]` inputs or
//! per channel of `[N, C, H, W]` inputs. The chapter writes `diag(s + ε)⁻¹`;
//! we put ε = 1e-5 inside the square root, `√(s² + ε)`, as Ioffe and Szegedy
//! and the frameworks do. In [`crate::Mode::Train`] `m`, `s²` are the
//! minibatch's statistics (and the gradient flows through them), and running
//! estimates are updated, `m̂ ← (1 − μ)·m̂ + μ·m` with momentum `μ` = 0.1 (the
//! variance estimate uses the unbiased `s²·M/(M−1)`); in [`crate::Mode::Eval`]
//! the estimates are used. The estimates are buffers: saved in
//! [`crate::state_dict`], not trained.

use crate::error::{NnError, Result};
use crate::lower::Lowered;
use crate::module::{Ctx, Mode, Module, Named, NamedMut};
use strata_autograd::{Param, Real, Tape, Var};
use strata_tensor::Tensor;

/// A batch normalisation layer with learned scale `γ` and shift `β`
/// (neither weight-decayed) and running estimates of mean and variance.
pub struct BatchNorm<T: Real> {
    /// `[C]` scale, starts at 1.
    pub gamma: Param<T>,
    /// `[C]` shift, starts at 0.
    pub beta: Param<T>,
    /// `[C]` running mean, starts at 0 (the chapter's `m = 0`).
    pub running_mean: Tensor<T>,
    /// `[C]` running variance, starts at 1 (the chapter's `s = 1`).
    pub running_var: Tensor<T>,
    /// Weight `μ` of the newest minibatch in the running estimates.
    pub momentum: f64,
    /// The `ε` added to the variance.
    pub eps: f64,
}

impl<T: Real> BatchNorm<T> {
    /// Batch norm over `channels` features/channels, momentum 0.1, ε = 1e-5.
    pub fn new(channels: usize) -> Result<Self> {
        if channels == 0 {
            return Err(NnError::Config(
                "batch norm needs at least one channel".into(),
            ));
        }
        Ok(Self {
            gamma: Param::new(Tensor::ones(&[channels]), false),
            beta: Param::new(Tensor::zeros(&[channels]), false),
            running_mean: Tensor::zeros(&[channels]),
            running_var: Tensor::ones(&[channels]),
            momentum: 0.1,
            eps: 1e-5,
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.gamma.value.numel()
    }

    /// Normalises `x`, then applies ReLU when `relu` (fused in one op).
    fn forward_act(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        ctx: &mut Ctx<'_>,
        relu: bool,
    ) -> Result<Var> {
        let shape = tape.shape(x)?.to_vec();
        self.output_shape(shape.get(1..).unwrap_or(&[]))?;
        let (g, b) = (tape.param(&self.gamma), tape.param(&self.beta));
        match ctx.mode {
            Mode::Train => {
                let (y, stats) = match &ctx.batch_sum {
                    Some(sum) => tape.batch_norm_train_synced(x, g, b, self.eps, relu, sum)?,
                    None => tape.batch_norm_train_act(x, g, b, self.eps, relu)?,
                };
                self.update_running(&stats.mean, &stats.var, stats.count);
                Ok(y)
            }
            Mode::Eval => {
                let (m, v) = (self.running_mean.to_vec(), self.running_var.to_vec());
                Ok(tape.batch_norm_eval_act(x, g, b, &m, &v, self.eps, relu)?)
            }
        }
    }

    fn update_running(&mut self, mean: &[T], var: &[T], count: usize) {
        let mu = T::of(self.momentum);
        let keep = T::one() - mu;
        let unbias = T::of(count as f64 / (count.max(2) - 1) as f64);
        for (r, &m) in self.running_mean.data_mut().iter_mut().zip(mean) {
            *r = keep * *r + mu * m;
        }
        for (r, &v) in self.running_var.data_mut().iter_mut().zip(var) {
            *r = keep * *r + mu * v * unbias;
        }
    }
}

impl<T: Real> Module<T> for BatchNorm<T> {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::BatchNorm {
            gamma: self.gamma.value.clone(),
            beta: self.beta.value.clone(),
            mean: self.running_mean.clone(),
            var: self.running_var.clone(),
            eps: self.eps,
        })
    }

    fn describe(&self) -> String {
        format!("batchnorm {}", self.channels())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input.first() != Some(&self.channels()) {
            return Err(NnError::InputShape {
                expected: format!("[{}] or [{}, H, W]", self.channels(), self.channels()),
                got: input.to_vec(),
            });
        }
        Ok(input.to_vec())
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, ctx: &mut Ctx<'_>) -> Result<Var> {
        self.forward_act(tape, x, ctx, false)
    }

    fn forward_relu(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        ctx: &mut Ctx<'_>,
    ) -> Option<Result<Var>> {
        Some(self.forward_act(tape, x, ctx, true))
    }

    fn takes_slice_stats(&self, ctx: &Ctx<'_>) -> bool {
        ctx.mode == Mode::Train && ctx.batch_sum.is_none()
    }

    fn forward_from_slice_stats(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        slices: &[(T, T)],
        relu: bool,
        ctx: &mut Ctx<'_>,
    ) -> Option<Result<Var>> {
        if !self.takes_slice_stats(ctx) {
            return None;
        }
        let run = |bn: &mut Self, tape: &mut Tape<T>| -> Result<Var> {
            let shape = tape.shape(x)?.to_vec();
            bn.output_shape(shape.get(1..).unwrap_or(&[]))?;
            let (g, b) = (tape.param(&bn.gamma), tape.param(&bn.beta));
            let (y, stats) = tape.batch_norm_train_act_from(x, g, b, bn.eps, relu, slices)?;
            bn.update_running(&stats.mean, &stats.var, stats.count);
            Ok(y)
        };
        Some(run(self, tape))
    }

    /// `scale = γ/√(σ̂² + ε)`, `shift = β − m̂·scale` (the running statistics).
    fn eval_affine(&self) -> Option<(Vec<T>, Vec<T>)> {
        let eps = T::of(self.eps);
        let (g, b) = (self.gamma.value.to_vec(), self.beta.value.to_vec());
        let (m, v) = (self.running_mean.to_vec(), self.running_var.to_vec());
        let scale: Vec<T> = g
            .iter()
            .zip(&v)
            .map(|(&g, &v)| g / (v + eps).sqrt())
            .collect();
        let shift = (0..scale.len()).map(|i| b[i] - m[i] * scale[i]).collect();
        Some((scale, shift))
    }

    fn params(&self) -> Vec<Named<'_, T>> {
        vec![("gamma".into(), &self.gamma), ("beta".into(), &self.beta)]
    }

    fn params_mut(&mut self) -> Vec<NamedMut<'_, T>> {
        vec![
            ("gamma".into(), &mut self.gamma),
            ("beta".into(), &mut self.beta),
        ]
    }

    fn buffers(&self) -> Vec<(String, &Tensor<T>)> {
        vec![
            ("running_mean".into(), &self.running_mean),
            ("running_var".into(), &self.running_var),
        ]
    }

    fn buffers_mut(&mut self) -> Vec<(String, &mut Tensor<T>)> {
        vec![
            ("running_mean".into(), &mut self.running_mean),
            ("running_var".into(), &mut self.running_var),
        ]
    }

    fn flops(&self, input: &[usize]) -> u64 {
        input.iter().product::<usize>() as u64
    }
}

//! Pooling layers (section 12.3.3): max pooling and global average pooling.

use crate::error::{NnError, Result};
use crate::lower::Lowered;
use crate::module::{Ctx, Module};
use strata_autograd::kernels::pool::{pooled_len, OddPolicy};
use strata_autograd::{Real, Tape, Var};

/// Max pooling: each output reports the largest value in its window of a
/// slice. [`MaxPool2d::new`]`(2)` is the usual 2×2, stride 2, which halves
/// each slice; [`OddPolicy`] says what happens to an odd row/column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window `[height, width]`.
    pub window: [usize; 2],
    /// `[vertical, horizontal]` stride.
    pub stride: [usize; 2],
    /// Drop (floor) or impute by copying the edge (ceil).
    pub policy: OddPolicy,
}

impl MaxPool2d {
    /// Non-overlapping `k × k` windows (stride `k`), dropping partial windows.
    pub fn new(k: usize) -> Self {
        Self {
            window: [k, k],
            stride: [k, k],
            policy: OddPolicy::Floor,
        }
    }

    /// With a `k × k` window moved by `stride`.
    pub fn with_stride(k: usize, stride: usize) -> Self {
        Self {
            window: [k, k],
            stride: [stride, stride],
            policy: OddPolicy::Floor,
        }
    }

    /// With this odd-size policy.
    pub fn policy(mut self, policy: OddPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl<T: Real> Module<T> for MaxPool2d {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::MaxPool {
            window: self.window,
            stride: self.stride,
            ceil: self.policy == OddPolicy::Ceil,
        })
    }

    fn describe(&self) -> String {
        let p = match self.policy {
            OddPolicy::Floor => "floor",
            OddPolicy::Ceil => "ceil",
        };
        format!(
            "maxpool {}×{} stride {} ({p})",
            self.window[0], self.window[1], self.stride[0]
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let err = || NnError::InputShape {
            expected: format!(
                "[C, H, W] with H ≥ {} and W ≥ {} (stride {:?} positive)",
                self.window[0], self.window[1], self.stride
            ),
            got: input.to_vec(),
        };
        if input.len() != 3 {
            return Err(err());
        }
        let oh =
            pooled_len(input[1], self.window[0], self.stride[0], self.policy).ok_or_else(err)?;
        let ow =
            pooled_len(input[2], self.window[1], self.stride[1], self.policy).ok_or_else(err)?;
        Ok(vec![input[0], oh, ow])
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, _ctx: &mut Ctx<'_>) -> Result<Var> {
        Ok(tape.max_pool2d(x, self.window, self.stride, self.policy)?)
    }
}

/// Global average pooling: each slice to its mean, `[N, C, H, W] → [N, C]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalAvgPool;

impl<T: Real> Module<T> for GlobalAvgPool {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::GlobalAvgPool)
    }

    fn describe(&self) -> String {
        "global average pool".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input.len() != 3 || input[1] * input[2] == 0 {
            return Err(NnError::InputShape {
                expected: "[C, H, W] with non-empty slices".into(),
                got: input.to_vec(),
            });
        }
        Ok(vec![input[0]])
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, _ctx: &mut Ctx<'_>) -> Result<Var> {
        Ok(tape.global_avg_pool(x)?)
    }
}

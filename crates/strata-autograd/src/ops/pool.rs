//! Pooling (section 12.3.3): max pooling over windows of each slice, and
//! global average pooling of each slice to one value.
//!
//! Max pooling `y = max_{window} x` routes the gradient to the arg-max:
//! `∂E/∂x[a] = Σ_{windows whose max is at a} ∂E/∂y`. Global average pooling
//! `y[n, c] = (1/HW) Σ x[n, c, ·]` spreads it evenly: `∂E/∂x = ∂E/∂y / HW`.

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::pool::{self, pooled_len, OddPolicy, PoolGeometry};
use strata_tensor::{buffers, Tensor};

/// Where each window's maximum sits: a one-byte offset for 2×2 windows with
/// stride 2 (a quarter of the memory), else an index within the slice.
enum ArgMax {
    Pair(Vec<u8>),
    Index(Vec<u32>),
}

struct MaxPoolBackward {
    g: PoolGeometry,
    arg: ArgMax,
}

impl<T: Real> Backward<T> for MaxPoolBackward {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let mut dx = buffers::take(inputs[0].numel());
        let dy = grad.to_contiguous_slice();
        match &self.arg {
            ArgMax::Pair(code) => pool::max_pool2x2_backward(&self.g, &dy, code, &mut dx),
            ArgMax::Index(arg) => pool::max_pool2d_backward(&self.g, &dy, arg, &mut dx),
        }
        Ok(vec![Some(tensor(dx, inputs[0].shape()))])
    }
}

struct AvgPoolBackward {
    planes: usize,
    hw: usize,
}

impl<T: Real> Backward<T> for AvgPoolBackward {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let mut dx = buffers::take(inputs[0].numel());
        pool::global_avg_pool_backward(&grad.to_contiguous_slice(), self.planes, self.hw, &mut dx);
        Ok(vec![Some(tensor(dx, inputs[0].shape()))])
    }
}

impl<T: Real> Tape<T> {
    /// Max pooling of `x` (`[N, C, H, W]`) with a `window` (`[kh, kw]`) moved
    /// by `stride`; `policy` says whether a partial window at the edge is
    /// dropped (floor) or pooled over the edge copies (ceil).
    pub fn max_pool2d(
        &mut self,
        x: Var,
        window: [usize; 2],
        stride: [usize; 2],
        policy: OddPolicy,
    ) -> Result<Var> {
        let xv = self.value(x)?;
        let s = xv.shape();
        if s.len() != 4 {
            return Err(shape_err("max_pool2d", "input must be [N, C, H, W]", &[s]));
        }
        if window.contains(&0) || stride.contains(&0) {
            return Err(shape_err(
                "max_pool2d",
                format!("window {window:?} and stride {stride:?} must be positive"),
                &[s],
            ));
        }
        let (oh, ow) = match (
            pooled_len(s[2], window[0], stride[0], policy),
            pooled_len(s[3], window[1], stride[1], policy),
        ) {
            (Some(oh), Some(ow)) => (oh, ow),
            _ => {
                return Err(shape_err(
                    "max_pool2d",
                    format!(
                        "window {}×{} does not fit a {}×{} slice",
                        window[0], window[1], s[2], s[3]
                    ),
                    &[s],
                ))
            }
        };
        let g = PoolGeometry {
            planes: s[0] * s[1],
            h: s[2],
            w: s[3],
            kh: window[0],
            kw: window[1],
            stride_h: stride[0],
            stride_w: stride[1],
            policy,
        };
        let mut y = buffers::take(g.planes * oh * ow);
        if !self.is_recording() {
            // Inference: no gradient to route, so no arg-max to keep.
            pool::max_pool2d_values(&g, &xv.to_contiguous_slice(), &mut y);
            let out = tensor(y, &[s[0], s[1], oh, ow]);
            return self.push_op(&[x], out, || unreachable!("inference records no backward"));
        }
        let arg = if pool::is_pair(&g) {
            let mut code = vec![0u8; y.len()];
            pool::max_pool2x2(&g, &xv.to_contiguous_slice(), &mut y, &mut code);
            ArgMax::Pair(code)
        } else {
            let mut arg = vec![0u32; y.len()];
            pool::max_pool2d(&g, &xv.to_contiguous_slice(), &mut y, &mut arg);
            ArgMax::Index(arg)
        };
        let out = tensor(y, &[s[0], s[1], oh, ow]);
        self.push_op(&[x], out, || Box::new(MaxPoolBackward { g, arg }))
    }

    /// Global average pooling: `[N, C, H, W] → [N, C]`, each slice's mean.
    pub fn global_avg_pool(&mut self, x: Var) -> Result<Var> {
        let xv = self.value(x)?;
        let s = xv.shape();
        if s.len() != 4 || s[2] * s[3] == 0 {
            return Err(shape_err(
                "global_avg_pool",
                "input must be [N, C, H, W] with non-empty slices",
                &[s],
            ));
        }
        let (planes, hw) = (s[0] * s[1], s[2] * s[3]);
        let mut y = vec![T::zero(); planes];
        pool::global_avg_pool(&xv.to_contiguous_slice(), planes, hw, &mut y);
        let out = tensor(y, &[s[0], s[1]]);
        self.push_op(&[x], out, || Box::new(AvgPoolBackward { planes, hw }))
    }
}

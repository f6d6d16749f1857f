//! Padding each slice of an NCHW block (section 12.3.1: "pad the image (either
//! with constants, or by reflecting it, or by attaching copies of the
//! columns/rows at the edge)").
//!
//! Backward: the adjoint of the copy — each source pixel receives the sum of
//! the gradients of every padded position that copies it.

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::pad::{self, Border, Pad2d};
use strata_tensor::Tensor;

struct PadBackward {
    pad: Pad2d,
    border: Border,
}

impl<T: Real> Backward<T> for PadBackward {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let s = inputs[0].shape();
        let mut dx = vec![T::zero(); inputs[0].numel()];
        pad::pad2d_backward(
            &grad.to_contiguous_slice(),
            s[0] * s[1],
            s[2],
            s[3],
            self.pad,
            self.border,
            &mut dx,
        );
        Ok(vec![Some(tensor(dx, s))])
    }
}

impl<T: Real> Tape<T> {
    /// Pads every slice of `x` (`[N, C, H, W]`) by `pad`, filling the border
    /// as `border` says.
    pub fn pad2d(&mut self, x: Var, pad: Pad2d, border: Border) -> Result<Var> {
        let xv = self.value(x)?;
        let s = xv.shape();
        if s.len() != 4 {
            return Err(shape_err("pad2d", "input must be [N, C, H, W]", &[s]));
        }
        if pad.is_zero() {
            return Ok(x);
        }
        if (s[2] == 0 || s[3] == 0) && matches!(border, Border::Reflect | Border::Replicate) {
            return Err(shape_err(
                "pad2d",
                "cannot reflect or replicate an empty slice",
                &[s],
            ));
        }
        let (ph, pw) = pad.padded(s[2], s[3]);
        let mut y = vec![T::zero(); s[0] * s[1] * ph * pw];
        pad::pad2d(
            &xv.to_contiguous_slice(),
            s[0] * s[1],
            s[2],
            s[3],
            pad,
            border,
            &mut y,
        );
        let out = tensor(y, &[s[0], s[1], ph, pw]);
        self.push_op(&[x], out, || Box::new(PadBackward { pad, border }))
    }
}

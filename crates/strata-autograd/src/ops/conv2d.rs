//! 2-D convolution of NCHW blocks by a bank of kernels (section 12.3.1):
//! `O[n, o, u, v] = Σ_{c,i,j} I[n, c, u·s_h + i − p_t, v·s_w + j − p_l] · K[o, c, i, j] + b[o]`,
//! reading zero outside the image (zero padding; reflection and replication
//! are a [`Tape::pad2d`] before a convolution with no padding).
//!
//! Backward: `∂E/∂I` is the transposed convolution of `∂E/∂O` by `K`,
//! `∂E/∂K[o, c, i, j] = Σ_{n,u,v} ∂E/∂O[n, o, u, v] · I[n, c, u·s_h + i − p_t, v·s_w + j − p_l]`,
//! `∂E/∂b[o] = Σ_{n,u,v} ∂E/∂O[n, o, u, v]`. All three run as GEMMs in
//! [`strata_kernels::conv`].

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::conv::{self, ConvGeometry};
use strata_kernels::pad::Pad2d;
use strata_tensor::{buffers, Tensor};

/// Stride and zero padding of [`Tape::conv2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// `[vertical, horizontal]` stride (both > 0).
    pub stride: [usize; 2],
    /// Zero padding on each side.
    pub pad: Pad2d,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Self {
            stride: [1, 1],
            pad: Pad2d::default(),
        }
    }
}

/// The geometry of convolving `x` (`[N, C, H, W]`) with `w` (`[O, C, kh, kw]`),
/// or an error naming the shapes.
pub fn conv_geometry(x: &[usize], w: &[usize], opts: &Conv2dOptions) -> Result<ConvGeometry> {
    let err = |what: String| shape_err("conv2d", what, &[x, w]);
    if x.len() != 4 || w.len() != 4 {
        return Err(err(
            "input must be [N, C, H, W] and kernel [O, C, kh, kw]".into()
        ));
    }
    if x[1] != w[1] {
        return Err(err(format!(
            "the input has {} channels but the kernel expects {}",
            x[1], w[1]
        )));
    }
    if opts.stride.contains(&0) {
        return Err(err(format!("stride {:?} must be positive", opts.stride)));
    }
    if w.contains(&0) || x[1..].contains(&0) {
        return Err(err("kernel and image sizes must be positive".into()));
    }
    let (ph, pw) = opts.pad.padded(x[2], x[3]);
    if w[2] > ph || w[3] > pw {
        return Err(err(format!(
            "kernel {}×{} is larger than the padded input {ph}×{pw}",
            w[2], w[3]
        )));
    }
    Ok(ConvGeometry {
        batch: x[0],
        c_in: x[1],
        h: x[2],
        w: x[3],
        c_out: w[0],
        kh: w[2],
        kw: w[3],
        stride_h: opts.stride[0],
        stride_w: opts.stride[1],
        pad_top: opts.pad.top,
        pad_bottom: opts.pad.bottom,
        pad_left: opts.pad.left,
        pad_right: opts.pad.right,
    })
}

struct Conv2dBackward {
    g: ConvGeometry,
    /// ReLU fused after the convolution: the output gates the gradient.
    relu: bool,
    /// Inputs after `x` and `w`: a bias, then a residual (each optional).
    bias: bool,
    residual: bool,
}

impl<T: Real> Backward<T> for Conv2dBackward {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, w) = (inputs[0], inputs[1]);
        let mut gd = grad.to_contiguous_slice();
        if self.relu {
            let mut gated = buffers::take(gd.len());
            strata_kernels::elementwise::relu_backward(
                &output.to_contiguous_slice(),
                &gd,
                &mut gated,
            );
            gd = gated.into();
        }
        let dx = needs[0].then(|| {
            let mut dx = buffers::take(x.numel());
            conv::conv2d_backward_data(&self.g, &w.to_contiguous_slice(), &gd, &mut dx);
            tensor(dx, x.shape())
        });
        let need_b = self.bias && needs[2];
        let (mut dw, mut db) = (None, None);
        if needs[1] || need_b {
            let mut dwv = buffers::take(w.numel());
            let mut dbv = vec![T::zero(); self.g.c_out];
            let xd = x.to_contiguous_slice();
            conv::conv2d_backward_weights(
                &self.g,
                &xd,
                &gd,
                &mut dwv,
                need_b.then_some(&mut dbv[..]),
            );
            dw = needs[1].then(|| tensor(dwv, w.shape()));
            db = need_b.then(|| tensor(dbv, &[self.g.c_out]));
        }
        let mut out = vec![dx, dw];
        if self.bias {
            out.push(db);
        }
        if self.residual && needs[out.len()] {
            // ∂(conv + r)/∂r = 1: the residual gets the (gated) gradient.
            let shape = inputs[out.len()].shape().to_vec();
            out.push(Some(tensor(gd.into_owned(), &shape)));
        } else if self.residual {
            out.push(None);
        }
        Ok(out)
    }
}

impl<T: Real> Tape<T> {
    /// Convolves `x` (`[N, C, H, W]`) with the kernels `w` (`[O, C, kh, kw]`),
    /// adding `bias` (`[O]`) when given; output `[N, O, oh, ow]` with
    /// `oh = ⌊(H + p_t + p_b − kh)/s_h⌋ + 1` (likewise `ow`).
    pub fn conv2d(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        opts: Conv2dOptions,
    ) -> Result<Var> {
        self.conv2d_act(x, w, bias, opts, false)
    }

    /// [`Tape::conv2d`] followed, when `relu`, by ReLU in the same op (applied
    /// while each group of outputs is in cache; the backward pass gates the
    /// gradient by the output).
    pub fn conv2d_act(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        opts: Conv2dOptions,
        relu: bool,
    ) -> Result<Var> {
        self.conv2d_add_act(x, w, bias, None, opts, relu)
    }

    /// [`Tape::conv2d_act`] with `residual` (shaped like the output) added
    /// before the ReLU: `F(conv(x) + b + r)` — the original residual layer's
    /// last convolution, sum and output ReLU as one op. The residual's
    /// gradient is the (gated) output gradient.
    pub fn conv2d_add_act(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        residual: Option<Var>,
        opts: Conv2dOptions,
        relu: bool,
    ) -> Result<Var> {
        self.conv2d_op(x, w, bias, residual, opts, relu, None)
    }

    /// [`Tape::conv2d`] that also returns every output slice's batch norm
    /// terms ([`strata_kernels::batchnorm::slice_stats`], entry `i·c_out + o`
    /// for image `i` and slice `o`), taken while the slice is in cache, for
    /// [`Tape::batch_norm_train_act_from`] on the output.
    pub fn conv2d_slice_stats(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        opts: Conv2dOptions,
    ) -> Result<(Var, Vec<(T, T)>)> {
        let mut stats = Vec::new();
        let y = self.conv2d_op(x, w, bias, None, opts, false, Some(&mut stats))?;
        Ok((y, stats))
    }

    #[allow(clippy::too_many_arguments)]
    fn conv2d_op(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        residual: Option<Var>,
        opts: Conv2dOptions,
        relu: bool,
        stats: Option<&mut Vec<(T, T)>>,
    ) -> Result<Var> {
        let (xv, wv) = (self.value(x)?, self.value(w)?);
        let g = conv_geometry(xv.shape(), wv.shape(), &opts)?;
        let bv = match bias {
            Some(b) => {
                let bv = self.value(b)?;
                if bv.shape() != [g.c_out] {
                    return Err(shape_err(
                        "conv2d",
                        format!("bias must have one value per output slice ({})", g.c_out),
                        &[xv.shape(), wv.shape(), bv.shape()],
                    ));
                }
                Some(bv.to_contiguous_slice())
            }
            None => None,
        };
        let out_shape = [g.batch, g.c_out, g.out_h(), g.out_w()];
        let rv = match residual {
            Some(r) => {
                let rv = self.value(r)?;
                if rv.shape() != out_shape {
                    return Err(shape_err(
                        "conv2d",
                        format!("the residual must have the output's shape {out_shape:?}"),
                        &[xv.shape(), wv.shape(), rv.shape()],
                    ));
                }
                Some(rv.to_contiguous_slice())
            }
            None => None,
        };
        let mut y = buffers::take(g.batch * g.out_image());
        let (xs, ws) = (xv.to_contiguous_slice(), wv.to_contiguous_slice());
        match stats {
            Some(st) => {
                st.resize(g.batch * g.c_out, (T::zero(), T::zero()));
                conv::conv2d_forward_slice_stats(&g, &xs, &ws, bv.as_deref(), &mut y, st);
            }
            None => {
                conv::conv2d_forward_fused(&g, &xs, &ws, bv.as_deref(), rv.as_deref(), relu, &mut y)
            }
        }
        let out = tensor(y, &out_shape);
        let inputs: Vec<Var> = [x, w].into_iter().chain(bias).chain(residual).collect();
        let (has_bias, has_res) = (bias.is_some(), residual.is_some());
        self.push_op(&inputs, out, conv2d_add_act(g, relu, has_bias, has_res))
    }
}

/// The backward record of every convolution op, made by a function of this
/// name so that the profile files them all as `conv2d_add_act` (the name
/// comes from the closure's type), slice statistics or not.
fn conv2d_add_act<T: Real>(
    g: ConvGeometry,
    relu: bool,
    bias: bool,
    residual: bool,
) -> impl FnOnce() -> Box<dyn Backward<T>> {
    move || {
        Box::new(Conv2dBackward {
            g,
            relu,
            bias,
            residual,
        })
    }
}

//! A network of unpadded convolutions, pooling and linear layers read as
//! one convolution network over a whole image ([`FcNet`]).

use strata_autograd::kernels::pool::OddPolicy;
use strata_autograd::ops::conv2d::Conv2dOptions;
use strata_autograd::{Tape, Var};
use strata_nn::Lowered;
use strata_tensor::Tensor;

/// One layer of the fully convolutional network.
#[derive(Clone, Debug)]
enum FcOp {
    Conv {
        weight: Tensor<f32>,
        bias: Option<Tensor<f32>>,
        stride: [usize; 2],
        relu: bool,
    },
    BatchNorm {
        gamma: Tensor<f32>,
        beta: Tensor<f32>,
        mean: Vec<f32>,
        var: Vec<f32>,
        eps: f64,
    },
    Relu,
    Gelu,
    Scale(f32),
    MaxPool {
        window: [usize; 2],
        stride: [usize; 2],
    },
    Residual {
        pre: Vec<FcOp>,
        body: Vec<FcOp>,
        shortcut: Option<Vec<FcOp>>,
        relu: bool,
    },
}

/// Per-window shape while compiling: `[C, H, W]`, and whether it has been
/// flattened (a linear layer then reads all of it).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Geometry {
    shape: [usize; 3],
    flat: bool,
    stride: [usize; 2],
}

/// The network read as convolutions over a whole image.
#[derive(Clone, Debug)]
pub struct FcNet {
    ops: Vec<FcOp>,
    /// The grid of its windows in input pixels, `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// The window it classifies, `[C, h, w]`.
    pub window: [usize; 3],
}

fn compile_one(l: &Lowered<f32>, g: &mut Geometry, out: &mut Vec<FcOp>) -> Result<(), String> {
    let [c, h, w] = g.shape;
    match l {
        Lowered::Sequence(ls) => {
            for l in ls {
                compile_one(l, g, out)?;
            }
        }
        Lowered::Identity => {}
        Lowered::Relu => out.push(FcOp::Relu),
        Lowered::Gelu => out.push(FcOp::Gelu),
        Lowered::Scale(f) => out.push(FcOp::Scale(*f as f32)),
        Lowered::Flatten => g.flat = true,
        Lowered::Conv {
            weight,
            bias,
            stride,
            pad,
            ..
        } => {
            if g.flat {
                return Err("a convolution after the flatten".into());
            }
            if pad.top + pad.bottom + pad.left + pad.right > 0 {
                return Err(format!(
                    "its convolution {:?} pads its input, and over a whole image a window \
                     would see its neighbours' pixels where it saw padding",
                    weight.shape()
                ));
            }
            let (kh, kw) = (weight.shape()[2], weight.shape()[3]);
            if h < kh || w < kw {
                return Err(format!("a {kh}×{kw} convolution of a {h}×{w} map"));
            }
            g.shape = [
                weight.shape()[0],
                (h - kh) / stride[0] + 1,
                (w - kw) / stride[1] + 1,
            ];
            g.stride = [g.stride[0] * stride[0], g.stride[1] * stride[1]];
            out.push(FcOp::Conv {
                weight: weight.clone(),
                bias: bias.clone(),
                stride: *stride,
                relu: false,
            });
        }
        Lowered::Linear { weight, bias, relu } => {
            // A linear layer of the whole per-window block is a convolution
            // with a kernel that size.
            let (o, i) = (weight.shape()[0], weight.shape()[1]);
            if !g.flat && (h, w) != (1, 1) {
                return Err("a linear layer before any flatten".into());
            }
            if i != c * h * w {
                return Err(format!(
                    "a linear layer of {i} inputs after a {c}×{h}×{w} block"
                ));
            }
            let weight = weight.reshape(&[o, c, h, w]).map_err(|e| e.to_string())?;
            g.shape = [o, 1, 1];
            g.flat = false;
            out.push(FcOp::Conv {
                weight,
                bias: Some(bias.clone()),
                stride: [1, 1],
                relu: *relu,
            });
        }
        Lowered::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            eps,
        } => {
            if g.flat && (h, w) != (1, 1) {
                return Err("batch norm of a flattened block".into());
            }
            out.push(FcOp::BatchNorm {
                gamma: gamma.clone(),
                beta: beta.clone(),
                mean: mean.to_vec(),
                var: var.to_vec(),
                eps: *eps,
            });
        }
        Lowered::MaxPool {
            window,
            stride,
            ceil,
        } => {
            if g.flat {
                return Err("pooling after the flatten".into());
            }
            let partial = |n: usize, k: usize, s: usize| n >= k && !(n - k).is_multiple_of(s);
            if *ceil && (partial(h, window[0], stride[0]) || partial(w, window[1], stride[1])) {
                return Err(
                    "its pooling keeps partial windows at the block's edge, which a whole \
                     image does not have"
                        .into(),
                );
            }
            if h < window[0] || w < window[1] {
                return Err(format!("a {:?} pooling of a {h}×{w} map", window));
            }
            g.shape = [
                c,
                (h - window[0]) / stride[0] + 1,
                (w - window[1]) / stride[1] + 1,
            ];
            g.stride = [g.stride[0] * stride[0], g.stride[1] * stride[1]];
            out.push(FcOp::MaxPool {
                window: *window,
                stride: *stride,
            });
        }
        Lowered::GlobalAvgPool => {
            return Err(
                "it averages over the whole block (global average pooling); a network that \
                 ends in a flatten and linear layers runs fully convolutionally"
                    .into(),
            )
        }
        Lowered::Residual {
            pre,
            body,
            shortcut,
            relu,
        } => {
            let at_x = *g;
            let mut p = Vec::new();
            compile_one(pre, g, &mut p)?;
            let at_h = *g;
            let mut b = Vec::new();
            compile_one(body, g, &mut b)?;
            let (s, at_skip) = match shortcut {
                Some(sc) => {
                    let mut gs = at_h;
                    let mut s = Vec::new();
                    compile_one(sc, &mut gs, &mut s)?;
                    (Some(s), gs)
                }
                None => (None, at_x),
            };
            if at_skip != *g {
                return Err("a residual layer whose branches differ in size".into());
            }
            out.push(FcOp::Residual {
                pre: p,
                body: b,
                shortcut: s,
                relu: *relu,
            });
        }
    }
    Ok(())
}

impl FcNet {
    /// Reads `lowered` (the network for `[C, h, w]` windows) as convolutions,
    /// after the per-channel affine map `x ↦ a·x + b` of the preprocessing
    /// when given; an error says which layer prevents it.
    pub fn compile(
        lowered: &Lowered<f32>,
        window: [usize; 3],
        affine: Option<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Self, String> {
        let mut ops = Vec::new();
        if let Some((a, b)) = affine {
            // The preprocessing as a 1×1 convolution: weight diag(a), bias b.
            let c = window[0];
            let mut wv = vec![0.0; c * c];
            for k in 0..c {
                wv[k * c + k] = a[k];
            }
            ops.push(FcOp::Conv {
                weight: Tensor::from_vec(wv, &[c, c, 1, 1]).map_err(|e| e.to_string())?,
                bias: Some(Tensor::from_vec(b, &[c]).map_err(|e| e.to_string())?),
                stride: [1, 1],
                relu: false,
            });
        }
        let mut g = Geometry {
            shape: window,
            flat: false,
            stride: [1, 1],
        };
        compile_one(lowered, &mut g, &mut ops)?;
        if g.shape[1..] != [1, 1] {
            return Err(format!(
                "its output for one window is a {:?} block, not one score per class",
                g.shape
            ));
        }
        Ok(Self {
            ops,
            stride: g.stride,
            window,
        })
    }

    /// The `[1, classes, rows, cols]` output for a `[C, H, W]` image.
    pub fn run(&self, image: &[f32], shape: [usize; 3]) -> Result<Tensor<f32>, String> {
        let mut tape = Tape::<f32>::inference();
        let x = Tensor::from_vec(image.to_vec(), &[1, shape[0], shape[1], shape[2]])
            .map_err(|e| e.to_string())?;
        let x = tape.input(x);
        let y = run_ops(&mut tape, &self.ops, x).map_err(|e| e.to_string())?;
        Ok(tape.value(y).map_err(|e| e.to_string())?.clone())
    }
}

fn run_ops(
    tape: &mut Tape<f32>,
    ops: &[FcOp],
    mut x: Var,
) -> Result<Var, strata_autograd::AutogradError> {
    for op in ops {
        x = match op {
            FcOp::Conv {
                weight,
                bias,
                stride,
                relu,
            } => {
                let w = tape.input(weight.clone());
                let b = bias.as_ref().map(|b| tape.input(b.clone()));
                let opts = Conv2dOptions {
                    stride: *stride,
                    ..Conv2dOptions::default()
                };
                tape.conv2d_add_act(x, w, b, None, opts, *relu)?
            }
            FcOp::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                eps,
            } => {
                let (g, b) = (tape.input(gamma.clone()), tape.input(beta.clone()));
                tape.batch_norm_eval(x, g, b, mean, var, *eps)?
            }
            FcOp::Relu => tape.relu(x)?,
            FcOp::Gelu => tape.gelu(x)?,
            FcOp::Scale(f) => tape.scale(x, *f)?,
            FcOp::MaxPool { window, stride } => {
                tape.max_pool2d(x, *window, *stride, OddPolicy::Floor)?
            }
            FcOp::Residual {
                pre,
                body,
                shortcut,
                relu,
            } => {
                let h = run_ops(tape, pre, x)?;
                let skip = match shortcut {
                    Some(s) => run_ops(tape, s, h)?,
                    None => x,
                };
                let f = run_ops(tape, body, h)?;
                tape.add_act(f, skip, *relu)?
            }
        };
    }
    Ok(x)
}

//! Residual layers (section 12.4.5), fully connected or convolutional.
//!
//! Original (He et al., 2016, Figure 12.14):
//! `x^{l+1} = F(x^l + W₁q + b₁)`, `q = F(W₂x^l + b₂)`.
//! Pre-activation ("identity mappings", Figure 12.15b):
//! `x^{l+1} = x^l + W₁q + b₁`, `q = F(W₂F(x^l) + b₂)`,
//! whose Jacobian `I + M_l` passes gradients through any depth unmangled.
//!
//! With batch norm, a BN follows each `W` in the original layer (conv-BN-ReLU-
//! conv-BN, add, ReLU) and precedes each `F` in the pre-activation one
//! (BN-ReLU-conv-BN-ReLU-conv, add); `b₁`, `b₂` are then BN's `β`. When the
//! shape changes (channels or stride) the shortcut is a projection, a 1×1
//! convolution with that stride (a linear map for fully connected layers), plus
//! BN in the original variant; in the pre-activation variant it reads the
//! pre-activated input `F(x^l)`.

use crate::batchnorm::BatchNorm;
use crate::conv::{Conv2dConfig, Padding};
use crate::error::{NnError, Result};
use crate::layers::{Linear, Relu};
use crate::lower::Lowered;
use crate::module::{Ctx, Module, Named, NamedMut};
use crate::sequential::Sequential;
use rand::Rng;
use strata_autograd::{Real, Tape, Var};
use strata_tensor::Tensor;

/// Which residual layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResidualKind {
    /// `x^{l+1} = F(x^l + W₁q + b₁)`, `q = F(W₂x^l + b₂)`.
    Original,
    /// `x^{l+1} = x^l + W₁q + b₁`, `q = F(W₂F(x^l) + b₂)`.
    PreActivation,
}

/// A residual layer: `out = body(pre(x)) + shortcut`, followed by `F` in the
/// original variant. `pre` is empty for the original variant and `[BN,] ReLU`
/// for the pre-activation one; `shortcut` is `x` itself or a projection.
/// Parameters are named `pre.…`, `body.…`, `shortcut.…`.
pub struct Residual<T: Real> {
    kind: ResidualKind,
    pre: Sequential<T>,
    body: Sequential<T>,
    shortcut: Option<Sequential<T>>,
}

fn conv<T: Real>(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    bias: bool,
    rng: &mut impl Rng,
) -> Result<crate::conv::Conv2d<T>> {
    let pad = if k == 1 {
        Padding::Valid
    } else {
        Padding::Same
    };
    Conv2dConfig::new(cin, cout, k)
        .stride(stride)
        .padding(pad)
        .bias(bias)
        .build(rng)
}

impl<T: Real> Residual<T> {
    /// A residual layer from its parts.
    pub fn from_parts(
        kind: ResidualKind,
        pre: Sequential<T>,
        body: Sequential<T>,
        shortcut: Option<Sequential<T>>,
    ) -> Self {
        Self {
            kind,
            pre,
            body,
            shortcut,
        }
    }

    /// The variant.
    pub fn kind(&self) -> ResidualKind {
        self.kind
    }

    /// `[BN,] ReLU` for the pre-activation variant, nothing for the original.
    fn pre_for(kind: ResidualKind, channels: usize, bn: bool) -> Result<Sequential<T>> {
        let mut pre = Sequential::new();
        if kind == ResidualKind::PreActivation {
            if bn {
                pre.push(BatchNorm::new(channels)?);
            }
            pre.push(Relu);
        }
        Ok(pre)
    }

    /// Assembles `W₂ [BN] F W₁ [BN]` (original) or `W₂ [BN] F W₁` (pre-activation)
    /// from the layers `ws` (W₂ …, W₁) and their output widths.
    fn body_for(
        kind: ResidualKind,
        ws: Vec<(Box<dyn Module<T>>, usize)>,
        bn: bool,
    ) -> Result<Sequential<T>> {
        let mut body = Sequential::new();
        let last = ws.len() - 1;
        for (i, (w, width)) in ws.into_iter().enumerate() {
            body.push_boxed(w);
            let final_w = i == last;
            if bn && (!final_w || kind == ResidualKind::Original) {
                body.push(BatchNorm::new(width)?);
            }
            if !final_w {
                body.push(Relu);
            }
        }
        Ok(body)
    }

    /// A fully connected residual layer `inputs → outputs` (`W₂`: inputs→outputs,
    /// `W₁`: outputs→outputs; a linear projection shortcut if the widths differ).
    pub fn dense(
        kind: ResidualKind,
        inputs: usize,
        outputs: usize,
        batch_norm: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let ws: Vec<(Box<dyn Module<T>>, usize)> = vec![
            (Box::new(Linear::new(inputs, outputs, rng)?), outputs),
            (Box::new(Linear::new(outputs, outputs, rng)?), outputs),
        ];
        let shortcut = if inputs != outputs {
            let mut s = Sequential::new();
            s.push(Linear::new(inputs, outputs, rng)?);
            if batch_norm && kind == ResidualKind::Original {
                s.push(BatchNorm::new(outputs)?);
            }
            Some(s)
        } else {
            None
        };
        Ok(Self::from_parts(
            kind,
            Self::pre_for(kind, inputs, batch_norm)?,
            Self::body_for(kind, ws, batch_norm)?,
            shortcut,
        ))
    }

    fn projection(
        kind: ResidualKind,
        cin: usize,
        cout: usize,
        stride: usize,
        bn: bool,
        rng: &mut impl Rng,
    ) -> Result<Option<Sequential<T>>> {
        if cin == cout && stride == 1 {
            return Ok(None);
        }
        let with_bn = bn && kind == ResidualKind::Original;
        let mut s = Sequential::new();
        s.push(conv::<T>(cin, cout, 1, stride, !bn, rng)?);
        if with_bn {
            s.push(BatchNorm::new(cout)?);
        }
        Ok(Some(s))
    }

    /// A convolutional "basic block": two 3×3 convolutions (`W₂` with `stride`),
    /// "same" zero padding, biases only without batch norm; a 1×1 projection
    /// shortcut when channels or size change.
    pub fn basic(
        kind: ResidualKind,
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        batch_norm: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let bias = !batch_norm;
        let ws: Vec<(Box<dyn Module<T>>, usize)> = vec![
            (
                Box::new(conv::<T>(in_channels, out_channels, 3, stride, bias, rng)?),
                out_channels,
            ),
            (
                Box::new(conv::<T>(out_channels, out_channels, 3, 1, bias, rng)?),
                out_channels,
            ),
        ];
        Self::conv_block(
            kind,
            (in_channels, out_channels),
            stride,
            batch_norm,
            ws,
            rng,
        )
    }

    /// Assembles a convolutional block from its weighted layers `ws`, with the
    /// pre-activation, body and (when shapes change) projection `kind` needs.
    fn conv_block(
        kind: ResidualKind,
        (in_channels, out_channels): (usize, usize),
        stride: usize,
        batch_norm: bool,
        ws: Vec<(Box<dyn Module<T>>, usize)>,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Ok(Self::from_parts(
            kind,
            Self::pre_for(kind, in_channels, batch_norm)?,
            Self::body_for(kind, ws, batch_norm)?,
            Self::projection(kind, in_channels, out_channels, stride, batch_norm, rng)?,
        ))
    }

    /// A "bottleneck" block: 1×1 (`in → mid`), 3×3 (`mid → mid`, `stride`),
    /// 1×1 (`mid → out`), as in the 1001-layer pre-activation network.
    pub fn bottleneck(
        kind: ResidualKind,
        in_channels: usize,
        mid_channels: usize,
        out_channels: usize,
        stride: usize,
        batch_norm: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let bias = !batch_norm;
        let ws: Vec<(Box<dyn Module<T>>, usize)> = vec![
            (
                Box::new(conv::<T>(in_channels, mid_channels, 1, 1, bias, rng)?),
                mid_channels,
            ),
            (
                Box::new(conv::<T>(mid_channels, mid_channels, 3, stride, bias, rng)?),
                mid_channels,
            ),
            (
                Box::new(conv::<T>(mid_channels, out_channels, 1, 1, bias, rng)?),
                out_channels,
            ),
        ];
        Self::conv_block(
            kind,
            (in_channels, out_channels),
            stride,
            batch_norm,
            ws,
            rng,
        )
    }
}

fn prefixed<V>(prefix: &'static str, v: Vec<(String, V)>) -> impl Iterator<Item = (String, V)> {
    v.into_iter()
        .map(move |(n, p)| (format!("{prefix}.{n}"), p))
}

impl<T: Real> Module<T> for Residual<T> {
    fn lower(&self, input: &[usize]) -> Option<Lowered<T>> {
        let h = self.pre.output_shape(input).ok()?;
        Some(Lowered::Residual {
            pre: Box::new(self.pre.lower(input)?),
            body: Box::new(self.body.lower(&h)?),
            shortcut: match &self.shortcut {
                Some(s) => Some(Box::new(s.lower(&h)?)),
                None => None,
            },
            relu: self.kind == ResidualKind::Original,
        })
    }

    fn describe(&self) -> String {
        let k = match self.kind {
            ResidualKind::Original => "residual",
            ResidualKind::PreActivation => "pre-activation residual",
        };
        let proj = if self.shortcut.is_some() {
            ", projection"
        } else {
            ""
        };
        format!("{k} ({} layers{proj})", self.body.layers().len())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let h = self
            .pre
            .output_shape(input)
            .map_err(|e| e.in_layer("pre"))?;
        let out = self.body.output_shape(&h).map_err(|e| e.in_layer("body"))?;
        let skip = match &self.shortcut {
            Some(s) => s.output_shape(&h).map_err(|e| e.in_layer("shortcut"))?,
            None => input.to_vec(),
        };
        if skip != out {
            return Err(NnError::InputShape {
                expected: format!(
                    "a shape the residual branch keeps (branch gives {out:?}, shortcut {skip:?}; a projection shortcut is needed)"
                ),
                got: input.to_vec(),
            });
        }
        Ok(out)
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, ctx: &mut Ctx<'_>) -> Result<Var> {
        let h = ctx.scoped("pre", |ctx| self.pre.forward(tape, x, ctx))?;
        let skip = match &mut self.shortcut {
            // The original layer projects x^l; the pre-activation one F(x^l).
            Some(s) => ctx.scoped("shortcut", |ctx| s.forward(tape, h, ctx))?,
            None => x,
        };
        // In inference the original layer's sum and ReLU can ride on the
        // body's last convolution (with its batch norm folded in).
        let fuse = self.kind == ResidualKind::Original;
        let (f, summed) = ctx.scoped("body", |ctx| {
            self.body.run(tape, h, fuse.then_some(skip), ctx)
        })?;
        match self.kind {
            // The sum and the output ReLU in one pass; the ReLU layer keeps
            // its name ("out") for the dead-unit monitor.
            ResidualKind::Original => {
                let y = if summed {
                    f
                } else {
                    tape.add_act(f, skip, true)?
                };
                ctx.scoped("out", |ctx| crate::layers::record_dead_units(tape, y, ctx))?;
                Ok(y)
            }
            ResidualKind::PreActivation => Ok(tape.add(f, skip)?),
        }
    }

    fn params(&self) -> Vec<Named<'_, T>> {
        let mut v: Vec<Named<'_, T>> = prefixed("pre", self.pre.params()).collect();
        v.extend(prefixed("body", self.body.params()));
        if let Some(s) = &self.shortcut {
            v.extend(prefixed("shortcut", s.params()));
        }
        v
    }

    fn params_mut(&mut self) -> Vec<NamedMut<'_, T>> {
        let mut v: Vec<NamedMut<'_, T>> = prefixed("pre", self.pre.params_mut()).collect();
        v.extend(prefixed("body", self.body.params_mut()));
        if let Some(s) = &mut self.shortcut {
            v.extend(prefixed("shortcut", s.params_mut()));
        }
        v
    }

    fn buffers(&self) -> Vec<(String, &Tensor<T>)> {
        let mut v: Vec<_> = prefixed("pre", self.pre.buffers()).collect();
        v.extend(prefixed("body", self.body.buffers()));
        if let Some(s) = &self.shortcut {
            v.extend(prefixed("shortcut", s.buffers()));
        }
        v
    }

    fn buffers_mut(&mut self) -> Vec<(String, &mut Tensor<T>)> {
        let mut v: Vec<_> = prefixed("pre", self.pre.buffers_mut()).collect();
        v.extend(prefixed("body", self.body.buffers_mut()));
        if let Some(s) = &mut self.shortcut {
            v.extend(prefixed("shortcut", s.buffers_mut()));
        }
        v
    }

    fn flops(&self, input: &[usize]) -> u64 {
        let h = self
            .pre
            .output_shape(input)
            .unwrap_or_else(|_| input.to_vec());
        let mut f = self.pre.flops(input) + self.body.flops(&h);
        if let Some(s) = &self.shortcut {
            f += s.flops(&h);
        }
        f
    }
}

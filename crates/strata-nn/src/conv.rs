//! Convolutional layers (section 12.3.1): a bank of kernels slid over a block.
//!
//! Near the border a unit's window leaves the image; the chapter's options are
//! all here: no padding ([`Padding::Valid`], output `n − 2k` for a `2k+1`
//! kernel), or padding filled with a constant, by reflection or by copies of
//! the edge rows/columns ([`Border`]). [`Padding::Same`] pads so that the output
//! is `⌈n/s⌉` (the input size at stride 1), even for even kernels (the extra
//! row/column goes below/right).

use crate::error::{NnError, Result};
use crate::init::Init;
use crate::lower::Lowered;
use crate::module::{Ctx, Module, Named, NamedMut, SliceStats};
use rand::Rng;
use strata_autograd::kernels::pad::{Border, Pad2d};
use strata_autograd::ops::conv2d::Conv2dOptions;
use strata_autograd::{AutogradError, Param, Real, Tape, Var};
use strata_tensor::Tensor;

/// How much to pad each slice before convolving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: units only where the whole window is inside the image.
    #[default]
    Valid,
    /// Enough padding for `⌈n/stride⌉` outputs (total `(⌈n/s⌉−1)·s + k − n`,
    /// half before, the rest after).
    Same,
    /// `p` rows/columns on every side.
    Uniform(usize),
    /// Explicit amounts per side.
    Explicit(Pad2d),
}

/// Configuration of a [`Conv2d`] layer (data; [`Conv2dConfig::build`] makes the layer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dConfig {
    /// Slices of the input block.
    pub in_channels: usize,
    /// Slices of the output block (number of kernels).
    pub out_channels: usize,
    /// Kernel `[height, width]`; odd or even.
    pub kernel: [usize; 2],
    /// `[vertical, horizontal]` stride.
    pub stride: [usize; 2],
    /// Padding amount.
    pub padding: Padding,
    /// How padded pixels are filled.
    pub border: Border,
    /// Whether the layer has a bias per output slice.
    pub bias: bool,
    /// Weight initialisation (fan-in `in_channels·kh·kw`).
    pub init: Init,
}

impl Conv2dConfig {
    /// `in_channels → out_channels` with a square `kernel`, stride 1, no padding, bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: [kernel, kernel],
            stride: [1, 1],
            padding: Padding::Valid,
            border: Border::Zero,
            bias: true,
            init: Init::default(),
        }
    }

    /// With the same stride along both axes.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }

    /// With this padding.
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }

    /// With this border fill.
    pub fn border(mut self, b: Border) -> Self {
        self.border = b;
        self
    }

    /// With or without a bias.
    pub fn bias(mut self, on: bool) -> Self {
        self.bias = on;
        self
    }

    /// Builds the layer, drawing its weights from `rng`.
    pub fn build<T: Real>(self, rng: &mut impl Rng) -> Result<Conv2d<T>> {
        Conv2d::new(self, rng)
    }

    /// Padding on each side for an `h × w` input.
    pub fn pads(&self, h: usize, w: usize) -> Pad2d {
        let same = |n: usize, k: usize, s: usize| {
            let out = n.div_ceil(s.max(1));
            let total = ((out.max(1) - 1) * s + k).saturating_sub(n);
            (total / 2, total - total / 2)
        };
        match self.padding {
            Padding::Valid => Pad2d::default(),
            Padding::Uniform(p) => Pad2d::uniform(p),
            Padding::Explicit(p) => p,
            Padding::Same => {
                let (top, bottom) = same(h, self.kernel[0], self.stride[0]);
                let (left, right) = same(w, self.kernel[1], self.stride[1]);
                Pad2d {
                    top,
                    bottom,
                    left,
                    right,
                }
            }
        }
    }
}

/// A convolutional layer: `O = K * I + b` over `[N, C, H, W]` blocks, kernels
/// `[out, in, kh, kw]` (the nonlinearity is a separate layer).
pub struct Conv2d<T: Real> {
    config: Conv2dConfig,
    /// `[out, in, kh, kw]` kernels (L2-penalised).
    pub weight: Param<T>,
    /// `[out]` biases (not penalised), if configured.
    pub bias: Option<Param<T>>,
}

impl<T: Real> Conv2d<T> {
    /// The input as the convolution reads it (padded on the tape unless the
    /// border is zeros) and the options: checks `x`'s shape first.
    fn prepare(&self, tape: &mut Tape<T>, x: Var) -> Result<(Var, Conv2dOptions)> {
        let shape = tape.shape(x)?.to_vec();
        self.output_shape(shape.get(1..).unwrap_or(&[]))?;
        let pad = self.config.pads(shape[2], shape[3]);
        let (x, pad) = match self.config.border {
            Border::Zero => (x, pad),
            b => (tape.pad2d(x, pad, b)?, Pad2d::default()),
        };
        let opts = Conv2dOptions {
            stride: self.config.stride,
            pad,
        };
        Ok((x, opts))
    }

    /// The training forward with its output slices' batch norm terms.
    fn forward_stats(&mut self, tape: &mut Tape<T>, x: Var) -> Result<(Var, SliceStats<T>)> {
        let (x, opts) = self.prepare(tape, x)?;
        let w = tape.param(&self.weight);
        let b = self.bias.as_ref().map(|b| tape.param(b));
        Ok(tape.conv2d_slice_stats(x, w, b, opts)?)
    }

    /// Convolves `x`, then applies ReLU when `relu` (fused in one op). With
    /// `fold = (scale, shift)` the kernels and bias are those of
    /// `scale ⊙ conv(x) + shift`: `K'[o] = scale[o]·K[o]`,
    /// `b'[o] = scale[o]·b[o] + shift[o]`, put on the tape as constants.
    /// A `residual` is added before the ReLU.
    fn forward_act(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        relu: bool,
        fold: Option<(&[T], &[T])>,
        residual: Option<Var>,
    ) -> Result<Var> {
        let (x, opts) = self.prepare(tape, x)?;
        let (w, b) = match fold {
            None => (
                tape.param(&self.weight),
                self.bias.as_ref().map(|b| tape.param(b)),
            ),
            Some((scale, shift)) => {
                let mut w = self.weight.value.clone();
                let per_out = w.numel() / scale.len().max(1);
                for (k, &s) in w.data_mut().chunks_exact_mut(per_out).zip(scale) {
                    k.iter_mut().for_each(|v| *v = *v * s);
                }
                let bias = self.bias.as_ref().map(|b| b.value.to_vec());
                let b: Vec<T> = (0..scale.len())
                    .map(|o| bias.as_ref().map_or(T::zero(), |b| b[o]) * scale[o] + shift[o])
                    .collect();
                let b = Tensor::from_vec(b, &[scale.len()]).map_err(AutogradError::from)?;
                (tape.input(w), Some(tape.input(b)))
            }
        };
        Ok(tape.conv2d_add_act(x, w, b, residual, opts, relu)?)
    }

    /// A layer from its configuration.
    pub fn new(config: Conv2dConfig, rng: &mut impl Rng) -> Result<Self> {
        let c = &config;
        if c.in_channels == 0
            || c.out_channels == 0
            || c.kernel.contains(&0)
            || c.stride.contains(&0)
        {
            return Err(NnError::Config(format!(
                "convolution needs positive channels, kernel and stride, got {}→{} kernel {:?} stride {:?}",
                c.in_channels, c.out_channels, c.kernel, c.stride
            )));
        }
        let shape = [c.out_channels, c.in_channels, c.kernel[0], c.kernel[1]];
        crate::init::check_allocatable::<T>(
            &format!("convolution {}→{}: kernels", c.in_channels, c.out_channels),
            &shape,
        )?;
        let fan_in = c.in_channels * c.kernel[0] * c.kernel[1];
        Ok(Self {
            weight: Param::new(c.init.weights(&shape, fan_in, rng), true),
            bias: c
                .bias
                .then(|| Param::new(c.init.biases(c.out_channels), false)),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// Identity ("Dirac") initialisation of the first `min(in, out)` kernels:
    /// kernel `o` is 1 at the centre tap of input slice `o` and 0 elsewhere,
    /// so at the start those output slices copy their input and the layer is
    /// close to the identity (PyTorch's `dirac_` on `weight[:in]`, as
    /// airbench does); the other kernels keep their random draws.
    pub fn dirac(&mut self) {
        let [kh, kw] = self.config.kernel;
        let (cin, cout) = (self.config.in_channels, self.config.out_channels);
        let per_out = cin * kh * kw;
        let w = self.weight.value.data_mut();
        for o in 0..cin.min(cout) {
            let k = &mut w[o * per_out..(o + 1) * per_out];
            k.fill(T::zero());
            k[(o * kh + kh / 2) * kw + kw / 2] = T::one();
        }
    }
}

impl<T: Real> Module<T> for Conv2d<T> {
    fn lower(&self, input: &[usize]) -> Option<Lowered<T>> {
        let [_, h, w] = input else { return None };
        Some(Lowered::Conv {
            weight: self.weight.value.clone(),
            bias: self.bias.as_ref().map(|b| b.value.clone()),
            stride: self.config.stride,
            pad: self.config.pads(*h, *w),
            border: self.config.border,
        })
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "conv {}→{} {}×{}",
            c.in_channels, c.out_channels, c.kernel[0], c.kernel[1]
        );
        if c.stride != [1, 1] {
            s += &format!(" stride {}", c.stride[0]);
            if c.stride[1] != c.stride[0] {
                s += &format!("×{}", c.stride[1]);
            }
        }
        match c.padding {
            Padding::Valid => {}
            Padding::Same => s += " pad same",
            Padding::Uniform(p) => s += &format!(" pad {p}"),
            Padding::Explicit(p) => s += &format!(" pad {p:?}"),
        }
        if c.padding != Padding::Valid && c.border != Border::Zero {
            s += &format!(" ({:?})", c.border).to_lowercase();
        }
        s
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let c = &self.config;
        let [kh, kw] = c.kernel;
        if input.len() != 3 || input[0] != c.in_channels {
            return Err(NnError::InputShape {
                expected: format!("[{}, H, W]", c.in_channels),
                got: input.to_vec(),
            });
        }
        let pad = self.config.pads(input[1], input[2]);
        let sum = |n: usize, a: usize, b: usize| n.checked_add(a).and_then(|v| v.checked_add(b));
        if sum(input[1], pad.top, pad.bottom).is_none()
            || sum(input[2], pad.left, pad.right).is_none()
        {
            return Err(NnError::Config(format!(
                "padding (top {}, bottom {}, left {}, right {}) of a {}×{} slice overflows the image size",
                pad.top, pad.bottom, pad.left, pad.right, input[1], input[2]
            )));
        }
        let (ph, pw) = pad.padded(input[1], input[2]);
        if ph < kh || pw < kw || input[1] == 0 || input[2] == 0 {
            return Err(NnError::InputShape {
                expected: format!(
                    "[{}, H, W] with the padded slice ({ph}×{pw} here) at least the kernel's {kh}×{kw}",
                    c.in_channels
                ),
                got: input.to_vec(),
            });
        }
        let out = |p: usize, k: usize, s: usize| (p - k) / s + 1;
        Ok(vec![
            c.out_channels,
            out(ph, kh, c.stride[0]),
            out(pw, kw, c.stride[1]),
        ])
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, _ctx: &mut Ctx<'_>) -> Result<Var> {
        self.forward_act(tape, x, false, None, None)
    }

    fn forward_relu(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Result<Var>> {
        Some(self.forward_act(tape, x, true, None, None))
    }

    fn forward_slice_stats(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Result<(Var, SliceStats<T>)>> {
        Some(self.forward_stats(tape, x))
    }

    fn forward_folded(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        affine: (&[T], &[T]),
        residual: Option<Var>,
        relu: bool,
    ) -> Option<Result<Var>> {
        let fits = affine.0.len() == self.config.out_channels
            && affine.1.len() == self.config.out_channels;
        (fits && !tape.is_recording())
            .then(|| self.forward_act(tape, x, relu, Some(affine), residual))
    }

    fn params(&self) -> Vec<Named<'_, T>> {
        let mut v = vec![("weight".to_string(), &self.weight)];
        v.extend(self.bias.as_ref().map(|b| ("bias".to_string(), b)));
        v
    }

    fn params_mut(&mut self) -> Vec<NamedMut<'_, T>> {
        let mut v = vec![("weight".to_string(), &mut self.weight)];
        v.extend(self.bias.as_mut().map(|b| ("bias".to_string(), b)));
        v
    }

    fn flops(&self, input: &[usize]) -> u64 {
        let c = &self.config;
        match self.output_shape(input) {
            Ok(o) => {
                (o.iter().product::<usize>() * c.in_channels * c.kernel[0] * c.kernel[1]) as u64
            }
            Err(_) => 0,
        }
    }
}

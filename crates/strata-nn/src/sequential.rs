//! Sequential networks: layers applied in order, with builders for the
//! chapter's unit-per-class classifier and for multilayer perceptrons.

use crate::error::{NnError, Result};
use crate::layers::{Dropout, Linear, Relu};
use crate::lower::Lowered;
use crate::module::{Ctx, Mode, Module, Named, NamedMut};
use rand::Rng;
use strata_autograd::{Real, Tape, Var};
use strata_tensor::Tensor;

/// Layers applied one after another. Layer `i`'s parameters are named
/// `layers.i.<name>`.
pub struct Sequential<T: Real> {
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Real> Default for Sequential<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Real> Sequential<T> {
    /// [`Module::forward`], and when `residual` is given and the layers end
    /// in a convolution → batch norm that folds (evaluation, inference tape),
    /// `relu(· + residual)` fused into that last op: `(y, true)`; otherwise
    /// `(y, false)` with the residual unused.
    pub(crate) fn run(
        &mut self,
        tape: &mut Tape<T>,
        mut x: Var,
        residual: Option<Var>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Var, bool)> {
        let (n, mut summed) = (self.layers.len(), false);
        let mut i = 0;
        while i < self.layers.len() {
            let is_relu = |j: usize| self.layers.get(j).is_some_and(|l| l.is_relu());
            let affine = match (ctx.mode, tape.is_recording()) {
                (Mode::Eval, false) => self.layers.get(i + 1).and_then(|l| l.eval_affine()),
                _ => None,
            };
            // Layers the op at `i` absorbs: ReLU (1), batch norm (1) and its ReLU (2).
            let relu_after = if affine.is_some() {
                is_relu(i + 2)
            } else {
                is_relu(i + 1)
            };
            // In training, a convolution hands the batch norm after it its
            // output slices' statistics terms (one pass over the activations
            // fewer for the batch norm; the same values bit for bit).
            let stats_next = affine.is_none()
                && self
                    .layers
                    .get(i + 1)
                    .is_some_and(|l| l.takes_slice_stats(ctx));
            let relu_after_bn = stats_next && is_relu(i + 2);
            // The last conv → batch norm, with nothing after: add the residual there.
            let res = residual.filter(|_| affine.is_some() && i + 2 == n);
            let l = &mut self.layers[i];
            let name = format!("layers.{i}");
            let mut absorbed = 0;
            let mut slices = None;
            x = ctx
                .scoped(&name, |ctx| {
                    let shape = tape.shape(x)?.to_vec();
                    l.output_shape(shape.get(1..).unwrap_or(&[]))?;
                    if stats_next {
                        if let Some(r) = l.forward_slice_stats(tape, x, ctx) {
                            let (y, st) = r?;
                            slices = Some(st);
                            return Ok(y);
                        }
                    }
                    if let Some((scale, shift)) = &affine {
                        let relu = relu_after || res.is_some();
                        if let Some(y) = l.forward_folded(tape, x, (scale, shift), res, relu) {
                            absorbed = 1 + usize::from(relu_after);
                            summed = res.is_some();
                            return y;
                        }
                    } else if relu_after {
                        if let Some(y) = l.forward_relu(tape, x, ctx) {
                            absorbed = 1;
                            return y;
                        }
                    }
                    l.forward(tape, x, ctx)
                })
                .map_err(|e| e.in_layer(format!("{name} ({})", l.describe())))?;
            let mut relu_after = relu_after;
            if let Some(st) = slices {
                let (j, y) = (i + 1, x);
                let bn = &mut self.layers[j];
                let name = format!("layers.{j}");
                let out = ctx
                    .scoped(&name, |ctx| {
                        bn.forward_from_slice_stats(tape, y, &st, relu_after_bn, ctx)
                    })
                    .transpose()
                    .map_err(|e| e.in_layer(format!("{name} ({})", bn.describe())))?;
                // `takes_slice_stats` promised the fused forward; if it still
                // declines, the batch norm runs on its own at `j`.
                if let Some(y) = out {
                    x = y;
                    absorbed = 1 + usize::from(relu_after_bn);
                    relu_after = relu_after_bn;
                }
            }
            if absorbed > 0 && relu_after {
                let (j, y) = (i + absorbed, x);
                ctx.scoped(&format!("layers.{j}"), |ctx| {
                    crate::layers::record_dead_units(tape, y, ctx)
                })?;
            }
            i += 1 + absorbed;
        }
        Ok((x, summed))
    }

    /// An empty network.
    pub fn new() -> Self {
        Self { layers: Vec::new() }
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Module<T> + 'static) -> &mut Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a boxed layer.
    pub fn push_boxed(&mut self, layer: Box<dyn Module<T>>) -> &mut Self {
        self.layers.push(layer);
        self
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Module<T>>] {
        &self.layers
    }

    /// The unit-per-class classifier of section 12.1: one linear layer whose
    /// `classes` outputs go to the softmax (applied by the loss).
    pub fn softmax_classifier(inputs: usize, classes: usize, rng: &mut impl Rng) -> Result<Self> {
        let mut s = Self::new();
        s.push(Linear::new(inputs, classes, rng)?);
        Ok(s)
    }

    /// A fully connected network with the given layer widths (`sizes[0]`
    /// inputs, `sizes.last()` classes), ReLU between layers and dropout with
    /// probability `dropout` after each hidden ReLU (0 for none).
    pub fn mlp(sizes: &[usize], dropout: f64, rng: &mut impl Rng) -> Result<Self> {
        if sizes.len() < 2 {
            return Err(NnError::Config(format!(
                "an MLP needs at least input and output sizes, got {sizes:?}"
            )));
        }
        let mut s = Self::new();
        for (i, w) in sizes.windows(2).enumerate() {
            s.push(Linear::new(w[0], w[1], rng)?);
            if i + 2 < sizes.len() {
                s.push(Relu);
                if dropout > 0.0 {
                    s.push(Dropout::new(dropout)?);
                }
            }
        }
        Ok(s)
    }

    /// Checks that `input` (per-sample shape) flows through every layer and
    /// returns each layer's path, description and output shape. The error
    /// names the first layer that does not fit, with the shapes.
    pub fn shapes(&self, input: &[usize]) -> Result<Vec<(String, String, Vec<usize>)>> {
        let mut shape = input.to_vec();
        let mut out = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            shape = l
                .output_shape(&shape)
                .map_err(|e| e.in_layer(format!("layers.{i} ({})", l.describe())))?;
            out.push((format!("layers.{i}"), l.describe(), shape.clone()));
        }
        Ok(out)
    }
}

impl<T: Real> Module<T> for Sequential<T> {
    /// Every layer lowered in turn (`None` if one cannot be).
    fn lower(&self, input: &[usize]) -> Option<Lowered<T>> {
        let mut shape = input.to_vec();
        let mut out = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            out.push(l.lower(&shape)?);
            shape = l.output_shape(&shape).ok()?;
        }
        Some(Lowered::Sequence(out))
    }

    fn describe(&self) -> String {
        format!("sequential ({} layers)", self.layers.len())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self
            .shapes(input)?
            .pop()
            .map_or(input.to_vec(), |(_, _, s)| s))
    }

    /// Runs the layers in turn. A layer followed by [`Relu`] that can fuse it
    /// ([`Module::forward_relu`]: batch norm, linear, convolution) runs as one
    /// op; the ReLU layer then only records its dead units, under its own name.
    /// In evaluation on an inference tape, a convolution followed by batch
    /// norm (and ReLU) is one convolution with the batch norm folded into its
    /// kernels ([`Module::forward_folded`]).
    fn forward(&mut self, tape: &mut Tape<T>, x: Var, ctx: &mut Ctx<'_>) -> Result<Var> {
        Ok(self.run(tape, x, None, ctx)?.0)
    }

    fn params(&self) -> Vec<Named<'_, T>> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            out.extend(
                l.params()
                    .into_iter()
                    .map(|(n, p)| (format!("layers.{i}.{n}"), p)),
            );
        }
        out
    }

    fn params_mut(&mut self) -> Vec<NamedMut<'_, T>> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            out.extend(
                l.params_mut()
                    .into_iter()
                    .map(|(n, p)| (format!("layers.{i}.{n}"), p)),
            );
        }
        out
    }

    fn buffers(&self) -> Vec<(String, &Tensor<T>)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            out.extend(
                l.buffers()
                    .into_iter()
                    .map(|(n, b)| (format!("layers.{i}.{n}"), b)),
            );
        }
        out
    }

    fn buffers_mut(&mut self) -> Vec<(String, &mut Tensor<T>)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            out.extend(
                l.buffers_mut()
                    .into_iter()
                    .map(|(n, b)| (format!("layers.{i}.{n}"), b)),
            );
        }
        out
    }

    fn flops(&self, input: &[usize]) -> u64 {
        let mut shape = input.to_vec();
        let mut total = 0;
        for l in &self.layers {
            total += l.flops(&shape);
            match l.output_shape(&shape) {
                Ok(s) => shape = s,
                Err(_) => break,
            }
        }
        total
    }
}

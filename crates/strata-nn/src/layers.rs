//! The fully connected layers of sections 12.1-12.2: Linear, ReLU, Dropout, Flatten.

use crate::error::{NnError, Result};
use crate::init::Init;
use crate::lower::Lowered;
use crate::module::{Ctx, Module, Named, NamedMut};
use rand::Rng;
use strata_autograd::kernels::gemm::{PackedB, Trans};
use strata_autograd::{Param, Real, Tape, Var};

/// A fully connected layer of units: `o = x Wᵀ + b`, one row of `W` (`[out, in]`)
/// per unit, so unit `u` computes `w_uᵀ x + b_u`. The nonlinearity is usually
/// a separate [`Relu`] layer; [`Linear::with_relu`] fuses it into the layer's
/// matrix product instead (same values, one pass fewer over the activations).
///
/// In inference (a tape that does not record) the layer keeps `Wᵀ` packed
/// for the matrix product, keyed on the weights' [`strata_tensor::Tensor::version`],
/// so evaluating many minibatches packs the weights once rather than per
/// minibatch; a recording tape drops that copy.
pub struct Linear<T: Real> {
    /// `[out, in]` weights (L2-penalised).
    pub weight: Param<T>,
    /// `[out]` biases (not penalised).
    pub bias: Param<T>,
    relu: bool,
    /// `Wᵀ` packed, with the weights' version and strides it was packed from.
    packed: Option<(u64, Vec<usize>, PackedB<T>)>,
}

impl<T: Real> Linear<T> {
    /// A layer of `outputs` units over `inputs` features with the default
    /// (He) initialisation.
    pub fn new(inputs: usize, outputs: usize, rng: &mut impl Rng) -> Result<Self> {
        Self::with_init(inputs, outputs, Init::default(), rng)
    }

    /// As [`Linear::new`] with an explicit initialisation.
    pub fn with_init(
        inputs: usize,
        outputs: usize,
        init: Init,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if inputs == 0 || outputs == 0 {
            return Err(NnError::Config(format!(
                "linear layer needs at least one input and one unit, got {inputs}→{outputs}"
            )));
        }
        crate::init::check_allocatable::<T>(
            &format!("linear {inputs}→{outputs}: weights"),
            &[outputs, inputs],
        )?;
        Ok(Self {
            weight: Param::new(init.weights(&[outputs, inputs], inputs, rng), true),
            bias: Param::new(init.biases(outputs), false),
            relu: false,
            packed: None,
        })
    }

    /// `F(x Wᵀ + b)` on the tape (`F` ReLU when `relu`); on an inference
    /// tape with the packed `Wᵀ`, repacked only when the weights or the
    /// matmul precision changed.
    fn apply(&mut self, tape: &mut Tape<T>, x: Var, relu: bool) -> Result<Var> {
        let (w, b) = (tape.param(&self.weight), tape.param(&self.bias));
        if tape.is_recording() {
            // Training: the weights are about to change.
            self.packed = None;
            return Ok(tape.linear(x, w, Some(b), relu)?);
        }
        let wv = &self.weight.value;
        let fresh = self.packed.as_ref().is_some_and(|(v, st, p)| {
            *v == wv.version()
                && st == wv.strides()
                && p.precision() == PackedB::<T>::current_precision()
        });
        if !fresh {
            let (n, k) = (self.outputs(), self.inputs());
            let p = PackedB::new(Trans::Yes, k, n, &wv.to_contiguous_slice(), k);
            self.packed = Some((wv.version(), wv.strides().to_vec(), p));
        }
        let p = &self.packed.as_ref().expect("packed above").2;
        Ok(tape.linear_prepacked(x, w, p, Some(b), relu)?)
    }

    /// The same layer followed by ReLU, `F(u) = max(0, u)`, computed in the
    /// epilogue of its matrix product (replaces a separate [`Relu`] layer).
    pub fn with_relu(mut self) -> Self {
        self.relu = true;
        self
    }

    /// Whether ReLU is fused into this layer.
    pub fn has_relu(&self) -> bool {
        self.relu
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.weight.value.shape()[1]
    }

    /// Number of units.
    pub fn outputs(&self) -> usize {
        self.weight.value.shape()[0]
    }
}

impl<T: Real> Module<T> for Linear<T> {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::Linear {
            weight: self.weight.value.clone(),
            bias: self.bias.value.clone(),
            relu: self.relu,
        })
    }

    fn describe(&self) -> String {
        let act = if self.relu { " + relu" } else { "" };
        format!("linear {}→{}{act}", self.inputs(), self.outputs())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input != [self.inputs()] {
            return Err(NnError::InputShape {
                expected: format!("[{}]", self.inputs()),
                got: input.to_vec(),
            });
        }
        Ok(vec![self.outputs()])
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, ctx: &mut Ctx<'_>) -> Result<Var> {
        let shape = tape.shape(x)?.to_vec();
        self.output_shape(&shape[1.min(shape.len())..])?;
        let y = self.apply(tape, x, self.relu)?;
        if self.relu {
            record_dead_units(tape, y, ctx)?;
        }
        Ok(y)
    }

    fn forward_relu(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Result<Var>> {
        if self.relu {
            // Already followed by its own ReLU: a second one is not this op.
            return None;
        }
        let shape = match tape.shape(x) {
            Ok(s) => s.to_vec(),
            Err(e) => return Some(Err(e.into())),
        };
        Some(
            self.output_shape(&shape[1.min(shape.len())..])
                .and_then(|_| self.apply(tape, x, true)),
        )
    }

    fn params(&self) -> Vec<Named<'_, T>> {
        vec![("weight".into(), &self.weight), ("bias".into(), &self.bias)]
    }

    fn params_mut(&mut self) -> Vec<NamedMut<'_, T>> {
        vec![
            ("weight".into(), &mut self.weight),
            ("bias".into(), &mut self.bias),
        ]
    }

    fn flops(&self, _input: &[usize]) -> u64 {
        (self.inputs() * self.outputs()) as u64
    }
}

/// ReLU, `F(u) = max(0, u)`, applied to every unit. Records dead units when
/// the context carries a monitor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

impl<T: Real> Module<T> for Relu {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::Relu)
    }

    fn describe(&self) -> String {
        "relu".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, ctx: &mut Ctx<'_>) -> Result<Var> {
        let y = tape.relu(x)?;
        record_dead_units(tape, y, ctx)?;
        Ok(y)
    }

    fn is_relu(&self) -> bool {
        true
    }
}

/// GELU in its tanh form, `F(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))`,
/// applied to every unit (airbench's activation).
#[derive(Clone, Copy, Debug, Default)]
pub struct Gelu;

impl<T: Real> Module<T> for Gelu {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::Gelu)
    }

    fn describe(&self) -> String {
        "gelu".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, _ctx: &mut Ctx<'_>) -> Result<Var> {
        Ok(tape.gelu(x)?)
    }
}

/// Multiplies its input by a fixed factor (airbench's `1/9` on the logits,
/// which sets the softmax's temperature without a trained parameter).
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// The factor.
    pub factor: f64,
}

impl<T: Real> Module<T> for Scale {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::Scale(self.factor))
    }

    fn describe(&self) -> String {
        format!("scale ×{}", self.factor)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, _ctx: &mut Ctx<'_>) -> Result<Var> {
        Ok(tape.scale(x, T::of(self.factor))?)
    }
}

/// Feeds ReLU outputs `y` to the context's dead-unit monitor, if any.
pub(crate) fn record_dead_units<T: Real>(tape: &Tape<T>, y: Var, ctx: &mut Ctx<'_>) -> Result<()> {
    if ctx.monitor.is_some() {
        let path = ctx.path();
        let v = tape.value(y)?;
        let batch = v.shape().first().copied().unwrap_or(1);
        if let Some(m) = ctx.monitor.as_deref_mut() {
            m.record(&path, &v.to_contiguous_slice(), batch);
        }
    }
    Ok(())
}

/// Inverted dropout with drop probability `p` (section 12.2.5): active only in
/// [`crate::Mode::Train`]. Can be applied to inputs as well as hidden units.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    /// Dropout dropping each unit with probability `p ∈ [0, 1)`.
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(NnError::Config(format!(
                "dropout probability p = {p} is outside [0, 1)"
            )));
        }
        Ok(Self { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }
}

impl<T: Real> Module<T> for Dropout {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::Identity)
    }

    fn describe(&self) -> String {
        format!("dropout p={}", self.p)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, ctx: &mut Ctx<'_>) -> Result<Var> {
        let train = ctx.train();
        match ctx.next_item_streams() {
            Some((seed, first)) => Ok(tape.dropout_items(x, self.p, train, seed, first)?),
            None => Ok(tape.dropout(x, self.p, train, ctx.rng)?),
        }
    }
}

/// Flattens each sample to a vector: `[N, C, H, W] → [N, C·H·W]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl<T: Real> Module<T> for Flatten {
    fn lower(&self, _input: &[usize]) -> Option<Lowered<T>> {
        Some(Lowered::Flatten)
    }

    fn describe(&self) -> String {
        "flatten".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![input.iter().product()])
    }

    fn forward(&mut self, tape: &mut Tape<T>, x: Var, _ctx: &mut Ctx<'_>) -> Result<Var> {
        Ok(tape.flatten(x)?)
    }
}

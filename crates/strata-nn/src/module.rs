//! The module interface, the explicit train/eval mode and the forward context.

use crate::error::Result;
use crate::monitor::DeadUnits;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::Arc;
use strata_autograd::ops::batchnorm::BatchSum;
use strata_autograd::{Param, Real, Tape, Var};
use strata_tensor::Tensor;

/// Whether a forward pass is for training or for evaluation. Dropout and batch
/// norm behave differently in the two; the mode is always passed explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: dropout drops, batch statistics are used and tracked.
    Train,
    /// Evaluation: dropout is the identity, running statistics are used.
    Eval,
}

/// What a forward pass needs besides the input: the mode, the random source
/// for dropout, and optionally a dead-unit monitor.
pub struct Ctx<'a> {
    /// Training or evaluation.
    pub mode: Mode,
    /// Random source (dropout masks). Seeded by the caller for reproducibility.
    pub rng: &'a mut Xoshiro256PlusPlus,
    /// When set, ReLU layers record which of their units were ever active.
    pub monitor: Option<&'a mut DeadUnits>,
    /// `(seed, first item)` when dropout draws each item's mask from its own
    /// stream ([`Ctx::with_item_streams`]), and the number of dropout layers run.
    items: Option<(u64, u64)>,
    draws: u64,
    scope: Vec<String>,
    /// When set, batch norm in training adds its statistics over the
    /// processes sharing the minibatch (synchronised batch norm).
    pub batch_sum: Option<Arc<dyn BatchSum>>,
}

impl<'a> Ctx<'a> {
    /// A context in `mode` drawing randomness from `rng`.
    pub fn new(mode: Mode, rng: &'a mut Xoshiro256PlusPlus) -> Self {
        Self {
            mode,
            rng,
            monitor: None,
            items: None,
            draws: 0,
            scope: Vec::new(),
            batch_sum: None,
        }
    }

    /// Batch norm layers normalise by the statistics of the whole minibatch
    /// that `sum` adds up over processes, not by this process's share
    /// ([`strata_autograd::Tape::batch_norm_train_synced`]).
    pub fn with_batch_sum(mut self, sum: Arc<dyn BatchSum>) -> Self {
        self.batch_sum = Some(sum);
        self
    }

    /// Dropout draws the mask of batch item `b` from a stream of its own,
    /// seeded by `seed`, the item's position `first_item + b` and the dropout
    /// layer's place in the pass, instead of from [`Ctx::rng`]: the masks are
    /// then the same whether a minibatch runs in one process or is split
    /// across several.
    pub fn with_item_streams(mut self, seed: u64, first_item: u64) -> Self {
        self.items = Some((seed, first_item));
        self
    }

    /// For a dropout layer: `(seed, first item)` of its item streams (each
    /// call a new seed), or `None` to draw from [`Ctx::rng`].
    pub fn next_item_streams(&mut self) -> Option<(u64, u64)> {
        let (seed, first) = self.items?;
        self.draws += 1;
        Some((seed ^ self.draws.wrapping_mul(0xd134_2543_de82_ef95), first))
    }

    /// Also records dead units into `monitor`.
    pub fn with_monitor(mut self, monitor: &'a mut DeadUnits) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Whether this is a training pass.
    pub fn train(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The dotted path of the layer currently running (e.g. `layers.3`).
    pub fn path(&self) -> String {
        self.scope.join(".")
    }

    /// Runs `f` with `name` appended to the layer path.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.scope.push(name.to_string());
        let r = f(self);
        self.scope.pop();
        r
    }
}

/// A named parameter, as listed by [`Module::params`].
pub type Named<'a, T> = (String, &'a Param<T>);
/// A mutable named parameter, as listed by [`Module::params_mut`].
pub type NamedMut<'a, T> = (String, &'a mut Param<T>);

/// Per-slice batch norm terms of a `[N, C, …]` activation, entry `i·C + c`:
/// each slice's mean and sum of squared deviations about it
/// (as [`strata_autograd::Tape::conv2d_slice_stats`] gives them).
pub type SliceStats<T> = Vec<(T, T)>;

/// A layer or a network of layers.
pub trait Module<T: Real>: Send {
    /// Short description of the layer, e.g. `linear 784→1024`.
    fn describe(&self) -> String;

    /// What the layer computes in evaluation mode, as data
    /// ([`crate::Lowered`]) for exporters, given its per-sample input shape;
    /// `None` (the default) for a layer that cannot be described so.
    fn lower(&self, _input: &[usize]) -> Option<crate::Lowered<T>> {
        None
    }

    /// Per-sample output shape for a per-sample input shape (batch axis
    /// excluded), or an error saying what input the layer expects. Used to
    /// validate a network before any data flows.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Records the layer's computation on `tape`. `x` has a leading batch axis.
    fn forward(&mut self, tape: &mut Tape<T>, x: Var, ctx: &mut Ctx<'_>) -> Result<Var>;

    /// Parameters with stable dotted names (e.g. `layers.0.weight`).
    fn params(&self) -> Vec<Named<'_, T>> {
        Vec::new()
    }

    /// Mutable parameters with the same names as [`Module::params`].
    fn params_mut(&mut self) -> Vec<NamedMut<'_, T>> {
        Vec::new()
    }

    /// Multiply-accumulate count per sample for a per-sample input shape.
    fn flops(&self, _input: &[usize]) -> u64 {
        0
    }

    /// Non-trained state a checkpoint must carry (batch norm's running
    /// statistics), with dotted names like [`Module::params`].
    fn buffers(&self) -> Vec<(String, &Tensor<T>)> {
        Vec::new()
    }

    /// Mutable buffers with the same names as [`Module::buffers`].
    fn buffers_mut(&mut self) -> Vec<(String, &mut Tensor<T>)> {
        Vec::new()
    }

    /// Whether this layer is a plain ReLU (which [`Module::forward_relu`] of
    /// the layer before it may absorb).
    fn is_relu(&self) -> bool {
        false
    }

    /// This layer followed by ReLU as one fused op, if the layer can fuse it
    /// (same values as `forward` then ReLU, one pass over the activations
    /// fewer each way); `None` when it cannot, and then nothing is recorded.
    /// [`crate::Sequential`] uses it for a layer followed by [`crate::Relu`].
    fn forward_relu(
        &mut self,
        _tape: &mut Tape<T>,
        _x: Var,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Result<Var>> {
        None
    }

    /// In training, this layer's output together with every output slice's
    /// batch norm terms ([`strata_autograd::Tape::conv2d_slice_stats`], entry
    /// `i·C + o`), taken while each slice is in cache; `None` when the layer
    /// cannot, and then nothing is recorded. [`crate::Sequential`] uses it
    /// for a convolution followed by a layer that
    /// [`Module::takes_slice_stats`].
    fn forward_slice_stats(
        &mut self,
        _tape: &mut Tape<T>,
        _x: Var,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Result<(Var, SliceStats<T>)>> {
        None
    }

    /// Whether [`Module::forward_from_slice_stats`] would run for this
    /// context (batch norm in training on one process).
    fn takes_slice_stats(&self, _ctx: &Ctx<'_>) -> bool {
        false
    }

    /// This layer (then ReLU when `relu`) on `x`, given `x`'s per-slice batch
    /// norm terms: the same values as [`Module::forward`] (or
    /// [`Module::forward_relu`]), bit for bit, without the pass over `x` for
    /// its statistics. `None` when the layer does not take them.
    fn forward_from_slice_stats(
        &mut self,
        _tape: &mut Tape<T>,
        _x: Var,
        _slices: &[(T, T)],
        _relu: bool,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Result<Var>> {
        None
    }

    /// In evaluation, the per-slice affine map `y = scale ⊙ x + shift` this
    /// layer computes (batch norm with its running statistics), for the
    /// layer before it to fold in; `None` for other layers.
    fn eval_affine(&self) -> Option<(Vec<T>, Vec<T>)> {
        None
    }

    /// This layer followed by the per-output-slice affine map
    /// `scale ⊙ · + shift` (then `+ residual` when given, then ReLU when
    /// `relu`) as one op, with the map folded into the layer's weights — no
    /// pass over the activations for it. Only on a tape that does not record
    /// (inference: the folded weights are constants); `None` when the layer
    /// cannot fold. [`crate::Sequential`] uses it for a convolution followed
    /// by batch norm in evaluation, and [`crate::Residual`] to add the
    /// shortcut in the same op.
    fn forward_folded(
        &mut self,
        _tape: &mut Tape<T>,
        _x: Var,
        _affine: (&[T], &[T]),
        _residual: Option<Var>,
        _relu: bool,
    ) -> Option<Result<Var>> {
        None
    }
}

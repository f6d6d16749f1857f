//! The tape: a define-by-run record of coarse ops, walked backwards to
//! accumulate vector-Jacobian products.
//!
//! Section 12.2.2 writes backpropagation as the recursion
//! `v^{i−1} = v^i 𝒥_{x^{i+1}; x^i}`, `∇_{θ^{i−1}} E = v^{i−1} 𝒥_{x^i; θ^{i−1}}`.
//! Each op on the tape implements exactly one step of it — given `v` (the
//! gradient of the loss with respect to the op's output) it returns `v 𝒥` for
//! each input — so no Jacobian is ever formed.

use crate::error::{AutogradError, Result};
use crate::param::{Param, ParamId};
use crate::profile::Profiler;
use crate::Real;
use std::collections::HashMap;
use std::time::Instant;
use strata_tensor::Tensor;

/// A value on a [`Tape`]: an index, cheap to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

impl Var {
    /// Position of this variable on its tape.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One step of the backward recursion for an op: maps the gradient with
/// respect to the op's output to gradients with respect to its inputs.
pub trait Backward<T: Real>: Send + Sync {
    /// `inputs` are the op's input values, `output` its value and `grad` the
    /// gradient of the loss with respect to `output`. Returns one entry per
    /// input; entries whose `needs[i]` is false may be `None`.
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>>;
}

struct Node<T: Real> {
    value: Tensor<T>,
    inputs: Vec<usize>,
    backward: Option<Box<dyn Backward<T>>>,
    requires_grad: bool,
    /// The op's kind for the profile (a compile-time type name, free to keep).
    kind: &'static str,
}

/// A define-by-run computation record.
///
/// Build one per training step: put the minibatch on it with [`Tape::input`],
/// the layer parameters with [`Tape::param`], apply ops, then call
/// [`Tape::backward`] on the scalar loss. Dropping the tape frees every
/// intermediate buffer, so memory stays flat over many steps.
///
/// A tape made with [`Tape::inference`] records no backward information (no
/// masks, no saved inputs for gradients): use it for evaluation.
pub struct Tape<T: Real> {
    nodes: Vec<Node<T>>,
    params: Vec<(ParamId, usize)>,
    recording: bool,
    /// Per-op timing: the profiler and when the previous value was pushed.
    profile: Option<(Profiler, Instant)>,
}

impl<T: Real> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Real> Tape<T> {
    /// A tape that records ops for `backward` (training mode).
    ///
    /// The first tape of a process also makes the allocator keep freed
    /// memory for the next step ([`strata_kernels::memory::retain_freed_memory`]).
    pub fn new() -> Self {
        strata_kernels::memory::retain_freed_memory();
        Self {
            nodes: Vec::new(),
            params: Vec::new(),
            recording: true,
            profile: None,
        }
    }

    /// A tape that records nothing for `backward` (no-grad / inference mode).
    pub fn inference() -> Self {
        Self {
            recording: false,
            ..Self::new()
        }
    }

    /// Accumulates the wall time of every op of this tape, forward and
    /// backward, by op kind into `profiler`. Off by default; when off the
    /// only cost is one branch per op.
    pub fn with_profiler(mut self, profiler: Profiler) -> Self {
        self.profile = Some((profiler, Instant::now()));
        self
    }

    /// Whether ops are recorded for `backward`.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of values on the tape.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tape holds no values.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Puts a constant (data, targets) on the tape: no gradient is computed for it.
    pub fn input(&mut self, value: Tensor<T>) -> Var {
        self.push_leaf(value, false)
    }

    /// Puts a tensor on the tape whose gradient `backward` should compute.
    pub fn leaf(&mut self, value: Tensor<T>) -> Var {
        let rg = self.recording;
        self.push_leaf(value, rg)
    }

    /// Puts a parameter on the tape (a cheap view of its value); after
    /// `backward`, [`Gradients::param`] finds its gradient by [`Param::id`].
    /// A [`Param::frozen`] parameter goes on as a constant: no gradient.
    pub fn param(&mut self, p: &Param<T>) -> Var {
        if p.frozen {
            return self.input(p.value.clone());
        }
        let v = self.leaf(p.value.clone());
        if self.recording {
            self.params.push((p.id(), v.0));
        }
        v
    }

    fn push_leaf(&mut self, value: Tensor<T>, requires_grad: bool) -> Var {
        if let Some((_, mark)) = &mut self.profile {
            *mark = Instant::now();
        }
        self.nodes.push(Node {
            value,
            inputs: Vec::new(),
            backward: None,
            requires_grad,
            kind: "leaf",
        });
        Var(self.nodes.len() - 1)
    }

    /// The value of a variable.
    pub fn value(&self, v: Var) -> Result<&Tensor<T>> {
        self.nodes
            .get(v.0)
            .map(|n| &n.value)
            .ok_or(AutogradError::UnknownVar(v.0))
    }

    /// The shape of a variable's value.
    pub fn shape(&self, v: Var) -> Result<&[usize]> {
        Ok(self.value(v)?.shape())
    }

    /// Whether a gradient flows to `v`.
    pub fn requires_grad(&self, v: Var) -> Result<bool> {
        self.nodes
            .get(v.0)
            .map(|n| n.requires_grad)
            .ok_or(AutogradError::UnknownVar(v.0))
    }

    /// Records the result of an op. `make_backward` is only called when the
    /// tape records and some input needs a gradient, so ops keep masks and
    /// indices only when they will be used.
    ///
    /// With a profiler attached, the op's forward time is the wall time since
    /// the previous value was put on the tape (its computation plus any layer
    /// code before it), filed under the name of the function that called
    /// `push_op` (e.g. `matmul`).
    pub fn push_op<F: FnOnce() -> Box<dyn Backward<T>>>(
        &mut self,
        inputs: &[Var],
        value: Tensor<T>,
        make_backward: F,
    ) -> Result<Var> {
        // The closure's type name is the calling op's path: a constant.
        let kind = std::any::type_name::<F>();
        if let Some((p, mark)) = &mut self.profile {
            let now = Instant::now();
            p.add_forward(kind, now - *mark);
            *mark = now;
        }
        for v in inputs {
            if v.0 >= self.nodes.len() {
                return Err(AutogradError::UnknownVar(v.0));
            }
        }
        let requires_grad = self.recording && inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        let (backward, inputs) = if requires_grad {
            (Some(make_backward()), inputs.iter().map(|v| v.0).collect())
        } else {
            (None, Vec::new())
        };
        self.nodes.push(Node {
            value,
            inputs,
            backward,
            requires_grad,
            kind,
        });
        Ok(Var(self.nodes.len() - 1))
    }

    /// Backpropagation from the scalar `loss`: walks the tape in reverse,
    /// accumulating `v 𝒥` into every input that needs a gradient.
    pub fn backward(&self, loss: Var) -> Result<Gradients<T>> {
        let n = self
            .nodes
            .get(loss.0)
            .ok_or(AutogradError::UnknownVar(loss.0))?;
        if !self.recording {
            return Err(AutogradError::Backward(
                "this tape was recorded in inference mode".into(),
            ));
        }
        if n.value.numel() != 1 {
            return Err(AutogradError::Backward(format!(
                "the loss must be a scalar, got shape {:?}",
                n.value.shape()
            )));
        }
        let mut grads: Vec<Option<Tensor<T>>> = (0..=loss.0).map(|_| None).collect();
        grads[loss.0] = Some(Tensor::full(n.value.shape(), T::one()));
        for i in (0..=loss.0).rev() {
            let node = &self.nodes[i];
            let Some(bw) = &node.backward else { continue };
            // Take this node's gradient: nothing downstream needs it any more.
            let Some(g) = grads[i].take() else { continue };
            let start = self.profile.as_ref().map(|_| Instant::now());
            let inputs: Vec<&Tensor<T>> =
                node.inputs.iter().map(|&j| &self.nodes[j].value).collect();
            let needs: Vec<bool> = node
                .inputs
                .iter()
                .map(|&j| self.nodes[j].requires_grad)
                .collect();
            let input_grads = bw.backward(&inputs, &node.value, &g, &needs)?;
            for ((&j, gi), need) in node.inputs.iter().zip(input_grads).zip(needs) {
                let Some(gi) = gi else { continue };
                if !need {
                    continue;
                }
                accumulate(&mut grads[j], gi);
            }
            if let (Some((p, _)), Some(t)) = (&self.profile, start) {
                p.add_backward(node.kind, t.elapsed());
            }
        }
        // A parameter put on the tape more than once (shared weights) gets the
        // sum of the gradients of all its uses.
        let mut params: HashMap<ParamId, Tensor<T>> = HashMap::new();
        for &(id, v) in &self.params {
            if let Some(g) = grads.get(v).and_then(|g| g.clone()) {
                let mut slot = params.remove(&id);
                accumulate(&mut slot, g);
                params.extend(slot.map(|s| (id, s)));
            }
        }
        Ok(Gradients { grads, params })
    }
}

/// Adds `g` into the gradient slot (sum over all consumers of a value).
fn accumulate<T: Real>(slot: &mut Option<Tensor<T>>, g: Tensor<T>) {
    match slot {
        None => *slot = Some(g),
        Some(acc) => {
            strata_kernels::elementwise::add_assign(acc.data_mut(), &g.to_contiguous_slice())
        }
    }
}

/// Gradients computed by [`Tape::backward`].
pub struct Gradients<T: Real> {
    grads: Vec<Option<Tensor<T>>>,
    params: HashMap<ParamId, Tensor<T>>,
}

impl<T: Real> Gradients<T> {
    /// The gradient of the loss with respect to a leaf `v` (None if none flowed).
    pub fn get(&self, v: Var) -> Option<&Tensor<T>> {
        self.grads.get(v.0).and_then(|g| g.as_ref())
    }

    /// The gradient with respect to a parameter put on the tape with
    /// [`Tape::param`] (summed over its uses).
    pub fn param(&self, id: ParamId) -> Option<&Tensor<T>> {
        self.params.get(&id)
    }
}

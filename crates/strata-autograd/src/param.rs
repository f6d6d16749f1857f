//! Trainable parameters: a tensor with a process-unique identity.

use std::sync::atomic::{AtomicU64, Ordering};
use strata_tensor::{Element, Tensor};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Identity of a [`Param`], used to find its gradient after `backward`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(u64);

/// A trainable tensor. Layers own their `Param`s; each forward pass brings them
/// onto the tape with [`crate::Tape::param`].
#[derive(Clone)]
pub struct Param<T: Element> {
    id: ParamId,
    /// Current value.
    pub value: Tensor<T>,
    /// Whether the L2 penalty (weight decay) applies: true for weights, false
    /// for biases and batch-norm shifts/scales, as the chapter penalises `wᵀw` only.
    pub decay: bool,
    /// Whether the optimiser leaves this parameter as it is (a fixed layer
    /// such as the patch-whitening convolution, or batch norm's scale `γ`
    /// held at 1). It still takes part in the forward pass.
    pub frozen: bool,
}

impl<T: Element> Param<T> {
    /// A new parameter with a fresh identity.
    pub fn new(value: Tensor<T>, decay: bool) -> Self {
        Self {
            id: ParamId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            value,
            decay,
            frozen: false,
        }
    }

    /// This parameter's identity.
    pub fn id(&self) -> ParamId {
        self.id
    }
}

impl<T: Element> std::fmt::Debug for Param<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Param")
            .field("id", &self.id)
            .field("value", &self.value)
            .field("decay", &self.decay)
            .field("frozen", &self.frozen)
            .finish()
    }
}

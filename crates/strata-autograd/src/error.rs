//! Errors of graph operations: shapes that do not fit an op, bad labels, bad
//! probabilities, misuse of the tape.

use strata_tensor::ShapeError;
use thiserror::Error;

/// What went wrong while recording or differentiating a graph.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AutogradError {
    /// An operand's shape does not fit the op.
    #[error("{op}: {what} (shapes {shapes:?})")]
    Shape {
        /// The op that refused its operands.
        op: &'static str,
        /// What was expected, in words.
        what: String,
        /// Operand shapes, in argument order.
        shapes: Vec<Vec<usize>>,
    },
    /// A class label is not smaller than the number of classes.
    #[error("{op}: label {label} at row {row} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The op.
        op: &'static str,
        /// Offending label.
        label: usize,
        /// Its row in the minibatch.
        row: usize,
        /// Number of classes (logit columns).
        classes: usize,
    },
    /// A dropout probability outside `[0, 1)`.
    #[error("dropout: probability p = {p} is outside [0, 1)")]
    BadProbability {
        /// The probability given.
        p: f64,
    },
    /// A label-smoothing `ε` outside `[0, 1)`.
    #[error("softmax_cross_entropy: label smoothing ε = {smoothing} is outside [0, 1)")]
    BadSmoothing {
        /// The `ε` given.
        smoothing: f64,
    },
    /// `backward` was asked of a tape recorded in inference mode, or of a non-scalar.
    #[error("backward: {0}")]
    Backward(String),
    /// A [`crate::Var`] from another tape (or out of range).
    #[error("variable #{0} does not belong to this tape")]
    UnknownVar(usize),
    /// A shape error from the tensor layer.
    #[error(transparent)]
    Tensor(#[from] ShapeError),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, AutogradError>;

/// Shorthand for a [`AutogradError::Shape`].
pub(crate) fn shape_err(
    op: &'static str,
    what: impl Into<String>,
    shapes: &[&[usize]],
) -> AutogradError {
    AutogradError::Shape {
        op,
        what: what.into(),
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
    }
}

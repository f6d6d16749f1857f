//! Shape errors: every shape problem at the public API is a value, never a panic.

use thiserror::Error;

/// What went wrong with shapes, indices or element counts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShapeError {
    /// The number of elements given does not match the product of the shape.
    #[error("{context}: {got} elements do not fill shape {shape:?} ({expected} elements)")]
    ElementCount {
        /// Which operation noticed the mismatch.
        context: &'static str,
        /// The requested shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// An axis index is not smaller than the tensor's rank.
    #[error("{context}: axis {axis} is out of range for a tensor of rank {rank}")]
    AxisOutOfRange {
        /// Which operation noticed the problem.
        context: &'static str,
        /// Axis asked for.
        axis: usize,
        /// Rank of the tensor.
        rank: usize,
    },
    /// A permutation is not a permutation of `0..rank`.
    #[error("permute: {perm:?} is not a permutation of the {rank} axes")]
    BadPermutation {
        /// The permutation given.
        perm: Vec<usize>,
        /// Rank of the tensor.
        rank: usize,
    },
    /// A range along an axis does not lie within the axis.
    #[error("{context}: range {start}..{end} does not fit axis {axis} of length {len}")]
    RangeOutOfBounds {
        /// Which operation noticed the problem.
        context: &'static str,
        /// The axis sliced.
        axis: usize,
        /// Start of the range.
        start: usize,
        /// End of the range (exclusive).
        end: usize,
        /// Length of the axis.
        len: usize,
    },
    /// A multi-index does not lie inside the tensor.
    #[error("index {index:?} is out of bounds for shape {shape:?}")]
    IndexOutOfBounds {
        /// The index given.
        index: Vec<usize>,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// Two shapes that must agree do not.
    #[error("{context}: shapes {left:?} and {right:?} are incompatible")]
    Mismatch {
        /// Which operation noticed the problem.
        context: &'static str,
        /// First shape.
        left: Vec<usize>,
        /// Second shape.
        right: Vec<usize>,
    },
    /// An operation needs at least one tensor.
    #[error("{context}: no tensors given")]
    Empty {
        /// Which operation noticed the problem.
        context: &'static str,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, ShapeError>;

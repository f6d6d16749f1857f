//! The ops: each file holds one op's forward (a `Tape` method), its backward
//! (a [`crate::Backward`] impl) and the formula.

pub mod add;
pub mod batchnorm;
pub mod bias;
pub mod conv2d;
pub mod dropout;
pub mod gelu;
pub mod linear;
pub mod loss;
pub mod matmul;
pub mod pad;
pub mod penalty;
pub mod pool;
pub mod reduce;
pub mod relu;
pub mod reshape;

use strata_tensor::Tensor;

/// A new contiguous tensor from a buffer known to match `shape`.
pub(crate) fn tensor<T: crate::Real>(data: Vec<T>, shape: &[usize]) -> Tensor<T> {
    Tensor::from_vec(data, shape).expect("op output buffer sized from its shape")
}

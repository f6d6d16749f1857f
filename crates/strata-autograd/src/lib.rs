//! # strata-autograd
//!
//! A define-by-run tape of coarse ops over [`strata_tensor::Tensor`], each with
//! a hand-written backward pass computing a vector-Jacobian product (section
//! 12.2.2's recursion `v^{i−1} = v^i 𝒥`, never a materialised Jacobian), and
//! numerical gradient checking in f64.
//!
//! ```
//! use strata_autograd::{Tape, Param};
//! use strata_kernels::gemm::Trans;
//! use strata_tensor::Tensor;
//!
//! // One unit-per-class classifier step: logits = x Wᵀ + b, softmax cross-entropy.
//! let w = Param::new(Tensor::<f32>::from_vec(vec![0.1, -0.2, 0.3, 0.4], &[2, 2])?, true);
//! let b = Param::new(Tensor::<f32>::zeros(&[2]), false);
//! let mut tape = Tape::new();
//! let x = tape.input(Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?);
//! let (wv, bv) = (tape.param(&w), tape.param(&b));
//! let h = tape.matmul(x, wv, Trans::No, Trans::Yes)?;
//! let logits = tape.add_bias(h, bv)?;
//! let loss = tape.softmax_cross_entropy(logits, &[1])?;
//! let grads = tape.backward(loss)?;
//! assert_eq!(grads.param(w.id()).unwrap().shape(), &[2, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod error;
pub mod gradcheck;
pub mod ops;
mod param;
pub mod profile;
mod tape;

pub use error::{AutogradError, Result};
pub use param::{Param, ParamId};
pub use profile::Profiler;
pub use strata_kernels as kernels;
pub use tape::{Backward, Gradients, Tape, Var};

/// Element types the graph works over (f32, f64): anything with a GEMM.
pub trait Real: strata_kernels::gemm::GemmScalar {}
impl<T: strata_kernels::gemm::GemmScalar> Real for T {}

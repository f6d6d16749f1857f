//! # strata-autograd
//!
//! A define-by-run tape of coarse ops over [`strata_tensor::Tensor`], each with
//! a hand-written backward pass computing a vector-Jacobian product (section
//! 12.2.2's recursion `v^{i−1} = v^i 𝒥`, never a materialised Jacobian), and
//! numerical gradient checking in f64.
//!
//! A tape, a small function, backward, and a gradient check
//! ([`gradcheck::check_gradients`]):
//!
//! ```rust
//! use strata_autograd::gradcheck::{check_gradients, GradCheckOptions};
//! use strata_autograd::{Tape, Var};
//! use strata_tensor::Tensor;
//!
//! // The function: mean softmax cross-entropy of the logits x Wᵀ + b, v = [x, W, b].
//! fn loss(tape: &mut Tape<f64>, v: &[Var]) -> strata_autograd::Result<Var> {
//!     let logits = tape.linear(v[0], v[1], Some(v[2]), false)?;
//!     tape.softmax_cross_entropy(logits, &[2, 0])
//! }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let x = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.1, 0.3, -0.7], &[2, 3])?; // 2 samples
//! let w = Tensor::from_vec((0..9).map(|i| 0.1 * i as f64 - 0.4).collect(), &[3, 3])?; // 3 classes
//! let b = Tensor::<f64>::zeros(&[3]);
//! let mut tape = Tape::new();
//! let v = [tape.leaf(x.clone()), tape.leaf(w.clone()), tape.leaf(b.clone())];
//! let y = loss(&mut tape, &v)?;
//! let grads = tape.backward(y)?;
//! // ∂E/∂b is the row mean of softmax − one-hot: its entries sum to 0.
//! assert!(grads.get(v[2]).unwrap().to_vec().iter().sum::<f64>().abs() < 1e-12);
//! // Backprop against central differences in f64, entry by entry.
//! let reports = check_gradients(&[("x", x), ("w", w), ("b", b)], loss, &GradCheckOptions::default())?;
//! assert!(reports.iter().all(|r| r.checked > 0 && r.max_rel_error < 1e-6));
//! # Ok(()) }
//! ```
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

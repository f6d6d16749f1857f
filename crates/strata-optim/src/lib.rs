//! # strata-optim
//!
//! Minibatch gradient descent and the gradient-scaling tricks of section
//! 12.2.4 — momentum, Adagrad, RMSprop — plus Adam and AdamW, with the
//! chapter's L2 penalty on weights and learning-rate schedules including
//! `η = 1/(a + b·e(n))`. All rules share one [`Optimizer`]: state handling,
//! the penalty and the schedule are written once.
//!
//! An optimiser step on a parameter, its gradient from a tape:
//!
//! ```rust
//! use strata_autograd::{Param, Tape};
//! use strata_optim::{Method, Optimizer, Schedule};
//! use strata_tensor::Tensor;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // E(w) = ½‖w‖² (the L2 penalty with λ = 1), so ∇E = w. Plain SGD under the
//! // chapter's schedule η = 1/(a + b·epoch): 0.5 in epoch 0, 0.25 in epoch 1.
//! let mut w = Param::new(Tensor::<f64>::from_vec(vec![4.0, -2.0], &[2])?, true);
//! let mut opt = Optimizer::new(Method::Sgd, 0.0, Schedule::InverseEpoch { a: 2.0, b: 2.0 })?;
//! for epoch in 0..2 {
//!     let mut tape = Tape::new();
//!     let wv = tape.param(&w);
//!     let loss = tape.l2_penalty(&[wv], 1.0)?;
//!     let grads = tape.backward(loss)?;
//!     drop(tape); // the tape's view of w goes, so the update is in place
//!     let lr = opt.step([("w".to_string(), &mut w)], |p| grads.param(p.id()).cloned(), epoch)?;
//!     assert_eq!(lr, 1.0 / (2.0 + 2.0 * epoch as f64));
//! }
//! assert_eq!(w.value.to_vec(), vec![1.5, -0.75]); // w · (1 − 0.5) · (1 − 0.25)
//! assert_eq!(opt.steps(), 2);
//! # Ok(()) }
//! ```
//!
//! ```
//! use strata_autograd::Param;
//! use strata_optim::{Method, Optimizer, Schedule};
//! use strata_tensor::Tensor;
//!
//! let mut w = Param::new(Tensor::<f64>::from_vec(vec![1.0, -2.0], &[2])?, true);
//! let mut opt = Optimizer::new(Method::Momentum { mu: 0.9 }, 0.0, Schedule::Constant { lr: 0.1 })?;
//! // Gradient of ½‖w‖² is w itself.
//! let grad = |p: &Param<f64>| Some(p.value.clone());
//! opt.step([("w".to_string(), &mut w)], grad, 0)?;
//! assert_eq!(w.value.to_vec(), vec![0.9, -1.8]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod optimizer;
mod schedule;

pub use optimizer::{Lookahead, Method, OptimError, Optimizer, ParamGroup};
pub use schedule::Schedule;

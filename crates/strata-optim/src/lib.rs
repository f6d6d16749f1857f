//! # strata-optim
//!
//! Minibatch gradient descent and the gradient-scaling tricks of section
//! 12.2.4 — momentum, Adagrad, RMSprop — plus Adam and AdamW, with the
//! chapter's L2 penalty on weights and learning-rate schedules including
//! `η = 1/(a + b·e(n))`. All rules share one [`Optimizer`]: state handling,
//! the penalty and the schedule are written once.
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

//! # strata
//!
//! A deep-learning training library for the CPU, built as layered crates that
//! can also be used one by one:
//!
//! | crate | holds |
//! | --- | --- |
//! | [`tensor`] | `Tensor<T>`, views, shape errors |
//! | [`kernels`] | GEMM, elementwise, reductions, softmax, optimiser updates |
//! | [`autograd`] | the tape, ops with hand-written backward passes, gradient checking |
//! | [`nn`] | layers with named parameters, initialisation, dead units |
//! | [`optim`] | SGD, momentum, Adagrad, RMSprop, Adam(W), schedules |
//! | [`data`] | data set readers, validation splits, minibatches |
//!
//! This facade re-exports them so `strata = …` is enough for most programs.

#![warn(missing_docs)]

pub use strata_autograd as autograd;
pub use strata_data as data;
pub use strata_kernels as kernels;
pub use strata_nn as nn;
pub use strata_optim as optim;
pub use strata_tensor as tensor;

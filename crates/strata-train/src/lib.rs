//! # strata-train
//!
//! The training driver: epochs of shuffled minibatches (assembled on a
//! background thread), one optimiser step per minibatch, validation accuracy
//! and dead-unit fractions after every epoch (the things section 12.1.3 says to
//! watch), and a clear stop when the loss stops being finite.
//!
//! ```
//! use strata_data::digits_split;
//! use strata_nn::{Flatten, Linear, Sequential};
//! use strata_optim::{Method, Optimizer, Schedule};
//! use strata_train::{evaluate, fit, FitOptions};
//!
//! let data = digits_split();
//! let (train, validation) = data.train.split_validation(300, 1)?;
//! // The chapter's unit-per-class classifier: one linear layer + softmax.
//! let mut rng = <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(1);
//! let mut net = Sequential::<f32>::new();
//! net.push(Flatten).push(Linear::new(64, 10, &mut rng)?);
//! let mut opt = Optimizer::new(Method::Sgd, 1e-4, Schedule::InverseEpoch { a: 2.0, b: 0.5 })?;
//! let opts = FitOptions { epochs: 3, batch: 32, seed: 1, ..FitOptions::default() };
//! let history = fit(&mut net, &mut opt, &train, Some(&validation), &opts, ())?;
//! assert_eq!(history.len(), 3);
//! assert!(evaluate(&mut net, &data.test, 256)?.accuracy > 0.8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod assemble;
pub mod checkpoint;
pub mod data_spec;
mod fit;
pub mod plot;
pub mod run;
pub mod spec;
pub mod sweep;

pub use strata_data as data;
pub use strata_nn as nn;
pub use strata_optim as optim;

pub use assemble::{build_model, build_model_fitted, layer_table, LayerRow};
pub use fit::{
    evaluate, fit, fit_from, EpochReport, Evaluation, FitOptions, Observer, OnEpoch, StepInfo,
    TrainError,
};

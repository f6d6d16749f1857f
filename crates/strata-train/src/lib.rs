//! # strata-train
//!
//! The training driver: epochs of shuffled minibatches (assembled on a
//! background thread), one optimiser step per minibatch, validation accuracy
//! and dead-unit fractions after every epoch (the things section 12.1.3 says to
//! watch), and a clear stop when the loss stops being finite.
//!
//! Training from a spec string as `strata train` does ([`spec::Spec::parse`],
//! [`run::train`]), on the embedded digits, so no data files are needed:
//!
//! ```rust
//! use strata_train::run::{train, RunOptions};
//! use strata_train::spec::Spec;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The chapter's softmax classifier on the UCI digits embedded in strata-data.
//! let text = r#"
//! [data]
//! dataset = "digits"
//! validation = 300
//! [model]
//! layers = ["flatten", { linear = 10 }]
//! [optimizer]
//! momentum = 0.9
//! schedule = { kind = "inverse-epoch", a = 10.0, b = 1.0 }
//! [train]
//! epochs = 1
//! batch = 32
//! "#;
//! let spec = Spec::parse(text, "digits-doc.toml")?; // the file name is only for messages
//! let out = std::env::temp_dir().join(format!("strata-train-doc-{}", std::process::id()));
//! let opts = RunOptions { out: out.clone(), overwrite: true, ..RunOptions::default() };
//! let summary = train(&spec, &opts, &mut ())?; // `()`: no progress output
//! assert_eq!(summary.epochs, 1);
//! assert!(summary.test_accuracy.unwrap() > 0.8);
//! assert!(out.join("model.safetensors").is_file() && out.join("summary.json").is_file());
//! std::fs::remove_dir_all(&out)?;
//! # Ok(()) }
//! ```
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
pub mod collective;
pub mod data_spec;
pub mod detect;
mod fit;
pub mod import;
pub mod onnx;
pub mod plot;
pub mod run;
pub mod spec;
pub mod sweep;
pub mod torch;
pub mod viz;

pub use strata_data as data;
pub use strata_nn as nn;
pub use strata_optim as optim;

pub use assemble::{build_model, build_model_fitted, layer_table, LayerRow};
pub use fit::{
    evaluate, fit, fit_from, logits, EpochReport, Evaluation, FitOptions, Observer, OnEpoch,
    StepInfo, TrainError,
};

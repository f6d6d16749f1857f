//! # strata-nn
//!
//! Layers as modules with stable, named parameters (`layers.0.weight`):
//! [`Linear`], [`Relu`], [`Dropout`], [`Flatten`], [`Conv2d`], [`MaxPool2d`],
//! [`GlobalAvgPool`], [`BatchNorm`], [`Residual`] and [`Sequential`], with
//! [`ResNetConfig`] building CIFAR ResNets; the
//! chapter's initialisation (`w ~ N(0, ε·√2/n)`, default He `2/n`); dead-unit
//! monitoring; state save/load; whole-network gradient checking. The mode
//! (train or eval) is always passed explicitly.
//!
//! A [`Linear`] layer forward, then a small [`Sequential`] network, in evaluation:
//!
//! ```rust
//! use rand::SeedableRng;
//! use rand_xoshiro::Xoshiro256PlusPlus;
//! use strata_autograd::Tape;
//! use strata_nn::{Ctx, Flatten, Linear, Mode, Module, Relu, Sequential};
//! use strata_tensor::Tensor;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
//! // One Linear layer, o = x Wᵀ + b, its weights set by hand (biases start at 0).
//! let mut layer = Linear::<f32>::new(3, 2, &mut rng)?;
//! layer.weight.value = Tensor::from_vec(vec![1., 0., 0., 1., 1., 1.], &[2, 3])?;
//! let mut tape = Tape::inference(); // evaluation: nothing recorded for backward
//! let x = tape.input(Tensor::from_vec(vec![1., 2., 3.], &[1, 3])?);
//! let y = layer.forward(&mut tape, x, &mut Ctx::new(Mode::Eval, &mut rng))?;
//! assert_eq!(tape.value(y)?.to_vec(), vec![1., 6.]);
//! // A network on 1×4×4 images: flatten, 16 → 8, ReLU, 8 → 3 logits.
//! let mut net = Sequential::<f32>::new();
//! net.push(Flatten).push(Linear::new(16, 8, &mut rng)?).push(Relu).push(Linear::new(8, 3, &mut rng)?);
//! assert_eq!(net.output_shape(&[1, 4, 4])?, [3]);
//! let mut tape = Tape::inference();
//! let x = tape.input(Tensor::ones(&[2, 1, 4, 4]));
//! let logits = net.forward(&mut tape, x, &mut Ctx::new(Mode::Eval, &mut rng))?;
//! assert_eq!(tape.value(logits)?.shape(), &[2, 3]);
//! # Ok(()) }
//! ```
//!
//! ```
//! use rand::SeedableRng;
//! use rand_xoshiro::Xoshiro256PlusPlus;
//! use strata_autograd::Tape;
//! use strata_nn::{Ctx, Mode, Module, Sequential};
//! use strata_tensor::Tensor;
//!
//! let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
//! let mut net = Sequential::<f32>::mlp(&[4, 8, 3], 0.5, &mut rng)?;
//! let names: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias"]);
//!
//! let mut tape = Tape::new();
//! let x = tape.input(Tensor::ones(&[2, 4]));
//! let mut ctx = Ctx::new(Mode::Train, &mut rng);
//! let logits = net.forward(&mut tape, x, &mut ctx)?;
//! let loss = tape.softmax_cross_entropy(logits, &[0, 2])?;
//! let grads = tape.backward(loss)?;
//! assert!(grads.param(net.params()[0].1.id()).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod batchnorm;
mod conv;
mod error;
pub mod gradcheck;
mod init;
mod layers;
mod lower;
mod module;
mod monitor;
mod pool;
mod residual;
mod resnet;
mod sequential;
mod state;

pub use batchnorm::BatchNorm;
pub use conv::{Conv2d, Conv2dConfig, Padding};
pub use error::{NnError, Result};
pub use init::{check_allocatable, Init};
pub use layers::{Dropout, Flatten, Gelu, Linear, Relu, Scale};
pub use lower::Lowered;
pub use module::{Ctx, Mode, Module, Named, NamedMut, SliceStats};
pub use monitor::DeadUnits;
pub use pool::{GlobalAvgPool, MaxPool2d};
pub use residual::{Residual, ResidualKind};
pub use resnet::ResNetConfig;
pub use sequential::Sequential;
pub use state::{accuracy, load_state_dict, parameter_count, predict, state_dict};
pub use strata_autograd::kernels::pad::{Border, Pad2d};
pub use strata_autograd::kernels::pool::OddPolicy;

//! Trains the 784-1024-1024-10 multilayer network of section 12.2 on MNIST with
//! dropout and momentum, using the crates directly (no CLI), and prints the
//! held-out test accuracy.
//!
//! ```text
//! cargo run --release -p strata-nn --example mnist_mlp -- [MNIST_DIR] [EPOCHS]
//! ```
//! `MNIST_DIR` defaults to `../shared/data/mnist`.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::Instant;
use strata_autograd::Tape;
use strata_data::{load_mnist_like, Batcher};
use strata_nn::{accuracy, parameter_count, Ctx, Mode, Module, Sequential};
use strata_optim::{Method, Optimizer, Schedule};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "../shared/data/mnist".into());
    let epochs: usize = args.next().map(|e| e.parse()).transpose()?.unwrap_or(10);

    let data = load_mnist_like(&dir)?;
    // Choices are made on a validation split; the test set is used once, at the end.
    let (train, validation) = data.train.split_validation(5000, 1)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut net = Sequential::<f32>::mlp(&[784, 1024, 1024, 10], 0.5, &mut rng)?;
    println!(
        "784-1024-1024-10, {} parameters, {} training images",
        parameter_count(&net),
        train.len()
    );

    let mut opt = Optimizer::new(
        Method::Momentum { mu: 0.9 },
        1e-5,
        Schedule::Step {
            lr: 0.03,
            gamma: 0.5,
            every: 3,
        },
    )?;
    let batcher = Batcher::new(128)?.shuffle(7);
    let val_x = validation.to_tensor()?.flatten_from(1)?;
    let start = Instant::now();
    for epoch in 0..epochs {
        let mut total = 0.0;
        let batches = batcher.batch_indices(train.len(), epoch as u64);
        for idx in &batches {
            let (x, labels) = train.batch(idx)?;
            let mut tape = Tape::new();
            let xi = tape.input(x.flatten_from(1)?);
            let mut ctx = Ctx::new(Mode::Train, &mut rng);
            let logits = net.forward(&mut tape, xi, &mut ctx)?;
            let loss = tape.softmax_cross_entropy(logits, &labels)?;
            total += tape.value(loss)?.item()? as f64;
            let grads = tape.backward(loss)?;
            opt.step(net.params_mut(), |p| grads.param(p.id()).cloned(), epoch)?;
        }
        let val = accuracy(&mut net, &val_x, validation.labels(), 1000)?;
        println!(
            "epoch {:>2}  loss {:.4}  validation accuracy {:.2}%  lr {:.4}  {:.1}s",
            epoch + 1,
            total / batches.len() as f64,
            100.0 * val,
            opt.schedule.lr(0, epoch),
            start.elapsed().as_secs_f64()
        );
    }
    let test_x = data.test.to_tensor()?.flatten_from(1)?;
    let test = accuracy(&mut net, &test_x, data.test.labels(), 1000)?;
    println!(
        "test accuracy {:.2}% after {:.1}s",
        100.0 * test,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

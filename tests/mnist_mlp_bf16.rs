//! End to end on real data with the matrix products in bf16
//! (`train.matmul_precision = "bf16"`): the small MLP of `mnist_mlp.rs`
//! learns MNIST as well as in f32. Its own test binary, because the
//! precision is process-wide.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata::autograd::Tape;
use strata::data::{load_mnist_like, Batcher, Dataset};
use strata::kernels::gemm::{bf16_available, set_matmul_precision, MatmulPrecision};
use strata::nn::{accuracy, Ctx, Mode, Module, Sequential};
use strata::optim::{Method, Optimizer, Schedule};

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/mnist");

/// Trains the MLP for 5 epochs; returns the test accuracy and the first loss.
fn train(train: &Dataset, test: &Dataset) -> (f64, f32) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut net = Sequential::<f32>::mlp(&[784, 256, 10], 0.0, &mut rng).unwrap();
    let mut opt = Optimizer::new(
        Method::Momentum { mu: 0.9 },
        1e-4,
        Schedule::InverseEpoch { a: 10.0, b: 5.0 },
    )
    .unwrap();
    let batcher = Batcher::new(64).unwrap().shuffle(7);
    let mut first = None;
    for epoch in 0..5 {
        for idx in batcher.batch_indices(train.len(), epoch as u64) {
            let (x, labels) = train.batch(&idx).unwrap();
            let mut tape = Tape::new();
            let xi = tape.input(x.flatten_from(1).unwrap());
            let mut ctx = Ctx::new(Mode::Train, &mut rng);
            let logits = net.forward(&mut tape, xi, &mut ctx).unwrap();
            let loss = tape.softmax_cross_entropy(logits, &labels).unwrap();
            first.get_or_insert(tape.value(loss).unwrap().to_vec()[0]);
            let grads = tape.backward(loss).unwrap();
            opt.step(net.params_mut(), |p| grads.param(p.id()).cloned(), epoch)
                .unwrap();
        }
    }
    let x = test.to_tensor().unwrap().flatten_from(1).unwrap();
    let acc = accuracy(&mut net, &x, test.labels(), 500).unwrap();
    (acc, first.expect("at least one step"))
}

#[test]
fn bf16_matmuls_learn_mnist_as_well_as_f32() {
    let data = load_mnist_like(MNIST).expect("MNIST under ../shared/data/mnist");
    let (tr, te) = (data.train.take(6000), data.test.take(2000));
    let (acc32, loss32) = train(&tr, &te);
    set_matmul_precision(MatmulPrecision::Bf16);
    let (acc16, loss16) = train(&tr, &te);
    set_matmul_precision(MatmulPrecision::F32);
    eprintln!(
        "MLP 784-256-10, 6000 MNIST images, 5 epochs: f32 {acc32:.4}, bf16 {acc16:.4} (AMX: {})",
        bf16_available()
    );
    assert!(acc16 >= 0.90, "bf16 test accuracy {acc16}");
    assert!(
        (acc16 - acc32).abs() <= 0.015,
        "bf16 {acc16} vs f32 {acc32}"
    );
    if bf16_available() {
        // The products really ran on the tiles: the first loss differs in
        // its low bits, but only there.
        assert_ne!(loss16, loss32);
        assert!(
            (loss16 - loss32).abs() <= 0.02 * loss32.abs(),
            "{loss16} vs {loss32}"
        );
    } else {
        assert_eq!(loss16, loss32, "no AMX: the products stayed f32");
    }
}

//! End to end on real data: a small MLP trained on a few thousand MNIST images
//! for a few seconds reaches at least 90% test accuracy.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata::autograd::Tape;
use strata::data::{load_mnist_like, Batcher};
use strata::nn::{accuracy, Ctx, Mode, Module, Sequential};
use strata::optim::{Method, Optimizer, Schedule};

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/mnist");

#[test]
fn small_mlp_learns_mnist() {
    let data = load_mnist_like(MNIST).expect("MNIST under ../shared/data/mnist");
    let train = data.train.take(6000);
    let test = data.test.take(2000);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut net = Sequential::<f32>::mlp(&[784, 256, 10], 0.0, &mut rng).unwrap();
    let mut opt = Optimizer::new(
        Method::Momentum { mu: 0.9 },
        1e-4,
        Schedule::InverseEpoch { a: 10.0, b: 5.0 },
    )
    .unwrap();
    let batcher = Batcher::new(64).unwrap().shuffle(7);
    for epoch in 0..5 {
        for idx in batcher.batch_indices(train.len(), epoch as u64) {
            let (x, labels) = train.batch(&idx).unwrap();
            let mut tape = Tape::new();
            let xi = tape.input(x.flatten_from(1).unwrap());
            let mut ctx = Ctx::new(Mode::Train, &mut rng);
            let logits = net.forward(&mut tape, xi, &mut ctx).unwrap();
            let loss = tape.softmax_cross_entropy(logits, &labels).unwrap();
            let grads = tape.backward(loss).unwrap();
            opt.step(net.params_mut(), |p| grads.param(p.id()).cloned(), epoch)
                .unwrap();
        }
    }
    let x = test.to_tensor().unwrap().flatten_from(1).unwrap();
    let acc = accuracy(&mut net, &x, test.labels(), 500).unwrap();
    eprintln!("small MLP, 6000 MNIST images, 5 epochs: test accuracy {acc}");
    assert!(acc >= 0.90, "test accuracy {acc}");
}

//! End to end on real data: a small CNN (conv-BN-ReLU-maxpool twice, then a
//! linear layer) trained for a few seconds on a few thousand MNIST images
//! reaches at least 95% test accuracy.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata::autograd::Tape;
use strata::data::{load_mnist_like, Batcher};
use strata::nn::{
    accuracy, BatchNorm, Conv2dConfig, Ctx, Flatten, Linear, MaxPool2d, Mode, Module, Padding,
    Relu, Sequential,
};
use strata::optim::{Method, Optimizer, Schedule};
use strata::tensor::Tensor;

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/mnist");

/// MNIST's pixel mean and standard deviation, so inputs are centred.
fn standardise(x: &Tensor<f32>) -> Tensor<f32> {
    x.map(|v| (v - 0.1307) / 0.3081)
}

#[test]
fn small_cnn_learns_mnist() {
    let data = load_mnist_like(MNIST).expect("MNIST under ../shared/data/mnist");
    let train = data.train.take(8000);
    let test = data.test.take(2000);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let same = |cin, cout| {
        Conv2dConfig::new(cin, cout, 3)
            .padding(Padding::Same)
            .bias(false)
    };
    let mut net = Sequential::<f32>::new();
    net.push(same(1, 8).build(&mut rng).unwrap())
        .push(BatchNorm::new(8).unwrap())
        .push(Relu)
        .push(MaxPool2d::new(2))
        .push(same(8, 16).build(&mut rng).unwrap())
        .push(BatchNorm::new(16).unwrap())
        .push(Relu)
        .push(MaxPool2d::new(2))
        .push(Flatten)
        .push(Linear::new(16 * 7 * 7, 10, &mut rng).unwrap());
    let mut opt = Optimizer::new(
        Method::Momentum { mu: 0.9 },
        1e-4,
        Schedule::Constant { lr: 0.01 },
    )
    .unwrap();
    let batcher = Batcher::new(16).unwrap().shuffle(7);
    let start = std::time::Instant::now();
    let mut losses = Vec::new();
    for epoch in 0..2 {
        let (mut sum, mut steps) = (0.0, 0);
        for idx in batcher.batch_indices(train.len(), epoch as u64) {
            let (x, labels) = train.batch(&idx).unwrap();
            let mut tape = Tape::new();
            let xi = tape.input(standardise(&x));
            let mut ctx = Ctx::new(Mode::Train, &mut rng);
            let logits = net.forward(&mut tape, xi, &mut ctx).unwrap();
            let loss = tape.softmax_cross_entropy(logits, &labels).unwrap();
            sum += tape.value(loss).unwrap().item().unwrap() as f64;
            steps += 1;
            let grads = tape.backward(loss).unwrap();
            opt.step(net.params_mut(), |p| grads.param(p.id()).cloned(), epoch)
                .unwrap();
        }
        losses.push(sum / steps as f64);
    }
    let secs = start.elapsed().as_secs_f64();
    let x = standardise(&test.to_tensor().unwrap());
    let acc = accuracy(&mut net, &x, test.labels(), 500).unwrap();
    eprintln!(
        "small CNN, 8000 MNIST images, 2 epochs in {secs:.1} s: losses {losses:.3?}, test accuracy {acc}"
    );
    assert!(acc >= 0.95, "test accuracy {acc}");
}

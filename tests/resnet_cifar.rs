//! End to end on real data: tiny ResNets (depth 8 = 6·1 + 2, width 8, batch
//! norm, strided projection shortcuts), original and pre-activation, on a
//! CIFAR-10 subset; the training loss must fall well below its start.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata::autograd::Tape;
use strata::data::{load_image_folder, Batcher};
use strata::nn::{Ctx, Mode, Module, ResNetConfig, ResidualKind};
use strata::optim::{Method, Optimizer, Schedule};
use strata::tensor::Tensor;

const CIFAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cifar10");

/// 2×2 average pooling of `[N, C, H, W]` images (32×32 → 16×16), so the test
/// runs in seconds.
fn halve(x: &Tensor<f32>) -> Tensor<f32> {
    let s = x.shape().to_vec();
    let (h, w) = (s[2] / 2, s[3] / 2);
    let v = x.to_vec();
    let mut out = Vec::with_capacity(s[0] * s[1] * h * w);
    for p in v.chunks_exact(s[2] * s[3]) {
        for i in 0..h {
            for j in 0..w {
                let at = |di: usize, dj: usize| p[(2 * i + di) * s[3] + 2 * j + dj];
                out.push(0.25 * (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)));
            }
        }
    }
    Tensor::from_vec(out, &[s[0], s[1], h, w]).unwrap()
}

#[test]
fn tiny_resnets_fit_a_cifar_subset() {
    // The test split is the smaller one to decode; 32 images of each class.
    let all = load_image_folder(CIFAR, "test").expect("CIFAR-10 under ../shared/data/cifar10");
    let idx: Vec<usize> = (0..10)
        .flat_map(|c| (0..32).map(move |i| c * 1000 + i))
        .collect();
    let (x, labels) = all
        .select(&idx)
        .unwrap()
        .batch(&(0..idx.len()).collect::<Vec<_>>())
        .unwrap();
    let x = halve(&x);
    for kind in [ResidualKind::Original, ResidualKind::PreActivation] {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let config = ResNetConfig {
            width: 8,
            ..ResNetConfig::cifar(8, kind)
        };
        let mut net = config.build::<f32>(&mut rng).unwrap();
        let mut opt = Optimizer::new(
            Method::Momentum { mu: 0.9 },
            5e-4,
            Schedule::Constant { lr: 0.05 },
        )
        .unwrap();
        let batcher = Batcher::new(32).unwrap().shuffle(5);
        let start = std::time::Instant::now();
        let mut epoch_loss = Vec::new();
        for epoch in 0..10 {
            let mut sum = 0.0;
            let batches = batcher.batch_indices(labels.len(), epoch as u64);
            for b in &batches {
                let xb: Vec<Tensor<f32>> =
                    b.iter().map(|&i| x.slice(0, i, i + 1).unwrap()).collect();
                let xb = Tensor::concat(&xb.iter().collect::<Vec<_>>(), 0).unwrap();
                let yb: Vec<usize> = b.iter().map(|&i| labels[i]).collect();
                let mut tape = Tape::new();
                let xi = tape.input(xb);
                let mut ctx = Ctx::new(Mode::Train, &mut rng);
                let logits = net.forward(&mut tape, xi, &mut ctx).unwrap();
                let loss = tape.softmax_cross_entropy(logits, &yb).unwrap();
                sum += tape.value(loss).unwrap().item().unwrap() as f64;
                let grads = tape.backward(loss).unwrap();
                opt.step(net.params_mut(), |p| grads.param(p.id()).cloned(), epoch)
                    .unwrap();
            }
            epoch_loss.push(sum / batches.len() as f64);
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{kind:?} ResNet-8 (width 8), 320 CIFAR images at 16×16, 10 epochs in {secs:.1} s: losses {epoch_loss:.3?}"
        );
        let (first, last) = (epoch_loss[0], *epoch_loss.last().unwrap());
        assert!(
            last.is_finite() && last < 0.7 * first,
            "{kind:?}: loss {first} → {last}"
        );
    }
}

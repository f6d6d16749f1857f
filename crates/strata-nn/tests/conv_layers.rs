//! Convolution, pooling, batch norm and residual layers: whole-network
//! gradient checks, shapes, modes, errors naming the layer, state with running
//! statistics, and very deep residual networks.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::gradcheck::GradCheckOptions;
use strata_autograd::Tape;
use strata_nn::gradcheck::check_module_gradients;
use strata_nn::*;
use strata_optim::{Method, Optimizer, Schedule};
use strata_tensor::Tensor;

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut r = rng(seed);
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| r.random_range(-1.0..1.0)).collect(), shape).unwrap()
}

fn gradcheck(net: &mut dyn Module<f64>, x: &Tensor<f64>, labels: &[usize], mode: Mode) {
    let opts = GradCheckOptions {
        max_entries: 60,
        ..GradCheckOptions::default()
    };
    let reports = check_module_gradients(net, x, labels, 1e-3, mode, &opts).unwrap();
    assert!(!reports.is_empty());
    for r in reports {
        // Biases before a batch norm have a true gradient of 0: judge those by
        // the absolute error (finite-difference noise is ~1e-11 there).
        assert!(
            r.max_rel_error < 1e-5 || r.max_abs_error < 1e-8,
            "{}: relative error {:e} (abs {:e})",
            r.name,
            r.max_rel_error,
            r.max_abs_error
        );
    }
}

#[test]
fn conv_nets_with_every_border_gradcheck() {
    let paddings = [
        (Padding::Valid, Border::Zero),
        (Padding::Same, Border::Zero),
        (Padding::Uniform(1), Border::Constant(0.3)),
        (Padding::Same, Border::Reflect),
        (Padding::Same, Border::Replicate),
    ];
    for (i, (padding, border)) in paddings.into_iter().enumerate() {
        for (k, stride) in [(3, 1), (2, 2), (4, 1)] {
            let mut r = rng(i as u64 * 10 + k as u64);
            let conv = Conv2dConfig::new(2, 3, k)
                .stride(stride)
                .padding(padding)
                .border(border);
            let mut net = Sequential::<f64>::new();
            net.push(conv.build(&mut r).unwrap());
            net.push(Relu);
            let shape = net.output_shape(&[2, 7, 6]).unwrap();
            net.push(Flatten);
            net.push(Linear::new(shape.iter().product(), 3, &mut r).unwrap());
            let x = rand_tensor(&[2, 2, 7, 6], 1);
            gradcheck(&mut net, &x, &[0, 2], Mode::Train);
        }
    }
}

#[test]
fn same_padding_keeps_the_size() {
    let mut r = rng(1);
    for k in 1..=5 {
        for s in 1..=3 {
            let c = Conv2dConfig::new(1, 1, k).stride(s).padding(Padding::Same);
            let conv: Conv2d<f32> = c.build(&mut r).unwrap();
            let out = conv.output_shape(&[1, 9, 8]).unwrap();
            assert_eq!(
                out,
                [1, 9usize.div_ceil(s), 8usize.div_ceil(s)],
                "k={k} s={s}"
            );
        }
    }
    let valid: Conv2d<f32> = Conv2dConfig::new(1, 1, 5).build(&mut r).unwrap();
    assert_eq!(valid.output_shape(&[1, 9, 8]).unwrap(), [1, 5, 4]);
}

#[test]
fn cnn_with_pooling_and_batch_norm_gradchecks() {
    for policy in [OddPolicy::Floor, OddPolicy::Ceil] {
        let mut r = rng(2);
        let mut net = Sequential::<f64>::new();
        net.push(
            Conv2dConfig::new(1, 4, 3)
                .padding(Padding::Same)
                .bias(false)
                .build(&mut r)
                .unwrap(),
        );
        net.push(BatchNorm::new(4).unwrap());
        net.push(Relu);
        net.push(MaxPool2d::new(2).policy(policy));
        net.push(Conv2dConfig::new(4, 3, 2).build(&mut r).unwrap());
        net.push(GlobalAvgPool);
        net.push(BatchNorm::new(3).unwrap());
        net.push(Linear::new(3, 3, &mut r).unwrap());
        let x = rand_tensor(&[3, 1, 7, 7], 3);
        gradcheck(&mut net, &x, &[0, 1, 2], Mode::Train);
        gradcheck(&mut net, &x, &[0, 1, 2], Mode::Eval);
    }
}

#[test]
fn residual_layers_gradcheck() {
    let kinds = [ResidualKind::Original, ResidualKind::PreActivation];
    for kind in kinds {
        for bn in [false, true] {
            // Fully connected, same width and with a projection.
            for (inp, out) in [(4, 4), (4, 5)] {
                let mut r = rng(4);
                let mut net = Sequential::<f64>::new();
                net.push(Residual::dense(kind, inp, out, bn, &mut r).unwrap());
                net.push(Linear::new(out, 3, &mut r).unwrap());
                gradcheck(
                    &mut net,
                    &rand_tensor(&[4, inp], 5),
                    &[0, 1, 2, 1],
                    Mode::Train,
                );
            }
            // Convolutional, identity and strided projection shortcuts.
            for (cin, cout, stride) in [(2, 2, 1), (2, 3, 2)] {
                let mut r = rng(6);
                let mut net = Sequential::<f64>::new();
                net.push(Residual::basic(kind, cin, cout, stride, bn, &mut r).unwrap());
                net.push(GlobalAvgPool);
                net.push(Linear::new(cout, 2, &mut r).unwrap());
                gradcheck(
                    &mut net,
                    &rand_tensor(&[2, cin, 5, 5], 7),
                    &[0, 1],
                    Mode::Train,
                );
            }
        }
    }
    let mut r = rng(8);
    let mut net = Sequential::<f64>::new();
    net.push(Residual::bottleneck(ResidualKind::PreActivation, 2, 2, 4, 2, true, &mut r).unwrap());
    net.push(GlobalAvgPool);
    net.push(Linear::new(4, 2, &mut r).unwrap());
    gradcheck(
        &mut net,
        &rand_tensor(&[2, 2, 4, 4], 9),
        &[1, 0],
        Mode::Train,
    );
}

#[test]
fn batch_norm_running_statistics_modes_and_state() {
    let mut r = rng(10);
    let mut bn = BatchNorm::<f64>::new(2).unwrap();
    let x = rand_tensor(&[16, 2, 3, 3], 11).map(|v| 4.0 * v + 3.0);
    for _ in 0..200 {
        let mut tape = Tape::new();
        let xi = tape.input(x.clone());
        bn.forward(&mut tape, xi, &mut Ctx::new(Mode::Train, &mut r))
            .unwrap();
    }
    // The running mean converges to the data's channel means (≈ 3).
    let m = bn.running_mean.to_vec();
    assert!(m.iter().all(|v| (v - 3.0).abs() < 0.5), "{m:?}");
    // Evaluation uses the estimates, so its output is (nearly) normalised too.
    let mut tape = Tape::inference();
    let xi = tape.input(x.clone());
    let y = bn
        .forward(&mut tape, xi, &mut Ctx::new(Mode::Eval, &mut r))
        .unwrap();
    let yv = tape.value(y).unwrap().to_vec();
    let mean = yv.iter().sum::<f64>() / yv.len() as f64;
    assert!(mean.abs() < 0.05, "eval mean {mean}");
    // γ and β are not decayed; the running statistics travel in the state.
    assert!(bn.params().iter().all(|(_, p)| !p.decay));
    let mut net = Sequential::<f64>::new();
    net.push(bn);
    let state = state_dict(&net);
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "layers.0.gamma",
            "layers.0.beta",
            "layers.0.running_mean",
            "layers.0.running_var"
        ]
    );
    let mut fresh = Sequential::<f64>::new();
    fresh.push(BatchNorm::<f64>::new(2).unwrap());
    load_state_dict(&mut fresh, &state).unwrap();
    assert_eq!(state_dict(&fresh), state);
    let missing: Vec<_> = state.iter().take(3).cloned().collect();
    let e = load_state_dict(&mut fresh, &missing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("running_var"), "{e}");
}

#[test]
fn bad_inputs_name_the_layer_and_shapes() {
    let mut r = rng(12);
    let mut net = Sequential::<f32>::new();
    net.push(Conv2dConfig::new(3, 8, 5).build(&mut r).unwrap());
    // Channel mismatch.
    let e = net.shapes(&[1, 28, 28]).unwrap_err().to_string();
    assert!(
        e.contains("layers.0 (conv 3→8 5×5)")
            && e.contains("[3, H, W]")
            && e.contains("[1, 28, 28]"),
        "{e}"
    );
    // Kernel larger than the (unpadded) input, at forward time too.
    let mut tape = Tape::new();
    let x = tape.input(Tensor::zeros(&[2, 3, 4, 4]));
    let e = net
        .forward(&mut tape, x, &mut Ctx::new(Mode::Train, &mut r))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("layers.0") && e.contains("5×5") && e.contains("[3, 4, 4]"),
        "{e}"
    );
    // Zero stride is a configuration error.
    assert!(Conv2dConfig::new(3, 8, 3)
        .stride(0)
        .build::<f32>(&mut r)
        .is_err());
    // Pooling window larger than the slice.
    let mut p = Sequential::<f32>::new();
    p.push(MaxPool2d::new(3));
    let e = p.shapes(&[2, 2, 2]).unwrap_err().to_string();
    assert!(e.contains("maxpool 3×3") && e.contains("[2, 2, 2]"), "{e}");
    // A residual block without projection refuses a shape change.
    let block = Residual::<f32>::from_parts(
        ResidualKind::Original,
        Sequential::new(),
        {
            let mut b = Sequential::new();
            b.push(
                Conv2dConfig::new(2, 4, 3)
                    .padding(Padding::Same)
                    .build::<f32>(&mut r)
                    .unwrap(),
            );
            b
        },
        None,
    );
    assert!(block.output_shape(&[2, 5, 5]).is_err());
    assert!(ResNetConfig::cifar(21, ResidualKind::Original)
        .build::<f32>(&mut r)
        .is_err());
}

#[test]
fn resnet20_shapes_and_size() {
    let net = ResNetConfig::resnet20().build::<f32>(&mut rng(13)).unwrap();
    assert_eq!(net.output_shape(&[3, 32, 32]).unwrap(), [10]);
    // He et al. report 0.27M parameters for ResNet-20.
    let n = parameter_count(&net);
    assert!((260_000..280_000).contains(&n), "{n} parameters");
    // ~41M multiply-adds per image.
    let f = net.flops(&[3, 32, 32]);
    assert!((38_000_000..45_000_000).contains(&f), "{f} MACs");
    let convs = net
        .params()
        .iter()
        .filter(|(_, p)| p.value.rank() == 4)
        .count();
    assert_eq!(convs, 19 + 2, "19 3×3 convolutions and 2 projections");
}

/// Builds, runs forward and backward, and takes two steps; every loss and
/// gradient must be finite.
fn deep_net_steps(config: ResNetConfig, hw: usize, batch: usize) {
    let mut r = rng(14);
    let mut net = config.build::<f32>(&mut r).unwrap();
    let mut opt = Optimizer::new(
        Method::Momentum { mu: 0.9 },
        5e-4,
        Schedule::Constant { lr: 0.01 },
    )
    .unwrap();
    let x = Tensor::<f32>::from_vec(
        (0..batch * 3 * hw * hw)
            .map(|_| r.random_range(-1.0..1.0))
            .collect(),
        &[batch, 3, hw, hw],
    )
    .unwrap();
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    for _ in 0..2 {
        let mut tape = Tape::new();
        let xi = tape.input(x.clone());
        let out = net
            .forward(&mut tape, xi, &mut Ctx::new(Mode::Train, &mut r))
            .unwrap();
        let loss = tape.softmax_cross_entropy(out, &labels).unwrap();
        let l = tape.value(loss).unwrap().item().unwrap();
        assert!(l.is_finite(), "loss {l}");
        let grads = tape.backward(loss).unwrap();
        for (name, p) in net.params() {
            let g = grads
                .param(p.id())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            assert!(g.to_vec().iter().all(|v| v.is_finite()), "{name}");
        }
        opt.step(net.params_mut(), |p| grads.param(p.id()).cloned(), 0)
            .unwrap();
    }
}

#[test]
fn resnet110_trains_a_step() {
    deep_net_steps(ResNetConfig::cifar(110, ResidualKind::Original), 8, 4);
    deep_net_steps(ResNetConfig::cifar(110, ResidualKind::PreActivation), 8, 4);
}

#[test]
fn preact_resnet1001_bottleneck_trains_a_step() {
    let c = ResNetConfig::cifar(1001, ResidualKind::PreActivation).bottleneck();
    assert_eq!(c.blocks_per_stage().unwrap(), 111);
    deep_net_steps(c, 8, 2);
}

/// Speed of one ResNet-20 training step (batch 128, 3×32×32) and of inference:
/// `cargo test -p strata-nn --release --test conv_layers resnet20_speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn resnet20_speed() {
    let mut r = rng(15);
    let mut net = ResNetConfig::resnet20().build::<f32>(&mut r).unwrap();
    let mut opt = Optimizer::new(
        Method::Momentum { mu: 0.9 },
        5e-4,
        Schedule::Constant { lr: 0.01 },
    )
    .unwrap();
    let batch = 128;
    let x = Tensor::<f32>::from_vec(
        (0..batch * 3 * 32 * 32)
            .map(|_| r.random_range(-1.0..1.0))
            .collect(),
        &[batch, 3, 32, 32],
    )
    .unwrap();
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let mut train = Vec::new();
    let mut infer = Vec::new();
    for _ in 0..6 {
        let t = std::time::Instant::now();
        let mut tape = Tape::new();
        let xi = tape.input(x.clone());
        let out = net
            .forward(&mut tape, xi, &mut Ctx::new(Mode::Train, &mut r))
            .unwrap();
        let loss = tape.softmax_cross_entropy(out, &labels).unwrap();
        let grads = tape.backward(loss).unwrap();
        opt.step(net.params_mut(), |p| grads.param(p.id()).cloned(), 0)
            .unwrap();
        train.push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let mut tape = Tape::inference();
        let xi = tape.input(x.clone());
        net.forward(&mut tape, xi, &mut Ctx::new(Mode::Eval, &mut r))
            .unwrap();
        infer.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.remove(0);
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (tt, ti) = (median(&mut train), median(&mut infer));
    eprintln!(
        "resnet20 batch {batch}, {} threads: training {:.0} samples/s ({:.0} ms/step), inference {:.0} samples/s",
        strata_autograd::kernels::parallel::num_threads(),
        batch as f64 / tt,
        tt * 1e3,
        batch as f64 / ti
    );
}

#[test]
fn dirac_kernels_copy_their_slice_and_the_rest_stay_random() {
    let mut conv: Conv2d<f64> = Conv2dConfig::new(3, 5, 3)
        .padding(Padding::Uniform(1))
        .bias(false)
        .build(&mut rng(4))
        .unwrap();
    conv.dirac();
    let x = rand_tensor(&[2, 3, 4, 4], 5);
    let mut tape = Tape::new();
    let v = tape.input(x.clone());
    let mut r = rng(0);
    let mut ctx = Ctx::new(Mode::Eval, &mut r);
    let y = conv.forward(&mut tape, v, &mut ctx).unwrap();
    let y = tape.value(y).unwrap().to_vec();
    let xs = x.to_vec();
    // Output slices 0..3 are the input slices; 3 and 4 are not.
    for n in 0..2 {
        for c in 0..3 {
            let (o, i) = ((n * 5 + c) * 16, (n * 3 + c) * 16);
            assert_eq!(&y[o..o + 16], &xs[i..i + 16]);
        }
    }
    let w = conv.weight.value.to_vec();
    assert!(w[3 * 27..].iter().any(|&v| v != 0.0));
    // More inputs than outputs: every kernel is an identity.
    let mut narrow: Conv2d<f64> = Conv2dConfig::new(4, 2, 3).build(&mut rng(6)).unwrap();
    narrow.dirac();
    let w = narrow.weight.value.to_vec();
    assert_eq!(w.iter().filter(|&&v| v != 0.0).count(), 2);
    assert_eq!((w[4], w[36 + 9 + 4]), (1.0, 1.0));
}

#[test]
fn batch_norm_with_a_frozen_scale_trains_only_its_shift_and_gelu_nets_check() {
    let mut net: Sequential<f64> = Sequential::new();
    let conv: Conv2d<f64> = Conv2dConfig::new(2, 3, 3)
        .padding(Padding::Uniform(1))
        .build(&mut rng(7))
        .unwrap();
    let mut bn = BatchNorm::new(3).unwrap();
    bn.gamma.frozen = true;
    net.push(conv).push(bn).push(Gelu).push(Flatten);
    let lin = Linear::new(3 * 4 * 4, 4, &mut rng(8)).unwrap();
    net.push(lin).push(Scale { factor: 0.5 });
    let x = rand_tensor(&[3, 2, 4, 4], 9);
    gradcheck(&mut net, &x, &[0, 1, 3], Mode::Train);
    let mut opt = Optimizer::new(Method::Sgd, 0.0, Schedule::Constant { lr: 0.1 }).unwrap();
    let mut tape = Tape::new();
    let v = tape.input(x.clone());
    let mut r = rng(0);
    let mut ctx = Ctx::new(Mode::Train, &mut r);
    let out = net.forward(&mut tape, v, &mut ctx).unwrap();
    let loss = tape.softmax_cross_entropy(out, &[0, 1, 3]).unwrap();
    let grads = tape.backward(loss).unwrap();
    drop(tape);
    opt.step(net.params_mut(), |p| grads.param(p.id()).cloned(), 0)
        .unwrap();
    let params = net.params();
    let gamma = params.iter().find(|(n, _)| n.ends_with("gamma")).unwrap();
    let beta = params.iter().find(|(n, _)| n.ends_with("beta")).unwrap();
    assert_eq!(gamma.1.value.to_vec(), vec![1.0; 3]);
    assert!(beta.1.value.to_vec().iter().any(|&b| b != 0.0));
}

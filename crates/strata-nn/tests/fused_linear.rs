//! `Linear::with_relu` computes what `Linear` followed by `Relu` computes,
//! forward and backward.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::Tape;
use strata_nn::{Ctx, Linear, Mode, Module, Relu, Sequential};
use strata_tensor::Tensor;

#[test]
fn fused_relu_matches_separate_layer() {
    let net = |fused: bool| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut s = Sequential::<f64>::new();
        let l = Linear::new(6, 9, &mut rng).unwrap();
        if fused {
            s.push(l.with_relu());
        } else {
            s.push(l).push(Relu);
        }
        s.push(Linear::new(9, 3, &mut rng).unwrap());
        s
    };
    let x: Vec<f64> = (0..24).map(|i| (i as f64 * 0.37).sin()).collect();
    let run = |mut s: Sequential<f64>| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut tape = Tape::new();
        let xv = tape.input(Tensor::from_vec(x.clone(), &[4, 6]).unwrap());
        let mut ctx = Ctx::new(Mode::Train, &mut rng);
        let y = s.forward(&mut tape, xv, &mut ctx).unwrap();
        let loss = tape.softmax_cross_entropy(y, &[0, 1, 2, 1]).unwrap();
        let g = tape.backward(loss).unwrap();
        let grads: Vec<Tensor<f64>> = s
            .params()
            .iter()
            .map(|(_, p)| g.param(p.id()).unwrap().clone())
            .collect();
        (tape.value(loss).unwrap().item().unwrap(), grads)
    };
    let (fused, separate) = (run(net(true)), run(net(false)));
    assert!((fused.0 - separate.0).abs() < 1e-12);
    for (a, b) in fused.1.iter().zip(&separate.1) {
        assert!(a.all_close(b, 1e-12));
    }
    assert_eq!(net(true).describe(), "sequential (2 layers)");
    assert!(
        Linear::<f32>::new(2, 3, &mut Xoshiro256PlusPlus::seed_from_u64(0))
            .unwrap()
            .with_relu()
            .has_relu()
    );
}

/// `Sequential` runs batch norm followed by ReLU as one fused op: same values
/// and gradients as the separate tape ops, in both modes, and the running
/// statistics still update.
#[test]
fn sequential_fuses_batch_norm_and_relu() {
    use strata_nn::BatchNorm;
    let x = Tensor::from_vec(
        (0..2 * 3 * 4)
            .map(|i| (i as f64 * 0.71).sin() * 2.0)
            .collect(),
        &[2, 3, 2, 2],
    )
    .unwrap();
    for mode in [Mode::Train, Mode::Eval] {
        let mut bn = BatchNorm::<f64>::new(3).unwrap();
        bn.beta.value = Tensor::from_vec(vec![0.3, -0.2, 0.1], &[3]).unwrap();
        let mut net = Sequential::new();
        net.push(bn).push(Relu);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut tape = Tape::new();
        let xv = tape.input(x.clone());
        let y = net
            .forward(&mut tape, xv, &mut Ctx::new(mode, &mut rng))
            .unwrap();
        let got = tape.value(y).unwrap().to_vec();

        let mut t2 = Tape::new();
        let xv2 = t2.input(x.clone());
        let g = t2.input(Tensor::ones(&[3]));
        let b = t2.input(Tensor::from_vec(vec![0.3, -0.2, 0.1], &[3]).unwrap());
        let z = match mode {
            Mode::Train => t2.batch_norm_train(xv2, g, b, 1e-5).unwrap().0,
            Mode::Eval => t2
                .batch_norm_eval(xv2, g, b, &[0.0; 3], &[1.0; 3], 1e-5)
                .unwrap(),
        };
        let want = t2.relu(z).unwrap();
        let want = t2.value(want).unwrap().to_vec();
        assert!(got.contains(&0.0));
        for (p, q) in got.iter().zip(&want) {
            assert!((p - q).abs() < 1e-12, "{mode:?}: {p} vs {q}");
        }
        if mode == Mode::Train {
            let m = &net.buffers()[0].1;
            assert!(m.to_vec().iter().any(|&v| v != 0.0), "running mean updated");
        }
    }
}

/// In evaluation on an inference tape, convolution → batch norm (→ ReLU)
/// runs as one convolution with the batch norm folded into its kernels and
/// bias: same values as the layers one by one (a recording tape does not fold).
#[test]
fn sequential_folds_batch_norm_into_convolution_for_inference() {
    use strata_nn::{BatchNorm, Conv2dConfig, Padding};
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let conv = |i, o, bias, rng: &mut Xoshiro256PlusPlus| {
        Conv2dConfig::new(i, o, 3)
            .padding(Padding::Uniform(1))
            .bias(bias)
            .build::<f64>(rng)
            .unwrap()
    };
    let bn = |c: usize, seed: f64| {
        let mut b = BatchNorm::<f64>::new(c).unwrap();
        let v = |k: f64| {
            (0..c)
                .map(|i| ((i as f64 + seed) * k).sin())
                .collect::<Vec<_>>()
        };
        let t = |d: Vec<f64>| Tensor::from_vec(d, &[c]).unwrap();
        b.gamma.value = t(v(1.3).iter().map(|g| 1.0 + 0.5 * g).collect());
        b.beta.value = t(v(0.7));
        b.running_mean = t(v(2.1));
        b.running_var = t(v(0.9).iter().map(|s| 0.5 + s * s).collect());
        b
    };
    let mut net = Sequential::new();
    net.push(conv(3, 5, true, &mut rng))
        .push(bn(5, 1.0))
        .push(Relu)
        .push(conv(5, 4, false, &mut rng))
        .push(bn(4, 2.0));
    let x = Tensor::from_vec(
        (0..2 * 3 * 6 * 5)
            .map(|i| (i as f64 * 0.37).cos())
            .collect(),
        &[2, 3, 6, 5],
    )
    .unwrap();
    let mut run = |mut tape: Tape<f64>| {
        let xv = tape.input(x.clone());
        let y = net
            .forward(&mut tape, xv, &mut Ctx::new(Mode::Eval, &mut rng))
            .unwrap();
        (tape.value(y).unwrap().to_vec(), tape.len())
    };
    let (folded, folded_len) = run(Tape::inference());
    let (layered, layered_len) = run(Tape::new());
    assert!(
        folded_len < layered_len,
        "folded: {folded_len} values, layered: {layered_len}"
    );
    assert!(
        layered.iter().any(|&v| v < 0.0),
        "last batch norm is not followed by ReLU"
    );
    for (p, q) in folded.iter().zip(&layered) {
        assert!((p - q).abs() < 1e-12, "{p} vs {q}");
    }
}

/// In evaluation on an inference tape, the original residual layer's sum and
/// output ReLU ride on the body's last convolution (batch norm folded in):
/// the same values as the layers one by one, with the identity and the
/// projection shortcut, and no separate sum on the tape.
#[test]
fn residual_sum_fuses_into_the_last_convolution_for_inference() {
    use strata_nn::{Residual, ResidualKind};
    for (cin, cout, stride) in [(4, 4, 1), (3, 6, 2)] {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let mut block =
            Residual::<f64>::basic(ResidualKind::Original, cin, cout, stride, true, &mut rng)
                .unwrap();
        let x = Tensor::from_vec(
            (0..2 * cin * 6 * 6)
                .map(|i| (i as f64 * 0.41).sin())
                .collect(),
            &[2, cin, 6, 6],
        )
        .unwrap();
        let mut run = |mut tape: Tape<f64>| {
            let xv = tape.input(x.clone());
            let y = block
                .forward(&mut tape, xv, &mut Ctx::new(Mode::Eval, &mut rng))
                .unwrap();
            (tape.value(y).unwrap().to_vec(), tape.len())
        };
        let (fused, fused_len) = run(Tape::inference());
        let (layered, _) = run(Tape::new());
        // x; per folded convolution its kernels, bias and the op (three
        // convolutions with a projection, two without); no sum.
        let convs = if stride == 1 { 2 } else { 3 };
        assert_eq!(fused_len, 1 + 3 * convs, "{cin}→{cout}");
        assert!(layered.contains(&0.0) && layered.iter().any(|&v| v > 0.0));
        assert_eq!(fused.len(), layered.len());
        for (p, q) in fused.iter().zip(&layered) {
            assert!((p - q).abs() < 1e-12, "{cin}→{cout}: {p} vs {q}");
        }
    }
}

/// On an inference tape `Linear` multiplies by its packed `Wᵀ`: the same
/// values as on a recording tape, call after call, and new values as soon
/// as the weights change in place or are replaced.
#[test]
fn inference_packs_the_weights_once_and_follows_their_changes() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut layer = Linear::<f32>::new(40, 70, &mut rng).unwrap().with_relu();
    let x = Tensor::from_vec(
        (0..9 * 40).map(|i| (i as f32 * 0.31).sin()).collect(),
        &[9, 40],
    )
    .unwrap();
    let mut run = |layer: &mut Linear<f32>, mut tape: Tape<f32>| {
        let xv = tape.input(x.clone());
        let y = layer
            .forward(&mut tape, xv, &mut Ctx::new(Mode::Eval, &mut rng))
            .unwrap();
        tape.value(y).unwrap().to_vec()
    };
    let want = run(&mut layer, Tape::new());
    assert!(want.contains(&0.0) && want.iter().any(|&v| v > 0.0));
    for _ in 0..2 {
        assert_eq!(run(&mut layer, Tape::inference()), want);
    }
    // In place (an optimiser step): the packed copy is stale.
    layer.weight.value.data_mut()[0] += 1.0;
    let want = run(&mut layer, Tape::new());
    assert_eq!(run(&mut layer, Tape::inference()), want);
    // Replaced (a loaded checkpoint).
    layer.weight.value = Tensor::from_vec(vec![0.01; 70 * 40], &[70, 40]).unwrap();
    let got = run(&mut layer, Tape::inference());
    assert_eq!(got, run(&mut layer, Tape::new()));
    assert!(got.iter().all(|&v| v >= 0.0));
}

/// In training, convolution → batch norm (→ ReLU) hands the batch norm its
/// input's per-slice statistics terms from the convolution's epilogue: the
/// output, the gradients and the running statistics are those of the
/// layers run one by one, bit for bit (f32 on the direct tiles where the
/// host has them, f64 on the GEMM route or its own tiles).
#[test]
fn training_batch_norm_takes_statistics_from_the_convolution() {
    use strata_nn::{BatchNorm, Conv2dConfig, Padding};
    fn check<T: strata_autograd::Real>() {
        let layers = || {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
            let conv = |i, o, bias, rng: &mut Xoshiro256PlusPlus| {
                Conv2dConfig::new(i, o, 3)
                    .padding(Padding::Uniform(1))
                    .bias(bias)
                    .build::<T>(rng)
                    .unwrap()
            };
            let c1 = conv(3, 16, true, &mut rng);
            let c2 = conv(16, 7, false, &mut rng);
            (
                c1,
                BatchNorm::<T>::new(16).unwrap(),
                c2,
                BatchNorm::<T>::new(7).unwrap(),
            )
        };
        let x = Tensor::from_vec(
            (0..3 * 3 * 16 * 16)
                .map(|i| T::of((i as f64 * 0.37).cos() + 0.3))
                .collect(),
            &[3, 3, 16, 16],
        )
        .unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        // Fused: the network as a Sequential.
        let (c1, b1, c2, b2) = layers();
        let mut net = Sequential::new();
        net.push(c1).push(b1).push(Relu).push(c2).push(b2);
        let mut tape = Tape::new();
        let xv = tape.input(x.clone());
        let y = net
            .forward(&mut tape, xv, &mut Ctx::new(Mode::Train, &mut rng))
            .unwrap();
        let loss = tape.l2_penalty(&[y], T::of(0.5)).unwrap();
        let grads = tape.backward(loss).unwrap();
        let fused_y = tape.value(y).unwrap().to_vec();
        let fused_g: Vec<Vec<T>> = net
            .params()
            .iter()
            .map(|(_, p)| grads.param(p.id()).unwrap().to_vec())
            .collect();
        let fused_run: Vec<Vec<T>> = net.buffers().iter().map(|(_, b)| b.to_vec()).collect();
        // One by one.
        let (mut c1, mut b1, mut c2, mut b2) = layers();
        let mut tape = Tape::new();
        let xv = tape.input(x);
        let mut ctx = Ctx::new(Mode::Train, &mut rng);
        let h = c1.forward(&mut tape, xv, &mut ctx).unwrap();
        let h = b1.forward_relu(&mut tape, h, &mut ctx).unwrap().unwrap();
        let h = c2.forward(&mut tape, h, &mut ctx).unwrap();
        let y = b2.forward(&mut tape, h, &mut ctx).unwrap();
        let loss = tape.l2_penalty(&[y], T::of(0.5)).unwrap();
        let grads = tape.backward(loss).unwrap();
        assert_eq!(fused_y, tape.value(y).unwrap().to_vec());
        let params = [c1.params(), b1.params(), c2.params(), b2.params()].concat();
        for ((name, p), fg) in params.iter().zip(&fused_g) {
            assert_eq!(fg, &grads.param(p.id()).unwrap().to_vec(), "∂E/∂{name}");
        }
        let run = [b1.buffers(), b2.buffers()].concat();
        for ((name, b), fb) in run.iter().zip(&fused_run) {
            assert_eq!(fb, &b.to_vec(), "{name}");
        }
        assert_eq!(fused_run.len(), 4);
    }
    check::<f32>();
    check::<f64>();
}

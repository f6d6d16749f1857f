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

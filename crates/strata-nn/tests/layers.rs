//! Layers: names, initialisation, modes, dead units, shape errors, state, gradients.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::gradcheck::GradCheckOptions;
use strata_autograd::Tape;
use strata_nn::gradcheck::check_module_gradients;
use strata_nn::*;
use strata_tensor::Tensor;

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

#[test]
fn he_initialisation_variance_and_seeding() {
    let l = Linear::<f64>::new(500, 400, &mut rng(3)).unwrap();
    let w = l.weight.value.to_vec();
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / w.len() as f64;
    assert!(mean.abs() < 0.002, "mean {mean}");
    assert!(
        (var - 2.0 / 500.0).abs() < 0.02 * 2.0 / 500.0,
        "variance {var}, He wants {}",
        2.0 / 500.0
    );
    assert!(l.bias.value.to_vec().iter().all(|&b| b == 0.0));
    // ε scales the variance as ε·√2/n.
    let init = Init {
        epsilon: 0.5,
        bias: 0.1,
    };
    assert!((init.variance(100) - 0.5 * 2f64.sqrt() / 100.0).abs() < 1e-15);
    // Same seed, same network.
    let a = Sequential::<f32>::mlp(&[10, 20, 3], 0.0, &mut rng(7)).unwrap();
    let b = Sequential::<f32>::mlp(&[10, 20, 3], 0.0, &mut rng(7)).unwrap();
    assert_eq!(state_dict(&a), state_dict(&b));
}

#[test]
fn stable_names_and_counts() {
    let net = Sequential::<f32>::mlp(&[784, 1024, 1024, 10], 0.5, &mut rng(0)).unwrap();
    let names: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.3.weight",
            "layers.3.bias",
            "layers.6.weight",
            "layers.6.bias"
        ]
    );
    assert_eq!(
        parameter_count(&net),
        784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    );
    assert_eq!(net.output_shape(&[784]).unwrap(), vec![10]);
    let clf = Sequential::<f32>::softmax_classifier(64, 10, &mut rng(0)).unwrap();
    assert_eq!(clf.layers().len(), 1);
    assert_eq!(parameter_count(&clf), 650);
}

#[test]
fn dropout_obeys_the_mode() {
    let mut net = Sequential::<f64>::new();
    net.push(Dropout::new(0.5).unwrap());
    let x = Tensor::ones(&[4, 100]);
    for (mode, expect_identity) in [(Mode::Eval, true), (Mode::Train, false)] {
        let mut r = rng(1);
        let mut t = Tape::new();
        let xi = t.input(x.clone());
        let y = net
            .forward(&mut t, xi, &mut Ctx::new(mode, &mut r))
            .unwrap();
        let same = t.value(y).unwrap() == &x;
        assert_eq!(same, expect_identity, "{mode:?}");
    }
    assert!(Dropout::new(1.0).is_err());
    assert!(Dropout::new(-0.1).is_err());
}

#[test]
fn dead_units_are_found() {
    // Unit 0 always fires, unit 1 never (bias −100), unit 2 only for some items.
    let mut l = Linear::<f64>::new(1, 3, &mut rng(0)).unwrap();
    l.weight.value = Tensor::from_vec(vec![0.0, 0.0, 1.0], &[3, 1]).unwrap();
    l.bias.value = Tensor::from_vec(vec![1.0, -100.0, 0.0], &[3]).unwrap();
    let mut net = Sequential::new();
    net.push(l).push(Relu);
    let mut monitor = DeadUnits::new();
    let mut r = rng(0);
    let mut t = Tape::inference();
    let x = t.input(Tensor::from_vec(vec![-1.0, 2.0, -3.0], &[3, 1]).unwrap());
    let mut ctx = Ctx::new(Mode::Eval, &mut r).with_monitor(&mut monitor);
    net.forward(&mut t, x, &mut ctx).unwrap();
    let f = monitor.fractions();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, "layers.1");
    assert!((f[0].1 - 1.0 / 3.0).abs() < 1e-12, "{f:?}");
}

#[test]
fn mismatched_layers_name_the_layer_and_shapes() {
    let mut net = Sequential::<f32>::new();
    net.push(Linear::new(784, 100, &mut rng(0)).unwrap())
        .push(Relu)
        .push(Linear::new(50, 10, &mut rng(0)).unwrap());
    let e = net.shapes(&[784]).unwrap_err().to_string();
    assert!(
        e.contains("layers.2") && e.contains("linear 50→10") && e.contains("[100]"),
        "{e}"
    );
    let mut t = Tape::new();
    let x = t.input(Tensor::ones(&[2, 784]));
    let mut r = rng(0);
    let e = net
        .forward(&mut t, x, &mut Ctx::new(Mode::Train, &mut r))
        .unwrap_err()
        .to_string();
    assert!(e.contains("layers.2"), "{e}");
    assert!(Linear::<f32>::new(0, 3, &mut rng(0)).is_err());
    assert!(Sequential::<f32>::mlp(&[3], 0.0, &mut rng(0)).is_err());
}

#[test]
fn state_round_trip_and_refusals() {
    let a = Sequential::<f32>::mlp(&[4, 5, 2], 0.0, &mut rng(1)).unwrap();
    let mut b = Sequential::<f32>::mlp(&[4, 5, 2], 0.0, &mut rng(2)).unwrap();
    load_state_dict(&mut b, &state_dict(&a)).unwrap();
    assert_eq!(state_dict(&a), state_dict(&b));
    let wrong = Sequential::<f32>::mlp(&[4, 6, 2], 0.0, &mut rng(1)).unwrap();
    let e = load_state_dict(&mut b, &state_dict(&wrong))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("layers.0.weight") && e.contains("[6, 4]") && e.contains("[5, 4]"),
        "{e}"
    );
    let mut partial = state_dict(&a);
    partial.pop();
    assert!(load_state_dict(&mut b, &partial)
        .unwrap_err()
        .to_string()
        .contains("missing"));
}

#[test]
fn whole_network_gradients_match_finite_differences() {
    let mut net = Sequential::<f64>::new();
    net.push(Dropout::new(0.2).unwrap()) // dropout on the inputs, too
        .push(Linear::new(5, 7, &mut rng(4)).unwrap())
        .push(Relu)
        .push(Dropout::new(0.3).unwrap())
        .push(Linear::new(7, 3, &mut rng(5)).unwrap());
    let x = Tensor::from_vec(
        (0..20)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
            .collect(),
        &[4, 5],
    )
    .unwrap();
    let reports = check_module_gradients(
        &mut net,
        &x,
        &[0, 2, 1, 2],
        1e-2,
        Mode::Train,
        &GradCheckOptions::default(),
    )
    .unwrap();
    assert_eq!(reports.len(), 4);
    for r in reports {
        assert!(r.max_rel_error < 1e-6, "{}: {:e}", r.name, r.max_rel_error);
    }
}

/// Layers too large for any machine are configuration errors, not aborts.
#[test]
fn impossible_layer_sizes_are_errors() {
    use strata_nn::{Conv2dConfig, Linear, Module, NnError};
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    let e = Linear::<f32>::new(1 << 40, 1 << 30, &mut rng)
        .err()
        .unwrap();
    assert!(
        matches!(e, NnError::Config(ref m) if m.contains("more memory")),
        "{e}"
    );
    let e = Linear::<f32>::new(usize::MAX, 3, &mut rng).err().unwrap();
    assert!(e.to_string().contains("2^64"), "{e}");
    let e = Conv2dConfig::new(1 << 20, 1 << 20, 1 << 10)
        .build::<f32>(&mut rng)
        .err()
        .unwrap();
    assert!(e.to_string().contains("more memory"), "{e}");
    // A padding whose padded size overflows is refused by the shape check.
    let conv = Conv2dConfig::new(1, 2, 3)
        .padding(strata_nn::Padding::Uniform(usize::MAX / 2))
        .build::<f32>(&mut rng)
        .unwrap();
    let e = conv.output_shape(&[1, 8, 8]).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
}

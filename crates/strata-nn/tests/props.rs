//! Properties of layers and networks over random architectures: the shapes a
//! network promises before any data flows are the shapes it produces (and an
//! impossible network is an error both ways, never a panic); evaluation on an
//! inference tape (batch norm folded into the convolution) gives the layered
//! values; a state dict carries a network exactly; dropout keeps or scales;
//! batch norm normalises whatever the data's offset and scale.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::Tape;
use strata_nn::{
    load_state_dict, state_dict, BatchNorm, Border, Conv2dConfig, Ctx, Dropout, Flatten, Linear,
    MaxPool2d, Mode, Module, OddPolicy, Padding, Relu, Sequential,
};
use strata_tensor::Tensor;

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.random_range(-1.0..1.0)).collect(), shape).unwrap()
}

/// Runs `net` on `x` in `mode` on `tape`; the output's values and shape.
fn run(
    net: &mut Sequential<f64>,
    x: &Tensor<f64>,
    mode: Mode,
    mut tape: Tape<f64>,
    seed: u64,
) -> strata_nn::Result<(Vec<f64>, Vec<usize>)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let xv = tape.input(x.clone());
    let y = net.forward(&mut tape, xv, &mut Ctx::new(mode, &mut rng))?;
    let v = tape.value(y)?;
    Ok((v.to_vec(), v.shape().to_vec()))
}

/// Conv [→ batch norm] [→ ReLU] [→ max pool] → flatten → linear to 3 classes.
#[derive(Debug, Clone)]
struct Arch {
    input: [usize; 3],
    out: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    border: Border,
    bias: bool,
    bn: bool,
    relu: bool,
    pool: Option<(usize, OddPolicy)>,
}

fn arch() -> impl Strategy<Value = Arch> {
    (
        (1usize..4, 1usize..10, 1usize..10),
        (1usize..5, 1usize..5, 1usize..4),
        prop_oneof![
            Just(Padding::Valid),
            Just(Padding::Same),
            (0usize..3).prop_map(Padding::Uniform)
        ],
        prop_oneof![
            Just(Border::Zero),
            Just(Border::Constant(0.5)),
            Just(Border::Reflect),
            Just(Border::Replicate)
        ],
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::of((
            1usize..4,
            prop_oneof![Just(OddPolicy::Floor), Just(OddPolicy::Ceil)],
        )),
    )
        .prop_map(
            |((c, h, w), (out, kernel, stride), padding, border, (bias, bn, relu), pool)| Arch {
                input: [c, h, w],
                out,
                kernel,
                stride,
                padding,
                border,
                bias,
                bn,
                relu,
                pool,
            },
        )
}

/// The network, or the error building it (a layer that cannot exist).
fn build(a: &Arch, seed: u64) -> strata_nn::Result<Sequential<f64>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut net = Sequential::new();
    net.push(
        Conv2dConfig::new(a.input[0], a.out, a.kernel)
            .stride(a.stride)
            .padding(a.padding)
            .border(a.border)
            .bias(a.bias)
            .build::<f64>(&mut rng)?,
    );
    if a.bn {
        net.push(BatchNorm::<f64>::new(a.out)?);
    }
    if a.relu {
        net.push(Relu);
    }
    if let Some((k, policy)) = a.pool {
        net.push(MaxPool2d::new(k).policy(policy));
    }
    net.push(Flatten);
    // The linear layer's input size comes from the promised shape; when that
    // is an error, a stand-in size lets the forward pass report its own.
    let mid = net
        .output_shape(&a.input)
        .map(|s| s.iter().product())
        .unwrap_or(1);
    net.push(Linear::new(mid.max(1), 3, &mut rng)?);
    Ok(net)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn promised_shapes_are_produced_and_folding_keeps_the_values(a in arch(), n in 1usize..4, seed in 0u64..1000) {
        let Ok(mut net) = build(&a, seed) else { return Ok(()) };
        let x = rand_tensor(&[n, a.input[0], a.input[1], a.input[2]], seed + 1);
        let promised = net.output_shape(&a.input);
        let trained = run(&mut net, &x, Mode::Train, Tape::new(), seed);
        // Batch statistics need two values per channel: a batch-size matter
        // the per-sample shapes cannot promise, refused when it arises.
        let conv_out = net.layers()[0].output_shape(&a.input);
        if a.bn && conv_out.is_ok_and(|s| n * s[1] * s[2] == 1) {
            let e = trained.unwrap_err().to_string();
            prop_assert!(e.contains("more than one value per channel"), "{}", e);
            return Ok(());
        }
        match (&promised, &trained) {
            (Ok(p), Ok((_, shape))) => {
                prop_assert_eq!(p, &vec![3usize]);
                prop_assert_eq!(shape, &vec![n, 3]);
            }
            (Err(_), Err(_)) => return Ok(()),
            _ => prop_assert!(false, "{:?}: promised {:?}, forward {:?}", a, promised.map(|_| ()), trained.map(|_| ())),
        }
        // The training step moved batch norm's running statistics away from
        // (0, 1); evaluation with them, folded into the convolution on an
        // inference tape and layer by layer on a recording one, agrees.
        let (folded, _) = run(&mut net, &x, Mode::Eval, Tape::inference(), seed).unwrap();
        let (layered, _) = run(&mut net, &x, Mode::Eval, Tape::new(), seed).unwrap();
        for (p, q) in folded.iter().zip(&layered) {
            prop_assert!((p - q).abs() <= 1e-10 * (1.0 + q.abs()), "{:?}: {} vs {}", a, p, q);
        }
    }

    #[test]
    fn a_state_dict_carries_a_network_exactly(
        sizes in prop::collection::vec(1usize..12, 2..5), n in 1usize..5, seed in 0u64..1000,
    ) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut a = Sequential::<f64>::mlp(&sizes, 0.25, &mut rng).unwrap();
        let mut b = Sequential::<f64>::mlp(&sizes, 0.25, &mut rng).unwrap();
        let x = rand_tensor(&[n, sizes[0]], seed + 1);
        load_state_dict(&mut b, &state_dict(&a)).unwrap();
        prop_assert_eq!(state_dict(&a), state_dict(&b));
        let ya = run(&mut a, &x, Mode::Eval, Tape::inference(), 0).unwrap();
        let yb = run(&mut b, &x, Mode::Eval, Tape::inference(), 0).unwrap();
        prop_assert_eq!(ya, yb);
        // A network one unit wider somewhere refuses the state and keeps its own.
        let mut wider_sizes = sizes.clone();
        let i = seed as usize % sizes.len();
        wider_sizes[i] += 1;
        let mut wider = Sequential::<f64>::mlp(&wider_sizes, 0.25, &mut rng).unwrap();
        let before = state_dict(&wider);
        let e = load_state_dict(&mut wider, &state_dict(&a)).unwrap_err().to_string();
        prop_assert!(e.contains("shape"), "{}", e);
        prop_assert_eq!(state_dict(&wider), before);
    }

    #[test]
    fn dropout_keeps_or_scales_in_training_and_passes_in_evaluation(
        p in 0.0f64..0.95, rows in 1usize..6, cols in 1usize..40, seed in 0u64..1000,
    ) {
        let mut d = Dropout::new(p).unwrap();
        let x = rand_tensor(&[rows, cols], seed);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        for (mode, tape) in [(Mode::Train, Tape::new()), (Mode::Eval, Tape::inference())] {
            let mut tape = tape;
            let xv = tape.input(x.clone());
            let y = Module::<f64>::forward(&mut d, &mut tape, xv, &mut Ctx::new(mode, &mut rng)).unwrap();
            for (yv, xv) in tape.value(y).unwrap().to_vec().iter().zip(x.to_vec()) {
                match mode {
                    // Inverted dropout: kept units are scaled by 1/(1 − p).
                    Mode::Train => prop_assert!(*yv == 0.0 || (yv - xv / (1.0 - p)).abs() <= 1e-12 * (1.0 + xv.abs() / (1.0 - p))),
                    Mode::Eval => prop_assert_eq!(*yv, xv),
                }
            }
        }
    }

    #[test]
    fn batch_norm_normalises_any_offset_and_scale(
        n in 2usize..5, c in 1usize..4, hw in 1usize..5, offset in -1e3f64..1e3, scale in 1e-2f64..1e2, seed in 0u64..1000,
    ) {
        let mut bn = BatchNorm::<f64>::new(c).unwrap();
        let x = rand_tensor(&[n, c, hw, hw], seed).map(|v| offset + scale * v);
        let mut tape = Tape::new();
        let xv = tape.input(x.clone());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let y = bn.forward(&mut tape, xv, &mut Ctx::new(Mode::Train, &mut rng)).unwrap();
        let (yv, xs) = (tape.value(y).unwrap().to_vec(), x.to_vec());
        let m = (n * hw * hw) as f64;
        for ch in 0..c {
            let pick = |v: &[f64]| -> Vec<f64> {
                (0..n).flat_map(|i| v[(i * c + ch) * hw * hw..(i * c + ch + 1) * hw * hw].to_vec()).collect()
            };
            let (ys, xc) = (pick(&yv), pick(&xs));
            let mean = |v: &[f64]| v.iter().sum::<f64>() / m;
            let var = |v: &[f64], mu: f64| v.iter().map(|a| (a - mu) * (a - mu)).sum::<f64>() / m;
            let (ym, xm) = (mean(&ys), mean(&xc));
            let xvar = var(&xc, xm);
            // Mean 0 (γ = 1, β = 0); variance σ²/(σ² + ε).
            prop_assert!(ym.abs() < 1e-9, "mean {}", ym);
            prop_assert!((var(&ys, ym) - xvar / (xvar + 1e-5)).abs() < 1e-9, "variance {}", var(&ys, ym));
            // Running estimates: m̂ ← 0.9·0 + 0.1·m, v̂ ← 0.9·1 + 0.1·s²·M/(M − 1).
            prop_assert!((bn.running_mean.to_vec()[ch] - 0.1 * xm).abs() <= 1e-12 * (1.0 + xm.abs()));
            let unbiased = xvar * m / (m - 1.0);
            prop_assert!((bn.running_var.to_vec()[ch] - (0.9 + 0.1 * unbiased)).abs() <= 1e-9 * (1.0 + unbiased));
        }
    }
}

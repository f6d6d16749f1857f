//! Every op's backward against central differences in f64, plus the error paths.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::gradcheck::{check_gradients, GradCheckOptions};
use strata_autograd::{AutogradError, Result, Tape, Var};
use strata_kernels::gemm::Trans;
use strata_tensor::Tensor;

const TOL: f64 = 1e-6;

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.random_range(-1.0..1.0)).collect(), shape).unwrap()
}

/// Reduces any value to a scalar with fixed random weights, so every output
/// entry gets a distinct upstream gradient (a plain sum would hide errors that
/// cancel, e.g. in softmax).
fn weighted_sum(tape: &mut Tape<f64>, y: Var, seed: u64) -> Result<Var> {
    let shape = tape.shape(y)?.to_vec();
    let n: usize = shape.iter().product();
    let w = tape.input(rand_tensor(&[n, 1], seed));
    let flat = tape.reshape(y, &[1, n])?;
    let s = tape.matmul(flat, w, Trans::No, Trans::No)?;
    tape.sum(s)
}

fn assert_checks(
    inputs: &[(&str, Tensor<f64>)],
    f: impl Fn(&mut Tape<f64>, &[Var]) -> Result<Var>,
) {
    let reports = check_gradients(inputs, f, &GradCheckOptions::default()).unwrap();
    for r in reports {
        assert!(r.checked > 0);
        assert!(
            r.max_rel_error < TOL,
            "{}: relative error {:e} (abs {:e})",
            r.name,
            r.max_rel_error,
            r.max_abs_error
        );
    }
}

#[test]
fn matmul_all_transpositions() {
    for (ta, tb) in [
        (Trans::No, Trans::No),
        (Trans::No, Trans::Yes),
        (Trans::Yes, Trans::No),
        (Trans::Yes, Trans::Yes),
    ] {
        let a_shape = if ta == Trans::No { [3, 4] } else { [4, 3] };
        let b_shape = if tb == Trans::No { [4, 5] } else { [5, 4] };
        assert_checks(
            &[
                ("a", rand_tensor(&a_shape, 1)),
                ("b", rand_tensor(&b_shape, 2)),
            ],
            |t, v| {
                let y = t.matmul(v[0], v[1], ta, tb)?;
                weighted_sum(t, y, 3)
            },
        );
    }
}

#[test]
fn bias_dense_and_channels() {
    assert_checks(
        &[("x", rand_tensor(&[3, 4], 1)), ("b", rand_tensor(&[4], 2))],
        |t, v| {
            let y = t.add_bias(v[0], v[1])?;
            weighted_sum(t, y, 3)
        },
    );
    assert_checks(
        &[
            ("x", rand_tensor(&[2, 3, 2, 3], 4)),
            ("b", rand_tensor(&[3], 5)),
        ],
        |t, v| {
            let y = t.add_bias(v[0], v[1])?;
            weighted_sum(t, y, 6)
        },
    );
}

/// The residual sum with its ReLU fused: gradients against central
/// differences, and the same values and gradients as `add` then `relu`.
#[test]
fn add_relu_fused() {
    let (a, b) = (rand_tensor(&[3, 7], 60), rand_tensor(&[3, 7], 61));
    assert_checks(&[("a", a.clone()), ("b", b.clone())], |t, v| {
        let y = t.add_act(v[0], v[1], true)?;
        weighted_sum(t, y, 62)
    });
    let run = |fused: bool| {
        let mut t = Tape::<f64>::new();
        let v = [t.leaf(a.clone()), t.leaf(b.clone())];
        let y = if fused {
            t.add_act(v[0], v[1], true).unwrap()
        } else {
            let s = t.add(v[0], v[1]).unwrap();
            t.relu(s).unwrap()
        };
        let e = weighted_sum(&mut t, y, 63).unwrap();
        let g = t.backward(e).unwrap();
        let mut all = t.value(y).unwrap().to_vec();
        for &i in &v {
            all.extend(g.get(i).unwrap().to_vec());
        }
        all
    };
    let (f, s) = (run(true), run(false));
    assert!(f.contains(&0.0));
    assert_eq!(f, s);
}

#[test]
fn relu_add_scale_reshape() {
    assert_checks(
        &[
            ("x", rand_tensor(&[4, 5], 7)),
            ("r", rand_tensor(&[4, 5], 8)),
        ],
        |t, v| {
            let h = t.relu(v[0])?;
            let s = t.add(h, v[1])?; // a residual connection
            let s = t.scale(s, -1.5)?;
            let f = t.reshape(s, &[2, 10])?;
            let f = t.flatten(f)?;
            weighted_sum(t, f, 9)
        },
    );
}

#[test]
fn softmax_cross_entropy_and_softmax() {
    let labels = [2usize, 0, 4];
    assert_checks(&[("logits", rand_tensor(&[3, 5], 10))], |t, v| {
        t.softmax_cross_entropy(v[0], &labels)
    });
    for eps in [0.1, 0.5] {
        assert_checks(&[("logits", rand_tensor(&[3, 5], 13))], |t, v| {
            t.softmax_cross_entropy_smoothed(v[0], &labels, eps)
        });
    }
    assert_checks(&[("logits", rand_tensor(&[3, 5], 11))], |t, v| {
        let s = t.softmax(v[0])?;
        weighted_sum(t, s, 12)
    });
}

#[test]
fn sum_mean_and_l2_penalty() {
    assert_checks(&[("x", rand_tensor(&[3, 3], 13))], |t, v| t.mean(v[0]));
    assert_checks(
        &[
            ("w1", rand_tensor(&[3, 2], 14)),
            ("w2", rand_tensor(&[5], 15)),
        ],
        |t, v| {
            let p = t.l2_penalty(&[v[0], v[1]], 0.3)?;
            let s = t.sum(v[1])?;
            t.add(p, s)
        },
    );
}

#[test]
fn dropout_with_fixed_mask() {
    assert_checks(&[("x", rand_tensor(&[6, 7], 16))], |t, v| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(99);
        let y = t.dropout(v[0], 0.4, true, &mut rng)?;
        weighted_sum(t, y, 17)
    });
}

#[test]
fn two_layer_network_end_to_end() {
    // The chapter's full cost: cross-entropy + (λ/2)Σ wᵀw through two layers.
    let labels = [1usize, 0, 2, 1];
    let inputs = [
        ("w1", rand_tensor(&[6, 3], 20)),
        ("b1", rand_tensor(&[6], 21)),
        ("w2", rand_tensor(&[3, 6], 22)),
        ("b2", rand_tensor(&[3], 23)),
    ];
    let x = rand_tensor(&[4, 3], 24);
    assert_checks(&inputs, |t, v| {
        let xi = t.input(x.clone());
        let h = t.matmul(xi, v[0], Trans::No, Trans::Yes)?;
        let h = t.add_bias(h, v[1])?;
        let h = t.relu(h)?;
        let o = t.matmul(h, v[2], Trans::No, Trans::Yes)?;
        let o = t.add_bias(o, v[3])?;
        let e = t.softmax_cross_entropy(o, &labels)?;
        let r = t.l2_penalty(&[v[0], v[2]], 0.01)?;
        t.add(e, r)
    });
}

/// A custom op whose backward has a sign error, to show the checker catches it.
struct WrongSign;
impl strata_autograd::Backward<f64> for WrongSign {
    fn backward(
        &self,
        _i: &[&Tensor<f64>],
        _o: &Tensor<f64>,
        g: &Tensor<f64>,
        _n: &[bool],
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![Some(g.map(|v| -v))])
    }
}

/// A custom op that forgets a factor 2 (d/dx of 2x).
struct MissingTerm;
impl strata_autograd::Backward<f64> for MissingTerm {
    fn backward(
        &self,
        _i: &[&Tensor<f64>],
        _o: &Tensor<f64>,
        g: &Tensor<f64>,
        _n: &[bool],
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![Some(g.clone())])
    }
}

#[test]
fn gradcheck_catches_wrong_gradients() {
    let x = rand_tensor(&[5], 30);
    let identity = |t: &mut Tape<f64>, v: &[Var]| {
        let val = t.value(v[0])?.clone();
        let y = t.push_op(&[v[0]], val, || Box::new(WrongSign))?;
        weighted_sum(t, y, 31)
    };
    let r = check_gradients(&[("x", x.clone())], identity, &GradCheckOptions::default()).unwrap();
    assert!(
        r[0].max_rel_error > 1.0,
        "a sign error must be caught: {}",
        r[0].max_rel_error
    );
    let double = |t: &mut Tape<f64>, v: &[Var]| {
        let val = t.value(v[0])?.map(|e| 2.0 * e);
        let y = t.push_op(&[v[0]], val, || Box::new(MissingTerm))?;
        weighted_sum(t, y, 32)
    };
    let r = check_gradients(&[("x", x)], double, &GradCheckOptions::default()).unwrap();
    assert!(
        r[0].max_rel_error > 0.4,
        "a missing factor must be caught: {}",
        r[0].max_rel_error
    );
}

#[test]
fn inference_tape_records_nothing() {
    let mut tape = Tape::<f32>::inference();
    let x = tape.leaf(Tensor::ones(&[2, 2]));
    assert!(!tape.requires_grad(x).unwrap());
    let y = tape.relu(x).unwrap();
    let s = tape.sum(y).unwrap();
    assert!(matches!(tape.backward(s), Err(AutogradError::Backward(_))));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let d = tape.dropout(x, 0.5, false, &mut rng).unwrap();
    assert_eq!(d, x, "dropout is the identity at test time");
}

#[test]
fn dropout_scales_kept_units() {
    let mut tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::ones(&[10_000]));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let y = tape.dropout(x, 0.25, true, &mut rng).unwrap();
    let v = tape.value(y).unwrap().to_vec();
    assert!(v
        .iter()
        .all(|&e| e == 0.0 || (e - 1.0 / 0.75).abs() < 1e-12));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        (mean - 1.0).abs() < 0.03,
        "expected output ≈ input on average, got {mean}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let mut t = Tape::<f32>::new();
    let a = t.leaf(Tensor::ones(&[2, 3]));
    let b = t.leaf(Tensor::ones(&[4, 2]));
    let e = t.matmul(a, b, Trans::No, Trans::No).unwrap_err();
    assert!(
        e.to_string().contains("[2, 3]") && e.to_string().contains("[4, 2]"),
        "{e}"
    );
    assert!(matches!(t.add(a, b), Err(AutogradError::Shape { .. })));
    let bias = t.leaf(Tensor::ones(&[2]));
    assert!(t.add_bias(a, bias).is_err());
    let e = t.softmax_cross_entropy(a, &[0, 3]).unwrap_err();
    assert!(
        matches!(
            e,
            AutogradError::LabelOutOfRange {
                label: 3,
                row: 1,
                classes: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(t.softmax_cross_entropy(a, &[0]).is_err());
    for eps in [-0.1, 1.0, f64::NAN] {
        assert!(matches!(
            t.softmax_cross_entropy_smoothed(a, &[0, 1], eps),
            Err(AutogradError::BadSmoothing { .. })
        ));
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    for p in [-0.1, 1.0, f64::NAN] {
        assert!(matches!(
            t.dropout(a, p, true, &mut rng),
            Err(AutogradError::BadProbability { .. })
        ));
    }
    let s = t.relu(a).unwrap();
    assert!(t.backward(s).is_err(), "non-scalar loss");
}

#[test]
fn frozen_parameters_get_no_gradient() {
    let mut w = strata_autograd::Param::new(rand_tensor(&[2, 3], 5), true);
    let b = strata_autograd::Param::new(rand_tensor(&[2], 6), false);
    w.frozen = true;
    let mut t = Tape::new();
    let x = t.input(rand_tensor(&[4, 3], 7));
    let (wv, bv) = (t.param(&w), t.param(&b));
    let h = t.matmul(x, wv, Trans::No, Trans::Yes).unwrap();
    let h = t.add_bias(h, bv).unwrap();
    let s = t.sum(h).unwrap();
    let g = t.backward(s).unwrap();
    assert!(g.param(w.id()).is_none(), "a frozen weight got a gradient");
    assert!(g.param(b.id()).is_some());
}

#[test]
fn gelu_gradients_and_values() {
    // Inputs spread over the curved part and the nearly linear tails.
    let x = rand_tensor(&[3, 7], 31);
    let wide: Vec<f64> = x.to_vec().iter().map(|v| v * 4.0).collect();
    let x = Tensor::from_vec(wide, &[3, 7]).unwrap();
    assert_checks(&[("x", x.clone())], |t, v| {
        let h = t.gelu(v[0])?;
        weighted_sum(t, h, 32)
    });
    let mut t = Tape::new();
    let v = t.input(x.clone());
    let y = t.gelu(v).unwrap();
    let c = (2.0 / std::f64::consts::PI).sqrt();
    for (a, b) in x.to_vec().iter().zip(t.value(y).unwrap().to_vec()) {
        let want = 0.5 * a * (1.0 + (c * (a + 0.044715 * a * a * a)).tanh());
        assert!((b - want).abs() < 1e-15, "gelu({a}) = {b}, want {want}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// GELU is smooth, so no input needs excluding: any shape, any values.
    #[test]
    fn gelu_gradients_on_random_shapes(m in 1usize..5, n in 1usize..6, scale in 0.1f64..6.0, seed in 0u64..1000) {
        let x = rand_tensor(&[m, n], seed);
        let x = Tensor::from_vec(x.to_vec().iter().map(|v| v * scale).collect(), &[m, n]).unwrap();
        let reports = check_gradients(&[("x", x)], |t, v| {
            let h = t.gelu(v[0])?;
            weighted_sum(t, h, seed + 1)
        }, &GradCheckOptions::default()).unwrap();
        for r in reports {
            prop_assert!(r.max_rel_error < 1e-5, "{} {}", r.name, r.max_rel_error);
        }
    }

    #[test]
    fn linear_relu_gradients_on_random_shapes(m in 1usize..6, k in 1usize..7, n in 1usize..6, seed in 0u64..1000) {
        let inputs = [("x", rand_tensor(&[m, k], seed)), ("w", rand_tensor(&[n, k], seed + 1)), ("b", rand_tensor(&[n], seed + 2))];
        // A central difference across ReLU's kink measures neither side: keep
        // every pre-activation well outside the step h = 1e-5 of 0.
        let mut t = Tape::new();
        let v: Vec<Var> = inputs.iter().map(|(_, x)| t.input(x.clone())).collect();
        let h = t.matmul(v[0], v[1], Trans::No, Trans::Yes).unwrap();
        let h = t.add_bias(h, v[2]).unwrap();
        prop_assume!(t.value(h).unwrap().to_vec().iter().all(|z| z.abs() > 1e-3));
        let reports = check_gradients(&inputs, |t, v| {
            let h = t.matmul(v[0], v[1], Trans::No, Trans::Yes)?;
            let h = t.add_bias(h, v[2])?;
            let h = t.relu(h)?;
            weighted_sum(t, h, seed + 3)
        }, &GradCheckOptions::default()).unwrap();
        for r in reports {
            prop_assert!(r.max_rel_error < 1e-5, "{} {}", r.name, r.max_rel_error);
        }
    }
}

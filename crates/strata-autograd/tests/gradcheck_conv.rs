//! Convolution, padding, pooling and batch norm: backward against central
//! differences in f64, forward against naive references, and the error paths.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::gradcheck::{check_gradients, GradCheckOptions};
use strata_autograd::ops::conv2d::{conv_geometry, Conv2dOptions};
use strata_autograd::{AutogradError, Result, Tape, Var};
use strata_kernels::conv::conv2d_naive;
use strata_kernels::gemm::Trans;
use strata_kernels::pad::{Border, Pad2d};
use strata_kernels::pool::OddPolicy;
use strata_tensor::Tensor;

const TOL: f64 = 1e-6;

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.random_range(-1.0..1.0)).collect(), shape).unwrap()
}

/// A scalar with fixed random weights per output entry (distinct upstream gradients).
fn weighted_sum(tape: &mut Tape<f64>, y: Var, seed: u64) -> Result<Var> {
    let n: usize = tape.shape(y)?.iter().product();
    let w = tape.input(rand_tensor(&[n, 1], seed));
    let flat = tape.reshape(y, &[1, n])?;
    let s = tape.matmul(flat, w, Trans::No, Trans::No)?;
    tape.sum(s)
}

fn assert_checks(
    inputs: &[(&str, Tensor<f64>)],
    f: impl Fn(&mut Tape<f64>, &[Var]) -> Result<Var>,
) {
    let opts = GradCheckOptions {
        max_entries: 120,
        ..GradCheckOptions::default()
    };
    for r in check_gradients(inputs, f, &opts).unwrap() {
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

fn pad4(top: usize, bottom: usize, left: usize, right: usize) -> Pad2d {
    Pad2d {
        top,
        bottom,
        left,
        right,
    }
}

fn check_conv(x: &[usize], w: &[usize], stride: [usize; 2], pad: Pad2d, bias: bool) {
    let opts = Conv2dOptions { stride, pad };
    let mut inputs = vec![("x", rand_tensor(x, 1)), ("w", rand_tensor(w, 2))];
    if bias {
        inputs.push(("b", rand_tensor(&[w[0]], 3)));
    }
    assert_checks(&inputs, |t, v| {
        let y = t.conv2d(v[0], v[1], v.get(2).copied(), opts)?;
        weighted_sum(t, y, 4)
    });
}

#[test]
fn conv2d_odd_and_even_kernels_strides_padding() {
    check_conv(
        &[2, 3, 5, 6],
        &[4, 3, 3, 3],
        [1, 1],
        Pad2d::uniform(1),
        true,
    );
    check_conv(
        &[2, 2, 7, 5],
        &[3, 2, 3, 3],
        [2, 2],
        Pad2d::uniform(1),
        false,
    );
    check_conv(&[1, 2, 6, 6], &[2, 2, 2, 2], [1, 1], pad4(0, 1, 1, 0), true);
    check_conv(&[2, 3, 5, 7], &[2, 3, 4, 2], [2, 3], pad4(1, 2, 0, 1), true);
    check_conv(&[2, 3, 4, 4], &[5, 3, 1, 1], [1, 1], Pad2d::default(), true);
    check_conv(
        &[2, 3, 5, 5],
        &[4, 3, 1, 1],
        [2, 2],
        Pad2d::default(),
        false,
    );
    check_conv(
        &[1, 1, 3, 3],
        &[1, 1, 3, 3],
        [1, 1],
        Pad2d::default(),
        false,
    );
}

#[test]
fn pad2d_every_border() {
    for border in [
        Border::Zero,
        Border::Constant(0.7),
        Border::Reflect,
        Border::Replicate,
    ] {
        assert_checks(&[("x", rand_tensor(&[2, 2, 3, 4], 5))], |t, v| {
            let y = t.pad2d(v[0], pad4(2, 1, 3, 2), border)?;
            weighted_sum(t, y, 6)
        });
    }
}

#[test]
fn conv2d_after_reflection_and_replication() {
    for border in [Border::Reflect, Border::Replicate, Border::Constant(-0.5)] {
        assert_checks(
            &[
                ("x", rand_tensor(&[2, 2, 5, 4], 7)),
                ("w", rand_tensor(&[3, 2, 3, 2], 8)),
            ],
            |t, v| {
                let p = t.pad2d(v[0], pad4(1, 1, 1, 0), border)?;
                let opts = Conv2dOptions {
                    stride: [2, 1],
                    pad: Pad2d::default(),
                };
                let y = t.conv2d(p, v[1], None, opts)?;
                weighted_sum(t, y, 9)
            },
        );
    }
}

#[test]
fn max_pool_floor_ceil_and_overlap() {
    for (shape, win, stride) in [
        ([2, 3, 6, 6], [2, 2], [2, 2]),
        ([2, 2, 7, 5], [2, 2], [2, 2]),
        ([1, 2, 7, 7], [3, 3], [2, 2]),
        ([1, 2, 5, 4], [3, 2], [1, 2]),
    ] {
        for policy in [OddPolicy::Floor, OddPolicy::Ceil] {
            assert_checks(&[("x", rand_tensor(&shape, 10))], |t, v| {
                let y = t.max_pool2d(v[0], win, stride, policy)?;
                weighted_sum(t, y, 11)
            });
        }
    }
}

#[test]
fn max_pool_output_sizes() {
    let mut t = Tape::<f64>::new();
    let x = t.input(Tensor::zeros(&[1, 1, 7, 5]));
    let y = t.max_pool2d(x, [2, 2], [2, 2], OddPolicy::Floor).unwrap();
    assert_eq!(t.shape(y).unwrap(), &[1, 1, 3, 2]);
    let y = t.max_pool2d(x, [2, 2], [2, 2], OddPolicy::Ceil).unwrap();
    assert_eq!(t.shape(y).unwrap(), &[1, 1, 4, 3]);
}

#[test]
fn global_avg_pool_gradient() {
    assert_checks(&[("x", rand_tensor(&[2, 3, 3, 5], 12))], |t, v| {
        let y = t.global_avg_pool(v[0])?;
        weighted_sum(t, y, 13)
    });
}

#[test]
fn batch_norm_training_dense_and_conv() {
    for shape in [vec![5, 4], vec![3, 2, 3, 4]] {
        let c = shape[1];
        // Scale the input so the statistics are far from 0 and 1.
        let x = rand_tensor(&shape, 14).map(|v| 3.0 * v + 1.5);
        assert_checks(
            &[
                ("x", x),
                ("gamma", rand_tensor(&[c], 15)),
                ("beta", rand_tensor(&[c], 16)),
            ],
            |t, v| {
                let (y, _) = t.batch_norm_train(v[0], v[1], v[2], 1e-5)?;
                weighted_sum(t, y, 17)
            },
        );
    }
}

#[test]
fn batch_norm_eval_gradient_and_value() {
    let (mean, var) = (vec![0.2, -0.1, 0.4], vec![1.5, 0.3, 2.0]);
    assert_checks(
        &[
            ("x", rand_tensor(&[2, 3, 2, 2], 18)),
            ("gamma", rand_tensor(&[3], 19)),
            ("beta", rand_tensor(&[3], 20)),
        ],
        |t, v| {
            let y = t.batch_norm_eval(v[0], v[1], v[2], &mean, &var, 1e-5)?;
            weighted_sum(t, y, 21)
        },
    );
}

#[test]
fn batch_norm_train_normalises() {
    let mut t = Tape::<f64>::new();
    let x = t.input(rand_tensor(&[8, 3, 2, 2], 22).map(|v| 5.0 * v - 2.0));
    let g = t.input(Tensor::ones(&[3]));
    let b = t.input(Tensor::zeros(&[3]));
    let (y, stats) = t.batch_norm_train(x, g, b, 1e-5).unwrap();
    assert_eq!(stats.count, 32);
    let yv = t.value(y).unwrap().to_vec();
    for c in 0..3 {
        let vals: Vec<f64> = (0..8)
            .flat_map(|n| (0..4).map(move |p| (n * 3 + c) * 4 + p))
            .map(|i| yv[i])
            .collect();
        let m = vals.iter().sum::<f64>() / 32.0;
        let v = vals.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / 32.0;
        assert!(
            m.abs() < 1e-12 && (v - 1.0).abs() < 1e-4,
            "channel {c}: mean {m}, var {v}"
        );
    }
}

fn shape_error(r: Result<Var>) -> String {
    match r {
        Err(e @ AutogradError::Shape { .. }) => e.to_string(),
        Err(e) => panic!("expected a shape error, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn bad_convolutions_are_errors_naming_the_shapes() {
    let mut t = Tape::<f64>::new();
    let x = t.input(Tensor::zeros(&[1, 3, 4, 4]));
    let w5 = t.input(Tensor::zeros(&[2, 3, 5, 5]));
    let w2c = t.input(Tensor::zeros(&[2, 2, 3, 3]));
    let w3 = t.input(Tensor::zeros(&[2, 3, 3, 3]));
    let e = shape_error(t.conv2d(x, w5, None, Conv2dOptions::default()));
    assert!(
        e.contains("larger than the padded input") && e.contains("[1, 3, 4, 4]"),
        "{e}"
    );
    // With padding 1 the 5×5 kernel fits.
    let opts = Conv2dOptions {
        stride: [1, 1],
        pad: Pad2d::uniform(1),
    };
    assert!(t.conv2d(x, w5, None, opts).is_ok());
    let e = shape_error(t.conv2d(x, w2c, None, Conv2dOptions::default()));
    assert!(
        e.contains("3 channels") && e.contains("[2, 2, 3, 3]"),
        "{e}"
    );
    let zero = Conv2dOptions {
        stride: [0, 1],
        pad: Pad2d::default(),
    };
    let e = shape_error(t.conv2d(x, w3, None, zero));
    assert!(e.contains("stride"), "{e}");
    let e = shape_error(t.max_pool2d(x, [5, 5], [2, 2], OddPolicy::Floor));
    assert!(e.contains("does not fit"), "{e}");
    let e = shape_error(t.max_pool2d(x, [2, 2], [0, 2], OddPolicy::Floor));
    assert!(e.contains("positive"), "{e}");
    let one = t.input(Tensor::zeros(&[1, 3]));
    let g = t.input(Tensor::ones(&[3]));
    assert!(t.batch_norm_train(one, g, g, 1e-5).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn conv2d_matches_naive_and_gradchecks(
        n in 1usize..3, c in 1usize..4, o in 1usize..4,
        h in 1usize..8, w in 1usize..8, kh in 1usize..5, kw in 1usize..5,
        sh in 1usize..4, sw in 1usize..4, pt in 0usize..3, pb in 0usize..3, pl in 0usize..3, pr in 0usize..3,
        seed in 0u64..1000,
    ) {
        let pad = pad4(pt, pb, pl, pr);
        prop_assume!(h + pt + pb >= kh && w + pl + pr >= kw);
        let opts = Conv2dOptions { stride: [sh, sw], pad };
        let (xs, ws) = ([n, c, h, w], [o, c, kh, kw]);
        let (x, k, b) = (rand_tensor(&xs, seed), rand_tensor(&ws, seed + 1), rand_tensor(&[o], seed + 2));
        let g = conv_geometry(&xs, &ws, &opts).unwrap();
        let mut want = vec![0.0; g.batch * g.out_image()];
        conv2d_naive(&g, &x.to_vec(), &k.to_vec(), Some(&b.to_vec()), &mut want);
        let mut t = Tape::new();
        let (xv, kv, bv) = (t.input(x.clone()), t.input(k.clone()), t.input(b.clone()));
        let y = t.conv2d(xv, kv, Some(bv), opts).unwrap();
        let got = t.value(y).unwrap().to_vec();
        for (a, e) in got.iter().zip(&want) {
            prop_assert!((a - e).abs() < 1e-12, "{a} vs {e}");
        }
        let opts_gc = GradCheckOptions { max_entries: 30, ..GradCheckOptions::default() };
        let reports = check_gradients(&[("x", x), ("w", k), ("b", b)], |t, v| {
            let y = t.conv2d(v[0], v[1], Some(v[2]), opts)?;
            weighted_sum(t, y, seed + 3)
        }, &opts_gc).unwrap();
        for r in reports {
            prop_assert!(r.max_rel_error < TOL, "{}: {:e}", r.name, r.max_rel_error);
        }
    }

    #[test]
    fn pooled_sizes_follow_floor_and_ceil(h in 1usize..20, k in 1usize..5, s in 1usize..4) {
        use strata_kernels::pool::pooled_len;
        let floor = pooled_len(h, k, s, OddPolicy::Floor);
        let ceil = pooled_len(h, k, s, OddPolicy::Ceil).unwrap();
        if h >= k {
            let f = floor.unwrap();
            prop_assert_eq!(f, (h - k) / s + 1);
            prop_assert!(ceil == f || ceil == f + 1);
            // Ceil covers every pixel when windows tile (k ≥ s); floor never leaves the slice.
            if k >= s { prop_assert!((ceil - 1) * s + k >= h); }
            prop_assert!((f - 1) * s + k <= h);
        } else {
            prop_assert!(floor.is_none());
        }
        // Ceil's last window starts inside the slice.
        prop_assert!((ceil - 1) * s < h);
        if k == 2 && s == 2 {
            prop_assert_eq!(floor.unwrap_or(0), h / 2);
            prop_assert_eq!(ceil, h.div_ceil(2));
        }
    }
}

#[test]
fn batch_norm_relu_fused_gradients() {
    // β shifted so some outputs are cut by the ReLU and some pass.
    let x = rand_tensor(&[3, 2, 3, 4], 40).map(|v| 2.0 * v + 0.5);
    let beta = rand_tensor(&[2], 41).map(|v| 0.3 * v);
    assert_checks(
        &[
            ("x", x.clone()),
            ("gamma", rand_tensor(&[2], 42)),
            ("beta", beta.clone()),
        ],
        |t, v| {
            let (y, _) = t.batch_norm_train_act(v[0], v[1], v[2], 1e-5, true)?;
            weighted_sum(t, y, 43)
        },
    );
    let (mean, var) = (vec![0.2, -0.1], vec![1.5, 0.3]);
    assert_checks(
        &[("x", x), ("gamma", rand_tensor(&[2], 44)), ("beta", beta)],
        |t, v| {
            let y = t.batch_norm_eval_act(v[0], v[1], v[2], &mean, &var, 1e-5, true)?;
            weighted_sum(t, y, 45)
        },
    );
}

/// The fused op computes what batch norm then ReLU compute, values and
/// gradients, in training and evaluation mode.
#[test]
fn batch_norm_relu_fused_matches_separate_ops() {
    let x = rand_tensor(&[4, 3, 2, 5], 46).map(|v| 3.0 * v - 0.5);
    let (gamma, beta) = (rand_tensor(&[3], 47), rand_tensor(&[3], 48));
    let (mean, var) = (vec![0.1, 0.3, -0.2], vec![0.5, 1.2, 2.0]);
    for train in [true, false] {
        let run = |fused: bool| {
            let mut t = Tape::<f64>::new();
            let v = [
                t.leaf(x.clone()),
                t.leaf(gamma.clone()),
                t.leaf(beta.clone()),
            ];
            let y = match (train, fused) {
                (true, true) => {
                    t.batch_norm_train_act(v[0], v[1], v[2], 1e-5, true)
                        .unwrap()
                        .0
                }
                (true, false) => {
                    let (z, _) = t.batch_norm_train(v[0], v[1], v[2], 1e-5).unwrap();
                    t.relu(z).unwrap()
                }
                (false, true) => t
                    .batch_norm_eval_act(v[0], v[1], v[2], &mean, &var, 1e-5, true)
                    .unwrap(),
                (false, false) => {
                    let z = t
                        .batch_norm_eval(v[0], v[1], v[2], &mean, &var, 1e-5)
                        .unwrap();
                    t.relu(z).unwrap()
                }
            };
            let e = weighted_sum(&mut t, y, 49).unwrap();
            let grads = t.backward(e).unwrap();
            let out = t.value(y).unwrap().to_vec();
            let g: Vec<Vec<f64>> = v.iter().map(|&i| grads.get(i).unwrap().to_vec()).collect();
            (out, g)
        };
        let (a, b) = (run(true), run(false));
        assert!(a.0.contains(&0.0) && a.0.iter().any(|&v| v > 0.0));
        for (p, q) in a.0.iter().zip(&b.0) {
            assert!((p - q).abs() < 1e-12, "train {train}: value {p} vs {q}");
        }
        for (ga, gb) in a.1.iter().zip(&b.1) {
            for (p, q) in ga.iter().zip(gb) {
                assert!((p - q).abs() < 1e-10, "train {train}: gradient {p} vs {q}");
            }
        }
    }
}

#[test]
fn conv2d_relu_fused_gradients_and_values() {
    let (x, w, b) = (
        rand_tensor(&[2, 3, 5, 6], 50),
        rand_tensor(&[4, 3, 3, 3], 51),
        rand_tensor(&[4], 52),
    );
    let opts = Conv2dOptions {
        stride: [1, 1],
        pad: Pad2d::uniform(1),
    };
    assert_checks(
        &[("x", x.clone()), ("w", w.clone()), ("b", b.clone())],
        |t, v| {
            let y = t.conv2d_act(v[0], v[1], Some(v[2]), opts, true)?;
            weighted_sum(t, y, 53)
        },
    );
    // Same values and gradients as conv2d then relu.
    let run = |fused: bool| {
        let mut t = Tape::<f64>::new();
        let v = [t.leaf(x.clone()), t.leaf(w.clone()), t.leaf(b.clone())];
        let y = if fused {
            t.conv2d_act(v[0], v[1], Some(v[2]), opts, true).unwrap()
        } else {
            let z = t.conv2d(v[0], v[1], Some(v[2]), opts).unwrap();
            t.relu(z).unwrap()
        };
        let e = weighted_sum(&mut t, y, 54).unwrap();
        let g = t.backward(e).unwrap();
        let mut all = t.value(y).unwrap().to_vec();
        for &i in &v {
            all.extend(g.get(i).unwrap().to_vec());
        }
        all
    };
    let (a, c) = (run(true), run(false));
    for (p, q) in a.iter().zip(&c) {
        assert!((p - q).abs() < 1e-12, "{p} vs {q}");
    }
}

/// The residual form `relu(conv(x) + b + r)`: gradients for x, w, b and r
/// against finite differences, with and without bias, and the same values
/// and gradients as conv2d → add → relu; a wrong-shaped residual is an error.
#[test]
fn conv2d_residual_fused_gradients_and_values() {
    let (x, w, b, r) = (
        rand_tensor(&[2, 3, 5, 6], 60),
        rand_tensor(&[4, 3, 3, 3], 61),
        rand_tensor(&[4], 62),
        rand_tensor(&[2, 4, 5, 6], 63),
    );
    let opts = Conv2dOptions {
        stride: [1, 1],
        pad: Pad2d::uniform(1),
    };
    assert_checks(
        &[
            ("x", x.clone()),
            ("w", w.clone()),
            ("b", b.clone()),
            ("r", r.clone()),
        ],
        |t, v| {
            let y = t.conv2d_add_act(v[0], v[1], Some(v[2]), Some(v[3]), opts, true)?;
            weighted_sum(t, y, 64)
        },
    );
    assert_checks(
        &[("x", x.clone()), ("w", w.clone()), ("r", r.clone())],
        |t, v| {
            let y = t.conv2d_add_act(v[0], v[1], None, Some(v[2]), opts, false)?;
            weighted_sum(t, y, 65)
        },
    );
    let run = |fused: bool| {
        let mut t = Tape::<f64>::new();
        let v = [
            t.leaf(x.clone()),
            t.leaf(w.clone()),
            t.leaf(b.clone()),
            t.leaf(r.clone()),
        ];
        let y = if fused {
            t.conv2d_add_act(v[0], v[1], Some(v[2]), Some(v[3]), opts, true)
                .unwrap()
        } else {
            let z = t.conv2d(v[0], v[1], Some(v[2]), opts).unwrap();
            t.add_act(z, v[3], true).unwrap()
        };
        let e = weighted_sum(&mut t, y, 66).unwrap();
        let g = t.backward(e).unwrap();
        let mut all = t.value(y).unwrap().to_vec();
        for &i in &v {
            all.extend(g.get(i).unwrap().to_vec());
        }
        all
    };
    let (a, c) = (run(true), run(false));
    assert_eq!(a.len(), c.len());
    for (p, q) in a.iter().zip(&c) {
        assert!((p - q).abs() < 1e-12, "{p} vs {q}");
    }
    let mut t = Tape::<f64>::new();
    let v = [t.leaf(x), t.leaf(w), t.leaf(rand_tensor(&[2, 4, 5, 5], 67))];
    let err = t
        .conv2d_add_act(v[0], v[1], None, Some(v[2]), opts, true)
        .unwrap_err();
    assert!(err.to_string().contains("residual"), "{err}");
}

/// Convolution with slice statistics, then batch norm from them: the same
/// values and gradients as convolution then batch norm, bit for bit, and
/// gradients that agree with finite differences; statistics of the wrong
/// length are an error naming what was expected.
#[test]
fn batch_norm_from_convolution_slice_stats() {
    let pad = Pad2d {
        top: 1,
        bottom: 1,
        left: 1,
        right: 1,
    };
    let opts = Conv2dOptions {
        stride: [1, 1],
        pad,
    };
    let inputs = [
        ("x", rand_tensor(&[3, 2, 5, 4], 60)),
        ("w", rand_tensor(&[3, 2, 3, 3], 61)),
        ("gamma", rand_tensor(&[3], 62)),
        ("beta", rand_tensor(&[3], 63)),
    ];
    let fused = |t: &mut Tape<f64>, v: &[Var]| -> Result<Var> {
        let (h, st) = t.conv2d_slice_stats(v[0], v[1], None, opts)?;
        Ok(t.batch_norm_train_act_from(h, v[2], v[3], 1e-5, true, &st)?
            .0)
    };
    assert_checks(&inputs, |t, v| {
        let y = fused(t, v)?;
        weighted_sum(t, y, 64)
    });
    let run = |with_stats: bool| {
        let mut t = Tape::<f64>::new();
        let v: Vec<Var> = inputs.iter().map(|(_, x)| t.leaf(x.clone())).collect();
        let y = if with_stats {
            fused(&mut t, &v).unwrap()
        } else {
            let h = t.conv2d(v[0], v[1], None, opts).unwrap();
            t.batch_norm_train_act(h, v[2], v[3], 1e-5, true).unwrap().0
        };
        let e = weighted_sum(&mut t, y, 65).unwrap();
        let grads = t.backward(e).unwrap();
        let g: Vec<Vec<f64>> = v.iter().map(|&i| grads.get(i).unwrap().to_vec()).collect();
        (t.value(y).unwrap().to_vec(), g)
    };
    assert_eq!(run(true), run(false));
    let mut t = Tape::<f64>::new();
    let v: Vec<Var> = inputs.iter().map(|(_, x)| t.leaf(x.clone())).collect();
    let (h, st) = t.conv2d_slice_stats(v[0], v[1], None, opts).unwrap();
    let err = t
        .batch_norm_train_act_from(h, v[2], v[3], 1e-5, false, &st[1..])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("one entry per image and channel (3·3 = 9), got 8"),
        "{err}"
    );
    // The profile files both under the ops' usual names.
    let p = strata_autograd::Profiler::new();
    let mut t = Tape::<f64>::new().with_profiler(p.clone());
    let v: Vec<Var> = inputs.iter().map(|(_, x)| t.leaf(x.clone())).collect();
    fused(&mut t, &v).unwrap();
    let names: Vec<String> = p.report().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    for op in ["conv2d_add_act", "batch_norm_train_act"] {
        assert!(names.iter().any(|n| n == op), "{names:?}");
    }
}

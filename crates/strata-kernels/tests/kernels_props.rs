//! Every non-GEMM kernel agrees with a naive reference, for f32 and f64.

use proptest::prelude::*;
use strata_kernels::{elementwise as ew, optim, reduce, softmax};

fn vecs(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-10.0f64..10.0, n)
}

proptest! {
    #[test]
    fn elementwise_match_reference(x in vecs(37), y in vecs(37), alpha in -3.0f64..3.0) {
        let mut out = vec![0.0; 37];
        ew::add(&x, &y, &mut out);
        for i in 0..37 { prop_assert_eq!(out[i], x[i] + y[i]); }
        ew::add_relu(&x, &y, &mut out);
        for i in 0..37 { prop_assert_eq!(out[i], (x[i] + y[i]).max(0.0)); }
        ew::mul(&x, &y, &mut out);
        for i in 0..37 { prop_assert_eq!(out[i], x[i] * y[i]); }
        let mut z = y.clone();
        ew::axpy(alpha, &x, &mut z);
        for i in 0..37 { prop_assert!((z[i] - (alpha * x[i] + y[i])).abs() < 1e-12); }
        let mut s = x.clone();
        ew::scale(alpha, &mut s);
        for i in 0..37 { prop_assert_eq!(s[i], alpha * x[i]); }
        ew::relu(&x, &mut out);
        for i in 0..37 { prop_assert_eq!(out[i], x[i].max(0.0)); }
        let mut dx = vec![0.0; 37];
        ew::relu_backward(&out, &y, &mut dx);
        for i in 0..37 { prop_assert_eq!(dx[i], if x[i] > 0.0 { y[i] } else { 0.0 }); }
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut of = vec![0.0f32; 37];
        ew::relu(&xf, &mut of);
        for i in 0..37 { prop_assert_eq!(of[i], xf[i].max(0.0)); }
    }

    #[test]
    fn reductions_match_reference(outer in 1usize..4, len in 1usize..9, inner in 1usize..5, seed in vecs(4 * 8 * 4)) {
        let n = outer * len * inner;
        let x = &seed[..n];
        let total: f64 = x.iter().sum();
        prop_assert!((reduce::sum(x) - total).abs() < 1e-9);
        prop_assert!((reduce::mean(x) - total / n as f64).abs() < 1e-9);
        let mut s = vec![0.0; outer * inner];
        reduce::sum_axis(x, outer, len, inner, &mut s);
        let mut m = vec![0.0; outer * inner];
        let mut am = vec![0; outer * inner];
        reduce::max_axis(x, outer, len, inner, &mut m, &mut am);
        for o in 0..outer { for i in 0..inner {
            let col: Vec<f64> = (0..len).map(|l| x[(o * len + l) * inner + i]).collect();
            let want: f64 = col.iter().sum();
            prop_assert!((s[o * inner + i] - want).abs() < 1e-9);
            let mx = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert_eq!(m[o * inner + i], mx);
            prop_assert_eq!(col[am[o * inner + i]], mx);
            prop_assert_eq!(am[o * inner + i], col.iter().position(|&v| v == mx).unwrap());
        }}
        let f: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        prop_assert!((reduce::sum(&f) as f64 - total).abs() < 1e-3);
        // Centred sums (batch-norm statistics), about an arbitrary centre.
        let c = seed[n % seed.len()];
        let sq: f64 = x.iter().map(|v| (v - c) * (v - c)).sum();
        prop_assert!((reduce::sum_sq_dev(x, c) - sq).abs() < 1e-9 * (1.0 + sq));
        let y: Vec<f64> = x.iter().rev().copied().collect();
        let dot: f64 = x.iter().zip(&y).map(|(a, v)| a * (v - c)).sum();
        prop_assert!((reduce::dot_dev(x, &y, c) - dot).abs() < 1e-9 * (1.0 + dot.abs() + sq));
    }

    #[test]
    fn softmax_matches_reference(rows in 1usize..5, cols in 1usize..12, shift in -500.0f64..500.0, seed in vecs(5 * 12)) {
        let x: Vec<f64> = seed[..rows * cols].iter().map(|v| v + shift).collect();
        let mut s = vec![0.0; x.len()];
        let mut ls = vec![0.0; x.len()];
        softmax::softmax_rows(&x, cols, &mut s);
        softmax::log_softmax_rows(&x, cols, &mut ls);
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
            let mut total = 0.0;
            for c in 0..cols {
                let want = (row[c] - m).exp() / z;
                prop_assert!((s[r * cols + c] - want).abs() < 1e-12);
                prop_assert!((ls[r * cols + c] - want.ln()).abs() < 1e-9);
                total += s[r * cols + c];
            }
            prop_assert!((total - 1.0).abs() < 1e-12);
        }
        // Fused loss = mean of −log s_y; gradient = (s − onehot)/M.
        let labels: Vec<usize> = (0..rows).map(|r| (r * 7) % cols).collect();
        let mut g = vec![0.0; x.len()];
        let loss = softmax::softmax_cross_entropy(&x, &labels, cols, &mut g);
        let want: f64 = (0..rows).map(|r| -ls[r * cols + labels[r]]).sum::<f64>() / rows as f64;
        prop_assert!((loss - want).abs() < 1e-9);
        for r in 0..rows { for c in 0..cols {
            let onehot = if c == labels[r] { 1.0 } else { 0.0 };
            prop_assert!((g[r * cols + c] - (s[r * cols + c] - onehot) / rows as f64).abs() < 1e-12);
        }}
        // Smoothed targets q = (1 − ε)·onehot + ε/C: loss = mean of −Σ q_k log s_k,
        // gradient = (s − q)/M.
        let eps = 0.1 + 0.05 * (rows as f64);
        let q = |r: usize, c: usize| (1.0 - eps) * f64::from(u8::from(c == labels[r])) + eps / cols as f64;
        let loss = softmax::softmax_cross_entropy_smoothed(&x, &labels, cols, eps, &mut g);
        let want: f64 = (0..rows)
            .map(|r| (0..cols).map(|c| -q(r, c) * ls[r * cols + c]).sum::<f64>())
            .sum::<f64>() / rows as f64;
        prop_assert!((loss - want).abs() < 1e-9, "{} vs {}", loss, want);
        for r in 0..rows { for c in 0..cols {
            prop_assert!((g[r * cols + c] - (s[r * cols + c] - q(r, c)) / rows as f64).abs() < 1e-12);
        }}
        // f32 stays finite for huge logits thanks to the max shift.
        let xf: Vec<f32> = x.iter().map(|&v| v as f32 * 100.0).collect();
        let mut sf = vec![0.0f32; x.len()];
        softmax::softmax_rows(&xf, cols, &mut sf);
        prop_assert!(sf.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn optimiser_kernels_match_formulas(theta in vecs(9), g in vecs(9)) {
        let (lr, mu) = (0.1, 0.9);
        let mut t = theta.clone();
        let mut v = vec![0.5; 9];
        optim::sgd_momentum(&mut t, &g, &mut v, lr, mu);
        for i in 0..9 {
            let vi = mu * 0.5 + lr * g[i];
            prop_assert!((v[i] - vi).abs() < 1e-12 && (t[i] - (theta[i] - vi)).abs() < 1e-12);
        }
        let mut t = theta.clone();
        let mut c = vec![1.0; 9];
        optim::adagrad(&mut t, &g, &mut c, lr, 1e-6);
        for i in 0..9 {
            let ci = 1.0 + g[i] * g[i];
            prop_assert!((t[i] - (theta[i] - lr * g[i] / (ci.sqrt() + 1e-6))).abs() < 1e-12);
        }
        let mut t = theta.clone();
        let mut c = vec![1.0; 9];
        optim::rmsprop(&mut t, &g, &mut c, lr, 0.9, 1e-6);
        for i in 0..9 {
            let ci = 0.9 + 0.1 * g[i] * g[i];
            prop_assert!((c[i] - ci).abs() < 1e-12);
            prop_assert!((t[i] - (theta[i] - lr * g[i] / (ci.sqrt() + 1e-6))).abs() < 1e-12);
        }
    }
}

#[test]
fn argmax_rows_picks_first_max() {
    let x = [1.0f32, 3.0, 3.0, 0.0, -1.0, -2.0];
    assert_eq!(reduce::argmax_rows(&x, 2, 3), vec![1, 0]);
}

#[test]
fn sum_squares_and_finite() {
    let x: Vec<f32> = (0..19).map(|v| v as f32).collect();
    assert_eq!(
        ew::sum_squares(&x),
        (0..19).map(|v| (v * v) as f32).sum::<f32>()
    );
    assert!(ew::all_finite(&x));
    assert!(!ew::all_finite(&[1.0, f32::NAN]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Slices long enough to run on the pool agree with the one-thread loop.
    #[test]
    fn parallel_elementwise_match_reference(seed in 0u64..1000, extra in 0usize..5000) {
        let n = (1 << 17) + extra;
        let gen = |k: u64| -> Vec<f32> {
            let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k);
            (0..n).map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            }).collect()
        };
        let (x, y) = (gen(1), gen(2));
        let mut out = vec![0.0f32; n];
        ew::add(&x, &y, &mut out);
        prop_assert!(out.iter().enumerate().all(|(i, &o)| o == x[i] + y[i]));
        ew::relu(&x, &mut out);
        prop_assert!(out.iter().enumerate().all(|(i, &o)| o == x[i].max(0.0)));
        let mut dx = vec![0.0f32; n];
        ew::relu_backward(&out, &y, &mut dx);
        let want = |i: usize| if x[i] > 0.0 { y[i] } else { 0.0 };
        prop_assert!(dx.iter().enumerate().all(|(i, &d)| d == want(i)));
        ew::scale_into(0.5, &x, &mut out);
        prop_assert!(out.iter().enumerate().all(|(i, &o)| o == 0.5 * x[i]));
        let mut acc = y.clone();
        ew::add_assign(&mut acc, &x);
        prop_assert!(acc.iter().enumerate().all(|(i, &a)| a == y[i] + x[i]));
        // Fused momentum + L2 equals axpy then sgd_momentum, bit for bit.
        let (mut t1, mut v1) = (x.clone(), y.clone());
        let (mut t2, mut v2) = (x.clone(), y.clone());
        let g = gen(3);
        optim::sgd_momentum_l2(&mut t1, &g, &mut v1, 0.01, 0.9, 5e-4);
        let mut g2 = g.clone();
        ew::axpy(5e-4, &t2, &mut g2);
        optim::sgd_momentum(&mut t2, &g2, &mut v2, 0.01, 0.9);
        prop_assert_eq!(t1, t2);
        prop_assert_eq!(v1, v2);
    }
}

proptest! {
    /// The one-pass per-slice statistics (`channel_mean_var`) equal the
    /// two-pass definition, `μ = Σx/M`, `σ² = Σ(x − μ)²/M`, on data with a
    /// large offset (where `Σx² − Mμ²` would cancel) and on tiny shapes.
    #[test]
    fn channel_mean_var_matches_two_passes(
        n in 1usize..6, c in 1usize..4, s in 1usize..40,
        offset in -1e4f64..1e4, seed in vecs(6 * 4 * 40),
    ) {
        let x: Vec<f64> = (0..n * c * s).map(|i| offset + seed[i % seed.len()]).collect();
        let got = strata_kernels::batchnorm::channel_mean_var(&x, n, c, s);
        for (ch, &(mean, var)) in got.iter().enumerate() {
            let vals: Vec<f64> = (0..n).flat_map(|i| x[(i * c + ch) * s..][..s].to_vec()).collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|&v| (v - m) * (v - m)).sum::<f64>() / vals.len() as f64;
            prop_assert!((mean - m).abs() <= 1e-9 * (1.0 + m.abs()), "mean {} vs {}", mean, m);
            prop_assert!((var - v).abs() <= 1e-9 * (1.0 + v), "var {} vs {}", var, v);
        }
        // f32, far from zero: the variance keeps its relative accuracy.
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let gotf = strata_kernels::batchnorm::channel_mean_var(&xf, n, c, s);
        for (ch, &(_, var)) in gotf.iter().enumerate() {
            let vals: Vec<f64> = (0..n).flat_map(|i| xf[(i * c + ch) * s..][..s].iter().map(|&v| v as f64).collect::<Vec<_>>()).collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|&v| (v - m) * (v - m)).sum::<f64>() / vals.len() as f64;
            prop_assert!((var as f64 - v).abs() <= 1e-3 * v + 1e-6 * (1.0 + m.abs()), "f32 var {} vs {}", var, v);
        }
    }
}

proptest! {
    /// 2×2 stride-2 pooling with byte codes gives the maxima and arg-max
    /// pixels of the general pooling, and its one-pass backward equals
    /// `dx[arg] += dy` on a zeroed `dx`, for any size, either odd policy,
    /// ties (values on a coarse grid) and NaNs.
    #[test]
    fn pair_pooling_matches_general_pooling(
        planes in 1usize..4, h in 1usize..12, w in 1usize..40, ceil in any::<bool>(),
        vals in proptest::collection::vec(-3i8..4, 4 * 12 * 40),
    ) {
        use strata_kernels::pool::{self, OddPolicy, PoolGeometry};
        let policy = if ceil { OddPolicy::Ceil } else { OddPolicy::Floor };
        let g = PoolGeometry { planes, h, w, kh: 2, kw: 2, stride_h: 2, stride_w: 2, policy };
        let x: Vec<f32> = vals[..planes * h * w]
            .iter()
            .map(|&v| if v == 3 { f32::NAN } else { v as f32 * 0.5 })
            .collect();
        let n = planes * g.out_h() * g.out_w();
        let (mut want, mut arg) = (vec![0.0f32; n], vec![0u32; n]);
        pool::max_pool2d(&g, &x, &mut want, &mut arg);
        let (mut y, mut code) = (vec![0.0f32; n], vec![0u8; n]);
        pool::max_pool2x2(&g, &x, &mut y, &mut code);
        let dy: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
        let mut expect = vec![0.0f32; x.len()];
        let ohw = (g.out_h() * g.out_w()).max(1);
        for i in 0..n {
            let (p, u, v) = (i / ohw, i % ohw / g.out_w(), i % g.out_w());
            let k = code[i] as usize;
            let at = (2 * u + k / 2).min(h - 1) * w + (2 * v + k % 2).min(w - 1);
            prop_assert_eq!(y[i].to_bits(), x[p * h * w + at].to_bits());
            if !want[i].is_nan() {
                prop_assert_eq!((y[i], at), (want[i], arg[i] as usize));
            } else {
                prop_assert!(y[i].is_nan());
            }
            expect[p * h * w + at] += dy[i];
        }
        let mut dx = vec![f32::NAN; x.len()];
        pool::max_pool2x2_backward(&g, &dy, &code, &mut dx);
        prop_assert_eq!(dx, expect);
    }
}

proptest! {
    /// Batch norm's backward through a fused ReLU, which recomputes the gate
    /// from `x`, `γ` and `β`, gives bit for bit what gating `∂E/∂y` by the
    /// stored output first and then running the plain backward gives (f32,
    /// slices with and without a tail past the eight lanes, β shifted so
    /// that the ReLU cuts some values and passes others).
    #[test]
    fn fused_relu_backward_equals_gating_by_the_output(
        n in 1usize..5, c in 1usize..4, s in 1usize..30,
        shift in -1.0f64..1.0, seed in vecs(5 * 4 * 30 * 2 + 8),
    ) {
        use strata_kernels::batchnorm as bn;
        let len = n * c * s;
        let f = |i: usize| seed[i % seed.len()] as f32;
        let x: Vec<f32> = (0..len).map(|i| 2.0 * f(i) + 0.25).collect();
        let dy: Vec<f32> = (0..len).map(|i| f(i + len + 3)).collect();
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + f(2 * len + i)).collect();
        let beta: Vec<f32> = (0..c).map(|i| shift as f32 + 0.3 * f(2 * len + 4 + i)).collect();
        let (mut y, mut mean, mut var, mut invstd) =
            (vec![0.0f32; len], vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; c]);
        bn::batch_norm_train_act(
            &x, n, c, s, &gamma, &beta, 1e-5, true, &mut y, &mut mean, &mut var, &mut invstd,
        );
        let mut gated = vec![0.0f32; len];
        ew::relu_backward(&y, &dy, &mut gated);
        let run = |g: &[f32], relu: Option<bn::FusedRelu<'_, f32>>| {
            let (mut dx, mut dg, mut db) = (vec![0.0f32; len], vec![0.0f32; c], vec![0.0f32; c]);
            bn::batch_norm_train_backward(
                &x, g, relu, n, c, s, &gamma, &mean, &invstd, &mut dx, &mut dg, &mut db,
            );
            (dx, dg, db)
        };
        let want = run(&gated, None);
        let got = run(&dy, Some(bn::FusedRelu { gamma: &gamma, beta: &beta }));
        prop_assert_eq!(got, want);
    }
}

proptest! {
    /// Batch norm's training forward from the per-slice terms of its input
    /// (`slice_stats`, as a convolution hands them over) gives, bit for bit,
    /// the output and statistics of the forward that reads the input for
    /// them (f32, data far from zero, with and without ReLU).
    #[test]
    fn forward_from_slice_stats_equals_forward(
        n in 1usize..5, c in 1usize..4, s in 2usize..40, relu in proptest::bool::ANY,
        offset in -50.0f64..50.0, seed in vecs(5 * 4 * 40 + 8),
    ) {
        use strata_kernels::batchnorm as bn;
        let len = n * c * s;
        let f = |i: usize| seed[i % seed.len()] as f32;
        let x: Vec<f32> = (0..len).map(|i| 3.0 * f(i) + offset as f32).collect();
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + f(len + i)).collect();
        let beta: Vec<f32> = (0..c).map(|i| 0.3 * f(len + 4 + i)).collect();
        let run = |slices: Option<&[(f32, f32)]>| {
            let (mut y, mut mean, mut var, mut invstd) =
                (vec![0.0f32; len], vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; c]);
            match slices {
                Some(st) => bn::batch_norm_train_act_from_slices(
                    &x, n, c, s, &gamma, &beta, 1e-5, relu, st, &mut y, &mut mean, &mut var,
                    &mut invstd,
                ),
                None => bn::batch_norm_train_act(
                    &x, n, c, s, &gamma, &beta, 1e-5, relu, &mut y, &mut mean, &mut var,
                    &mut invstd,
                ),
            }
            (y, mean, var, invstd)
        };
        let slices: Vec<(f32, f32)> = x.chunks_exact(s).map(bn::slice_stats).collect();
        prop_assert_eq!(run(Some(&slices)), run(None));
    }
}

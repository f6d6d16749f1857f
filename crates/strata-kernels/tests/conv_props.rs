//! Convolution kernels against the naive definition, and the adjoint
//! identities that make backward-data and backward-weights correct:
//! `⟨dy, conv(x; w)⟩ = ⟨conv_backward_data(dy; w), x⟩ = ⟨conv_backward_weights(x, dy), w⟩`.

use proptest::prelude::*;
use strata_kernels::conv::{self, ConvGeometry};

fn data(n: usize, seed: u64) -> Vec<f64> {
    // A small LCG: deterministic values in [-1, 1).
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn grouped_images_match_naive(
        batch in 1usize..12, c_in in 1usize..3, c_out in 1usize..3,
        h in 10usize..20, w in 10usize..20, k in 1usize..4, stride in 1usize..3, pad in 0usize..2,
        seed in 0u64..1000,
    ) {
        // Outputs of 100-400 pixels put 3-10 images in one GEMM, with a partial last group.
        let g = ConvGeometry { batch, c_in, h, w, c_out, kh: k, kw: k, stride_h: stride, stride_w: stride,
            pad_top: pad, pad_bottom: pad, pad_left: pad, pad_right: pad };
        let (x, kern) = (data(batch * g.in_image(), seed), data(g.weight_len(), seed + 1));
        let n_out = batch * g.out_image();
        let (mut y, mut want) = (vec![0.0; n_out], vec![0.0; n_out]);
        conv::conv2d_forward(&g, &x, &kern, None, &mut y);
        conv::conv2d_naive(&g, &x, &kern, None, &mut want);
        for (a, e) in y.iter().zip(&want) {
            prop_assert!((a - e).abs() < 1e-12);
        }
        let dy = data(n_out, seed + 3);
        let lhs = dot(&dy, &want);
        let mut dx = vec![0.0; x.len()];
        conv::conv2d_backward_data(&g, &kern, &dy, &mut dx);
        prop_assert!((lhs - dot(&dx, &x)).abs() < 1e-9 * (1.0 + lhs.abs()));
        let mut dw = vec![0.0; kern.len()];
        conv::conv2d_backward_weights(&g, &x, &dy, &mut dw, None);
        prop_assert!((lhs - dot(&dw, &kern)).abs() < 1e-9 * (1.0 + lhs.abs()));
    }

    #[test]
    fn fast_paths_match_naive_and_adjoints_hold(
        batch in 1usize..4, c_in in 1usize..5, c_out in 1usize..5,
        h in 1usize..9, w in 1usize..9, kh in 1usize..5, kw in 1usize..5,
        stride_h in 1usize..4, stride_w in 1usize..4,
        pad_top in 0usize..3, pad_bottom in 0usize..3, pad_left in 0usize..3, pad_right in 0usize..3,
        seed in 0u64..1000,
    ) {
        let g = ConvGeometry { batch, c_in, h, w, c_out, kh, kw, stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right };
        prop_assume!(g.out_h() > 0 && g.out_w() > 0);
        let (x, k, b) = (data(batch * g.in_image(), seed), data(g.weight_len(), seed + 1), data(c_out, seed + 2));
        let n_out = batch * g.out_image();
        let (mut y, mut want) = (vec![0.0; n_out], vec![0.0; n_out]);
        conv::conv2d_forward(&g, &x, &k, Some(&b), &mut y);
        conv::conv2d_naive(&g, &x, &k, Some(&b), &mut want);
        for (a, e) in y.iter().zip(&want) {
            prop_assert!((a - e).abs() < 1e-12);
        }
        let dy = data(n_out, seed + 3);
        let mut y0 = vec![0.0; n_out];
        conv::conv2d_forward(&g, &x, &k, None, &mut y0);
        let lhs = dot(&dy, &y0);
        let mut dx = vec![0.0; x.len()];
        conv::conv2d_backward_data(&g, &k, &dy, &mut dx);
        prop_assert!((lhs - dot(&dx, &x)).abs() < 1e-9 * (1.0 + lhs.abs()));
        let (mut dw, mut db) = (vec![0.0; k.len()], vec![0.0; c_out]);
        conv::conv2d_backward_weights(&g, &x, &dy, &mut dw, Some(&mut db));
        prop_assert!((lhs - dot(&dw, &k)).abs() < 1e-9 * (1.0 + lhs.abs()));
        let sum_dy: f64 = dy.iter().sum();
        prop_assert!((db.iter().sum::<f64>() - sum_dy).abs() < 1e-9 * (1.0 + sum_dy.abs()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// 3×3 stride-1 layers with ≥ 16 slices each way run by Winograd's
    /// F(2×2, 3×3) where the CPU has direct tiles: odd and even sizes (blocks
    /// cropped at the bottom and right), one-pixel images, every padding,
    /// bias, residual and ReLU, several images per group and per task; and
    /// backward-data (the flipped kernel, by the same route) is its adjoint.
    #[test]
    fn winograd_matches_naive(
        batch in 1usize..5, c_in in 64usize..80, c_out in 64usize..80,
        h in 1usize..12, w in 1usize..12, even in any::<bool>(),
        pad_top in 0usize..3, pad_bottom in 0usize..3, pad_left in 0usize..3, pad_right in 0usize..3,
        relu in any::<bool>(), seed in 0u64..1000,
    ) {
        let mut g = ConvGeometry { batch, c_in, h, w, c_out, kh: 3, kw: 3, stride_h: 1, stride_w: 1,
            pad_top, pad_bottom, pad_left, pad_right };
        prop_assume!(g.out_h() > 0 && g.out_w() > 0);
        if even {
            // Even output sizes, where `choose` takes Winograd (odd ones
            // take another path here; the crate's own unit test runs
            // Winograd on them too).
            g.pad_bottom += g.out_h() % 2;
            g.pad_right += g.out_w() % 2;
        }
        let (x, k, b) = (data(batch * g.in_image(), seed), data(g.weight_len(), seed + 1), data(c_out, seed + 2));
        let n_out = batch * g.out_image();
        let r = data(n_out, seed + 4);
        let (mut y, mut want) = (vec![f64::NAN; n_out], vec![0.0; n_out]);
        conv::conv2d_forward_fused(&g, &x, &k, Some(&b), Some(&r), relu, &mut y);
        conv::conv2d_naive(&g, &x, &k, Some(&b), &mut want);
        for ((a, e), r) in y.iter().zip(&want).zip(&r) {
            let e = if relu { (e + r).max(0.0) } else { e + r };
            prop_assert!((a - e).abs() < 1e-11, "{a} vs {e}");
        }
        let dy = data(n_out, seed + 3);
        let mut y0 = vec![0.0; n_out];
        conv::conv2d_naive(&g, &x, &k, None, &mut y0);
        let lhs = dot(&dy, &y0);
        let mut dx = vec![0.0; x.len()];
        conv::conv2d_backward_data(&g, &k, &dy, &mut dx);
        prop_assert!((lhs - dot(&dx, &x)).abs() < 1e-9 * (1.0 + lhs.abs()));
    }
}

/// Where this CPU has direct tiles (AVX2 + FMA), the property above really
/// runs Winograd: wide 3×3 stride-1 layers choose it (odd sizes where the
/// cropped blocks cost little), thin or strided ones not.
#[test]
fn winograd_is_chosen_for_wide_3x3_layers() {
    let g = ConvGeometry {
        batch: 2,
        c_in: 64,
        h: 8,
        w: 8,
        c_out: 96,
        kh: 3,
        kw: 3,
        stride_h: 1,
        stride_w: 1,
        pad_top: 1,
        pad_bottom: 1,
        pad_left: 1,
        pad_right: 1,
    };
    let avx2 = cfg!(target_arch = "x86_64")
        && std::env::var_os("STRATA_CONV_NO_WINOGRAD").is_none()
        && std::env::var_os("STRATA_CONV_NO_DIRECT").is_none()
        && std::env::var_os("STRATA_CONV_EXPLICIT").is_none()
        && strata_kernels::gemm::GemmImpl::Avx2.is_available();
    if avx2 {
        assert_eq!(conv::choose(&g), conv::ConvAlgo::Winograd);
        // Odd sizes whose extra row and column of blocks cost at most 35 %:
        // 15×15 and 7×7 (airbench's layers), not 5×5 or 3×3.
        for side in [15, 7] {
            let odd = ConvGeometry {
                h: side,
                w: side,
                ..g
            };
            assert_eq!(
                conv::choose(&odd),
                conv::ConvAlgo::Winograd,
                "{side}×{side}"
            );
        }
    }
    assert_ne!(
        conv::choose(&ConvGeometry { c_in: 3, ..g }),
        conv::ConvAlgo::Winograd
    );
    for side in [5, 3] {
        assert_ne!(
            conv::choose(&ConvGeometry {
                h: side,
                w: side,
                ..g
            }),
            conv::ConvAlgo::Winograd,
            "{side}×{side}"
        );
    }
    assert_ne!(
        conv::choose(&ConvGeometry {
            stride_h: 2,
            stride_w: 2,
            ..g
        }),
        conv::ConvAlgo::Winograd
    );
    assert_ne!(
        conv::choose(&ConvGeometry { kh: 5, kw: 5, ..g }),
        conv::ConvAlgo::Winograd
    );
}

/// Timing of the three passes on a ResNet-like layer (3×3, 64→64, 32×32,
/// batch 64): `cargo test -p strata-kernels --release --test conv_props -- --ignored --nocapture`.
#[test]
#[ignore]
fn conv_speed() {
    for (cin, cout, hw, k, batch) in [
        (64, 64, 32, 3, 64),
        (16, 16, 32, 3, 128),
        (64, 64, 8, 3, 128),
        (1, 32, 28, 3, 128),
        (32, 64, 14, 3, 128),
    ] {
        let pad = k / 2;
        let g = ConvGeometry {
            batch,
            c_in: cin,
            h: hw,
            w: hw,
            c_out: cout,
            kh: k,
            kw: k,
            stride_h: 1,
            stride_w: 1,
            pad_top: pad,
            pad_bottom: pad,
            pad_left: pad,
            pad_right: pad,
        };
        let x = vec![0.5f32; batch * g.in_image()];
        let wt = vec![0.1f32; g.weight_len()];
        let mut y = vec![0.0f32; batch * g.out_image()];
        let mut dx = vec![0.0f32; x.len()];
        let mut dw = vec![0.0f32; wt.len()];
        let flop = 2.0 * g.macs() as f64;
        let time = |f: &mut dyn FnMut()| {
            f();
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        };
        let tf = time(&mut || conv::conv2d_forward(&g, &x, &wt, None, &mut y));
        let td = time(&mut || conv::conv2d_backward_data(&g, &wt, &y, &mut dx));
        let tw = time(&mut || conv::conv2d_backward_weights(&g, &x, &y, &mut dw, None));
        eprintln!(
            "conv {cin}→{cout} {k}×{k} {hw}×{hw} batch {batch}: forward {:.2} ms ({:.0} GFLOPS), backward-data {:.2} ms ({:.0}), backward-weights {:.2} ms ({:.0})",
            tf * 1e3, flop / tf / 1e9, td * 1e3, flop / td / 1e9, tw * 1e3, flop / tw / 1e9
        );
    }
}

/// The GEMM underneath, alone, for comparison with [`conv_speed`].
#[test]
#[ignore]
fn gemm_speed_for_conv_shapes() {
    use strata_kernels::gemm::{gemm, Trans};
    for (m, n, k) in [
        (64, 1024, 576),
        (64, 8192, 576),
        (32, 196, 288),
        (512, 512, 512),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let mut best = f64::MAX;
        for _ in 0..10 {
            let t = std::time::Instant::now();
            gemm(
                Trans::No,
                Trans::No,
                m,
                n,
                k,
                1.0,
                &a,
                k,
                &b,
                n,
                0.0,
                &mut c,
                n,
            );
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "gemm {m}×{n}×{k}: {:.0} GFLOPS (threads {})",
            2.0 * (m * n * k) as f64 / best / 1e9,
            strata_kernels::parallel::num_threads()
        );
    }
}

/// A 3×3 stride-1 layer with one pixel of padding (output size = input size).
fn same_3x3(batch: usize, c_in: usize, c_out: usize, side: usize) -> ConvGeometry {
    ConvGeometry {
        batch,
        c_in,
        h: side,
        w: side,
        c_out,
        kh: 3,
        kw: 3,
        stride_h: 1,
        stride_w: 1,
        pad_top: 1,
        pad_bottom: 1,
        pad_left: 1,
        pad_right: 1,
    }
}

/// The wide odd-sized layers of examples/cifar10-fast.toml (which now take
/// Winograd with cropped blocks) through the public entry points: forward
/// against the definition, backward-data and backward-weights by the adjoint
/// identities, in f64.
#[test]
fn wide_odd_layers_agree_with_the_definition() {
    for (c_in, c_out, side) in [(64, 64, 15), (64, 96, 7), (64, 64, 9)] {
        let g = same_3x3(2, c_in, c_out, side);
        let x = data(2 * c_in * side * side, 1);
        let k = data(c_out * c_in * 9, 2);
        let n = 2 * c_out * side * side;
        let (mut y, mut want) = (vec![0.0; n], vec![0.0; n]);
        conv::conv2d_forward(&g, &x, &k, None, &mut y);
        conv::conv2d_naive(&g, &x, &k, None, &mut want);
        let err = y
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            err < 1e-10,
            "{c_in}→{c_out} {side}×{side}: forward off by {err}"
        );
        let dy = data(n, 3);
        let mut dx = vec![0.0; x.len()];
        conv::conv2d_backward_data(&g, &k, &dy, &mut dx);
        let (lhs, rhs) = (dot(&dy, &want), dot(&dx, &x));
        assert!(
            (lhs - rhs).abs() < 1e-9 * (1.0 + lhs.abs()),
            "{c_in}→{c_out} {side}×{side}: backward-data"
        );
        let mut dk = vec![0.0; k.len()];
        conv::conv2d_backward_weights(&g, &x, &dy, &mut dk, None);
        assert!(
            (lhs - dot(&dk, &k)).abs() < 1e-9 * (1.0 + lhs.abs()),
            "{c_in}→{c_out} {side}×{side}: backward-weights"
        );
    }
}

/// The same odd wide layers in f32 (the SIMD tiles a network trains on),
/// fused with bias, residual and ReLU, against the f64 definition; and the
/// f32 backward passes against f64 ones.
#[test]
fn wide_odd_layers_agree_in_f32() {
    for (c_in, c_out, side, batch) in [
        (64, 64, 7, 3),
        (64, 64, 15, 2),
        (96, 64, 7, 5),
        (64, 64, 7, 128),
    ] {
        let g = same_3x3(batch, c_in, c_out, side);
        let n = batch * c_out * side * side;
        let (x, k, b, r) = (
            data(batch * c_in * side * side, 7),
            data(c_out * c_in * 9, 8),
            data(c_out, 9),
            data(n, 10),
        );
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let (x32, k32, b32, r32) = (f(&x), f(&k), f(&b), f(&r));
        let mut y = vec![f32::NAN; n];
        conv::conv2d_forward_fused(&g, &x32, &k32, Some(&b32), Some(&r32), true, &mut y);
        let mut want = vec![0.0; n];
        conv::conv2d_naive(&g, &x, &k, Some(&b), &mut want);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (a, e)) in y.iter().zip(&want).enumerate() {
            let e = (e + r[i]).max(0.0);
            assert!(
                (*a as f64 - e).abs() < 1e-4 * scale,
                "{c_in}→{c_out} {side}×{side}: y[{i}] = {a}, want {e}"
            );
        }
        let dy = data(n, 11);
        let (mut dx, mut dx64) = (vec![0.0f32; x.len()], vec![0.0; x.len()]);
        conv::conv2d_backward_data(&g, &k32, &f(&dy), &mut dx);
        conv::conv2d_backward_data(&g, &k, &dy, &mut dx64);
        let scale = dx64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (a, e)) in dx.iter().zip(&dx64).enumerate() {
            assert!(
                (*a as f64 - e).abs() < 1e-4 * scale,
                "{c_in}→{c_out} {side}×{side}: dx[{i}] = {a}, want {e}"
            );
        }
        let (mut dk, mut dk64) = (vec![0.0f32; k.len()], vec![0.0; k.len()]);
        conv::conv2d_backward_weights(&g, &x32, &f(&dy), &mut dk, None);
        conv::conv2d_backward_weights(&g, &x, &dy, &mut dk64, None);
        let scale = dk64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (a, e)) in dk.iter().zip(&dk64).enumerate() {
            assert!(
                (*a as f64 - e).abs() < 1e-4 * scale,
                "{c_in}→{c_out} {side}×{side}: dk[{i}] = {a}, want {e}"
            );
        }
    }
}

//! Every implementation against a naive triple loop.

use proptest::prelude::*;

use super::kernel::emulated::{EMU512_F32, EMU512_F64};
use super::*;

/// The scalar types under test, with their emulated AVX-512-geometry kernel.
trait Testable: GemmScalar {
    const EMU512: &'static Kernel<Self>;
}
impl Testable for f32 {
    const EMU512: &'static Kernel<f32> = &EMU512_F32;
}
impl Testable for f64 {
    const EMU512: &'static Kernel<f64> = &EMU512_F64;
}

/// Which code computes the product.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `gemm` / `gemm_bias_act` (the dispatcher).
    Auto,
    /// A forced implementation.
    Imp(GemmImpl),
    /// The driver with the emulated AVX-512 kernel.
    Emu512,
}

/// Deterministic pseudo-random values in [-1, 1).
fn fill<T: GemmScalar>(len: usize, seed: u64) -> Vec<T> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            T::of(((s >> 40) as f64 / (1u64 << 24) as f64) * 2.0 - 1.0)
        })
        .collect()
}

/// A GEMM problem with padded leading dimensions.
#[derive(Clone, Debug)]
struct Case {
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    pad: (usize, usize, usize),
    alpha: f64,
    beta: f64,
    nan_c: bool,
    seed: u64,
}

impl Case {
    /// Runs `via` with `epi`, returns (C, reference C, tolerance).
    fn run<T: Testable>(&self, via: Via, epi: Epilogue<'_, T>) -> (Vec<T>, Vec<f64>, f64) {
        let (m, n, k) = (self.m, self.n, self.k);
        let (ar, ac) = if self.ta == Trans::No { (m, k) } else { (k, m) };
        let (br, bc) = if self.tb == Trans::No { (k, n) } else { (n, k) };
        let (lda, ldb, ldc) = (ac + self.pad.0, bc + self.pad.1, n + self.pad.2);
        let a: Vec<T> = fill(ar * lda, self.seed);
        let b: Vec<T> = fill(br * ldb, self.seed + 1);
        let mut c: Vec<T> = fill(m * ldc, self.seed + 2);
        if self.nan_c {
            c.iter_mut().for_each(|x| *x = T::nan());
        }
        let ga = |i: usize, p: usize| {
            if self.ta == Trans::No {
                a[i * lda + p]
            } else {
                a[p * lda + i]
            }
            .as_f64()
        };
        let gb = |p: usize, j: usize| {
            if self.tb == Trans::No {
                b[p * ldb + j]
            } else {
                b[j * ldb + p]
            }
            .as_f64()
        };
        let mut want: Vec<f64> = c.iter().map(|x| x.as_f64()).collect();
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| ga(i, p) * gb(p, j)).sum();
                let old = if self.beta == 0.0 {
                    0.0
                } else {
                    self.beta * want[i * ldc + j]
                };
                let mut v = self.alpha * dot + old;
                v += match epi.bias {
                    Bias::None => 0.0,
                    Bias::PerRow(b) => b[i].as_f64(),
                    Bias::PerCol(b) => b[j].as_f64(),
                };
                want[i * ldc + j] = if epi.relu && v < 0.0 { 0.0 } else { v };
            }
        }
        let (alpha, beta) = (T::of(self.alpha), T::of(self.beta));
        let e = &epi;
        let (ops, dims) = ((self.ta, self.tb), (m, n, k));
        match via {
            Via::Imp(i) => super::run(
                i,
                ops,
                dims,
                alpha,
                (&a, lda),
                (&b, ldb),
                beta,
                (&mut c, ldc),
                e,
            ),
            // The driver's contract: m, n, k ≥ 1 and α ≠ 0 (the dispatcher handles the rest).
            Via::Emu512 if m * n * k == 0 || alpha == T::zero() => {
                let c64 = c.iter().map(|x| x.as_f64()).collect();
                return (c, c64, 0.0);
            }
            Via::Emu512 => {
                let kern = T::EMU512;
                driver::run(
                    kern,
                    ops.0,
                    dims,
                    alpha,
                    (&a, lda),
                    driver::BOperand::Source(&super::pack::MatrixB {
                        tb: ops.1,
                        b: &b,
                        ldb,
                    }),
                    beta,
                    (&mut c, ldc),
                    e,
                )
            }
            Via::Auto if epi.is_noop() => gemm(
                self.ta, self.tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut c, ldc,
            ),
            Via::Auto => gemm_bias_act(
                self.ta, self.tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut c, ldc, epi,
            ),
        }
        let eps = T::epsilon().as_f64();
        (
            c,
            want,
            eps * 4.0 * (k as f64 + 2.0) * (1.0 + self.alpha.abs() + self.beta.abs()),
        )
    }

    fn assert_ok<T: Testable>(&self, via: Via, epi: Epilogue<'_, T>) {
        let (got, want, tol) = self.run(via, epi);
        for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
            let g = g.as_f64();
            let ok = if w.is_nan() {
                g.is_nan()
            } else {
                (g - w).abs() <= tol * (1.0 + w.abs())
            };
            assert!(ok, "{} {via:?} {self:?}: C[{idx}] = {g}, want {w}", T::NAME);
        }
    }
}

fn impls() -> Vec<Via> {
    let mut v: Vec<_> = GemmImpl::ALL
        .into_iter()
        .filter(|i| i.is_available())
        .map(Via::Imp)
        .collect();
    v.extend([Via::Auto, Via::Emu512]);
    v
}

fn check_all(case: &Case) {
    for imp in impls() {
        case.assert_ok::<f32>(imp, Epilogue::NONE);
        case.assert_ok::<f64>(imp, Epilogue::NONE);
    }
}

const TRANS: [(Trans, Trans); 4] = [
    (Trans::No, Trans::No),
    (Trans::No, Trans::Yes),
    (Trans::Yes, Trans::No),
    (Trans::Yes, Trans::Yes),
];

fn case(ta: Trans, tb: Trans, m: usize, n: usize, k: usize) -> Case {
    Case {
        ta,
        tb,
        m,
        n,
        k,
        pad: (0, 0, 0),
        alpha: 1.0,
        beta: 0.0,
        nan_c: false,
        seed: 7,
    }
}

#[test]
fn doc_example() {
    let a = [1.0f32, 2., 3., 4., 5., 6.];
    let b = [1.0f32, 0., 0., 1., 1., 1.];
    for imp in GemmImpl::ALL.into_iter().filter(|i| i.is_available()) {
        let mut c = [f32::NAN; 4];
        gemm_with(
            imp,
            Trans::No,
            Trans::No,
            2,
            2,
            3,
            1.0,
            &a,
            3,
            &b,
            2,
            0.0,
            &mut c,
            2,
        );
        assert_eq!(c, [4., 5., 10., 11.], "{imp:?}");
    }
}

#[test]
fn shapes_across_blocks_and_edges() {
    // Sizes straddling tiles (6, 12, 16, 32), blocks (kc = 256, mc = 144/192) and
    // the serial/parallel threshold; all four transposition combos.
    for &(m, n, k) in &[
        (1, 1, 1),
        (7, 17, 5),
        (13, 33, 257),
        (145, 70, 300),
        (200, 129, 64),
        (128, 10, 1024),
        (37, 300, 128),
    ] {
        for (ta, tb) in TRANS {
            check_all(&case(ta, tb, m, n, k));
        }
    }
}

#[test]
fn beta_zero_overwrites_nan_and_k_zero_scales() {
    for k in [0, 3, 300] {
        let mut c = case(Trans::No, Trans::Yes, 50, 40, k);
        c.nan_c = true;
        check_all(&c);
        c.nan_c = false;
        c.beta = 0.5;
        check_all(&c);
    }
}

#[test]
fn alpha_zero_ignores_operands() {
    let mut c = case(Trans::No, Trans::No, 9, 9, 9);
    c.alpha = 0.0;
    c.beta = 2.0;
    check_all(&c);
}

#[test]
fn epilogue_bias_and_relu() {
    let rb: Vec<f64> = fill(300, 3);
    for (relu, (m, n, k)) in [
        (true, (30, 50, 20)),
        (false, (200, 300, 40)),
        (true, (145, 129, 300)),
    ] {
        let mut c = case(Trans::No, Trans::Yes, m, n, k);
        c.beta = 1.0;
        for imp in impls() {
            let rb32: Vec<f32> = rb.iter().map(|&x| x as f32).collect();
            for bias in [Bias::None, Bias::PerRow(&rb32[..]), Bias::PerCol(&rb32[..])] {
                c.assert_ok::<f32>(imp, Epilogue { bias, relu });
            }
            c.assert_ok::<f64>(
                imp,
                Epilogue {
                    bias: Bias::PerCol(&rb),
                    relu,
                },
            );
        }
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let c = Case {
        pad: (3, 1, 2),
        beta: 0.5,
        ..case(Trans::Yes, Trans::No, 300, 290, 520)
    };
    let imp = Via::Imp(choose::<f32>(300, 290, 520));
    crate::parallel::set_num_threads(1);
    let (one, _, _) = c.run::<f32>(imp, Epilogue::NONE);
    crate::parallel::set_num_threads(2);
    let (two, _, _) = c.run::<f32>(imp, Epilogue::NONE);
    crate::parallel::set_num_threads(0);
    assert!(one
        .iter()
        .zip(&two)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
#[should_panic(expected = "gemm: B holds")]
fn short_slice_panics() {
    let mut c = [0.0f32; 4];
    gemm(
        Trans::No,
        Trans::No,
        2,
        2,
        2,
        1.0,
        &[0.0; 4],
        2,
        &[0.0; 3],
        2,
        0.0,
        &mut c,
        2,
    );
}

fn trans() -> impl Strategy<Value = Trans> {
    prop_oneof![Just(Trans::No), Just(Trans::Yes)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_naive(
        ta in trans(), tb in trans(),
        m in 1usize..70, n in 1usize..90, k in 0usize..300,
        pad in (0usize..4, 0usize..4, 0usize..4),
        alpha in prop_oneof![Just(1.0), Just(-0.5), Just(2.0)],
        beta in prop_oneof![Just(0.0), Just(1.0), Just(-1.5)],
        nan_c in any::<bool>(), seed in any::<u64>(),
    ) {
        let nan_c = nan_c && beta == 0.0;
        check_all(&Case { ta, tb, m, n, k, pad, alpha, beta, nan_c, seed });
    }
}

/// The AVX transposing packer writes exactly what the scalar gather writes,
/// for both panel widths that use it and depths with and without a tail.
#[cfg(target_arch = "x86_64")]
#[test]
fn transposed_pack_matches_scalar() {
    use super::pack::{pack_b, pack_bt_f32_avx};
    if !is_x86_feature_detected!("avx") {
        return;
    }
    for (nr, kc, p0, j0, ldb) in [
        (16usize, 37usize, 3usize, 0usize, 50usize),
        (16, 8, 0, 16, 8),
        (32, 19, 5, 7, 29),
    ] {
        let n = j0 + 2 * nr + 5;
        let b: Vec<f32> = (0..n * ldb).map(|i| i as f32 * 0.5 - 3.0).collect();
        let nc = n - j0;
        let panels = nc.div_ceil(nr);
        let mut slow = vec![f32::NAN; panels * kc * nr];
        let mut fast = vec![f32::NAN; panels * kc * nr];
        let args = (Trans::Yes, (p0, kc), (j0, nc));
        pack_b(
            args.0,
            &b,
            ldb,
            args.1,
            args.2,
            nr,
            0..panels,
            &mut slow,
            None,
        );
        let f = Some(pack_bt_f32_avx as super::pack::PackTransposed<f32>);
        pack_b(args.0, &b, ldb, args.1, args.2, nr, 0..panels, &mut fast, f);
        assert_eq!(
            slow.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            fast.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "nr {nr} kc {kc}"
        );
    }
}

/// `copy_run` copies every length exactly, including the overlapping cases.
#[test]
fn copy_run_all_lengths() {
    for len in 0..70 {
        let src: Vec<f32> = (0..len).map(|i| i as f32 + 1.0).collect();
        let mut dst = vec![0f32; len];
        super::copy_run(&mut dst, &src);
        assert_eq!(dst, src, "length {len}");
    }
}

/// B packed once gives bit-identical products to `gemm_bias_act` packing it
/// per call: several column blocks (the test build packs small blocks),
/// uneven depth blocks, edge tiles, both op(B) layouts, bias + ReLU, and
/// reused for several different A; degenerate sizes too.
#[test]
fn prepacked_b_matches_packing_per_call() {
    fn check<T: GemmScalar>() {
        for (m, n, k, tb) in [
            (13, 300, 100, Trans::Yes),
            (128, 70, 784, Trans::Yes),
            (7, 33, 5, Trans::No),
            (1, 1, 1, Trans::No),
            (5, 9, 0, Trans::Yes),
        ] {
            let ldb = if tb == Trans::Yes { k.max(1) } else { n };
            let b: Vec<T> = fill(k * n, 7);
            let bias: Vec<T> = fill(n, 8);
            let packed = PackedB::new(tb, k, n, &b, ldb);
            assert_eq!((packed.k(), packed.n()), (k, n));
            for seed in [1, 2] {
                let a: Vec<T> = fill(m * k, seed);
                let epi = || Epilogue {
                    bias: Bias::PerCol(&bias),
                    relu: true,
                };
                let mut want = vec![T::zero(); m * n];
                gemm_bias_act(
                    Trans::No,
                    tb,
                    m,
                    n,
                    k,
                    T::one(),
                    &a,
                    k.max(1),
                    &b,
                    ldb,
                    T::zero(),
                    &mut want,
                    n,
                    epi(),
                );
                let mut got = vec![T::nan(); m * n];
                gemm_prepacked(
                    Trans::No,
                    m,
                    T::one(),
                    &a,
                    k.max(1),
                    &packed,
                    T::zero(),
                    &mut got,
                    n,
                    epi(),
                );
                assert_eq!(got, want, "{m}×{n}×{k} {tb:?}");
            }
        }
    }
    check::<f32>();
    check::<f64>();
}

/// The tile width follows the sweep: the widest set unless a narrower one
/// computes at most ¾ as many columns (on a host with AVX-512 and AVX2, a
/// 3×3 image's 15 columns take the 16-wide tiles, a 7×7 image's 63 the
/// 32-wide ones); with one set, that set.
#[test]
fn direct_tiles_follow_the_sweep_width() {
    let sets: Vec<usize> = super::direct_tile_sets::<f32>().map(|d| d.nr).collect();
    let Some(&widest) = sets.first() else {
        return;
    };
    for cols in [1, 15, 22, 63, 64, 255, 900] {
        let nr = super::direct_tiles_for::<f32>(cols).unwrap().nr;
        let computed = |nr: usize| cols.div_ceil(nr) * nr;
        let best = sets.iter().copied().min_by_key(|&n| computed(n)).unwrap();
        let want = if 4 * computed(best) <= 3 * computed(widest) {
            best
        } else {
            widest
        };
        assert_eq!(nr, want, "{cols} columns");
    }
    if sets.starts_with(&[32, 16]) {
        assert_eq!(super::direct_tiles_for::<f32>(15).unwrap().nr, 16);
        assert_eq!(super::direct_tiles_for::<f32>(63).unwrap().nr, 32);
    }
}

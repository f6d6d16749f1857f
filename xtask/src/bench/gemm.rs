//! GEMM workloads: square sgemm/dgemm and neural-net layer shapes, for every
//! implementation available on this CPU plus what `gemm()` picks, and, built
//! with the `gemm-crate` feature, the `gemm` crate (0.19, `x86-v4`) on the
//! same thread pool as the baseline to beat.

use strata_kernels::gemm::{
    bf16_available, choose, gemm, gemm_bf16, gemm_with, Bias, Epilogue, GemmImpl, GemmScalar, Trans,
};

use super::{Opts, Out, Record, Shape};

/// A measured implementation.
#[derive(Clone, Copy)]
enum Cand {
    /// One of strata's (or the portable `matrixmultiply`).
    Own(GemmImpl),
    /// What `gemm()` picks.
    Chosen,
    /// f32 operands rounded to bf16 on AMX tiles (`gemm_bf16`), where the
    /// host has them: a reduced-precision column, not a rival to the f32 ones.
    Bf16,
    /// The `gemm` crate, as a baseline.
    #[cfg(feature = "gemm-crate")]
    GemmCrate,
}

/// Candidates: each available own/portable implementation, `gemm()`, then
/// the `gemm` crate when built in.
fn candidates<T: GemmScalar>() -> Vec<Cand> {
    let mut v: Vec<_> = GemmImpl::ALL
        .into_iter()
        .filter(|i| i.is_available())
        .map(Cand::Own)
        .collect();
    v.push(Cand::Chosen);
    #[cfg(feature = "gemm-crate")]
    v.push(Cand::GemmCrate);
    if T::NAME == "f32" && bf16_available() {
        v.push(Cand::Bf16);
    }
    v
}

/// `x` as f32 values (the caller checked `T::NAME == "f32"`).
fn f32s<T: GemmScalar>(x: &[T]) -> &[f32] {
    assert_eq!(T::NAME, "f32");
    // SAFETY: T is f32 (the only GemmScalar named "f32").
    unsafe { &*(x as *const [T] as *const [f32]) }
}

/// As [`f32s`], mutably.
fn f32s_mut<T: GemmScalar>(x: &mut [T]) -> &mut [f32] {
    assert_eq!(T::NAME, "f32");
    // SAFETY: as in `f32s`.
    unsafe { &mut *(x as *mut [T] as *mut [f32]) }
}

/// `C = op(A)·op(B)` by the `gemm` crate, row-major, on strata's pool (so
/// both use the same threads).
#[cfg(feature = "gemm-crate")]
#[allow(clippy::too_many_arguments)]
fn gemm_crate<T: GemmScalar>(
    (ta, tb): (Trans, Trans),
    (m, n, k): (usize, usize, usize),
    (a, lda): (&[T], usize),
    (b, ldb): (&[T], usize),
    c: &mut [T],
) {
    // Strides of op(A) and op(B) as (column step, row step).
    let (acs, ars) = if ta == Trans::No { (1, lda) } else { (lda, 1) };
    let (bcs, brs) = if tb == Trans::No { (1, ldb) } else { (ldb, 1) };
    let threads = strata_kernels::parallel::num_threads();
    let (cp, ap, bp) = (
        c.as_mut_ptr() as usize,
        a.as_ptr() as usize,
        b.as_ptr() as usize,
    );
    strata_kernels::parallel::install(|| {
        // SAFETY: the pointers address m×n, m×k and k×n matrices with these
        // strides (the slices were sized so by `measure`); C is not read
        // (`read_dst` false), and nothing else touches C meanwhile.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                cp as *mut T,
                1,
                n as isize,
                false,
                ap as *const T,
                acs as isize,
                ars as isize,
                bp as *const T,
                bcs as isize,
                brs as isize,
                T::zero(),
                T::one(),
                false,
                false,
                false,
                gemm::Parallelism::Rayon(threads),
            )
        }
    })
}

/// Deterministic values in [-1, 1).
fn data<T: GemmScalar>(len: usize, seed: u64) -> Vec<T> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            T::of((s >> 40) as f64 / (1u64 << 23) as f64 - 1.0)
        })
        .collect()
}

/// Measures `op(A)·op(B)` for one shape and every candidate, windows
/// interleaved; reports one record per candidate.
fn measure<T: GemmScalar>(
    o: &Opts,
    work: &str,
    (ta, tb): (Trans, Trans),
    (m, n, k): (usize, usize, usize),
    shape: Shape,
    out: Out,
) {
    let a: Vec<T> = data(m * k, 1);
    let b: Vec<T> = data(k * n, 2);
    let lda = if ta == Trans::No { k } else { m };
    let ldb = if tb == Trans::No { n } else { k };
    let (one, zero) = (T::one(), T::zero());
    let flops = 2.0 * (m * n * k) as f64 * 1e-9;
    let imps = candidates::<T>();
    let mut cs: Vec<Vec<T>> = imps.iter().map(|_| vec![T::zero(); m * n]).collect();
    let mut fs: Vec<Box<dyn FnMut() + '_>> = imps
        .iter()
        .zip(cs.iter_mut())
        .map(|(&imp, c)| -> Box<dyn FnMut() + '_> {
            let (a, b) = (&a, &b);
            Box::new(move || match imp {
                Cand::Own(i) => gemm_with(i, ta, tb, m, n, k, one, a, lda, b, ldb, zero, c, n),
                Cand::Chosen => gemm(ta, tb, m, n, k, one, a, lda, b, ldb, zero, c, n),
                Cand::Bf16 => {
                    let none = Epilogue {
                        bias: Bias::None,
                        relu: false,
                    };
                    let (a, b, c) = (f32s(a), f32s(b), f32s_mut(c));
                    gemm_bf16(ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, n, none)
                }
                #[cfg(feature = "gemm-crate")]
                Cand::GemmCrate => gemm_crate((ta, tb), (m, n, k), (a, lda), (b, ldb), c),
            })
        })
        .collect();
    let mut cands: Vec<(f64, &mut dyn FnMut())> = fs
        .iter_mut()
        .map(|f| (flops, &mut **f as &mut dyn FnMut()))
        .collect();
    let rates = o.timing.rates(&mut cands);
    drop(fs);
    // Every candidate computed the same product (a baseline wired up with a
    // wrong stride would otherwise report a meaningless rate).
    for (imp, c) in imps.iter().zip(&cs).skip(1) {
        let worst = c
            .iter()
            .zip(&cs[0])
            .map(|(&x, &y)| (x - y).abs().as_f64() / (1.0 + y.abs().as_f64()))
            .fold(0.0, f64::max);
        // bf16 inputs carry 8 significant bits: a sum of k products of
        // values in [-1, 1) moves by ~2⁻⁹·√k/3, and the worst of 10⁵ sums by
        // five times that, relative to 1 + |C| (0.09 at k = 1024).
        let allowed = if matches!(imp, Cand::Bf16) {
            0.25
        } else {
            1e-3
        };
        if worst > allowed {
            eprintln!(
                "warning: {} differs from {} by {worst:.2e} (relative) at {m}×{n}×{k}",
                label::<T>(*imp, m, n, k),
                label::<T>(imps[0], m, n, k)
            );
        }
    }
    for (&imp, gflops) in imps.iter().zip(rates) {
        let imp = label::<T>(imp, m, n, k);
        out(&Record {
            workload: work.into(),
            imp,
            shape,
            threads: o.threads,
            gflops,
        });
    }
}

fn label<T: GemmScalar>(imp: Cand, m: usize, n: usize, k: usize) -> String {
    match imp {
        Cand::Own(i) => i.name().to_string(),
        Cand::Chosen => format!("gemm()={}", choose::<T>(m, n, k).name()),
        Cand::Bf16 => "strata-amx-bf16".to_string(),
        #[cfg(feature = "gemm-crate")]
        Cand::GemmCrate => "gemm-crate-0.19".to_string(),
    }
}

/// Square sgemm at n = 256, 512, 1024, 2048 and dgemm at n = 1024.
pub fn square(o: &Opts, out: Out) -> Result<(), String> {
    let nn = (Trans::No, Trans::No);
    for n in [256, 512, 1024, 2048] {
        measure::<f32>(o, "sgemm", nn, (n, n, n), Shape::Square(n), out);
    }
    measure::<f64>(o, "dgemm", nn, (1024, 1024, 1024), Shape::Square(1024), out);
    Ok(())
}

/// The MLP's layers at batch 128, forward and backward.
pub fn layers(o: &Opts, out: Out) -> Result<(), String> {
    use Trans::{No, Yes};
    // (m, n, k, ta, tb, label): X·Wᵀ forward, dY·W for dX, dYᵀ·X for dW.
    let shapes: [(usize, usize, usize, Trans, Trans, &'static str); 6] = [
        (128, 1024, 784, No, Yes, "A·Bᵀ"),
        (128, 1024, 1024, No, Yes, "A·Bᵀ"),
        (128, 10, 1024, No, Yes, "A·Bᵀ"),
        (128, 784, 1024, No, No, "A·B"),
        (1024, 784, 128, Yes, No, "Aᵀ·B"),
        (1024, 1024, 128, Yes, No, "Aᵀ·B"),
    ];
    for (m, n, k, ta, tb, op) in shapes {
        measure::<f32>(
            o,
            "sgemm",
            (ta, tb),
            (m, n, k),
            Shape::Mnk(m, n, k, op),
            out,
        );
    }
    Ok(())
}

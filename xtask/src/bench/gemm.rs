//! GEMM workloads: square sgemm/dgemm and neural-net layer shapes, for every
//! implementation available on this CPU plus what `gemm()` picks.

use strata_kernels::gemm::{choose, gemm, gemm_with, GemmImpl, GemmScalar, Trans};

use super::{Opts, Out, Record, Shape};

/// Candidates: each available own/portable implementation, then `None` for `gemm()`.
fn candidates() -> Vec<Option<GemmImpl>> {
    let mut v: Vec<_> = GemmImpl::ALL
        .into_iter()
        .filter(|i| i.is_available())
        .map(Some)
        .collect();
    v.push(None);
    v
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
    let imps = candidates();
    let mut cs: Vec<Vec<T>> = imps.iter().map(|_| vec![T::zero(); m * n]).collect();
    let mut fs: Vec<Box<dyn FnMut() + '_>> = imps
        .iter()
        .zip(cs.iter_mut())
        .map(|(&imp, c)| -> Box<dyn FnMut() + '_> {
            let (a, b) = (&a, &b);
            Box::new(move || match imp {
                Some(i) => gemm_with(i, ta, tb, m, n, k, one, a, lda, b, ldb, zero, c, n),
                None => gemm(ta, tb, m, n, k, one, a, lda, b, ldb, zero, c, n),
            })
        })
        .collect();
    let mut cands: Vec<(f64, &mut dyn FnMut())> = fs
        .iter_mut()
        .map(|f| (flops, &mut **f as &mut dyn FnMut()))
        .collect();
    let rates = o.timing.rates(&mut cands);
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

fn label<T: GemmScalar>(imp: Option<GemmImpl>, m: usize, n: usize, k: usize) -> String {
    match imp {
        Some(i) => i.name().to_string(),
        None => format!("gemm()={}", choose::<T>(m, n, k).name()),
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

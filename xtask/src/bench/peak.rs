//! The machine's FMA throughput right now: a register-only FMA loop on every
//! thread. On a shared machine this is the ceiling to read GEMM figures against.

use super::{Opts, Out, Record, Shape};

/// 12 independent FMA chains of 8 f32 lanes: 192 flops per iteration.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_loop(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999));
    let mut acc = [_mm256_setzero_ps(); 12];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let s = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
    _mm256_cvtss_f32(s)
}

/// AVX2 FMA rate in GFLOPS over `o.threads` OS threads right now (None
/// without AVX2 + FMA): the ceiling a network's GFLOPS are read against.
pub fn measure(o: &Opts) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        let iters = 2_000_000u64;
        let threads = o.threads;
        return Some(
            o.timing
                .rate(192.0 * iters as f64 * threads as f64 * 1e-9, || {
                    std::thread::scope(|s| {
                        let hs: Vec<_> = (0..threads)
                            // SAFETY: AVX2 and FMA were detected above.
                            .map(|_| s.spawn(|| std::hint::black_box(unsafe { fma_loop(iters) })))
                            .collect();
                        hs.into_iter().for_each(|h| {
                            h.join().expect("FMA loop thread panicked");
                        });
                    })
                }),
        );
    }
    None
}

/// The `fma-peak` workload: [`measure`] as a record.
pub fn fma_peak(o: &Opts, out: Out) -> Result<(), String> {
    if let Some(gflops) = measure(o) {
        out(&Record {
            workload: "fma-peak".into(),
            imp: "avx2-fma-loop".into(),
            shape: Shape::Square(0),
            threads: o.threads,
            gflops,
        });
    }
    Ok(())
}

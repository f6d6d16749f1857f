//! The machine's FMA throughput right now: a register-only FMA loop on every
//! thread, with 256-bit and (where the CPU has AVX-512) 512-bit registers;
//! the higher of the two is the ceiling GEMM and network figures are read
//! against (hosts that split 512-bit FMAs in two run both at about the same
//! rate; full-rate AVX-512 hosts run the 512-bit loop twice as fast).

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

/// 12 independent FMA chains of 16 f32 lanes: 384 flops per iteration.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_loop_512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999));
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    let s = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x));
    _mm512_reduce_add_ps(s)
}

/// GFLOPS of `flops_per_iter`-flop iterations of `f` on `o.threads` threads.
fn rate_of(o: &Opts, flops_per_iter: f64, f: fn(u64) -> f32) -> f64 {
    let iters = 2_000_000u64;
    let threads = o.threads;
    o.timing.rate(
        flops_per_iter * iters as f64 * threads as f64 * 1e-9,
        || {
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|_| s.spawn(move || std::hint::black_box(f(iters))))
                    .collect();
                hs.into_iter().for_each(|h| {
                    h.join().expect("FMA loop thread panicked");
                });
            })
        },
    )
}

/// The 256-bit and the 512-bit FMA rates in GFLOPS over `o.threads` OS
/// threads right now (each None where the CPU lacks the instructions).
pub fn measure_both(o: &Opts) -> (Option<f64>, Option<f64>) {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = (std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        .then(|| {
            // SAFETY: AVX2 and FMA were detected.
            rate_of(o, 192.0, |n| unsafe { fma_loop(n) })
        });
        let avx512 = std::arch::is_x86_feature_detected!("avx512f").then(|| {
            // SAFETY: AVX-512F was detected.
            rate_of(o, 384.0, |n| unsafe { fma_loop_512(n) })
        });
        (avx2, avx512)
    }
    #[cfg(not(target_arch = "x86_64"))]
    (None, None)
}

/// The FMA ceiling in GFLOPS right now: the higher of the 256-bit and the
/// 512-bit loop's rates (None without AVX2 + FMA).
pub fn measure(o: &Opts) -> Option<f64> {
    match measure_both(o) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The `fma-peak` workload: [`measure`] as a record.
pub fn fma_peak(o: &Opts, out: Out) -> Result<(), String> {
    let (avx2, avx512) = measure_both(o);
    for (imp, gflops) in [("avx2-fma-loop", avx2), ("avx512-fma-loop", avx512)] {
        if let Some(gflops) = gflops {
            out(&Record {
                workload: "fma-peak".into(),
                imp: imp.into(),
                shape: Shape::Square(0),
                threads: o.threads,
                gflops,
            });
        }
    }
    Ok(())
}

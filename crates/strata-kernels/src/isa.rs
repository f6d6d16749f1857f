//! Which vector ISA the elementwise loops run on, and a macro that compiles
//! one loop body for each.
//!
//! The loops are plain Rust that LLVM vectorises; the macro instantiates the
//! same body inside `target_feature` functions (AVX-512, AVX2 + FMA) so it is
//! vectorised for the host's widest registers rather than baseline x86-64's
//! SSE2, and picks one at run time. Every variant computes the same values
//! (the bodies use no operation whose rounding depends on the ISA, and no
//! FMA contraction: Rust never contracts `a * b + c`).

/// The widest vector ISA the f32 loops may use here: AVX-512 unless absent
/// or capped by `STRATA_ISA=avx2` (as for the GEMM), then AVX2, else none.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

/// The ISA of this host (and `STRATA_ISA`), decided once.
pub(crate) fn isa() -> Isa {
    use crate::gemm::GemmImpl;
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        // The loops also use AVX-512BW/VL (byte masks, 256-bit forms), which
        // every AVX-512 core since Skylake-SP has.
        #[cfg(target_arch = "x86_64")]
        let bw_vl = std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl");
        #[cfg(not(target_arch = "x86_64"))]
        let bw_vl = false;
        if GemmImpl::Avx512.is_available() && bw_vl {
            Isa::Avx512
        } else if GemmImpl::Avx2.is_available() {
            Isa::Avx2
        } else {
            Isa::Baseline
        }
    })
}

/// Defines `$name(args)`, which runs `$body(args)` compiled for the widest
/// ISA of [`isa`]; `$body` must be `#[inline(always)]` so it is compiled
/// inside each variant.
macro_rules! isa_loop {
    ($(#[$m:meta])* $vis:vis $name:ident, $body:path, ($($arg:ident: $ty:ty),*)) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
                fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn narrow($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match $crate::isa::isa() {
                    // SAFETY: the CPU has the features (checked by `isa`).
                    $crate::isa::Isa::Avx512 => return unsafe { wide($($arg),*) },
                    // SAFETY: as above.
                    $crate::isa::Isa::Avx2 => return unsafe { narrow($($arg),*) },
                    $crate::isa::Isa::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use isa_loop;

/// Runs `f` compiled for the widest ISA of [`isa`]: `f`'s loops, inlined
/// into a `target_feature` function, are vectorised for the host's
/// registers. Mark the closure `#[inline(always)]`: LLVM does not inline a
/// closure of more than a few lines on its own, and one it does not inline
/// runs as compiled, for baseline SSE2 (the conv epilogues did, unnoticed,
/// until `perf annotate` showed `xmm` code in them).
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        fn wide<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn narrow<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match isa() {
            // SAFETY: the CPU has the features (checked by `isa`).
            Isa::Avx512 => return unsafe { wide(f) },
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { narrow(f) },
            Isa::Baseline => {}
        }
    }
    f()
}

/// Views a slice of `T` as f32 when `T` is f32 (for the f32-only vector loops).
pub(crate) fn as_f32<T: strata_tensor::Element>(x: &[T]) -> Option<&[f32]> {
    use std::any::TypeId;
    // SAFETY: T is f32 (same type id), so the layout is identical.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) })
}

/// [`as_f32`] for a mutable slice.
pub(crate) fn as_f32_mut<T: strata_tensor::Element>(x: &mut [T]) -> Option<&mut [f32]> {
    use std::any::TypeId;
    // SAFETY: as in `as_f32`.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) })
}

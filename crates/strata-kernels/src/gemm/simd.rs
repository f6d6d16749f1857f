//! The few vector operations the micro-kernel needs, for each instruction set.
//!
//! Each method carries its ISA's `target_feature`, so it inlines into the
//! micro-kernel wrappers in `kernel.rs`, which carry the same features.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// A SIMD register of `W` lanes of `T`.
pub(super) trait Simd {
    /// Lane type.
    type T: Copy;
    /// Register type.
    type V: Copy;
    /// Lanes per register.
    const W: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: Self::T) -> Self::V;
    /// Unaligned load of `W` lanes.
    unsafe fn load(p: *const Self::T) -> Self::V;
    /// Unaligned store of `W` lanes.
    unsafe fn store(p: *mut Self::T, v: Self::V);
    /// `a·b + c`, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
}

macro_rules! simd_impl {
    ($name:ident, $feat:literal, $t:ty, $v:ty, $w:expr,
     $zero:ident, $splat:ident, $load:ident, $store:ident, $fma:ident, $mul:ident) => {
        #[cfg(target_arch = "x86_64")]
        pub(super) struct $name;

        #[cfg(target_arch = "x86_64")]
        impl Simd for $name {
            type T = $t;
            type V = $v;
            const W: usize = $w;
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn zero() -> $v {
                $zero()
            }
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn splat(x: $t) -> $v {
                $splat(x)
            }
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load(p: *const $t) -> $v {
                // SAFETY: the caller guarantees `W` readable lanes at `p`.
                unsafe { $load(p) }
            }
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn store(p: *mut $t, v: $v) {
                // SAFETY: the caller guarantees `W` writable lanes at `p`.
                unsafe { $store(p, v) }
            }
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn fma(a: $v, b: $v, c: $v) -> $v {
                $fma(a, b, c)
            }
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn mul(a: $v, b: $v) -> $v {
                $mul(a, b)
            }
        }
    };
}

simd_impl!(
    Avx2F32,
    "avx2,fma",
    f32,
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_fmadd_ps,
    _mm256_mul_ps
);
simd_impl!(
    Avx2F64,
    "avx2,fma",
    f64,
    __m256d,
    4,
    _mm256_setzero_pd,
    _mm256_set1_pd,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_fmadd_pd,
    _mm256_mul_pd
);
simd_impl!(
    Avx512F32,
    "avx512f",
    f32,
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps
);
simd_impl!(
    Avx512F64,
    "avx512f",
    f64,
    __m512d,
    8,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_fmadd_pd,
    _mm512_mul_pd
);

/// Portable stand-in for a `W`-lane register, so tests can run the exact
/// tile loop of a kernel whose ISA this machine lacks (e.g. AVX-512 geometry).
#[cfg(test)]
pub(super) struct Emu<T, const W: usize>(std::marker::PhantomData<T>);

macro_rules! emu_impl {
    ($t:ty) => {
        #[cfg(test)]
        impl<const W: usize> Simd for Emu<$t, W> {
            type T = $t;
            type V = [$t; W];
            const W: usize = W;
            unsafe fn zero() -> [$t; W] {
                [0.0; W]
            }
            unsafe fn splat(x: $t) -> [$t; W] {
                [x; W]
            }
            unsafe fn load(p: *const $t) -> [$t; W] {
                // SAFETY: the caller guarantees `W` readable lanes at `p`.
                unsafe { std::ptr::read_unaligned(p.cast()) }
            }
            unsafe fn store(p: *mut $t, v: [$t; W]) {
                // SAFETY: the caller guarantees `W` writable lanes at `p`.
                unsafe { std::ptr::write_unaligned(p.cast(), v) }
            }
            unsafe fn fma(a: [$t; W], b: [$t; W], c: [$t; W]) -> [$t; W] {
                std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
            }
            unsafe fn mul(a: [$t; W], b: [$t; W]) -> [$t; W] {
                std::array::from_fn(|i| a[i] * b[i])
            }
        }
    };
}
emu_impl!(f32);
emu_impl!(f64);

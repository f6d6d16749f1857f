//! Register-tile micro-kernels and their cache-blocking parameters.
//!
//! A micro-kernel computes one `MR × NR` tile of C from an A micro-panel
//! (`kc` steps of `MR` values) and a B micro-panel (`kc` steps of `NR` values):
//! `MR·NR/W` accumulators stay in registers for the whole k loop, each step
//! loading `NR/W` vectors of B and broadcasting `MR` values of A.

#[cfg(target_arch = "x86_64")]
use super::pack::pack_bt_f32_avx;
use super::pack::PackTransposed;
#[cfg(target_arch = "x86_64")]
use super::simd::{Avx2F32, Avx2F64, Avx512F32, Avx512F64, Simd};

/// `(kc, a, b, c, ldc, alpha, beta)`: `C[MR×NR] ← α·A·B + β·C`, β = 0 overwriting.
pub type MicroKernel<T> = unsafe fn(usize, *const T, *const T, *mut T, usize, T, T);

/// `(taps, ntaps, depth, ldb, bstep, a, b, c, ldc)`: one register tile of a
/// direct (stride-1) convolution, `C[rows×NR] ← Σ_t Σ_d A[t, d]·B[b + taps[t]
/// + d·ldb]`. B is read where it lies (a zero-padded image, `ldb` apart per
/// slice), not packed, its `NR/W` vectors `bstep` apart (`W` when they are
/// one run; a padded row's width when each vector is the start of its own
/// output row); A is packed `[tap][depth][MR]`. Stores with row stride `ldc`.
pub type TapKernel<T> =
    unsafe fn(*const usize, usize, usize, usize, usize, *const T, *const T, *mut T, usize);

/// `(kc, a, b, ldb, c, ldc)`: `C[rows×NB] += A·B` over `kc` steps, A packed
/// `[k][MR]`, B read in place with its rows `ldb` apart (they may overlap:
/// the kernel gradient reads one padded image stored slice-innermost at
/// `ldb = c_in`, the `kw` taps of a kernel row side by side in a row of B).
pub type WideKernel<T> = unsafe fn(usize, *const T, *const T, usize, *mut T, usize);

/// The tiles of [`WideKernel`] for one ISA: `rows[r]` computes `r + 1 ≤ mr`
/// live rows of an `mr × nb` tile (empty where the ISA has none).
#[derive(Clone, Copy)]
pub struct WideTiles<T: 'static> {
    /// Rows of a full tile (A packed `mr` wide).
    pub mr: usize,
    /// Columns of a tile.
    pub nb: usize,
    /// The tile routines by live rows; they must only run where their ISA is.
    pub rows: &'static [WideKernel<T>],
}

impl<T> WideTiles<T> {
    /// No wide tiles (emulated kernels, or ISAs without them).
    pub const NONE: WideTiles<T> = WideTiles {
        mr: 1,
        nb: 1,
        rows: &[],
    };
}

/// A micro-kernel with the blocking that suits it.
pub struct Kernel<T: 'static> {
    /// Rows of the register tile.
    pub mr: usize,
    /// Columns of the register tile.
    pub nr: usize,
    /// Rows of A packed per block (the A block stays in L2).
    pub mc: usize,
    /// Depth of a packed block (a B micro-panel `kc × nr` stays in L1).
    pub kc: usize,
    /// Columns of B packed per block (the B block stays in L3).
    pub nc: usize,
    /// The tile routine; it must only be called where its ISA is available.
    pub ukr: MicroKernel<T>,
    /// A fast packer for full transposed B micro-panels, if this ISA has one.
    pub pack_bt: Option<PackTransposed<T>>,
    /// Tile routines for the first `r + 1` rows of a full-width tile (A
    /// panels keep their stride `mr`), or empty: edge tiles then go through
    /// a scratch tile.
    pub edge: &'static [MicroKernel<T>],
    /// Direct-convolution tiles for `r + 1` live rows (`r < mr`), or empty
    /// where this ISA has none.
    pub taps: &'static [TapKernel<T>],
    /// The same with B's vectors `bstep` apart (`taps_tile`'s `SPLIT`), or
    /// empty.
    pub taps_split: &'static [TapKernel<T>],
    /// Tiles with B read in place, rows `ldb` apart ([`WideKernel`]).
    pub wide: WideTiles<T>,
}

/// The generic tile loop; instantiated inside `target_feature` wrappers so the
/// `Simd` methods inline and the accumulators live in registers.
///
/// # Safety
/// `a` holds `kc·MR` values, `b` holds `kc·NV·W`, and `c` addresses an
/// `MR × NV·W` tile with row stride `ldc`; `S`'s ISA is available.
/// Hints that the line at `p` is about to be used.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(p: *const i8) {
    // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p) }
}

/// Fetches the A values of 4 depth steps 32 steps ahead of `ap`. A streams
/// through a tile loop while B stays in L1 across the tiles of a panel; when
/// A comes from L3 (Winograd's transformed kernels, a wide layer's weights)
/// the loads on each new A line were the stalls in the profile. A hint: it
/// never faults, past the panel's end included.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_a<T, const MR: usize>(ap: *const T) {
    let ahead = ap.wrapping_add(32 * MR).cast::<i8>();
    let mut off = 0;
    while off < 4 * MR * size_of::<T>() {
        prefetch(ahead.wrapping_add(off));
        off += 64;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<S: Simd, const MR: usize, const ROWS: usize, const NV: usize>(
    kc: usize,
    a: *const S::T,
    b: *const S::T,
    c: *mut S::T,
    ldc: usize,
    alpha: S::T,
    beta: S::T,
) where
    S::T: PartialEq + Default,
{
    // SAFETY: the pointer arithmetic stays inside the panels and tile the
    // caller vouches for (see the function's contract); the ISA is enabled.
    unsafe {
        // Fetch the C tile while the k loop runs: its rows lie ldc apart and
        // would otherwise miss at the final load/store.
        for i in 0..ROWS {
            prefetch(c.add(i * ldc).cast());
            prefetch(c.add(i * ldc + NV * S::W - 1).cast());
        }
        let mut acc = [[S::zero(); NV]; ROWS];
        let (mut ap, mut bp) = (a, b);
        // One k step: NV loads of B, MR broadcasts of A, MR·NV FMAs. A macro,
        // not a closure: a closure would not inherit the target features.
        macro_rules! step {
            ($ap:expr, $bp:expr) => {
                let mut bv = [S::zero(); NV];
                for v in 0..NV {
                    bv[v] = S::load($bp.add(v * S::W));
                }
                for i in 0..ROWS {
                    let ai = S::splat(*$ap.add(i));
                    for v in 0..NV {
                        acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
                    }
                }
            };
        }
        // Unrolled by 4 to keep loop overhead off the FMA ports.
        for _ in 0..kc / 4 {
            prefetch_a::<S::T, MR>(ap);
            step!(ap, bp);
            step!(ap.add(MR), bp.add(NV * S::W));
            step!(ap.add(2 * MR), bp.add(2 * NV * S::W));
            step!(ap.add(3 * MR), bp.add(3 * NV * S::W));
            ap = ap.add(4 * MR);
            bp = bp.add(4 * NV * S::W);
        }
        for _ in 0..kc % 4 {
            step!(ap, bp);
            ap = ap.add(MR);
            bp = bp.add(NV * S::W);
        }
        let va = S::splat(alpha);
        if beta == S::T::default() {
            // β = 0 overwrites: C is never read, so NaN in C does not leak.
            for i in 0..ROWS {
                for v in 0..NV {
                    S::store(c.add(i * ldc + v * S::W), S::mul(acc[i][v], va));
                }
            }
        } else {
            let vb = S::splat(beta);
            for i in 0..ROWS {
                for v in 0..NV {
                    let p = c.add(i * ldc + v * S::W);
                    S::store(p, S::fma(acc[i][v], va, S::mul(S::load(p), vb)));
                }
            }
        }
    }
}

/// The direct-convolution tile loop (see [`TapKernel`]): the depth loop of
/// [`tile`], run once per kernel tap with B read in place, `ldb` apart. With
/// `SPLIT` B's vectors lie `bstep` apart (each tracked by its own pointer:
/// a runtime offset inside the unrolled addresses cost 15 % on every
/// sweep, `bstep = W` or not); without, they are one run and `bstep` is
/// ignored.
///
/// # Safety
/// `a` holds `ntaps·depth·MR` values; for every tap `t`, `d < depth` and
/// `v < NV`, `b + taps[t] + d·ldb + v·s` has `W` readable values (`s` =
/// `bstep` with `SPLIT`, else `W`); `c` addresses a `ROWS × NV·W` tile with
/// row stride `ldc`; `S`'s ISA is available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
unsafe fn taps_tile<
    S: Simd,
    const MR: usize,
    const ROWS: usize,
    const NV: usize,
    const SPLIT: bool,
>(
    taps: *const usize,
    ntaps: usize,
    depth: usize,
    ldb: usize,
    bstep: usize,
    a: *const S::T,
    b: *const S::T,
    c: *mut S::T,
    ldc: usize,
) {
    // SAFETY: the pointer arithmetic stays inside the regions the caller
    // vouches for (see the function's contract); the ISA is enabled.
    unsafe {
        let mut acc = [[S::zero(); NV]; ROWS];
        let mut ap = a;
        // One step: B's vectors at `$bp[v] + $k`, A's ROWS values at `$ap`.
        macro_rules! step {
            ($ap:expr, $bp:expr, $k:expr) => {
                let mut bv = [S::zero(); NV];
                for v in 0..NV {
                    bv[v] = S::load($bp[v].add($k));
                }
                for i in 0..ROWS {
                    let ai = S::splat(*$ap.add(i));
                    for v in 0..NV {
                        acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
                    }
                }
            };
        }
        for t in 0..ntaps {
            let base = b.add(*taps.add(t));
            if SPLIT {
                let mut bp = [base; NV];
                for v in 0..NV {
                    bp[v] = base.add(v * bstep);
                }
                for _ in 0..depth / 4 {
                    prefetch_a::<S::T, MR>(ap);
                    step!(ap, bp, 0);
                    step!(ap.add(MR), bp, ldb);
                    step!(ap.add(2 * MR), bp, 2 * ldb);
                    step!(ap.add(3 * MR), bp, 3 * ldb);
                    ap = ap.add(4 * MR);
                    for p in &mut bp {
                        *p = p.add(4 * ldb);
                    }
                }
                for _ in 0..depth % 4 {
                    step!(ap, bp, 0);
                    ap = ap.add(MR);
                    for p in &mut bp {
                        *p = p.add(ldb);
                    }
                }
            } else {
                // One pointer; the vectors at constant displacements.
                let mut bp = base;
                let at = |p: *const S::T| {
                    let mut v = [p; NV];
                    for (i, v) in v.iter_mut().enumerate() {
                        *v = p.add(i * S::W);
                    }
                    v
                };
                for _ in 0..depth / 4 {
                    prefetch_a::<S::T, MR>(ap);
                    step!(ap, at(bp), 0);
                    step!(ap.add(MR), at(bp.add(ldb)), 0);
                    step!(ap.add(2 * MR), at(bp.add(2 * ldb)), 0);
                    step!(ap.add(3 * MR), at(bp.add(3 * ldb)), 0);
                    ap = ap.add(4 * MR);
                    bp = bp.add(4 * ldb);
                }
                for _ in 0..depth % 4 {
                    step!(ap, at(bp), 0);
                    ap = ap.add(MR);
                    bp = bp.add(ldb);
                }
            }
        }
        for i in 0..ROWS {
            for v in 0..NV {
                S::store(c.add(i * ldc + v * S::W), acc[i][v]);
            }
        }
    }
}

/// The [`WideKernel`] tile loop: [`tile`]'s k loop with B rows `ldb` apart,
/// added into C.
///
/// # Safety
/// `a` holds `kc·MR` values; `b + k·ldb` has `NV·W` readable values for
/// `k < kc`; `c` addresses a `ROWS × NV·W` tile with row stride `ldc`;
/// `S`'s ISA is available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn wide_tile<S: Simd, const MR: usize, const ROWS: usize, const NV: usize>(
    kc: usize,
    a: *const S::T,
    b: *const S::T,
    ldb: usize,
    c: *mut S::T,
    ldc: usize,
) where
    S::T: From<u8>,
{
    // SAFETY: the pointer arithmetic stays inside the panels and tile the
    // caller vouches for (see the function's contract); the ISA is enabled.
    unsafe {
        let mut acc = [[S::zero(); NV]; ROWS];
        let (mut ap, mut bp) = (a, b);
        macro_rules! step {
            ($ap:expr, $bp:expr) => {
                let mut bv = [S::zero(); NV];
                for v in 0..NV {
                    bv[v] = S::load($bp.add(v * S::W));
                }
                for i in 0..ROWS {
                    let ai = S::splat(*$ap.add(i));
                    for v in 0..NV {
                        acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
                    }
                }
            };
        }
        for _ in 0..kc / 4 {
            prefetch_a::<S::T, MR>(ap);
            step!(ap, bp);
            step!(ap.add(MR), bp.add(ldb));
            step!(ap.add(2 * MR), bp.add(2 * ldb));
            step!(ap.add(3 * MR), bp.add(3 * ldb));
            ap = ap.add(4 * MR);
            bp = bp.add(4 * ldb);
        }
        for _ in 0..kc % 4 {
            step!(ap, bp);
            ap = ap.add(MR);
            bp = bp.add(ldb);
        }
        // C + 1·acc: the FMA by one is exact.
        let one = S::splat(S::T::from(1u8));
        for i in 0..ROWS {
            for v in 0..NV {
                let p = c.add(i * ldc + v * S::W);
                S::store(p, S::fma(acc[i][v], one, S::load(p)));
            }
        }
    }
}

macro_rules! wide_wrappers {
    ($feat:literal, $s:ty, $t:ty, $mr:expr, $nv:expr, $($name:ident = $rows:expr),+) => {
        $(
            /// # Safety
            /// As for `wide_tile`, and the CPU supports the enabled features.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $feat)]
            unsafe fn $name(kc: usize, a: *const $t, b: *const $t, ldb: usize, c: *mut $t, ldc: usize) {
                // SAFETY: forwarded contract; the features are enabled on this function.
                unsafe { wide_tile::<$s, $mr, $rows, $nv>(kc, a, b, ldb, c, ldc) }
            }
        )+
    };
}

// AVX-512: 8×48 f32 (24 accumulators, 3 B vectors, 8 broadcasts per step;
// 48 = the 3 taps of a kernel row of a 16-slice layer), 8×24 f64.
wide_wrappers!(
    "avx512f",
    Avx512F32,
    f32,
    8,
    3,
    wide512_f32_r1 = 1,
    wide512_f32_r2 = 2,
    wide512_f32_r3 = 3,
    wide512_f32_r4 = 4,
    wide512_f32_r5 = 5,
    wide512_f32_r6 = 6,
    wide512_f32_r7 = 7,
    wide512_f32_r8 = 8
);
wide_wrappers!(
    "avx512f",
    Avx512F64,
    f64,
    8,
    3,
    wide512_f64_r1 = 1,
    wide512_f64_r2 = 2,
    wide512_f64_r3 = 3,
    wide512_f64_r4 = 4,
    wide512_f64_r5 = 5,
    wide512_f64_r6 = 6,
    wide512_f64_r7 = 7,
    wide512_f64_r8 = 8
);
// No AVX2 set: 4×24 ymm tiles (12 accumulators) measured 0.7–0.9× the
// GEMM and 16-wide direct routes (`STRATA_ISA=avx2 cargo xtask bench conv`).

macro_rules! taps_wrapper {
    ($name:ident, $feat:literal, $s:ty, $t:ty, $mr:expr, $rows:expr, $nv:expr) => {
        taps_wrapper!($name, $feat, $s, $t, $mr, $rows, $nv, false);
    };
    ($name:ident, $feat:literal, $s:ty, $t:ty, $mr:expr, $rows:expr, $nv:expr, $split:expr) => {
        /// # Safety
        /// As for `taps_tile`, and the CPU supports the enabled features.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            taps: *const usize,
            ntaps: usize,
            depth: usize,
            ldb: usize,
            bstep: usize,
            a: *const $t,
            b: *const $t,
            c: *mut $t,
            ldc: usize,
        ) {
            // SAFETY: forwarded contract; the features are enabled on this function.
            unsafe {
                taps_tile::<$s, $mr, $rows, $nv, $split>(
                    taps, ntaps, depth, ldb, bstep, a, b, c, ldc,
                )
            }
        }
    };
}

taps_wrapper!(taps_f32_r1, "avx2,fma", Avx2F32, f32, 6, 1, 2);
taps_wrapper!(taps_f32_r2, "avx2,fma", Avx2F32, f32, 6, 2, 2);
taps_wrapper!(taps_f32_r3, "avx2,fma", Avx2F32, f32, 6, 3, 2);
taps_wrapper!(taps_f32_r4, "avx2,fma", Avx2F32, f32, 6, 4, 2);
taps_wrapper!(taps_f32_r5, "avx2,fma", Avx2F32, f32, 6, 5, 2);
taps_wrapper!(taps_f32_r6, "avx2,fma", Avx2F32, f32, 6, 6, 2);
// The same tiles with B's two vectors `bstep` apart (two output rows of
// one vector each per tile).
taps_wrapper!(tapsx_f32_r1, "avx2,fma", Avx2F32, f32, 6, 1, 2, true);
taps_wrapper!(tapsx_f32_r2, "avx2,fma", Avx2F32, f32, 6, 2, 2, true);
taps_wrapper!(tapsx_f32_r3, "avx2,fma", Avx2F32, f32, 6, 3, 2, true);
taps_wrapper!(tapsx_f32_r4, "avx2,fma", Avx2F32, f32, 6, 4, 2, true);
taps_wrapper!(tapsx_f32_r5, "avx2,fma", Avx2F32, f32, 6, 5, 2, true);
taps_wrapper!(tapsx_f32_r6, "avx2,fma", Avx2F32, f32, 6, 6, 2, true);
taps_wrapper!(taps_f64_r1, "avx2,fma", Avx2F64, f64, 6, 1, 2);
taps_wrapper!(taps_f64_r2, "avx2,fma", Avx2F64, f64, 6, 2, 2);
taps_wrapper!(taps_f64_r3, "avx2,fma", Avx2F64, f64, 6, 3, 2);
taps_wrapper!(taps_f64_r4, "avx2,fma", Avx2F64, f64, 6, 4, 2);
taps_wrapper!(taps_f64_r5, "avx2,fma", Avx2F64, f64, 6, 5, 2);
taps_wrapper!(taps_f64_r6, "avx2,fma", Avx2F64, f64, 6, 6, 2);
taps_wrapper!(tapsx_f64_r1, "avx2,fma", Avx2F64, f64, 6, 1, 2, true);
taps_wrapper!(tapsx_f64_r2, "avx2,fma", Avx2F64, f64, 6, 2, 2, true);
taps_wrapper!(tapsx_f64_r3, "avx2,fma", Avx2F64, f64, 6, 3, 2, true);
taps_wrapper!(tapsx_f64_r4, "avx2,fma", Avx2F64, f64, 6, 4, 2, true);
taps_wrapper!(tapsx_f64_r5, "avx2,fma", Avx2F64, f64, 6, 5, 2, true);
taps_wrapper!(tapsx_f64_r6, "avx2,fma", Avx2F64, f64, 6, 6, 2, true);

macro_rules! wrapper {
    ($name:ident, $feat:literal, $s:ty, $t:ty, $mr:expr, $nv:expr) => {
        wrapper!($name, $feat, $s, $t, $mr, $mr, $nv);
    };
    ($name:ident, $feat:literal, $s:ty, $t:ty, $mr:expr, $rows:expr, $nv:expr) => {
        /// # Safety
        /// As for `tile`, and the CPU supports the enabled features.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        unsafe fn $name(
            kc: usize,
            a: *const $t,
            b: *const $t,
            c: *mut $t,
            ldc: usize,
            alpha: $t,
            beta: $t,
        ) {
            // SAFETY: forwarded contract; the features are enabled on this function.
            unsafe { tile::<$s, $mr, $rows, $nv>(kc, a, b, c, ldc, alpha, beta) }
        }
    };
}

// Zen 3/4/5 with AVX2: 16 ymm registers → 6×16 (12 accumulators, 2 B vectors, 1 broadcast).
wrapper!(avx2_f32, "avx2,fma", Avx2F32, f32, 6, 2);
wrapper!(avx2_f64, "avx2,fma", Avx2F64, f64, 6, 2);
// Bottom-edge tiles (rows < 6 of a full-width panel, e.g. the last 4 of a
// 16-slice convolution): only the live rows are computed, straight into C.
wrapper!(avx2_f32_r1, "avx2,fma", Avx2F32, f32, 6, 1, 2);
wrapper!(avx2_f32_r2, "avx2,fma", Avx2F32, f32, 6, 2, 2);
wrapper!(avx2_f32_r3, "avx2,fma", Avx2F32, f32, 6, 3, 2);
wrapper!(avx2_f32_r4, "avx2,fma", Avx2F32, f32, 6, 4, 2);
wrapper!(avx2_f32_r5, "avx2,fma", Avx2F32, f32, 6, 5, 2);
wrapper!(avx2_f64_r1, "avx2,fma", Avx2F64, f64, 6, 1, 2);
wrapper!(avx2_f64_r2, "avx2,fma", Avx2F64, f64, 6, 2, 2);
wrapper!(avx2_f64_r3, "avx2,fma", Avx2F64, f64, 6, 3, 2);
wrapper!(avx2_f64_r4, "avx2,fma", Avx2F64, f64, 6, 4, 2);
wrapper!(avx2_f64_r5, "avx2,fma", Avx2F64, f64, 6, 5, 2);
// AVX-512: 32 zmm registers → 12×32 f32 (24 accumulators), 12×16 f64.
wrapper!(avx512_f32, "avx512f", Avx512F32, f32, 12, 2);
wrapper!(avx512_f64, "avx512f", Avx512F64, f64, 12, 2);
// Bottom-edge tiles and direct-convolution tiles of the AVX-512 kernels, as
// for AVX2: a host with full-rate 512-bit FMAs then runs its convolutions
// (direct, Winograd products, backward) at twice the AVX2 tiles' ceiling.
wrapper!(avx512_f32_r1, "avx512f", Avx512F32, f32, 12, 1, 2);
wrapper!(avx512_f32_r2, "avx512f", Avx512F32, f32, 12, 2, 2);
wrapper!(avx512_f32_r3, "avx512f", Avx512F32, f32, 12, 3, 2);
wrapper!(avx512_f32_r4, "avx512f", Avx512F32, f32, 12, 4, 2);
wrapper!(avx512_f32_r5, "avx512f", Avx512F32, f32, 12, 5, 2);
wrapper!(avx512_f32_r6, "avx512f", Avx512F32, f32, 12, 6, 2);
wrapper!(avx512_f32_r7, "avx512f", Avx512F32, f32, 12, 7, 2);
wrapper!(avx512_f32_r8, "avx512f", Avx512F32, f32, 12, 8, 2);
wrapper!(avx512_f32_r9, "avx512f", Avx512F32, f32, 12, 9, 2);
wrapper!(avx512_f32_r10, "avx512f", Avx512F32, f32, 12, 10, 2);
wrapper!(avx512_f32_r11, "avx512f", Avx512F32, f32, 12, 11, 2);
wrapper!(avx512_f64_r1, "avx512f", Avx512F64, f64, 12, 1, 2);
wrapper!(avx512_f64_r2, "avx512f", Avx512F64, f64, 12, 2, 2);
wrapper!(avx512_f64_r3, "avx512f", Avx512F64, f64, 12, 3, 2);
wrapper!(avx512_f64_r4, "avx512f", Avx512F64, f64, 12, 4, 2);
wrapper!(avx512_f64_r5, "avx512f", Avx512F64, f64, 12, 5, 2);
wrapper!(avx512_f64_r6, "avx512f", Avx512F64, f64, 12, 6, 2);
wrapper!(avx512_f64_r7, "avx512f", Avx512F64, f64, 12, 7, 2);
wrapper!(avx512_f64_r8, "avx512f", Avx512F64, f64, 12, 8, 2);
wrapper!(avx512_f64_r9, "avx512f", Avx512F64, f64, 12, 9, 2);
wrapper!(avx512_f64_r10, "avx512f", Avx512F64, f64, 12, 10, 2);
wrapper!(avx512_f64_r11, "avx512f", Avx512F64, f64, 12, 11, 2);
taps_wrapper!(taps512_f32_r1, "avx512f", Avx512F32, f32, 12, 1, 2);
taps_wrapper!(taps512_f32_r2, "avx512f", Avx512F32, f32, 12, 2, 2);
taps_wrapper!(taps512_f32_r3, "avx512f", Avx512F32, f32, 12, 3, 2);
taps_wrapper!(taps512_f32_r4, "avx512f", Avx512F32, f32, 12, 4, 2);
taps_wrapper!(taps512_f32_r5, "avx512f", Avx512F32, f32, 12, 5, 2);
taps_wrapper!(taps512_f32_r6, "avx512f", Avx512F32, f32, 12, 6, 2);
taps_wrapper!(taps512_f32_r7, "avx512f", Avx512F32, f32, 12, 7, 2);
taps_wrapper!(taps512_f32_r8, "avx512f", Avx512F32, f32, 12, 8, 2);
taps_wrapper!(taps512_f32_r9, "avx512f", Avx512F32, f32, 12, 9, 2);
taps_wrapper!(taps512_f32_r10, "avx512f", Avx512F32, f32, 12, 10, 2);
taps_wrapper!(taps512_f32_r11, "avx512f", Avx512F32, f32, 12, 11, 2);
taps_wrapper!(taps512_f32_r12, "avx512f", Avx512F32, f32, 12, 12, 2);
// The same tiles with B's two vectors `bstep` apart (two output rows of
// one vector each per tile).
taps_wrapper!(tapsx512_f32_r1, "avx512f", Avx512F32, f32, 12, 1, 2, true);
taps_wrapper!(tapsx512_f32_r2, "avx512f", Avx512F32, f32, 12, 2, 2, true);
taps_wrapper!(tapsx512_f32_r3, "avx512f", Avx512F32, f32, 12, 3, 2, true);
taps_wrapper!(tapsx512_f32_r4, "avx512f", Avx512F32, f32, 12, 4, 2, true);
taps_wrapper!(tapsx512_f32_r5, "avx512f", Avx512F32, f32, 12, 5, 2, true);
taps_wrapper!(tapsx512_f32_r6, "avx512f", Avx512F32, f32, 12, 6, 2, true);
taps_wrapper!(tapsx512_f32_r7, "avx512f", Avx512F32, f32, 12, 7, 2, true);
taps_wrapper!(tapsx512_f32_r8, "avx512f", Avx512F32, f32, 12, 8, 2, true);
taps_wrapper!(tapsx512_f32_r9, "avx512f", Avx512F32, f32, 12, 9, 2, true);
taps_wrapper!(tapsx512_f32_r10, "avx512f", Avx512F32, f32, 12, 10, 2, true);
taps_wrapper!(tapsx512_f32_r11, "avx512f", Avx512F32, f32, 12, 11, 2, true);
taps_wrapper!(tapsx512_f32_r12, "avx512f", Avx512F32, f32, 12, 12, 2, true);
// AVX-512 16-wide f32 tiles (12×16, one vector per row: 12 accumulators)
// for sweeps too narrow for 32-wide tiles (a 3×3 image's 15 columns), where
// the AVX2 6×16 ymm tiles ran at half the 512-bit FMA rate.
wrapper!(avx512n_f32, "avx512f", Avx512F32, f32, 12, 1);
wrapper!(avx512n_f32_r1, "avx512f", Avx512F32, f32, 12, 1, 1);
wrapper!(avx512n_f32_r2, "avx512f", Avx512F32, f32, 12, 2, 1);
wrapper!(avx512n_f32_r3, "avx512f", Avx512F32, f32, 12, 3, 1);
wrapper!(avx512n_f32_r4, "avx512f", Avx512F32, f32, 12, 4, 1);
wrapper!(avx512n_f32_r5, "avx512f", Avx512F32, f32, 12, 5, 1);
wrapper!(avx512n_f32_r6, "avx512f", Avx512F32, f32, 12, 6, 1);
wrapper!(avx512n_f32_r7, "avx512f", Avx512F32, f32, 12, 7, 1);
wrapper!(avx512n_f32_r8, "avx512f", Avx512F32, f32, 12, 8, 1);
wrapper!(avx512n_f32_r9, "avx512f", Avx512F32, f32, 12, 9, 1);
wrapper!(avx512n_f32_r10, "avx512f", Avx512F32, f32, 12, 10, 1);
wrapper!(avx512n_f32_r11, "avx512f", Avx512F32, f32, 12, 11, 1);
taps_wrapper!(taps512n_f32_r1, "avx512f", Avx512F32, f32, 12, 1, 1);
taps_wrapper!(taps512n_f32_r2, "avx512f", Avx512F32, f32, 12, 2, 1);
taps_wrapper!(taps512n_f32_r3, "avx512f", Avx512F32, f32, 12, 3, 1);
taps_wrapper!(taps512n_f32_r4, "avx512f", Avx512F32, f32, 12, 4, 1);
taps_wrapper!(taps512n_f32_r5, "avx512f", Avx512F32, f32, 12, 5, 1);
taps_wrapper!(taps512n_f32_r6, "avx512f", Avx512F32, f32, 12, 6, 1);
taps_wrapper!(taps512n_f32_r7, "avx512f", Avx512F32, f32, 12, 7, 1);
taps_wrapper!(taps512n_f32_r8, "avx512f", Avx512F32, f32, 12, 8, 1);
taps_wrapper!(taps512n_f32_r9, "avx512f", Avx512F32, f32, 12, 9, 1);
taps_wrapper!(taps512n_f32_r10, "avx512f", Avx512F32, f32, 12, 10, 1);
taps_wrapper!(taps512n_f32_r11, "avx512f", Avx512F32, f32, 12, 11, 1);
taps_wrapper!(taps512n_f32_r12, "avx512f", Avx512F32, f32, 12, 12, 1);
taps_wrapper!(taps512_f64_r1, "avx512f", Avx512F64, f64, 12, 1, 2);
taps_wrapper!(taps512_f64_r2, "avx512f", Avx512F64, f64, 12, 2, 2);
taps_wrapper!(taps512_f64_r3, "avx512f", Avx512F64, f64, 12, 3, 2);
taps_wrapper!(taps512_f64_r4, "avx512f", Avx512F64, f64, 12, 4, 2);
taps_wrapper!(taps512_f64_r5, "avx512f", Avx512F64, f64, 12, 5, 2);
taps_wrapper!(taps512_f64_r6, "avx512f", Avx512F64, f64, 12, 6, 2);
taps_wrapper!(taps512_f64_r7, "avx512f", Avx512F64, f64, 12, 7, 2);
taps_wrapper!(taps512_f64_r8, "avx512f", Avx512F64, f64, 12, 8, 2);
taps_wrapper!(taps512_f64_r9, "avx512f", Avx512F64, f64, 12, 9, 2);
taps_wrapper!(taps512_f64_r10, "avx512f", Avx512F64, f64, 12, 10, 2);
taps_wrapper!(taps512_f64_r11, "avx512f", Avx512F64, f64, 12, 11, 2);
taps_wrapper!(taps512_f64_r12, "avx512f", Avx512F64, f64, 12, 12, 2);
taps_wrapper!(tapsx512_f64_r1, "avx512f", Avx512F64, f64, 12, 1, 2, true);
taps_wrapper!(tapsx512_f64_r2, "avx512f", Avx512F64, f64, 12, 2, 2, true);
taps_wrapper!(tapsx512_f64_r3, "avx512f", Avx512F64, f64, 12, 3, 2, true);
taps_wrapper!(tapsx512_f64_r4, "avx512f", Avx512F64, f64, 12, 4, 2, true);
taps_wrapper!(tapsx512_f64_r5, "avx512f", Avx512F64, f64, 12, 5, 2, true);
taps_wrapper!(tapsx512_f64_r6, "avx512f", Avx512F64, f64, 12, 6, 2, true);
taps_wrapper!(tapsx512_f64_r7, "avx512f", Avx512F64, f64, 12, 7, 2, true);
taps_wrapper!(tapsx512_f64_r8, "avx512f", Avx512F64, f64, 12, 8, 2, true);
taps_wrapper!(tapsx512_f64_r9, "avx512f", Avx512F64, f64, 12, 9, 2, true);
taps_wrapper!(tapsx512_f64_r10, "avx512f", Avx512F64, f64, 12, 10, 2, true);
taps_wrapper!(tapsx512_f64_r11, "avx512f", Avx512F64, f64, 12, 11, 2, true);
taps_wrapper!(tapsx512_f64_r12, "avx512f", Avx512F64, f64, 12, 12, 2, true);

/// The AVX2 + FMA f32 kernel (6×16 tile).
#[cfg(target_arch = "x86_64")]
pub const AVX2_F32: Kernel<f32> = Kernel {
    mr: 6,
    nr: 16,
    mc: 144,
    kc: 256,
    nc: 4096,
    ukr: avx2_f32,
    pack_bt: Some(pack_bt_f32_avx),
    edge: &[
        avx2_f32_r1,
        avx2_f32_r2,
        avx2_f32_r3,
        avx2_f32_r4,
        avx2_f32_r5,
    ],
    taps: &[
        taps_f32_r1,
        taps_f32_r2,
        taps_f32_r3,
        taps_f32_r4,
        taps_f32_r5,
        taps_f32_r6,
    ],
    taps_split: &[
        tapsx_f32_r1,
        tapsx_f32_r2,
        tapsx_f32_r3,
        tapsx_f32_r4,
        tapsx_f32_r5,
        tapsx_f32_r6,
    ],
    wide: WideTiles::NONE,
};
/// The AVX2 + FMA f64 kernel (6×8 tile).
#[cfg(target_arch = "x86_64")]
pub const AVX2_F64: Kernel<f64> = Kernel {
    mr: 6,
    nr: 8,
    mc: 144,
    kc: 256,
    nc: 4096,
    ukr: avx2_f64,
    pack_bt: None,
    edge: &[
        avx2_f64_r1,
        avx2_f64_r2,
        avx2_f64_r3,
        avx2_f64_r4,
        avx2_f64_r5,
    ],
    taps: &[
        taps_f64_r1,
        taps_f64_r2,
        taps_f64_r3,
        taps_f64_r4,
        taps_f64_r5,
        taps_f64_r6,
    ],
    taps_split: &[
        tapsx_f64_r1,
        tapsx_f64_r2,
        tapsx_f64_r3,
        tapsx_f64_r4,
        tapsx_f64_r5,
        tapsx_f64_r6,
    ],
    wide: WideTiles::NONE,
};
/// The AVX-512 f32 kernel (12×32 tile; B micro-panel 32 KB of Zen 5's 48 KB L1d).
#[cfg(target_arch = "x86_64")]
pub const AVX512_F32: Kernel<f32> = Kernel {
    mr: 12,
    nr: 32,
    mc: 192,
    kc: 256,
    nc: 4096,
    ukr: avx512_f32,
    pack_bt: Some(pack_bt_f32_avx),
    edge: &[
        avx512_f32_r1,
        avx512_f32_r2,
        avx512_f32_r3,
        avx512_f32_r4,
        avx512_f32_r5,
        avx512_f32_r6,
        avx512_f32_r7,
        avx512_f32_r8,
        avx512_f32_r9,
        avx512_f32_r10,
        avx512_f32_r11,
    ],
    taps: &[
        taps512_f32_r1,
        taps512_f32_r2,
        taps512_f32_r3,
        taps512_f32_r4,
        taps512_f32_r5,
        taps512_f32_r6,
        taps512_f32_r7,
        taps512_f32_r8,
        taps512_f32_r9,
        taps512_f32_r10,
        taps512_f32_r11,
        taps512_f32_r12,
    ],
    taps_split: &[
        tapsx512_f32_r1,
        tapsx512_f32_r2,
        tapsx512_f32_r3,
        tapsx512_f32_r4,
        tapsx512_f32_r5,
        tapsx512_f32_r6,
        tapsx512_f32_r7,
        tapsx512_f32_r8,
        tapsx512_f32_r9,
        tapsx512_f32_r10,
        tapsx512_f32_r11,
        tapsx512_f32_r12,
    ],
    wide: WideTiles {
        mr: 8,
        nb: 48,
        rows: &[
            wide512_f32_r1,
            wide512_f32_r2,
            wide512_f32_r3,
            wide512_f32_r4,
            wide512_f32_r5,
            wide512_f32_r6,
            wide512_f32_r7,
            wide512_f32_r8,
        ],
    },
};
/// The AVX-512 16-wide f32 direct-convolution tiles (12×16): only offered as
/// a narrower direct-tile set (`direct_tile_sets`), never as the GEMM kernel.
#[cfg(target_arch = "x86_64")]
pub const AVX512_NARROW_F32: Kernel<f32> = Kernel {
    mr: 12,
    nr: 16,
    mc: 192,
    kc: 256,
    nc: 4096,
    ukr: avx512n_f32,
    pack_bt: Some(pack_bt_f32_avx),
    edge: &[
        avx512n_f32_r1,
        avx512n_f32_r2,
        avx512n_f32_r3,
        avx512n_f32_r4,
        avx512n_f32_r5,
        avx512n_f32_r6,
        avx512n_f32_r7,
        avx512n_f32_r8,
        avx512n_f32_r9,
        avx512n_f32_r10,
        avx512n_f32_r11,
    ],
    taps: &[
        taps512n_f32_r1,
        taps512n_f32_r2,
        taps512n_f32_r3,
        taps512n_f32_r4,
        taps512n_f32_r5,
        taps512n_f32_r6,
        taps512n_f32_r7,
        taps512n_f32_r8,
        taps512n_f32_r9,
        taps512n_f32_r10,
        taps512n_f32_r11,
        taps512n_f32_r12,
    ],
    // One vector per row: nothing to split.
    taps_split: &[],
    wide: WideTiles::NONE,
};
/// The AVX-512 f64 kernel (12×16 tile).
#[cfg(target_arch = "x86_64")]
pub const AVX512_F64: Kernel<f64> = Kernel {
    mr: 12,
    nr: 16,
    mc: 192,
    kc: 256,
    nc: 4096,
    ukr: avx512_f64,
    pack_bt: None,
    edge: &[
        avx512_f64_r1,
        avx512_f64_r2,
        avx512_f64_r3,
        avx512_f64_r4,
        avx512_f64_r5,
        avx512_f64_r6,
        avx512_f64_r7,
        avx512_f64_r8,
        avx512_f64_r9,
        avx512_f64_r10,
        avx512_f64_r11,
    ],
    taps: &[
        taps512_f64_r1,
        taps512_f64_r2,
        taps512_f64_r3,
        taps512_f64_r4,
        taps512_f64_r5,
        taps512_f64_r6,
        taps512_f64_r7,
        taps512_f64_r8,
        taps512_f64_r9,
        taps512_f64_r10,
        taps512_f64_r11,
        taps512_f64_r12,
    ],
    taps_split: &[
        tapsx512_f64_r1,
        tapsx512_f64_r2,
        tapsx512_f64_r3,
        tapsx512_f64_r4,
        tapsx512_f64_r5,
        tapsx512_f64_r6,
        tapsx512_f64_r7,
        tapsx512_f64_r8,
        tapsx512_f64_r9,
        tapsx512_f64_r10,
        tapsx512_f64_r11,
        tapsx512_f64_r12,
    ],
    wide: WideTiles {
        mr: 8,
        nb: 24,
        rows: &[
            wide512_f64_r1,
            wide512_f64_r2,
            wide512_f64_r3,
            wide512_f64_r4,
            wide512_f64_r5,
            wide512_f64_r6,
            wide512_f64_r7,
            wide512_f64_r8,
        ],
    },
};

/// The AVX-512 kernels' tile loop and blocking, on emulated 512-bit registers
/// (tests check that geometry on machines without AVX-512).
#[cfg(all(test, target_arch = "x86_64"))]
pub mod emulated {
    use super::super::simd::Emu;
    use super::{tile, Kernel, WideTiles, AVX512_F32, AVX512_F64};

    unsafe fn emu_f32(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
    ) {
        // SAFETY: the driver passes panels and tiles of the advertised size.
        unsafe { tile::<Emu<f32, 16>, 12, 12, 2>(kc, a, b, c, ldc, alpha, beta) }
    }
    unsafe fn emu_f64(
        kc: usize,
        a: *const f64,
        b: *const f64,
        c: *mut f64,
        ldc: usize,
        alpha: f64,
        beta: f64,
    ) {
        // SAFETY: as above.
        unsafe { tile::<Emu<f64, 8>, 12, 12, 2>(kc, a, b, c, ldc, alpha, beta) }
    }
    macro_rules! emu_wide {
        ($t:ty, $w:expr, $($name:ident = $rows:expr),+) => {
            $(
                unsafe fn $name(kc: usize, a: *const $t, b: *const $t, ldb: usize, c: *mut $t, ldc: usize) {
                    // SAFETY: the caller passes panels and tiles of the advertised size.
                    unsafe { super::wide_tile::<Emu<$t, $w>, 8, $rows, 3>(kc, a, b, ldb, c, ldc) }
                }
            )+
        };
    }
    emu_wide!(
        f32,
        16,
        ew32_1 = 1,
        ew32_2 = 2,
        ew32_3 = 3,
        ew32_4 = 4,
        ew32_5 = 5,
        ew32_6 = 6,
        ew32_7 = 7,
        ew32_8 = 8
    );
    emu_wide!(
        f64,
        8,
        ew64_1 = 1,
        ew64_2 = 2,
        ew64_3 = 3,
        ew64_4 = 4,
        ew64_5 = 5,
        ew64_6 = 6,
        ew64_7 = 7,
        ew64_8 = 8
    );
    /// The AVX-512 wide tiles' geometry (8×48 f32), emulated.
    pub const EMU512_WIDE_F32: WideTiles<f32> = WideTiles {
        mr: 8,
        nb: 48,
        rows: &[
            ew32_1, ew32_2, ew32_3, ew32_4, ew32_5, ew32_6, ew32_7, ew32_8,
        ],
    };
    /// The AVX-512 wide tiles' geometry (8×24 f64), emulated.
    pub const EMU512_WIDE_F64: WideTiles<f64> = WideTiles {
        mr: 8,
        nb: 24,
        rows: &[
            ew64_1, ew64_2, ew64_3, ew64_4, ew64_5, ew64_6, ew64_7, ew64_8,
        ],
    };
    /// AVX-512 f32 geometry (12×32, same blocking), emulated.
    pub const EMU512_F32: Kernel<f32> = Kernel {
        ukr: emu_f32,
        pack_bt: None,
        // The real AVX-512 edge and direct tiles would not run where this
        // emulation is needed; edges then go through a scratch tile.
        edge: &[],
        taps: &[],
        taps_split: &[],
        wide: WideTiles::NONE,
        ..AVX512_F32
    };
    /// AVX-512 f64 geometry (12×16, same blocking), emulated.
    pub const EMU512_F64: Kernel<f64> = Kernel {
        ukr: emu_f64,
        pack_bt: None,
        // The real AVX-512 edge and direct tiles would not run where this
        // emulation is needed; edges then go through a scratch tile.
        edge: &[],
        taps: &[],
        taps_split: &[],
        wide: WideTiles::NONE,
        ..AVX512_F64
    };
}

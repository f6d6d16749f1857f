//! Packing blocks of op(A) and op(B) into the contiguous micro-panels the
//! micro-kernel streams through, zero-padding the edges so the kernel never
//! reads outside its operands and always works on full tiles.

use super::Trans;

/// Largest register-tile side any kernel uses.
pub const MAX_TILE: usize = 32;

/// Packs rows `i0..i0+mc`, depth `p0..p0+kc` of op(A) into `ceil(mc/mr)`
/// panels of `kc·mr` values: `dst[panel·kc·mr + p·mr + i] = op(A)[i0 + panel·mr + i, p0 + p]`.
#[allow(clippy::too_many_arguments)]
pub fn pack_a<T: Copy + Default>(
    ta: Trans,
    a: &[T],
    lda: usize,
    (i0, mc): (usize, usize),
    (p0, kc): (usize, usize),
    mr: usize,
    dst: &mut [T],
) {
    for (pi, panel) in dst
        .chunks_exact_mut(kc * mr)
        .take(mc.div_ceil(mr))
        .enumerate()
    {
        let r0 = i0 + pi * mr;
        let rows = mr.min(i0 + mc - r0);
        match ta {
            // op(A)[i, p] = a[i·lda + p]: gather one value from each of `rows` rows.
            Trans::No if rows == mr && matches!(mr, 6 | 12) => {
                // Full panels of the kernels' heights: gather each depth
                // step's `mr` values (loads from `mr` sequential streams, one
                // contiguous store) in a loop unrolled over the rows.
                let base = r0 * lda + p0;
                assert!(base + (mr - 1) * lda + kc <= a.len(), "pack_a: A too short");
                match mr {
                    6 => crate::isa::vectorised(
                        #[inline(always)]
                        || gather_rows::<T, 6>(&a[base..], lda, kc, panel),
                    ),
                    _ => crate::isa::vectorised(
                        #[inline(always)]
                        || gather_rows::<T, 12>(&a[base..], lda, kc, panel),
                    ),
                }
            }
            Trans::No => {
                let mut src: [&[T]; MAX_TILE] = [&[]; MAX_TILE];
                for (i, s) in src[..rows].iter_mut().enumerate() {
                    *s = &a[(r0 + i) * lda + p0..][..kc];
                }
                if rows < mr {
                    panel.fill(T::default());
                }
                // Strided writes from contiguous reads, without per-element index checks.
                for (i, s) in src[..rows].iter().enumerate() {
                    panel[i..]
                        .iter_mut()
                        .step_by(mr)
                        .zip(s.iter())
                        .for_each(|(d, &x)| *d = x);
                }
            }
            // op(A)[i, p] = a[p·lda + i]: each step is a contiguous run
            // (`copy_run`: a memmove call per 12-value run was 15 % of the
            // first Winograd kernel gradient, which packed A stored K×M).
            Trans::Yes => {
                for (p, d) in panel.chunks_exact_mut(mr).enumerate() {
                    copy_run(&mut d[..rows], &a[(p0 + p) * lda + r0..][..rows]);
                    d[rows..].fill(T::default());
                }
            }
        }
    }
}

/// `panel[p·MR + i] = a[i·lda + p]` for `p < kc`, `i < MR` (`a` holds the
/// `MR` rows, checked by the caller).
#[inline(always)]
fn gather_rows<T: Copy, const MR: usize>(a: &[T], lda: usize, kc: usize, panel: &mut [T]) {
    let src: [&[T]; MR] = std::array::from_fn(|i| &a[i * lda..][..kc]);
    for (p, d) in panel[..kc * MR].chunks_exact_mut(MR).enumerate() {
        let d: &mut [T; MR] = d.try_into().expect("chunks of MR");
        for i in 0..MR {
            d[i] = src[i][p];
        }
    }
}

/// `dst ← src` for equal-length runs; the panel widths are copied as
/// fixed-size arrays (a few vector moves; shorter runs as two overlapping
/// ones) instead of a `memmove` call per run, which cost a third of a thin
/// convolution's time.
#[inline(always)]
pub fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    fn fixed<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
        if let (Ok(d), Ok(s)) = (<&mut [T; N]>::try_from(dst), <&[T; N]>::try_from(src)) {
            *d = *s;
        }
    }
    /// Two overlapping `N`-element copies cover any length in `N..=2N`.
    fn twice<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
        let len = dst.len();
        fixed::<T, N>(&mut dst[..N], &src[..N]);
        fixed::<T, N>(&mut dst[len - N..], &src[len - N..]);
    }
    assert_eq!(dst.len(), src.len(), "copy_run: lengths");
    match dst.len() {
        8 => fixed::<T, 8>(dst, src),
        16 => fixed::<T, 16>(dst, src),
        32 => fixed::<T, 32>(dst, src),
        // A 3×3 image's rows: a `memmove` call per run was 14 % of its
        // forward convolution (256→256, implicit GEMM).
        1 => fixed::<T, 1>(dst, src),
        2..=3 => twice::<T, 2>(dst, src),
        4..=7 => twice::<T, 4>(dst, src),
        9..=15 => twice::<T, 8>(dst, src),
        17..=31 => twice::<T, 16>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// Packs depth `p0..p0+kc`, columns `j0..j0+nc` of op(B) into `ceil(nc/nr)`
/// panels of `kc·nr` values: `dst[panel·kc·nr + p·nr + j] = op(B)[p0 + p, j0 + panel·nr + j]`.
/// `panels` restricts the work to a range of panels (for parallel packing);
/// `dst` then starts at the first of them.
#[allow(clippy::too_many_arguments)]
pub fn pack_b<T: Copy + Default>(
    tb: Trans,
    b: &[T],
    ldb: usize,
    (p0, kc): (usize, usize),
    (j0, nc): (usize, usize),
    nr: usize,
    panels: std::ops::Range<usize>,
    dst: &mut [T],
    fast: Option<PackTransposed<T>>,
) {
    for (panel, jp) in dst.chunks_exact_mut(kc * nr).zip(panels) {
        let c0 = j0 + jp * nr;
        let cols = nr.min(j0 + nc - c0);
        match tb {
            // op(B)[p, j] = b[p·ldb + j]: each step is a contiguous run.
            Trans::No => {
                if cols == nr {
                    for (p, d) in panel.chunks_exact_mut(nr).enumerate() {
                        copy_run(d, &b[(p0 + p) * ldb + c0..][..nr]);
                    }
                    continue;
                }
                for (p, d) in panel.chunks_exact_mut(nr).enumerate() {
                    d[..cols].copy_from_slice(&b[(p0 + p) * ldb + c0..][..cols]);
                    d[cols..].fill(T::default());
                }
            }
            // op(B)[p, j] = b[j·ldb + p]: gather one value from each of `cols` rows.
            Trans::Yes => {
                if let Some(f) = fast.filter(|_| cols == nr) {
                    let start = c0 * ldb + p0;
                    assert!(
                        start + (nr - 1) * ldb + kc <= b.len(),
                        "pack_b: B too short"
                    );
                    // SAFETY: rows `c0..c0 + nr` of `b` hold `p0..p0 + kc` (checked
                    // above), the panel holds `kc·nr` values, and a kernel only
                    // offers a packer its CPU can run (the driver checked the ISA).
                    unsafe { f(b.as_ptr().add(start), ldb, kc, nr, panel.as_mut_ptr()) };
                    continue;
                }
                let mut src: [&[T]; MAX_TILE] = [&[]; MAX_TILE];
                for (j, s) in src[..cols].iter_mut().enumerate() {
                    *s = &b[(c0 + j) * ldb + p0..][..kc];
                }
                if cols < nr {
                    panel.fill(T::default());
                }
                for (j, s) in src[..cols].iter().enumerate() {
                    panel[j..]
                        .iter_mut()
                        .step_by(nr)
                        .zip(s.iter())
                        .for_each(|(d, &x)| *d = x);
                }
            }
        }
    }
}

/// Packs one full B micro-panel of op(B) = Bᵀ: `dst[p·nr + j] = src[j·ld + p]`
/// for `j < nr`, `p < kc` (the driver's `pack_b` `Trans::Yes` case).
pub type PackTransposed<T> = unsafe fn(src: *const T, ld: usize, kc: usize, nr: usize, dst: *mut T);

/// [`PackTransposed`] for f32 with AVX, `nr` a multiple of 8: 8×8 blocks
/// transposed in registers (unpack, shuffle, lane permute) instead of one
/// strided store per element — the scalar gather took a fifth of an
/// `X·Wᵀ` layer's time.
///
/// # Safety
/// Rows `src + j·ld` hold `kc` readable values for `j < nr`; `dst` has room
/// for `kc·nr` values; the CPU has AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
pub unsafe fn pack_bt_f32_avx(src: *const f32, ld: usize, kc: usize, nr: usize, dst: *mut f32) {
    use std::arch::x86_64::*;
    debug_assert_eq!(nr % 8, 0);
    // SAFETY: every load reads `src[(j0 + r)·ld + p ..][..8]` with `p + 8 ≤ kc`
    // and every store writes `dst[(p + q)·nr + j0 ..][..8]` inside `kc·nr`
    // (contract above); the tail loop reads and writes single in-range values.
    unsafe {
        for j0 in (0..nr).step_by(8) {
            let row = |r: usize| src.add((j0 + r) * ld);
            let mut p = 0;
            while p + 8 <= kc {
                let r0 = _mm256_loadu_ps(row(0).add(p));
                let r1 = _mm256_loadu_ps(row(1).add(p));
                let r2 = _mm256_loadu_ps(row(2).add(p));
                let r3 = _mm256_loadu_ps(row(3).add(p));
                let r4 = _mm256_loadu_ps(row(4).add(p));
                let r5 = _mm256_loadu_ps(row(5).add(p));
                let r6 = _mm256_loadu_ps(row(6).add(p));
                let r7 = _mm256_loadu_ps(row(7).add(p));
                let t0 = _mm256_unpacklo_ps(r0, r1);
                let t1 = _mm256_unpackhi_ps(r0, r1);
                let t2 = _mm256_unpacklo_ps(r2, r3);
                let t3 = _mm256_unpackhi_ps(r2, r3);
                let t4 = _mm256_unpacklo_ps(r4, r5);
                let t5 = _mm256_unpackhi_ps(r4, r5);
                let t6 = _mm256_unpacklo_ps(r6, r7);
                let t7 = _mm256_unpackhi_ps(r6, r7);
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let d = dst.add(p * nr + j0);
                _mm256_storeu_ps(d, _mm256_permute2f128_ps::<0x20>(s0, s4));
                _mm256_storeu_ps(d.add(nr), _mm256_permute2f128_ps::<0x20>(s1, s5));
                _mm256_storeu_ps(d.add(2 * nr), _mm256_permute2f128_ps::<0x20>(s2, s6));
                _mm256_storeu_ps(d.add(3 * nr), _mm256_permute2f128_ps::<0x20>(s3, s7));
                _mm256_storeu_ps(d.add(4 * nr), _mm256_permute2f128_ps::<0x31>(s0, s4));
                _mm256_storeu_ps(d.add(5 * nr), _mm256_permute2f128_ps::<0x31>(s1, s5));
                _mm256_storeu_ps(d.add(6 * nr), _mm256_permute2f128_ps::<0x31>(s2, s6));
                _mm256_storeu_ps(d.add(7 * nr), _mm256_permute2f128_ps::<0x31>(s3, s7));
                p += 8;
            }
            for p in p..kc {
                for r in 0..8 {
                    *dst.add(p * nr + j0 + r) = *row(r).add(p);
                }
            }
        }
    }
}

/// A source of op(B) that the driver packs from: a stored matrix
/// (`MatrixB`) or an operand that is never stored, such as the im2col
/// matrix of a convolution (`crate::conv`), whose panels are copied straight
/// from the images.
pub trait PackB<T>: Sync {
    /// Packs depth `p0..p0+kc`, columns `j0..j0+nc` of op(B) with the layout
    /// of `pack_b`: `dst[panel·kc·nr + p·nr + j] = op(B)[p0 + p, j0 + panel·nr + j]`,
    /// for the panels in `panels` (`dst` starts at the first of them),
    /// zero-padding columns past `j0 + nc`. `fast` is the kernel's
    /// transposing packer, for sources that hold op(B) as rows of Bᵀ.
    #[allow(clippy::too_many_arguments)]
    fn pack(
        &self,
        depth: (usize, usize),
        cols: (usize, usize),
        nr: usize,
        panels: std::ops::Range<usize>,
        dst: &mut [T],
        fast: Option<PackTransposed<T>>,
    );
}

/// A stored row-major matrix as a [`PackB`] source.
pub struct MatrixB<'a, T> {
    /// Whether op(B) is B or its transpose.
    pub tb: Trans,
    /// The elements.
    pub b: &'a [T],
    /// Leading dimension.
    pub ldb: usize,
}

impl<T: Copy + Default + Sync> PackB<T> for MatrixB<'_, T> {
    fn pack(
        &self,
        depth: (usize, usize),
        cols: (usize, usize),
        nr: usize,
        panels: std::ops::Range<usize>,
        dst: &mut [T],
        fast: Option<PackTransposed<T>>,
    ) {
        pack_b(
            self.tb, self.b, self.ldb, depth, cols, nr, panels, dst, fast,
        )
    }
}

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
            // op(A)[i, p] = a[p·lda + i]: each step is a contiguous run.
            Trans::Yes => {
                for (p, d) in panel.chunks_exact_mut(mr).enumerate() {
                    d[..rows].copy_from_slice(&a[(p0 + p) * lda + r0..][..rows]);
                    d[rows..].fill(T::default());
                }
            }
        }
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
) {
    for (panel, jp) in dst.chunks_exact_mut(kc * nr).zip(panels) {
        let c0 = j0 + jp * nr;
        let cols = nr.min(j0 + nc - c0);
        match tb {
            // op(B)[p, j] = b[p·ldb + j]: each step is a contiguous run.
            Trans::No => {
                for (p, d) in panel.chunks_exact_mut(nr).enumerate() {
                    d[..cols].copy_from_slice(&b[(p0 + p) * ldb + c0..][..cols]);
                    d[cols..].fill(T::default());
                }
            }
            // op(B)[p, j] = b[j·ldb + p]: gather one value from each of `cols` rows.
            Trans::Yes => {
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

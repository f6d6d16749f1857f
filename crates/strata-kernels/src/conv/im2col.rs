//! The column matrix. [`im2col`] unfolds an image's windows into the columns
//! of a `[c_in·kh·kw, oh·ow]` matrix and [`col2im`], its adjoint, adds them
//! back into their pixels: the explicit GEMM path and the column-buffer
//! backward-data. `Cols` and `ColsT` are the same matrix and its transpose
//! never stored — the GEMM driver packs its panels straight from zero-padded
//! images (`padded`), the implicit GEMM of the forward pass and of
//! backward-weights. `gather` and `scatter` lay several images side by side
//! as one GEMM operand and back.

use super::ConvGeometry;
use crate::gemm::{copy_run, GemmScalar, PackB, PackTransposed};

/// For kernel offset `k` along an axis: the range of output positions whose
/// input index `o·s + k − pad` lies inside `0..len`.
fn valid_range(k: usize, pad: usize, s: usize, len: usize, out: usize) -> (usize, usize) {
    // o·s + k ≥ pad  ⇔  o ≥ ⌈(pad − k)/s⌉
    let lo = if pad > k { (pad - k).div_ceil(s) } else { 0 };
    // o·s + k − pad ≤ len − 1  ⇔  o ≤ ⌊(len − 1 + pad − k)/s⌋
    let hi = if len + pad > k {
        ((len - 1 + pad - k) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Unfolds one image (`[c_in, h, w]`) into the columns of `col`: row `r` of
/// the `[c_in·kh·kw, oh·ow]` matrix starts at `col[r·ld]`, so several images
/// can sit side by side in one matrix (`ld ≥ oh·ow`).
pub fn im2col<T: GemmScalar>(g: &ConvGeometry, x: &[T], col: &mut [T], ld: usize) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(x.len(), g.in_image(), "im2col: image length");
    assert!(ld >= oh * ow, "im2col: leading dimension");
    assert!(col.len() + ld > g.patch() * ld, "im2col: column length");
    let mut r = 0;
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            let (ylo, yhi) = valid_range(ki, g.pad_top, g.stride_h, g.h, oh);
            for kj in 0..g.kw {
                let (xlo, xhi) = valid_range(kj, g.pad_left, g.stride_w, g.w, ow);
                let row = &mut col[r * ld..r * ld + oh * ow];
                r += 1;
                if g.stride_w == 1 && ow == g.w && xlo < xhi && ylo < yhi {
                    // Rows of the window and of the image have the same length
                    // ("same" padding, stride 1): the valid block is one shifted
                    // copy; then zero the wrapped-around border columns.
                    let iy0 = ylo * g.stride_h + ki - g.pad_top;
                    let x0 = xlo + kj - g.pad_left;
                    row[..ylo * ow + xlo].fill(T::zero());
                    row[(yhi - 1) * ow + xhi..].fill(T::zero());
                    if g.stride_h == 1 {
                        let (d0, d1) = (ylo * ow + xlo, (yhi - 1) * ow + xhi);
                        let s0 = iy0 * g.w + x0;
                        row[d0..d1].copy_from_slice(&plane[s0..s0 + (d1 - d0)]);
                    } else {
                        for oy in ylo..yhi {
                            let iy = oy * g.stride_h + ki - g.pad_top;
                            let (d0, s0) = (oy * ow + xlo, iy * g.w + x0);
                            row[d0..d0 + (xhi - xlo)].copy_from_slice(&plane[s0..s0 + (xhi - xlo)]);
                        }
                    }
                    for dst in row[ylo * ow..yhi * ow].chunks_exact_mut(ow) {
                        dst[..xlo].fill(T::zero());
                        dst[xhi..].fill(T::zero());
                    }
                    continue;
                }
                for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
                    if oy < ylo || oy >= yhi {
                        dst.fill(T::zero());
                        continue;
                    }
                    let iy = oy * g.stride_h + ki - g.pad_top;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    dst[..xlo].fill(T::zero());
                    dst[xhi..].fill(T::zero());
                    if xlo == xhi {
                        continue;
                    }
                    let x0 = xlo * g.stride_w + kj - g.pad_left;
                    if g.stride_w == 1 {
                        dst[xlo..xhi].copy_from_slice(&src[x0..x0 + (xhi - xlo)]);
                    } else {
                        for (d, &s) in dst[xlo..xhi]
                            .iter_mut()
                            .zip(src[x0..].iter().step_by(g.stride_w))
                        {
                            *d = s;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every column entry into its pixel of `x`
/// (`[c_in, h, w]`, overwritten); `ld` as in [`im2col`].
pub fn col2im<T: GemmScalar>(g: &ConvGeometry, col: &[T], ld: usize, x: &mut [T]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(x.len(), g.in_image(), "col2im: image length");
    assert!(ld >= oh * ow, "col2im: leading dimension");
    assert!(col.len() + ld > g.patch() * ld, "col2im: column length");
    x.fill(T::zero());
    let mut r = 0;
    for c in 0..g.c_in {
        let plane = &mut x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            let (ylo, yhi) = valid_range(ki, g.pad_top, g.stride_h, g.h, oh);
            for kj in 0..g.kw {
                let (xlo, xhi) = valid_range(kj, g.pad_left, g.stride_w, g.w, ow);
                let row = &col[r * ld..r * ld + oh * ow];
                r += 1;
                if xlo == xhi {
                    continue;
                }
                for oy in ylo..yhi {
                    let iy = oy * g.stride_h + ki - g.pad_top;
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let src = &row[oy * ow + xlo..oy * ow + xhi];
                    let x0 = xlo * g.stride_w + kj - g.pad_left;
                    if g.stride_w == 1 {
                        for (d, &s) in dst[x0..x0 + src.len()].iter_mut().zip(src) {
                            *d = *d + s;
                        }
                    } else {
                        for (d, &s) in dst[x0..].iter_mut().step_by(g.stride_w).zip(src) {
                            *d = *d + s;
                        }
                    }
                }
            }
        }
    }
}

/// Zero-padded copies of the `n` images in `xs` (`[n, c_in, h + pads, w + pads]`),
/// so that every window row is a plain run of the padded image; `xs` itself
/// when there is no padding. `buf` only grows and its borders are never
/// written, so they stay zero across groups.
pub(super) fn padded<'a, T: GemmScalar>(
    g: &ConvGeometry,
    xs: &'a [T],
    buf: &'a mut Vec<T>,
) -> &'a [T] {
    if g.pad_top + g.pad_bottom + g.pad_left + g.pad_right == 0 {
        return xs;
    }
    let (ph, pw) = g.padded_hw();
    let planes = xs.len() / (g.h * g.w).max(1);
    let len = planes * ph * pw;
    if buf.len() < len {
        buf.clear();
        buf.resize(len, T::zero());
    }
    for (src, dst) in xs
        .chunks_exact(g.h * g.w)
        .zip(buf.chunks_exact_mut(ph * pw))
    {
        for (y, row) in src.chunks_exact(g.w).enumerate() {
            copy_run(&mut dst[(y + g.pad_top) * pw + g.pad_left..][..g.w], row);
        }
    }
    &buf[..len]
}

/// The im2col matrix of a group of zero-padded images, never stored: the
/// GEMM driver packs its panels straight from the images ([`PackB`]).
/// Entry `(r, j)` is `xp[base(j) + offs[r]]`, where `base(j)` locates output
/// pixel `j`'s window in its padded image and `offs[r]` the kernel tap `r`.
pub(super) struct Cols<'a, T> {
    /// Padded images, `[n, c_in, ph, pw]`.
    xp: &'a [T],
    /// Per patch row `(c, ki, kj)`: `c·ph·pw + ki·pw + kj`.
    offs: &'a [usize],
    /// Elements of one padded image.
    pimg: usize,
    /// Output width.
    ow: usize,
    /// Output pixels per image.
    ohw: usize,
    /// Padded-image step between output rows.
    row_step: usize,
    /// Padded-image step between output columns (the horizontal stride).
    sw: usize,
}

impl<T: GemmScalar> Cols<'_, T> {
    pub(super) fn new<'a>(g: &ConvGeometry, xp: &'a [T], offs: &'a [usize]) -> Cols<'a, T> {
        let (ph, pw) = g.padded_hw();
        Cols {
            xp,
            offs,
            pimg: g.c_in * ph * pw,
            ow: g.out_w(),
            ohw: g.out_h() * g.out_w(),
            row_step: g.stride_h * pw,
            sw: g.stride_w,
        }
    }

    /// Splits columns `c0..c0 + cols` into runs inside one output row, as
    /// `(base in xp, length, offset in the panel)`, into `out`.
    fn runs(&self, c0: usize, cols: usize, out: &mut Vec<(usize, usize, usize)>) {
        out.clear();
        let mut j = 0;
        while j < cols {
            let col = c0 + j;
            let (img, pos) = (col / self.ohw, col % self.ohw);
            let (oy, ox) = (pos / self.ow, pos % self.ow);
            let len = (self.ow - ox).min(cols - j);
            out.push((img * self.pimg + oy * self.row_step + ox * self.sw, len, j));
            j += len;
        }
    }

    /// `dst[t] = xp[start + t·sw]`.
    #[inline(always)]
    fn copy(&self, dst: &mut [T], start: usize) {
        if self.sw == 1 {
            copy_run(dst, &self.xp[start..][..dst.len()]);
        } else {
            let src = self.xp[start..].iter().step_by(self.sw);
            dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x);
        }
    }
}

/// Forward: op(B) is the im2col matrix (depth = patch rows, columns = pixels).
impl<T: GemmScalar> PackB<T> for Cols<'_, T> {
    fn pack(
        &self,
        (p0, kc): (usize, usize),
        (j0, nc): (usize, usize),
        nr: usize,
        panels: std::ops::Range<usize>,
        dst: &mut [T],
        _fast: Option<PackTransposed<T>>,
    ) {
        let offs = &self.offs[p0..p0 + kc];
        let mut runs = Vec::with_capacity(nr);
        for (panel, jp) in dst.chunks_exact_mut(kc * nr).zip(panels) {
            let c0 = j0 + jp * nr;
            let cols = nr.min(j0 + nc - c0);
            self.runs(c0, cols, &mut runs);
            if let [(base, len, 0)] = runs[..] {
                if len == nr && self.sw == 1 {
                    // The common case: the panel is one stretch of an output row.
                    match nr {
                        8 => stretch::<T, 8>(panel, &self.xp[base..], offs),
                        16 => stretch::<T, 16>(panel, &self.xp[base..], offs),
                        32 => stretch::<T, 32>(panel, &self.xp[base..], offs),
                        _ => {
                            for (d, &o) in panel.chunks_exact_mut(nr).zip(offs) {
                                self.copy(d, base + o);
                            }
                        }
                    }
                    continue;
                }
            }
            for (d, &o) in panel.chunks_exact_mut(nr).zip(offs) {
                for &(base, len, off) in &runs {
                    self.copy(&mut d[off..off + len], base + o);
                }
                d[cols..].fill(T::zero());
            }
        }
    }
}

/// `panel[p] = src[offs[p]..][..N]` for every depth step `p`: the panel
/// width a compile-time constant, so each step is a few vector moves.
#[inline(always)]
fn stretch<T: Copy, const N: usize>(panel: &mut [T], src: &[T], offs: &[usize]) {
    let (steps, _) = panel.as_chunks_mut::<N>();
    for (d, &o) in steps.iter_mut().zip(offs) {
        let s: &[T; N] = src[o..o + N].try_into().expect("N values");
        *d = *s;
    }
}

/// Backward-weights: op(B) is the transposed im2col matrix (depth = pixels,
/// columns = patch rows). Each patch row's stretch of pixels is copied into a
/// small buffer, which the kernel's transposing packer turns into a panel.
pub(super) struct ColsT<'a, T>(pub(super) Cols<'a, T>);

impl<T: GemmScalar> PackB<T> for ColsT<'_, T> {
    fn pack(
        &self,
        (p0, kc): (usize, usize),
        (j0, nc): (usize, usize),
        nr: usize,
        panels: std::ops::Range<usize>,
        dst: &mut [T],
        fast: Option<PackTransposed<T>>,
    ) {
        let cols = &self.0;
        let mut runs = Vec::new();
        cols.runs(p0, kc, &mut runs);
        let mut rows = vec![T::zero(); nr * kc];
        for (panel, jp) in dst.chunks_exact_mut(kc * nr).zip(panels) {
            let r0 = j0 + jp * nr;
            let live = nr.min(j0 + nc - r0);
            for (row, &o) in rows.chunks_exact_mut(kc).zip(&cols.offs[r0..r0 + live]) {
                for &(base, len, off) in &runs {
                    cols.copy(&mut row[off..off + len], base + o);
                }
            }
            match fast {
                Some(f) if live == nr => {
                    // SAFETY: `rows` holds `nr` rows of `kc` values (stride kc);
                    // the panel holds `kc·nr`; the driver only passes a packer
                    // its CPU runs.
                    unsafe { f(rows.as_ptr(), kc, kc, nr, panel.as_mut_ptr()) }
                }
                _ => {
                    for (p, d) in panel.chunks_exact_mut(nr).enumerate() {
                        for (j, x) in d.iter_mut().enumerate() {
                            *x = if j < live {
                                rows[j * kc + p]
                            } else {
                                T::zero()
                            };
                        }
                    }
                }
            }
        }
    }
}

/// `offs` of [`Cols`]: where each patch row's tap sits in a padded image.
pub(super) fn tap_offsets(g: &ConvGeometry) -> Vec<usize> {
    let (ph, pw) = g.padded_hw();
    let plane = ph * pw;
    let mut offs = Vec::with_capacity(g.patch());
    for c in 0..g.c_in {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                offs.push(c * plane + ki * pw + kj);
            }
        }
    }
    offs
}

/// Copies `nb` images of `[rows, ohw]` (`src`, image after image) into one
/// `[rows, nb·ohw]` matrix (`dst`).
pub(super) fn gather<T: Copy>(src: &[T], dst: &mut [T], rows: usize, ohw: usize) {
    let nb = src.len() / (rows * ohw).max(1);
    for (b, img) in src.chunks_exact(rows * ohw).enumerate() {
        for (r, s) in img.chunks_exact(ohw).enumerate() {
            dst[r * nb * ohw + b * ohw..][..ohw].copy_from_slice(s);
        }
    }
}

/// The inverse of [`gather`]: splits a `[rows, nb·ohw]` matrix into images.
pub(super) fn scatter<T: Copy>(src: &[T], dst: &mut [T], rows: usize, ohw: usize) {
    let nb = dst.len() / (rows * ohw).max(1);
    for (b, img) in dst.chunks_exact_mut(rows * ohw).enumerate() {
        for (r, d) in img.chunks_exact_mut(ohw).enumerate() {
            d.copy_from_slice(&src[r * nb * ohw + b * ohw..][..ohw]);
        }
    }
}

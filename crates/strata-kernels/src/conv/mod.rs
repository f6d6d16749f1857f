//! 2-D convolution over NCHW blocks: forward, backward-data (a transposed
//! convolution) and backward-weights, all as GEMMs.
//!
//! Section 12.3.1: slice `o` of the output block is
//! `O[o, u, v] = Σ_{c,i,j} I[c, u·s + i − p, v·s + j − p] · K[o, c, i, j] + b[o]`,
//! reading zero where the index leaves the image (zero padding; other borders
//! are materialised with [`crate::pad`] first). Writing the windows of an image
//! as the columns of a matrix (`im2col`, `[C·kh·kw, oh·ow]`) turns this into
//! one product `O = K · col` per image, with `K` seen as `[C_out, C·kh·kw]`.
//!
//! Backward, per image: `∂E/∂K += ∂E/∂O · colᵀ` and `∂E/∂col = Kᵀ · ∂E/∂O`,
//! whose `col2im` (the adjoint of `im2col`, adding every window's entry back
//! into its pixel) is `∂E/∂I`.
//!
//! Algorithms (chosen in [`choose`], the one place to A/B them):
//! - [`ConvAlgo::Pointwise`]: 1×1 kernel, stride 1, no padding — the image
//!   itself is the column matrix, no copy at all.
//! - [`ConvAlgo::Direct`]: on a CPU with direct tiles (AVX2 + FMA), stride-1
//!   layers whose output rows neither fill nor divide a GEMM panel, and
//!   strided layers whose output rows fill the tiles. Forward: the register tiles read the zero-padded image
//!   where it lies — split into its stride phases when strided
//!   (`PhaseLayout`) — one kernel tap after another (output rows in the
//!   padded width, the extra columns dropped); only the kernel is packed.
//!   Backward-data is the forward convolution of `∂E/∂O` with the flipped
//!   kernel (strided: one such convolution per phase of `∂E/∂I`, for every
//!   strided layer whose kernel covers its stride, whatever its forward
//!   algorithm).
//!   Backward-weights (`c_in` a multiple of the tile width; also for ≥ 32×32
//!   outputs under the implicit GEMM) multiplies ∂E/∂O, packed once per
//!   image, by the padded image stored slice-innermost, which is a packed
//!   panel at every tap's offset.
//! - [`ConvAlgo::ImplicitGemm`]: everything else. The column matrix is never
//!   stored: the GEMM driver packs its panels straight from zero-padded
//!   images ([`PackB`]). Backward-data of a stride-1 layer with
//!   `c_in ≥ c_out` is the forward convolution of `∂E/∂O` (padded by
//!   `k − 1 − p`) with the flipped kernel; otherwise it goes through a
//!   column buffer and `col2im`.
//! - [`ConvAlgo::Winograd`]: 3×3 stride-1 layers with ≥ 64 slices each way
//!   and even output sizes: Winograd's F(2×2, 3×3) ([`crate::winograd`]),
//!   forward and (through the flipped kernel) backward-data;
//!   `STRATA_CONV_NO_WINOGRAD` turns it off for A/B runs.
//! - [`ConvAlgo::Im2colGemm`]: the explicit path (a column buffer per
//!   worker, never one for the whole minibatch), forced by setting
//!   `STRATA_CONV_EXPLICIT` for A/B runs.
//!
//! Parallel over the minibatch inside [`crate::parallel::install`]. Weight
//! gradients are summed per fixed chunk of images and the partial sums added in
//! chunk order, so results do not depend on timing or thread count.

use crate::gemm::{
    copy_run, direct_tile_sets, direct_tiles, direct_tiles_for, gemm, gemm_packed_b, DirectTiles,
    GemmScalar, PackB, PackTransposed, Trans,
};
use rayon::prelude::*;

/// Shape of a convolution: input `[batch, c_in, h, w]`, kernel
/// `[c_out, c_in, kh, kw]`, zero padding on each side, strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images in the minibatch.
    pub batch: usize,
    /// Input slices.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output slices (kernels).
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows above.
    pub pad_top: usize,
    /// Zero rows below.
    pub pad_bottom: usize,
    /// Zero columns left.
    pub pad_left: usize,
    /// Zero columns right.
    pub pad_right: usize,
}

impl ConvGeometry {
    /// Output height, `⌊(h + pads − kh) / s⌋ + 1` (0 if the kernel does not fit).
    pub fn out_h(&self) -> usize {
        out_len(
            self.h + self.pad_top + self.pad_bottom,
            self.kh,
            self.stride_h,
        )
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        out_len(
            self.w + self.pad_left + self.pad_right,
            self.kw,
            self.stride_w,
        )
    }

    /// Height and width of the zero-padded input.
    fn padded_hw(&self) -> (usize, usize) {
        (
            self.h + self.pad_top + self.pad_bottom,
            self.w + self.pad_left + self.pad_right,
        )
    }

    /// Rows of the column matrix, `c_in·kh·kw` (the fan-in of a unit).
    pub fn patch(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// Elements of one output image.
    pub fn out_image(&self) -> usize {
        self.c_out * self.out_h() * self.out_w()
    }

    /// Elements of the kernel.
    pub fn weight_len(&self) -> usize {
        self.c_out * self.patch()
    }

    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> u64 {
        (self.batch * self.out_image() * self.patch()) as u64
    }

    fn check(&self, op: &str) {
        assert!(self.stride_h > 0 && self.stride_w > 0, "{op}: zero stride");
        assert!(
            self.h + self.pad_top + self.pad_bottom >= self.kh
                && self.w + self.pad_left + self.pad_right >= self.kw,
            "{op}: kernel larger than the padded input"
        );
    }
}

fn out_len(padded: usize, k: usize, s: usize) -> usize {
    if padded < k || s == 0 {
        0
    } else {
        (padded - k) / s + 1
    }
}

/// The convolution algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgo {
    /// 1×1 kernel, stride 1, no padding: one GEMM on the image as stored.
    Pointwise,
    /// Unfold windows into a per-image column buffer, then one GEMM.
    Im2colGemm,
    /// The column matrix is never stored: the GEMM packs its panels straight
    /// from zero-padded images (forward and backward-weights; backward-data
    /// still goes through a column buffer and `col2im`).
    ImplicitGemm,
    /// On a CPU with direct tiles, stride-1 layers whose output rows do not
    /// tile the GEMM panels evenly, and strided layers whose output rows
    /// fill the tiles: the forward
    /// convolution's register tiles read the zero-padded image in place (in
    /// stride phases when strided; nothing packed but the kernel), one tap
    /// after another; backward-data is the forward convolution of `∂E/∂O`
    /// with the flipped kernel (per phase when strided); backward-weights on
    /// the padded image stored slice-innermost (`direct_backward_weights`).
    Direct,
    /// 3×3, stride 1, enough slices on both sides, on a CPU with direct
    /// tiles: Winograd's F(2×2, 3×3) (16 products of transformed slices
    /// instead of 36 multiply-adds per 2×2 output block; [`crate::winograd`]).
    /// Backward-data is the forward convolution of `∂E/∂O` with the flipped
    /// kernel (so also by F(2×2, 3×3)); backward-weights takes the route the
    /// shape would take without Winograd.
    Winograd,
}

/// The algorithm for a shape — the single decision point. Setting
/// `STRATA_CONV_EXPLICIT` forces [`ConvAlgo::Im2colGemm`],
/// `STRATA_CONV_NO_DIRECT` rules out [`ConvAlgo::Direct`] and
/// [`ConvAlgo::Winograd`], and `STRATA_CONV_NO_WINOGRAD` the latter only
/// (for A/B benchmarks).
pub fn choose(g: &ConvGeometry) -> ConvAlgo {
    if winograd_pays(g) {
        ConvAlgo::Winograd
    } else {
        choose_gemm(g)
    }
}

/// Winograd F(2×2, 3×3) where it measured ahead of the direct and implicit
/// GEMM paths (`cargo xtask bench conv`, with and without
/// `STRATA_CONV_NO_WINOGRAD`; benches/RESULTS.md): wide layers (≥ 64 slices
/// each way). Its transforms cost passes over input and output per slice
/// that thinner layers do not win back. Odd output sizes compute a cropped
/// extra row and column of 2×2 blocks: that costs 14 % more products at
/// 15×15 and 31 % at 7×7, still far below the 2.25× Winograd saves, but
/// 78 % at 3×3, where it no longer pays.
fn winograd_pays(g: &ConvGeometry) -> bool {
    let blocks = g.out_h().div_ceil(2) * g.out_w().div_ceil(2) * 4;
    crate::winograd::computes(g)
        && direct_allowed()
        && !env_set("STRATA_CONV_NO_WINOGRAD")
        && g.c_in >= 64
        && g.c_out >= 64
        && 100 * blocks <= 135 * g.out_h() * g.out_w()
}

/// [`choose`] without Winograd: the GEMM-based algorithm for a shape.
fn choose_gemm(g: &ConvGeometry) -> ConvAlgo {
    let no_pad = g.pad_top + g.pad_bottom + g.pad_left + g.pad_right == 0;
    let stride1 = g.stride_h == 1 && g.stride_w == 1;
    if g.kh == 1 && g.kw == 1 && stride1 && no_pad {
        ConvAlgo::Pointwise
    } else if env_set("STRATA_CONV_EXPLICIT") {
        ConvAlgo::Im2colGemm
    } else if direct_allowed()
        && (if stride1 {
            ragged_rows(g)
        } else {
            strided_direct(g) && phase_rows_fill(g)
        })
    {
        ConvAlgo::Direct
    } else {
        ConvAlgo::ImplicitGemm
    }
}

/// Strided layers (a stage's first, downsampling layer) can run on the
/// direct tiles through their stride phases (`PhaseLayout`) when the
/// kernel covers the stride, so that every phase is read. Backward-data
/// always does (`direct_backward_data_strided`: 1.1–1.6× the column buffer
/// and `col2im` on the `s2` shapes of `cargo xtask bench conv`, with and
/// without `STRATA_CONV_NO_DIRECT`).
fn strided_direct(g: &ConvGeometry) -> bool {
    g.stride_h <= g.kh && g.stride_w <= g.kw
}

/// Whether a strided layer's forward and backward-weights take the direct
/// tiles: when real outputs fill at least 70 % of the columns they compute
/// (output rows in the phase width, rounded up to whole tiles). There they
/// measured 1.1–1.3× the implicit GEMM, which gathers every `s`-th pixel for
/// each tap; on 7×7 → 4×4 (half the columns wasted) 0.9×.
fn phase_rows_fill(g: &ConvGeometry) -> bool {
    let nr = direct_tiles::<f32>().map_or(1, |d| d.nr);
    let q = g.out_h() * PhaseLayout::new(g).pw;
    10 * g.out_h() * g.out_w() >= 7 * q.div_ceil(nr) * nr
}

/// Direct tiles exist on this CPU and no environment switch rules them out.
fn direct_allowed() -> bool {
    direct_tiles::<f32>().is_some()
        && !env_set("STRATA_CONV_NO_DIRECT")
        && !env_set("STRATA_CONV_EXPLICIT")
}

/// Output rows that neither fill whole GEMM panels nor divide them (7, 14,
/// 28 wide against 16-wide f32 panels): the implicit packer then copies
/// pieces of rows and falls off its fast path, while the direct tiles only
/// lose the padded columns. Where rows tile evenly (4, 8, 16, 32 wide) the
/// implicit GEMM measured as fast or faster (`cargo xtask bench conv`,
/// with and without `STRATA_CONV_NO_DIRECT`; benches/RESULTS.md).
fn ragged_rows(g: &ConvGeometry) -> bool {
    let (ow, nr) = (g.out_w(), direct_tiles::<f32>().map_or(1, |d| d.nr));
    !ow.is_multiple_of(nr) && !nr.is_multiple_of(ow.max(1))
}

/// Whether backward-weights takes the direct route
/// ([`direct_backward_weights`]): `c_in` a multiple of the tile width, and either a [`ConvAlgo::Direct`] shape or an image of ≥ 32×32
/// outputs (where it measured ahead of the implicit GEMM; on small images
/// such as 4×4 or 8×8 it fell behind).
fn direct_weights(g: &ConvGeometry, nr: usize) -> bool {
    g.c_in.is_multiple_of(nr)
        && direct_allowed()
        && (choose_gemm(g) == ConvAlgo::Direct || g.out_h() * g.out_w() >= 1024)
}

/// Whether an environment variable is set (read once per name).
fn env_set(name: &'static str) -> bool {
    static SET: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        [
            "STRATA_CONV_EXPLICIT",
            "STRATA_CONV_NO_DIRECT",
            "STRATA_CONV_NO_WINOGRAD",
        ]
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some())
        .collect()
    })
    .contains(&name)
}

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
fn padded<'a, T: GemmScalar>(g: &ConvGeometry, xs: &'a [T], buf: &'a mut Vec<T>) -> &'a [T] {
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
struct Cols<'a, T> {
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
    fn new<'a>(g: &ConvGeometry, xp: &'a [T], offs: &'a [usize]) -> Cols<'a, T> {
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
struct ColsT<'a, T>(Cols<'a, T>);

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
fn tap_offsets(g: &ConvGeometry) -> Vec<usize> {
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

fn check_lens(g: &ConvGeometry, op: &str, x: usize, w: usize, y: usize) {
    g.check(op);
    assert_eq!(x, g.batch * g.in_image(), "{op}: input length");
    assert_eq!(w, g.weight_len(), "{op}: kernel length");
    assert_eq!(y, g.batch * g.out_image(), "{op}: output length");
}

/// Images per GEMM: small outputs (late layers, 8×8) are grouped so the
/// product has enough columns to run near peak, within a column buffer of
/// about a million elements. Depends on the shape only (determinism).
fn group_size(g: &ConvGeometry, algo: ConvAlgo) -> usize {
    let ohw = (g.out_h() * g.out_w()).max(1);
    match algo {
        ConvAlgo::Pointwise => 1,
        ConvAlgo::Im2colGemm | ConvAlgo::ImplicitGemm | ConvAlgo::Direct | ConvAlgo::Winograd => {
            let by_cols = 1024usize.div_ceil(ohw);
            let by_mem = (1 << 20) / (g.patch() * ohw).max(1);
            by_cols.min(by_mem).clamp(1, g.batch.max(1))
        }
    }
}

/// Copies `nb` images of `[rows, ohw]` (`src`, image after image) into one
/// `[rows, nb·ohw]` matrix (`dst`).
fn gather<T: Copy>(src: &[T], dst: &mut [T], rows: usize, ohw: usize) {
    let nb = src.len() / (rows * ohw).max(1);
    for (b, img) in src.chunks_exact(rows * ohw).enumerate() {
        for (r, s) in img.chunks_exact(ohw).enumerate() {
            dst[r * nb * ohw + b * ohw..][..ohw].copy_from_slice(s);
        }
    }
}

/// The inverse of [`gather`]: splits a `[rows, nb·ohw]` matrix into images.
fn scatter<T: Copy>(src: &[T], dst: &mut [T], rows: usize, ohw: usize) {
    let nb = dst.len() / (rows * ohw).max(1);
    for (b, img) in dst.chunks_exact_mut(rows * ohw).enumerate() {
        for (r, d) in img.chunks_exact_mut(ohw).enumerate() {
            d.copy_from_slice(&src[r * nb * ohw + b * ohw..][..ohw]);
        }
    }
}

/// Images per parallel task: a multiple of the group size, about four tasks
/// per thread so one buffer serves many groups. Results do not depend on it.
pub(crate) fn task_size(batch: usize, nb: usize) -> usize {
    let groups = batch.div_ceil(nb).max(1);
    groups.div_ceil(4 * crate::parallel::num_threads()).max(1) * nb
}

/// Forward: `y = K * x + b` for the whole minibatch (`y` overwritten).
pub fn conv2d_forward<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    conv2d_forward_act(g, x, w, bias, false, y)
}

/// [`conv2d_forward`] followed, when `relu`, by `max(0, ·)`, applied to each
/// group of images while its output is still in cache (not as a separate
/// pass over the whole activation).
pub fn conv2d_forward_act<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    relu: bool,
    y: &mut [T],
) {
    conv2d_forward_fused(g, x, w, bias, None, relu, y)
}

/// [`conv2d_forward_act`] with a `residual` (shaped like `y`) added before
/// the ReLU: `y = F(conv(x) + b + r)`, the original residual layer's sum and
/// output ReLU applied while each group of outputs is in cache, in the same
/// order of additions as the separate ops (so the result is identical).
pub fn conv2d_forward_fused<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    y: &mut [T],
) {
    check_lens(g, "conv2d_forward", x.len(), w.len(), y.len());
    if let Some(b) = bias {
        assert_eq!(b.len(), g.c_out, "conv2d_forward: bias length");
    }
    if let Some(r) = residual {
        assert_eq!(r.len(), y.len(), "conv2d_forward: residual length");
    }
    let (k, ohw) = (g.patch(), g.out_h() * g.out_w());
    if y.is_empty() {
        return;
    }
    let algo = choose(g);
    if !x.is_empty() {
        match algo {
            ConvAlgo::Direct => {
                // The sweep's columns: output rows in the (phase) padded width.
                let cols = g.out_h() * PhaseLayout::new(g).pw;
                if let Some(dt) = direct_tiles_for::<T>(cols) {
                    return direct_forward(g, x, w, bias, residual, relu, y, dt);
                }
            }
            ConvAlgo::Winograd => {
                if let Some(dt) = direct_tiles::<T>() {
                    return crate::winograd::forward(g, x, w, bias, residual, relu, y, dt);
                }
            }
            _ => {}
        }
    }
    // Without tiles for `T` (or input), the GEMM route of the shape.
    let algo = choose_gemm(g);
    let nb = group_size(g, algo);
    let offs = tap_offsets(g);
    let group = |buf: &mut (Vec<T>, Vec<T>), (xs, ys): (&[T], &mut [T]), rs: Option<&[T]>| {
        let n = ys.len() / g.out_image();
        let cols = n * ohw;
        match algo {
            ConvAlgo::Pointwise => gemm(
                Trans::No,
                Trans::No,
                g.c_out,
                ohw,
                k,
                T::one(),
                w,
                k,
                xs,
                ohw,
                T::zero(),
                ys,
                ohw,
            ),
            ConvAlgo::ImplicitGemm | ConvAlgo::Direct | ConvAlgo::Winograd => {
                let (xpad, tmp) = buf;
                let xp = padded(g, xs, xpad);
                if n > 1 {
                    tmp.resize(g.c_out * cols, T::zero());
                }
                let dst: &mut [T] = if n == 1 { ys } else { tmp };
                let b = Cols::new(g, xp, &offs);
                gemm_packed_b(
                    Trans::No,
                    g.c_out,
                    cols,
                    k,
                    T::one(),
                    w,
                    k,
                    &b,
                    T::zero(),
                    dst,
                    cols,
                );
                if n > 1 {
                    scatter(tmp, ys, g.c_out, ohw);
                }
            }
            ConvAlgo::Im2colGemm => {
                let (col, tmp) = buf;
                col.resize(k * cols, T::zero());
                for (b, xi) in xs.chunks_exact(g.in_image()).enumerate() {
                    im2col(g, xi, &mut col[b * ohw..], cols);
                }
                // One image: write straight into the output; several: into a
                // [c_out, n·ohw] buffer, then scatter to NCHW.
                if n > 1 {
                    tmp.resize(g.c_out * cols, T::zero());
                }
                let dst: &mut [T] = if n == 1 { ys } else { tmp };
                gemm(
                    Trans::No,
                    Trans::No,
                    g.c_out,
                    cols,
                    k,
                    T::one(),
                    w,
                    k,
                    col,
                    cols,
                    T::zero(),
                    dst,
                    cols,
                );
                if n > 1 {
                    scatter(tmp, ys, g.c_out, ohw);
                }
            }
        }
        if let Some(b) = bias {
            crate::elementwise::add_channel_bias(ys, b, ohw);
        }
        if let Some(rs) = rs {
            ys.iter_mut().zip(rs).for_each(|(y, &r)| *y = *y + r);
        }
        if relu {
            crate::elementwise::relu_inplace(ys);
        }
    };
    let task = task_size(g.batch, nb);
    crate::parallel::install(|| {
        x.par_chunks(task * g.in_image())
            .zip(y.par_chunks_mut(task * g.out_image()))
            .enumerate()
            .for_each(|(t, (src, dst))| {
                let mut buf = (Vec::new(), Vec::new());
                let res = residual.map(|r| &r[t * task * g.out_image()..][..dst.len()]);
                let groups = src
                    .chunks(nb * g.in_image())
                    .zip(dst.chunks_mut(nb * g.out_image()))
                    .enumerate();
                groups.for_each(|(i, pair)| {
                    let rs = res.map(|r| &r[i * nb * g.out_image()..][..pair.1.len()]);
                    group(&mut buf, pair, rs)
                });
            })
    });
}

/// Input values [`sweep_taps`] reads: the last tile of the last slice reaches
/// value `(depth − 1)·ldb + max tap + qp − 1`.
fn sweep_reads(depth: usize, ldb: usize, max_tap: usize, qp: usize) -> usize {
    (depth - 1) * ldb + max_tap + qp
}

/// Every register tile of a direct convolution of one image: output rows
/// `0..rows` in row tiles of `mr` (A packed `[tile][tap][depth][mr]`, zero
/// rows past `rows`) by output columns `0..q` in tiles of `nr`, into `out`
/// (`[rows, qp]`, `qp` = `q` rounded up to whole tiles). Column `p` of tap
/// `t` and input slice `d` reads `x[p + taps[t] + d·ldb]`.
#[allow(clippy::too_many_arguments)]
fn sweep_taps<T: GemmScalar>(
    dt: DirectTiles<T>,
    taps: &[usize],
    depth: usize,
    ldb: usize,
    a: &[T],
    x: &[T],
    out: &mut [T],
    rows: usize,
    q: usize,
    qp: usize,
) {
    let (mr, nr) = (dt.mr, dt.nr);
    let tile_len = taps.len() * depth * mr;
    let max_tap = taps.iter().max().copied().unwrap_or(0);
    assert!(qp >= q && qp.is_multiple_of(nr) && depth > 0 && rows > 0);
    assert!(
        x.len() >= sweep_reads(depth, ldb, max_tap, qp),
        "direct tiles: input"
    );
    assert!(
        a.len() >= rows.div_ceil(mr) * tile_len,
        "direct tiles: kernel"
    );
    assert!(out.len() >= rows * qp, "direct tiles: output");
    for q0 in (0..q).step_by(nr) {
        for tile in 0..rows.div_ceil(mr) {
            let live = mr.min(rows - tile * mr);
            // SAFETY (bounds asserted above): the tile's A holds
            // taps.len()·depth·mr values; every read `q0 + taps[t] + d·ldb +
            // (0..nr)` is at most `qp − 1 + max tap + (depth − 1)·ldb`, inside
            // `x`; the tile's rows `tile·mr..+live` (stride qp) and columns
            // `q0..q0 + nr ≤ qp` are inside `out`; the tiles exist only where
            // their ISA runs.
            unsafe {
                (dt.taps[live - 1])(
                    taps.as_ptr(),
                    taps.len(),
                    depth,
                    ldb,
                    a[tile * tile_len..].as_ptr(),
                    x[q0..].as_ptr(),
                    out[tile * mr * qp + q0..].as_mut_ptr(),
                    qp,
                )
            }
        }
    }
}

/// How the direct paths store a zero-padded image: split into its
/// `sh·sw` stride phases, sub-image `(a, b)` holding the padded pixels
/// `(sh·r + a, sw·c + b)` as a `ph × pw` (phase rows × phase width) grid.
/// Tap `(i, j)` of output pixel `(u, v)` reads padded pixel
/// `(sh·u + i, sw·v + j)` = phase `(i mod sh, j mod sw)` at
/// `(u + ⌊i/sh⌋, v + ⌊j/sw⌋)`: for every tap, the outputs of a row read
/// consecutive values, so a strided convolution runs on the same register
/// tiles as a stride-1 one. At stride 1 there is one phase, the padded image.
#[derive(Clone, Copy, Debug)]
struct PhaseLayout {
    sh: usize,
    sw: usize,
    /// Rows of one phase.
    ph: usize,
    /// Width of one phase: the row length of the outputs in padded-width rows.
    pw: usize,
    /// Values per slice (all phases).
    plane: usize,
}

impl PhaseLayout {
    fn new(g: &ConvGeometry) -> Self {
        let (h, w) = g.padded_hw();
        let (sh, sw) = (g.stride_h, g.stride_w);
        let (ph, pw) = (h.div_ceil(sh), w.div_ceil(sw));
        Self {
            sh,
            sw,
            ph,
            pw,
            plane: sh * sw * ph * pw,
        }
    }

    /// Offset of tap `(i, j)` within a slice.
    fn tap(&self, i: usize, j: usize) -> usize {
        ((i % self.sh) * self.sw + j % self.sw) * self.ph * self.pw
            + (i / self.sh) * self.pw
            + j / self.sw
    }

    /// The taps' offsets in kernel order (`i·kw + j`).
    fn taps(&self, g: &ConvGeometry) -> Vec<usize> {
        (0..g.kh)
            .flat_map(|i| (0..g.kw).map(move |j| self.tap(i, j)))
            .collect()
    }

    /// Writes one `h × w` slice into its zero-padded phase layout `dst`
    /// (`plane` values); the padding is never written.
    fn store<T: Copy>(&self, g: &ConvGeometry, src: &[T], dst: &mut [T]) {
        for (yy, row) in src.chunks_exact(g.w).enumerate() {
            let r = yy + g.pad_top;
            let base = ((r % self.sh) * self.sw) * self.ph * self.pw + (r / self.sh) * self.pw;
            if self.sw == 1 {
                copy_run(&mut dst[base + g.pad_left..][..g.w], row);
            } else {
                for (xx, &v) in row.iter().enumerate() {
                    let c = xx + g.pad_left;
                    dst[base + (c % self.sw) * self.ph * self.pw + c / self.sw] = v;
                }
            }
        }
    }
}

/// [`ConvAlgo::Direct`] forward. Per image: the zero-padded image in its
/// [`PhaseLayout`] (at stride 1 `[c_in, ph, pw]`) is the B operand as it
/// lies — output pixel `q = y·pw + x` of tap `(i, j)` and slice `c` reads
/// `xp[c·plane + q + tap(i, j)]` (stride 1: `tap = i·pw + j`) — so the tiles
/// compute the output in rows of the (phase) padded width (`x ≥ ow` is
/// discarded) and only the kernel is packed, once per call.
#[allow(clippy::too_many_arguments)]
fn direct_forward<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    y: &mut [T],
    dt: DirectTiles<T>,
) {
    let (mr, nr) = (dt.mr, dt.nr);
    let lay = PhaseLayout::new(g);
    let (pw, plane) = (lay.pw, lay.plane);
    let (oh, ow) = (g.out_h(), g.out_w());
    let ntaps = g.kh * g.kw;
    // Output columns in padded-width rows, rounded up to whole tiles.
    let q = oh * pw;
    let qp = q.div_ceil(nr) * nr;
    let taps = lay.taps(g);
    // What the tiles read, and at least the c_in whole slices (a strided
    // layout's last phase may end past every read).
    let max_tap = taps.iter().max().copied().unwrap_or(0);
    let xlen = sweep_reads(g.c_in, plane, max_tap, qp).max(g.c_in * plane);
    // A, packed [row tile][tap][c][mr] (zero rows past c_out).
    let row_tiles = g.c_out.div_ceil(mr);
    let tile_len = ntaps * g.c_in * mr;
    let mut a = vec![T::zero(); row_tiles * tile_len];
    for o in 0..g.c_out {
        let (tile, r) = (o / mr, o % mr);
        for c in 0..g.c_in {
            for t in 0..ntaps {
                a[tile * tile_len + (t * g.c_in + c) * mr + r] = w[(o * g.c_in + c) * ntaps + t];
            }
        }
    }
    let image =
        |(xp, out): (&mut Vec<T>, &mut Vec<T>), xs: &[T], ys: &mut [T], rs: Option<&[T]>| {
            // Borders and the tail are never written: they stay zero across images.
            for (src, dst) in xs.chunks_exact(g.h * g.w).zip(xp.chunks_exact_mut(plane)) {
                lay.store(g, src, dst);
            }
            sweep_taps(dt, &taps, g.c_in, plane, &a, xp, out, g.c_out, q, qp);
            // Drop the padded-width columns; bias, residual and ReLU while the
            // rows are in cache.
            for (o, dst) in ys.chunks_exact_mut(oh * ow).enumerate() {
                let b = bias.map_or(T::zero(), |b| b[o]);
                for (yy, d) in dst.chunks_exact_mut(ow).enumerate() {
                    let src = &out[o * qp + yy * pw..][..ow];
                    if bias.is_some() {
                        d.iter_mut().zip(src).for_each(|(d, &s)| *d = s + b);
                    } else {
                        copy_run(d, src);
                    }
                    if let Some(rs) = rs {
                        let r = &rs[(o * oh + yy) * ow..][..ow];
                        d.iter_mut().zip(r).for_each(|(d, &r)| *d = *d + r);
                    }
                    if relu {
                        crate::elementwise::relu_inplace(d);
                    }
                }
            }
        };
    let task = task_size(g.batch, 1);
    crate::parallel::install(|| {
        x.par_chunks(task * g.in_image())
            .zip(y.par_chunks_mut(task * g.out_image()))
            .enumerate()
            .for_each(|(t, (src, dst))| {
                let mut buf = (vec![T::zero(); xlen], vec![T::zero(); g.c_out * qp]);
                let imgs = src
                    .chunks_exact(g.in_image())
                    .zip(dst.chunks_exact_mut(g.out_image()))
                    .enumerate();
                imgs.for_each(|(i, (xs, ys))| {
                    let img = (t * task + i) * g.out_image();
                    let rs = residual.map(|r| &r[img..][..g.out_image()]);
                    image((&mut buf.0, &mut buf.1), xs, ys, rs)
                });
            })
    });
}

/// [`ConvAlgo::Direct`] backward-data of a strided layer, one stride phase
/// of `∂E/∂I` at a time: padded pixel `(sh·R + a, sw·C + b)` receives
/// `Σ_{o,i',j'} K[o, c, sh·i' + a, sw·j' + b] · ∂E/∂O[o, R − i', C − j']` —
/// per phase a stride-1 convolution of `∂E/∂O` (zero-padded by
/// `⌊(k − 1)/s⌋` above and to the left) with that phase's taps of the
/// kernel, flipped, on the forward pass's register tiles. No column buffer,
/// no `col2im`; every pixel of `∂E/∂I` lies in exactly one phase, so `dx` is
/// overwritten.
fn direct_backward_data_strided<T: GemmScalar>(
    g: &ConvGeometry,
    w: &[T],
    dy: &[T],
    dx: &mut [T],
    dt: DirectTiles<T>,
) {
    let (mr, nr) = (dt.mr, dt.nr);
    let (sh, sw) = (g.stride_h, g.stride_w);
    let (oh, ow) = (g.out_h(), g.out_w());
    // The phase grid (rows × columns of one phase) and ∂E/∂O's zero border.
    let layout = PhaseLayout::new(g);
    let (rows_p, cols_p) = (layout.ph, layout.pw);
    let (th, tw) = ((g.kh - 1) / sh, (g.kw - 1) / sw);
    // Padded ∂E/∂O, [c_out][hd][wd]; outputs in rows of width wd.
    let (hd, wd) = (rows_p + th, cols_p + tw);
    let dplane = hd * wd;
    let q = rows_p * wd;
    let qp = q.div_ceil(nr) * nr;
    let ntaps = g.kh * g.kw;
    // Per phase (a, b): its taps' offsets and the kernel packed
    // [row tile over c_in][tap][o][mr] (zero rows past c_in).
    let row_tiles = g.c_in.div_ceil(mr);
    let phases: Vec<(usize, usize, Vec<usize>, Vec<T>)> = (0..sh)
        .flat_map(|a| (0..sw).map(move |b| (a, b)))
        .map(|(a, b)| {
            let taps: Vec<(usize, usize)> = (a..g.kh)
                .step_by(sh)
                .flat_map(|i| (b..g.kw).step_by(sw).map(move |j| (i, j)))
                .collect();
            let offs = taps
                .iter()
                .map(|&(i, j)| (th - i / sh) * wd + (tw - j / sw))
                .collect();
            let tile_len = taps.len() * g.c_out * mr;
            let mut pack = vec![T::zero(); row_tiles * tile_len];
            for c in 0..g.c_in {
                let (tile, r) = (c / mr, c % mr);
                for (t, &(i, j)) in taps.iter().enumerate() {
                    for o in 0..g.c_out {
                        pack[tile * tile_len + (t * g.c_out + o) * mr + r] =
                            w[(o * g.c_in + c) * ntaps + i * g.kw + j];
                    }
                }
            }
            (a, b, offs, pack)
        })
        .collect();
    // Tap (0, 0) has the largest offset, th·wd + tw.
    let dlen = sweep_reads(g.c_out, dplane, th * wd + tw, qp).max(g.c_out * dplane);
    let image = |(dp, out): (&mut Vec<T>, &mut Vec<T>), gs: &[T], ds: &mut [T]| {
        // The border and tail are never written: they stay zero across images.
        for (src, dst) in gs.chunks_exact(oh * ow).zip(dp.chunks_exact_mut(dplane)) {
            for (yy, row) in src.chunks_exact(ow).enumerate() {
                copy_run(&mut dst[(yy + th) * wd + tw..][..ow], row);
            }
        }
        for (a, b, offs, pack) in &phases {
            let (a, b) = (*a, *b);
            if offs.is_empty() {
                out[..g.c_in * qp].fill(T::zero());
            } else {
                sweep_taps(dt, offs, g.c_out, dplane, pack, dp, out, g.c_in, q, qp);
            }
            // Padded pixel (sh·R + a, sw·C + b) is image pixel (y, x) when
            // it lies inside the image.
            for (c, dimg) in ds.chunks_exact_mut(g.h * g.w).enumerate() {
                for r in 0..rows_p {
                    let Some(y) = (sh * r + a).checked_sub(g.pad_top).filter(|&y| y < g.h) else {
                        continue;
                    };
                    let src = &out[c * qp + r * wd..][..cols_p];
                    let drow = &mut dimg[y * g.w..][..g.w];
                    for (col, &v) in src.iter().enumerate() {
                        if let Some(x) = (sw * col + b).checked_sub(g.pad_left) {
                            if x < g.w {
                                drow[x] = v;
                            }
                        }
                    }
                }
            }
        }
    };
    let task = task_size(g.batch, 1);
    crate::parallel::install(|| {
        dy.par_chunks(task * g.out_image())
            .zip(dx.par_chunks_mut(task * g.in_image()))
            .for_each(|(src, dst)| {
                let mut buf = (vec![T::zero(); dlen], vec![T::zero(); g.c_in * qp]);
                src.chunks_exact(g.out_image())
                    .zip(dst.chunks_exact_mut(g.in_image()))
                    .for_each(|(gs, ds)| image((&mut buf.0, &mut buf.1), gs, ds));
            })
    });
}

/// For a stride-1 convolution whose padding is less than its kernel, the
/// geometry of its transpose as a forward convolution: input `∂E/∂O`
/// (`c_out` slices), output `∂E/∂I` (`c_in` slices), padding `k − 1 − p`.
fn transposed_geometry(g: &ConvGeometry) -> Option<ConvGeometry> {
    let fits = g.pad_top < g.kh && g.pad_bottom < g.kh && g.pad_left < g.kw && g.pad_right < g.kw;
    (g.stride_h == 1 && g.stride_w == 1 && fits).then(|| ConvGeometry {
        batch: g.batch,
        c_in: g.c_out,
        h: g.out_h(),
        w: g.out_w(),
        c_out: g.c_in,
        kh: g.kh,
        kw: g.kw,
        stride_h: 1,
        stride_w: 1,
        pad_top: g.kh - 1 - g.pad_top,
        pad_bottom: g.kh - 1 - g.pad_bottom,
        pad_left: g.kw - 1 - g.pad_left,
        pad_right: g.kw - 1 - g.pad_right,
    })
}

/// Backward-data (a transposed convolution): `dx = Kᵀ ⋆ dy`, i.e. per image
/// `col2im(Kᵀ · dy)` (`dx` overwritten).
pub fn conv2d_backward_data<T: GemmScalar>(g: &ConvGeometry, w: &[T], dy: &[T], dx: &mut [T]) {
    check_lens(g, "conv2d_backward_data", dx.len(), w.len(), dy.len());
    let (k, ohw) = (g.patch(), g.out_h() * g.out_w());
    if dx.is_empty() {
        return;
    }
    if dy.is_empty() {
        dx.fill(T::zero());
        return;
    }
    let strided = g.stride_h > 1 || g.stride_w > 1;
    if strided && strided_direct(g) && direct_allowed() {
        if let Some(dt) = direct_tiles::<T>() {
            return direct_backward_data_strided(g, w, dy, dx, dt);
        }
    }
    let algo = choose(g);
    // The transposed convolution's GEMM has c_in rows: worth it unless that
    // is fewer than c_out (then packing costs more per multiply-add).
    // Direct tiles read ∂E/∂O in place, so the flipped form suits any shape,
    // and Winograd's transposed convolution is again 3×3 at stride 1.
    let flipped_form = match algo {
        ConvAlgo::ImplicitGemm => g.c_in >= g.c_out,
        ConvAlgo::Direct | ConvAlgo::Winograd => true,
        ConvAlgo::Pointwise | ConvAlgo::Im2colGemm => false,
    };
    let algo = choose_gemm(g);
    if flipped_form {
        if let Some(t) = transposed_geometry(g) {
            // ∂E/∂I[c, y, x] = Σ_{o,i,j} ∂E/∂O[o, y + p − i, x + p − j] · K[o, c, i, j]:
            // a stride-1 convolution of ∂E/∂O, padded by kh − 1 − p, with the
            // kernel flipped and its slices swapped — no column buffer, no col2im.
            let (kh, kw) = (g.kh, g.kw);
            let mut flipped = vec![T::zero(); w.len()];
            for o in 0..g.c_out {
                for c in 0..g.c_in {
                    for i in 0..kh {
                        for j in 0..kw {
                            flipped[((c * g.c_out + o) * kh + kh - 1 - i) * kw + kw - 1 - j] =
                                w[((o * g.c_in + c) * kh + i) * kw + j];
                        }
                    }
                }
            }
            return conv2d_forward(&t, dy, &flipped, None, dx);
        }
    }
    let nb = group_size(g, algo);
    let group = |buf: &mut (Vec<T>, Vec<T>), (gs, ds): (&[T], &mut [T])| {
        let n = gs.len() / g.out_image();
        let cols = n * ohw;
        match algo {
            ConvAlgo::Pointwise => gemm(
                Trans::Yes,
                Trans::No,
                k,
                ohw,
                g.c_out,
                T::one(),
                w,
                k,
                gs,
                ohw,
                T::zero(),
                ds,
                ohw,
            ),
            ConvAlgo::Im2colGemm
            | ConvAlgo::ImplicitGemm
            | ConvAlgo::Direct
            | ConvAlgo::Winograd => {
                let (col, tmp) = buf;
                col.resize(k * cols, T::zero());
                let src: &[T] = if n == 1 {
                    gs
                } else {
                    tmp.resize(g.c_out * cols, T::zero());
                    gather(gs, tmp, g.c_out, ohw);
                    tmp
                };
                gemm(
                    Trans::Yes,
                    Trans::No,
                    k,
                    cols,
                    g.c_out,
                    T::one(),
                    w,
                    k,
                    src,
                    cols,
                    T::zero(),
                    col,
                    cols,
                );
                for (b, di) in ds.chunks_exact_mut(g.in_image()).enumerate() {
                    col2im(g, &col[b * ohw..], cols, di);
                }
            }
        }
    };
    let task = task_size(g.batch, nb);
    crate::parallel::install(|| {
        dy.par_chunks(task * g.out_image())
            .zip(dx.par_chunks_mut(task * g.in_image()))
            .for_each(|(src, dst)| {
                let mut buf = (Vec::new(), Vec::new());
                let groups = src
                    .chunks(nb * g.out_image())
                    .zip(dst.chunks_mut(nb * g.in_image()));
                groups.for_each(|pair| group(&mut buf, pair));
            })
    });
}

/// Images per partial weight gradient: fixed by the batch size, so the
/// summation order (and the result) does not depend on the thread count.
fn weight_chunk(batch: usize, nb: usize) -> usize {
    batch.div_ceil(8).max(1).div_ceil(nb) * nb
}

/// Backward-weights: `dw = Σ_images dy · colᵀ` and, when asked, `db[o] = Σ dy[·, o, ·]`
/// (both overwritten).
pub fn conv2d_backward_weights<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    check_lens(g, "conv2d_backward_weights", x.len(), dw.len(), dy.len());
    let (k, ohw) = (g.patch(), g.out_h() * g.out_w());
    dw.fill(T::zero());
    if let Some(db) = &db {
        assert_eq!(db.len(), g.c_out, "conv2d_backward_weights: bias length");
    }
    let stride1 = g.stride_h == 1 && g.stride_w == 1;
    if !x.is_empty() && !dy.is_empty() && (1..=SMALL_PATCH).contains(&k) && stride1 {
        return small_backward_weights(g, x, dy, dw, db);
    }
    if let Some(db) = db {
        db.fill(T::zero());
        for img in dy.chunks_exact(g.out_image().max(1)) {
            for (d, row) in db.iter_mut().zip(img.chunks_exact(ohw.max(1))) {
                *d = *d + crate::reduce::sum(row);
            }
        }
    }
    if dy.is_empty() || k == 0 {
        return;
    }
    let algo = choose_gemm(g);
    if !x.is_empty() {
        // The widest tiles whose width divides c_in (AVX2's 16 for a
        // 16-slice layer on an AVX-512 host).
        if let Some(dt) = direct_tile_sets::<T>().find(|d| direct_weights(g, d.nr)) {
            return direct_backward_weights(g, x, dy, dw, dt);
        }
    }
    let nb = group_size(g, algo);
    let chunk = weight_chunk(g.batch, nb);
    let offs = tap_offsets(g);
    let partial = |(xs, gs): (&[T], &[T])| {
        let mut acc = vec![T::zero(); dw.len()];
        let (mut col, mut tmp) = (Vec::new(), Vec::new());
        for (xg, gg) in xs
            .chunks(nb * g.in_image())
            .zip(gs.chunks(nb * g.out_image()))
        {
            let n = gg.len() / g.out_image();
            let cols = n * ohw;
            // ∂E/∂O of the group as one [c_out, n·ohw] matrix.
            let dsrc: &[T] = if n == 1 || algo == ConvAlgo::Pointwise {
                gg
            } else {
                tmp.resize(g.c_out * cols, T::zero());
                gather(gg, &mut tmp, g.c_out, ohw);
                &tmp
            };
            let src: &[T] = match algo {
                ConvAlgo::Pointwise => xg,
                ConvAlgo::ImplicitGemm | ConvAlgo::Direct | ConvAlgo::Winograd => {
                    let xp = padded(g, xg, &mut col);
                    let b = ColsT(Cols::new(g, xp, &offs));
                    gemm_packed_b(
                        Trans::No,
                        g.c_out,
                        k,
                        cols,
                        T::one(),
                        dsrc,
                        cols,
                        &b,
                        T::one(),
                        &mut acc,
                        k,
                    );
                    continue;
                }
                ConvAlgo::Im2colGemm => {
                    col.resize(k * cols, T::zero());
                    for (b, xi) in xg.chunks_exact(g.in_image()).enumerate() {
                        im2col(g, xi, &mut col[b * ohw..], cols);
                    }
                    &col
                }
            };
            gemm(
                Trans::No,
                Trans::Yes,
                g.c_out,
                k,
                cols,
                T::one(),
                dsrc,
                cols,
                src,
                cols,
                T::one(),
                &mut acc,
                k,
            );
        }
        acc
    };
    let parts: Vec<Vec<T>> = crate::parallel::install(|| {
        x.par_chunks(chunk * g.in_image())
            .zip(dy.par_chunks(chunk * g.out_image()))
            .map(partial)
            .collect()
    });
    for p in parts {
        crate::elementwise::add_assign(dw, &p);
    }
}

/// Largest patch (`c_in·kh·kw`) that [`small_backward_weights`] takes: a
/// first layer's 1×3×3 or 3×3×3. As a GEMM such a kernel gradient has only
/// `patch` columns, a fraction of one register tile (11–23 GFLOPS measured
/// for 1→32 and 3→16, `cargo xtask bench conv`).
const SMALL_PATCH: usize = 32;

/// Backward-weights for few patch rows, stride 1: every weight is one long
/// dot product, `∂E/∂K[o, c, i, j] = Σ_q ∂E/∂O[o, q] · xp[c, q + i·pw + j]`
/// over the output pixels `q` in padded-width rows (∂E/∂O zero past `ow`,
/// so the padded columns add nothing). The bias gradient, when asked, is
/// summed from the same copy of ∂E/∂O while it is in cache.
fn small_backward_weights<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    let (ph, pw) = g.padded_hw();
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane = ph * pw;
    let q = oh * pw;
    let taps: Vec<usize> = (0..g.kh)
        .flat_map(|i| (0..g.kw).map(move |j| i * pw + j))
        .collect();
    let want_bias = db.is_some();
    let partial = |(xs, gs): (&[T], &[T])| {
        // acc laid out as dw; the zero borders of xp, its tail (the last
        // slice's last taps read up to kw − 1 values past it) and dyp's
        // junk columns are never written.
        let mut acc = vec![T::zero(); dw.len()];
        let mut bias = vec![T::zero(); if want_bias { g.c_out } else { 0 }];
        let mut xp = vec![T::zero(); g.c_in * plane + g.kw];
        let mut dyp = vec![T::zero(); g.c_out * q];
        for (xi, gi) in xs
            .chunks_exact(g.in_image())
            .zip(gs.chunks_exact(g.out_image()))
        {
            for (src, dst) in xi.chunks_exact(g.h * g.w).zip(xp.chunks_exact_mut(plane)) {
                for (yy, row) in src.chunks_exact(g.w).enumerate() {
                    copy_run(&mut dst[(yy + g.pad_top) * pw + g.pad_left..][..g.w], row);
                }
            }
            for (src, dst) in gi.chunks_exact(oh * ow).zip(dyp.chunks_exact_mut(q)) {
                for (row, d) in src.chunks_exact(ow).zip(dst.chunks_exact_mut(pw)) {
                    copy_run(&mut d[..ow], row);
                }
            }
            for (b, d) in bias.iter_mut().zip(dyp.chunks_exact(q)) {
                *b = *b + crate::reduce::sum(d);
            }
            dots(&dyp, &xp, q, plane, &taps, &mut acc);
        }
        (acc, bias)
    };
    let chunk = weight_chunk(g.batch, 1);
    let parts: Vec<(Vec<T>, Vec<T>)> = crate::parallel::install(|| {
        x.par_chunks(chunk * g.in_image())
            .zip(dy.par_chunks(chunk * g.out_image()))
            .map(partial)
            .collect()
    });
    // Summed in chunk order (determinism).
    let mut db = db;
    if let Some(db) = db.as_deref_mut() {
        db.fill(T::zero());
    }
    for (p, b) in parts {
        crate::elementwise::add_assign(dw, &p);
        if let Some(db) = db.as_deref_mut() {
            crate::elementwise::add_assign(db, &b);
        }
    }
}

/// `acc[(o·c_in + c)·taps + t] += Σ_{r<q} dyp[o·q + r] · xp[c·plane + taps[t] + r]`
/// for every output slice `o`, input slice `c` and tap `t`, with AVX2 + FMA
/// where the CPU has them.
fn dots<T: GemmScalar>(dyp: &[T], xp: &[T], q: usize, plane: usize, taps: &[usize], acc: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { dots_avx2(dyp, xp, q, plane, taps, acc) };
    }
    dots_body::<T, false>(dyp, xp, q, plane, taps, acc)
}

/// [`dots_body`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dots_avx2<T: GemmScalar>(
    dyp: &[T],
    xp: &[T],
    q: usize,
    plane: usize,
    taps: &[usize],
    acc: &mut [T],
) {
    dots_body::<T, true>(dyp, xp, q, plane, taps, acc)
}

/// Lanes of one partial sum (one AVX2 vector of f32).
const DOT_LANES: usize = 8;

/// `a·b + c`, fused where the caller runs with FMA.
#[inline(always)]
fn madd<T: GemmScalar, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn dots_body<T: GemmScalar, const FMA: bool>(
    dyp: &[T],
    xp: &[T],
    q: usize,
    plane: usize,
    taps: &[usize],
    acc: &mut [T],
) {
    // Register blocks of up to 4 output slices × 3 taps: each ∂E/∂O vector
    // is loaded once for 3 taps and each image vector once for 4 slices.
    let c_out = dyp.len() / q.max(1);
    let c_in = acc.len() / (c_out * taps.len()).max(1);
    for o0 in (0..c_out).step_by(4) {
        let ob = 4.min(c_out - o0);
        for c in 0..c_in {
            for (t0, tb) in taps.chunks(3).enumerate().map(|(i, t)| (3 * i, t)) {
                let d = |o: usize| &dyp[(o0 + o) * q..][..q];
                let x = |j: usize| &xp[c * plane + tb[j]..][..q];
                let mut put = |o: usize, j: usize, v: T| {
                    let at = ((o0 + o) * c_in + c) * taps.len() + t0 + j;
                    acc[at] = acc[at] + v;
                };
                macro_rules! go {
                    ($o:literal, $j:literal) => {{
                        let sums = dot_tile::<T, FMA, $o, $j>(
                            std::array::from_fn(d),
                            std::array::from_fn(x),
                            q,
                        );
                        for (o, row) in sums.iter().enumerate() {
                            for (j, &v) in row.iter().enumerate() {
                                put(o, j, v);
                            }
                        }
                    }};
                }
                match (ob, tb.len()) {
                    (4, 3) => go!(4, 3),
                    (4, 2) => go!(4, 2),
                    (4, _) => go!(4, 1),
                    (3, 3) => go!(3, 3),
                    (3, 2) => go!(3, 2),
                    (3, _) => go!(3, 1),
                    (2, 3) => go!(2, 3),
                    (2, 2) => go!(2, 2),
                    (2, _) => go!(2, 1),
                    (_, 3) => go!(1, 3),
                    (_, 2) => go!(1, 2),
                    _ => go!(1, 1),
                }
            }
        }
    }
}

/// `out[o][j] = Σ_r d[o][r] · x[j][r]` over `q` values: `O·J` partial sums
/// of [`DOT_LANES`] lanes each, summed in a fixed order.
#[inline(always)]
fn dot_tile<T: GemmScalar, const FMA: bool, const O: usize, const J: usize>(
    d: [&[T]; O],
    x: [&[T]; J],
    q: usize,
) -> [[T; J]; O] {
    const L: usize = DOT_LANES;
    let n = q / L;
    let dc: [&[[T; L]]; O] = std::array::from_fn(|o| &d[o].as_chunks::<L>().0[..n]);
    let xc: [&[[T; L]]; J] = std::array::from_fn(|j| &x[j].as_chunks::<L>().0[..n]);
    let mut lanes = [[[T::zero(); L]; J]; O];
    for k in 0..n {
        let xs: [[T; L]; J] = std::array::from_fn(|j| xc[j][k]);
        for (o, lo) in lanes.iter_mut().enumerate() {
            let dv = dc[o][k];
            for (lj, xv) in lo.iter_mut().zip(&xs) {
                for l in 0..L {
                    lj[l] = madd::<T, FMA>(dv[l], xv[l], lj[l]);
                }
            }
        }
    }
    std::array::from_fn(|o| {
        std::array::from_fn(|j| {
            let s = lanes[o][j].iter().fold(T::zero(), |s, &v| s + v);
            (n * L..q).fold(s, |s, r| madd::<T, FMA>(d[o][r], x[j][r], s))
        })
    })
}

/// [`ConvAlgo::Direct`] backward-weights (`c_in` a multiple of the tile
/// width): per tap `(i, j)`, `∂E/∂K[o, c, i, j] = Σ_q ∂E/∂O[o, q] ·
/// xp[c, q + tap(i, j)]`, a GEMM over the output pixels `q` (in padded-width
/// rows of the [`PhaseLayout`], ∂E/∂O zero past `ow`; stride 1:
/// `tap = i·pw + j`). Each padded image is stored once with its
/// slices innermost in blocks of `nr` (`[c_in/nr][pixel][nr]`): at every
/// tap's offset that is a packed B panel as it lies. ∂E/∂O is packed once per
/// image and serves all taps — instead of each im2col column being packed
/// for only `c_out` multiply-adds.
fn direct_backward_weights<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    dt: DirectTiles<T>,
) {
    // Depth of one micro-kernel call: its A and B panels stay in L1.
    const KC: usize = 256;
    let lay = PhaseLayout::new(g);
    let (pw, plane) = (lay.pw, lay.plane);
    let (oh, ow) = (g.out_h(), g.out_w());
    let (mr, nr) = (dt.mr, dt.nr);
    let ntaps = g.kh * g.kw;
    let q = oh * pw;
    let taps = lay.taps(g);
    // One slice block: the padded pixels and the tail the last taps read
    // (up to q − 1 + max tap; stride 1: plane + kw − 2).
    let blk = plane.max(q + taps.iter().max().copied().unwrap_or(0));
    let cblocks = g.c_in / nr;
    let row_tiles = g.c_out.div_ceil(mr);
    let partial = |(xs, gs): (&[T], &[T])| {
        // acc[t][o][c]; the buffers' zero borders, tails and junk columns are
        // never written, so they stay zero from image to image.
        let mut acc = vec![T::zero(); ntaps * g.c_out * g.c_in];
        let mut xp = vec![T::zero(); g.c_in * plane];
        let mut xb = vec![T::zero(); cblocks * blk * nr];
        let mut a = vec![T::zero(); row_tiles * q * mr];
        for (xi, gi) in xs
            .chunks_exact(g.in_image())
            .zip(gs.chunks_exact(g.out_image()))
        {
            for (src, dst) in xi.chunks_exact(g.h * g.w).zip(xp.chunks_exact_mut(plane)) {
                lay.store(g, src, dst);
            }
            for (cb, dst) in xb.chunks_exact_mut(blk * nr).enumerate() {
                let src = &xp[cb * nr * plane..][..nr * plane];
                match dt.pack_bt {
                    // SAFETY: `src` holds nr rows of `plane` values (stride
                    // plane), `dst` room for plane·nr; the packer is the
                    // running kernel's own.
                    Some(f) => unsafe { f(src.as_ptr(), plane, plane, nr, dst.as_mut_ptr()) },
                    None => {
                        for (p, d) in dst[..plane * nr].chunks_exact_mut(nr).enumerate() {
                            d.iter_mut()
                                .enumerate()
                                .for_each(|(l, v)| *v = src[l * plane + p]);
                        }
                    }
                }
            }
            // a: [row tile][q][mr].
            for (o, img) in gi.chunks_exact(oh * ow).enumerate() {
                let dst = &mut a[(o / mr) * q * mr + o % mr..];
                for (yy, row) in img.chunks_exact(ow).enumerate() {
                    for (xx, &v) in row.iter().enumerate() {
                        dst[(yy * pw + xx) * mr] = v;
                    }
                }
            }
            for k0 in (0..q).step_by(KC) {
                let kc = KC.min(q - k0);
                for (t, &off) in taps.iter().enumerate() {
                    for cb in 0..cblocks {
                        let b = &xb[(cb * blk + k0 + off) * nr..];
                        for tile in 0..row_tiles {
                            let rows = mr.min(g.c_out - tile * mr);
                            let c = &mut acc[(t * g.c_out + tile * mr) * g.c_in + cb * nr..];
                            // SAFETY: A's panel holds kc·mr values from
                            // (tile·q + k0)·mr (k0 + kc ≤ q); B's reads end at
                            // (cb·blk + k0 + off + kc)·nr ≤ (cb·blk + q + max tap)·nr
                            // inside block cb; the tile's `rows` rows (stride
                            // c_in) and nr columns are inside acc; the
                            // micro-kernel is the running CPU's.
                            unsafe {
                                (dt.rows(rows))(
                                    kc,
                                    a[(tile * q + k0) * mr..].as_ptr(),
                                    b.as_ptr(),
                                    c.as_mut_ptr(),
                                    g.c_in,
                                    T::one(),
                                    T::one(),
                                )
                            }
                        }
                    }
                }
            }
        }
        acc
    };
    let chunk = weight_chunk(g.batch, 1);
    let parts: Vec<Vec<T>> = crate::parallel::install(|| {
        x.par_chunks(chunk * g.in_image())
            .zip(dy.par_chunks(chunk * g.out_image()))
            .map(partial)
            .collect()
    });
    // dw[o, c, t] = Σ_chunks acc[t, o, c], in chunk order (determinism).
    for p in parts {
        for (t, per_tap) in p.chunks_exact(g.c_out * g.c_in).enumerate() {
            for (oc, &v) in per_tap.iter().enumerate() {
                dw[oc * ntaps + t] = dw[oc * ntaps + t] + v;
            }
        }
    }
}

/// The direct definition, one multiply-add at a time: the reference the fast
/// paths are tested against.
pub fn conv2d_naive<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    check_lens(g, "conv2d_naive", x.len(), w.len(), y.len());
    let (oh, ow) = (g.out_h(), g.out_w());
    for n in 0..g.batch {
        for o in 0..g.c_out {
            for u in 0..oh {
                for v in 0..ow {
                    let mut s = bias.map_or(T::zero(), |b| b[o]);
                    for c in 0..g.c_in {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (u * g.stride_h + i) as isize - g.pad_top as isize;
                                let ix = (v * g.stride_w + j) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv =
                                    x[((n * g.c_in + c) * g.h + iy as usize) * g.w + ix as usize];
                                s = s + xv * w[((o * g.c_in + c) * g.kh + i) * g.kw + j];
                            }
                        }
                    }
                    y[((n * g.c_out + o) * oh + u) * ow + v] = s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geoms() -> Vec<ConvGeometry> {
        let g = |batch, c_in, h, w, c_out, k, s, pads: (usize, usize, usize, usize)| ConvGeometry {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh: k,
            kw: k,
            stride_h: s,
            stride_w: s,
            pad_top: pads.0,
            pad_bottom: pads.1,
            pad_left: pads.2,
            pad_right: pads.3,
        };
        vec![
            g(3, 5, 32, 32, 16, 3, 1, (1, 1, 1, 1)),
            g(2, 3, 14, 14, 7, 3, 1, (1, 1, 1, 1)),
            g(4, 2, 8, 8, 9, 3, 1, (1, 1, 1, 1)),
            g(2, 4, 9, 11, 6, 3, 2, (1, 0, 2, 1)),
            g(2, 40, 8, 8, 17, 3, 1, (0, 0, 0, 0)),
            g(3, 3, 7, 5, 4, 5, 1, (2, 2, 2, 2)),
        ]
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                    / 16_777_216.0
                    - 0.5
            })
            .collect()
    }

    /// The direct tiles (stride 1) agree with the definition, bias and ReLU
    /// included: row tiles cut short (c_out not a multiple of 6), padded-width
    /// rows that end inside a tile, no padding, wide kernels, in f64 and f32.
    /// (Nothing to check on a CPU without direct tiles.)
    #[test]
    fn direct_forward_matches_naive() {
        fn check<T: GemmScalar + Into<f64>>(tol: f64, conv: impl Fn(f32) -> T) {
            for tiles in direct_tile_sets::<T>() {
                let mut shapes: Vec<ConvGeometry> = geoms()
                    .into_iter()
                    .filter(|g| g.stride_h == 1 && g.stride_w == 1)
                    .collect();
                shapes.push(ConvGeometry {
                    kh: 1,
                    kw: 3,
                    pad_top: 0,
                    pad_bottom: 2,
                    ..shapes[1]
                });
                for g in shapes {
                    let v = |n, seed| data(n, seed).into_iter().map(&conv).collect::<Vec<T>>();
                    let (x, w, b) = (
                        v(g.batch * g.in_image(), 1),
                        v(g.weight_len(), 2),
                        v(g.c_out, 3),
                    );
                    let n = g.batch * g.out_image();
                    let (mut got, mut want) = (vec![T::zero(); n], vec![T::zero(); n]);
                    direct_forward(&g, &x, &w, Some(&b), None, true, &mut got, tiles);
                    conv2d_naive(&g, &x, &w, Some(&b), &mut want);
                    for (&a, &e) in got.iter().zip(&want) {
                        let (a, e): (f64, f64) = (a.into(), e.into());
                        assert!((a - e.max(0.0)).abs() < tol, "{g:?}: {a} vs {e}");
                    }
                }
            }
        }
        check::<f64>(1e-12, f64::from);
        check::<f32>(1e-4, |x| x);
    }

    /// The residual epilogue gives exactly the separate ops' result,
    /// `relu((conv(x) + b) + r)`, on every path (direct, implicit GEMM,
    /// strided, unpadded, wide kernels), with and without bias, on several
    /// images per task and per group.
    #[test]
    fn residual_epilogue_equals_the_separate_sum() {
        for g in geoms() {
            let (x, w, b) = (
                data(g.batch * g.in_image(), 1),
                data(g.weight_len(), 2),
                data(g.c_out, 3),
            );
            let n = g.batch * g.out_image();
            let r = data(n, 4);
            for bias in [Some(&b[..]), None] {
                let mut want = vec![0.0f32; n];
                conv2d_forward_act(&g, &x, &w, bias, false, &mut want);
                want.iter_mut()
                    .zip(&r)
                    .for_each(|(y, &r)| *y = (*y + r).max(0.0));
                let mut got = vec![f32::NAN; n];
                conv2d_forward_fused(&g, &x, &w, bias, Some(&r), true, &mut got);
                assert_eq!(got, want, "{g:?} bias {}", bias.is_some());
            }
        }
    }

    /// Strided layers on the direct tiles (through their stride phases):
    /// forward against the definition and backward-data against it through
    /// the adjoint identity `⟨∂E/∂O, K ⋆ x⟩ = ⟨x, ∂E/∂I⟩`, with full and short
    /// row tiles on both sides, odd sizes, uneven padding, a stride beyond the
    /// kernel (1×1, stride 2: phases without taps) and mixed strides.
    #[test]
    fn strided_direct_paths_match_definition() {
        for dt in direct_tile_sets::<f64>() {
            strided_direct_paths_match_definition_on(dt);
        }
    }

    fn strided_direct_paths_match_definition_on(dt: DirectTiles<f64>) {
        let shapes = [
            // (batch, c_in, c_out, h, w, kh, kw, stride, pads)
            (3, 20, 17, 14, 14, 3, 3, (2, 2), (1, 1, 1, 1)),
            (2, 7, 33, 9, 11, 3, 3, (2, 2), (1, 0, 0, 1)),
            (2, 13, 6, 12, 10, 3, 3, (2, 1), (1, 1, 1, 1)),
            (2, 9, 8, 13, 12, 3, 2, (3, 2), (1, 1, 0, 1)),
            (2, 16, 8, 7, 8, 5, 5, (2, 2), (2, 2, 2, 2)),
            (2, 8, 12, 8, 7, 1, 1, (2, 2), (0, 0, 0, 0)),
        ];
        for (batch, c_in, c_out, h, w, kh, kw, (sh, sw), p) in shapes {
            let g = ConvGeometry {
                batch,
                c_in,
                h,
                w,
                c_out,
                kh,
                kw,
                stride_h: sh,
                stride_w: sw,
                pad_top: p.0,
                pad_bottom: p.1,
                pad_left: p.2,
                pad_right: p.3,
            };
            let d = |n, seed| data(n, seed).into_iter().map(f64::from).collect::<Vec<_>>();
            let (x, k) = (d(batch * g.in_image(), 1), d(g.weight_len(), 2));
            let n = batch * g.out_image();
            let (mut y, mut want) = (vec![0.0; n], vec![0.0; n]);
            direct_forward(&g, &x, &k, None, None, false, &mut y, dt);
            conv2d_naive(&g, &x, &k, None, &mut want);
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e).abs() < 1e-12, "{g:?}: {a} vs {e}");
            }
            let dy = d(n, 3);
            let mut dx = vec![f64::NAN; x.len()];
            direct_backward_data_strided(&g, &k, &dy, &mut dx, dt);
            let lhs: f64 = dy.iter().zip(&want).map(|(a, b)| a * b).sum();
            let rhs: f64 = dx.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-9 * (1.0 + lhs.abs()),
                "{g:?}: {lhs} vs {rhs}"
            );
            // Each input pixel on its own: ∂E/∂I is the adjoint, entry by entry.
            let mut e = vec![0.0; x.len()];
            for probe in [0, x.len() / 3, x.len() - 1] {
                e[probe] = 1.0;
                let mut ye = vec![0.0; n];
                conv2d_naive(&g, &e, &k, None, &mut ye);
                let want: f64 = dy.iter().zip(&ye).map(|(a, b)| a * b).sum();
                assert!((dx[probe] - want).abs() < 1e-12, "{g:?} pixel {probe}");
                e[probe] = 0.0;
            }
            // Kernels that cover the stride take this path in training too.
            if strided_direct(&g) && direct_allowed() && phase_rows_fill(&g) {
                assert_eq!(choose(&g), ConvAlgo::Direct, "{g:?}");
            }
        }
    }

    /// Direct backward-weights agrees with the definition
    /// `∂E/∂K[o, c, i, j] = Σ ∂E/∂O[b, o, u, v] · I[b, c, s·u + i − p, s·v + j − p]`
    /// for slice counts that are whole tile widths, short row tiles, uneven
    /// padding, strides and several images per partial sum, in f64 and f32.
    #[test]
    fn direct_and_small_backward_weights_match_definition() {
        fn strided(g: ConvGeometry, stride_h: usize, stride_w: usize) -> ConvGeometry {
            ConvGeometry {
                stride_h,
                stride_w,
                ..g
            }
        }
        fn check<T: GemmScalar + Into<f64>>(tol: f64, conv: impl Fn(f32) -> T) {
            let g = |batch, c_in, h, w, c_out, kh, kw, pads: (usize, usize, usize, usize)| {
                ConvGeometry {
                    batch,
                    c_in,
                    h,
                    w,
                    c_out,
                    kh,
                    kw,
                    stride_h: 1,
                    stride_w: 1,
                    pad_top: pads.0,
                    pad_bottom: pads.1,
                    pad_left: pads.2,
                    pad_right: pads.3,
                }
            };
            let shapes = [
                g(3, 16, 8, 8, 7, 3, 3, (1, 1, 1, 1)),
                g(2, 32, 6, 5, 13, 3, 3, (0, 1, 2, 0)),
                g(17, 16, 9, 9, 6, 5, 5, (2, 2, 2, 2)),
                g(2, 16, 7, 30, 16, 1, 3, (0, 0, 1, 1)),
                // Strided (through the stride phases), odd sizes, uneven padding.
                strided(g(3, 16, 8, 8, 7, 3, 3, (1, 1, 1, 1)), 2, 2),
                strided(g(2, 32, 7, 9, 13, 3, 3, (1, 0, 1, 1)), 2, 1),
                strided(g(2, 16, 11, 10, 5, 3, 3, (1, 1, 0, 2)), 3, 2),
            ];
            let small = [
                g(3, 1, 8, 8, 7, 3, 3, (1, 1, 1, 1)),
                g(2, 3, 6, 5, 13, 3, 3, (0, 1, 2, 0)),
                g(17, 1, 9, 9, 6, 5, 5, (2, 2, 2, 2)),
                g(2, 2, 7, 45, 16, 1, 3, (0, 0, 1, 1)),
            ];
            let direct = direct_tile_sets::<T>().flat_map(|dt| {
                shapes.map(|g| {
                    let c_in = g.c_in.div_ceil(dt.nr) * dt.nr;
                    (ConvGeometry { c_in, ..g }, Some(dt))
                })
            });
            for (g, dt) in direct.chain(small.map(|g| (g, None))) {
                let v = |n, seed| data(n, seed).into_iter().map(&conv).collect::<Vec<T>>();
                let (x, dy) = (v(g.batch * g.in_image(), 1), v(g.batch * g.out_image(), 2));
                let mut got = vec![T::zero(); g.weight_len()];
                match dt {
                    Some(dt) => direct_backward_weights(&g, &x, &dy, &mut got, dt),
                    None => {
                        // Through the public entry, which takes the small
                        // path for these shapes, bias gradient included.
                        assert!(g.patch() <= SMALL_PATCH);
                        let mut db = vec![T::zero(); g.c_out];
                        conv2d_backward_weights(&g, &x, &dy, &mut got, Some(&mut db));
                        let ohw = g.out_h() * g.out_w();
                        for (o, &have) in db.iter().enumerate() {
                            let want: f64 = (0..g.batch)
                                .flat_map(|b| &dy[(b * g.c_out + o) * ohw..][..ohw])
                                .map(|&v| v.into())
                                .sum();
                            assert!((have.into() - want).abs() < tol, "{g:?} bias {o}");
                        }
                    }
                }
                let (oh, ow) = (g.out_h(), g.out_w());
                for o in 0..g.c_out {
                    for c in 0..g.c_in {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let mut want = 0f64;
                                for b in 0..g.batch {
                                    for u in 0..oh {
                                        for vv in 0..ow {
                                            let (yy, xx) =
                                                (u * g.stride_h + i, vv * g.stride_w + j);
                                            if yy < g.pad_top
                                                || xx < g.pad_left
                                                || yy - g.pad_top >= g.h
                                                || xx - g.pad_left >= g.w
                                            {
                                                continue;
                                            }
                                            let xi = ((b * g.c_in + c) * g.h + yy - g.pad_top)
                                                * g.w
                                                + xx
                                                - g.pad_left;
                                            let di = ((b * g.c_out + o) * oh + u) * ow + vv;
                                            want += x[xi].into() * dy[di].into();
                                        }
                                    }
                                }
                                let have: f64 =
                                    got[((o * g.c_in + c) * g.kh + i) * g.kw + j].into();
                                assert!(
                                    (have - want).abs() < tol,
                                    "{g:?} {o} {c} {i} {j}: {have} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
        check::<f64>(1e-12, f64::from);
        check::<f32>(1e-3, |x| x);
    }

    /// The implicit column matrix packs exactly the stored im2col matrix:
    /// the GEMMs over both agree bit for bit, forward (`K · col`) and
    /// backward-weights (`∂E/∂O · colᵀ`), for several images side by side.
    #[test]
    fn implicit_columns_match_stored_im2col() {
        for g in geoms() {
            let (k, ohw, n) = (g.patch(), g.out_h() * g.out_w(), g.batch);
            let cols = n * ohw;
            let x = data(n * g.in_image(), 1);
            let w = data(g.c_out * k, 2);
            let dy = data(g.c_out * cols, 3);
            let mut col = vec![0f32; k * cols];
            for (b, xi) in x.chunks_exact(g.in_image()).enumerate() {
                im2col(&g, xi, &mut col[b * ohw..], cols);
            }
            let offs = tap_offsets(&g);
            let mut buf = Vec::new();
            let xp = padded(&g, &x, &mut buf);

            let (mut want, mut got) = (vec![0f32; g.c_out * cols], vec![1f32; g.c_out * cols]);
            gemm(
                Trans::No,
                Trans::No,
                g.c_out,
                cols,
                k,
                1.0,
                &w,
                k,
                &col,
                cols,
                0.0,
                &mut want,
                cols,
            );
            let b = Cols::new(&g, xp, &offs);
            gemm_packed_b(
                Trans::No,
                g.c_out,
                cols,
                k,
                1.0,
                &w,
                k,
                &b,
                0.0,
                &mut got,
                cols,
            );
            assert_eq!(want, got, "forward {g:?}");

            let (mut want, mut got) = (vec![0.5f32; g.c_out * k], vec![0.5f32; g.c_out * k]);
            gemm(
                Trans::No,
                Trans::Yes,
                g.c_out,
                k,
                cols,
                1.0,
                &dy,
                cols,
                &col,
                cols,
                1.0,
                &mut want,
                k,
            );
            let b = ColsT(Cols::new(&g, xp, &offs));
            gemm_packed_b(
                Trans::No,
                g.c_out,
                k,
                cols,
                1.0,
                &dy,
                cols,
                &b,
                1.0,
                &mut got,
                k,
            );
            assert_eq!(want, got, "backward-weights {g:?}");
        }
    }
}

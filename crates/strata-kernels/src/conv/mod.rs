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
//! Algorithms (chosen in [`choose()`], the one place to A/B them):
//! - [`ConvAlgo::Pointwise`]: 1×1 kernel, stride 1, no padding — the image
//!   itself is the column matrix, no copy at all. On a CPU with direct
//!   tiles, the forward and backward-data of every unpadded 1×1 layer,
//!   strided ones included, run on those tiles instead (`pointwise`).
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
//!   images ([`PackB`](crate::gemm::PackB)). Backward-data of a stride-1 layer with
//!   `c_in ≥ c_out` is the forward convolution of `∂E/∂O` (padded by
//!   `k − 1 − p`) with the flipped kernel; otherwise it goes through a
//!   column buffer and `col2im`.
//! - [`ConvAlgo::Winograd`]: 3×3 stride-1 layers with ≥ 64 slices each way
//!   and even output sizes: Winograd's F(2×2, 3×3) ([`crate::winograd`]),
//!   forward and (through the flipped kernel) backward-data. Backward-weights
//!   takes it on its own test (`winograd_weights`: 7×7 to 64×64 outputs,
//!   ≥ 24 input and ≥ 64 output slices, whatever the forward algorithm), as
//!   16 products over all of a part's blocks;
//!   `STRATA_CONV_NO_WINOGRAD` turns it off for A/B runs.
//! - [`ConvAlgo::Im2colGemm`]: the explicit path (a column buffer per
//!   worker, never one for the whole minibatch), forced by setting
//!   `STRATA_CONV_EXPLICIT` for A/B runs.
//!
//! Parallel over the minibatch inside [`crate::parallel::install`]. Weight
//! gradients are summed per fixed chunk of images and the partial sums added in
//! chunk order, so results do not depend on timing or thread count.

// Convolutions stay f32 under `MatmulPrecision::Bf16`: their GEMM routes
// call the unrouted product.
use crate::gemm::{
    direct_tile_sets, direct_tiles, direct_tiles_for, gemm_full as gemm, gemm_packed_b,
    DirectTiles, GemmScalar, Trans,
};
use rayon::prelude::*;

mod backward_weights;
mod choose;
mod direct;
mod im2col;
mod naive;
mod pointwise;
mod strided;
#[cfg(test)]
mod tests;
pub mod winograd;

use backward_weights::{
    chunk_partials, direct_backward_weights, small_backward_weights, wide_backward_weights,
    SMALL_PATCH,
};
pub use choose::{choose, ConvAlgo};
use choose::{
    choose_gemm, direct_allowed, direct_weights, strided_direct, wide_weights, winograd_weights,
};
use direct::{direct_forward, PhaseLayout};
pub use im2col::{col2im, im2col};
use im2col::{gather, padded, scatter, tap_offsets, Cols, ColsT};
pub use naive::conv2d_naive;
use strided::direct_backward_data_strided;

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
    forward(g, x, w, bias, residual, relu, y, None);
}

/// [`conv2d_forward`] that also gives every output slice's
/// [`slice_stats`](crate::batchnorm::slice_stats), `stats[i·c_out + o]`
/// for image `i` and slice `o`: the terms of the batch norm statistics
/// that follows ([`crate::batchnorm::batch_norm_train_act_from_slices`]),
/// taken on the direct and pointwise routes while each slice is still in
/// cache (on the others, in one pass after the product).
pub fn conv2d_forward_slice_stats<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    stats: &mut [(T, T)],
) {
    assert_eq!(
        stats.len(),
        g.batch * g.c_out,
        "conv2d_forward_slice_stats: stats length"
    );
    if forward(g, x, w, bias, None, false, y, Some(stats)) {
        return;
    }
    let s = g.out_h() * g.out_w();
    if s == 0 {
        stats.fill((T::zero(), T::zero()));
        return;
    }
    crate::parallel::install(|| {
        stats
            .par_iter_mut()
            .zip(y.par_chunks(s))
            .for_each(|(st, seg)| *st = crate::batchnorm::slice_stats(seg))
    });
}

/// [`conv2d_forward_fused`], and with `stats` the output slices' terms
/// where the route's epilogue takes them: returns whether it did.
#[allow(clippy::too_many_arguments)]
fn forward<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    y: &mut [T],
    stats: Option<&mut [(T, T)]>,
) -> bool {
    check_lens(g, "conv2d_forward", x.len(), w.len(), y.len());
    if let Some(b) = bias {
        assert_eq!(b.len(), g.c_out, "conv2d_forward: bias length");
    }
    if let Some(r) = residual {
        assert_eq!(r.len(), y.len(), "conv2d_forward: residual length");
    }
    if pointwise::is_pointwise(g) && direct_allowed() && !x.is_empty() && !y.is_empty() {
        if let Some(dt) = direct_tiles::<T>() {
            let want = stats.is_some();
            pointwise::pointwise_forward(g, x, w, bias, residual, relu, y, stats, dt);
            return want;
        }
    }
    if let Some(g1) = subsampled(g) {
        return forward(&g1, &subsample(g, x), w, bias, residual, relu, y, stats);
    }
    let (k, ohw) = (g.patch(), g.out_h() * g.out_w());
    if y.is_empty() {
        return false;
    }
    let algo = choose(g);
    if !x.is_empty() {
        match algo {
            ConvAlgo::Direct => {
                // The sweep's columns: output rows in the (phase) padded width.
                let cols = g.out_h() * PhaseLayout::new(g).pw;
                if let Some(dt) = direct_tiles_for::<T>(cols) {
                    let want = stats.is_some();
                    direct_forward(g, x, w, bias, residual, relu, y, stats, dt);
                    return want;
                }
            }
            ConvAlgo::Winograd => {
                if let Some(dt) = direct_tiles::<T>() {
                    winograd::forward(g, x, w, bias, residual, relu, y, dt);
                    return false;
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
        // One task's images (the task is already one thread's share).
        crate::isa::vectorised(
            #[inline(always)]
            || {
                // One pass per output slice.
                for (i, plane) in ys.chunks_exact_mut(ohw).enumerate() {
                    let r = rs.map(|r| &r[i * ohw..][..ohw]);
                    crate::elementwise::finish_row(plane, bias.map(|b| b[i % g.c_out]), r, relu);
                }
            },
        );
    };
    if g.in_image() == 0 {
        // No input (no slices or no pixels): the sum is empty, so y is the
        // epilogue of zero (chunks of zero length would not split).
        for (i, ys) in y.chunks_exact_mut(ohw.max(1)).enumerate() {
            ys.fill(bias.map_or(T::zero(), |b| b[i % g.c_out]));
            if let Some(r) = residual {
                crate::elementwise::add_row(ys, &r[i * ohw..][..ys.len()]);
            }
            if relu {
                crate::elementwise::relu_row(ys);
            }
        }
        return false;
    }
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
    false
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

/// A 1×1 kernel without padding at a stride above 1 (a ResNet's projection
/// shortcut) reads only every `s`-th pixel: it is the pointwise convolution
/// of the subsampled image, with this geometry. The general path gathered
/// those pixels for every GEMM panel; its backward-weights ran ResNet-20's
/// 16→32 projection at 24 GFLOPS, 34 this way (forward and backward-data
/// level).
fn subsampled(g: &ConvGeometry) -> Option<ConvGeometry> {
    let no_pad = g.pad_top + g.pad_bottom + g.pad_left + g.pad_right == 0;
    // Empty layers take the general path, which handles them.
    let some = g.batch * g.c_in * g.c_out * g.out_h() * g.out_w() > 0;
    let strided = g.stride_h > 1 || g.stride_w > 1;
    (g.kh == 1 && g.kw == 1 && no_pad && strided && some).then(|| ConvGeometry {
        h: g.out_h(),
        w: g.out_w(),
        stride_h: 1,
        stride_w: 1,
        ..*g
    })
}

/// The pixels a [`subsampled`] layer reads, `[batch, c_in, out_h, out_w]`.
fn subsample<T: GemmScalar>(g: &ConvGeometry, x: &[T]) -> Vec<T> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut xs = vec![T::zero(); g.batch * g.c_in * oh * ow];
    // A task per image: a slice is a few hundred values.
    crate::parallel::install(|| {
        xs.par_chunks_mut(g.c_in * oh * ow)
            .zip(x.par_chunks(g.in_image()))
            .for_each(|(dst, src)| {
                let planes = dst
                    .chunks_exact_mut(oh * ow)
                    .zip(src.chunks_exact(g.h * g.w));
                for (dst, src) in planes {
                    for (y, row) in dst.chunks_exact_mut(ow).enumerate() {
                        let from = src[y * g.stride_h * g.w..].iter().step_by(g.stride_w);
                        row.iter_mut().zip(from).for_each(|(d, &v)| *d = v);
                    }
                }
            })
    });
    xs
}

/// The adjoint of [`subsample`]: `d1` at the pixels it read, zero elsewhere.
fn unsubsample<T: GemmScalar>(g: &ConvGeometry, d1: &[T], dx: &mut [T]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    crate::parallel::install(|| {
        dx.par_chunks_mut(g.in_image())
            .zip(d1.par_chunks(g.c_in * oh * ow))
            .for_each(|(dst, src)| {
                dst.fill(T::zero());
                for (dst, src) in dst
                    .chunks_exact_mut(g.h * g.w)
                    .zip(src.chunks_exact(oh * ow))
                {
                    for (y, row) in src.chunks_exact(ow).enumerate() {
                        let to = dst[y * g.stride_h * g.w..].iter_mut().step_by(g.stride_w);
                        to.zip(row).for_each(|(d, &v)| *d = v);
                    }
                }
            })
    });
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
    if pointwise::is_pointwise(g) && direct_allowed() {
        if let Some(dt) = direct_tiles::<T>() {
            return pointwise::pointwise_backward_data(g, w, dy, dx, dt);
        }
    }
    if let Some(g1) = subsampled(g) {
        let mut d1 = vec![T::zero(); g1.batch * g1.in_image()];
        conv2d_backward_data(&g1, w, dy, &mut d1);
        return unsubsample(g, &d1, dx);
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
    if let Some(g1) = subsampled(g) {
        return conv2d_backward_weights(&g1, &subsample(g, x), dy, dw, db);
    }
    let (k, ohw) = (g.patch(), g.out_h() * g.out_w());
    dw.fill(T::zero());
    if let Some(db) = &db {
        assert_eq!(db.len(), g.c_out, "conv2d_backward_weights: bias length");
    }
    let stride1 = g.stride_h == 1 && g.stride_w == 1;
    // Not 1×1 kernels: their gradient is a GEMM per image (16→32 16×16,
    // ResNet-20's projection: 31 → 54 GFLOPS; 32→64 8×8: 33 → 110).
    let spatial = g.kh * g.kw > 1;
    if !x.is_empty() && !dy.is_empty() && (1..=SMALL_PATCH).contains(&k) && stride1 && spatial {
        return small_backward_weights(g, x, dy, dw, db);
    }
    if let Some(db) = db {
        // Per output slice over the images in order (the sum a serial loop
        // gave), slices on both threads, compiled for the host's vectors: as
        // one serial SSE2 loop it was 6 % of 16→16 32×32 backward-weights.
        let per = ohw.max(1);
        crate::parallel::install(|| {
            db.par_iter_mut().enumerate().for_each(|(o, d)| {
                *d = crate::isa::vectorised(
                    #[inline(always)]
                    || {
                        dy.chunks_exact(g.out_image().max(1))
                            .map(|img| crate::reduce::sum(&img[o * per..][..per]))
                            .fold(T::zero(), |a, b| a + b)
                    },
                );
            })
        });
    }
    if dy.is_empty() || k == 0 {
        return;
    }
    let algo = choose_gemm(g);
    if let Some(dt) = direct_tiles::<T>().filter(|_| !x.is_empty() && winograd_weights(g)) {
        return winograd::backward_weights(g, x, dy, dw, dt);
    }
    if !x.is_empty() {
        // The wide tiles (AVX-512 only) where a kernel row's kw·c_in
        // columns fill them (48 for a 16-slice 3×3 layer).
        let wide = |d: &DirectTiles<T>| !d.wide.rows.is_empty() && wide_weights(g, d.wide.nb);
        if let Some(dt) = direct_tiles::<T>().filter(wide) {
            return wide_backward_weights(g, x, dy, dw, dt);
        }
        // The widest tiles whose width divides c_in (AVX2's 16 for a
        // 16-slice layer on an AVX-512 host).
        if let Some(dt) = direct_tile_sets::<T>().find(|d| direct_weights(g, d.nr)) {
            return direct_backward_weights(g, x, dy, dw, dt);
        }
    }
    let nb = group_size(g, algo);
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
    let parts = chunk_partials(g, x, dy, nb, partial);
    for p in parts {
        crate::elementwise::add_assign(dw, &p);
    }
}

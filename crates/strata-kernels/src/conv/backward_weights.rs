//! The kernel gradient's routes beside the GEMM one (`∂E/∂O · colᵀ`, in
//! `conv2d_backward_weights`). For few patch rows (a first layer's 1×3×3 or
//! 3×3×3), where that GEMM would fill a fraction of one register tile, every
//! weight is one long dot product (`small_backward_weights`, `dots`). For
//! `c_in` a multiple of the tile width, the padded image stored
//! slice-innermost is a packed GEMM panel at every tap's offset
//! (`direct_backward_weights`). Partial gradients are summed per fixed chunk
//! of images (`weight_chunk`) in chunk order, so results do not depend on the
//! thread count.

use super::direct::PhaseLayout;
use super::ConvGeometry;
use crate::gemm::{copy_run, DirectTiles, GemmScalar};
use rayon::prelude::*;

/// Images per partial weight gradient: fixed by the batch size, so the
/// summation order (and the result) does not depend on the thread count.
pub(super) fn weight_chunk(batch: usize, nb: usize) -> usize {
    batch.div_ceil(8).max(1).div_ceil(nb) * nb
}

/// Runs `partial` on each fixed chunk of images ([`weight_chunk`], groups of
/// `nb`) of `x` and `∂E/∂O` in parallel; the results come back in chunk
/// order, so the caller's sum does not depend on the thread count.
pub(super) fn chunk_partials<T: GemmScalar, P: Send>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    nb: usize,
    partial: impl Fn((&[T], &[T])) -> P + Sync + Send,
) -> Vec<P> {
    let chunk = weight_chunk(g.batch, nb);
    crate::parallel::install(|| {
        x.par_chunks(chunk * g.in_image())
            .zip(dy.par_chunks(chunk * g.out_image()))
            .map(partial)
            .collect()
    })
}

/// Largest patch (`c_in·kh·kw`) that [`small_backward_weights`] takes: a
/// first layer's 1×3×3 or 3×3×3. As a GEMM such a kernel gradient has only
/// `patch` columns, a fraction of one register tile (11–23 GFLOPS measured
/// for 1→32 and 3→16, `cargo xtask bench conv`).
pub(super) const SMALL_PATCH: usize = 32;

/// Backward-weights for few patch rows, stride 1: every weight is one long
/// dot product, `∂E/∂K[o, c, i, j] = Σ_q ∂E/∂O[o, q] · xp[c, q + i·pw + j]`
/// over the output pixels `q` in padded-width rows (∂E/∂O zero past `ow`,
/// so the padded columns add nothing). The bias gradient, when asked, is
/// summed from the same copy of ∂E/∂O while it is in cache.
pub(super) fn small_backward_weights<T: GemmScalar>(
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
    let parts = chunk_partials(g, x, dy, 1, partial);
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
pub(super) fn direct_backward_weights<T: GemmScalar>(
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
            // a: [row tile][q][mr]. Row by row through chunks of mr: an
            // index product per value took a fifth of 16→32 32×32 s2.
            for (o, img) in gi.chunks_exact(oh * ow).enumerate() {
                let (tile, r) = (&mut a[(o / mr) * q * mr..][..q * mr], o % mr);
                for (yy, row) in img.chunks_exact(ow).enumerate() {
                    let dst = &mut tile[yy * pw * mr..][..ow * mr];
                    for (d, &v) in dst.chunks_exact_mut(mr).zip(row) {
                        d[r] = v;
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
    let parts = chunk_partials(g, x, dy, 1, partial);
    // dw[o, c, t] = Σ_chunks acc[t, o, c], in chunk order (determinism).
    for p in parts {
        for (t, per_tap) in p.chunks_exact(g.c_out * g.c_in).enumerate() {
            for (oc, &v) in per_tap.iter().enumerate() {
                dw[oc * ntaps + t] = dw[oc * ntaps + t] + v;
            }
        }
    }
}

/// Backward-weights on the wide tiles ([`crate::gemm`]'s `WideKernel`),
/// stride 1, `kw·c_in` a multiple of the tile width: the padded image is
/// stored once per image with its slices innermost (`xs[pixel][c]`), so
/// for kernel row `i` the values of taps `(i, 0..kw)` and all slices at
/// output pixel `q` lie side by side, `xs[(q + i·pw)·c_in ..][..kw·c_in]`,
/// and consecutive `q` are `c_in` apart. Then
/// `∂E/∂K[o, c, i, j] = Σ_q ∂E/∂O[o, q] · xs[(q + i·pw)·c_in + j·c_in + c]`
/// is a GEMM of M = `c_out`, N = `kw·c_in`, K = the output pixels, with B
/// read where it lies: a 16-slice layer fills 48-wide AVX-512 tiles where
/// [`direct_backward_weights`] could only take AVX2's 16-wide ones.
pub(super) fn wide_backward_weights<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    dt: DirectTiles<T>,
) {
    // Depth of one tile call: its B strip (kc rows of nb values) stays in L1
    // while every row tile of ∂E/∂O runs over it.
    const KC: usize = 128;
    let wt = dt.wide;
    let (mr, nb) = (wt.mr, wt.nb);
    let (ph, pw) = g.padded_hw();
    let (oh, ow) = (g.out_h(), g.out_w());
    let (ci, ntaps) = (g.c_in, g.kh * g.kw);
    let kwc = g.kw * ci;
    let q = oh * pw;
    assert!(wide_fits(g, nb) && wt.rows.len() == mr);
    // Reads end before (ph·pw + kw − 1)·c_in (stride 1: ph = oh + kh − 1).
    let xs_len = (ph * pw + g.kw) * ci;
    let row_tiles = g.c_out.div_ceil(mr);
    // Full row tiles are transposed 8 rows at a time by the packer.
    let fast_a = dt.pack_bt.filter(|_| mr.is_multiple_of(8));
    let fast_x = dt.pack_bt.filter(|_| ci.is_multiple_of(8));
    let partial = |(xs, gs): (&[T], &[T])| {
        // acc[i][o][j·c_in + c]; the buffers' zero borders, tails and
        // junk columns are never written, so they stay zero across images.
        let mut acc = vec![T::zero(); g.kh * g.c_out * kwc];
        let mut xb = Aligned::<T>::new(xs_len);
        let mut a = vec![T::zero(); row_tiles * q * mr];
        for (xi, gi) in xs
            .chunks_exact(g.in_image())
            .zip(gs.chunks_exact(g.out_image()))
        {
            let xb = xb.slice_mut();
            for yy in 0..g.h {
                let at = ((yy + g.pad_top) * pw + g.pad_left) * ci;
                let src = &xi[yy * g.w..];
                match fast_x {
                    // SAFETY: rows `src + c·h·w` (c < c_in) hold the w values
                    // of image row yy; `dst` has room for w·c_in values
                    // (a padded row holds w + pad_left + pad_right pixels);
                    // the packer is the running kernel's own.
                    Some(f) => unsafe {
                        f(
                            src.as_ptr(),
                            g.h * g.w,
                            g.w,
                            ci,
                            xb[at..][..g.w * ci].as_mut_ptr(),
                        )
                    },
                    None => {
                        for (xx, px) in xb[at..][..g.w * ci].chunks_exact_mut(ci).enumerate() {
                            for (c, v) in px.iter_mut().enumerate() {
                                *v = src[c * g.h * g.w + xx];
                            }
                        }
                    }
                }
            }
            // a: [row tile][q][mr], ∂E/∂O zero past ow.
            for tile in 0..row_tiles {
                let live = mr.min(g.c_out - tile * mr);
                let dst = &mut a[tile * q * mr..][..q * mr];
                let img = &gi[tile * mr * oh * ow..];
                for yy in 0..oh {
                    let d = &mut dst[yy * pw * mr..][..ow * mr];
                    let src = &img[yy * ow..];
                    match fast_a.filter(|_| live == mr) {
                        // SAFETY: rows `src + r·oh·ow` (r < mr, all live)
                        // hold row yy's ow values; `d` has room for ow·mr.
                        Some(f) => unsafe { f(src.as_ptr(), oh * ow, ow, mr, d.as_mut_ptr()) },
                        None => {
                            for (xx, px) in d.chunks_exact_mut(mr).enumerate() {
                                for (r, v) in px[..live].iter_mut().enumerate() {
                                    *v = src[r * oh * ow + xx];
                                }
                            }
                        }
                    }
                }
            }
            for k0 in (0..q).step_by(KC) {
                let kc = KC.min(q - k0);
                for i in 0..g.kh {
                    for n0 in (0..kwc).step_by(nb) {
                        let b = &xb[(k0 + i * pw) * ci + n0..];
                        debug_assert!(b.len() > (kc - 1) * ci + nb - 1);
                        for tile in 0..row_tiles {
                            let rows = mr.min(g.c_out - tile * mr);
                            let c = &mut acc[(i * g.c_out + tile * mr) * kwc + n0..];
                            // SAFETY: A's panel holds kc·mr values from
                            // (tile·q + k0)·mr; B's last read, (kc − 1)·c_in +
                            // nb − 1 past `b`, ends before (q − 1 + i·pw)·c_in
                            // + kw·c_in ≤ (ph·pw + kw − 1)·c_in (stride 1), inside
                            // xb; the tile's `rows` rows (stride kw·c_in) and nb
                            // columns (n0 + nb ≤ kw·c_in) are inside acc; the
                            // tiles are the running CPU's.
                            unsafe {
                                (wt.rows[rows - 1])(
                                    kc,
                                    a[(tile * q + k0) * mr..].as_ptr(),
                                    b.as_ptr(),
                                    ci,
                                    c.as_mut_ptr(),
                                    kwc,
                                )
                            }
                        }
                    }
                }
            }
        }
        acc
    };
    let parts = chunk_partials(g, x, dy, 1, partial);
    // dw[o, c, i, j] = Σ_chunks acc[i, o, j·c_in + c], in chunk order.
    for p in parts {
        for (io, per) in p.chunks_exact(kwc).enumerate() {
            let (i, o) = (io / g.c_out, io % g.c_out);
            for (jc, &v) in per.iter().enumerate() {
                let (j, c) = (jc / ci, jc % ci);
                let at = (o * ci + c) * ntaps + i * g.kw + j;
                dw[at] = dw[at] + v;
            }
        }
    }
}

/// Whether [`wide_backward_weights`] computes a shape on tiles `nb` wide:
/// stride 1 and whole tiles across a kernel row's `kw·c_in` columns.
pub(super) fn wide_fits(g: &ConvGeometry, nb: usize) -> bool {
    g.stride_h == 1 && g.stride_w == 1 && nb > 0 && (g.kw * g.c_in).is_multiple_of(nb)
}

/// A zeroed buffer whose first value sits on a 64-byte line, so that the
/// wide tiles' B rows (`c_in` a multiple of 16 f32 apart) load whole lines.
struct Aligned<T> {
    buf: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: GemmScalar> Aligned<T> {
    fn new(len: usize) -> Self {
        let size = std::mem::size_of::<T>();
        let spare = 64 / size;
        let buf = vec![T::zero(); len + spare];
        let off = (buf.as_ptr() as usize).wrapping_neg() % 64 / size;
        Self { buf, off, len }
    }

    fn slice_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.off..][..self.len]
    }
}

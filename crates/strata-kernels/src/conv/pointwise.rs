//! 1×1 convolutions without padding (`ConvAlgo::Pointwise` and a ResNet's
//! strided projection shortcut) on the direct tiles. Per image the layer is
//! one product, `c_out × c_in` weights by `c_in × (oh·ow)` pixels. The GEMM
//! route packed both operands per image (the weights 128 times per batch)
//! and the strided layers first gathered every image's `s`-th pixels into a
//! batch-sized buffer (serially zeroed); here the weights are packed once
//! per call, the pixels are read where they lie (stride 1, rows of whole
//! tiles) or gathered a slice at a time into a per-thread buffer of one
//! image, and the tiles write the output as stored.

use super::direct::{sweep_taps, tile_rows, Ahead, Sweep};
use super::{task_size, ConvGeometry};
use crate::elementwise::finish_row;
use crate::gemm::{copy_run, DirectTiles, GemmScalar};
use rayon::prelude::*;

/// Whether a geometry is a 1×1 convolution without padding (any stride).
pub(super) fn is_pointwise(g: &ConvGeometry) -> bool {
    g.kh == 1 && g.kw == 1 && g.pad_top + g.pad_bottom + g.pad_left + g.pad_right == 0
}

/// Packs the `rows × depth` matrix `m(r, d)` for the tiles:
/// `[row tile][d][mr]`, zero rows past `rows`.
fn pack_rows<T: GemmScalar>(
    rows: usize,
    depth: usize,
    mr: usize,
    m: impl Fn(usize, usize) -> T,
) -> Vec<T> {
    let (th, tile_len) = (tile_rows(rows, mr), depth * mr);
    let mut a = vec![T::zero(); rows.div_ceil(th) * tile_len];
    for r in 0..rows {
        for d in 0..depth {
            a[(r / th) * tile_len + d * mr + r % th] = m(r, d);
        }
    }
    a
}

/// Copies the pixels a strided 1×1 layer reads from one `h × w` slice
/// (`src`) to `dst` (`oh × ow`, rows as stored).
fn gather_slice<T: Copy>(g: &ConvGeometry, src: &[T], dst: &mut [T]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for (yy, d) in dst[..oh * ow].chunks_exact_mut(ow).enumerate() {
        let row = &src[yy * g.stride_h * g.w..][..g.w];
        match g.stride_w {
            1 => copy_run(d, &row[..ow]),
            // Pairs: a loop LLVM vectorises (a step_by loop stays scalar).
            2 => {
                let pairs = g.w / 2;
                for (d, p) in d.iter_mut().zip(row.chunks_exact(2)) {
                    *d = p[0];
                }
                if ow > pairs {
                    d[ow - 1] = row[g.w - 1];
                }
            }
            s => d
                .iter_mut()
                .zip(row.iter().step_by(s))
                .for_each(|(d, &v)| *d = v),
        }
    }
}

/// Copies one image's `depth` slices into a buffer, slices `ldb` apart.
type Gather<'a, T> = &'a (dyn Fn(&[T], &mut [T], usize) + Sync);

/// Completes image `i`'s output from what the tiles swept (`None`: already
/// in place; else the buffer and its slice distance), and its slices'
/// batch norm terms where asked.
type Finish<'a, T> =
    &'a (dyn Fn(usize, Option<(&[T], usize)>, &mut [T], Option<&mut [(T, T)]>) + Sync);

/// The tiles' product for every image of a batch: image `i`'s `depth`
/// slices of `n` pixels (read from `x` in place, slices `n` apart, or, with
/// `gather`, copied by it into a buffer with slices `ldb` apart) times the
/// packed `rows × depth` matrix `a`. The result, `rows` slices of `n`, goes
/// straight into the image's output with `direct_out` (which needs `n` a
/// whole number of tiles and outputs of `rows·n`; `finish` then gets
/// `None`), else into a buffer `qp` per slice (`finish` gets it and `qp`);
/// `finish(i, swept, out, stats)` completes image `i`'s output (`stats`:
/// its `rows` entries of `stats`, when given).
#[allow(clippy::too_many_arguments)]
fn sweep_images<T: GemmScalar>(
    dt: DirectTiles<T>,
    a: &[T],
    (rows, depth, n): (usize, usize, usize),
    (x, in_image): (&[T], usize),
    gather: Option<Gather<'_, T>>,
    (y, out_image, direct_out): (&mut [T], usize, bool),
    stats: Option<&mut [(T, T)]>,
    finish: Finish<'_, T>,
) {
    let whole = n.is_multiple_of(dt.nr);
    let (sweep, qp) = match Sweep::stored(dt, 1, n, n) {
        Some(s) if whole => (s, n),
        _ => Sweep::padded(dt, n),
    };
    // In place, slices n apart; gathered, qp apart (the tail stays zero).
    let ldb = if gather.is_some() { qp } else { n };
    assert!(
        gather.is_some() || whole,
        "pointwise: input in place needs whole tiles"
    );
    assert!(
        !direct_out || (whole && out_image == rows * n),
        "pointwise: output in place needs whole tiles"
    );
    let batch = x.len() / in_image;
    let task = task_size(batch, 1);
    let run = |t: usize, src: &[T], dst: &mut [T], mut st: Option<&mut [(T, T)]>| {
        let mut xb = vec![T::zero(); if gather.is_some() { depth * ldb } else { 0 }];
        let mut ob = vec![T::zero(); if direct_out { 0 } else { rows * qp }];
        let imgs = src
            .chunks_exact(in_image)
            .zip(dst.chunks_exact_mut(out_image))
            .enumerate();
        for (i, (xs, ys)) in imgs {
            let b: &[T] = match gather {
                Some(f) => {
                    f(xs, &mut xb, ldb);
                    &xb
                }
                None => xs,
            };
            // The next image of the task, read while this one runs
            // when it is read in place. A gathered strided image
            // uses only some of its lines: prefetching all of them
            // made 16→32 32×32 s2 forward 5–20 % slower.
            let none: Ahead = (std::ptr::null(), 0);
            let ahead = src
                .get((i + 1) * in_image..(i + 2) * in_image)
                .filter(|_| gather.is_none())
                .map_or(none, |s| (s.as_ptr().cast(), std::mem::size_of_val(s)));
            let out: &mut [T] = if direct_out { ys } else { &mut ob };
            sweep_taps(dt, &[0], depth, ldb, a, b, out, rows, &sweep, [ahead, none]);
            let swept = (!direct_out).then_some((&ob[..], qp));
            let sti = st.as_deref_mut().map(|s| &mut s[i * rows..][..rows]);
            finish(t * task + i, swept, ys, sti);
        }
    };
    crate::parallel::install(|| {
        let tasks = x
            .par_chunks(task * in_image)
            .zip(y.par_chunks_mut(task * out_image));
        match stats {
            Some(st) => tasks
                .zip(st.par_chunks_mut(task * rows))
                .enumerate()
                .for_each(|(t, ((src, dst), st))| run(t, src, dst, Some(st))),
            None => tasks
                .enumerate()
                .for_each(|(t, (src, dst))| run(t, src, dst, None)),
        }
    });
}

/// Forward of a 1×1 layer without padding ([`is_pointwise`]), any stride:
/// `y = F(conv(x) + b + r)` in the order of the separate ops.
#[allow(clippy::too_many_arguments)]
pub(super) fn pointwise_forward<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    y: &mut [T],
    stats: Option<&mut [(T, T)]>,
    dt: DirectTiles<T>,
) {
    let n = g.out_h() * g.out_w();
    let a = pack_rows(g.c_out, g.c_in, dt.mr, |o, c| w[o * g.c_in + c]);
    let strided = g.stride_h > 1 || g.stride_w > 1;
    let gather = |xs: &[T], buf: &mut [T], ldb: usize| {
        let slices = xs.chunks_exact(g.h * g.w).zip(buf.chunks_exact_mut(ldb));
        for (src, dst) in slices {
            if strided {
                gather_slice(g, src, dst);
            } else {
                copy_run(&mut dst[..n], src);
            }
        }
    };
    let in_place = !strided && n.is_multiple_of(dt.nr);
    let finish =
        |img: usize, swept: Option<(&[T], usize)>, ys: &mut [T], mut st: Option<&mut [(T, T)]>| {
            crate::isa::vectorised(
                #[inline(always)]
                || {
                    for (o, plane) in ys.chunks_exact_mut(n).enumerate() {
                        if let Some((s, qp)) = swept {
                            plane.copy_from_slice(&s[o * qp..][..n]);
                        }
                        let r = residual.map(|r| &r[img * g.out_image() + o * n..][..n]);
                        finish_row(plane, bias.map(|b| b[o]), r, relu);
                        if let Some(st) = st.as_deref_mut() {
                            st[o] = crate::batchnorm::slice_stats(plane);
                        }
                    }
                },
            )
        };
    sweep_images(
        dt,
        &a,
        (g.c_out, g.c_in, n),
        (x, g.in_image()),
        (!in_place).then_some(&gather),
        (y, g.out_image(), n.is_multiple_of(dt.nr)),
        stats,
        &finish,
    );
}

/// Backward-data of a 1×1 layer without padding, any stride:
/// `∂E/∂I = Kᵀ·∂E/∂O` at the pixels the layer reads, zero elsewhere
/// (`dx` overwritten).
pub(super) fn pointwise_backward_data<T: GemmScalar>(
    g: &ConvGeometry,
    w: &[T],
    dy: &[T],
    dx: &mut [T],
    dt: DirectTiles<T>,
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let n = oh * ow;
    // Kᵀ: c_in rows of c_out.
    let a = pack_rows(g.c_in, g.c_out, dt.mr, |c, o| w[o * g.c_in + c]);
    let strided = g.stride_h > 1 || g.stride_w > 1;
    let gather = |ds: &[T], buf: &mut [T], ldb: usize| {
        for (src, dst) in ds.chunks_exact(n).zip(buf.chunks_exact_mut(ldb)) {
            copy_run(&mut dst[..n], src);
        }
    };
    let in_place = n.is_multiple_of(dt.nr);
    let finish = |_: usize, swept: Option<(&[T], usize)>, di: &mut [T], _: Option<&mut _>| {
        if !strided {
            // Stride 1: the input image is the output grid.
            if let Some((s, qp)) = swept {
                for (c, plane) in di.chunks_exact_mut(n).enumerate() {
                    plane.copy_from_slice(&s[c * qp..][..n]);
                }
            }
            return;
        }
        let (s, qp) = swept.expect("strided: swept into a buffer");
        for (c, plane) in di.chunks_exact_mut(g.h * g.w).enumerate() {
            plane.fill(T::zero());
            for (yy, row) in s[c * qp..][..n].chunks_exact(ow).enumerate() {
                let to = plane[yy * g.stride_h * g.w..]
                    .iter_mut()
                    .step_by(g.stride_w);
                to.zip(row).for_each(|(d, &v)| *d = v);
            }
        }
    };
    sweep_images(
        dt,
        &a,
        (g.c_in, g.c_out, n),
        (dy, g.out_image()),
        (!in_place).then_some(&gather),
        (dx, g.in_image(), !strided && in_place),
        None,
        &finish,
    );
}

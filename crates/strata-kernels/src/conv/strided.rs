//! Backward-data of a strided layer on the direct tiles: per stride phase of
//! `∂E/∂I` (the phases of `PhaseLayout`), one stride-1 convolution of
//! `∂E/∂O` with that phase's taps of the flipped kernel — no column buffer,
//! no `col2im`. It measured 1.1–1.6× the column route on the strided shapes
//! of `cargo xtask bench conv`, so every strided layer whose kernel covers
//! its stride takes it, whatever algorithm its forward pass uses.

use super::direct::{sweep_reads, sweep_taps, tile_rows, PhaseLayout, Sweep};
use super::{task_size, ConvGeometry};
use crate::gemm::{copy_run, DirectTiles, GemmScalar};
use rayon::prelude::*;

/// [`ConvAlgo::Direct`] backward-data of a strided layer, one stride phase
/// of `∂E/∂I` at a time: padded pixel `(sh·R + a, sw·C + b)` receives
/// `Σ_{o,i',j'} K[o, c, sh·i' + a, sw·j' + b] · ∂E/∂O[o, R − i', C − j']` —
/// per phase a stride-1 convolution of `∂E/∂O` (zero-padded by
/// `⌊(k − 1)/s⌋` above and to the left) with that phase's taps of the
/// kernel, flipped, on the forward pass's register tiles. No column buffer,
/// no `col2im`; every pixel of `∂E/∂I` lies in exactly one phase, so `dx` is
/// overwritten.
pub(super) fn direct_backward_data_strided<T: GemmScalar>(
    g: &ConvGeometry,
    w: &[T],
    dy: &[T],
    dx: &mut [T],
    dt: DirectTiles<T>,
) {
    let mr = dt.mr;
    let (sh, sw) = (g.stride_h, g.stride_w);
    let (oh, ow) = (g.out_h(), g.out_w());
    // The phase grid (rows × columns of one phase) and ∂E/∂O's zero border.
    let layout = PhaseLayout::new(g);
    let (rows_p, cols_p) = (layout.ph, layout.pw);
    let (th, tw) = ((g.kh - 1) / sh, (g.kw - 1) / sw);
    // Padded ∂E/∂O, [c_out][hd][wd]; outputs in rows of width wd.
    let (hd, wd) = (rows_p + th, cols_p + tw);
    let dplane = hd * wd;
    let (sweep, qp) = Sweep::padded(dt, rows_p * wd);
    let ntaps = g.kh * g.kw;
    // Per phase (a, b): its taps' offsets and the kernel packed
    // [row tile over c_in][tap][o][mr] (zero rows past c_in).
    let rt = tile_rows(g.c_in, mr);
    let row_tiles = g.c_in.div_ceil(rt);
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
                let (tile, r) = (c / rt, c % rt);
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
        // Padded pixel (sh·R + a, sw·C + b) is image pixel (y, x) when it
        // lies inside the image. The first phase row (column) inside and the
        // image row (column) it is, for phase offset p and padding pad.
        let first = |s: usize, p: usize, pad: usize| {
            let r0 = pad.saturating_sub(p).div_ceil(s);
            (r0, s * r0 + p - pad)
        };
        let block = g.c_in * qp;
        // The sw phases of phase row `a` (`out` holds one block of c_in·qp
        // each), then the image rows they make, whole rows at a time: a
        // bounds test per value took half of 16→32 32×32 s2 backward-data.
        for row in phases.chunks_exact(sw) {
            let a = row[0].0;
            for (b, (_, _, offs, pack)) in row.iter().enumerate() {
                let o = &mut out[b * block..][..block];
                if offs.is_empty() {
                    o.fill(T::zero());
                    continue;
                }
                let none = (std::ptr::null(), 0);
                sweep_taps(
                    dt, offs, g.c_out, dplane, pack, dp, o, g.c_in, &sweep, [none; 2],
                );
            }
            let (r0, y0) = first(sh, a, g.pad_top);
            if y0 >= g.h {
                continue;
            }
            let nrows = (g.h - y0).div_ceil(sh);
            let out = &out[..];
            crate::isa::vectorised(
                #[inline(always)]
                || {
                    for (c, dimg) in ds.chunks_exact_mut(g.h * g.w).enumerate() {
                        for k in 0..nrows {
                            let at = c * qp + (r0 + k) * wd;
                            let drow = &mut dimg[(y0 + k * sh) * g.w..][..g.w];
                            // Image column x is padded column x + pad_left:
                            // phase (x + pad_left) mod sw, at (x + pad_left) / sw.
                            let src = |x: usize, len: usize| {
                                let p = x + g.pad_left;
                                &out[(p % sw) * block + at + p / sw..][..len]
                            };
                            if sw == 2 {
                                // Both phases a pair at a time (LLVM
                                // vectorises it with shuffles).
                                let pairs = g.w / 2;
                                let (even, odd) = (src(0, g.w - pairs), src(1, pairs));
                                for ((d, &e), &o) in drow.chunks_exact_mut(2).zip(even).zip(odd) {
                                    d[0] = e;
                                    d[1] = o;
                                }
                                if g.w % 2 == 1 {
                                    drow[g.w - 1] = even[pairs];
                                }
                            } else {
                                for x0 in 0..sw.min(g.w) {
                                    let vals = src(x0, (g.w - x0).div_ceil(sw));
                                    for (d, &v) in drow[x0..].iter_mut().step_by(sw).zip(vals) {
                                        *d = v;
                                    }
                                }
                            }
                        }
                    }
                },
            );
        }
    };
    let task = task_size(g.batch, 1);
    crate::parallel::install(|| {
        dy.par_chunks(task * g.out_image())
            .zip(dx.par_chunks_mut(task * g.in_image()))
            .for_each(|(src, dst)| {
                let mut buf = (vec![T::zero(); dlen], vec![T::zero(); sw * g.c_in * qp]);
                src.chunks_exact(g.out_image())
                    .zip(dst.chunks_exact_mut(g.in_image()))
                    .for_each(|(gs, ds)| image((&mut buf.0, &mut buf.1), gs, ds));
            })
    });
}

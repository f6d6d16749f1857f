//! Pooling over slices: max pooling with a window and a stride, and global
//! average pooling.
//!
//! Section 12.3.3: "a pooling unit reports the largest value of its inputs";
//! the usual arrangement pools 2×2 windows with stride 2. When a size is odd
//! "one could ignore the odd pixel on the boundary, or one could build a row
//! (column; both) of imputed values, most likely by copying the row (column;
//! both) on the edge", giving `floor(x/2)` or `ceil(x/2)` outputs
//! ([`OddPolicy`]). Copying the edge row never changes a maximum, so the
//! imputed windows are the windows clipped to the slice.

use crate::isa::{as_f32, as_f32_mut};
use rayon::prelude::*;
use strata_tensor::Element;

/// What to do with a partial window at the bottom/right edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OddPolicy {
    /// Ignore the pixels a full window does not cover: `⌊(x − k)/s⌋ + 1` outputs.
    #[default]
    Floor,
    /// Impute the missing pixels by copying the edge row/column:
    /// `⌈(x − k)/s⌉ + 1` outputs (every window starts inside the slice).
    Ceil,
}

/// Number of pooling outputs along an axis of `len` pixels, window `k`,
/// stride `s`; `None` if no window fits (floor with `len < k`, or `len`, `k`
/// or `s` zero).
pub fn pooled_len(len: usize, k: usize, s: usize, policy: OddPolicy) -> Option<usize> {
    if len == 0 || k == 0 || s == 0 {
        return None;
    }
    match policy {
        OddPolicy::Floor => (len >= k).then(|| (len - k) / s + 1),
        OddPolicy::Ceil => {
            let mut out = len.saturating_sub(k).div_ceil(s) + 1;
            // A window must start inside the slice (possible when s > k).
            if (out - 1) * s >= len {
                out -= 1;
            }
            Some(out)
        }
    }
}

/// Shape of a max pooling: `planes` slices of `h × w`, window `kh × kw`,
/// strides, odd-size policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Number of slices (batch × channels).
    pub planes: usize,
    /// Slice height.
    pub h: usize,
    /// Slice width.
    pub w: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Odd-size policy.
    pub policy: OddPolicy,
}

impl PoolGeometry {
    /// Output height (0 if no window fits).
    pub fn out_h(&self) -> usize {
        pooled_len(self.h, self.kh, self.stride_h, self.policy).unwrap_or(0)
    }

    /// Output width (0 if no window fits).
    pub fn out_w(&self) -> usize {
        pooled_len(self.w, self.kw, self.stride_w, self.policy).unwrap_or(0)
    }
}

/// Whether `v` replaces `best` as a window's maximum: larger, or a NaN (a
/// NaN anywhere in a window makes its maximum NaN, as in PyTorch: once the
/// maximum is NaN no number is larger, so it stays). For the general and
/// edge windows; the 2×2 fast paths compare with `>` alone and test for a
/// NaN once per window, off the selects.
#[inline(always)]
fn beats<T: Element>(v: T, best: T) -> bool {
    v > best || v.is_nan()
}

/// Max pooling: `y` (`[planes, oh, ow]`) gets each window's maximum and
/// `arg` the index of that maximum within its slice (the first one on ties),
/// which routes the gradient back. A window holding a NaN gives NaN.
pub fn max_pool2d<T: Element>(g: &PoolGeometry, x: &[T], y: &mut [T], arg: &mut [u32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(x.len(), g.planes * g.h * g.w, "max_pool2d: input length");
    assert_eq!(y.len(), g.planes * oh * ow, "max_pool2d: output length");
    assert_eq!(arg.len(), y.len(), "max_pool2d: arg-max length");
    assert!(
        g.h * g.w <= u32::MAX as usize,
        "max_pool2d: slice too large"
    );
    if y.is_empty() {
        return;
    }
    let pair = g.kh == 2 && g.kw == 2 && g.stride_h == 2 && g.stride_w == 2;
    let plane = |((xs, ys), args): ((&[T], &mut [T]), &mut [u32])| {
        if pair {
            // The common 2×2, stride 2 case; a clipped (ceil) window repeats its
            // edge pixel, which never changes the maximum.
            for u in 0..oh {
                let (r0, r1) = (2 * u * g.w, (2 * u + 1).min(g.h - 1) * g.w);
                // Windows wholly inside the slice: selects instead of
                // branches (which mispredict on activations about half the
                // time); same strict `>`, so the first maximum wins ties.
                let full = if r1 > r0 { (g.w / 2).min(ow) } else { 0 };
                let (top, bottom) = (&xs[r0..r0 + g.w], &xs[r1..r1 + g.w]);
                let (yr, ar) = (&mut ys[u * ow..][..full], &mut args[u * ow..][..full]);
                for (v, (yv, av)) in yr.iter_mut().zip(ar.iter_mut()).enumerate() {
                    let (a, b) = (top[2 * v], top[2 * v + 1]);
                    let (c, d) = (bottom[2 * v], bottom[2 * v + 1]);
                    let (mut best, mut at) = (a, r0 + 2 * v);
                    let taps = [(b, r0 + 2 * v + 1), (c, r1 + 2 * v), (d, r1 + 2 * v + 1)];
                    for (val, i) in taps {
                        let gt = val > best;
                        best = if gt { val } else { best };
                        at = if gt { i } else { at };
                    }
                    // Rare: a NaN in the window is its maximum (the first one).
                    if a.is_nan() | b.is_nan() | c.is_nan() | d.is_nan() {
                        (best, at) = std::iter::once((a, r0 + 2 * v))
                            .chain(taps)
                            .find(|(x, _)| x.is_nan())
                            .unwrap_or((best, at));
                    }
                    *yv = best;
                    *av = at as u32;
                }
                for v in full..ow {
                    let (c0, c1) = (2 * v, (2 * v + 1).min(g.w - 1));
                    let mut best_i = r0 + c0;
                    for i in [r0 + c1, r1 + c0, r1 + c1] {
                        if beats(xs[i], xs[best_i]) {
                            best_i = i;
                        }
                    }
                    ys[u * ow + v] = xs[best_i];
                    args[u * ow + v] = best_i as u32;
                }
            }
            return;
        }
        for u in 0..oh {
            let (y0, y1) = (u * g.stride_h, (u * g.stride_h + g.kh).min(g.h));
            for v in 0..ow {
                let (x0, x1) = (v * g.stride_w, (v * g.stride_w + g.kw).min(g.w));
                let mut best_i = y0 * g.w + x0;
                let mut best = xs[best_i];
                for r in y0..y1 {
                    let row = &xs[r * g.w..(r + 1) * g.w];
                    for (c, &val) in row.iter().enumerate().take(x1).skip(x0) {
                        if beats(val, best) {
                            best = val;
                            best_i = r * g.w + c;
                        }
                    }
                }
                ys[u * ow + v] = best;
                args[u * ow + v] = best_i as u32;
            }
        }
    };
    crate::parallel::install(|| {
        x.par_chunks_exact(g.h * g.w)
            .zip(y.par_chunks_exact_mut(oh * ow))
            .zip(arg.par_chunks_exact_mut(oh * ow))
            .for_each(plane)
    });
}

/// One row of whole 2×2 windows without the arg-max: `>` for the maximum,
/// then NaN if the window holds one (the values of [`pair_row`]).
#[inline(always)]
fn pair_values<T: Element>(top: &[T], bot: &[T], y: &mut [T]) {
    let pick = |best: T, v: T| if v > best { v } else { best };
    for ((yv, t), b) in y
        .iter_mut()
        .zip(top.chunks_exact(2))
        .zip(bot.chunks_exact(2))
    {
        let m = pick(pick(pick(t[0], t[1]), b[0]), b[1]);
        let nan = t[0].is_nan() | t[1].is_nan() | b[0].is_nan() | b[1].is_nan();
        *yv = if nan { T::nan() } else { m };
    }
}

crate::isa::isa_loop!(pair_values_f32, pair_values::<f32>, (top: &[f32], bot: &[f32], y: &mut [f32]));

fn pair_values_any<T: Element>(top: &[T], bot: &[T], y: &mut [T]) {
    match (as_f32(top), as_f32(bot), as_f32_mut(y)) {
        (Some(t), Some(b), Some(y)) => pair_values_f32(t, b, y),
        _ => pair_values(top, bot, y),
    }
}

/// [`max_pool2d`] without the arg-max, for inference (nothing routes a
/// gradient back): the same maxima, with the 2×2 stride-2 case as a
/// branch-free loop over window pairs the compiler vectorises.
pub fn max_pool2d_values<T: Element>(g: &PoolGeometry, x: &[T], y: &mut [T]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(x.len(), g.planes * g.h * g.w, "max_pool2d: input length");
    assert_eq!(y.len(), g.planes * oh * ow, "max_pool2d: output length");
    let pair = g.kh == 2 && g.kw == 2 && g.stride_h == 2 && g.stride_w == 2;
    if y.is_empty() || !pair || g.h < 2 {
        let mut arg = vec![0u32; y.len()];
        return max_pool2d(g, x, y, &mut arg);
    }
    // The same values as `max_pool2d`: `>` for the maximum, then NaN if the
    // window holds one.
    let pick = |best: T, v: T| if v > best { v } else { best };
    let nan_or = |m: T, w: [T; 4]| {
        if w[0].is_nan() | w[1].is_nan() | w[2].is_nan() | w[3].is_nan() {
            T::nan()
        } else {
            m
        }
    };
    let plane = |(xs, ys): (&[T], &mut [T])| {
        for (u, yr) in ys.chunks_exact_mut(ow).enumerate() {
            let (r0, r1) = (2 * u * g.w, (2 * u + 1).min(g.h - 1) * g.w);
            let (top, bottom) = (&xs[r0..r0 + g.w], &xs[r1..r1 + g.w]);
            let full = (g.w / 2).min(ow);
            let (body, edge) = yr.split_at_mut(full);
            pair_values_any(top, bottom, body);
            // A ceil window clipped at the right edge: its one column.
            for (v, yv) in edge.iter_mut().enumerate() {
                let c = 2 * (full + v);
                *yv = nan_or(
                    pick(top[c], bottom[c]),
                    [top[c], bottom[c], top[c], bottom[c]],
                );
            }
        }
    };
    crate::parallel::install(|| {
        x.par_chunks_exact(g.h * g.w)
            .zip(y.par_chunks_exact_mut(oh * ow))
            .for_each(plane)
    });
}

/// Max-pooling backward: `dx[arg] += dy` (overlapping windows may share an
/// arg-max); `dx` (`[planes, h, w]`) is overwritten.
pub fn max_pool2d_backward<T: Element>(g: &PoolGeometry, dy: &[T], arg: &[u32], dx: &mut [T]) {
    let ohw = g.out_h() * g.out_w();
    assert_eq!(
        dx.len(),
        g.planes * g.h * g.w,
        "max_pool2d_backward: input length"
    );
    assert_eq!(
        dy.len(),
        g.planes * ohw,
        "max_pool2d_backward: output length"
    );
    assert_eq!(arg.len(), dy.len(), "max_pool2d_backward: arg-max length");
    if dy.is_empty() {
        dx.fill(T::zero());
        return;
    }
    let (oh, ow) = (g.out_h(), g.out_w());
    let tiled = g.kh == 2 && g.kw == 2 && g.stride_h == 2 && g.stride_w == 2;
    if tiled && g.h == 2 * oh && g.w == 2 * ow {
        // Even 2×2, stride 2: the windows tile the slice, so every input
        // pixel is written once (its window's gradient or zero) in a single
        // pass, with no separate zero fill.
        let w = g.w;
        let pair = |(d, (gs, args)): (&mut [T], (&[T], &[u32]))| {
            for (u, (d, (gs, args))) in d
                .chunks_exact_mut(2 * w)
                .zip(gs.chunks_exact(ow).zip(args.chunks_exact(ow)))
                .enumerate()
            {
                let (d0, d1) = d.split_at_mut(w);
                for v in 0..ow {
                    // Offset of the arg-max inside its window: 0, 1, w or w + 1.
                    let k = (args[v] as usize).wrapping_sub(2 * (u * w + v));
                    let gv = gs[v];
                    let put = |at: usize| if k == at { gv } else { T::zero() };
                    d0[2 * v] = put(0);
                    d0[2 * v + 1] = put(1);
                    d1[2 * v] = put(w);
                    d1[2 * v + 1] = put(w + 1);
                }
            }
        };
        crate::parallel::install(|| {
            dx.par_chunks_exact_mut(g.h * w)
                .zip(
                    dy.par_chunks_exact(oh * ow)
                        .zip(arg.par_chunks_exact(oh * ow)),
                )
                .for_each(pair)
        });
        return;
    }
    dx.fill(T::zero());
    crate::parallel::install(|| {
        dx.par_chunks_exact_mut(g.h * g.w)
            .zip(dy.par_chunks_exact(ohw))
            .zip(arg.par_chunks_exact(ohw))
            .for_each(|((d, gs), args)| {
                for (&gv, &a) in gs.iter().zip(args) {
                    d[a as usize] = d[a as usize] + gv;
                }
            })
    });
}

/// Whether `g` is the common 2×2 window with stride 2, which
/// [`max_pool2x2`] and [`max_pool2x2_backward`] handle.
pub fn is_pair(g: &PoolGeometry) -> bool {
    g.kh == 2 && g.kw == 2 && g.stride_h == 2 && g.stride_w == 2
}

/// One row of whole 2×2 windows: `y[v]` is the maximum of `top[2v..2v+2]`
/// and `bot[2v..2v+2]`, `code[v]` where it sits (`2·row + column`), the first
/// on ties and the first NaN if there is one (as [`max_pool2d`] chooses).
/// Selects only, so it vectorises (the deinterleave becomes shuffles).
#[inline(always)]
fn pair_row<T: Element>(top: &[T], bot: &[T], y: &mut [T], code: &mut [u8]) {
    for (((yv, cv), t), b) in y
        .iter_mut()
        .zip(code.iter_mut())
        .zip(top.chunks_exact(2))
        .zip(bot.chunks_exact(2))
    {
        let (a0, a1, b0, b1) = (t[0], t[1], b[0], b[1]);
        // A tree of strict `>`: the first maximum of each pair, then of the
        // two, is the first maximum of the four.
        let (g0, g1) = (a1 > a0, b1 > b0);
        let (m0, m1) = (if g0 { a1 } else { a0 }, if g1 { b1 } else { b0 });
        let g = m1 > m0;
        let m = if g { m1 } else { m0 };
        let k = if g { 2 + g1 as u8 } else { g0 as u8 };
        let (n0, n1, n2, n3) = (a0.is_nan(), a1.is_nan(), b0.is_nan(), b1.is_nan());
        let kn = if n0 {
            0
        } else if n1 {
            1
        } else if n2 {
            2
        } else {
            3
        };
        let vn = if n0 {
            a0
        } else if n1 {
            a1
        } else if n2 {
            b0
        } else {
            b1
        };
        let nan = n0 | n1 | n2 | n3;
        *yv = if nan { vn } else { m };
        *cv = if nan { kn } else { k };
    }
}

/// The backward of [`pair_row`]: each input pixel of the two rows gets its
/// window's gradient if it is the window's maximum, else zero.
#[inline(always)]
fn pair_row_backward<T: Element>(dy: &[T], code: &[u8], top: &mut [T], bot: &mut [T]) {
    for (((&g, &k), t), b) in dy
        .iter()
        .zip(code)
        .zip(top.chunks_exact_mut(2))
        .zip(bot.chunks_exact_mut(2))
    {
        let z = T::zero();
        t[0] = if k == 0 { g } else { z };
        t[1] = if k == 1 { g } else { z };
        b[0] = if k == 2 { g } else { z };
        b[1] = if k == 3 { g } else { z };
    }
}

crate::isa::isa_loop!(pair_row_f32, pair_row::<f32>, (top: &[f32], bot: &[f32], y: &mut [f32], code: &mut [u8]));
crate::isa::isa_loop!(pair_row_backward_f32, pair_row_backward::<f32>, (dy: &[f32], code: &[u8], top: &mut [f32], bot: &mut [f32]));

fn pair_row_any<T: Element>(top: &[T], bot: &[T], y: &mut [T], code: &mut [u8]) {
    match (as_f32(top), as_f32(bot), as_f32_mut(y)) {
        (Some(t), Some(b), Some(y)) => pair_row_f32(t, b, y, code),
        _ => pair_row(top, bot, y, code),
    }
}

fn pair_row_backward_any<T: Element>(dy: &[T], code: &[u8], top: &mut [T], bot: &mut [T]) {
    match (as_f32(dy), as_f32_mut(top), as_f32_mut(bot)) {
        (Some(g), Some(t), Some(b)) => pair_row_backward_f32(g, code, t, b),
        _ => pair_row_backward(dy, code, top, bot),
    }
}

/// 2×2 max pooling with stride 2 ([`is_pair`]) for training: `y` as
/// [`max_pool2d`] gives it, and for each window a one-byte `code`
/// `2·dr + dc` locating its maximum at row `2u + dr`, column `2v + dc` (a
/// quarter of the memory of [`max_pool2d`]'s 32-bit indices, which the
/// backward pass reads again). A window clipped at the edge (ceil policy)
/// only names pixels inside the slice.
pub fn max_pool2x2<T: Element>(g: &PoolGeometry, x: &[T], y: &mut [T], code: &mut [u8]) {
    assert!(
        is_pair(g),
        "max_pool2x2: the window must be 2×2 with stride 2"
    );
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(x.len(), g.planes * g.h * g.w, "max_pool2x2: input length");
    assert_eq!(y.len(), g.planes * oh * ow, "max_pool2x2: output length");
    assert_eq!(code.len(), y.len(), "max_pool2x2: code length");
    if y.is_empty() {
        return;
    }
    let w = g.w;
    let full = (w / 2).min(ow);
    let plane = |((xs, ys), cs): ((&[T], &mut [T]), &mut [u8])| {
        for u in 0..oh {
            let r0 = 2 * u;
            let (yr, cr) = (&mut ys[u * ow..][..ow], &mut cs[u * ow..][..ow]);
            if r0 + 1 < g.h {
                let (top, bot) = (&xs[r0 * w..][..w], &xs[(r0 + 1) * w..][..w]);
                pair_row_any(top, bot, &mut yr[..full], &mut cr[..full]);
                if ow > full {
                    // Ceil with an odd width: the window is the edge column.
                    let (a, b) = (top[w - 1], bot[w - 1]);
                    let k = if a.is_nan() {
                        0
                    } else if b.is_nan() || b > a {
                        2
                    } else {
                        0
                    };
                    yr[full] = if k == 0 { a } else { b };
                    cr[full] = k;
                }
            } else {
                // Ceil with an odd height: the window is the edge row.
                let row = &xs[r0 * w..][..w];
                for (v, (yv, cv)) in yr.iter_mut().zip(cr.iter_mut()).enumerate() {
                    let a = row[2 * v];
                    let k = match row.get(2 * v + 1) {
                        Some(&b) if !a.is_nan() && (b.is_nan() || b > a) => 1,
                        _ => 0,
                    };
                    *yv = row[2 * v + k as usize];
                    *cv = k;
                }
            }
        }
    };
    crate::parallel::install(|| {
        x.par_chunks_exact(g.h * w)
            .zip(y.par_chunks_exact_mut(oh * ow))
            .zip(code.par_chunks_exact_mut(oh * ow))
            .for_each(plane)
    });
}

/// The backward of [`max_pool2x2`]: each pixel of `dx` (`[planes, h, w]`,
/// overwritten) gets the gradient of the window whose maximum it is, or zero
/// (the windows do not overlap), in one pass.
pub fn max_pool2x2_backward<T: Element>(g: &PoolGeometry, dy: &[T], code: &[u8], dx: &mut [T]) {
    assert!(
        is_pair(g),
        "max_pool2x2_backward: the window must be 2×2 with stride 2"
    );
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(
        dx.len(),
        g.planes * g.h * g.w,
        "max_pool2x2_backward: input length"
    );
    assert_eq!(
        dy.len(),
        g.planes * oh * ow,
        "max_pool2x2_backward: output length"
    );
    assert_eq!(code.len(), dy.len(), "max_pool2x2_backward: code length");
    if dy.is_empty() {
        dx.fill(T::zero());
        return;
    }
    let (h, w) = (g.h, g.w);
    let full = (w / 2).min(ow);
    let plane = |(d, (gs, cs)): (&mut [T], (&[T], &[u8]))| {
        for u in 0..oh {
            let r0 = 2 * u;
            let (gr, cr) = (&gs[u * ow..][..ow], &cs[u * ow..][..ow]);
            if r0 + 1 < h {
                let (top, bot) = d[r0 * w..][..2 * w].split_at_mut(w);
                pair_row_backward_any(&gr[..full], &cr[..full], top, bot);
                if w > 2 * full {
                    // The odd last column: its clipped window's (ceil), or
                    // no window's (floor).
                    let (gv, k) = match (ow > full).then(|| (gr[full], cr[full])) {
                        Some(p) => p,
                        None => (T::zero(), 0),
                    };
                    top[w - 1] = if k == 0 { gv } else { T::zero() };
                    bot[w - 1] = if k == 2 { gv } else { T::zero() };
                }
            } else {
                let row = &mut d[r0 * w..][..w];
                row.fill(T::zero());
                for (v, (&gv, &k)) in gr.iter().zip(cr).enumerate() {
                    row[2 * v + k as usize] = gv;
                }
            }
        }
        // Floor with an odd height: the last row is in no window.
        d[(2 * oh).min(h) * w..].fill(T::zero());
    };
    crate::parallel::install(|| {
        dx.par_chunks_exact_mut(h * w)
            .zip(
                dy.par_chunks_exact(oh * ow)
                    .zip(code.par_chunks_exact(oh * ow)),
            )
            .for_each(plane)
    });
}

/// Global average pooling: `y[p] = (1/hw) Σ x[p, ·]` for each of `planes` slices of `hw` pixels.
pub fn global_avg_pool<T: Element>(x: &[T], planes: usize, hw: usize, y: &mut [T]) {
    assert_eq!(x.len(), planes * hw, "global_avg_pool: input length");
    assert_eq!(y.len(), planes, "global_avg_pool: output length");
    if hw == 0 {
        y.fill(T::zero());
        return;
    }
    for (o, p) in y.iter_mut().zip(x.chunks_exact(hw)) {
        *o = crate::reduce::mean(p);
    }
}

/// Global average pooling backward: `dx[p, ·] = dy[p] / hw`.
pub fn global_avg_pool_backward<T: Element>(dy: &[T], planes: usize, hw: usize, dx: &mut [T]) {
    assert_eq!(
        dx.len(),
        planes * hw,
        "global_avg_pool_backward: input length"
    );
    assert_eq!(dy.len(), planes, "global_avg_pool_backward: output length");
    if hw == 0 {
        return;
    }
    let inv = T::one() / T::of(hw as f64);
    for (d, &g) in dx.chunks_exact_mut(hw).zip(dy) {
        d.fill(g * inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_and_ceil_sizes() {
        assert_eq!(pooled_len(7, 2, 2, OddPolicy::Floor), Some(3));
        assert_eq!(pooled_len(7, 2, 2, OddPolicy::Ceil), Some(4));
        assert_eq!(pooled_len(8, 2, 2, OddPolicy::Ceil), Some(4));
        assert_eq!(pooled_len(1, 2, 2, OddPolicy::Floor), None);
        assert_eq!(pooled_len(1, 2, 2, OddPolicy::Ceil), Some(1));
        assert_eq!(pooled_len(5, 1, 3, OddPolicy::Ceil), Some(2));
    }

    /// A NaN anywhere in a window makes its maximum NaN, in the training
    /// (arg-max) and the inference pooling, for 2×2 and other windows
    /// (issue 24, defect 12: `[[1, NaN], [2, 3]]` pooled to 3).
    #[test]
    fn nan_propagates_wherever_it_sits_in_the_window() {
        for (k, s) in [(2, 2), (3, 3), (2, 1)] {
            let g = PoolGeometry {
                planes: 1,
                h: 3,
                w: 3,
                kh: k,
                kw: k,
                stride_h: s,
                stride_w: s,
                policy: OddPolicy::Floor,
            };
            for at in 0..4 {
                // The NaN at each place of the first window.
                let mut x = vec![1.0f32, 2.0, 0.5, 3.0, 4.0, 0.25, 0.0, -1.0, 5.0];
                x[(at / 2) * 3 + at % 2] = f32::NAN;
                let n = g.out_h() * g.out_w();
                let (mut y, mut arg) = (vec![0.0; n], vec![0u32; n]);
                max_pool2d(&g, &x, &mut y, &mut arg);
                assert!(y[0].is_nan(), "{k}×{k}/{s}, NaN at {at}: {y:?}");
                assert!(x[arg[0] as usize].is_nan());
                let mut v = vec![0.0; n];
                max_pool2d_values(&g, &x, &mut v);
                assert!(v[0].is_nan(), "values-only {k}×{k}/{s}, NaN at {at}: {v:?}");
            }
        }
    }

    /// The single-pass backward of tiling 2×2 windows equals the definition
    /// `dx[arg] += dy` on a zeroed `dx`, ties included.
    #[test]
    fn tiled_backward_routes_each_gradient_to_its_arg_max() {
        for (planes, h, w) in [(3, 4, 6), (2, 8, 2), (5, 2, 2)] {
            let g = pair_geometry(planes, h, w, OddPolicy::Floor);
            // Few distinct values, so some windows tie.
            let x: Vec<f64> = (0..planes * h * w).map(|i| ((i * 7) % 5) as f64).collect();
            let n = planes * g.out_h() * g.out_w();
            let (mut y, mut arg) = (vec![0.0; n], vec![0u32; n]);
            max_pool2d(&g, &x, &mut y, &mut arg);
            let dy: Vec<f64> = (0..n).map(|i| i as f64 + 1.0).collect();
            let mut want = vec![0.0; x.len()];
            for (i, (&d, &a)) in dy.iter().zip(&arg).enumerate() {
                want[i / (g.out_h() * g.out_w()) * h * w + a as usize] += d;
            }
            let mut dx = vec![f64::NAN; x.len()];
            max_pool2d_backward(&g, &dy, &arg, &mut dx);
            assert_eq!(dx, want, "{planes}×{h}×{w}");
        }
    }

    /// The inference pooling gives exactly the values of the arg-max one,
    /// ties, clipped (ceil) windows, odd sizes and other windows included.
    #[test]
    fn values_only_pooling_matches_max_pool2d() {
        let shapes = [
            (3, 4, 6, 2, 2),
            (2, 7, 5, 2, 2),
            (1, 3, 3, 2, 2),
            (2, 6, 6, 3, 2),
            (1, 1, 4, 2, 2),
        ];
        for (planes, h, w, k, s) in shapes {
            for policy in [OddPolicy::Floor, OddPolicy::Ceil] {
                let g = PoolGeometry {
                    planes,
                    h,
                    w,
                    kh: k,
                    kw: k,
                    stride_h: s,
                    stride_w: s,
                    policy,
                };
                let n = planes * g.out_h() * g.out_w();
                let x: Vec<f32> = (0..planes * h * w)
                    .map(|i| ((i * 7) % 5) as f32 - 2.0)
                    .collect();
                let (mut want, mut arg) = (vec![0.0; n], vec![0u32; n]);
                max_pool2d(&g, &x, &mut want, &mut arg);
                let mut got = vec![f32::NAN; n];
                max_pool2d_values(&g, &x, &mut got);
                assert_eq!(got, want, "{planes}×{h}×{w} k{k} s{s} {policy:?}");
            }
        }
    }

    /// 2×2 windows with stride 2 over `planes` slices of `h × w`.
    fn pair_geometry(planes: usize, h: usize, w: usize, policy: OddPolicy) -> PoolGeometry {
        PoolGeometry {
            planes,
            h,
            w,
            kh: 2,
            kw: 2,
            stride_h: 2,
            stride_w: 2,
            policy,
        }
    }

    /// The pixel a [`max_pool2x2`] code names, within its slice.
    fn code_pixel(g: &PoolGeometry, u: usize, v: usize, k: u8) -> usize {
        let r = (2 * u + k as usize / 2).min(g.h - 1);
        let c = (2 * v + k as usize % 2).min(g.w - 1);
        r * g.w + c
    }

    /// Slices with ties (few distinct values) and NaNs at scattered places.
    fn tie_data(n: usize, nans: bool) -> Vec<f32> {
        (0..n)
            .map(|i| match i * 7 % 23 {
                0 if nans => f32::NAN,
                r => (r % 5) as f32 - 2.0,
            })
            .collect()
    }

    /// 2×2 pooling with byte codes picks the same maxima at the same pixels as
    /// the general arg-max pooling, and its backward is `dx[pixel] += dy` on
    /// a zeroed `dx`: even, odd, floor, ceil, a one-row slice, ties, NaNs.
    #[test]
    fn pair_pooling_matches_the_general_pooling_and_its_backward() {
        let shapes = [
            (3, 4, 6),
            (2, 7, 5),
            (1, 3, 3),
            (2, 8, 2),
            (1, 1, 4),
            (2, 5, 40),
            (1, 2, 33),
        ];
        for (planes, h, w) in shapes {
            for policy in [OddPolicy::Floor, OddPolicy::Ceil] {
                let g = pair_geometry(planes, h, w, policy);
                let (oh, ow) = (g.out_h(), g.out_w());
                let n = planes * oh * ow;
                for nans in [false, true] {
                    let x = tie_data(planes * h * w, nans);
                    let (mut want, mut arg) = (vec![0.0; n], vec![0u32; n]);
                    max_pool2d(&g, &x, &mut want, &mut arg);
                    let (mut y, mut code) = (vec![0.0; n], vec![9u8; n]);
                    max_pool2x2(&g, &x, &mut y, &mut code);
                    let dy: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
                    let mut expect = vec![0.0; x.len()];
                    for i in 0..n {
                        let (p, u, v) = (i / (oh * ow), i % (oh * ow) / ow, i % ow);
                        let at = code_pixel(&g, u, v, code[i]);
                        let tag = format!("{planes}×{h}×{w} {policy:?} nans {nans} window {i}");
                        assert!(code[i] < 4, "{tag}");
                        assert_eq!(y[i].to_bits(), x[p * h * w + at].to_bits(), "{tag}");
                        if want[i].is_nan() {
                            assert!(y[i].is_nan(), "{tag}");
                        } else {
                            assert_eq!((y[i], at), (want[i], arg[i] as usize), "{tag}");
                        }
                        expect[p * h * w + at] += dy[i];
                    }
                    let mut dx = vec![f32::NAN; x.len()];
                    max_pool2x2_backward(&g, &dy, &code, &mut dx);
                    assert_eq!(dx, expect, "{planes}×{h}×{w} {policy:?} nans {nans}");
                }
            }
        }
    }

    /// The row loops compiled for this host's vector ISA give the bits of
    /// the baseline build.
    #[test]
    fn pair_rows_give_the_same_bits_on_every_isa() {
        let top = tie_data(2 * 301, true);
        let bot: Vec<f32> = tie_data(2 * 301 + 5, true)[5..].to_vec();
        let (mut y0, mut c0, mut y1, mut c1) = (
            vec![0.0; 301],
            vec![0u8; 301],
            vec![0.0; 301],
            vec![0u8; 301],
        );
        pair_row_f32(&top, &bot, &mut y0, &mut c0);
        pair_row::<f32>(&top, &bot, &mut y1, &mut c1);
        assert_eq!(c0, c1);
        assert!(y0.iter().zip(&y1).all(|(a, b)| a.to_bits() == b.to_bits()));
        pair_values_f32(&top, &bot, &mut y0);
        pair_values::<f32>(&top, &bot, &mut y1);
        assert!(y0.iter().zip(&y1).all(|(a, b)| a.to_bits() == b.to_bits()));
        let dy: Vec<f32> = (0..301).map(|i| i as f32 - 7.5).collect();
        let (mut t0, mut b0) = (vec![0.0; 602], vec![0.0; 602]);
        let (mut t1, mut b1) = (vec![1.0; 602], vec![1.0; 602]);
        pair_row_backward_f32(&dy, &c0, &mut t0, &mut b0);
        pair_row_backward::<f32>(&dy, &c0, &mut t1, &mut b1);
        assert_eq!((t0, b0), (t1, b1));
    }

    #[test]
    fn ceil_copies_the_edge() {
        // 1×3 slice, 2×2 windows stride 2, ceil: the last window is the edge column.
        let g = PoolGeometry {
            planes: 1,
            h: 1,
            w: 3,
            kh: 2,
            kw: 2,
            stride_h: 2,
            stride_w: 2,
            policy: OddPolicy::Ceil,
        };
        let (mut y, mut a) = ([0.0f32; 2], [0u32; 2]);
        max_pool2d(&g, &[1.0, 3.0, 2.0], &mut y, &mut a);
        assert_eq!((y, a), ([3.0, 2.0], [1, 2]));
    }
}

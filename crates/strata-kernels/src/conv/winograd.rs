//! Winograd's minimal filtering F(2×2, 3×3) for 3×3 stride-1 convolutions
//! (Lavin & Gray, 2016): every 2×2 block of output comes from a 4×4 block `d`
//! of each input slice as
//!
//! `Y_o = Aᵀ [ Σ_c (G g_{o,c} Gᵀ) ⊙ (Bᵀ d_c B) ] A`,
//!
//! 16 multiplies per block and slice pair instead of the direct 36. The sum
//! over input slices of the 16 elementwise products is 16 matrix products
//! `M_ξ[o, t] = Σ_c U_ξ[o, c] · V_ξ[c, t]` over the output blocks `t` of a chunk
//! of rows of blocks; they run on the GEMM's register tiles with `V` written by the
//! input transform straight into packed panels (no packing pass, no driver).
//! Rounding differs from the direct sum (the transforms add and halve), by a
//! few units in the last place for these small transforms.

use rayon::prelude::*;

use super::ConvGeometry;
use crate::elementwise::{add_row, relu_row};
use crate::gemm::{copy_run, DirectTiles, GemmScalar};

/// Positions of the 4×4 transformed block.
const XI: usize = 16;

/// Elements of `V` and `M` held at once (192 KB of f32): a chunk of blocks
/// is transformed, multiplied and transformed back while it sits in L2.
const CHUNK_ELEMS: usize = 48 << 10;

/// Blocks handled together by the transforms: one AVX2 vector of f32. Rows
/// of blocks are short (2–16), below the trip count at which the loop
/// vectoriser's unrolled loop starts; a fixed-size block of lanes becomes
/// straight-line vector code instead.
const LANES: usize = 8;

/// `Bᵀ d` down the columns `2k..2k + 2L` of the four input rows `i`, the
/// even columns into `e`, the odd ones into `o` (at `k..k + L`).
#[inline(always)]
fn down_lanes<T: GemmScalar, const L: usize>(
    i: &[&[T]; 4],
    e: &mut [&mut [T]; 4],
    o: &mut [&mut [T]; 4],
    k: usize,
) -> usize {
    let r: [&[T]; 4] = std::array::from_fn(|j| &i[j][2 * k..2 * k + 2 * L]);
    let mut out = [[[T::zero(); L]; 4]; 2];
    for l in 0..L {
        for (p, half) in out.iter_mut().enumerate() {
            let x = 2 * l + p;
            half[0][l] = r[0][x] - r[2][x];
            half[1][l] = r[1][x] + r[2][x];
            half[2][l] = r[2][x] - r[1][x];
            half[3][l] = r[1][x] - r[3][x];
        }
    }
    for j in 0..4 {
        e[j][k..k + L].copy_from_slice(&out[0][j]);
        o[j][k..k + L].copy_from_slice(&out[1][j]);
    }
    L
}

/// `(Bᵀ d) B` along a row for blocks `tx..tx + L`: block `t` reads
/// `e[t], o[t], e[t + 1], o[t + 1]` (columns `2t..2t + 3`); output `j` of
/// the row's four goes to `v[at[j]..][..L]`.
#[inline(always)]
fn along_lanes<T: GemmScalar, const L: usize>(
    e: &[T],
    o: &[T],
    v: &mut [T],
    at: [usize; 4],
    tx: usize,
) -> usize {
    let (ea, eb) = (&e[tx..tx + L], &e[tx + 1..tx + 1 + L]);
    let (oa, ob) = (&o[tx..tx + L], &o[tx + 1..tx + 1 + L]);
    let mut out = [[T::zero(); L]; 4];
    for l in 0..L {
        out[0][l] = ea[l] - eb[l];
        out[1][l] = oa[l] + eb[l];
        out[2][l] = eb[l] - oa[l];
        out[3][l] = oa[l] - ob[l];
    }
    for (&at, src) in at.iter().zip(out) {
        v[at..at + L].copy_from_slice(&src);
    }
    L
}

/// `Aᵀ M A` for blocks `at..at + L` of one output slice: `m[ξ]` holds `M_ξ`
/// along the blocks, `y` receives the four outputs of each block
/// (top-left, top-right, bottom-left, bottom-right).
#[inline(always)]
fn out_lanes<T: GemmScalar, const L: usize>(m: &[&[T]; XI], y: &mut [&mut [T]; 4], at: usize) {
    let e: [&[T; L]; XI] =
        std::array::from_fn(|xi| m[xi][at..at + L].try_into().expect("L values"));
    let (mut y00, mut y01, mut y10, mut y11) = (
        [T::zero(); L],
        [T::zero(); L],
        [T::zero(); L],
        [T::zero(); L],
    );
    for l in 0..L {
        // Aᵀ down the columns (rows 0–2 summed, rows 1–3 differenced), then along the rows.
        let s: [T; 4] = std::array::from_fn(|j| e[j][l] + e[4 + j][l] + e[8 + j][l]);
        let d: [T; 4] = std::array::from_fn(|j| e[4 + j][l] - e[8 + j][l] - e[12 + j][l]);
        y00[l] = s[0] + s[1] + s[2];
        y01[l] = s[1] - s[2] - s[3];
        y10[l] = d[0] + d[1] + d[2];
        y11[l] = d[1] - d[2] - d[3];
    }
    for (dst, src) in y.iter_mut().zip([y00, y01, y10, y11]) {
        dst[at..at + L].copy_from_slice(&src);
    }
}

/// Whether F(2×2, 3×3) computes this shape: a 3×3 kernel at stride 1.
pub(crate) fn computes(g: &ConvGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1
}

/// `U = G g Gᵀ` for every kernel, packed as the A operand of the register
/// tiles: `[ξ][row tile][c][mr]`, rows past `c_out` zero.
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
fn kernel_transform<T: GemmScalar>(g: &ConvGeometry, w: &[T], mr: usize) -> Vec<T> {
    let rts = g.c_out.div_ceil(mr);
    let mut u = vec![T::zero(); XI * rts * g.c_in * mr];
    let half = T::of(0.5);
    // [a, b, c] ↦ [a, (a + b + c)/2, (a − b + c)/2, c]: one side of G·Gᵀ.
    let side = |a: T, b: T, c: T| [a, (a + b + c) * half, (a - b + c) * half, c];
    for o in 0..g.c_out {
        let (rt, r) = (o / mr, o % mr);
        for c in 0..g.c_in {
            let k = &w[(o * g.c_in + c) * 9..][..9];
            let cols: [[T; 4]; 3] = std::array::from_fn(|j| side(k[j], k[3 + j], k[6 + j]));
            for i in 0..4 {
                let row = side(cols[0][i], cols[1][i], cols[2][i]);
                for (j, &v) in row.iter().enumerate() {
                    u[((4 * i + j) * rts + rt) * g.c_in * mr + c * mr + r] = v;
                }
            }
        }
    }
    u
}

/// One task's buffers, reused for every chunk of blocks it computes.
struct Work<T> {
    /// Four zero-padded input rows of one slice, `4 × pw`; the border is
    /// never written, so it stays zero.
    rows: Vec<T>,
    /// `Bᵀ d` for one row of blocks: four rows of `pw`.
    cols: Vec<T>,
    /// `V`, packed B panels: `[ξ][panel][c][nr]`.
    v: Vec<T>,
    /// `M`: `[ξ][o][panels·nr]`.
    m: Vec<T>,
    /// `Aᵀ M A` for one output slice over a chunk: `[4][chunk·tw]` (the four
    /// outputs of each block).
    out: Vec<T>,
}

/// Shape facts shared by the steps.
#[derive(Clone, Copy)]
struct Plan {
    oh: usize,
    ow: usize,
    /// Rows and columns of 2×2 output blocks.
    th: usize,
    tw: usize,
    /// Width of the padded input rows a row of blocks reads, `2·tw + 2`.
    pw: usize,
    /// Rows of blocks per chunk.
    chunk: usize,
    /// Panels of `nr` blocks per chunk (rounded up).
    panels: usize,
    /// Blocks per panel (the register tile's width).
    nr: usize,
}

/// [`crate::conv::conv2d_forward_fused`] by F(2×2, 3×3): `y = F(conv(x) + b + r)`.
/// Requires [`computes`]; lengths checked by the caller. Each block's result
/// depends only on its own inputs (whole depth in one product), so it does not
/// depend on the chunking or the threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    y: &mut [T],
    dt: DirectTiles<T>,
) {
    debug_assert!(computes(g));
    let (oh, ow) = (g.out_h(), g.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let blocks = (CHUNK_ELEMS / (XI * (g.c_in + g.c_out))).max(dt.nr);
    let chunk = (blocks / tw).clamp(1, g.batch * th);
    let plan = Plan {
        oh,
        ow,
        th,
        tw,
        pw: 2 * tw + 2,
        chunk,
        panels: (chunk * tw).div_ceil(dt.nr),
        nr: dt.nr,
    };
    let u = kernel_transform(g, w, dt.mr);
    let task = super::task_size(g.batch, 1);
    crate::parallel::install(|| {
        x.par_chunks(task * g.in_image())
            .zip(y.par_chunks_mut(task * g.out_image()))
            .enumerate()
            .for_each(|(t, (xs, ys))| {
                let mut work = Work {
                    rows: vec![T::zero(); 4 * plan.pw],
                    cols: vec![T::zero(); 4 * plan.pw],
                    v: vec![T::zero(); XI * plan.panels * g.c_in * dt.nr],
                    m: vec![T::zero(); XI * g.c_out * plan.panels * dt.nr],
                    out: vec![T::zero(); 4 * plan.chunk * tw],
                };
                let rs = residual.map(|r| &r[t * task * g.out_image()..][..ys.len()]);
                let block_rows = xs.len() / g.in_image() * th;
                for r0 in (0..block_rows).step_by(plan.chunk) {
                    let rows = r0..block_rows.min(r0 + plan.chunk);
                    transforms(g, &plan, xs, rows.clone(), &mut work);
                    products(g, &plan, &dt, &u, rows.len(), &mut work);
                    output(g, &plan, bias, rs, relu, rows, &mut work, ys);
                }
            })
    });
}

/// `V = Bᵀ d B` of every block in rows `rows` of blocks (counted over the
/// task's images) and every slice, written into packed panels.
/// `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`.
fn transforms<T: GemmScalar>(
    g: &ConvGeometry,
    p: &Plan,
    xs: &[T],
    rows: std::ops::Range<usize>,
    work: &mut Work<T>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { transforms_avx2(g, p, xs, rows, work) };
    }
    transforms_body(g, p, xs, rows, work)
}

/// [`transforms_body`] compiled for AVX2 (vectorised along a row of blocks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transforms_avx2<T: GemmScalar>(
    g: &ConvGeometry,
    p: &Plan,
    xs: &[T],
    rows: std::ops::Range<usize>,
    work: &mut Work<T>,
) {
    transforms_body(g, p, xs, rows, work)
}

#[inline(always)]
fn transforms_body<T: GemmScalar>(
    g: &ConvGeometry,
    p: &Plan,
    xs: &[T],
    rows: std::ops::Range<usize>,
    work: &mut Work<T>,
) {
    let Work {
        rows: input,
        cols,
        v,
        ..
    } = work;
    let (pw, tw, nr) = (p.pw, p.tw, p.nr);
    let half = tw + 1;
    // The image's columns that land inside the padded rows.
    let width = g.w.min(pw.saturating_sub(g.pad_left));
    let r0 = rows.start;
    for br in rows {
        let (b, ty) = (br / p.th, br % p.th);
        let img = &xs[b * g.in_image()..][..g.in_image()];
        for (c, src) in img.chunks_exact(g.h * g.w).enumerate() {
            // Input rows 2·ty − pad_top + i, zero outside the image.
            for i in 0..4 {
                let dst = &mut input[i * pw + g.pad_left..][..width];
                match (2 * ty + i).checked_sub(g.pad_top).filter(|&yy| yy < g.h) {
                    Some(yy) => copy_run(dst, &src[yy * g.w..][..width]),
                    None => dst.fill(T::zero()),
                }
            }
            // Bᵀ d down the columns, on the even and the odd columns apart
            // (`cols` = [even: 4 rows of tw + 1][odd: 4 rows]), so that the
            // pass along the row below reads contiguous values.
            let (ev, od) = cols.split_at_mut(4 * half);
            let (e0, rest) = ev.split_at_mut(half);
            let (e1, rest) = rest.split_at_mut(half);
            let (e2, e3) = rest.split_at_mut(half);
            let (o0, rest) = od.split_at_mut(half);
            let (o1, rest) = rest.split_at_mut(half);
            let (o2, o3) = rest.split_at_mut(half);
            let (i0, rest) = input.split_at(pw);
            let (i1, rest) = rest.split_at(pw);
            let (i2, i3) = rest.split_at(pw);
            let (inp, mut ev, mut od) = ([i0, i1, i2, i3], [e0, e1, e2, e3], [o0, o1, o2, o3]);
            let mut k = 0;
            while k < half {
                k += match half - k {
                    8.. => down_lanes::<T, 8>(&inp, &mut ev, &mut od, k),
                    4.. => down_lanes::<T, 4>(&inp, &mut ev, &mut od, k),
                    2.. => down_lanes::<T, 2>(&inp, &mut ev, &mut od, k),
                    _ => down_lanes::<T, 1>(&inp, &mut ev, &mut od, k),
                };
            }
            // (Bᵀ d) B along the row: block tx reads columns 2tx..2tx+3, i.e.
            // even[tx], odd[tx], even[tx + 1], odd[tx + 1]; block t of the
            // chunk goes to panel t / nr, lane t % nr, written in place.
            let t0 = (br - r0) * tw;
            for (i, (e, o)) in ev.iter().zip(&od).enumerate() {
                let mut tx = 0;
                while tx < tw {
                    let t = t0 + tx;
                    let (panel, lane) = (t / nr, t % nr);
                    let at: [usize; 4] = std::array::from_fn(|j| {
                        ((((4 * i + j) * p.panels + panel) * g.c_in) + c) * nr + lane
                    });
                    tx += match (tw - tx).min(nr - lane) {
                        8.. => along_lanes::<T, 8>(e, o, v, at, tx),
                        4.. => along_lanes::<T, 4>(e, o, v, at, tx),
                        2.. => along_lanes::<T, 2>(e, o, v, at, tx),
                        _ => along_lanes::<T, 1>(e, o, v, at, tx),
                    };
                }
            }
        }
    }
}

/// The 16 products `M_ξ = U_ξ · V_ξ` over a chunk of `rows` rows of blocks,
/// one register tile at a time (depth `c_in`, whole: no depth blocks to merge).
fn products<T: GemmScalar>(
    g: &ConvGeometry,
    p: &Plan,
    dt: &DirectTiles<T>,
    u: &[T],
    rows: usize,
    work: &mut Work<T>,
) {
    let (mr, nr) = (dt.mr, dt.nr);
    let rts = g.c_out.div_ceil(mr);
    let ldm = p.panels * nr;
    let live = (rows * p.tw).div_ceil(nr);
    for xi in 0..XI {
        let a = &u[xi * rts * g.c_in * mr..][..rts * g.c_in * mr];
        let b = &work.v[xi * p.panels * g.c_in * nr..][..p.panels * g.c_in * nr];
        let m = &mut work.m[xi * g.c_out * ldm..][..g.c_out * ldm];
        for panel in 0..live {
            let bp = &b[panel * g.c_in * nr..][..g.c_in * nr];
            for rt in 0..rts {
                let rows = mr.min(g.c_out - rt * mr);
                let c = &mut m[rt * mr * ldm + panel * nr..];
                assert!(c.len() >= (rows - 1) * ldm + nr);
                // SAFETY: A's row tile holds c_in·mr values and B's panel
                // c_in·nr; the `rows × nr` tile at `c` (row stride ldm) lies
                // inside `m` (asserted); the tiles exist only where their ISA
                // runs (the caller got them from `direct_tiles`).
                unsafe {
                    (dt.rows(rows))(
                        g.c_in,
                        a[rt * g.c_in * mr..].as_ptr(),
                        bp.as_ptr(),
                        c.as_mut_ptr(),
                        ldm,
                        T::one(),
                        T::zero(),
                    )
                }
            }
        }
    }
}

/// `Y = Aᵀ M A` for every block of the chunk, `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`,
/// cropped to the output, then bias, residual and ReLU while the rows are in cache.
#[allow(clippy::too_many_arguments)]
fn output<T: GemmScalar>(
    g: &ConvGeometry,
    p: &Plan,
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    rows: std::ops::Range<usize>,
    work: &mut Work<T>,
    ys: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { output_avx2(g, p, bias, residual, relu, rows, work, ys) };
    }
    output_body(g, p, bias, residual, relu, rows, work, ys)
}

/// [`output_body`] compiled for AVX2 (vectorised along a row of blocks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn output_avx2<T: GemmScalar>(
    g: &ConvGeometry,
    p: &Plan,
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    rows: std::ops::Range<usize>,
    work: &mut Work<T>,
    ys: &mut [T],
) {
    output_body(g, p, bias, residual, relu, rows, work, ys)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_body<T: GemmScalar>(
    g: &ConvGeometry,
    p: &Plan,
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    rows: std::ops::Range<usize>,
    work: &mut Work<T>,
    ys: &mut [T],
) {
    let (oh, ow, tw) = (p.oh, p.ow, p.tw);
    let ldm = p.panels * p.nr;
    let (m, out) = (&work.m, &mut work.out);
    let r0 = rows.start;
    let n = rows.len() * tw;
    for o in 0..g.c_out {
        // Aᵀ M A for every block of the chunk at once (long vectors whatever
        // the image width), then row by row into the output.
        let ms: [&[T]; XI] = std::array::from_fn(|xi| &m[(xi * g.c_out + o) * ldm..][..n]);
        let (y00, rest) = out.split_at_mut(n);
        let (y01, rest) = rest.split_at_mut(n);
        let (y10, y11) = rest.split_at_mut(n);
        let mut ys4 = [y00, y01, y10, y11];
        let mut t = 0;
        while t + LANES <= n {
            out_lanes::<T, LANES>(&ms, &mut ys4, t);
            t += LANES;
        }
        for t in t..n {
            out_lanes::<T, 1>(&ms, &mut ys4, t);
        }
        // Vectorised for the host: the rows are short, and per-row dispatch
        // of the residual add and ReLU cost more than their arithmetic.
        crate::isa::vectorised(|| {
            for br in rows.clone() {
                let (b, ty) = (br / p.th, br % p.th);
                let t0 = (br - r0) * tw;
                let [y00, y01, y10, y11] = ys4.each_ref().map(|y| &y[t0..t0 + tw]);
                let bo = bias.map(|b| b[o]);
                for (dy, (left, right)) in [(y00, y01), (y10, y11)].into_iter().enumerate() {
                    let yy = 2 * ty + dy;
                    if yy >= oh {
                        break;
                    }
                    let at = ((b * g.c_out + o) * oh + yy) * ow;
                    let d = &mut ys[at..][..ow];
                    let (pairs, tail) = d.as_chunks_mut::<2>();
                    for ((pair, &l), &r) in pairs.iter_mut().zip(left).zip(right) {
                        *pair = [l, r];
                    }
                    if let [last] = tail {
                        *last = left[ow / 2];
                    }
                    if let Some(bv) = bo {
                        d.iter_mut().for_each(|d| *d = *d + bv);
                    }
                    if let Some(r) = residual {
                        add_row(d, &r[at..][..ow]);
                    }
                    if relu {
                        relu_row(d);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::conv2d_naive;
    use crate::gemm::direct_tile_sets;

    fn data(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005) | 1;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// F(2×2, 3×3) itself, whatever `choose` would pick: odd sizes (cropped
    /// blocks), one-pixel and one-slice layers, uneven padding, short row
    /// tiles (c_out not a multiple of 6), chunks that end inside a panel,
    /// bias + residual + ReLU; in f64 (to 1e-12) and f32 (to 1e-4).
    #[test]
    fn forward_matches_the_definition_on_any_shape() {
        fn check<T: GemmScalar + Into<f64>>(tol: f64, of: impl Fn(f64) -> T) {
            for dt in direct_tile_sets::<T>() {
                let shapes = [
                    (3, 1, 1, 1, 1, (1, 1, 1, 1)),
                    (2, 5, 7, 7, 13, (1, 1, 1, 1)),
                    (3, 16, 14, 9, 16, (1, 1, 1, 1)),
                    (1, 3, 2, 11, 7, (0, 2, 2, 0)),
                    (5, 20, 4, 4, 70, (1, 1, 1, 1)),
                    (40, 64, 8, 8, 64, (1, 1, 1, 1)),
                    (2, 2, 33, 31, 3, (2, 1, 0, 1)),
                ];
                for (batch, c_in, h, w, c_out, pads) in shapes {
                    let g = ConvGeometry {
                        batch,
                        c_in,
                        h,
                        w,
                        c_out,
                        kh: 3,
                        kw: 3,
                        stride_h: 1,
                        stride_w: 1,
                        pad_top: pads.0,
                        pad_bottom: pads.1,
                        pad_left: pads.2,
                        pad_right: pads.3,
                    };
                    let v = |n, seed| data(n, seed).into_iter().map(&of).collect::<Vec<T>>();
                    let (x, k, b) = (
                        v(batch * g.in_image(), 1),
                        v(g.weight_len(), 2),
                        v(c_out, 3),
                    );
                    let n = batch * g.out_image();
                    let r = v(n, 4);
                    let mut got = vec![T::nan(); n];
                    forward(&g, &x, &k, Some(&b), Some(&r), true, &mut got, dt);
                    let mut want = vec![T::zero(); n];
                    conv2d_naive(&g, &x, &k, Some(&b), &mut want);
                    for ((&a, &e), &r) in got.iter().zip(&want).zip(&r) {
                        let (a, e): (f64, f64) = (a.into(), (e + r).into());
                        assert!((a - e.max(0.0)).abs() < tol, "{g:?}: {a} vs {}", e.max(0.0));
                    }
                }
            }
        }
        check::<f64>(1e-12, |x| x);
        check::<f32>(1e-4, |x| x as f32);
    }
}

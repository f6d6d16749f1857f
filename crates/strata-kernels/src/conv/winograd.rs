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
use crate::elementwise::finish_row;
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

/// `d B` along one padded row for blocks `tx..tx + L`: block `t` reads
/// columns `2t..2t + 3`; output `j` goes to `h[j][tx..tx + L]`.
/// `B` maps `[a, b, c, d]` to `[a − c, b + c, c − b, b − d]`.
#[inline(always)]
fn row_lanes<T: GemmScalar, const L: usize>(p: &[T], h: &mut [&mut [T]; 4], tx: usize) -> usize {
    let r = &p[2 * tx..2 * tx + 2 * L + 2];
    let mut out = [[T::zero(); L]; 4];
    for l in 0..L {
        let (a, b, c, d) = (r[2 * l], r[2 * l + 1], r[2 * l + 2], r[2 * l + 3]);
        out[0][l] = a - c;
        out[1][l] = b + c;
        out[2][l] = c - b;
        out[3][l] = b - d;
    }
    for (h, out) in h.iter_mut().zip(&out) {
        h[tx..tx + L].copy_from_slice(out);
    }
    L
}

/// `Bᵀ (d B)` down the blocks `t..t + L` of a part, whose four padded rows
/// are in `even` (rows 2ty and 2ty + 2, at `t` and `t + tw`) and `odd` (rows
/// 2ty + 1 and 2ty + 3); output `i` goes to `v[at[i] + t..][..L]`
/// (`at[i]` may be offset below zero, wrapping).
#[inline(always)]
fn col_lanes<T: GemmScalar, const L: usize>(
    even: &[T],
    odd: &[T],
    tw: usize,
    v: &mut [T],
    at: [usize; 4],
    t: usize,
) -> usize {
    let (a, c) = (&even[t..t + L], &even[t + tw..t + tw + L]);
    let (b, d) = (&odd[t..t + L], &odd[t + tw..t + tw + L]);
    let mut out = [[T::zero(); L]; 4];
    for l in 0..L {
        out[0][l] = a[l] - c[l];
        out[1][l] = b[l] + c[l];
        out[2][l] = c[l] - b[l];
        out[3][l] = b[l] - d[l];
    }
    for (&at, out) in at.iter().zip(&out) {
        v[at.wrapping_add(t)..][..L].copy_from_slice(out);
    }
    L
}

/// `Aᵀ M A` for blocks `at..at + L` of one output slice: `m[ξ]` holds `M_ξ`
/// along the blocks; `z[dy]` receives each block's output row `dy` as a
/// pair (left, right) at `2t`, so that `z[dy]` holds the output rows of
/// parity `dy`, one after another, each `2·tw` long.
#[inline(always)]
fn out_lanes<T: GemmScalar, const L: usize>(m: &[&[T]; XI], z: &mut [&mut [T]; 2], at: usize) {
    let e: [&[T; L]; XI] =
        std::array::from_fn(|xi| m[xi][at..at + L].try_into().expect("L values"));
    let mut rows = [[[T::zero(); 2]; L]; 2];
    for l in 0..L {
        // Aᵀ down the columns (rows 0–2 summed, rows 1–3 differenced), then along the rows.
        let s: [T; 4] = std::array::from_fn(|j| e[j][l] + e[4 + j][l] + e[8 + j][l]);
        let d: [T; 4] = std::array::from_fn(|j| e[4 + j][l] - e[8 + j][l] - e[12 + j][l]);
        rows[0][l] = [s[0] + s[1] + s[2], s[1] - s[2] - s[3]];
        rows[1][l] = [d[0] + d[1] + d[2], d[1] - d[2] - d[3]];
    }
    for (dst, src) in z.iter_mut().zip(&rows) {
        dst[2 * at..2 * (at + L)].copy_from_slice(src.as_flattened());
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
    let tile = g.c_in * mr;
    let mut u = vec![T::zero(); XI * rts * tile];
    let half = T::of(0.5);
    // [a, b, c] ↦ [a, (a + b + c)/2, (a − b + c)/2, c]: one side of G·Gᵀ.
    let side = |a: T, b: T, c: T| [a, (a + b + c) * half, (a - b + c) * half, c];
    // Row tiles in parallel (it ran on one thread, 7 % of a 256→256 7×7
    // forward): tile `rt` owns `[ξ][rt]` of every plane.
    let mut tiles: Vec<Vec<&mut [T]>> = (0..rts).map(|_| Vec::with_capacity(XI)).collect();
    for plane in u.chunks_exact_mut(rts * tile) {
        for (t, part) in tiles.iter_mut().zip(plane.chunks_exact_mut(tile)) {
            t.push(part);
        }
    }
    crate::parallel::install(|| {
        tiles
            .into_par_iter()
            .enumerate()
            .for_each(|(rt, mut planes)| {
                for o in rt * mr..g.c_out.min((rt + 1) * mr) {
                    let r = o - rt * mr;
                    for c in 0..g.c_in {
                        let k = &w[(o * g.c_in + c) * 9..][..9];
                        let cols: [[T; 4]; 3] =
                            std::array::from_fn(|j| side(k[j], k[3 + j], k[6 + j]));
                        for i in 0..4 {
                            let row = side(cols[0][i], cols[1][i], cols[2][i]);
                            for (j, &v) in row.iter().enumerate() {
                                planes[4 * i + j][c * mr + r] = v;
                            }
                        }
                    }
                }
            })
    });
    u
}

/// One task's buffers, reused for every chunk of blocks it computes.
struct Work<T> {
    /// The zero-padded input rows one image's part of a chunk reads, per
    /// slice `[c][Plan::part_rows][pw]`; the border is never written, so it
    /// stays zero.
    rows: Vec<T>,
    /// `d B` of each padded row of the part, `[c][j][row parity][row / 2][tw]`
    /// with `Plan::part_rows() / 2` rows per parity.
    hs: Vec<T>,
    /// `V`, packed B panels: `[ξ][panel][c][nr]`.
    v: Vec<T>,
    /// `M`: `[ξ][o][panels·nr]`.
    m: Vec<T>,
    /// `Aᵀ M A` over a chunk: `[o][row parity][blocks][2]` (each block's
    /// two output rows), dense for the chunk's number of blocks.
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
    /// Distance between the `ξ` planes of `V` and of `M`: their lengths plus
    /// a cache line, so that the 16 planes, whose lengths are multiples of
    /// 4 KB on every layer that takes this route, do not all fall in the
    /// same L1 sets as the transforms write them and the output reads them.
    v_stride: usize,
    m_stride: usize,
}

impl Plan {
    /// Padded input rows of the longest part of one image a chunk holds:
    /// two per block row and two more.
    fn part_rows(&self) -> usize {
        2 * self.chunk.min(self.th) + 2
    }
}

/// Elements added to a plane's length to offset the next plane by a cache
/// line (at least; 128 bytes for f64).
const SKEW: usize = 16;

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
        v_stride: (chunk * tw).div_ceil(dt.nr) * g.c_in * dt.nr + SKEW,
        m_stride: g.c_out * (chunk * tw).div_ceil(dt.nr) * dt.nr + SKEW,
    };
    let u = kernel_transform(g, w, dt.mr);
    let task = super::task_size(g.batch, 1);
    crate::parallel::install(|| {
        x.par_chunks(task * g.in_image())
            .zip(y.par_chunks_mut(task * g.out_image()))
            .enumerate()
            .for_each(|(t, (xs, ys))| {
                let mut work = Work {
                    rows: vec![T::zero(); g.c_in * plan.part_rows() * plan.pw],
                    hs: vec![T::zero(); g.c_in * 8 * plan.part_rows() / 2 * tw],
                    v: vec![T::zero(); XI * plan.v_stride],
                    m: vec![T::zero(); XI * plan.m_stride],
                    out: vec![T::zero(); g.c_out * 4 * plan.chunk * tw],
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
        rows: input, hs, v, ..
    } = work;
    let (pw, tw, nr) = (p.pw, p.tw, p.nr);
    // The image's columns that land inside the padded rows.
    let width = g.w.min(pw.saturating_sub(g.pad_left));
    // Fixed strides, so that every slice's border columns stay where they
    // were zeroed whatever the part's length.
    let (in_rows, h_rows) = (p.part_rows(), p.part_rows() / 2);
    let r0 = rows.start;
    let mut br = rows.start;
    // One image's part of the chunk at a time, in three passes over all its
    // slices: each pass reads what the one before wrote a whole part
    // earlier. Reading values back right after storing them at other
    // offsets (a row copy, then its transform) stalls on store forwarding;
    // that was over half of this function's time.
    while br < rows.end {
        let (b, ty0) = (br / p.th, br % p.th);
        let n = (p.th - ty0).min(rows.end - br);
        let img = &xs[b * g.in_image()..][..g.in_image()];
        // Padded input rows 2·ty0 − pad_top + i, zero outside the image.
        for (c, src) in img.chunks_exact(g.h * g.w).enumerate() {
            for i in 0..2 * n + 2 {
                let dst = &mut input[(c * in_rows + i) * pw + g.pad_left..][..width];
                match (2 * ty0 + i).checked_sub(g.pad_top).filter(|&yy| yy < g.h) {
                    Some(yy) => copy_run(dst, &src[yy * g.w..][..width]),
                    None => dst.fill(T::zero()),
                }
            }
        }
        // d B along every padded row, into `h[c][j][row parity][row / 2][tw]`:
        // the pass down the columns then reads each of its four rows as one
        // contiguous run over all the part's blocks.
        for c in 0..g.c_in {
            for y in 0..2 * n + 2 {
                let row = &input[(c * in_rows + y) * pw..][..pw];
                // Plane j of this slice and row parity: `2 · h_rows · tw` apart.
                let at = (c * 8 + y % 2) * h_rows * tw + y / 2 * tw;
                let gap = 2 * h_rows * tw;
                let (a0, rest) = hs[at..].split_at_mut(gap);
                let (a1, rest) = rest.split_at_mut(gap);
                let (a2, a3) = rest.split_at_mut(gap);
                let mut h = [&mut a0[..tw], &mut a1[..tw], &mut a2[..tw], &mut a3[..tw]];
                let mut tx = 0;
                while tx < tw {
                    tx += match tw - tx {
                        8.. => row_lanes::<T, 8>(row, &mut h, tx),
                        4.. => row_lanes::<T, 4>(row, &mut h, tx),
                        2.. => row_lanes::<T, 2>(row, &mut h, tx),
                        _ => row_lanes::<T, 1>(row, &mut h, tx),
                    };
                }
            }
        }
        // Bᵀ (d B) down the columns, over all the part's blocks at once;
        // block t of the chunk goes to panel t / nr, lane t % nr.
        for c in 0..g.c_in {
            for j in 0..4 {
                let plane = ((c * 4 + j) * 2) * h_rows * tw;
                let even = &hs[plane..][..(n + 1) * tw];
                let odd = &hs[plane + h_rows * tw..][..(n + 1) * tw];
                let (mut t, end) = (0, n * tw);
                let t0 = (br - r0) * tw;
                while t < end {
                    let (panel, lane) = ((t0 + t) / nr, (t0 + t) % nr);
                    let step = (end - t).min(nr - lane);
                    // Lane `t` of this run sits at `at[i] + t` in `v`.
                    let at: [usize; 4] = std::array::from_fn(|i| {
                        ((4 * i + j) * p.v_stride + (panel * g.c_in + c) * nr + lane)
                            .wrapping_sub(t)
                    });
                    let stop = t + step;
                    while t < stop {
                        t += match stop - t {
                            16.. => col_lanes::<T, 16>(even, odd, tw, v, at, t),
                            8.. => col_lanes::<T, 8>(even, odd, tw, v, at, t),
                            4.. => col_lanes::<T, 4>(even, odd, tw, v, at, t),
                            2.. => col_lanes::<T, 2>(even, odd, tw, v, at, t),
                            _ => col_lanes::<T, 1>(even, odd, tw, v, at, t),
                        };
                    }
                }
            }
        }
        br += n;
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
        let b = &work.v[xi * p.v_stride..][..p.panels * g.c_in * nr];
        let m = &mut work.m[xi * p.m_stride..][..g.c_out * ldm];
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
    let tw = p.tw;
    let ldm = p.panels * p.nr;
    let (m, out) = (&work.m, &mut work.out);
    let n = rows.len() * tw;
    // Aᵀ M A for every output slice and block of the chunk at once (long
    // vectors whatever the image width), then, in a second pass, row by
    // row into the output: reading the values back right after storing
    // them, at other offsets, stalled on store forwarding.
    for (o, out) in out.chunks_exact_mut(4 * n).take(g.c_out).enumerate() {
        let ms: [&[T]; XI] = std::array::from_fn(|xi| &m[xi * p.m_stride + o * ldm..][..n]);
        let (z0, z1) = out.split_at_mut(2 * n);
        let mut z = [z0, z1];
        let mut t = 0;
        while t + LANES <= n {
            out_lanes::<T, LANES>(&ms, &mut z, t);
            t += LANES;
        }
        for t in t..n {
            out_lanes::<T, 1>(&ms, &mut z, t);
        }
    }
    let out = &work.out;
    crate::isa::vectorised(
        #[inline(always)]
        || write_rows(g, p, bias, residual, relu, rows, n, out, ys),
    );
}

/// The second pass of [`output_body`]: the output rows of each block row
/// (`out`, `[o][row parity][n][2]`, rows `2·tw` long) copied to the output,
/// then bias, residual and ReLU over each image's part, its rows contiguous.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write_rows<T: GemmScalar>(
    g: &ConvGeometry,
    p: &Plan,
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    relu: bool,
    rows: std::ops::Range<usize>,
    n: usize,
    out: &[T],
    ys: &mut [T],
) {
    let (oh, ow, tw, r0) = (p.oh, p.ow, p.tw, rows.start);
    for (o, out) in out.chunks_exact(4 * n).take(g.c_out).enumerate() {
        let bo = bias.map(|b| b[o]);
        let mut br = rows.start;
        while br < rows.end {
            let (b, ty0) = (br / p.th, br % p.th);
            let parts = (p.th - ty0).min(rows.end - br);
            let (y0, y1) = (2 * ty0, (2 * (ty0 + parts)).min(oh));
            let slice = (b * g.c_out + o) * oh * ow;
            let d = &mut ys[slice + y0 * ow..slice + y1 * ow];
            for (y, row) in (y0..y1).zip(d.chunks_exact_mut(ow)) {
                let t = br - r0 + (y / 2 - ty0);
                row.copy_from_slice(&out[(y % 2) * 2 * n + 2 * t * tw..][..ow]);
            }
            let r = residual.map(|r| &r[slice + y0 * ow..slice + y1 * ow]);
            finish_row(d, bo, r, relu);
            br += parts;
        }
    }
}

/// Blocks per kernel-gradient product (its depth): long enough to hide
/// the register tiles' loads and stores of C, short enough that a tile's A
/// panel (12 KB of f32) and a B panel (32 KB) stay near L1.
const WEIGHT_BLOCKS: usize = 256;

/// Partial kernel gradients, each summed over a fixed set of parts in part
/// order: the result does not depend on the thread count. Each is one
/// task, so this route uses at most this many threads (the 2-core hosts it
/// was measured on); more slots would cost another sum of the 16 planes each.
const WEIGHT_SLOTS: usize = 2;

/// Backward-weights by F(2×2, 3×3). With `M_ξ = U_ξ · V_ξ` (forward),
/// `∂E/∂M = A ∂E/∂Y Aᵀ` per 2×2 output block, `∂E/∂U_ξ[o, c] =
/// Σ_t ∂E/∂M_ξ[o, t] · V_ξ[c, t]` over the blocks `t` (16 products whose
/// depth is the blocks: long), and `∂E/∂g = Gᵀ (∂E/∂U) G` per kernel. 16
/// multiplies per block (4 outputs) and slice pair against the direct 36:
/// 2.25× fewer on even images, 1.7× on 7×7 ones (cropped blocks).
///
/// Both transforms run along the slices of a pixel-major copy of each image
/// (`[pixel][c]`, transposed 8×8 in registers), in long vectors whatever
/// the image's width, and write the register tiles' packed panels
/// directly: `∂E/∂M` as A (`[ξ][row tile][block][mr]`) and `V` as B
/// (`[ξ][panel][block][nr]`), or the other way round when `c_out > c_in`.
/// Transforming along the blocks instead and
/// packing for the GEMM driver took 35 % of the time (256→256 7×7).
/// Requires [`computes`]; lengths checked by the caller; `dw` overwritten.
pub(crate) fn backward_weights<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    dt: DirectTiles<T>,
) {
    debug_assert!(computes(g));
    let (oh, ow) = (g.out_h(), g.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let per_image = th * tw;
    let imgs = WEIGHT_BLOCKS.div_ceil(per_image).clamp(1, g.batch.max(1));
    let parts = g.batch.div_ceil(imgs);
    let slots = WEIGHT_SLOTS.min(parts);
    let (mr, nr) = (dt.mr, dt.nr);
    // The side with more slices goes on the tiles' nr lanes (its transform
    // then writes runs of nr values; runs of mr = 12 cost it 40 % of
    // 64→256 15×15): ∂E/∂Uᵀ = V · ∂E/∂Mᵀ when c_out > c_in.
    let swap = g.c_out > g.c_in;
    let (rows_ch, cols_ch) = if swap {
        (g.c_in, g.c_out)
    } else {
        (g.c_out, g.c_in)
    };
    let (tiles, panels) = (rows_ch.div_ceil(mr), cols_ch.div_ceil(nr));
    // ∂E/∂U (or its transpose): `[ξ][row][ldc]`, the columns past the
    // last (zero) lanes computed and dropped.
    let ldc = panels * nr;
    let nb = imgs * per_image;
    let (a_len, b_len) = (tiles * nb * mr, panels * nb * nr);
    let slot = |s: usize| {
        // Lanes past c_out and c_in are never written, so they stay zero.
        let mut a = vec![T::zero(); XI * a_len];
        let mut b = vec![T::zero(); XI * b_len];
        let mut hwc = vec![T::zero(); (g.h * g.w * g.c_in).max(oh * ow * g.c_out)];
        // The values of a pixel outside the image, for either transform.
        let zero = vec![T::zero(); g.c_in.max(g.c_out)];
        let mut acc = vec![T::zero(); XI * rows_ch * ldc];
        for (i, part) in (s..parts).step_by(slots).enumerate() {
            let b0 = part * imgs;
            let n = imgs.min(g.batch - b0);
            for j in 0..n {
                let xi = &x[(b0 + j) * g.in_image()..][..g.in_image()];
                let gi = &dy[(b0 + j) * g.out_image()..][..g.out_image()];
                let t0 = j * per_image;
                if swap {
                    input_transforms(g, &dt, xi, &zero, &mut hwc, &mut a, (t0, nb, a_len, mr));
                    gradient_transforms(g, &dt, gi, &zero, &mut hwc, &mut b, (t0, nb, b_len, nr));
                } else {
                    input_transforms(g, &dt, xi, &zero, &mut hwc, &mut b, (t0, nb, b_len, nr));
                    gradient_transforms(g, &dt, gi, &zero, &mut hwc, &mut a, (t0, nb, a_len, mr));
                }
            }
            let (k, beta) = (n * per_image, if i == 0 { T::zero() } else { T::one() });
            for xi in 0..XI {
                for panel in 0..panels {
                    let bp = &b[xi * b_len + panel * nb * nr..][..k * nr];
                    for tile in 0..tiles {
                        let rows = mr.min(rows_ch - tile * mr);
                        let ap = &a[xi * a_len + tile * nb * mr..][..k * mr];
                        let c = &mut acc[(xi * rows_ch + tile * mr) * ldc + panel * nr..];
                        assert!(c.len() >= (rows - 1) * ldc + nr);
                        // SAFETY: A's panel holds k·mr values and B's k·nr;
                        // the `rows × nr` tile at `c` (row stride ldc) lies
                        // inside acc (asserted); the tiles exist only where
                        // their ISA runs (the caller got them from
                        // `direct_tiles`).
                        unsafe {
                            (dt.rows(rows))(
                                k,
                                ap.as_ptr(),
                                bp.as_ptr(),
                                c.as_mut_ptr(),
                                ldc,
                                T::one(),
                                beta,
                            )
                        }
                    }
                }
            }
        }
        acc
    };
    let accs: Vec<Vec<T>> =
        crate::parallel::install(|| (0..slots).into_par_iter().map(slot).collect());
    let mut accs = accs.into_iter();
    let Some(mut du) = accs.next() else {
        dw.fill(T::zero());
        return;
    };
    for a in accs {
        crate::elementwise::add_assign(&mut du, &a);
    }
    // ∂E/∂g = Gᵀ ∂E/∂U G, `Gᵀ` mapping `[a, b, c, d]` to
    // `[a + (b + c)/2, (b − c)/2, (b + c)/2 + d]`.
    let half = T::of(0.5);
    let side = |a: T, b: T, c: T, d: T| [a + (b + c) * half, (b - c) * half, (b + c) * half + d];
    let plane = rows_ch * ldc;
    for (oc, k) in dw.chunks_exact_mut(9).enumerate() {
        let (o, c) = (oc / g.c_in, oc % g.c_in);
        let at = if swap { c * ldc + o } else { o * ldc + c };
        let e: [T; XI] = std::array::from_fn(|xi| du[xi * plane + at]);
        // Down the columns (over i), then along the rows (over j).
        let cols: [[T; 3]; 4] = std::array::from_fn(|j| side(e[j], e[4 + j], e[8 + j], e[12 + j]));
        for (r, row) in k.chunks_exact_mut(3).enumerate() {
            row.copy_from_slice(&side(cols[0][r], cols[1][r], cols[2][r], cols[3][r]));
        }
    }
}

/// `dst[p][c] = src[c][p]` for `c < chans`, `p < pixels`: 8×8 blocks in
/// registers where the running kernel has a transposing packer and `chans`
/// is a multiple of 8.
fn pixel_major<T: GemmScalar>(dt: &DirectTiles<T>, src: &[T], chans: usize, dst: &mut [T]) {
    let pixels = src.len() / chans.max(1);
    match dt.pack_bt.filter(|_| chans.is_multiple_of(8)) {
        Some(f) => {
            assert!(dst.len() >= pixels * chans);
            // SAFETY: rows `src + c·pixels` (c < chans) hold `pixels` values;
            // `dst` has room for pixels·chans (asserted); the packer is the
            // running kernel's own.
            unsafe { f(src.as_ptr(), pixels, pixels, chans, dst.as_mut_ptr()) }
        }
        None => {
            for (q, px) in dst[..pixels * chans].chunks_exact_mut(chans).enumerate() {
                px.iter_mut()
                    .enumerate()
                    .for_each(|(c, v)| *v = src[c * pixels + q]);
            }
        }
    }
}

/// Runs `f` compiled for AVX2 where the CPU has it (the lane loops then
/// use 256-bit vectors), plainly elsewhere.
#[inline(always)]
fn avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { run(f) };
    }
    f()
}

/// `V = Bᵀ d B` of every block of one image into packed panels `w` slices
/// wide (`b[ξ·len + (panel·nb + t₀ + t)·w + lane]`, `(t₀, nb, len, w)` = `at`),
/// along its slices: `d` is the 4×4 window of padded input at rows
/// `2ty − pad_top ..`, columns `2tx − pad_left ..` (zero outside the image).
fn input_transforms<T: GemmScalar>(
    g: &ConvGeometry,
    dt: &DirectTiles<T>,
    img: &[T],
    zero: &[T],
    hwc: &mut [T],
    b: &mut [T],
    (t0, nb, len, nr): (usize, usize, usize, usize),
) {
    let ci = g.c_in;
    let (th, tw) = (g.out_h().div_ceil(2), g.out_w().div_ceil(2));
    pixel_major(dt, img, ci, hwc);
    avx2(
        #[inline(always)]
        || {
            let px = |y: usize, x: usize| {
                let (y, x) = (y.wrapping_sub(g.pad_top), x.wrapping_sub(g.pad_left));
                match y < g.h && x < g.w {
                    true => &hwc[(y * g.w + x) * ci..][..ci],
                    false => &zero[..ci],
                }
            };
            for ty in 0..th {
                for tx in 0..tw {
                    let mut d: [&[T]; XI] = [&zero[..ci]; XI];
                    for (k, d) in d.iter_mut().enumerate() {
                        *d = px(2 * ty + k / 4, 2 * tx + k % 4);
                    }
                    let t = t0 + ty * tw + tx;
                    for (panel, c0) in (0..ci).step_by(nr).enumerate() {
                        let live = nr.min(ci - c0);
                        let at = (panel * nb + t) * nr;
                        let mut l = 0;
                        while l < live {
                            l += match live - l {
                                16.. => in_lanes::<T, 16>(&d, c0 + l, b, len, at + l),
                                8.. => in_lanes::<T, 8>(&d, c0 + l, b, len, at + l),
                                4.. => in_lanes::<T, 4>(&d, c0 + l, b, len, at + l),
                                _ => in_lanes::<T, 1>(&d, c0 + l, b, len, at + l),
                            };
                        }
                    }
                }
            }
        },
    )
}

/// `Bᵀ d B` of one block for slices `c..c + L`, plane `ξ` written at
/// `out[ξ·len + at..][..L]`: `d[4i + j]` holds window row `i`, column `j`,
/// per slice.
/// `B` maps `[a, b, c, d]` to `[a − c, b + c, c − b, b − d]`.
#[inline(always)]
fn in_lanes<T: GemmScalar, const L: usize>(
    d: &[&[T]; XI],
    c: usize,
    out: &mut [T],
    len: usize,
    at: usize,
) -> usize {
    let mut v = [[T::zero(); L]; XI];
    for (v, d) in v.iter_mut().zip(d) {
        v.copy_from_slice(&d[c..c + L]);
    }
    let side = |a: T, b: T, c: T, d: T| [a - c, b + c, c - b, b - d];
    let mut res = [[T::zero(); L]; XI];
    for l in 0..L {
        // Along each window row (d B), then down the columns (Bᵀ ·).
        let mut h = [[T::zero(); 4]; 4];
        for (i, h) in h.iter_mut().enumerate() {
            *h = side(
                v[4 * i][l],
                v[4 * i + 1][l],
                v[4 * i + 2][l],
                v[4 * i + 3][l],
            );
        }
        for j in 0..4 {
            let col = side(h[0][j], h[1][j], h[2][j], h[3][j]);
            for i in 0..4 {
                res[4 * i + j][l] = col[i];
            }
        }
    }
    for (xi, r) in res.iter().enumerate() {
        out[xi * len + at..][..L].copy_from_slice(r);
    }
    L
}

/// `∂E/∂M = A ∂E/∂Y Aᵀ` of every 2×2 output block of one image into packed
/// panels `w` slices wide (`a[ξ·len + (tile·nb + t₀ + t)·w + lane]`,
/// `(t₀, nb, len, w)` = `at`),
/// along its output slices; `A` maps a pair `[p, q]` to
/// `[p, p + q, p − q, −q]`, along each row and then down the two rows.
fn gradient_transforms<T: GemmScalar>(
    g: &ConvGeometry,
    dt: &DirectTiles<T>,
    img: &[T],
    zero: &[T],
    hwc: &mut [T],
    a: &mut [T],
    (t0, nb, len, mr): (usize, usize, usize, usize),
) {
    let co = g.c_out;
    let (oh, ow) = (g.out_h(), g.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    pixel_major(dt, img, co, hwc);
    avx2(
        #[inline(always)]
        || {
            let px = |y: usize, x: usize| match y < oh && x < ow {
                true => &hwc[(y * ow + x) * co..][..co],
                false => &zero[..co],
            };
            for ty in 0..th {
                for tx in 0..tw {
                    let (y, x) = (2 * ty, 2 * tx);
                    let q = [px(y, x), px(y, x + 1), px(y + 1, x), px(y + 1, x + 1)];
                    let t = t0 + ty * tw + tx;
                    for (tile, o0) in (0..co).step_by(mr).enumerate() {
                        let live = mr.min(co - o0);
                        let at = (tile * nb + t) * mr;
                        let mut l = 0;
                        while l < live {
                            l += match live - l {
                                16.. => grad_lanes::<T, 16>(q, o0 + l, a, len, at + l),
                                8.. => grad_lanes::<T, 8>(q, o0 + l, a, len, at + l),
                                4.. => grad_lanes::<T, 4>(q, o0 + l, a, len, at + l),
                                _ => grad_lanes::<T, 1>(q, o0 + l, a, len, at + l),
                            };
                        }
                    }
                }
            }
        },
    )
}

/// `A ∂E/∂Y Aᵀ` of one block for output slices `c..c + L`, plane `ξ`
/// written at `out[ξ·len + at..][..L]`: `px` holds its four values (top
/// left, top right, bottom left, bottom right) per slice.
#[inline(always)]
fn grad_lanes<T: GemmScalar, const L: usize>(
    px: [&[T]; 4],
    c: usize,
    out: &mut [T],
    len: usize,
    at: usize,
) -> usize {
    let mut v = [[T::zero(); L]; 4];
    for (v, p) in v.iter_mut().zip(px) {
        v.copy_from_slice(&p[c..c + L]);
    }
    let mut res = [[T::zero(); L]; XI];
    for l in 0..L {
        let (a, b, c, d) = (v[0][l], v[1][l], v[2][l], v[3][l]);
        let h0 = [a, a + b, a - b, T::zero() - b];
        let h1 = [c, c + d, c - d, T::zero() - d];
        for j in 0..4 {
            res[j][l] = h0[j];
            res[4 + j][l] = h0[j] + h1[j];
            res[8 + j][l] = h0[j] - h1[j];
            res[12 + j][l] = T::zero() - h1[j];
        }
    }
    for (xi, r) in res.iter().enumerate() {
        out[xi * len + at..][..L].copy_from_slice(r);
    }
    L
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

    /// A 3×3 stride-1 layer with padding `(top, bottom, left, right)`.
    fn geometry(
        batch: usize,
        c_in: usize,
        (h, w): (usize, usize),
        c_out: usize,
        pads: (usize, usize, usize, usize),
    ) -> ConvGeometry {
        ConvGeometry {
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
        }
    }

    /// F(2×2, 3×3) itself, whatever `choose` would pick: odd sizes (cropped
    /// blocks), one-pixel and one-slice layers, uneven padding, short row
    /// tiles (c_out not a multiple of 6), chunks that end inside a panel or
    /// inside an image,
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
                    // Chunks of 3 block rows: an image spread over several.
                    (1, 64, 20, 20, 64, (1, 1, 1, 1)),
                ];
                for (batch, c_in, h, w, c_out, pads) in shapes {
                    let g = geometry(batch, c_in, (h, w), c_out, pads);
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

    /// The kernel gradient by F(2×2, 3×3) against its definition,
    /// `∂E/∂K[o, c, i, j] = Σ ∂E/∂Y[n, o, u, v] · x[n, c, u + i − pt, v + j − pl]`:
    /// odd sizes (cropped blocks), uneven padding, one slice, `c_out` not a
    /// multiple of 8 (the scalar pixel-major copy), a short last part
    /// (37 images of 16 blocks in parts of 16), one part, and a layer the
    /// public entry sends here (with its bias gradient); f64 to 1e-10 and
    /// f32 to 1e-3 relative to the sum of magnitudes.
    #[test]
    fn backward_weights_match_the_definition() {
        fn check<T: GemmScalar + Into<f64>>(tol: f64, of: impl Fn(f64) -> T) {
            let shapes = [
                (2, 3, 5, 5, 4, (1, 1, 1, 1)),
                (37, 8, 7, 7, 16, (1, 1, 1, 1)),
                (3, 1, 9, 6, 13, (0, 2, 2, 0)),
                (1, 5, 2, 11, 7, (1, 1, 1, 1)),
                (4, 16, 15, 15, 24, (1, 1, 1, 1)),
                (2, 2, 33, 31, 3, (2, 1, 0, 1)),
                // More input than output slices (the other orientation).
                (3, 20, 8, 8, 6, (1, 1, 1, 1)),
                (2, 13, 7, 7, 13, (1, 1, 1, 1)),
                // Wide enough for the public entry to take this route.
                (3, 64, 7, 9, 128, (1, 1, 1, 1)),
            ];
            for (batch, c_in, h, w, c_out, pads) in shapes {
                let g = geometry(batch, c_in, (h, w), c_out, pads);
                let (x, dy) = (
                    data(batch * g.in_image(), 5),
                    data(batch * g.out_image(), 6),
                );
                let (oh, ow) = (g.out_h(), g.out_w());
                let (mut want, mut mag) = (vec![0.0; g.weight_len()], vec![0.0; g.weight_len()]);
                for n in 0..batch {
                    for o in 0..c_out {
                        for c in 0..c_in {
                            for (t, (i, j)) in
                                (0..3).flat_map(|i| (0..3).map(move |j| (i, j))).enumerate()
                            {
                                for u in 0..oh {
                                    for v in 0..ow {
                                        let (iy, ix) = (
                                            (u + i).checked_sub(g.pad_top),
                                            (v + j).checked_sub(g.pad_left),
                                        );
                                        if let (Some(iy), Some(ix)) = (iy, ix) {
                                            if iy < h && ix < w {
                                                let p = dy[((n * c_out + o) * oh + u) * ow + v]
                                                    * x[((n * c_in + c) * h + iy) * w + ix];
                                                want[(o * c_in + c) * 9 + t] += p;
                                                mag[(o * c_in + c) * 9 + t] += p.abs();
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                let v = |d: &[f64]| d.iter().map(|&v| of(v)).collect::<Vec<T>>();
                let compare = |got: &[T]| {
                    for ((&a, &e), &m) in got.iter().zip(&want).zip(&mag) {
                        let a: f64 = a.into();
                        assert!((a - e).abs() <= tol * (1.0 + m), "{g:?}: {a} vs {e}");
                    }
                };
                let mut got = vec![T::nan(); g.weight_len()];
                if super::super::choose::winograd_weights(&g) {
                    let mut db = vec![T::nan(); c_out];
                    crate::conv::conv2d_backward_weights(
                        &g,
                        &v(&x),
                        &v(&dy),
                        &mut got,
                        Some(&mut db),
                    );
                    for (o, &have) in db.iter().enumerate() {
                        let want: f64 = (0..batch)
                            .flat_map(|n| &dy[(n * c_out + o) * oh * ow..][..oh * ow])
                            .sum();
                        assert!((have.into() - want).abs() < tol * 1e3, "{g:?} bias {o}");
                    }
                } else {
                    for dt in direct_tile_sets::<T>() {
                        backward_weights(&g, &v(&x), &v(&dy), &mut got, dt);
                        compare(&got);
                    }
                    continue;
                }
                compare(&got);
            }
        }
        check::<f64>(1e-10, |x| x);
        check::<f32>(1e-3, |x| x as f32);
    }
}

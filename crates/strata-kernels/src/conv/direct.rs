//! The direct forward convolution (`ConvAlgo::Direct`): the register tiles
//! read the zero-padded image where it lies, one kernel tap after another,
//! so only the kernel is packed and no column matrix exists at all — which
//! pays where output rows do not tile the GEMM panels evenly. Strided layers
//! run on the same stride-1 tiles through [`PhaseLayout`], the image split
//! into its stride phases; the strided backward-data and the direct
//! backward-weights store their images the same way.

use super::{task_size, ConvGeometry};
use crate::elementwise::finish_row;
use crate::gemm::{copy_run, DirectTiles, GemmScalar};
use rayon::prelude::*;

/// Rows of each row tile when [`sweep_taps`] covers `rows` output rows with
/// tiles of at most `mr`: as many tiles as `mr`-row ones would take, as even
/// as possible (16 rows on 12-row tiles as 8 + 8, 32 as 11 + 11 + 10). A
/// 4-row tail tile has only 8 accumulators, too few to hide the FMA
/// latency: 16→16 32×32 forward measured 2–6 % faster with 8 + 8 than with
/// 12 + 4 (best of 100, four alternated rounds, 2026-12-08).
pub(super) fn tile_rows(rows: usize, mr: usize) -> usize {
    rows.div_ceil(rows.div_ceil(mr).max(1)).max(1)
}

/// Input values [`sweep_taps`] reads: the last tile of the last slice reaches
/// value `(depth − 1)·ldb + max tap + qp − 1`.
pub(super) fn sweep_reads(depth: usize, ldb: usize, max_tap: usize, qp: usize) -> usize {
    (depth - 1) * ldb + max_tap + qp
}

/// The column tiles of a direct sweep: where each reads the input and
/// writes the output, how far apart its B vectors lie, and the output's row
/// stride (between output slices).
pub(super) struct Sweep {
    /// `(input offset, output offset)` of every column tile, in order.
    tiles: Vec<(usize, usize)>,
    /// Distance between a tile's B vectors ([`crate::gemm::TapKernel`]).
    bstep: usize,
    /// Distance between output slices.
    ldc: usize,
    /// Whether B's vectors are `bstep` apart rather than one run.
    pub(super) split: bool,
}

impl Sweep {
    /// Output rows in the padded width: columns `0..q` in tiles of `nr`,
    /// output slices `qp` apart (`q` rounded up to whole tiles; the columns
    /// past each output row's end are computed and discarded).
    pub(super) fn padded<T>(dt: DirectTiles<T>, q: usize) -> (Self, usize) {
        let qp = q.div_ceil(dt.nr) * dt.nr;
        let tiles = (0..q).step_by(dt.nr).map(|c| (c, c)).collect();
        let sweep = Self {
            tiles,
            bstep: dt.lanes,
            ldc: qp,
            split: false,
        };
        (sweep, qp)
    }

    /// Output rows as stored (`oh` rows of `ow`, slices `oh·ow` apart), read
    /// from input rows `pw` apart: when `ow` is a whole number of tiles, or
    /// one vector of a two-vector tile and `oh` is even (each tile then
    /// covers two output rows, its B vectors a row apart). Nothing is
    /// computed past a row's end and the output needs no copy, where the
    /// padded sweep of a 32×32 image computes 34 columns per row (6 % more)
    /// and of 16×16 18 (12 %).
    pub(super) fn stored<T>(dt: DirectTiles<T>, oh: usize, ow: usize, pw: usize) -> Option<Self> {
        let ldc = oh * ow;
        if ow.is_multiple_of(dt.nr) {
            let tiles = (0..oh)
                .flat_map(|y| {
                    (0..ow)
                        .step_by(dt.nr)
                        .map(move |c| (y * pw + c, y * ow + c))
                })
                .collect();
            Some(Self {
                tiles,
                bstep: dt.lanes,
                ldc,
                split: false,
            })
        } else if ow == dt.lanes
            && dt.nr == 2 * dt.lanes
            && oh.is_multiple_of(2)
            && !dt.taps_split.is_empty()
        {
            let tiles = (0..oh).step_by(2).map(|y| (y * pw, y * ow)).collect();
            Some(Self {
                tiles,
                bstep: pw,
                ldc,
                split: true,
            })
        } else {
            None
        }
    }
}

/// Every register tile of a direct convolution of one image: output rows
/// `0..rows` in row tiles of [`tile_rows`]`(rows, mr)` = `th` (A packed
/// `[tile][tap][depth][mr]`, tile `k` holding rows `k·th..`, zero rows past
/// each tile's) by the column tiles of `sweep`, into `out` (row tile `k` at
/// `k·th·ldc`). Column `p` of a tile reading from `x0`, of tap `t`
/// and input slice `d`, reads `x[x0 + p + taps[t] + d·ldb]`, where column
/// `p` lies in the tile's vector `v = p / lanes` at `v·bstep + p mod lanes`
/// (`bstep = lanes`: one run).
#[allow(clippy::too_many_arguments)]
pub(super) fn sweep_taps<T: GemmScalar>(
    dt: DirectTiles<T>,
    taps: &[usize],
    depth: usize,
    ldb: usize,
    a: &[T],
    x: &[T],
    out: &mut [T],
    rows: usize,
    sweep: &Sweep,
    ahead: [Ahead; 2],
) {
    let (mr, nr, ldc) = (dt.mr, dt.nr, sweep.ldc);
    let th = tile_rows(rows, mr);
    let kernels = if sweep.split { dt.taps_split } else { dt.taps };
    let tile_len = taps.len() * depth * mr;
    // `ahead` (the next image's input and residual) is prefetched into L2 a
    // few lines per tile call, spread over the sweep, so that the next
    // image's copy into its padded layout does not wait on memory: a
    // ResNet-20 16→16 layer whose input was not in cache ran 20 % slower
    // than one whose input was, and about half of that is recovered.
    let calls = sweep.tiles.len() * rows.div_ceil(th);
    let lines: usize = ahead.iter().map(|a| a.1.div_ceil(64)).sum();
    let per_call = lines.div_ceil(calls.max(1));
    let mut next = ahead
        .into_iter()
        .flat_map(|(p, len)| (0..len.div_ceil(64)).map(move |l| p.wrapping_add(64 * l)));
    let max_tap = taps.iter().max().copied().unwrap_or(0);
    // The last value a tile's B reads past its start: its last vector.
    let reach = max_tap + (nr / dt.lanes - 1) * sweep.bstep + dt.lanes;
    assert!(depth > 0 && rows > 0 && nr.is_multiple_of(dt.lanes));
    assert!(
        a.len() >= rows.div_ceil(th) * tile_len,
        "direct tiles: kernel"
    );
    for &(x0, o0) in &sweep.tiles {
        assert!(
            x.len() >= x0 + (depth - 1) * ldb + reach,
            "direct tiles: input"
        );
        assert!(
            out.len() >= o0 + (rows - 1) * ldc + nr,
            "direct tiles: output"
        );
        for tile in 0..rows.div_ceil(th) {
            (&mut next)
                .take(per_call)
                .for_each(crate::gemm::prefetch_l2);
            let live = th.min(rows - tile * th);
            // SAFETY (bounds asserted above): the tile's A holds
            // taps.len()·depth·mr values; every read `x0 + taps[t] + d·ldb +
            // v·bstep + (0..lanes)` is at most `x0 + (depth − 1)·ldb + reach − 1`,
            // inside `x`; the tile's rows `tile·th..+live` (stride ldc) and
            // columns `o0..o0 + nr` end by `o0 + (rows − 1)·ldc + nr`, inside
            // `out`; the tiles exist only where their ISA runs.
            unsafe {
                (kernels[live - 1])(
                    taps.as_ptr(),
                    taps.len(),
                    depth,
                    ldb,
                    sweep.bstep,
                    a[tile * tile_len..].as_ptr(),
                    x[x0..].as_ptr(),
                    out[tile * th * ldc + o0..].as_mut_ptr(),
                    ldc,
                )
            }
        }
    }
}

/// A byte range to prefetch: start and length (addresses only; a prefetch
/// never faults).
pub(super) type Ahead = (*const u8, usize);

/// How the direct paths store a zero-padded image: split into its
/// `sh·sw` stride phases, sub-image `(a, b)` holding the padded pixels
/// `(sh·r + a, sw·c + b)` as a `ph × pw` (phase rows × phase width) grid.
/// Tap `(i, j)` of output pixel `(u, v)` reads padded pixel
/// `(sh·u + i, sw·v + j)` = phase `(i mod sh, j mod sw)` at
/// `(u + ⌊i/sh⌋, v + ⌊j/sw⌋)`: for every tap, the outputs of a row read
/// consecutive values, so a strided convolution runs on the same register
/// tiles as a stride-1 one. At stride 1 there is one phase, the padded image.
#[derive(Clone, Copy, Debug)]
pub(super) struct PhaseLayout {
    sh: usize,
    sw: usize,
    /// Rows of one phase.
    pub(super) ph: usize,
    /// Width of one phase: the row length of the outputs in padded-width rows.
    pub(super) pw: usize,
    /// Values per slice (all phases).
    pub(super) plane: usize,
}

impl PhaseLayout {
    pub(super) fn new(g: &ConvGeometry) -> Self {
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
    pub(super) fn taps(&self, g: &ConvGeometry) -> Vec<usize> {
        (0..g.kh)
            .flat_map(|i| (0..g.kw).map(move |j| self.tap(i, j)))
            .collect()
    }

    /// Writes one `h × w` slice into its zero-padded phase layout `dst`
    /// (`plane` values); the padding is never written.
    pub(super) fn store<T: Copy>(&self, g: &ConvGeometry, src: &[T], dst: &mut [T]) {
        // Stride 1: one phase, rows `pw` apart (kept apart from the phase
        // arithmetic below, which measured 3 % slower on 32→32 16×16).
        if self.sh == 1 && self.sw == 1 {
            let first = g.pad_top * self.pw + g.pad_left;
            for (row, d) in src.chunks_exact(g.w).zip(dst[first..].chunks_mut(self.pw)) {
                copy_run(&mut d[..g.w], row);
            }
            return;
        }
        let grid = self.ph * self.pw;
        // Where column `c` of a padded row goes, relative to the row's start
        // in phase 0 (no division per row or value: the stores are short, and
        // a division per row cost 25 % of the 16→32 s2 copy).
        let col = |c: usize| (c % self.sw) * grid + c / self.sw;
        let (even, odd) = (col(g.pad_left), col(g.pad_left + 1));
        // Padded row r = yy + pad_top lies in row r / sh of phase r mod sh.
        let (mut r_phase, mut r_row) = (g.pad_top % self.sh, g.pad_top / self.sh);
        for row in src.chunks_exact(g.w) {
            let base = r_phase * self.sw * grid + r_row * self.pw;
            r_phase += 1;
            if r_phase == self.sh {
                r_phase = 0;
                r_row += 1;
            }
            match self.sw {
                1 => copy_run(&mut dst[base + g.pad_left..][..g.w], row),
                // The even and odd columns of the row go to two phases, one
                // pair per step (a loop LLVM vectorises with shuffles). The
                // division per value this replaces took 16→32 32×32 s2
                // forward to 89 GFLOPS; step_by per phase to 160.
                2 => {
                    let (even, odd) = (base + even, base + odd);
                    // Columns 0, 2, 4, … (w − pairs of them) and 1, 3, 5, ….
                    let pairs = g.w / 2;
                    let (de, dodd) = if even < odd {
                        let (lo, hi) = dst.split_at_mut(odd);
                        (&mut lo[even..][..g.w - pairs], &mut hi[..pairs])
                    } else {
                        let (lo, hi) = dst.split_at_mut(even);
                        (&mut hi[..g.w - pairs], &mut lo[odd..][..pairs])
                    };
                    crate::isa::vectorised(
                        #[inline(always)]
                        || {
                            for ((e, o), p) in
                                de.iter_mut().zip(dodd.iter_mut()).zip(row.chunks_exact(2))
                            {
                                *e = p[0];
                                *o = p[1];
                            }
                        },
                    );
                    if g.w % 2 == 1 {
                        de[pairs] = row[g.w - 1];
                    }
                }
                sw => {
                    // Each phase takes every sw-th value of the row.
                    for phase in 0..sw {
                        let first = (phase + sw - g.pad_left % sw) % sw;
                        let vals = row.iter().skip(first).step_by(sw);
                        let at = base + col(first + g.pad_left);
                        dst[at..].iter_mut().zip(vals).for_each(|(d, &v)| *d = v);
                    }
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
pub(super) fn direct_forward<T: GemmScalar>(
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
    let mr = dt.mr;
    let lay = PhaseLayout::new(g);
    let (pw, plane) = (lay.pw, lay.plane);
    let (oh, ow) = (g.out_h(), g.out_w());
    let ntaps = g.kh * g.kw;
    // Output columns in padded-width rows, rounded up to whole tiles.
    let q = oh * pw;
    let (padded, qp) = Sweep::padded(dt, q);
    // Rows that tile evenly are swept as stored, straight into `y`.
    let stored = Sweep::stored(dt, oh, ow, pw);
    let taps = lay.taps(g);
    // What the tiles read, and at least the c_in whole slices (a strided
    // layout's last phase may end past every read).
    let max_tap = taps.iter().max().copied().unwrap_or(0);
    let xlen = sweep_reads(g.c_in, plane, max_tap, qp).max(g.c_in * plane);
    // A, packed [row tile][tap][c][mr] (zero rows past each tile's).
    let th = tile_rows(g.c_out, mr);
    let row_tiles = g.c_out.div_ceil(th);
    let tile_len = ntaps * g.c_in * mr;
    let mut a = vec![T::zero(); row_tiles * tile_len];
    for o in 0..g.c_out {
        let (tile, r) = (o / th, o % th);
        for c in 0..g.c_in {
            for t in 0..ntaps {
                a[tile * tile_len + (t * g.c_in + c) * mr + r] = w[(o * g.c_in + c) * ntaps + t];
            }
        }
    }
    let image = |(xp, out): (&mut Vec<T>, &mut Vec<T>),
                 xs: &[T],
                 ys: &mut [T],
                 rs: Option<&[T]>,
                 mut st: Option<&mut [(T, T)]>,
                 ahead: [Ahead; 2]| {
        // Borders and the tail are never written: they stay zero across images.
        for (src, dst) in xs.chunks_exact(g.h * g.w).zip(xp.chunks_exact_mut(plane)) {
            lay.store(g, src, dst);
        }
        if let Some(sweep) = &stored {
            sweep_taps(dt, &taps, g.c_in, plane, &a, xp, ys, g.c_out, sweep, ahead);
        } else {
            sweep_taps(
                dt, &taps, g.c_in, plane, &a, xp, out, g.c_out, &padded, ahead,
            );
        }
        // Drop the padded-width columns; bias, residual and ReLU while the
        // rows are in cache, vectorised for the host (the rows are short:
        // per-row dispatch cost more than the arithmetic).
        let out = &out[..];
        crate::isa::vectorised(
            #[inline(always)]
            || {
                for (o, dst) in ys.chunks_exact_mut(oh * ow).enumerate() {
                    let b = bias.map(|b| b[o]);
                    let r = rs.map(|r| &r[o * oh * ow..][..oh * ow]);
                    if stored.is_some() {
                        // The slice is contiguous: one pass over it.
                        finish_row(dst, b, r, relu);
                    } else {
                        for (yy, d) in dst.chunks_exact_mut(ow).enumerate() {
                            d.copy_from_slice(&out[o * qp + yy * pw..][..ow]);
                            finish_row(d, b, r.map(|r| &r[yy * ow..][..ow]), relu);
                        }
                    }
                    // Batch norm's terms while the slice is in cache.
                    if let Some(st) = st.as_deref_mut() {
                        st[o] = crate::batchnorm::slice_stats(dst);
                    }
                }
            },
        );
    };
    let task = task_size(g.batch, 1);
    let run = |t: usize, src: &[T], dst: &mut [T], mut st: Option<&mut [(T, T)]>| {
        // The padded sweep's output (none when rows are swept as stored).
        let out_len = if stored.is_some() { 0 } else { g.c_out * qp };
        let mut buf = (vec![T::zero(); xlen], vec![T::zero(); out_len]);
        let imgs = src
            .chunks_exact(g.in_image())
            .zip(dst.chunks_exact_mut(g.out_image()))
            .enumerate();
        imgs.for_each(|(i, (xs, ys))| {
            let sti = st.as_deref_mut().map(|s| &mut s[i * g.c_out..][..g.c_out]);
            let img = (t * task + i) * g.out_image();
            let rs = residual.map(|r| &r[img..][..g.out_image()]);
            // The next image of the task, if any.
            let (nx, ny) = ((i + 1) * g.in_image(), img + g.out_image());
            let bytes = |s: &[T]| (s.as_ptr().cast::<u8>(), std::mem::size_of_val(s));
            let none = (std::ptr::null(), 0);
            let ahead = match src.get(nx..nx + g.in_image()) {
                Some(nx) => [
                    bytes(nx),
                    residual.map_or(none, |r| bytes(&r[ny..][..g.out_image()])),
                ],
                None => [none; 2],
            };
            image((&mut buf.0, &mut buf.1), xs, ys, rs, sti, ahead)
        });
    };
    crate::parallel::install(|| {
        let tasks = x
            .par_chunks(task * g.in_image())
            .zip(y.par_chunks_mut(task * g.out_image()));
        match stats {
            Some(st) => tasks
                .zip(st.par_chunks_mut(task * g.c_out))
                .enumerate()
                .for_each(|(t, ((src, dst), st))| run(t, src, dst, Some(st))),
            None => tasks
                .enumerate()
                .for_each(|(t, (src, dst))| run(t, src, dst, None)),
        }
    });
}

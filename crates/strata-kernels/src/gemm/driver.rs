//! Goto/BLIS-style blocking around a micro-kernel, and the parallel split.
//!
//! For each `nc`-wide column block, op(B) is packed once over its whole depth
//! (in parallel, `kc`-deep slices) and shared; the block of C is then cut into
//! tasks (row blocks of whole micro-panels × column chunks of whole
//! micro-panels), each of which loops over the `kc` slices, packing its rows of
//! op(A) into a thread-local buffer and running the micro-kernel over its tiles.
//! One hand-off per phase, not per slice, keeps small problems cheap. Tile boundaries never depend on the thread count, and each
//! element of C is accumulated in the same order by exactly one task, so the
//! result is bit-identical whatever the threads and their timing.

use std::cell::RefCell;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::kernel::Kernel;
use super::pack::{pack_a, PackB, MAX_TILE};
use super::{Epilogue, Trans};
use crate::parallel;

/// Below this many multiply-adds a call runs on the calling thread: handing
/// work to the pool costs more than the second core saves.
const SERIAL_MACS: usize = 1 << 20;

/// Packing less of op(B) than this is not worth a parallel hand-off.
const PAR_PACK: usize = 1 << 16;

/// Most elements of packed op(B) held at once (16 MB of f32: within L3; small
/// under test so several column blocks get exercised).
const B_ELEMS: usize = if cfg!(test) { 1 << 14 } else { 1 << 22 };

/// Element types the driver handles: f32 and f64, for which every bit pattern
/// is a valid value (the scratch buffers rely on it).
pub trait Scalar: strata_tensor::Element {}
impl Scalar for f32 {}
impl Scalar for f64 {}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// A reusable, cache-line-aligned scratch buffer.
#[derive(Default)]
struct Scratch(Vec<Line>);

impl Scratch {
    fn get<T: Scalar>(&mut self, len: usize) -> &mut [T] {
        let lines = (len * size_of::<T>()).div_ceil(64);
        if self.0.len() < lines {
            self.0.resize(lines, Line([0; 64]));
        }
        // SAFETY: the buffer holds at least `len·size_of::<T>()` initialised bytes,
        // aligned to 64 ≥ align_of::<T>(), exclusively borrowed through `self`;
        // `T` is f32 or f64, for which any bytes are a valid value.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<T>(), len) }
    }
}

thread_local! {
    static A_BUF: RefCell<Scratch> = RefCell::new(Scratch::default());
    static B_BUF: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` on `len` elements of this thread's buffer `key` (a fresh one if
/// it is already in use, e.g. a GEMM called from an epilogue-free nested call).
fn with_scratch<T: Scalar, R>(
    key: &'static LocalKey<RefCell<Scratch>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(s.get(len)),
        Err(_) => f(Scratch::default().get(len)),
    })
}

/// C's base pointer, shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct CPtr<T>(*mut T);
// SAFETY: tasks only write through it to disjoint tiles of C (see `run`).
unsafe impl<T: Send> Send for CPtr<T> {}
// SAFETY: as above; no two tasks access the same element.
unsafe impl<T: Send> Sync for CPtr<T> {}

/// Cuts `0..len` into at most `parts` runs of whole `unit`s, as even as possible.
fn ranges(len: usize, unit: usize, parts: usize) -> Vec<(usize, usize)> {
    let per = len.div_ceil(unit).div_ceil(parts.max(1)) * unit;
    (0..len)
        .step_by(per.max(1))
        .map(|s| (s, per.min(len - s)))
        .collect()
}

/// Row blocks and column chunks of an `m × nc` block of C, for `threads`.
fn split<T>(
    kern: &Kernel<T>,
    m: usize,
    nc: usize,
    threads: usize,
) -> Vec<((usize, usize), (usize, usize))> {
    let (mp, np) = (m.div_ceil(kern.mr), nc.div_ceil(kern.nr));
    let mut rb = m.div_ceil(kern.mc);
    let mut cb = 1;
    if threads > 1 {
        if rb >= threads {
            // Equal counts per thread: 7 blocks on 2 threads would idle one for 1/7.
            rb = rb.div_ceil(threads) * threads;
        } else {
            // Few rows (an m = 128 layer): also split along n.
            cb = threads.div_ceil(rb).min(np);
            if rb * cb < threads {
                rb = threads.div_ceil(cb);
            }
        }
    }
    let rows = ranges(m, kern.mr, rb.min(mp));
    let cols = ranges(nc, kern.nr, cb);
    rows.iter()
        .flat_map(|&r| cols.iter().map(move |&c| (r, c)))
        .collect()
}

/// Widest column block of op(B) packed at once for depth `k` (a multiple of
/// `nr`, so block `jc` of a whole packed op(B) starts at `k·jc`).
fn nc_max<T>(kern: &Kernel<T>, k: usize) -> usize {
    kern.nc
        .min((B_ELEMS / k.max(1)).max(kern.nr) / kern.nr * kern.nr)
}

/// Depth blocks of even size (784 = 4 × 196, not 3 × 256 + 16): every block
/// pays one load and store of the C tiles, so a short last block costs
/// nearly as much as a full one.
fn depth_blocks<T>(kern: &Kernel<T>, k: usize) -> Vec<(usize, usize)> {
    let kc_even = k
        .div_ceil(k.div_ceil(kern.kc).max(1))
        .next_multiple_of(4)
        .min(kern.kc);
    (0..k)
        .step_by(kc_even.max(1))
        .map(|p| (p, kc_even.min(k - p)))
        .collect()
}

/// Packs columns `jc..jc+nc` of op(B), all `k` deep, into `dst`
/// (`k·⌈nc/nr⌉·nr` values): depth block `pc` at `dst[pc·np·nr..][..kc·np·nr]`.
fn pack_block<T: Scalar>(
    kern: &Kernel<T>,
    b: &dyn PackB<T>,
    k: usize,
    (jc, nc): (usize, usize),
    threads: usize,
    dst: &mut [T],
) {
    let nr = kern.nr;
    let np = nc.div_ceil(nr);
    let per = if threads > 1 {
        np.div_ceil(threads)
    } else {
        np
    };
    let mut jobs = Vec::new();
    let mut rest = &mut dst[..k * np * nr];
    for (pc, kc) in depth_blocks(kern, k) {
        let (mut blk, tail) = rest.split_at_mut(kc * np * nr);
        rest = tail;
        for p0 in (0..np).step_by(per) {
            let (d, t) = blk.split_at_mut(kc * nr * per.min(np - p0));
            blk = t;
            jobs.push((pc, kc, p0..np.min(p0 + per), d));
        }
    }
    let pack = |(pc, kc, ps, d): (usize, usize, std::ops::Range<usize>, &mut [T])| {
        b.pack((pc, kc), (jc, nc), nr, ps, d, kern.pack_bt)
    };
    if threads > 1 && k * nc >= PAR_PACK {
        jobs.into_par_iter().for_each(pack);
    } else {
        jobs.into_iter().for_each(pack);
    }
}

/// Length of the whole of a `k × n` op(B) packed for `kern` ([`prepack`]).
pub fn prepacked_len<T>(kern: &Kernel<T>, k: usize, n: usize) -> usize {
    k * n.div_ceil(kern.nr) * kern.nr
}

/// Packs the whole of the `k × n` op(B) from `b` for `kern`, exactly as
/// [`run`] packs it block by block (block `jc` at `dst[k·jc..]`), so that
/// `run` can take it as it is for any number of products.
pub fn prepack<T: Scalar>(
    kern: &Kernel<T>,
    (k, n): (usize, usize),
    b: &dyn PackB<T>,
    dst: &mut [T],
) {
    assert_eq!(dst.len(), prepacked_len(kern, k, n), "prepack: length");
    let nc_max = nc_max(kern, k);
    let threads = parallel::num_threads();
    parallel::install(|| {
        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            pack_block(kern, b, k, (jc, nc), threads, &mut dst[k * jc..]);
        }
    })
}

/// Where [`run`] gets op(B): packed on the fly from a source, or already
/// packed whole by [`prepack`] for the same kernel and shape.
#[derive(Clone, Copy)]
pub enum BOperand<'a, T> {
    /// Packed block by block during the product.
    Source(&'a dyn PackB<T>),
    /// Packed beforehand.
    Packed(&'a [T]),
}

/// `C ← α·op(A)·op(B) + β·C` with `kern`, then `epi` on the result.
/// Requires `m, n, k ≥ 1`, slices checked by the caller, and `kern`'s ISA.
#[allow(clippy::too_many_arguments)]
pub fn run<T: Scalar>(
    kern: &Kernel<T>,
    ta: Trans,
    (m, n, k): (usize, usize, usize),
    alpha: T,
    (a, lda): (&[T], usize),
    b: BOperand<'_, T>,
    beta: T,
    (c, ldc): (&mut [T], usize),
    epi: &Epilogue<'_, T>,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let threads = if m * n * k < SERIAL_MACS {
        1
    } else {
        parallel::num_threads()
    };
    // All of op(B)'s depth is packed at once for an `nc`-wide block, so each
    // task runs its whole k loop without waiting for the other threads.
    let nc_max = nc_max(kern, k);
    let cp = CPtr(c.as_mut_ptr());
    let body = || {
        let kblocks = depth_blocks(kern, k);
        let bcap = match b {
            BOperand::Source(_) => k * n.min(nc_max).div_ceil(nr) * nr,
            BOperand::Packed(p) => {
                assert_eq!(
                    p.len(),
                    prepacked_len(kern, k, n),
                    "gemm: prepacked B length"
                );
                0
            }
        };
        with_scratch(&B_BUF, bcap, |bbuf: &mut [T]| {
            for jc in (0..n).step_by(nc_max) {
                let nc = nc_max.min(n - jc);
                let np = nc.div_ceil(nr);
                let bpack: &[T] = match b {
                    BOperand::Source(src) => {
                        pack_block(kern, src, k, (jc, nc), threads, bbuf);
                        &bbuf[..k * np * nr]
                    }
                    BOperand::Packed(p) => &p[k * jc..][..k * np * nr],
                };
                let task = |&(rows, cols): &((usize, usize), (usize, usize))| {
                    let acap = rows.1.div_ceil(mr) * mr * kern.kc.min(k);
                    with_scratch(&A_BUF, acap, |apack: &mut [T]| {
                        for &(pc, kc) in &kblocks {
                            let apack = &mut apack[..rows.1.div_ceil(mr) * mr * kc];
                            pack_a(ta, a, lda, rows, (pc, kc), mr, apack);
                            let beta = if pc == 0 { beta } else { T::one() };
                            let epi = (pc + kc == k).then_some(epi);
                            let bp = &bpack[pc * np * nr..][..kc * np * nr];
                            // SAFETY: the task's tiles lie inside C (checked by the
                            // caller) and no other task writes them; the caller
                            // guarantees the kernel's ISA.
                            unsafe {
                                block(
                                    kern,
                                    apack,
                                    bp,
                                    kc,
                                    rows,
                                    (jc, cols.0, cols.1),
                                    cp,
                                    ldc,
                                    alpha,
                                    beta,
                                    epi,
                                )
                            }
                        }
                    })
                };
                let tasks = split(kern, m, nc, threads);
                if threads > 1 {
                    tasks.par_iter().for_each(task);
                } else {
                    tasks.iter().for_each(task);
                }
            }
        })
    };
    if threads > 1 {
        parallel::install(body)
    } else {
        body()
    }
}

/// Runs the micro-kernel over the tiles of rows `i0..i0+mc` and columns
/// `jc+j0..jc+j0+ncols` of C (`j0` a multiple of `nr`), applying `epi` if given.
///
/// # Safety
/// That region lies inside C (base `c`, row stride `ldc`) and nobody else
/// accesses it meanwhile; the kernel's ISA is available.
#[allow(clippy::too_many_arguments)]
unsafe fn block<T: Scalar>(
    kern: &Kernel<T>,
    apack: &[T],
    bpack: &[T],
    kc: usize,
    (i0, mc): (usize, usize),
    (jc, j0, ncols): (usize, usize, usize),
    c: CPtr<T>,
    ldc: usize,
    alpha: T,
    beta: T,
    epi: Option<&Epilogue<'_, T>>,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let mut tmp = [T::zero(); MAX_TILE * MAX_TILE];
    let (jp_end, ips) = ((j0 + ncols).div_ceil(nr), mc.div_ceil(mr));
    // The next B micro-panel is fetched a slice per tile while this one is in
    // use, so it is in cache when its first tile starts (it was packed by
    // either thread and would otherwise come from L3 at that tile's pace).
    let lines = (kc * nr * size_of::<T>()).div_ceil(64);
    let per_tile = lines.div_ceil(ips);
    for jp in j0 / nr..jp_end {
        let bp = &bpack[jp * kc * nr..][..kc * nr];
        let next = (jp + 1 < jp_end).then(|| bpack[(jp + 1) * kc * nr..][..kc * nr].as_ptr());
        let cols = nr.min(j0 + ncols - jp * nr);
        let col = jc + jp * nr;
        for ip in 0..ips {
            if let Some(nb) = next {
                let first = ip * per_tile;
                for l in first..lines.min(first + per_tile) {
                    prefetch_l2(nb.cast::<u8>().wrapping_add(64 * l));
                }
            }
            let ap = &apack[ip * kc * mr..][..kc * mr];
            let rows = mr.min(mc - ip * mr);
            let row = i0 + ip * mr;
            // SAFETY: (row, col) and the `rows × cols` tile from it lie inside C;
            // the packed panels hold `kc·mr` and `kc·nr` values; full tiles are
            // written in place, edge tiles via `tmp` (an `mr × nr` buffer, stride nr).
            unsafe {
                let cij = c.0.add(row * ldc + col);
                if rows == mr && cols == nr {
                    (kern.ukr)(kc, ap.as_ptr(), bp.as_ptr(), cij, ldc, alpha, beta);
                } else if cols == nr && rows <= kern.edge.len() {
                    (kern.edge[rows - 1])(kc, ap.as_ptr(), bp.as_ptr(), cij, ldc, alpha, beta);
                } else {
                    (kern.ukr)(
                        kc,
                        ap.as_ptr(),
                        bp.as_ptr(),
                        tmp.as_mut_ptr(),
                        nr,
                        alpha,
                        T::zero(),
                    );
                    for i in 0..rows {
                        let dst = std::slice::from_raw_parts_mut(cij.add(i * ldc), cols);
                        merge(dst, &tmp[i * nr..][..cols], beta);
                    }
                }
                if let Some(e) = epi {
                    for i in 0..rows {
                        e.apply_row(
                            std::slice::from_raw_parts_mut(cij.add(i * ldc), cols),
                            row + i,
                            col,
                        );
                    }
                }
            }
        }
    }
}

/// Hints that the line at `p` will be read soon (into L2 and, by the time
/// of use, L1). A hint only: it never faults, whatever the address.
#[inline(always)]
pub(crate) fn prefetch_l2(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no architectural effect.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `dst ← src + β·dst`, β = 0 overwriting (so NaN in `dst` does not leak).
fn merge<T: Scalar>(dst: &mut [T], src: &[T], beta: T) {
    if beta == T::zero() {
        dst.copy_from_slice(src);
    } else {
        dst.iter_mut()
            .zip(src)
            .for_each(|(d, &s)| *d = s + beta * *d);
    }
}

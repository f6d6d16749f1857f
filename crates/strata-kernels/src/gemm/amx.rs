//! f32 matrix products on AMX tiles in bfloat16, for
//! [`MatmulPrecision::Bf16`](super::MatmulPrecision).
//!
//! Both operands are rounded to bfloat16 (8 significant bits, round to
//! nearest even) while they are packed; the tiles multiply them exactly and
//! accumulate in f32 (`TDPBF16PS`), so the only rounding beyond an f32
//! product is that of the inputs, a relative error of at most 2⁻⁹ per input.
//! This is PyTorch's `fp32_precision = "bf16"` (oneDNN's `fpmath_mode`) on
//! the same hardware, opt-in for the same reason: by Intel's figures a core's
//! tiles do 1024 flops per cycle, 16 times its two 512-bit FMA ports.
//!
//! Layout. A tile holds 16 rows of 64 bytes. op(A) is packed as 16-row
//! tiles of 32 bf16 depth values, op(B) as 16-column tiles of 16 depth
//! *pairs* (each row `[k₀ of col 0, k₁ of col 0, k₀ of col 1, …]`, the VNNI
//! layout `TDPBF16PS` reads); the tiles of one row (column) strip follow each
//! other in depth order, 1 KiB apart. Padding (rows, columns, depth past the
//! matrix) is zero, so it adds nothing. The micro-kernel keeps a 32×32 block
//! of C in the four accumulator tiles over a chunk of the depth (saving and
//! reloading them between chunks) and applies α, β and the epilogue while it
//! stores the finished block.

use super::{Epilogue, Trans};
use crate::parallel;
use rayon::prelude::*;
use std::cell::RefCell;

/// Rows of a tile.
const TM: usize = 16;
/// Depth of an A tile (bf16 values per tile row).
const TK: usize = 32;
/// f32 columns of a C tile.
const TN: usize = 16;
/// bf16 values in one packed tile (1 KiB).
const TILE: usize = TM * TK;
/// 32-row blocks per task (their accumulators: 4 KiB each, kept in L1).
const GROUP: usize = 4;
/// Depth tiles per chunk (the column strip's chunk: 2 KiB per tile).
const KC: usize = 8;
/// Products smaller than this run on one thread (as for the f32 kernels).
const SERIAL_MACS: usize = 1 << 20;

/// Whether this host and OS run AMX-BF16 tiles for this process: the CPU
/// reports AMX-TILE and AMX-BF16 and Linux grants the tile state (decided
/// once; the grant is process-wide).
pub fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU.
    let (max, leaf7) = unsafe { (__cpuid_count(0, 0).eax, __cpuid_count(7, 0)) };
    if max < 7 || (leaf7.edx >> 22) & 1 == 0 || (leaf7.edx >> 24) & 1 == 0 || !simd() {
        // (The packers need AVX-512 BW and BF16, which every AMX CPU has.)
        return false;
    }
    // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): Linux ≥ 5.16
    // enables the 8 KiB tile state only for processes that ask.
    const SYS_ARCH_PRCTL: isize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: a plain system call; it changes only this process's permission
    // to use the tile registers.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// `x` rounded to the nearest bfloat16, ties to even; NaN stays NaN
/// (quiet), and subnormals become zero of their sign (as `VCVTNE2PS2BF16`
/// does, and as the tiles would read them anyway).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x40;
    }
    if x.is_subnormal() {
        return ((b >> 16) & 0x8000) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of a bfloat16.
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Depth blocks of `k`.
fn kblocks(k: usize) -> usize {
    k.div_ceil(TK)
}

/// Length of op(A) packed: `m` rounded up to an even number of tiles.
fn a_len(m: usize, k: usize) -> usize {
    m.div_ceil(2 * TM) * 2 * kblocks(k) * TILE
}

/// Length of op(B) packed: `n` rounded up to an even number of tiles.
pub fn b_len(k: usize, n: usize) -> usize {
    n.div_ceil(2 * TN) * 2 * kblocks(k) * TILE
}

/// Packs op(A) (`m × k`, stored row-major with `lda`) into `dst`
/// (`a_len(m, k)` long), one strip of 16 rows per chunk, in parallel.
fn pack_a(ta: Trans, a: &[f32], lda: usize, (m, k): (usize, usize), dst: &mut [u16]) {
    let strip = |(t, d): (usize, &mut [u16])| {
        let i0 = t * TM;
        let rows = m.saturating_sub(i0).min(TM);
        for (blk, tile) in d.chunks_mut(TILE).enumerate() {
            let p0 = blk * TK;
            let depth = TK.min(k - p0);
            if rows == 0 {
                tile.fill(0); // a padding strip (a tile pair's second half)
                continue;
            }
            match ta {
                // Tile row r: depths p0.. of op(A) row i0 + r, stored in place.
                Trans::No => {
                    let x = Block {
                        x: a,
                        ld: lda,
                        r0: i0,
                        c0: p0,
                    };
                    tile_rows(x, (rows, depth), tile)
                }
                // op(A) row i0 + r is stored column i0 + r: depth pairs
                // interleave two stored rows, then transpose.
                Trans::Yes => {
                    let x = Block {
                        x: a,
                        ld: lda,
                        r0: p0,
                        c0: i0,
                    };
                    tile_cols(x, (depth, rows), tile)
                }
            }
        }
    };
    if m * k < SERIAL_MACS / 16 {
        dst.chunks_mut(kblocks(k) * TILE)
            .enumerate()
            .for_each(strip);
    } else {
        dst.par_chunks_mut(kblocks(k) * TILE)
            .enumerate()
            .for_each(strip);
    }
}

/// Packs op(B) (`k × n`) into `dst` (`b_len(k, n)` long), one strip of 16
/// columns per chunk, in the pair-interleaved layout.
fn pack_b(tb: Trans, b: &[f32], ldb: usize, (k, n): (usize, usize), dst: &mut [u16]) {
    let strip = |(t, d): (usize, &mut [u16])| b_strip(tb, b, ldb, (k, n), t, d);
    if k * n < SERIAL_MACS / 16 {
        dst.chunks_mut(kblocks(k) * TILE)
            .enumerate()
            .for_each(strip);
    } else {
        dst.par_chunks_mut(kblocks(k) * TILE)
            .enumerate()
            .for_each(strip);
    }
}

/// Strip `t` of op(B) (columns `16t..16t + 16`, `kblocks(k)` tiles) into `d`.
fn b_strip(tb: Trans, b: &[f32], ldb: usize, (k, n): (usize, usize), t: usize, d: &mut [u16]) {
    let j0 = t * TN;
    let cols = n.saturating_sub(j0).min(TN);
    for (blk, tile) in d.chunks_mut(TILE).enumerate() {
        let p0 = blk * TK;
        let depth = TK.min(k - p0);
        if cols == 0 {
            tile.fill(0);
            continue;
        }
        match tb {
            // Tile row q: stored rows p0 + 2q and p0 + 2q + 1, interleaved.
            Trans::No => {
                let x = Block {
                    x: b,
                    ld: ldb,
                    r0: p0,
                    c0: j0,
                };
                tile_pairs(x, (depth, cols), tile)
            }
            // Column j0 + c of op(B) is stored row j0 + c: its depth
            // pairs, transposed into the tile's rows.
            Trans::Yes => {
                let x = Block {
                    x: b,
                    ld: ldb,
                    r0: j0,
                    c0: p0,
                };
                tile_rows_transposed(x, (cols, depth), tile)
            }
        }
    }
}

/// A block of a stored row-major matrix: rows from `r0`, columns from `c0`.
#[derive(Clone, Copy)]
struct Block<'a> {
    x: &'a [f32],
    ld: usize,
    r0: usize,
    c0: usize,
}

impl Block<'_> {
    /// `len` values of row `r` of the block.
    fn row(&self, r: usize, len: usize) -> &[f32] {
        &self.x[(self.r0 + r) * self.ld + self.c0..][..len]
    }
}

#[cfg(test)]
thread_local! {
    /// Tests of the scalar packers on a host that has the AVX-512 ones.
    static SCALAR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the AVX-512 packers run (every AMX host has their features).
fn simd() -> bool {
    #[cfg(test)]
    if SCALAR.get() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512bf16");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A tile of `rows ≤ 16` stored rows of `depth ≤ 32` values each (tile row
/// r = stored row r), zero elsewhere.
fn tile_rows(x: Block<'_>, (rows, depth): (usize, usize), tile: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the features were checked by `simd`.
        return unsafe { simd::tile_rows(x, (rows, depth), tile) };
    }
    tile.fill(0);
    for r in 0..rows {
        let out = &mut tile[r * TK..][..depth];
        out.iter_mut()
            .zip(x.row(r, depth))
            .for_each(|(o, &v)| *o = to_bf16(v));
    }
}

/// A B tile from `depth ≤ 32` stored rows of `cols ≤ 16` values: tile row q
/// interleaves stored rows 2q and 2q + 1 (`[x(2q, 0), x(2q + 1, 0), …]`).
fn tile_pairs(x: Block<'_>, (depth, cols): (usize, usize), tile: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the features were checked by `simd`.
        return unsafe { simd::tile_pairs(x, (depth, cols), tile) };
    }
    tile.fill(0);
    for p in 0..depth {
        let out = &mut tile[(p / 2) * TK + (p & 1)..];
        for (c, &v) in x.row(p, cols).iter().enumerate() {
            out[2 * c] = to_bf16(v);
        }
    }
}

/// A B tile from `cols ≤ 16` stored rows of `depth ≤ 32` values (stored row
/// c is column c): tile row q holds `[x(0, 2q), x(0, 2q + 1), x(1, 2q), …]`.
fn tile_rows_transposed(x: Block<'_>, (cols, depth): (usize, usize), tile: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the features were checked by `simd`.
        return unsafe { simd::tile_rows_transposed(x, (cols, depth), tile) };
    }
    tile.fill(0);
    for c in 0..cols {
        for (p, &v) in x.row(c, depth).iter().enumerate() {
            tile[(p / 2) * TK + 2 * c + (p & 1)] = to_bf16(v);
        }
    }
}

/// An A tile from `depth ≤ 32` stored rows of `rows ≤ 16` values (stored
/// row p is depth p): tile row r holds `[x(0, r), x(1, r), …]`.
fn tile_cols(x: Block<'_>, (depth, rows): (usize, usize), tile: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the features were checked by `simd`.
        return unsafe { simd::tile_cols(x, (depth, rows), tile) };
    }
    tile.fill(0);
    for p in 0..depth {
        for (r, &v) in x.row(p, rows).iter().enumerate() {
            tile[r * TK + p] = to_bf16(v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    //! The packers in AVX-512 registers: `VCVTNE2PS2BF16` rounds 32 values
    //! at once (to nearest even, as [`super::to_bf16`]; NaN stays NaN), and
    //! 16×16 transpositions of 32-bit pairs build the tiles that need them.
    use super::{Block, TILE, TK, TN};
    use std::arch::x86_64::*;

    /// Lanes `from..from + 16` of a length-`n` run as a load mask.
    #[inline(always)]
    fn mask(n: usize, from: usize) -> u16 {
        match n.saturating_sub(from) {
            0 => 0,
            l if l >= 16 => u16::MAX,
            l => (1u16 << l) - 1,
        }
    }

    /// Up to 16 values of `src` (zero past its end).
    #[inline(always)]
    unsafe fn load16(src: &[f32], from: usize) -> __m512 {
        // SAFETY: masked-off lanes are not read, so only `src[from..]` is.
        unsafe { _mm512_maskz_loadu_ps(mask(src.len(), from), src.as_ptr().wrapping_add(from)) }
    }

    /// Up to 32 values of `src` as 32 bf16 in order (16 depth pairs).
    #[inline(always)]
    unsafe fn run32(src: &[f32]) -> __m512i {
        // SAFETY: register operations and masked loads of `src`.
        unsafe {
            let (lo, hi) = (load16(src, 0), load16(src, 16));
            std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
        }
    }

    /// Up to 16 values of `a` and of `b` as 16 pairs `(a[c], b[c])`.
    #[inline(always)]
    unsafe fn interleave(a: &[f32], b: &[f32]) -> __m512i {
        // SAFETY: register operations and masked loads of `a` and `b`.
        unsafe {
            let ab = _mm512_cvtne2ps_pbh(load16(b, 0), load16(a, 0));
            let ab = std::mem::transmute::<__m512bh, __m512i>(ab);
            // bf16 lanes 0..16 hold a, 16..32 hold b: take a[0], b[0], a[1], …
            let idx = _mm512_set_epi16(
                31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
            );
            _mm512_permutexvar_epi16(idx, ab)
        }
    }

    /// Stores 16 rows of 64 bytes into `tile`.
    #[inline(always)]
    unsafe fn store(rows: &[__m512i; 16], tile: &mut [u16]) {
        assert!(tile.len() >= TILE);
        let out = tile.as_mut_ptr() as *mut __m512i;
        for (q, v) in rows.iter().enumerate() {
            // SAFETY: `tile` holds 16 rows of 64 bytes (asserted).
            unsafe { _mm512_storeu_si512(out.add(q), *v) };
        }
    }

    /// `r[i][j] ↔ r[j][i]` over 32-bit lanes.
    #[inline(always)]
    unsafe fn transpose(r: &mut [__m512i; 16]) {
        // SAFETY (whole body): register operations only.
        unsafe {
            // Within 128-bit lanes: 32-bit, then 64-bit interleaves leave
            // u[4g + j] holding, in lane L, element 4L + j of rows 4g..4g+4.
            let mut t = [_mm512_setzero_si512(); 16];
            for i in 0..8 {
                t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
            }
            let mut u = [_mm512_setzero_si512(); 16];
            for g in 0..4 {
                let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
                u[4 * g] = _mm512_unpacklo_epi64(t0, t2);
                u[4 * g + 1] = _mm512_unpackhi_epi64(t0, t2);
                u[4 * g + 2] = _mm512_unpacklo_epi64(t1, t3);
                u[4 * g + 3] = _mm512_unpackhi_epi64(t1, t3);
            }
            // Across lanes: row 4L + j gathers lane L of u[j], u[4 + j],
            // u[8 + j], u[12 + j].
            for j in 0..4 {
                let x0 = _mm512_shuffle_i32x4::<0x88>(u[j], u[4 + j]);
                let x1 = _mm512_shuffle_i32x4::<0xdd>(u[j], u[4 + j]);
                let y0 = _mm512_shuffle_i32x4::<0x88>(u[8 + j], u[12 + j]);
                let y1 = _mm512_shuffle_i32x4::<0xdd>(u[8 + j], u[12 + j]);
                r[j] = _mm512_shuffle_i32x4::<0x88>(x0, y0);
                r[4 + j] = _mm512_shuffle_i32x4::<0x88>(x1, y1);
                r[8 + j] = _mm512_shuffle_i32x4::<0xdd>(x0, y0);
                r[12 + j] = _mm512_shuffle_i32x4::<0xdd>(x1, y1);
            }
        }
    }

    /// See [`super::tile_rows`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn tile_rows(x: Block<'_>, (rows, depth): (usize, usize), tile: &mut [u16]) {
        let mut v = [_mm512_setzero_si512(); 16];
        for (r, v) in v[..rows].iter_mut().enumerate() {
            // SAFETY: AVX-512 and BF16 are enabled.
            *v = unsafe { run32(x.row(r, depth)) };
        }
        // SAFETY: as above.
        unsafe { store(&v, tile) }
    }

    /// See [`super::tile_pairs`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn tile_pairs(x: Block<'_>, (depth, cols): (usize, usize), tile: &mut [u16]) {
        // SAFETY: AVX-512 and BF16 are enabled.
        unsafe { store(&pair_rows(x, (depth, cols)), tile) }
    }

    /// Row q: stored rows 2q and 2q + 1 of `x` interleaved (zero past `depth`).
    #[inline(always)]
    unsafe fn pair_rows(x: Block<'_>, (depth, cols): (usize, usize)) -> [__m512i; 16] {
        // SAFETY: the callers enable AVX-512 and BF16.
        let mut v = [unsafe { _mm512_setzero_si512() }; 16];
        for (q, v) in v[..depth.div_ceil(2)].iter_mut().enumerate() {
            let a = x.row(2 * q, cols);
            let b = if 2 * q + 1 < depth {
                x.row(2 * q + 1, cols)
            } else {
                &[]
            };
            // SAFETY: as above.
            *v = unsafe { interleave(a, b) };
        }
        v
    }

    /// See [`super::tile_rows_transposed`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn tile_rows_transposed(
        x: Block<'_>,
        (cols, depth): (usize, usize),
        tile: &mut [u16],
    ) {
        let mut v = [_mm512_setzero_si512(); 16];
        for (c, v) in v[..cols].iter_mut().enumerate() {
            // SAFETY: AVX-512 and BF16 are enabled.
            *v = unsafe { run32(x.row(c, depth)) };
        }
        // SAFETY: as above.
        unsafe {
            transpose(&mut v);
            store(&v, tile)
        }
    }

    /// See [`super::tile_cols`]: pairs of stored rows, transposed.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn tile_cols(x: Block<'_>, (depth, rows): (usize, usize), tile: &mut [u16]) {
        // SAFETY: AVX-512 and BF16 are enabled.
        unsafe {
            let mut v = pair_rows(x, (depth, rows));
            transpose(&mut v);
            store(&v, tile)
        }
    }

    const _: () = assert!(TK == 2 * TN && TILE == 16 * 32);
}

/// op(B) packed once (a layer's weights in inference).
#[derive(Clone, Debug)]
pub struct PackedBf16 {
    data: Vec<u16>,
}

impl PackedBf16 {
    /// Packs op(B) (`k × n` after `tb`).
    pub fn new(tb: Trans, (k, n): (usize, usize), b: &[f32], ldb: usize) -> Self {
        let mut data = vec![0; b_len(k, n)];
        if k > 0 && n > 0 {
            parallel::install(|| pack_b(tb, b, ldb, (k, n), &mut data));
        }
        PackedBf16 { data }
    }
}

thread_local! {
    /// Packed operands of the calling thread's last product (kept to avoid
    /// an allocation and page faults per call).
    static PACKS: RefCell<(Vec<u16>, Vec<u16>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Where a task writes C (disjoint blocks per task).
#[derive(Clone, Copy)]
struct CPtr(*mut f32);
// SAFETY: tasks write disjoint blocks of C; the caller holds `&mut` to all of it.
unsafe impl Send for CPtr {}
// SAFETY: as above.
unsafe impl Sync for CPtr {}

/// The source of op(B): stored (packed per call) or packed beforehand.
pub enum BSource<'a> {
    /// op(B) stored row-major with `ldb`.
    Stored(Trans, &'a [f32], usize),
    /// Packed by [`PackedBf16::new`] for this `k × n`.
    Packed(&'a PackedBf16),
}

/// `C ← epi(α·op(A)·op(B) + β·C)` with both operands rounded to bf16.
/// The caller has checked the slices against the dimensions, that `m`, `n`
/// and `k` are positive, and that [`available`] holds.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    ta: Trans,
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    (a, lda): (&[f32], usize),
    b: BSource<'_>,
    beta: f32,
    (c, ldc): (&mut [f32], usize),
    epi: &Epilogue<'_, f32>,
) {
    assert!(available(), "gemm: AMX-BF16 is not available on this CPU");
    let threads = if m * n * k < SERIAL_MACS {
        1
    } else {
        parallel::num_threads()
    };
    let cp = CPtr(c.as_mut_ptr());
    // Taken out, not borrowed, for the call: a product started on this
    // thread while it waits in the pool (nested parallelism) finds empty
    // buffers and allocates its own.
    let (mut pa, mut pb) = PACKS.with_borrow_mut(std::mem::take);
    {
        let (pa, pb) = (&mut pa, &mut pb);
        pa.resize(a_len(m, k), 0);
        parallel::install(|| {
            pack_a(ta, a, lda, (m, k), pa);
            let kb = kblocks(k);
            let (mp, np) = (m.div_ceil(2 * TM), n.div_ceil(2 * TN));
            // Each task: one 32-column strip over up to GROUP 32-row blocks,
            // enough tasks to keep every thread busy. The depth runs in
            // chunks of KC tiles so that the strip's chunk (2·KC KiB) and the
            // blocks' accumulators (4 KiB each) stay in L1 while the rows'
            // chunks stream from L2: from L2 alone, the four tile loads per
            // four products would need its whole bandwidth.
            let groups = (4 * threads).div_ceil(np).clamp(1, mp);
            let per = mp.div_ceil(groups).min(GROUP);
            let tasks: Vec<(usize, usize)> = (0..np)
                .flat_map(|j| (0..mp).step_by(per).map(move |i| (i, j)))
                .collect();
            // When one task covers all of a strip's rows (a minibatch of at
            // most 32·GROUP), it packs the strip itself, while the stored
            // columns are fresh in cache, instead of a pass over all of B
            // first and a second to read it back.
            let own_strips = per >= mp;
            let bp: &[u16] = match b {
                BSource::Stored(..) if own_strips => &[],
                BSource::Stored(tb, b, ldb) => {
                    pb.resize(b_len(k, n), 0);
                    pack_b(tb, b, ldb, (k, n), pb);
                    pb
                }
                BSource::Packed(p) => {
                    assert_eq!(p.data.len(), b_len(k, n), "gemm: packed bf16 B length");
                    &p.data
                }
            };
            let task = |&(i0, j): &(usize, usize)| {
                let mut accs = ACCS.with_borrow_mut(std::mem::take);
                accs.resize_with(GROUP, || Acc([0.0; 4 * TM * TN]));
                let rows = i0..(i0 + per).min(mp);
                let mut strip = Vec::new();
                let b0: &[u16] = match b {
                    BSource::Stored(tb, b, ldb) if own_strips => {
                        strip = STRIP.with_borrow_mut(std::mem::take);
                        strip.resize(2 * kb * TILE, 0);
                        let (s0, s1) = strip.split_at_mut(kb * TILE);
                        b_strip(tb, b, ldb, (k, n), 2 * j, s0);
                        b_strip(tb, b, ldb, (k, n), 2 * j + 1, s1);
                        &strip
                    }
                    _ => &bp[2 * j * kb * TILE..][..2 * kb * TILE],
                };
                // SAFETY: `available` holds; the tile config is loaded before
                // any tile instruction on this thread.
                unsafe { load_config() };
                for ch in (0..kb).step_by(KC) {
                    let len = KC.min(kb - ch);
                    for (acc, i) in accs.iter_mut().zip(rows.clone()) {
                        let a0 = &pa[2 * i * kb * TILE..][..2 * kb * TILE];
                        // SAFETY: the strips hold `kb` tiles each, so tiles
                        // ch..ch + len of both exist.
                        unsafe {
                            block(
                                [a0[ch * TILE..].as_ptr(), a0[(kb + ch) * TILE..].as_ptr()],
                                [b0[ch * TILE..].as_ptr(), b0[(kb + ch) * TILE..].as_ptr()],
                                len,
                                &mut acc.0,
                                ch > 0,
                            )
                        };
                    }
                }
                for (acc, i) in accs.iter().zip(rows) {
                    store(&acc.0, (i, j), (m, n), alpha, beta, cp, ldc, epi);
                }
                ACCS.with_borrow_mut(|a| *a = accs);
                if !strip.is_empty() {
                    STRIP.with_borrow_mut(|s| *s = strip);
                }
                // SAFETY: no tile instruction follows on this thread until
                // the next `load_config`.
                unsafe { release() };
            };
            if threads > 1 {
                tasks.par_iter().for_each(task);
            } else {
                tasks.iter().for_each(task);
            }
        })
    }
    PACKS.with_borrow_mut(|p| *p = (pa, pb));
}

thread_local! {
    /// A task's accumulators, kept per thread (zeroing 16 KiB per task
    /// showed in the profile); every block overwrites its own before use.
    static ACCS: RefCell<Vec<Acc>> = const { RefCell::new(Vec::new()) };
    /// A task's own packed column strips (when it packs them itself).
    static STRIP: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Four accumulator tiles as stored, 64-byte aligned.
#[repr(C, align(64))]
struct Acc([f32; 4 * TM * TN]);

/// Writes the 32×32 block `(i, j)` of accumulators (tiles `[i0j0, i0j1,
/// i1j0, i1j1]`, rows of 16) to C: `C ← epi(α·acc + β·C)`, inside `m × n`.
#[allow(clippy::too_many_arguments)]
fn store(
    acc: &[f32; 4 * TM * TN],
    ij: (usize, usize),
    mn: (usize, usize),
    alpha: f32,
    beta: f32,
    c: CPtr,
    ldc: usize,
    epi: &Epilogue<'_, f32>,
) {
    // Compiled for the host's widest vectors: C is 4 bytes written per 2
    // bytes of operands read at small depths, so this pass counts.
    crate::isa::vectorised(
        #[inline(always)]
        || store_rows(acc, ij, mn, alpha, beta, c, ldc, epi),
    )
}

/// [`store`]'s body.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn store_rows(
    acc: &[f32; 4 * TM * TN],
    (i, j): (usize, usize),
    (m, n): (usize, usize),
    alpha: f32,
    beta: f32,
    c: CPtr,
    ldc: usize,
    epi: &Epilogue<'_, f32>,
) {
    let noop = epi.is_noop();
    for ti in 0..2 {
        for r in 0..TM {
            let row = (2 * i + ti) * TM + r;
            if row >= m {
                return;
            }
            for tj in 0..2 {
                let col = (2 * j + tj) * TN;
                if col >= n {
                    break;
                }
                let w = TN.min(n - col);
                let src = &acc[(2 * ti + tj) * TM * TN + r * TN..][..w];
                // SAFETY: (row, col..col + w) lies inside C's m × n (checked
                // by the caller), and only this task writes this block.
                let dst = unsafe { std::slice::from_raw_parts_mut(c.0.add(row * ldc + col), w) };
                if beta == 0.0 && alpha == 1.0 && w == TN {
                    // A fixed length: one vector move, not a call to memmove.
                    dst[..TN].copy_from_slice(&src[..TN]);
                } else if beta == 0.0 && alpha == 1.0 {
                    dst.copy_from_slice(src);
                } else if beta == 0.0 {
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = alpha * s);
                } else {
                    dst.iter_mut()
                        .zip(src)
                        .for_each(|(d, &s)| *d = alpha * s + beta * *d);
                }
                if !noop {
                    epi.apply_row(dst, row, col);
                }
            }
        }
    }
}

/// `ldtilecfg` operand: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

static CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Configures this thread's tiles.
///
/// # Safety
/// [`available`] must hold.
#[cfg(target_arch = "x86_64")]
unsafe fn load_config() {
    // SAFETY: the caller guarantees AMX; CONFIG is a valid palette-1 config.
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
    }
}

/// Returns this thread's tiles to the init state (so the OS need not save
/// them on a context switch).
///
/// # Safety
/// [`available`] must hold.
#[cfg(target_arch = "x86_64")]
unsafe fn release() {
    // SAFETY: the caller guarantees AMX.
    unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
}

/// `acc ← [A₀B₀, A₀B₁, A₁B₀, A₁B₁]` (plus `acc` when `add`) over `kb`
/// depth tiles: `a` are two 16-row strips and `b` two 16-column strips of
/// `kb` packed tiles, 1 KiB apart.
///
/// # Safety
/// The tile config is loaded; each strip holds `kb ≥ 1` tiles.
#[cfg(target_arch = "x86_64")]
unsafe fn block(
    [a0, a1]: [*const u16; 2],
    [b0, b1]: [*const u16; 2],
    kb: usize,
    acc: &mut [f32; 4 * TM * TN],
    add: bool,
) {
    // SAFETY: the caller guarantees the config and the strips' lengths;
    // `acc` is 4 KiB (four 16 × 64-byte tiles). tmm0–7 are used by nothing
    // else on this thread, so they keep their values between the blocks.
    unsafe {
        if add {
            std::arch::asm!(
                "tileloadd tmm0, [{c} + {s}*1]",
                "tileloadd tmm1, [{c} + {s}*1 + 1024]",
                "tileloadd tmm2, [{c} + {s}*1 + 2048]",
                "tileloadd tmm3, [{c} + {s}*1 + 3072]",
                c = in(reg) acc.as_ptr(),
                s = in(reg) 64usize,
                options(nostack, readonly)
            );
        } else {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        std::arch::asm!(
            "2:",
            "tileloadd tmm4, [{a0} + {s}*1]",
            "tileloadd tmm6, [{b0} + {s}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b1} + {s}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a1} + {s}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 1024",
            "add {a1}, 1024",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "dec {kb}",
            "jnz 2b",
            "tilestored [{c} + {s}*1], tmm0",
            "tilestored [{c} + {s}*1 + 1024], tmm1",
            "tilestored [{c} + {s}*1 + 2048], tmm2",
            "tilestored [{c} + {s}*1 + 3072], tmm3",
            a0 = inout(reg) a0 => _,
            a1 = inout(reg) a1 => _,
            b0 = inout(reg) b0 => _,
            b1 = inout(reg) b1 => _,
            kb = inout(reg) kb => _,
            c = in(reg) acc.as_mut_ptr(),
            s = in(reg) 64usize,
            options(nostack)
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn load_config() {}
#[cfg(not(target_arch = "x86_64"))]
unsafe fn release() {}
#[cfg(not(target_arch = "x86_64"))]
unsafe fn block(
    _: [*const u16; 2],
    _: [*const u16; 2],
    _: usize,
    _: &mut [f32; 4 * TM * TN],
    _: bool,
) {
    unreachable!("AMX exists only on x86-64")
}

#[cfg(test)]
pub(super) mod reference {
    //! The tiles' arithmetic in plain Rust over the packed layout, so the
    //! packing is checked on hosts without AMX too.
    use super::*;

    /// op(X) element `(i, p)` of a row-major X with leading dimension `ld`.
    pub fn at(t: Trans, x: &[f32], ld: usize, i: usize, p: usize) -> f32 {
        match t {
            Trans::No => x[i * ld + p],
            Trans::Yes => x[p * ld + i],
        }
    }

    /// `op(A)·op(B)` from the packed operands as `TDPBF16PS` computes it
    /// (exact bf16 products summed in f64 here; the tiles sum in f32).
    pub fn packed_product(
        ta: Trans,
        tb: Trans,
        (m, n, k): (usize, usize, usize),
        (a, lda): (&[f32], usize),
        (b, ldb): (&[f32], usize),
    ) -> Vec<f64> {
        let (mut pa, mut pb) = (vec![0; a_len(m, k)], vec![0; b_len(k, n)]);
        pack_a(ta, a, lda, (m, k), &mut pa);
        pack_b(tb, b, ldb, (k, n), &mut pb);
        let kb = kblocks(k);
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let (ti, r) = (i / TM, i % TM);
                let (tj, cc) = (j / TN, j % TN);
                let mut s = 0.0f64;
                for blk in 0..kb {
                    let at = &pa[(ti * kb + blk) * TILE + r * TK..][..TK];
                    let bt = &pb[(tj * kb + blk) * TILE..][..TILE];
                    for q in 0..TK / 2 {
                        for e in 0..2 {
                            s += from_bf16(at[2 * q + e]) as f64
                                * from_bf16(bt[q * TK + 2 * cc + e]) as f64;
                        }
                    }
                }
                out[i * n + j] = s;
            }
        }
        out
    }

    /// `op(A)·op(B)` of the inputs rounded to bf16, from the stored operands.
    pub fn rounded_product(
        ta: Trans,
        tb: Trans,
        (m, n, k): (usize, usize, usize),
        (a, lda): (&[f32], usize),
        (b, ldb): (&[f32], usize),
    ) -> Vec<f64> {
        let r = |x: f32| from_bf16(to_bf16(x)) as f64;
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| r(at(ta, a, lda, i, p)) * r(at(tb, b, ldb, p, j)))
                    .sum();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{at, packed_product, rounded_product};
    use super::*;
    use crate::gemm::{gemm_bf16, Bias};
    use proptest::prelude::*;

    /// Deterministic values in [-1, 1).
    fn fill(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Stored sizes of op(X) = `r × c` with `pad` extra columns per row.
    fn stored(t: Trans, r: usize, c: usize, pad: usize) -> (usize, usize) {
        match t {
            Trans::No => (r * (c + pad), c + pad),
            Trans::Yes => (c * (r + pad), r + pad),
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(to_bf16(-2.0), 0xc000);
        assert_eq!(to_bf16(0.0), 0);
        assert_eq!(to_bf16(-0.0), 0x8000);
        // Exactly halfway: to the even neighbour, both directions.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        // Just above halfway rounds up.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(to_bf16(f32::NEG_INFINITY), 0xff80);
        // Past bf16's largest finite value: infinity, as IEEE rounding says.
        assert_eq!(to_bf16(f32::MAX), 0x7f80);
        // Subnormals flush to zero of their sign; the smallest normal stays.
        assert_eq!(to_bf16(1e-40), 0);
        assert_eq!(to_bf16(-1e-40), 0x8000);
        assert_eq!(to_bf16(f32::MIN_POSITIVE), 0x0080);
        for bits in [0x7f80_0001u32, 0x7fc0_0000, 0xffff_ffff, 0x7f80_ffff] {
            assert!(
                from_bf16(to_bf16(f32::from_bits(bits))).is_nan(),
                "{bits:#x}"
            );
        }
    }

    proptest! {
        /// Rounding is to the nearer neighbour (error ≤ half an ulp of bf16).
        #[test]
        fn bf16_error_is_half_an_ulp(x in -1e30f32..1e30) {
            let r = from_bf16(to_bf16(x));
            let ulp = 2f32.powi(x.abs().log2().floor() as i32 - 7);
            prop_assert!((r - x).abs() <= ulp / 2.0 + f32::MIN_POSITIVE, "{x} → {r}");
        }

        /// The packed layout, read as `TDPBF16PS` reads it, gives the
        /// product of the rounded operands (every shape, transposition and
        /// padding; runs on any host).
        #[test]
        fn packing_matches_the_rounded_product(
            m in 1usize..40, n in 1usize..40, k in 1usize..70,
            ta in prop::bool::ANY, tb in prop::bool::ANY,
            pa in 0usize..3, pb in 0usize..3, seed in 0u64..1000,
        ) {
            let ta = if ta { Trans::Yes } else { Trans::No };
            let tb = if tb { Trans::Yes } else { Trans::No };
            let (la, lda) = stored(ta, m, k, pa);
            let (lb, ldb) = stored(tb, k, n, pb);
            let (a, b) = (fill(la, seed), fill(lb, seed + 1));
            let want = rounded_product(ta, tb, (m, n, k), (&a, lda), (&b, ldb));
            // The host's packers, then the scalar ones.
            for scalar in [false, true] {
                SCALAR.set(scalar);
                let got = packed_product(ta, tb, (m, n, k), (&a, lda), (&b, ldb));
                SCALAR.set(false);
                for (g, w) in got.iter().zip(&want) {
                    prop_assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "{g} vs {w} (scalar {scalar})");
                }
            }
        }
    }

    /// The tiles against the rounded product: only f32 summation differs,
    /// so the error is bounded by `k·2⁻²⁴·Σ|aᵢbᵢ|` (plus the store's α, β).
    fn check_tiles(
        (ta, tb): (Trans, Trans),
        (m, n, k): (usize, usize, usize),
        (alpha, beta): (f32, f32),
        relu: bool,
        seed: u64,
    ) {
        let (la, lda) = stored(ta, m, k, 3);
        let (lb, ldb) = stored(tb, k, n, 1);
        let (a, b) = (fill(la, seed), fill(lb, seed + 7));
        let ldc = n + 2;
        let c0 = fill(m * ldc, seed + 9);
        let bias = fill(n, seed + 11);
        let mut c = c0.clone();
        let epi = Epilogue {
            bias: Bias::PerCol(&bias),
            relu,
        };
        gemm_bf16(
            ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut c, ldc, epi,
        );
        let want = rounded_product(ta, tb, (m, n, k), (&a, lda), (&b, ldb));
        let r = |x: f32| from_bf16(to_bf16(x)).abs() as f64;
        for i in 0..m {
            for j in 0..n {
                let abs: f64 = (0..k)
                    .map(|p| r(at(ta, &a, lda, i, p)) * r(at(tb, &b, ldb, p, j)))
                    .sum();
                let mut w = alpha as f64 * want[i * n + j] + bias[j] as f64;
                if beta != 0.0 {
                    w += beta as f64 * c0[i * ldc + j] as f64;
                }
                if relu {
                    w = w.max(0.0);
                }
                let tol = (k as f64 + 4.0) * 6e-8 * (alpha.abs() as f64 * abs + 2.0);
                let g = c[i * ldc + j] as f64;
                assert!((g - w).abs() <= tol, "({i},{j}) of {m}×{n}×{k}: {g} vs {w}");
            }
            // Padding columns of C are untouched.
            assert_eq!(&c[i * ldc + n..][..2], &c0[i * ldc + n..][..2]);
        }
    }

    #[test]
    fn tiles_match_the_rounded_product() {
        if !available() {
            eprintln!("skipped: no AMX-BF16 on this host (the packing is checked above)");
            return;
        }
        let trans = [Trans::No, Trans::Yes];
        for (s, &(m, n, k)) in [
            (1, 1, 1),
            (16, 16, 32),
            (17, 33, 31),
            (32, 32, 64),
            (50, 20, 100),
            (128, 10, 1024),
            // Past the serial threshold: split over threads.
            (128, 200, 784),
            (300, 64, 96),
        ]
        .iter()
        .enumerate()
        {
            for ta in trans {
                for tb in trans {
                    let relu = s % 2 == 0;
                    check_tiles((ta, tb), (m, n, k), (1.0, 0.0), relu, s as u64);
                    check_tiles((ta, tb), (m, n, k), (-0.5, 2.0), !relu, s as u64 + 1);
                }
            }
        }
    }

    #[test]
    fn tiles_keep_non_finite_values() {
        if !available() {
            eprintln!("skipped: no AMX-BF16 on this host");
            return;
        }
        let (m, n, k) = (20, 20, 40);
        let mut a = fill(m * k, 1);
        let b = fill(k * n, 2);
        a[3 * k + 5] = f32::NAN;
        a[7 * k] = f32::INFINITY;
        let mut c = vec![f32::NAN; m * n];
        let none = Epilogue {
            bias: Bias::None,
            relu: false,
        };
        gemm_bf16(
            Trans::No,
            Trans::No,
            m,
            n,
            k,
            1.0,
            &a,
            k,
            &b,
            n,
            0.0,
            &mut c,
            n,
            none,
        );
        for i in 0..m {
            for j in 0..n {
                let v = c[i * n + j];
                match i {
                    3 => assert!(v.is_nan(), "row 3 has NaN in A"),
                    7 => assert!(v.is_infinite() || v.is_nan(), "row 7 has ∞ in A: {v}"),
                    // β = 0 overwrites the NaN that C held.
                    _ => assert!(v.is_finite(), "({i},{j}) = {v}"),
                }
            }
        }
    }

    #[test]
    fn packed_weights_match_packing_per_call() {
        if !available() {
            eprintln!("skipped: no AMX-BF16 on this host");
            return;
        }
        let (m, n, k) = (40, 48, 70);
        let (a, w) = (fill(m * k, 3), fill(n * k, 4));
        let none = Epilogue {
            bias: Bias::None,
            relu: false,
        };
        let mut c1 = vec![0.0; m * n];
        gemm_bf16(
            Trans::No,
            Trans::Yes,
            m,
            n,
            k,
            1.0,
            &a,
            k,
            &w,
            k,
            0.0,
            &mut c1,
            n,
            none,
        );
        let p = PackedBf16::new(Trans::Yes, (k, n), &w, k);
        let mut c2 = vec![0.0; m * n];
        gemm(
            Trans::No,
            (m, n, k),
            1.0,
            (&a, k),
            BSource::Packed(&p),
            0.0,
            (&mut c2, n),
            &none,
        );
        assert_eq!(c1, c2);
    }
}

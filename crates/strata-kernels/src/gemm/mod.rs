//! General matrix multiply: `C ← α·op(A)·op(B) + β·C`, row-major.
//!
//! Own kernels (AVX-512 or AVX2 + FMA micro-kernels over packed, cache-blocked
//! panels, parallel over the kernels' rayon pool) run where the CPU has the
//! instructions; `matrixmultiply` is the portable fallback. [`choose`] is the
//! one place that decides which implementation runs; [`gemm_with`] forces one
//! (for benchmarks and tests). [`gemm_bias_act`] fuses a bias add and ReLU into
//! the store of each output tile.

mod amx;
mod driver;
mod kernel;
mod pack;
mod simd;
#[cfg(test)]
mod tests;

pub use amx::{from_bf16, to_bf16};
pub(crate) use driver::prefetch_l2;
use driver::Scalar;
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) use kernel::emulated;
use kernel::Kernel;
pub(crate) use kernel::TapKernel;
use pack::MatrixB;
pub use pack::{copy_run, PackB, PackTransposed};

/// How f32 matrix products ([`gemm`], [`gemm_bias_act`], [`gemm_prepacked`])
/// are computed; f64 products are never reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MatmulPrecision {
    /// In f32 throughout (the default).
    #[default]
    F32,
    /// Operands rounded to bfloat16 (round to nearest even, relative error
    /// ≤ 2⁻⁹ each), exact products, f32 sums, on AMX tiles where the host
    /// has them ([`bf16_available`]); elsewhere in f32. PyTorch's
    /// `fp32_precision = "bf16"`.
    Bf16,
}

impl MatmulPrecision {
    /// The name used in specs and on the command line (`"f32"`, `"bf16"`).
    pub fn name(self) -> &'static str {
        match self {
            MatmulPrecision::F32 => "f32",
            MatmulPrecision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for MatmulPrecision {
    type Err = String;

    /// Parses [`MatmulPrecision::name`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(MatmulPrecision::F32),
            "bf16" => Ok(MatmulPrecision::Bf16),
            _ => Err(format!("expected \"f32\" or \"bf16\", got {s:?}")),
        }
    }
}

/// The precision in force, process-wide (0 = f32, 1 = bf16).
static PRECISION: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets how f32 matrix products are computed from now on, process-wide (as
/// `torch.set_float32_matmul_precision`). Convolutions are not affected.
pub fn set_matmul_precision(p: MatmulPrecision) {
    let v = match p {
        MatmulPrecision::F32 => 0,
        MatmulPrecision::Bf16 => 1,
    };
    PRECISION.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// The precision set by [`set_matmul_precision`].
pub fn matmul_precision() -> MatmulPrecision {
    match PRECISION.load(std::sync::atomic::Ordering::Relaxed) {
        0 => MatmulPrecision::F32,
        _ => MatmulPrecision::Bf16,
    }
}

/// Whether this host runs bf16 products: the CPU has AMX-TILE and AMX-BF16
/// and the OS grants the tile state to this process.
pub fn bf16_available() -> bool {
    amx::available()
}

/// Whether f32 products are reduced to bf16 now: [`MatmulPrecision::Bf16`]
/// is set and [`bf16_available`].
pub fn bf16_in_effect() -> bool {
    matmul_precision() == MatmulPrecision::Bf16 && bf16_available()
}

/// `s` as `&[f32]` when `T` is f32.
fn as_f32<T: 'static>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 (same layout), checked by the type id.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { &*(s as *const [T] as *const [f32]) })
}

/// `s` as `&mut [f32]` when `T` is f32.
fn as_f32_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: T is f32 (same layout), checked by the type id.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { &mut *(s as *mut [T] as *mut [f32]) })
}

/// Runs the product on the bf16 tiles if [`bf16_in_effect`], `T` is f32 and
/// there is something to multiply; returns whether it did.
#[allow(clippy::too_many_arguments)]
fn try_bf16<T: GemmScalar>(
    ta: Trans,
    (m, n, k): (usize, usize, usize),
    alpha: T,
    (a, lda): (&[T], usize),
    b: BSourceT<'_, T>,
    beta: T,
    (c, ldc): (&mut [T], usize),
    epi: &Epilogue<'_, T>,
) -> bool {
    // Packed bf16 weights run on the tiles whatever the precision is now.
    let wanted = match b {
        BSourceT::Stored(..) => bf16_in_effect(),
        BSourceT::Packed(_) => bf16_available(),
    };
    if m == 0 || n == 0 || k == 0 || alpha == T::zero() || !wanted {
        return false;
    }
    let (Some(a32), Some(c32)) = (as_f32(a), as_f32_mut(c)) else {
        return false;
    };
    check("A", ta, m, k, lda, a.len());
    check("C", Trans::No, m, n, ldc, c32.len());
    let bsrc = match b {
        BSourceT::Stored(tb, b, ldb) => {
            check("B", tb, k, n, ldb, b.len());
            amx::BSource::Stored(tb, as_f32(b).expect("T is f32"), ldb)
        }
        BSourceT::Packed(p) => amx::BSource::Packed(p),
    };
    epi.check_bias(m, n);
    // SAFETY: T is f32 (checked above), so Epilogue<T> is Epilogue<f32>.
    let epi32 = unsafe { &*(epi as *const Epilogue<'_, T> as *const Epilogue<'_, f32>) };
    let to32 = |x: T| as_f32(std::slice::from_ref(&x)).expect("T is f32")[0];
    amx::gemm(
        ta,
        (m, n, k),
        to32(alpha),
        (a32, lda),
        bsrc,
        to32(beta),
        (c32, ldc),
        epi32,
    );
    true
}

/// op(B) for [`try_bf16`].
enum BSourceT<'a, T> {
    Stored(Trans, &'a [T], usize),
    Packed(&'a amx::PackedBf16),
}

/// [`gemm_bias_act`] forced onto the bf16 tiles whatever the
/// [`matmul_precision`] (for benchmarks and tests).
///
/// # Panics
/// If a slice is too short, or the tiles are not [`bf16_available`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue<'_, f32>,
) {
    assert!(
        bf16_available(),
        "gemm: AMX-BF16 is not available on this CPU"
    );
    check("A", ta, m, k, lda, a.len());
    check("B", tb, k, n, ldb, b.len());
    check("C", Trans::No, m, n, ldc, c.len());
    if m == 0 || n == 0 || k == 0 || alpha == 0.0 {
        let imp = choose::<f32>(m, n, k);
        return run(
            imp,
            (ta, tb),
            (m, n, k),
            alpha,
            (a, lda),
            (b, ldb),
            beta,
            (c, ldc),
            &epilogue,
        );
    }
    amx::gemm(
        ta,
        (m, n, k),
        alpha,
        (a, lda),
        amx::BSource::Stored(tb, b, ldb),
        beta,
        (c, ldc),
        &epilogue,
    )
}

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    No,
    /// Use its transpose.
    Yes,
}

/// A GEMM implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmImpl {
    /// Own AVX-512F micro-kernel (12×32 f32, 12×16 f64 register tiles).
    Avx512,
    /// Own AVX2 + FMA micro-kernel (6×16 f32, 6×8 f64 register tiles).
    Avx2,
    /// The `matrixmultiply` crate (portable; its own threading, sized by
    /// `MATMUL_NUM_THREADS`, not by [`crate::parallel`]).
    MatrixMultiply,
}

impl GemmImpl {
    /// Every implementation, fastest first.
    pub const ALL: [GemmImpl; 3] = [GemmImpl::Avx512, GemmImpl::Avx2, GemmImpl::MatrixMultiply];

    /// Short name used in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            GemmImpl::Avx512 => "strata-avx512",
            GemmImpl::Avx2 => "strata-avx2",
            GemmImpl::MatrixMultiply => "matrixmultiply",
        }
    }

    /// Whether this CPU can run it. `STRATA_ISA=avx2` rules the AVX-512
    /// kernels out (for A/B benchmarks of the two widths on one host, and for
    /// hosts whose 512-bit FMAs run at half rate).
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            GemmImpl::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && !avx512_capped(),
            #[cfg(target_arch = "x86_64")]
            GemmImpl::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            GemmImpl::MatrixMultiply => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// Whether `STRATA_ISA=avx2` is set (read once).
fn avx512_capped() -> bool {
    static CAPPED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAPPED
        .get_or_init(|| std::env::var("STRATA_ISA").is_ok_and(|v| v.eq_ignore_ascii_case("avx2")))
}

/// The implementation [`gemm`] uses for an `m × n × k` product of `T` on this CPU.
///
/// The own kernels beat `matrixmultiply` at every measured shape, small ones
/// included (see `benches/RESULTS.md`), so the choice depends on the CPU only.
pub fn choose<T: GemmScalar>(m: usize, n: usize, k: usize) -> GemmImpl {
    let _ = (m, n, k);
    [GemmImpl::Avx512, GemmImpl::Avx2]
        .into_iter()
        .find(|&i| i.is_available() && T::kernel(i).is_some())
        .unwrap_or(GemmImpl::MatrixMultiply)
}

/// The register tiles of a direct (stride-1) convolution of `T` on this CPU.
#[derive(Clone, Copy)]
pub(crate) struct DirectTiles<T: 'static> {
    /// Rows of a tile (A panels are packed `mr` wide).
    pub mr: usize,
    /// Columns of a tile.
    pub nr: usize,
    /// Values per vector register (a tile row is `nr / lanes` vectors).
    pub lanes: usize,
    /// The full-tile micro-kernel over a B panel laid out `[k][nr]`.
    pub ukr: kernel::MicroKernel<T>,
    /// `edge[r]`: the micro-kernel for `r + 1 < mr` live rows.
    pub edge: &'static [kernel::MicroKernel<T>],
    /// `taps[r]`: the direct tile for `r + 1 ≤ mr` live rows.
    pub taps: &'static [TapKernel<T>],
    /// The same with B's vectors `bstep` apart (may be empty).
    pub taps_split: &'static [TapKernel<T>],
    /// The kernel's fast transposing packer, if any.
    pub pack_bt: Option<PackTransposed<T>>,
    /// Tiles with B read in place, rows `ldb` apart (may be empty).
    pub wide: kernel::WideTiles<T>,
}

impl<T> DirectTiles<T> {
    /// The packed-B micro-kernel for `rows` live rows (1..=mr).
    pub fn rows(&self, rows: usize) -> kernel::MicroKernel<T> {
        if rows == self.mr {
            self.ukr
        } else {
            self.edge[rows - 1]
        }
    }
}

/// The direct-convolution tiles for `T` on this CPU, if it has them: the
/// widest set.
pub(crate) fn direct_tiles<T: GemmScalar>() -> Option<DirectTiles<T>> {
    direct_tile_sets::<T>().next()
}

/// The tiles for a sweep of `cols` output columns: the widest set, unless a
/// narrower one rounds `cols` up to at most ¾ as many computed columns (a
/// 3×3 image's 15 flattened columns fill half of a 32-wide AVX-512 tile and
/// all but one of a 16-wide AVX2 tile: 0.80× → 1.0× there, `cargo xtask
/// bench conv` with and without `STRATA_ISA=avx2`).
pub(crate) fn direct_tiles_for<T: GemmScalar>(cols: usize) -> Option<DirectTiles<T>> {
    let mut sets = direct_tile_sets::<T>();
    let widest = sets.next()?;
    let computed = |d: &DirectTiles<T>| cols.div_ceil(d.nr) * d.nr;
    let narrow = sets
        .filter(|d| 4 * computed(d) <= 3 * computed(&widest))
        .min_by_key(computed);
    Some(narrow.unwrap_or(widest))
}

/// Every set of direct-convolution tiles this CPU runs, widest first (the
/// AVX-512 12×32 f32 tiles, AVX-512's 12×16, then AVX2's 6×16; an equally
/// narrow later set only serves when the earlier is unavailable).
pub(crate) fn direct_tile_sets<T: GemmScalar>() -> impl Iterator<Item = DirectTiles<T>> {
    GemmImpl::ALL
        .into_iter()
        .filter(|i| i.is_available())
        .flat_map(|i| {
            let narrow = (i == GemmImpl::Avx512).then(T::narrow_kernel).flatten();
            T::kernel(i).into_iter().chain(narrow).map(move |k| (i, k))
        })
        .filter(|(_, k)| !k.taps.is_empty() && k.edge.len() + 1 == k.mr)
        .map(|(i, k)| DirectTiles {
            mr: k.mr,
            nr: k.nr,
            lanes: if i == GemmImpl::Avx512 { 64 } else { 32 } / std::mem::size_of::<T>(),
            ukr: k.ukr,
            edge: k.edge,
            taps: k.taps,
            taps_split: k.taps_split,
            pack_bt: k.pack_bt,
            wide: k.wide,
        })
}

/// A bias added to the output after the product.
#[derive(Clone, Copy, Debug)]
pub enum Bias<'a, T> {
    /// No bias.
    None,
    /// `C[i, j] += bias[i]` (one value per row of C; length ≥ m).
    PerRow(&'a [T]),
    /// `C[i, j] += bias[j]` (one value per column of C, e.g. a Linear layer's
    /// bias for a minibatch in rows; length ≥ n).
    PerCol(&'a [T]),
}

/// What is applied to each output tile while it is still in cache:
/// `C ← act(C + bias)`.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a, T> {
    /// The bias to add.
    pub bias: Bias<'a, T>,
    /// Whether to apply ReLU, `max(x, 0)`, afterwards (NaN stays NaN).
    pub relu: bool,
}

impl<T: Scalar> Epilogue<'_, T> {
    const NONE: Epilogue<'static, T> = Epilogue {
        bias: Bias::None,
        relu: false,
    };

    /// Panics if the bias is shorter than C's rows (`m`) or columns (`n`).
    fn check_bias(&self, m: usize, n: usize) {
        match self.bias {
            Bias::PerRow(v) => assert!(
                v.len() >= m,
                "gemm: bias holds {} elements, needs m = {m}",
                v.len()
            ),
            Bias::PerCol(v) => assert!(
                v.len() >= n,
                "gemm: bias holds {} elements, needs n = {n}",
                v.len()
            ),
            Bias::None => {}
        }
    }

    fn is_noop(&self) -> bool {
        matches!(self.bias, Bias::None) && !self.relu
    }

    /// Applies the epilogue to `row` of C, columns `col..col + dst.len()`.
    fn apply_row(&self, dst: &mut [T], row: usize, col: usize) {
        match self.bias {
            Bias::None => {}
            Bias::PerRow(b) => dst.iter_mut().for_each(|x| *x = *x + b[row]),
            Bias::PerCol(b) => dst
                .iter_mut()
                .zip(&b[col..])
                .for_each(|(x, &b)| *x = *x + b),
        }
        if self.relu {
            // A select (NaN passes), not a data-dependent branch.
            dst.iter_mut()
                .for_each(|x| *x = if *x < T::zero() { T::zero() } else { *x });
        }
    }
}

mod sealed {
    /// Keeps [`super::GemmScalar`] to the types the kernels know.
    pub trait Sealed: super::Scalar {
        /// The own kernel for `imp` on this target, if any.
        fn kernel(imp: super::GemmImpl) -> Option<&'static super::Kernel<Self>>;
        /// Extra, narrower direct-convolution tiles of the AVX-512 kernel.
        fn narrow_kernel() -> Option<&'static super::Kernel<Self>>;
        /// `matrixmultiply`'s routine for this type.
        const MM: super::MmFn<Self>;
    }
}

/// `matrixmultiply::{s,d}gemm`'s signature.
type MmFn<T> = unsafe fn(
    usize,
    usize,
    usize,
    T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

/// Element types with a GEMM (f32 and f64).
pub trait GemmScalar: strata_tensor::Element + sealed::Sealed {
    /// `C ← α·op(A)·op(B) + β·C` for row-major matrices with leading dimensions
    /// `lda`, `ldb`, `ldc`; `op(A)` is m×k, `op(B)` is k×n, `C` is m×n.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        ta: Trans,
        tb: Trans,
        m: usize,
        n: usize,
        k: usize,
        alpha: Self,
        a: &[Self],
        lda: usize,
        b: &[Self],
        ldb: usize,
        beta: Self,
        c: &mut [Self],
        ldc: usize,
    ) {
        let b_src = BSourceT::Stored(tb, b, ldb);
        if try_bf16(
            ta,
            (m, n, k),
            alpha,
            (a, lda),
            b_src,
            beta,
            (&mut *c, ldc),
            &Epilogue::NONE,
        ) {
            return;
        }
        gemm_with(
            choose::<Self>(m, n, k),
            ta,
            tb,
            m,
            n,
            k,
            alpha,
            a,
            lda,
            b,
            ldb,
            beta,
            c,
            ldc,
        )
    }
}

/// The AVX-512 16-wide f32 direct tiles, where the target has them.
fn narrow_f32() -> Option<&'static Kernel<f32>> {
    #[cfg(target_arch = "x86_64")]
    return Some(&kernel::AVX512_NARROW_F32);
    #[cfg(not(target_arch = "x86_64"))]
    None
}

macro_rules! scalar {
    ($t:ty, $avx512:ident, $avx2:ident, $narrow:expr, $mm:path) => {
        impl sealed::Sealed for $t {
            fn narrow_kernel() -> Option<&'static Kernel<$t>> {
                $narrow
            }
            fn kernel(imp: GemmImpl) -> Option<&'static Kernel<$t>> {
                match imp {
                    #[cfg(target_arch = "x86_64")]
                    GemmImpl::Avx512 => Some(&kernel::$avx512),
                    #[cfg(target_arch = "x86_64")]
                    GemmImpl::Avx2 => Some(&kernel::$avx2),
                    _ => None,
                }
            }
            const MM: MmFn<$t> = $mm;
        }
        impl GemmScalar for $t {}
    };
}
scalar!(
    f32,
    AVX512_F32,
    AVX2_F32,
    narrow_f32(),
    matrixmultiply::sgemm
);
scalar!(f64, AVX512_F64, AVX2_F64, None, matrixmultiply::dgemm);

/// Panics with a clear message if a slice is too short for the described matrix.
fn check(name: &str, t: Trans, rows: usize, cols: usize, ld: usize, len: usize) {
    let (r, c) = match t {
        Trans::No => (rows, cols),
        Trans::Yes => (cols, rows),
    };
    if r == 0 || c == 0 {
        return;
    }
    assert!(
        ld >= c,
        "gemm: leading dimension of {name} ({ld}) < its columns ({c})"
    );
    assert!(
        len >= (r - 1) * ld + c,
        "gemm: {name} holds {len} elements, needs {}",
        (r - 1) * ld + c
    );
}

/// `C ← α·op(A)·op(B) + β·C` (row-major), choosing the fastest implementation
/// for this CPU and shape.
///
/// # Panics
/// If a slice is too short for the matrix its dimensions describe (a caller bug;
/// layers above validate shapes and report errors before calling).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: GemmScalar>(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    T::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// [`gemm`] in full precision whatever [`matmul_precision`] says: the
/// convolutions' GEMM routes (they stay f32, as documented).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_full<T: GemmScalar>(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    let imp = choose::<T>(m, n, k);
    gemm_with(imp, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// [`gemm`] with a forced implementation.
///
/// # Panics
/// If a slice is too short, or `imp` is not available on this CPU for `T`
/// (check [`GemmImpl::is_available`]).
#[allow(clippy::too_many_arguments)]
pub fn gemm_with<T: GemmScalar>(
    imp: GemmImpl,
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    let epi = Epilogue::NONE;
    run(
        imp,
        (ta, tb),
        (m, n, k),
        alpha,
        (a, lda),
        (b, ldb),
        beta,
        (c, ldc),
        &epi,
    )
}

/// `C ← act(α·op(A)·op(B) + β·C + bias)`: [`gemm`] with the bias add and
/// ReLU fused into the store of each output tile.
///
/// # Panics
/// If a slice (including the bias) is too short.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bias_act<T: GemmScalar>(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    beta: T,
    c: &mut [T],
    ldc: usize,
    epilogue: Epilogue<'_, T>,
) {
    let b_src = BSourceT::Stored(tb, b, ldb);
    if try_bf16(
        ta,
        (m, n, k),
        alpha,
        (a, lda),
        b_src,
        beta,
        (&mut *c, ldc),
        &epilogue,
    ) {
        return;
    }
    let imp = choose::<T>(m, n, k);
    run(
        imp,
        (ta, tb),
        (m, n, k),
        alpha,
        (a, lda),
        (b, ldb),
        beta,
        (c, ldc),
        &epilogue,
    )
}

/// `C ← α·op(A)·B + β·C` where B (`k × n`) is not stored: the driver asks
/// `b` for its packed panels (e.g. a convolution's im2col matrix copied
/// straight from the images). Without an own kernel for this CPU, B is
/// materialised once and handed to `matrixmultiply`.
///
/// # Panics
/// If A or C is too short for its dimensions.
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed_b<T: GemmScalar>(
    ta: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &dyn PackB<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    check("A", ta, m, k, lda, a.len());
    check("C", Trans::No, m, n, ldc, c.len());
    if m == 0 || n == 0 {
        return;
    }
    match T::kernel(choose::<T>(m, n, k)) {
        Some(kern) if k > 0 && alpha != T::zero() => driver::run(
            kern,
            ta,
            (m, n, k),
            alpha,
            (a, lda),
            driver::BOperand::Source(b),
            beta,
            (c, ldc),
            &Epilogue::NONE,
        ),
        _ => {
            // Panels one column wide are the columns of B: Bᵀ, row-major.
            let mut bt = vec![T::zero(); k * n];
            if k > 0 {
                b.pack((0, k), (0, n), 1, 0..n, &mut bt, None);
            }
            gemm_with(
                GemmImpl::MatrixMultiply,
                ta,
                Trans::Yes,
                m,
                n,
                k,
                alpha,
                a,
                lda,
                &bt,
                k.max(1),
                beta,
                c,
                ldc,
            )
        }
    }
}

/// op(B) (`k × n`) packed once, for many products `op(A)·op(B)` with the
/// same B — a layer's weights in inference, where packing them on every call
/// is a pass over the whole weight matrix per minibatch.
/// [`gemm_prepacked`] with it gives bit-identical results to [`gemm_bias_act`]
/// (same kernel, same blocking, same packed values).
#[derive(Clone, Debug)]
pub struct PackedB<T> {
    /// The packed panels for the own kernel, or op(B) row-major (`k × n`)
    /// for `matrixmultiply`.
    data: Vec<T>,
    k: usize,
    n: usize,
    imp: GemmImpl,
    /// op(B) in bf16 when packed under [`MatmulPrecision::Bf16`] (then
    /// `data` is empty).
    bf16: Option<amx::PackedBf16>,
}

impl<T: GemmScalar> PackedB<T> {
    /// Packs op(B) of the stored row-major `b` (`k × n` after `tb`) for the
    /// implementation [`gemm`] uses on this CPU.
    ///
    /// # Panics
    /// If `b` is too short for its dimensions.
    pub fn new(tb: Trans, k: usize, n: usize, b: &[T], ldb: usize) -> Self {
        check("B", tb, k, n, ldb, b.len());
        let imp = choose::<T>(1, n, k);
        if let (true, Some(b32)) = (bf16_in_effect() && k > 0 && n > 0, as_f32(b)) {
            let bf16 = Some(amx::PackedBf16::new(tb, (k, n), b32, ldb));
            return PackedB {
                data: Vec::new(),
                k,
                n,
                imp,
                bf16,
            };
        }
        let src = MatrixB { tb, b, ldb };
        let data = match T::kernel(imp) {
            Some(kern) if k > 0 && n > 0 => {
                let mut d = vec![T::zero(); driver::prepacked_len(kern, k, n)];
                driver::prepack(kern, (k, n), &src, &mut d);
                d
            }
            _ => {
                // Panels one column wide are op(B)'s columns: op(B)ᵀ row-major.
                let mut bt = vec![T::zero(); k * n];
                if k > 0 {
                    src.pack((0, k), (0, n), 1, 0..n, &mut bt, None);
                }
                bt
            }
        };
        PackedB {
            data,
            k,
            n,
            imp,
            bf16: None,
        }
    }

    /// The precision [`PackedB::new`] would pack for now: bf16 for f32
    /// while [`bf16_in_effect`], else f32. A holder of packed weights
    /// repacks when this differs from [`PackedB::precision`].
    pub fn current_precision() -> MatmulPrecision {
        if bf16_in_effect() && T::NAME == "f32" {
            MatmulPrecision::Bf16
        } else {
            MatmulPrecision::F32
        }
    }

    /// The precision it was packed for: products with it run at that
    /// precision whatever [`matmul_precision`] says later.
    pub fn precision(&self) -> MatmulPrecision {
        match self.bf16 {
            Some(_) => MatmulPrecision::Bf16,
            None => MatmulPrecision::F32,
        }
    }

    /// Depth (rows of op(B)).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of op(B).
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `C ← act(α·op(A)·B + β·C + bias)` with B packed beforehand
/// ([`PackedB`]): [`gemm_bias_act`] without the packing of B.
///
/// # Panics
/// If A, C or the bias is too short, or `b` was packed on another CPU type.
#[allow(clippy::too_many_arguments)]
pub fn gemm_prepacked<T: GemmScalar>(
    ta: Trans,
    m: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &PackedB<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
    epilogue: Epilogue<'_, T>,
) {
    let (n, k) = (b.n, b.k);
    if let Some(p) = &b.bf16 {
        if m > 0 && alpha != T::zero() {
            let done = try_bf16(
                ta,
                (m, n, k),
                alpha,
                (a, lda),
                BSourceT::Packed(p),
                beta,
                (&mut *c, ldc),
                &epilogue,
            );
            assert!(
                done,
                "gemm: B was packed in bf16, which this host does not run"
            );
            return;
        }
        // Nothing to multiply: as below, against zeros.
        return run(
            b.imp,
            (ta, Trans::No),
            (m, n, k),
            alpha,
            (a, lda),
            (&vec![T::zero(); k * n], n.max(1)),
            beta,
            (c, ldc),
            &epilogue,
        );
    }
    match T::kernel(b.imp) {
        Some(kern) if m > 0 && n > 0 && k > 0 && alpha != T::zero() => {
            check("A", ta, m, k, lda, a.len());
            check("C", Trans::No, m, n, ldc, c.len());
            match epilogue.bias {
                Bias::PerRow(v) => assert!(v.len() >= m, "gemm: bias shorter than m = {m}"),
                Bias::PerCol(v) => assert!(v.len() >= n, "gemm: bias shorter than n = {n}"),
                Bias::None => {}
            }
            assert!(
                b.imp.is_available(),
                "gemm: {} is not available",
                b.imp.name()
            );
            driver::run(
                kern,
                ta,
                (m, n, k),
                alpha,
                (a, lda),
                driver::BOperand::Packed(&b.data),
                beta,
                (c, ldc),
                &epilogue,
            )
        }
        // Edge cases and no own kernel: the stored op(B)ᵀ (or nothing to pack).
        Some(_) => run(
            b.imp,
            (ta, Trans::No),
            (m, n, k),
            alpha,
            (a, lda),
            (&vec![T::zero(); k * n], n.max(1)),
            beta,
            (c, ldc),
            &epilogue,
        ),
        None => run(
            GemmImpl::MatrixMultiply,
            (ta, Trans::Yes),
            (m, n, k),
            alpha,
            (a, lda),
            (&b.data, k.max(1)),
            beta,
            (c, ldc),
            &epilogue,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn run<T: GemmScalar>(
    imp: GemmImpl,
    (ta, tb): (Trans, Trans),
    (m, n, k): (usize, usize, usize),
    alpha: T,
    (a, lda): (&[T], usize),
    (b, ldb): (&[T], usize),
    beta: T,
    (c, ldc): (&mut [T], usize),
    epi: &Epilogue<'_, T>,
) {
    check("A", ta, m, k, lda, a.len());
    check("B", tb, k, n, ldb, b.len());
    check("C", Trans::No, m, n, ldc, c.len());
    epi.check_bias(m, n);
    assert!(
        imp.is_available(),
        "gemm: {} is not available on this CPU",
        imp.name()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == T::zero() {
        // Nothing to multiply: C ← β·C, with β = 0 overwriting.
        for r in c.chunks_mut(ldc).take(m).map(|r| &mut r[..n]) {
            if beta == T::zero() {
                r.fill(T::zero());
            } else if beta != T::one() {
                r.iter_mut().for_each(|x| *x = *x * beta);
            }
        }
    } else if let Some(kern) = T::kernel(imp) {
        return driver::run(
            kern,
            ta,
            (m, n, k),
            alpha,
            (a, lda),
            driver::BOperand::Source(&MatrixB { tb, b, ldb }),
            beta,
            (c, ldc),
            epi,
        );
    } else {
        let (rsa, csa) = strides(ta, lda);
        let (rsb, csb) = strides(tb, ldb);
        // SAFETY: `check` guarantees every index touched lies inside the slices;
        // matrixmultiply reads A and B and writes only the m×n part of C.
        unsafe {
            (T::MM)(
                m,
                k,
                n,
                alpha,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                beta,
                c.as_mut_ptr(),
                ldc as isize,
                1,
            )
        };
    }
    if !epi.is_noop() {
        for (i, r) in c.chunks_mut(ldc).take(m).enumerate() {
            epi.apply_row(&mut r[..n], i, 0);
        }
    }
}

/// Row and column strides of op(X) for a row-major X with leading dimension `ld`.
fn strides(t: Trans, ld: usize) -> (isize, isize) {
    match t {
        Trans::No => (ld as isize, 1),
        Trans::Yes => (1, ld as isize),
    }
}

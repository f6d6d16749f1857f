//! Which algorithm a convolution takes: [`ConvAlgo`], the single decision
//! point [`choose`] and the predicates behind it (when Winograd pays, when the
//! direct tiles beat the implicit GEMM, forward and backward-weights). Kept
//! apart from the algorithms themselves so that every choice, and the
//! `STRATA_CONV_*` switches for A/B runs, can be read in one place.

use super::direct::PhaseLayout;
use super::ConvGeometry;
use crate::gemm::direct_tiles;

/// The convolution algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgo {
    /// 1×1 kernel, stride 1, no padding: one GEMM on the image as stored
    /// (backward-weights, and everything on a CPU without direct tiles: with
    /// them, forward and backward-data of every unpadded 1×1 layer run on
    /// the tiles, the weights packed once per call and the pixels read in
    /// place).
    Pointwise,
    /// Unfold windows into a per-image column buffer, then one GEMM.
    Im2colGemm,
    /// The column matrix is never stored: the GEMM packs its panels straight
    /// from zero-padded images (forward and backward-weights; backward-data
    /// still goes through a column buffer and `col2im`).
    ImplicitGemm,
    /// On a CPU with direct tiles, stride-1 layers whose output rows do not
    /// tile the GEMM panels evenly or are at least 16 long, and strided
    /// layers whose output rows fill the tiles: the forward
    /// convolution's register tiles read the zero-padded image in place (in
    /// stride phases when strided; nothing packed but the kernel), one tap
    /// after another; backward-data is the forward convolution of `∂E/∂O`
    /// with the flipped kernel (per phase when strided); backward-weights on
    /// the padded image stored slice-innermost (`direct_backward_weights`).
    Direct,
    /// 3×3, stride 1, enough slices on both sides, on a CPU with direct
    /// tiles: Winograd's F(2×2, 3×3) (16 products of transformed slices
    /// instead of 36 multiply-adds per 2×2 output block; [`crate::winograd`]).
    /// Backward-data is the forward convolution of `∂E/∂O` with the flipped
    /// kernel (so also by F(2×2, 3×3)); backward-weights takes the route the
    /// shape would take without Winograd.
    Winograd,
}

/// The algorithm for a shape — the single decision point. Setting
/// `STRATA_CONV_EXPLICIT` forces [`ConvAlgo::Im2colGemm`],
/// `STRATA_CONV_NO_DIRECT` rules out [`ConvAlgo::Direct`] and
/// [`ConvAlgo::Winograd`], and `STRATA_CONV_NO_WINOGRAD` the latter only
/// (for A/B benchmarks).
pub fn choose(g: &ConvGeometry) -> ConvAlgo {
    if winograd_pays(g) {
        ConvAlgo::Winograd
    } else {
        choose_gemm(g)
    }
}

/// Winograd F(2×2, 3×3) where it measured ahead of the direct and implicit
/// GEMM paths (`cargo xtask bench conv`, with and without
/// `STRATA_CONV_NO_WINOGRAD`; benches/RESULTS.md): wide layers (≥ 64 slices
/// each way). Its transforms cost passes over input and output per slice
/// that thinner layers do not win back. Odd output sizes compute a cropped
/// extra row and column of 2×2 blocks: that costs 14 % more products at
/// 15×15 and 31 % at 7×7, still far below the 2.25× Winograd saves, but
/// 78 % at 3×3, where it no longer pays.
fn winograd_pays(g: &ConvGeometry) -> bool {
    let blocks = g.out_h().div_ceil(2) * g.out_w().div_ceil(2) * 4;
    super::winograd::computes(g)
        && direct_allowed()
        && !env_set("STRATA_CONV_NO_WINOGRAD")
        && g.c_in >= 64
        && g.c_out >= 64
        && 100 * blocks <= 135 * g.out_h() * g.out_w()
}

/// [`choose`] without Winograd: the GEMM-based algorithm for a shape.
pub(super) fn choose_gemm(g: &ConvGeometry) -> ConvAlgo {
    let no_pad = g.pad_top + g.pad_bottom + g.pad_left + g.pad_right == 0;
    let stride1 = g.stride_h == 1 && g.stride_w == 1;
    if g.kh == 1 && g.kw == 1 && stride1 && no_pad {
        ConvAlgo::Pointwise
    } else if env_set("STRATA_CONV_EXPLICIT") {
        ConvAlgo::Im2colGemm
    } else if direct_allowed()
        && (if stride1 {
            (ragged_rows(g) && sweep_fills_a_tile(g)) || long_rows(g)
        } else {
            strided_direct(g) && phase_rows_fill(g)
        })
    {
        ConvAlgo::Direct
    } else {
        ConvAlgo::ImplicitGemm
    }
}

/// Strided layers (a stage's first, downsampling layer) can run on the
/// direct tiles through their stride phases (`PhaseLayout`) when the
/// kernel covers the stride, so that every phase is read. Backward-data
/// always does (`direct_backward_data_strided`: 1.1–1.6× the column buffer
/// and `col2im` on the `s2` shapes of `cargo xtask bench conv`, with and
/// without `STRATA_CONV_NO_DIRECT`).
pub(super) fn strided_direct(g: &ConvGeometry) -> bool {
    g.stride_h <= g.kh && g.stride_w <= g.kw
}

/// Whether a strided layer's forward and backward-weights take the direct
/// tiles: when real outputs fill at least 65 % of the columns they compute
/// (output rows in the phase width, rounded up to whole tiles). There they
/// measured 1.1–1.3× the implicit GEMM, which gathers every `s`-th pixel for
/// each tap; on 7×7 → 4×4 (half the columns wasted) 0.9×. 32→64 16×16 → 8×8
/// (ResNet-20's last stage entry, 64 of 96 columns on 32-wide tiles)
/// measured 1.04–1.06× forward and 1.21–1.27× backward-weights (one pass
/// timed in a scratch program, 2026-12-07, full-rate AVX-512).
pub(super) fn phase_rows_fill(g: &ConvGeometry) -> bool {
    let nr = widest_nr();
    let q = g.out_h() * PhaseLayout::new(g).pw;
    20 * g.out_h() * g.out_w() >= 13 * q.div_ceil(nr) * nr
}

/// Width of this CPU's widest direct tiles (1 without any).
fn widest_nr() -> usize {
    direct_tiles::<f32>().map_or(1, |d| d.nr)
}

/// Direct tiles exist on this CPU and no environment switch rules them out.
pub(super) fn direct_allowed() -> bool {
    direct_tiles::<f32>().is_some()
        && !env_set("STRATA_CONV_NO_DIRECT")
        && !env_set("STRATA_CONV_EXPLICIT")
}

/// Output rows that neither fill whole GEMM panels nor divide them (7, 14,
/// 28 wide against 16-wide f32 panels): the implicit packer then copies
/// pieces of rows and falls off its fast path, while the direct tiles only
/// lose the padded columns. Where short rows tile evenly (4 and 8 wide) the
/// implicit GEMM measured as fast or faster (`cargo xtask bench conv`,
/// with and without `STRATA_CONV_NO_DIRECT`; benches/RESULTS.md); rows of
/// 16 and more take [`long_rows`].
fn ragged_rows(g: &ConvGeometry) -> bool {
    let (ow, nr) = (g.out_w(), widest_nr());
    !ow.is_multiple_of(nr) && !nr.is_multiple_of(ow.max(1))
}

/// Whether one image's sweep (its output rows in the padded width, the
/// columns a direct tile call covers) fills at least one tile of the widest
/// direct set. A 3×3 image's 15 columns do not: there the implicit GEMM,
/// whose panels run across images, measured 1.6× the direct tiles forward
/// (256→256 on full-rate AVX-512, 2026-12-07, with and without
/// `STRATA_CONV_NO_DIRECT`); on AVX2's 16-wide tiles the two were level.
fn sweep_fills_a_tile(g: &ConvGeometry) -> bool {
    let nr = widest_nr();
    g.out_h() * g.padded_hw().1 >= nr
}

/// Output rows of at least 16: there the direct tiles, which sweep rows that
/// tile evenly as stored (`Sweep::stored`), measured ahead of the implicit
/// GEMM on ResNet-20's 32×32 and 16×16 layers: 1.3× forward and
/// backward-data on AVX-512's 32-wide tiles (`cargo xtask bench conv`,
/// 2026-12-06), and on AVX2's 16-wide ones (`STRATA_ISA=avx2` on a full-rate
/// AVX-512 host, one pass timed in a scratch program, 2026-12-07) 1.2–1.3×
/// forward, 1.1–1.3× backward-data and 1.0–1.2× backward-weights. Level on
/// 8×8.
fn long_rows(g: &ConvGeometry) -> bool {
    direct_tiles::<f32>().is_some() && g.out_w() >= 16
}

/// Whether backward-weights takes the direct route
/// ([`direct_backward_weights`]): `c_in` a multiple of the tile width, and either a [`ConvAlgo::Direct`] shape or an image of ≥ 32×32
/// outputs (where it measured ahead of the implicit GEMM; on small images
/// such as 4×4 or 8×8 it fell behind), and deep enough tile calls. Their
/// depth is the image's output pixels in padded-width rows; the GEMM route
/// groups images into longer calls. Measured with and without
/// `STRATA_CONV_NO_DIRECT` (2026-12-07, full-rate AVX-512):
/// - 3×3 images (depth 15) are 2.2× faster on the GEMM route (256→256).
/// - 5×5 and 7×7 images (depth 35 and 63) with ≥ 128 output slices are
///   1.1–1.5× faster on it. 64→64 7×7 is 1.0–1.2× faster direct.
pub(super) fn direct_weights(g: &ConvGeometry, nr: usize) -> bool {
    let depth = g.out_h() * g.padded_hw().1;
    g.c_in.is_multiple_of(nr)
        && direct_allowed()
        && depth >= 32
        && (depth >= 80 || g.c_out <= 64)
        && (choose_gemm(g) == ConvAlgo::Direct || g.out_h() * g.out_w() >= 1024)
}

/// Whether backward-weights takes the wide tiles (`wide_backward_weights`)
/// `nb` wide: stride 1, a kernel wider than one tap, whole tiles across a
/// kernel row's `kw·c_in` columns, and at least 80 output pixels in
/// padded-width rows per image (the depth of each tile call). Measured
/// (`cargo xtask bench conv`, with and without `STRATA_CONV_NO_WIDE`, which
/// rules them out): 1.2–1.7× on 8×8 to 32×32 images, 0.5–0.9× on 7×7 and
/// smaller, where the GEMM route's groups of images give longer calls.
pub(super) fn wide_weights(g: &ConvGeometry, nb: usize) -> bool {
    g.kh * g.kw > 1
        && g.out_h() * g.padded_hw().1 >= 80
        && super::backward_weights::wide_fits(g, nb)
        && direct_allowed()
        && !env_set("STRATA_CONV_NO_WIDE")
}

/// Whether backward-weights takes F(2×2, 3×3) (`winograd::backward_weights`):
/// images of 7×7 to 64×64 outputs (a part holds at least one whole image;
/// larger ones are unmeasured), ≥ 24 input and ≥ 64 output slices,
/// except where the wide tiles run over ≥ 15×15 images of few slices
/// (`c_in·c_out < 40·(c_in + c_out)`: the transforms, whose work grows with
/// `c_in + c_out`, are then large beside the products, which grow with
/// `c_in·c_out`). Measured against the other routes (one pass timed in a
/// scratch program, with and without `STRATA_CONV_NO_WINOGRAD`,
/// 2026-12-07, full-rate AVX-512), GFLOPS: 256→256 7×7 384 against 258,
/// 128→128 8×8 406 against 223, 64→64 8×8 276 against 214, 32→64 14×14
/// 339 against 256, 24→64 31×31 195 against 150, 64→256 15×15 313 against
/// 288; not taken: 64→64 15×15 260 against 277 (wide tiles), 32→32 16×16
/// 184 against 259, 16→16 32×32 87 against 279; 3×3 and 4×4 images (blocks
/// 16/9 of the outputs, or short products) level or behind.
pub(super) fn winograd_weights(g: &ConvGeometry) -> bool {
    let many = g.c_in * g.c_out >= 40 * (g.c_in + g.c_out);
    let wide_large = g.out_h() * g.out_w() >= 225
        && direct_tiles::<f32>()
            .is_some_and(|d| !d.wide.rows.is_empty() && wide_weights(g, d.wide.nb));
    super::winograd::computes(g)
        && g.out_h() >= 7
        && g.out_w() >= 7
        && g.out_h() * g.out_w() <= 64 * 64
        && g.c_in >= 24
        && g.c_out >= 64
        && (many || !wide_large)
        && !env_set("STRATA_CONV_NO_WINOGRAD")
}

/// Whether an environment variable is set (read once per name).
fn env_set(name: &'static str) -> bool {
    static SET: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        [
            "STRATA_CONV_EXPLICIT",
            "STRATA_CONV_NO_DIRECT",
            "STRATA_CONV_NO_WINOGRAD",
            "STRATA_CONV_NO_WIDE",
        ]
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some())
        .collect()
    })
    .contains(&name)
}

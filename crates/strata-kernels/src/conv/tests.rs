//! The fast paths against the definition ([`conv2d_naive`]) and against each
//! other: direct tiles, strided phases, the residual epilogue, the
//! backward-weights routes and the implicit column matrix.

use super::choose::phase_rows_fill;
use super::*;
use crate::gemm::DirectTiles;
use direct::{tile_rows, Sweep};

fn geoms() -> Vec<ConvGeometry> {
    let g = |batch, c_in, h, w, c_out, k, s, pads: (usize, usize, usize, usize)| ConvGeometry {
        batch,
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        stride_h: s,
        stride_w: s,
        pad_top: pads.0,
        pad_bottom: pads.1,
        pad_left: pads.2,
        pad_right: pads.3,
    };
    vec![
        g(3, 5, 32, 32, 16, 3, 1, (1, 1, 1, 1)),
        g(2, 3, 14, 14, 7, 3, 1, (1, 1, 1, 1)),
        g(4, 2, 8, 8, 9, 3, 1, (1, 1, 1, 1)),
        g(2, 4, 9, 11, 6, 3, 2, (1, 0, 2, 1)),
        g(2, 40, 8, 8, 17, 3, 1, (0, 0, 0, 0)),
        g(3, 3, 7, 5, 4, 5, 1, (2, 2, 2, 2)),
        // 16-wide rows: two to a 32-wide tile swept as stored.
        g(2, 6, 16, 16, 13, 3, 1, (1, 1, 1, 1)),
    ]
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0
                - 0.5
        })
        .collect()
}

/// The direct tiles (stride 1) agree with the definition, bias and ReLU
/// included: row tiles cut short (c_out not a multiple of 6), padded-width
/// rows that end inside a tile, no padding, wide kernels, in f64 and f32.
/// (Nothing to check on a CPU without direct tiles.)
#[test]
fn direct_forward_matches_naive() {
    fn check<T: GemmScalar + Into<f64>>(tol: f64, conv: impl Fn(f32) -> T) {
        for tiles in direct_tile_sets::<T>() {
            let mut shapes: Vec<ConvGeometry> = geoms()
                .into_iter()
                .filter(|g| g.stride_h == 1 && g.stride_w == 1)
                .collect();
            shapes.push(ConvGeometry {
                kh: 1,
                kw: 3,
                pad_top: 0,
                pad_bottom: 2,
                ..shapes[1]
            });
            // Rows one vector wide, an even number of them (two to a tile
            // where tiles are two vectors wide) and an odd one (swept padded).
            for h in [14, 15] {
                shapes.push(ConvGeometry {
                    h,
                    w: tiles.lanes,
                    ..shapes[1]
                });
            }
            // Every set sweeps some shapes as stored, and those of two
            // vectors some two rows to a tile.
            let stored = |g: &ConvGeometry| {
                let pw = g.padded_hw().1;
                Sweep::stored(tiles, g.out_h(), g.out_w(), pw).map(|s| s.split)
            };
            assert!(shapes.iter().any(|g| stored(g) == Some(false)));
            if tiles.nr == 2 * tiles.lanes {
                assert!(shapes.iter().any(|g| stored(g) == Some(true)));
            }
            for g in shapes {
                let v = |n, seed| data(n, seed).into_iter().map(&conv).collect::<Vec<T>>();
                let (x, w, b) = (
                    v(g.batch * g.in_image(), 1),
                    v(g.weight_len(), 2),
                    v(g.c_out, 3),
                );
                let n = g.batch * g.out_image();
                let (mut got, mut want) = (vec![T::zero(); n], vec![T::zero(); n]);
                direct_forward(&g, &x, &w, Some(&b), None, true, &mut got, None, tiles);
                conv2d_naive(&g, &x, &w, Some(&b), &mut want);
                for (&a, &e) in got.iter().zip(&want) {
                    let (a, e): (f64, f64) = (a.into(), e.into());
                    assert!((a - e.max(0.0)).abs() < tol, "{g:?}: {a} vs {e}");
                }
            }
        }
    }
    check::<f64>(1e-12, f64::from);
    check::<f32>(1e-4, |x| x);
}

/// The fused epilogue gives exactly the separate ops' result,
/// `F((conv(x) + b) + r)`, on every path (direct, implicit GEMM, strided,
/// unpadded, wide kernels), for every combination of bias, residual and
/// ReLU, on several images per task and per group.
#[test]
fn fused_epilogue_equals_the_separate_ops() {
    // A wide layer, for Winograd's epilogue where this host has its tiles.
    let wide = ConvGeometry {
        c_in: 64,
        c_out: 64,
        h: 6,
        w: 6,
        ..geoms()[0]
    };
    if choose::direct_allowed() && std::env::var_os("STRATA_CONV_NO_WINOGRAD").is_none() {
        assert_eq!(choose(&wide), ConvAlgo::Winograd);
    }
    for g in geoms().into_iter().chain([wide]) {
        let (x, w, b) = (
            data(g.batch * g.in_image(), 1),
            data(g.weight_len(), 2),
            data(g.c_out, 3),
        );
        let n = g.batch * g.out_image();
        let r = data(n, 4);
        let mut conv = vec![0.0f32; n];
        conv2d_forward(&g, &x, &w, None, &mut conv);
        for bias in [Some(&b[..]), None] {
            for res in [Some(&r[..]), None] {
                for relu in [true, false] {
                    let mut want = conv.clone();
                    if let Some(b) = bias {
                        for (i, plane) in want.chunks_exact_mut(g.out_image() / g.c_out).enumerate()
                        {
                            plane.iter_mut().for_each(|y| *y += b[i % g.c_out]);
                        }
                    }
                    if let Some(r) = res {
                        want.iter_mut().zip(r).for_each(|(y, &r)| *y += r);
                    }
                    if relu {
                        want.iter_mut().for_each(|y| *y = y.max(0.0));
                    }
                    let mut got = vec![f32::NAN; n];
                    conv2d_forward_fused(&g, &x, &w, bias, res, relu, &mut got);
                    assert_eq!(
                        got,
                        want,
                        "{g:?} bias {} residual {} relu {relu}",
                        bias.is_some(),
                        res.is_some()
                    );
                }
            }
        }
    }
}

/// Strided layers on the direct tiles (through their stride phases):
/// forward against the definition and backward-data against it through
/// the adjoint identity `⟨∂E/∂O, K ⋆ x⟩ = ⟨x, ∂E/∂I⟩`, with full and short
/// row tiles on both sides, odd sizes, uneven padding, a stride beyond the
/// kernel (1×1, stride 2: phases without taps) and mixed strides.
#[test]
fn strided_direct_paths_match_definition() {
    for dt in direct_tile_sets::<f64>() {
        strided_direct_paths_match_definition_on(dt);
    }
}

fn strided_direct_paths_match_definition_on(dt: DirectTiles<f64>) {
    let shapes = [
        // (batch, c_in, c_out, h, w, kh, kw, stride, pads)
        (3, 20, 17, 14, 14, 3, 3, (2, 2), (1, 1, 1, 1)),
        (2, 7, 33, 9, 11, 3, 3, (2, 2), (1, 0, 0, 1)),
        (2, 13, 6, 12, 10, 3, 3, (2, 1), (1, 1, 1, 1)),
        (2, 9, 8, 13, 12, 3, 2, (3, 2), (1, 1, 0, 1)),
        (2, 16, 8, 7, 8, 5, 5, (2, 2), (2, 2, 2, 2)),
        (2, 8, 12, 8, 7, 1, 1, (2, 2), (0, 0, 0, 0)),
        // Odd width with an odd left pad; a stride of 3 across.
        (2, 5, 9, 9, 9, 3, 3, (2, 2), (1, 1, 1, 1)),
        (2, 6, 10, 11, 13, 3, 3, (2, 3), (1, 1, 2, 1)),
        // Outputs 16 and 8 wide: phase rows swept as stored, one row or
        // two to a tile (depending on the set's widths).
        (2, 5, 13, 32, 32, 3, 3, (2, 2), (1, 1, 1, 1)),
        (2, 7, 6, 16, 16, 3, 3, (2, 2), (1, 1, 1, 1)),
    ];
    for (batch, c_in, c_out, h, w, kh, kw, (sh, sw), p) in shapes {
        let g = ConvGeometry {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride_h: sh,
            stride_w: sw,
            pad_top: p.0,
            pad_bottom: p.1,
            pad_left: p.2,
            pad_right: p.3,
        };
        let d = |n, seed| data(n, seed).into_iter().map(f64::from).collect::<Vec<_>>();
        let (x, k) = (d(batch * g.in_image(), 1), d(g.weight_len(), 2));
        let n = batch * g.out_image();
        let (mut y, mut want) = (vec![0.0; n], vec![0.0; n]);
        direct_forward(&g, &x, &k, None, None, false, &mut y, None, dt);
        conv2d_naive(&g, &x, &k, None, &mut want);
        for (a, e) in y.iter().zip(&want) {
            assert!((a - e).abs() < 1e-12, "{g:?}: {a} vs {e}");
        }
        let dy = d(n, 3);
        let mut dx = vec![f64::NAN; x.len()];
        direct_backward_data_strided(&g, &k, &dy, &mut dx, dt);
        let lhs: f64 = dy.iter().zip(&want).map(|(a, b)| a * b).sum();
        let rhs: f64 = dx.iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-9 * (1.0 + lhs.abs()),
            "{g:?}: {lhs} vs {rhs}"
        );
        // Each input pixel on its own: ∂E/∂I is the adjoint, entry by entry.
        let mut e = vec![0.0; x.len()];
        for probe in [0, x.len() / 3, x.len() - 1] {
            e[probe] = 1.0;
            let mut ye = vec![0.0; n];
            conv2d_naive(&g, &e, &k, None, &mut ye);
            let want: f64 = dy.iter().zip(&ye).map(|(a, b)| a * b).sum();
            assert!((dx[probe] - want).abs() < 1e-12, "{g:?} pixel {probe}");
            e[probe] = 0.0;
        }
        // Kernels that cover the stride take this path in training too.
        if strided_direct(&g) && direct_allowed() && phase_rows_fill(&g) {
            assert_eq!(choose(&g), ConvAlgo::Direct, "{g:?}");
        }
    }
}

/// Direct backward-weights agrees with the definition
/// Direct tiles whose wide tiles have the AVX-512 geometry on emulated
/// registers, so the wide backward-weights is tested on any x86 host.
trait EmuWide: GemmScalar {
    fn emulated() -> DirectTiles<Self>;
}

impl EmuWide for f32 {
    fn emulated() -> DirectTiles<f32> {
        use crate::gemm::emulated::{EMU512_F32 as K, EMU512_WIDE_F32};
        DirectTiles {
            mr: K.mr,
            nr: K.nr,
            lanes: 64 / std::mem::size_of::<Self>(),
            ukr: K.ukr,
            edge: K.edge,
            taps: K.taps,
            taps_split: K.taps_split,
            pack_bt: None,
            wide: EMU512_WIDE_F32,
        }
    }
}

impl EmuWide for f64 {
    fn emulated() -> DirectTiles<f64> {
        use crate::gemm::emulated::{EMU512_F64 as K, EMU512_WIDE_F64};
        DirectTiles {
            mr: K.mr,
            nr: K.nr,
            lanes: 64 / std::mem::size_of::<Self>(),
            ukr: K.ukr,
            edge: K.edge,
            taps: K.taps,
            taps_split: K.taps_split,
            pack_bt: None,
            wide: EMU512_WIDE_F64,
        }
    }
}

/// `∂E/∂K[o, c, i, j] = Σ ∂E/∂O[b, o, u, v] · I[b, c, s·u + i − p, s·v + j − p]`
/// for slice counts that are whole tile widths, short row tiles, uneven
/// padding, strides and several images per partial sum, in f64 and f32; on
/// every set of direct tiles, and on the wide tiles at stride 1.
#[test]
fn direct_and_small_backward_weights_match_definition() {
    fn strided(g: ConvGeometry, stride_h: usize, stride_w: usize) -> ConvGeometry {
        ConvGeometry {
            stride_h,
            stride_w,
            ..g
        }
    }
    fn check<T: GemmScalar + Into<f64> + EmuWide>(tol: f64, conv: impl Fn(f32) -> T) {
        let g =
            |batch, c_in, h, w, c_out, kh, kw, pads: (usize, usize, usize, usize)| ConvGeometry {
                batch,
                c_in,
                h,
                w,
                c_out,
                kh,
                kw,
                stride_h: 1,
                stride_w: 1,
                pad_top: pads.0,
                pad_bottom: pads.1,
                pad_left: pads.2,
                pad_right: pads.3,
            };
        let shapes = [
            g(3, 16, 8, 8, 7, 3, 3, (1, 1, 1, 1)),
            g(2, 32, 6, 5, 13, 3, 3, (0, 1, 2, 0)),
            g(17, 16, 9, 9, 6, 5, 5, (2, 2, 2, 2)),
            g(2, 16, 7, 30, 16, 1, 3, (0, 0, 1, 1)),
            // Small images: the wide route stacks 5 per tile call.
            g(40, 16, 4, 4, 9, 3, 3, (1, 1, 1, 1)),
            // Strided (through the stride phases), odd sizes, uneven padding.
            strided(g(3, 16, 8, 8, 7, 3, 3, (1, 1, 1, 1)), 2, 2),
            strided(g(2, 32, 7, 9, 13, 3, 3, (1, 0, 1, 1)), 2, 1),
            strided(g(2, 16, 11, 10, 5, 3, 3, (1, 1, 0, 2)), 3, 2),
        ];
        let small = [
            g(3, 1, 8, 8, 7, 3, 3, (1, 1, 1, 1)),
            g(2, 3, 6, 5, 13, 3, 3, (0, 1, 2, 0)),
            g(17, 1, 9, 9, 6, 5, 5, (2, 2, 2, 2)),
            g(2, 2, 7, 45, 16, 1, 3, (0, 0, 1, 1)),
        ];
        let direct = direct_tile_sets::<T>().flat_map(|dt| {
            shapes.map(|g| {
                let c_in = g.c_in.div_ceil(dt.nr) * dt.nr;
                (ConvGeometry { c_in, ..g }, Some((dt, false)))
            })
        });
        // The wide tiles: stride 1, kw·c_in a whole number of tiles.
        let gcd = |a: usize, b: usize| {
            (1..=a.min(b))
                .rev()
                .find(|&d| a.is_multiple_of(d) && b.is_multiple_of(d))
        };
        // This CPU's (if any) and the AVX-512 geometry on emulated registers.
        let wide = direct_tile_sets::<T>()
            .chain([T::emulated()])
            .filter(|dt| !dt.wide.rows.is_empty())
            .flat_map(|dt| {
                let unit = shapes.iter().filter(|g| g.stride_h == 1 && g.stride_w == 1);
                unit.map(move |&g| {
                    let step = dt.wide.nb / gcd(dt.wide.nb, g.kw).unwrap_or(1);
                    let c_in = g.c_in.div_ceil(step) * step;
                    (ConvGeometry { c_in, ..g }, Some((dt, true)))
                })
            })
            .collect::<Vec<_>>();
        for (g, dt) in direct.chain(wide).chain(small.map(|g| (g, None))) {
            let v = |n, seed| data(n, seed).into_iter().map(&conv).collect::<Vec<T>>();
            let (x, dy) = (v(g.batch * g.in_image(), 1), v(g.batch * g.out_image(), 2));
            let mut got = vec![T::zero(); g.weight_len()];
            match dt {
                Some((dt, false)) => direct_backward_weights(&g, &x, &dy, &mut got, dt),
                Some((dt, true)) => {
                    assert!(super::backward_weights::wide_fits(&g, dt.wide.nb), "{g:?}");
                    super::backward_weights::wide_backward_weights(&g, &x, &dy, &mut got, dt)
                }
                None => {
                    // Through the public entry, which takes the small
                    // path for these shapes, bias gradient included.
                    assert!(g.patch() <= SMALL_PATCH);
                    let mut db = vec![T::zero(); g.c_out];
                    conv2d_backward_weights(&g, &x, &dy, &mut got, Some(&mut db));
                    let ohw = g.out_h() * g.out_w();
                    for (o, &have) in db.iter().enumerate() {
                        let want: f64 = (0..g.batch)
                            .flat_map(|b| &dy[(b * g.c_out + o) * ohw..][..ohw])
                            .map(|&v| v.into())
                            .sum();
                        assert!((have.into() - want).abs() < tol, "{g:?} bias {o}");
                    }
                }
            }
            let (oh, ow) = (g.out_h(), g.out_w());
            for o in 0..g.c_out {
                for c in 0..g.c_in {
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let mut want = 0f64;
                            for b in 0..g.batch {
                                for u in 0..oh {
                                    for vv in 0..ow {
                                        let (yy, xx) = (u * g.stride_h + i, vv * g.stride_w + j);
                                        if yy < g.pad_top
                                            || xx < g.pad_left
                                            || yy - g.pad_top >= g.h
                                            || xx - g.pad_left >= g.w
                                        {
                                            continue;
                                        }
                                        let xi = ((b * g.c_in + c) * g.h + yy - g.pad_top) * g.w
                                            + xx
                                            - g.pad_left;
                                        let di = ((b * g.c_out + o) * oh + u) * ow + vv;
                                        want += x[xi].into() * dy[di].into();
                                    }
                                }
                            }
                            let have: f64 = got[((o * g.c_in + c) * g.kh + i) * g.kw + j].into();
                            assert!(
                                (have - want).abs() < tol,
                                "{g:?} {o} {c} {i} {j}: {have} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
    check::<f64>(1e-12, f64::from);
    check::<f32>(1e-3, |x| x);
}

/// The implicit column matrix packs exactly the stored im2col matrix:
/// the GEMMs over both agree bit for bit, forward (`K · col`) and
/// backward-weights (`∂E/∂O · colᵀ`), for several images side by side.
#[test]
fn implicit_columns_match_stored_im2col() {
    for g in geoms() {
        let (k, ohw, n) = (g.patch(), g.out_h() * g.out_w(), g.batch);
        let cols = n * ohw;
        let x = data(n * g.in_image(), 1);
        let w = data(g.c_out * k, 2);
        let dy = data(g.c_out * cols, 3);
        let mut col = vec![0f32; k * cols];
        for (b, xi) in x.chunks_exact(g.in_image()).enumerate() {
            im2col(&g, xi, &mut col[b * ohw..], cols);
        }
        let offs = tap_offsets(&g);
        let mut buf = Vec::new();
        let xp = padded(&g, &x, &mut buf);

        let (mut want, mut got) = (vec![0f32; g.c_out * cols], vec![1f32; g.c_out * cols]);
        gemm(
            Trans::No,
            Trans::No,
            g.c_out,
            cols,
            k,
            1.0,
            &w,
            k,
            &col,
            cols,
            0.0,
            &mut want,
            cols,
        );
        let b = Cols::new(&g, xp, &offs);
        gemm_packed_b(
            Trans::No,
            g.c_out,
            cols,
            k,
            1.0,
            &w,
            k,
            &b,
            0.0,
            &mut got,
            cols,
        );
        assert_eq!(want, got, "forward {g:?}");

        let (mut want, mut got) = (vec![0.5f32; g.c_out * k], vec![0.5f32; g.c_out * k]);
        gemm(
            Trans::No,
            Trans::Yes,
            g.c_out,
            k,
            cols,
            1.0,
            &dy,
            cols,
            &col,
            cols,
            1.0,
            &mut want,
            k,
        );
        let b = ColsT(Cols::new(&g, xp, &offs));
        gemm_packed_b(
            Trans::No,
            g.c_out,
            k,
            cols,
            1.0,
            &dy,
            cols,
            &b,
            1.0,
            &mut got,
            k,
        );
        assert_eq!(want, got, "backward-weights {g:?}");
    }
}

proptest::proptest! {
    /// `PhaseLayout::store` puts padded pixel `(r, c)` at phase
    /// `(r mod sh, c mod sw)`, position `(r div sh, c div sw)`, and writes
    /// nothing else (the zero padding is never touched).
    #[test]
    fn phase_store_follows_the_layout(
        h in 1usize..9,
        w in 1usize..12,
        sh in 1usize..4,
        sw in 1usize..4,
        pads in (0usize..3, 0usize..3, 0usize..3, 0usize..3),
    ) {
        let g = ConvGeometry {
            batch: 1,
            c_in: 1,
            h,
            w,
            c_out: 1,
            kh: sh,
            kw: sw,
            stride_h: sh,
            stride_w: sw,
            pad_top: pads.0,
            pad_bottom: pads.1,
            pad_left: pads.2,
            pad_right: pads.3,
        };
        let lay = direct::PhaseLayout::new(&g);
        let src: Vec<f64> = (0..h * w).map(|i| i as f64).collect();
        let mut dst = vec![-1.0; lay.plane];
        lay.store(&g, &src, &mut dst);
        let mut want = vec![-1.0; lay.plane];
        for y in 0..h {
            for x in 0..w {
                let (r, c) = (y + g.pad_top, x + g.pad_left);
                let at = ((r % sh) * sw + c % sw) * lay.ph * lay.pw + (r / sh) * lay.pw + c / sw;
                want[at] = src[y * w + x];
            }
        }
        proptest::prop_assert_eq!(dst, want);
    }
}

/// 1×1 kernels at a stride above 1 without padding (projection shortcuts)
/// run as the pointwise convolution of the subsampled image: forward with
/// bias, residual and ReLU against the definition, and both backward passes
/// as its adjoints (`⟨dy, K x⟩ = ⟨Kᵀ dy, x⟩ = ⟨∂/∂K, K⟩`), in f64; odd sizes
/// and unequal strides, where the last pixel read is the image's last.
#[test]
fn strided_pointwise_matches_the_definition() {
    let shapes = [
        (2, 3, 9, 11, 5, 2, 2),
        (3, 16, 32, 32, 32, 2, 2),
        (2, 4, 7, 10, 3, 2, 3),
        (1, 2, 5, 6, 2, 3, 1),
    ];
    for (batch, c_in, h, w, c_out, sh, sw) in shapes {
        let g = ConvGeometry {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh: 1,
            kw: 1,
            stride_h: sh,
            stride_w: sw,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
        };
        assert!(subsampled(&g).is_some(), "{g:?}");
        let v = |n, seed| {
            data(n, seed)
                .into_iter()
                .map(f64::from)
                .collect::<Vec<f64>>()
        };
        let (x, k, b) = (
            v(batch * g.in_image(), 1),
            v(g.weight_len(), 2),
            v(c_out, 3),
        );
        let n = batch * g.out_image();
        let (r, dy) = (v(n, 4), v(n, 5));
        let mut got = vec![f64::NAN; n];
        conv2d_forward_fused(&g, &x, &k, Some(&b), Some(&r), true, &mut got);
        let mut want = vec![0.0; n];
        conv2d_naive(&g, &x, &k, Some(&b), &mut want);
        for ((&a, &e), &r) in got.iter().zip(&want).zip(&r) {
            assert!(
                (a - (e + r).max(0.0)).abs() < 1e-12,
                "{g:?}: {a} vs {}",
                (e + r).max(0.0)
            );
        }
        let mut y = vec![0.0; n];
        conv2d_naive(&g, &x, &k, None, &mut y);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let lhs = dot(&dy, &y);
        let mut dx = vec![f64::NAN; x.len()];
        conv2d_backward_data(&g, &k, &dy, &mut dx);
        assert!(
            (lhs - dot(&dx, &x)).abs() < 1e-9 * (1.0 + lhs.abs()),
            "{g:?}: backward-data"
        );
        // Pixels the kernel never reads get a zero gradient.
        for (i, &d) in dx.iter().enumerate() {
            let (yy, xx) = (i / w % h, i % w);
            let read = yy % sh == 0 && xx % sw == 0;
            assert!(read && d.is_finite() || d == 0.0, "{g:?}: dx[{i}] = {d}");
        }
        let (mut dw, mut db) = (vec![f64::NAN; k.len()], vec![f64::NAN; c_out]);
        conv2d_backward_weights(&g, &x, &dy, &mut dw, Some(&mut db));
        assert!(
            (lhs - dot(&dw, &k)).abs() < 1e-9 * (1.0 + lhs.abs()),
            "{g:?}: backward-weights"
        );
        let sum_dy: f64 = dy.iter().sum();
        assert!((db.iter().sum::<f64>() - sum_dy).abs() < 1e-9 * (1.0 + sum_dy.abs()));
    }
    // Empty layers (no images, no input or no output slices) do not panic
    // and leave zero gradients.
    for (batch, c_in, h, c_out) in [(0, 2, 5, 3), (2, 0, 5, 3), (2, 2, 5, 0)] {
        let g = ConvGeometry {
            batch,
            c_in,
            h,
            w: h,
            c_out,
            kh: 1,
            kw: 1,
            stride_h: 2,
            stride_w: 2,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
        };
        let (x, k) = (vec![1.0; batch * g.in_image()], vec![1.0; g.weight_len()]);
        let mut y = vec![1.0; batch * g.out_image()];
        conv2d_forward_fused(&g, &x, &k, None, None, false, &mut y);
        assert!(y.iter().all(|&v| v == 0.0), "{g:?}: y");
        let mut dx = vec![1.0; x.len()];
        conv2d_backward_data(&g, &k, &y, &mut dx);
        assert!(dx.iter().all(|&v| v == 0.0), "{g:?}");
        let mut dw = vec![1.0; k.len()];
        conv2d_backward_weights(&g, &x, &y, &mut dw, None);
        assert!(dw.iter().all(|&v| v == 0.0), "{g:?}");
    }
}

/// The pointwise tiles (1×1, no padding) agree with the definition on every
/// set of direct tiles this CPU runs: forward with
/// bias, residual and ReLU, and backward-data entry by entry, at stride 1
/// and strided, with pixel counts that fill whole tiles (read and written in
/// place) and that do not, row tiles cut short and several images per task.
#[test]
fn pointwise_tiles_match_the_definition() {
    for dt in direct_tile_sets::<f64>() {
        let shapes = [
            // (batch, c_in, c_out, h, w, sh, sw)
            (3, 5, 13, 8, 2 * dt.nr / 8, 1, 1),
            (3, 7, 4, 5, 7, 1, 1),
            (2, 16, 32, 16, 16, 2, 2),
            (3, 6, 13, 2 * dt.nr / 4, 16, 2, 2),
            (2, 4, 7, 11, 9, 2, 3),
            (2, 3, 5, 9, 10, 3, 1),
        ];
        for (batch, c_in, c_out, h, w, sh, sw) in shapes {
            let g = ConvGeometry {
                batch,
                c_in,
                h,
                w,
                c_out,
                kh: 1,
                kw: 1,
                stride_h: sh,
                stride_w: sw,
                pad_top: 0,
                pad_bottom: 0,
                pad_left: 0,
                pad_right: 0,
            };
            let v = |n, seed| data(n, seed).into_iter().map(f64::from).collect::<Vec<_>>();
            let (x, k, b) = (
                v(batch * g.in_image(), 1),
                v(g.weight_len(), 2),
                v(c_out, 3),
            );
            let n = batch * g.out_image();
            let (r, dy) = (v(n, 4), v(n, 5));
            let mut got = vec![f64::NAN; n];
            pointwise::pointwise_forward(&g, &x, &k, Some(&b), Some(&r), true, &mut got, None, dt);
            let mut want = vec![0.0; n];
            conv2d_naive(&g, &x, &k, Some(&b), &mut want);
            for (i, ((&a, &e), &r)) in got.iter().zip(&want).zip(&r).enumerate() {
                let e = (e + r).max(0.0);
                assert!((a - e).abs() < 1e-12, "{g:?} y[{i}]: {a} vs {e}");
            }
            // ∂E/∂I[c, s·u, s·v] = Σ_o K[o, c]·∂E/∂O[o, u, v], zero elsewhere.
            let mut dx = vec![f64::NAN; x.len()];
            pointwise::pointwise_backward_data(&g, &k, &dy, &mut dx, dt);
            let (oh, ow) = (g.out_h(), g.out_w());
            for (i, &d) in dx.iter().enumerate() {
                let (img, c, yy, xx) = (i / g.in_image(), i / (h * w) % c_in, i / w % h, i % w);
                let e = if yy % sh == 0 && xx % sw == 0 {
                    let (u, q) = (yy / sh, xx / sw);
                    (0..c_out)
                        .map(|o| k[o * c_in + c] * dy[img * g.out_image() + (o * oh + u) * ow + q])
                        .sum()
                } else {
                    0.0
                };
                assert!((d - e).abs() < 1e-12, "{g:?} dx[{i}]: {d} vs {e}");
            }
        }
    }
}

/// Row tiles are as many as `mr`-row tiles would be, none taller than `mr`,
/// and even: the last holds fewer rows than the others by less than the
/// number of tiles.
#[test]
fn row_tiles_are_even_and_as_few_as_full_ones() {
    assert_eq!(
        (tile_rows(16, 12), tile_rows(32, 12), tile_rows(64, 12)),
        (8, 11, 11)
    );
    assert_eq!(
        (tile_rows(12, 12), tile_rows(13, 6), tile_rows(1, 6)),
        (12, 5, 1)
    );
    for mr in [4, 6, 8, 12] {
        for rows in 1..200 {
            let th = tile_rows(rows, mr);
            let tiles = rows.div_ceil(th);
            assert!(th <= mr, "{rows} rows, mr {mr}: {th}");
            assert_eq!(tiles, rows.div_ceil(mr), "{rows} rows, mr {mr}");
            let last = rows - (tiles - 1) * th;
            assert!(
                th - last < tiles,
                "{rows} rows, mr {mr}: {th} and last {last}"
            );
        }
    }
}

/// The forward with slice statistics gives the plain forward's output and,
/// bit for bit, every output slice's `slice_stats`, so batch norm's
/// statistics from them equal those it takes from the output, on every
/// route: direct (stride 1 as stored and padded, strided), pointwise
/// (stride 1 and 2), Winograd and the GEMM routes (stats in a pass after).
#[test]
fn slice_stats_match_the_output_on_every_route() {
    use crate::batchnorm::{channel_mean_var, channel_mean_var_from_slices, slice_stats};
    let one = |c_in, c_out, h, k, s, p| ConvGeometry {
        batch: 3,
        c_in,
        h,
        w: h,
        c_out,
        kh: k,
        kw: k,
        stride_h: s,
        stride_w: s,
        pad_top: p,
        pad_bottom: p,
        pad_left: p,
        pad_right: p,
    };
    let shapes = [
        one(5, 16, 32, 3, 1, 1),
        one(3, 7, 14, 3, 1, 1),
        one(6, 13, 16, 3, 2, 1),
        one(16, 32, 16, 1, 1, 0),
        one(8, 12, 15, 1, 2, 0),
        one(64, 64, 6, 3, 1, 1),
        one(4, 9, 3, 3, 1, 1),
    ];
    for g in shapes {
        let (x, w, b) = (
            data(g.batch * g.in_image(), 1),
            data(g.weight_len(), 2),
            data(g.c_out, 3),
        );
        let n = g.batch * g.out_image();
        for bias in [Some(&b[..]), None] {
            let mut want = vec![0.0f32; n];
            conv2d_forward_fused(&g, &x, &w, bias, None, false, &mut want);
            let (mut got, mut st) = (
                vec![f32::NAN; n],
                vec![(f32::NAN, f32::NAN); g.batch * g.c_out],
            );
            conv2d_forward_slice_stats(&g, &x, &w, bias, &mut got, &mut st);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, e)| a.to_bits() == e.to_bits()),
                "{g:?}: y"
            );
            let s = g.out_h() * g.out_w();
            for (i, (seg, &st)) in got.chunks_exact(s).zip(&st).enumerate() {
                let e = slice_stats(seg);
                assert!(
                    st.0.to_bits() == e.0.to_bits() && st.1.to_bits() == e.1.to_bits(),
                    "{g:?} slice {i}: {st:?} vs {e:?}"
                );
            }
            let from = channel_mean_var_from_slices(&st, g.batch, g.c_out, s);
            assert_eq!(from, channel_mean_var(&got, g.batch, g.c_out, s), "{g:?}");
        }
    }
}

//! The process-wide matmul precision routes f32 products (and only those)
//! to the bf16 tiles. One test in its own binary: the setting is global, so
//! no other test may run products while it changes it.

use strata_kernels::gemm::{
    bf16_available, bf16_in_effect, choose, gemm, gemm_bf16, gemm_bias_act, gemm_prepacked,
    gemm_with, matmul_precision, set_matmul_precision, Bias, Epilogue, MatmulPrecision, PackedB,
    Trans,
};

fn fill(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1 << 23) as f32
                - 1.0
        })
        .collect()
}

#[test]
fn precision_routes_f32_products() {
    assert_eq!("bf16".parse(), Ok(MatmulPrecision::Bf16));
    assert_eq!("f32".parse(), Ok(MatmulPrecision::F32));
    let e = "half".parse::<MatmulPrecision>().unwrap_err();
    assert!(
        e.contains("\"f32\" or \"bf16\"") && e.contains("half"),
        "{e}"
    );
    assert_eq!(matmul_precision(), MatmulPrecision::F32, "the default");

    let (m, n, k) = (70, 90, 200);
    let (a, w) = (fill(m * k, 1), fill(n * k, 2));
    let bias = fill(n, 3);
    let epi = || Epilogue {
        bias: Bias::PerCol(&bias),
        relu: true,
    };
    let none = || Epilogue {
        bias: Bias::None,
        relu: false,
    };
    let f32_ref = |c: &mut Vec<f32>| {
        let imp = choose::<f32>(m, n, k);
        gemm_with(
            imp,
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
            c,
            n,
        );
    };
    let mut want32 = vec![0.0; m * n];
    f32_ref(&mut want32);
    let mut c = vec![0.0; m * n];
    gemm(
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
        &mut c,
        n,
    );
    assert_eq!(c, want32, "f32 precision: the f32 kernels");

    set_matmul_precision(MatmulPrecision::Bf16);
    assert_eq!(matmul_precision(), MatmulPrecision::Bf16);
    assert_eq!(bf16_in_effect(), bf16_available());
    let mut c = vec![0.0; m * n];
    gemm(
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
        &mut c,
        n,
    );
    let mut fused = vec![0.0; m * n];
    gemm_bias_act(
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
        &mut fused,
        n,
        epi(),
    );
    let packed = PackedB::new(Trans::Yes, k, n, &w, k);
    let mut pre = vec![0.0; m * n];
    gemm_prepacked(Trans::No, m, 1.0, &a, k, &packed, 0.0, &mut pre, n, epi());
    // f64 products are never reduced.
    let (a64, w64): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|&x| x as f64).collect(),
        w.iter().map(|&x| x as f64).collect(),
    );
    let mut c64 = vec![0.0; m * n];
    gemm(
        Trans::No,
        Trans::Yes,
        m,
        n,
        k,
        1.0,
        &a64,
        k,
        &w64,
        k,
        0.0,
        &mut c64,
        n,
    );
    let mut want64 = vec![0.0; m * n];
    gemm_with(
        choose::<f64>(m, n, k),
        Trans::No,
        Trans::Yes,
        m,
        n,
        k,
        1.0,
        &a64,
        k,
        &w64,
        k,
        0.0,
        &mut want64,
        n,
    );
    assert_eq!(c64, want64, "f64 stays f64");
    assert_eq!(PackedB::<f64>::current_precision(), MatmulPrecision::F32);

    if bf16_available() {
        let mut want = vec![0.0; m * n];
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
            &mut want,
            n,
            none(),
        );
        assert_eq!(c, want, "bf16 precision: the tiles");
        assert_ne!(c, want32, "the tiles round the inputs");
        let mut want = vec![0.0; m * n];
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
            &mut want,
            n,
            epi(),
        );
        assert_eq!(fused, want, "the epilogue on the tiles");
        assert_eq!(pre, want, "packed weights on the tiles");
        assert_eq!(packed.precision(), MatmulPrecision::Bf16);
        assert_eq!(PackedB::<f32>::current_precision(), MatmulPrecision::Bf16);
        // Weights packed in bf16 keep their precision after the switch.
        set_matmul_precision(MatmulPrecision::F32);
        let mut again = vec![0.0; m * n];
        gemm_prepacked(Trans::No, m, 1.0, &a, k, &packed, 0.0, &mut again, n, epi());
        assert_eq!(again, want);
        assert_eq!(PackedB::<f32>::current_precision(), MatmulPrecision::F32);
    } else {
        eprintln!("no AMX-BF16 here: bf16 precision must leave the products in f32");
        assert_eq!(c, want32);
        assert_eq!(packed.precision(), MatmulPrecision::F32);
    }
    set_matmul_precision(MatmulPrecision::F32);
    let mut c = vec![0.0; m * n];
    gemm(
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
        &mut c,
        n,
    );
    assert_eq!(c, want32, "back to f32");
    convolutions_stay_f32();
}

/// Convolutions whose routes are GEMMs (1×1 backward-weights, the explicit
/// im2col route of a 5×5 layer) give the same bits under either precision.
fn convolutions_stay_f32() {
    use strata_kernels::conv::{conv2d_backward_weights, conv2d_forward, ConvGeometry};
    for (c_in, c_out, kk, pad) in [(32, 48, 1, 0), (12, 40, 5, 2)] {
        let g = ConvGeometry {
            batch: 4,
            c_in,
            h: 12,
            w: 12,
            c_out,
            kh: kk,
            kw: kk,
            stride_h: 1,
            stride_w: 1,
            pad_top: pad,
            pad_bottom: pad,
            pad_left: pad,
            pad_right: pad,
        };
        let x = fill(g.batch * g.in_image(), 5);
        let wt = fill(g.weight_len(), 6);
        let dy = fill(g.batch * g.out_image(), 7);
        let run = |p: MatmulPrecision| {
            set_matmul_precision(p);
            let mut y = vec![0.0; g.batch * g.out_image()];
            conv2d_forward(&g, &x, &wt, None, &mut y);
            let mut dw = vec![0.0; g.weight_len()];
            conv2d_backward_weights(&g, &x, &dy, &mut dw, None);
            set_matmul_precision(MatmulPrecision::F32);
            (y, dw)
        };
        assert!(
            run(MatmulPrecision::F32) == run(MatmulPrecision::Bf16),
            "{kk}×{kk} convolution changed under bf16 matmuls"
        );
    }
}

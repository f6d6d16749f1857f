//! CIFAR-10 whitening at full size, timed, and image grids to look at.
//! Ignored by default (tens of seconds); run with
//! `cargo test -p strata-data --test cifar_zca -- --ignored --nocapture`
//! (`STRATA_GRID_DIR=folder` keeps the PNGs).

mod common;

use std::time::Instant;
use strata_data::whiten::{covariance, row_mean, symmetric_eigen};
use strata_data::*;

#[test]
#[ignore = "full CIFAR-10 ZCA: tens of seconds"]
fn cifar10_zca_timed_with_grids() {
    let Ok(data) = load("cifar10", Some(common::shared_data().as_path())) else {
        eprintln!("CIFAR-10 not available; skipped");
        return;
    };
    let n = std::env::var("STRATA_ZCA_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let train = data.train.take(n);
    let x = train.to_tensor().unwrap().into_vec();
    let d = 3072;
    let t = Instant::now();
    let mean = row_mean(&x, n, d);
    let cov = covariance(&x, n, d, &mean);
    let t_cov = t.elapsed();
    let t = Instant::now();
    let (vals, _) = symmetric_eigen(&cov, d).unwrap();
    let t_eig = t.elapsed();
    let t = Instant::now();
    let w = Whitening::fit(WhiteningKind::Zca, &x, n, d, 0.01).unwrap();
    let t_fit = t.elapsed();
    let mut z = x.clone();
    let t = Instant::now();
    w.apply(&mut z).unwrap();
    let t_apply = t.elapsed();
    eprintln!(
        "CIFAR-10 ZCA, n = {n}, d = {d}: mean+covariance {:.2} s, eigendecomposition {:.2} s, \
         whole fit {:.2} s, apply to the {n} images {:.2} s; λ_max {:.3}, λ_min {:.2e}",
        t_cov.as_secs_f64(),
        t_eig.as_secs_f64(),
        t_fit.as_secs_f64(),
        t_apply.as_secs_f64(),
        vals[0],
        vals[d - 1]
    );
    // Whitened: the 100 leading directions have variance λ/(λ+ε) ≈ 1 (checked on
    // the covariance of z along the top eigenvectors through the trace).
    let zm = row_mean(&z, n, d);
    assert!(zm.iter().all(|m| m.abs() < 1e-3));
    let zc = covariance(&z, n, d, &zm);
    let tr: f64 = (0..d).map(|i| zc[i * d + i]).sum();
    let want: f64 = vals.iter().map(|l| l / (l + 0.01)).sum();
    eprintln!("trace Covmat(z) = {tr:.2}, Σ λ/(λ+ε) = {want:.2}");
    assert!((tr - want).abs() / want < 1e-2);

    // Grids: raw images, augmentations, ZCA-whitened images, patch-ZCA kernels.
    let dir = std::env::var("STRATA_GRID_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("strata-grids"));
    std::fs::create_dir_all(&dir).unwrap();
    let first = train.take(32).to_tensor().unwrap();
    let o = GridOptions {
        columns: Some(8),
        upscale: 2,
        ..Default::default()
    };
    let fixed = GridOptions {
        scale: GridScale::Fixed { lo: 0.0, hi: 1.0 },
        ..o
    };
    save_grid(dir.join("cifar.png"), &first, &fixed).unwrap();
    let aug = Augmentation::new(1).rotate(15.0).crop(32, 32, 4).flip();
    save_grid(
        dir.join("cifar_aug.png"),
        &aug.apply_batch(&first, 0, 0).unwrap(),
        &fixed,
    )
    .unwrap();
    let zt = strata_tensor::Tensor::from_vec(z[..32 * d].to_vec(), &[32, 3, 32, 32]).unwrap();
    save_grid(dir.join("cifar_zca.png"), &zt, &o).unwrap();
    let t = Instant::now();
    let pz = PatchZca::fit(&x, n.min(10_000), [3, 32, 32], 3, 0.01).unwrap();
    eprintln!(
        "patch ZCA 3×3 fit on {} images: {:.2} s",
        n.min(10_000),
        t.elapsed().as_secs_f64()
    );
    let k = GridOptions {
        columns: Some(9),
        upscale: 8,
        padding: 2,
        ..Default::default()
    };
    save_grid(
        dir.join("cifar_patch_zca_kernels.png"),
        &pz.weight().unwrap(),
        &k,
    )
    .unwrap();
    eprintln!("grids written to {}", dir.display());
}

#[test]
#[ignore = "timing of the GEMM shapes the whitening uses"]
fn gemm_shapes_timed() {
    use strata_kernels::gemm::{gemm, Trans};
    let (d, r) = (3072, 2048);
    let a: Vec<f32> = (0..r * d).map(|i| (i % 17) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..d * d).map(|i| (i % 13) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; d * d];
    for (ta, tb, m, n, k, bb) in [
        (Trans::Yes, Trans::No, d, d, r, &a),
        (Trans::No, Trans::Yes, r, d, d, &b),
        (Trans::No, Trans::No, r, d, d, &b),
    ] {
        let t = Instant::now();
        gemm(ta, tb, m, n, k, 1.0, &a, d, bb, d, 0.0, &mut c[..m * n], n);
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "{ta:?} {tb:?} {m}x{n}x{k}: {s:.3} s, {:.1} GFLOPS",
            2.0 * (m * n * k) as f64 / s / 1e9
        );
    }
}

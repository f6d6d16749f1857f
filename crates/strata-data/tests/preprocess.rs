//! Preprocessing: fitted statistics, whitening invariants, serialisation, errors.

mod common;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_data::*;
use strata_tensor::Tensor;

fn names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("c{i}")).collect()
}

/// `n` images of `shape` where pixel `p` has mean `p/10` and spread `1 + p/7`.
fn synthetic(n: usize, shape: [usize; 3], seed: u64) -> Dataset {
    let d = shape.iter().product::<usize>();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * d)
        .map(|i| {
            let p = (i % d) as f32;
            p / 10.0 + (1.0 + p / 7.0) * (rng.random::<f32>() - 0.5)
        })
        .collect();
    Dataset::from_f32(x, [n, shape[0], shape[1], shape[2]], vec![0; n], names(1)).unwrap()
}

/// Correlated Gaussian-ish vectors: `x = A g + b`, `g` uniform, `A` random.
fn correlated(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let a: Vec<f32> = (0..d * d).map(|_| rng.random::<f32>() - 0.5).collect();
    let mut x = vec![0.0f32; n * d];
    for row in x.chunks_exact_mut(d) {
        let g: Vec<f32> = (0..d).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        for (i, v) in row.iter_mut().enumerate() {
            *v = 3.0 + (0..d).map(|k| a[i * d + k] * g[k]).sum::<f32>();
        }
    }
    x
}

fn moments(x: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / d;
    let mut m = vec![0.0; d];
    for r in x.chunks_exact(d) {
        r.iter()
            .zip(&mut m)
            .for_each(|(&v, a)| *a += v as f64 / n as f64);
    }
    let mut c = vec![0.0; d * d];
    for r in x.chunks_exact(d) {
        for i in 0..d {
            for j in 0..d {
                c[i * d + j] += (r[i] as f64 - m[i]) * (r[j] as f64 - m[j]) / n as f64;
            }
        }
    }
    (m, c)
}

fn pixels(d: &Dataset) -> Vec<f32> {
    d.to_tensor().unwrap().into_vec()
}

#[test]
fn pixel_whitening_gives_zero_mean_unit_std_per_pixel() {
    let mut train = synthetic(500, [2, 3, 4], 1);
    let test = synthetic(100, [2, 3, 4], 2);
    let p =
        FittedPipeline::fit_apply(&[Preprocess::PixelWhiten { eps: 1e-3 }], &mut train).unwrap();
    let (m, c) = moments(&pixels(&train), 24);
    for i in 0..24 {
        assert!(m[i].abs() < 1e-5, "mean {i}: {}", m[i]);
        assert!((c[i * 24 + i].sqrt() - 1.0).abs() < 1e-4, "std {i}");
    }
    // Test images use the training statistics, unchanged.
    let mut t2 = test.clone();
    p.apply(&mut t2).unwrap();
    let t = pixels(&test);
    let t2 = pixels(&t2);
    let tensors = p.to_tensors();
    let mean = &tensors
        .iter()
        .find(|(n, _)| n == "preprocess.0.pixel_whiten.mean")
        .unwrap()
        .1;
    let scale = &tensors
        .iter()
        .find(|(n, _)| n == "preprocess.0.pixel_whiten.scale")
        .unwrap()
        .1;
    assert_eq!(mean.shape(), &[2, 3, 4]);
    let (mv, sv) = (mean.to_vec(), scale.to_vec());
    for (i, (&a, &b)) in t.iter().zip(&t2).enumerate() {
        assert_eq!(b, (a - mv[i % 24]) / sv[i % 24]);
    }
    // A pixel that never varies becomes 0 (σ floored at ε), not NaN.
    let constant = Dataset::from_f32(vec![0.5; 8], [2, 1, 2, 2], vec![0, 0], names(1)).unwrap();
    let mut c2 = constant.clone();
    FittedPipeline::fit_apply(&["pixel-whiten".parse().unwrap()], &mut c2).unwrap();
    assert!(pixels(&c2).iter().all(|&v| v == 0.0));
}

#[test]
fn image_normalisation_and_lcn() {
    let mut d = synthetic(50, [3, 5, 6], 3);
    FittedPipeline::fit_apply(&[Preprocess::ImageNormalize { eps: 1e-6 }], &mut d).unwrap();
    for img in pixels(&d).chunks_exact(90) {
        let m = img.iter().map(|&v| v as f64).sum::<f64>() / 90.0;
        let s = (img.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / 90.0).sqrt();
        assert!(m.abs() < 1e-5 && (s - 1.0).abs() < 1e-4, "{m} {s}");
    }
    // LCN of a constant image is 0, with or without the division.
    let flat =
        Dataset::from_f32(vec![0.7; 2 * 3 * 9 * 7], [2, 3, 9, 7], vec![0, 0], names(1)).unwrap();
    for divide in [false, true] {
        let mut f = flat.clone();
        let step = Preprocess::LocalContrast {
            sigma: 1.5,
            divide,
            floor: 0.1,
        };
        FittedPipeline::fit_apply(&[step], &mut f).unwrap();
        assert!(pixels(&f).iter().all(|v| v.abs() < 1e-5));
        let mut n = Dataset::from_f32(vec![0.7; 9], [1, 1, 3, 3], vec![0], names(1)).unwrap();
        FittedPipeline::fit_apply(&[Preprocess::ImageNormalize { eps: 0.01 }], &mut n).unwrap();
        assert!(pixels(&n).iter().all(|&v| v == 0.0));
    }
    // On a ramp plus an edge, LCN removes the local mean and keeps the edge.
    let mut img = vec![0.0f32; 16 * 16];
    for (i, v) in img.iter_mut().enumerate() {
        *v = (i / 16) as f32 * 0.01 + if i % 16 >= 8 { 1.0 } else { 0.0 };
    }
    local_contrast(&mut img, [1, 16, 16], 2.0, true, 0.01);
    assert!(img[5 * 16 + 7] < -0.5 && img[5 * 16 + 8] > 0.5, "{img:?}");
    assert!(img[5 * 16 + 1].abs() < 0.1);
}

#[test]
fn pca_and_zca_whiten_synthetic_data() {
    let (n, d) = (4000, 16);
    let x = correlated(n, d, 4);
    for kind in [WhiteningKind::Pca, WhiteningKind::Zca] {
        for eps in [1e-5f32, 1e-1] {
            let w = Whitening::fit(kind, &x, n, d, eps).unwrap();
            let mut z = x.clone();
            w.apply(&mut z).unwrap();
            let (m, c) = moments(&z, d);
            let lmin = *w.eigenvalues.last().unwrap() as f64;
            // Covmat({z}) = Uᵀ Λ(Λ+εI)⁻¹ U: identity up to ε/(λ+ε) per direction.
            let tol = eps as f64 / (lmin + eps as f64) + 2e-3;
            for i in 0..d {
                assert!(m[i].abs() < 1e-3, "{kind:?} mean {i}: {}", m[i]);
                for j in 0..d {
                    let e = if i == j { 1.0 } else { 0.0 };
                    assert!(
                        (c[i * d + j] - e).abs() < tol,
                        "{kind:?} ε={eps} cov[{i},{j}]={}",
                        c[i * d + j]
                    );
                }
            }
            // The trace is exactly Σ λ/(λ+ε).
            let tr: f64 = (0..d).map(|i| c[i * d + i]).sum();
            let want: f64 = w
                .eigenvalues
                .iter()
                .map(|&l| l as f64 / (l as f64 + eps as f64))
                .sum();
            assert!((tr - want).abs() < 1e-2 * d as f64, "trace {tr} vs {want}");
            if kind == WhiteningKind::Zca {
                for i in 0..d {
                    for j in 0..d {
                        assert!((w.matrix[i * d + j] - w.matrix[j * d + i]).abs() < 1e-4);
                    }
                }
            }
        }
    }
    let e = &w_eig(&x, n, d);
    assert!(e.windows(2).all(|p| p[0] >= p[1]), "eigenvalues decrease");
}

fn w_eig(x: &[f32], n: usize, d: usize) -> Vec<f32> {
    Whitening::fit(WhiteningKind::Pca, x, n, d, 1.0)
        .unwrap()
        .eigenvalues
}

/// Mean over images of the correlation between the whitened and the centred input.
fn mean_correlation(x: &[f32], z: &[f32], mean: &[f32]) -> f64 {
    let d = mean.len();
    let mut total = 0.0;
    let n = x.len() / d;
    for (a, b) in x.chunks_exact(d).zip(z.chunks_exact(d)) {
        let a: Vec<f64> = a.iter().zip(mean).map(|(&v, &m)| (v - m) as f64).collect();
        let (ma, mb) = (
            a.iter().sum::<f64>() / d as f64,
            b.iter().map(|&v| v as f64).sum::<f64>() / d as f64,
        );
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (u, &v) in a.iter().zip(b) {
            let (u, v) = (u - ma, v as f64 - mb);
            sab += u * v;
            saa += u * u;
            sbb += v * v;
        }
        total += sab / (saa * sbb).sqrt().max(1e-12);
    }
    total / n as f64
}

#[test]
fn zca_looks_like_the_image_and_pca_does_not() {
    let digits = digits();
    let x = pixels(&digits);
    let (n, d) = (digits.len(), 64);
    let mut corr = Vec::new();
    for kind in [WhiteningKind::Zca, WhiteningKind::Pca] {
        let w = Whitening::fit(kind, &x, n, d, 0.1).unwrap();
        let mut z = x.clone();
        w.apply(&mut z).unwrap();
        corr.push(mean_correlation(&x, &z, &w.mean));
    }
    assert!(corr[0] > 0.5, "ZCA correlation {corr:?}");
    assert!(corr[1].abs() < 0.3, "PCA correlation {corr:?}");
}

#[test]
fn mnist_subset_zca_is_white_and_image_like() {
    let Ok(m) = load_mnist_like(common::shared_data().join("mnist")) else {
        eprintln!("MNIST not available; skipped");
        return;
    };
    let mut train = m.train.take(3000);
    let p = FittedPipeline::fit_apply(&[Preprocess::Zca { eps: 0.05 }], &mut train).unwrap();
    let w = p.whitening(0).unwrap();
    let x = pixels(&m.train.take(3000));
    let z = pixels(&train);
    assert!(mean_correlation(&x, &z, &w.mean) > 0.5);
    // Directions with λ ≫ ε are white: the top principal direction has unit variance.
    let u0: Vec<f64> = {
        let pca = Whitening::fit(WhiteningKind::Pca, &x, 3000, 784, 0.05).unwrap();
        let s = (pca.eigenvalues[0] as f64 + 0.05).sqrt();
        pca.matrix[..784].iter().map(|&v| v as f64 * s).collect()
    };
    let proj: Vec<f64> = z
        .chunks_exact(784)
        .map(|r| r.iter().zip(&u0).map(|(&a, b)| a as f64 * b).sum())
        .collect();
    let var = proj.iter().map(|v| v * v).sum::<f64>() / proj.len() as f64;
    let lam = w.eigenvalues[0] as f64;
    assert!((var - lam / (lam + 0.05)).abs() < 1e-2, "variance {var}");
}

#[test]
fn patch_zca_is_a_whitening_convolution() {
    let d = synthetic(40, [2, 6, 7], 5);
    let x = pixels(&d);
    let pz = PatchZca::fit(&x, 40, [2, 6, 7], 2, 1e-5).unwrap();
    assert_eq!(pz.weight().unwrap().shape(), &[8, 2, 2, 2]);
    assert_eq!(pz.bias().unwrap().shape(), &[8]);
    let (y, s) = pz.apply(&x, 40, [2, 6, 7], Padding::Valid).unwrap();
    assert_eq!(s, [8, 5, 6]);
    // Gather the output vectors at every position: mean 0, covariance ≈ I.
    let mut v = Vec::new();
    for img in y.chunks_exact(8 * 30) {
        for pos in 0..30 {
            v.extend((0..8).map(|o| img[o * 30 + pos]));
        }
    }
    let (m, c) = moments(&v, 8);
    for i in 0..8 {
        assert!(m[i].abs() < 1e-3);
        for j in 0..8 {
            let e = if i == j { 1.0 } else { 0.0 };
            assert!(
                (c[i * 8 + j] - e).abs() < 5e-3,
                "cov[{i},{j}] {}",
                c[i * 8 + j]
            );
        }
    }
    let t = Tensor::from_vec(x.clone(), &[40, 2, 6, 7]).unwrap();
    assert_eq!(
        pz.apply_tensor(&t, Padding::Same).unwrap().shape(),
        &[40, 8, 6, 7]
    );
    let mut dd = d.clone();
    let p = FittedPipeline::fit_apply(
        &[Preprocess::PatchZca {
            kernel: 3,
            eps: 0.01,
            padding: Padding::Same,
        }],
        &mut dd,
    )
    .unwrap();
    assert_eq!(dd.image_shape(), [18, 6, 7]);
    assert_eq!(p.output_shape(), [18, 6, 7]);
    assert!(p.patch_zca(0).is_some());
}

fn full_pipeline() -> Vec<Preprocess> {
    vec![
        Preprocess::ResizeCrop {
            height: 6,
            width: 6,
            filter: Filter::CatmullRom,
        },
        Preprocess::ImageNormalize { eps: 1e-2 },
        Preprocess::LocalContrast {
            sigma: 1.0,
            divide: true,
            floor: 0.05,
        },
        Preprocess::PixelWhiten { eps: 1e-3 },
        Preprocess::Zca { eps: 0.1 },
        Preprocess::Pca { eps: 0.1 },
        Preprocess::PatchZca {
            kernel: 2,
            eps: 0.1,
            padding: Padding::Valid,
        },
    ]
}

#[test]
fn fitted_pipelines_round_trip_through_tensors() {
    let train = digits().take(400);
    let test = digits().subset(400, 450).unwrap();
    let cfg = full_pipeline();
    let p = FittedPipeline::fit(&cfg, &train).unwrap();
    assert_eq!(p.output_shape(), [4, 5, 5]);
    let tensors = p.to_tensors();
    let back = FittedPipeline::from_tensors(&tensors, &cfg).unwrap();
    assert_eq!(back, p);
    let (mut a, mut b) = (test.clone(), test.clone());
    p.apply(&mut a).unwrap();
    back.apply(&mut b).unwrap();
    assert_eq!(pixels(&a), pixels(&b));
    assert_eq!(a.image_shape(), [4, 5, 5]);
    // fit_apply transforms the training set like apply does.
    let mut t1 = train.clone();
    let p1 = FittedPipeline::fit_apply(&cfg, &mut t1).unwrap();
    let mut t2 = train.clone();
    p1.apply(&mut t2).unwrap();
    assert_eq!(pixels(&t1), pixels(&t2));
    let batch = p.apply_tensor(&test.to_tensor().unwrap()).unwrap();
    assert_eq!(batch.to_vec(), pixels(&a));

    // A missing or misshapen tensor is named.
    let missing: Vec<_> = tensors
        .iter()
        .filter(|(n, _)| n != "preprocess.4.zca.matrix")
        .cloned()
        .collect();
    let e = FittedPipeline::from_tensors(&missing, &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("preprocess.4.zca.matrix") && e.contains("[36, 36]"),
        "{e}"
    );
    let mut bad = tensors.clone();
    for (n, t) in &mut bad {
        if n == "preprocess.3.pixel_whiten.scale" {
            *t = Tensor::zeros(&[1, 6, 5]);
        }
    }
    let e = FittedPipeline::from_tensors(&bad, &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("preprocess.3.pixel_whiten.scale") && e.contains("[1, 6, 6]"),
        "{e}"
    );
    assert!(FittedPipeline::from_tensors(&tensors[1..], &cfg)
        .unwrap_err()
        .to_string()
        .contains("input_shape"));
}

#[test]
fn resize_crop_and_spec_names() {
    // Byte pixels are scaled to [0, 1] first; 8×8 → 12×10 (covers 12×12, centre crop).
    let mut d = digits().take(5);
    let p = FittedPipeline::fit_apply(
        &[Preprocess::ResizeCrop {
            height: 12,
            width: 10,
            filter: Filter::Lanczos3,
        }],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.image_shape(), [1, 12, 10]);
    assert!(pixels(&d).iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(p.to_tensors().len() == 1); // only the input shape
    let parsed: Vec<&str> = [
        "pixel-whiten",
        "image-normalize",
        "lcn",
        "pca",
        "zca",
        "patch-zca",
    ]
    .iter()
    .map(|n| n.parse::<Preprocess>().unwrap().name())
    .collect();
    assert_eq!(
        parsed,
        [
            "pixel_whiten",
            "image_normalize",
            "local_contrast",
            "pca",
            "zca",
            "patch_zca"
        ]
    );
}

#[test]
fn bad_input_is_an_error() {
    let d = digits().take(20);
    let fit = |s: Preprocess| FittedPipeline::fit(&[s], &d).map(|_| ());
    for eps in [0.0, -1.0, f32::NAN] {
        assert!(fit(Preprocess::PixelWhiten { eps })
            .unwrap_err()
            .to_string()
            .contains("epsilon"));
        assert!(fit(Preprocess::Zca { eps }).is_err());
        assert!(fit(Preprocess::Pca { eps }).is_err());
        assert!(fit(Preprocess::ImageNormalize { eps }).is_err());
        assert!(fit(Preprocess::LocalContrast {
            sigma: eps,
            divide: false,
            floor: 1.0
        })
        .is_err());
    }
    assert!(fit(Preprocess::PatchZca {
        kernel: 9,
        eps: 0.1,
        padding: Padding::Same
    })
    .is_err());
    assert!(fit(Preprocess::PatchZca {
        kernel: 0,
        eps: 0.1,
        padding: Padding::Same
    })
    .is_err());
    assert!(fit(Preprocess::ResizeCrop {
        height: 0,
        width: 4,
        filter: Filter::Triangle
    })
    .is_err());
    let empty = d.take(0);
    let e = FittedPipeline::fit(&[Preprocess::Zca { eps: 0.1 }], &empty).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    assert!(Whitening::fit(WhiteningKind::Zca, &[], 0, 4, 0.1).is_err());
    assert!("nonsense".parse::<Preprocess>().is_err());
    // Applying to images of another shape names both shapes.
    let p = FittedPipeline::fit(&[Preprocess::Zca { eps: 0.1 }], &d).unwrap();
    let mut other = synthetic(3, [1, 4, 4], 1);
    let e = p.apply(&mut other).unwrap_err().to_string();
    assert!(e.contains("[1, 8, 8]") && e.contains("[1, 4, 4]"), "{e}");
    assert!(p.apply_tensor(&Tensor::zeros(&[2, 64])).is_err());
    let pz = PatchZca::fit(&pixels(&d), 20, [1, 8, 8], 3, 0.1).unwrap();
    assert!(pz.apply(&[0.0; 27], 1, [3, 3, 3], Padding::Valid).is_err());
}

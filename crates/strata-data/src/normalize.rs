//! The per-image steps of preprocessing (section 12.4.2) and the per-pixel
//! statistics of pixel whitening, over plain slices.

use strata_kernels::image::{gaussian_blur, gaussian_weights};

/// The per-pixel mean `μ` and scale `max(σ, ε)` of `n` images of `d` values.
pub(crate) fn pixel_moments(x: &[f32], n: usize, d: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let mean = crate::whiten::row_mean(x, n, d);
    let mut var = vec![0.0f64; d];
    for row in x.chunks_exact(d) {
        for ((v, &p), &m) in var.iter_mut().zip(row).zip(&mean) {
            let e = p as f64 - m;
            *v += e * e;
        }
    }
    let scale = var
        .iter()
        .map(|&v| ((v / n as f64).sqrt() as f32).max(eps))
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), scale)
}

/// `z = (x − mean(x)) / max(std(x), ε)` over one image.
pub fn normalize_image(img: &mut [f32], eps: f32) {
    if img.is_empty() {
        return;
    }
    let n = img.len() as f64;
    let mean = img.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = img.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var.sqrt() as f32).max(eps);
    let mean = mean as f32;
    img.iter_mut().for_each(|v| *v = (*v - mean) * inv);
}

/// Local contrast normalisation of one `[C, H, W]` image, channel by channel:
/// `v = x − G_σ * x`, then, if `divide`, `z = v / max(√(G_σ * v²), floor)`.
pub fn local_contrast(img: &mut [f32], shape: [usize; 3], sigma: f32, divide: bool, floor: f32) {
    let [_, h, w] = shape;
    let g = gaussian_weights(sigma, h.max(w));
    let (mut tmp, mut blur) = (vec![0.0f32; h * w], vec![0.0f32; h * w]);
    for plane in img.chunks_exact_mut((h * w).max(1)) {
        gaussian_blur(plane, h, w, &g, &mut tmp, &mut blur);
        plane.iter_mut().zip(&blur).for_each(|(v, b)| *v -= b);
        if divide {
            let sq: Vec<f32> = plane.iter().map(|v| v * v).collect();
            gaussian_blur(&sq, h, w, &g, &mut tmp, &mut blur);
            plane
                .iter_mut()
                .zip(&blur)
                .for_each(|(v, s)| *v /= s.max(0.0).sqrt().max(floor));
        }
    }
}

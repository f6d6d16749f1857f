//! Image-plane kernels for preprocessing: a separable Gaussian blur with
//! renormalised borders (the local mean of local contrast normalisation).
//!
//! The blur of a plane `x` (`h × w`, row-major) with the truncated Gaussian
//! `g(t) = exp(−t² / 2σ²)`, `|t| ≤ r`, is
//! `(G_σ * x)[i, j] = Σ_{a,b} g(a)·g(b)·x[i+a, j+b] / Σ_{a,b} g(a)·g(b)`,
//! both sums over the offsets that stay inside the image. Dividing by the weight
//! that lies inside (rather than reading zeros outside) keeps the blur of a
//! constant plane equal to that constant up to the border. Because the kernel is
//! separable and the image a rectangle, renormalising each 1-D pass is exact.

/// The one-sided Gaussian weights `g(0), g(1), …, g(r)` with `g(t) = exp(−t²/2σ²)`
/// and radius `r = min(⌈3σ⌉, max_radius)` (at least 1), unnormalised (the blur
/// renormalises). Offsets beyond the image are never read, so `max_radius` (the
/// larger side of the image) keeps a huge `σ` from allocating a huge kernel.
///
/// `sigma` must be positive and finite (callers validate it).
pub fn gaussian_weights(sigma: f32, max_radius: usize) -> Vec<f32> {
    let r = ((3.0 * sigma).ceil().min(max_radius as f32) as usize).max(1);
    (0..=r)
        .map(|t| (-((t * t) as f32) / (2.0 * sigma * sigma)).exp())
        .collect()
}

/// One renormalised 1-D pass along rows (`stride` 1) or columns (`stride` w):
/// `out[i] = Σ_t g(|t|)·x[i+t] / Σ_t g(|t|)` over in-range offsets.
fn pass(x: &[f32], lines: usize, len: usize, along_rows: bool, g: &[f32], out: &mut [f32]) {
    let r = g.len() - 1;
    // Weight inside the line at each position: the same for every line.
    let norm: Vec<f32> = (0..len)
        .map(|p| {
            let lo = p.saturating_sub(r);
            let hi = (p + r).min(len - 1);
            1.0 / (lo..=hi).map(|q| g[p.abs_diff(q)]).sum::<f32>()
        })
        .collect();
    for line in 0..lines {
        for p in 0..len {
            let lo = p.saturating_sub(r);
            let hi = (p + r).min(len - 1);
            let mut s = 0.0f32;
            for q in lo..=hi {
                let idx = if along_rows {
                    line * len + q
                } else {
                    q * lines + line
                };
                s += g[p.abs_diff(q)] * x[idx];
            }
            let o = if along_rows {
                line * len + p
            } else {
                p * lines + line
            };
            out[o] = s * norm[p];
        }
    }
}

/// Blurs one `h × w` plane with the separable Gaussian whose one-sided weights are
/// `g` (from [`gaussian_weights`]), renormalising at the borders; `tmp` is scratch
/// of the plane's size.
///
/// # Panics
/// If a slice does not hold `h·w` values or `g` is empty (caller bugs).
pub fn gaussian_blur(x: &[f32], h: usize, w: usize, g: &[f32], tmp: &mut [f32], out: &mut [f32]) {
    assert!(!g.is_empty(), "gaussian_blur: empty kernel");
    assert!(
        x.len() == h * w && tmp.len() == h * w && out.len() == h * w,
        "gaussian_blur: plane lengths"
    );
    if h == 0 || w == 0 {
        return;
    }
    pass(x, h, w, true, g, tmp);
    pass(tmp, w, h, false, g, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_plane_is_kept_and_mass_is_local() {
        let g = gaussian_weights(1.5, 100);
        assert_eq!(gaussian_weights(1e30, 9).len(), 10);
        assert_eq!(g.len(), 6);
        let (h, w) = (7, 9);
        let x = vec![2.5f32; h * w];
        let (mut t, mut o) = (vec![0.0; h * w], vec![0.0; h * w]);
        gaussian_blur(&x, h, w, &g, &mut t, &mut o);
        assert!(o.iter().all(|&v| (v - 2.5).abs() < 1e-5));
        // An impulse spreads symmetrically.
        let mut x = vec![0.0f32; h * w];
        x[3 * w + 4] = 1.0;
        gaussian_blur(&x, h, w, &g, &mut t, &mut o);
        assert!((o[3 * w + 3] - o[3 * w + 5]).abs() < 1e-7);
        assert!((o[2 * w + 4] - o[4 * w + 4]).abs() < 1e-7);
        assert!(o[3 * w + 4] > o[3 * w + 5]);
    }
}

//! PCA and ZCA whitening (section 12.4.2, Useful Facts 12.1), of whole
//! flattened images and of small patches (a fixed first convolutional layer).
//!
//! **Convention.** `Σ = Covmat({x}) = (1/N) Σᵢ (xᵢ − m)(xᵢ − m)ᵀ` with
//! `m = mean({x})`. We write `U` for the `d × d` matrix whose **rows** are the
//! unit eigenvectors of `Σ`, so that `U Σ Uᵀ = Λ` (diagonal, eigenvalues `λₖ ≥ 0`)
//! — this is the reading under which the chapter's rule `z = Λ^{-1/2} U (x − m)`
//! whitens. Then, with a small `ε > 0` that keeps tiny eigenvalues from blowing
//! up:
//!
//! - PCA whitening: `z = (Λ + εI)^{-1/2} U (x − m)`; row `k` of the matrix is
//!   `(λₖ + ε)^{-1/2} uₖᵀ`, rows ordered by decreasing `λₖ`. The output is the data
//!   in the eigenvector basis: it does not look like an image.
//! - ZCA whitening: `z = Uᵀ (Λ + εI)^{-1/2} U (x − m)`; the matrix
//!   `W = Uᵀ (Λ + εI)^{-1/2} U` is symmetric. Rotating back with `Uᵀ` keeps the
//!   output close to the input image (it looks like an edge-enhanced image).
//!
//! Either way `mean({z}) = 0` and `Covmat({z}) = Uᵀ Λ (Λ + εI)^{-1} U` (ZCA) or
//! `Λ (Λ + εI)^{-1}` (PCA): the identity up to `ε / (λₖ + ε)` in each direction.
//!
//! The covariance is accumulated with GEMMs over chunks of centred rows
//! (`Σ += Xcᵀ Xc`, summed in `f64`); the symmetric eigendecomposition is faer's,
//! in `f64`.

use crate::error::{DataError, Result};
use faer::{Mat, Side};
use rayon::prelude::*;
use strata_kernels::conv::{conv2d_forward, im2col, ConvGeometry};
use strata_kernels::gemm::{gemm, Trans};
use strata_tensor::Tensor;

/// Rows per GEMM chunk when accumulating a covariance or applying a matrix.
const CHUNK_ROWS: usize = 2048;

/// Which whitening rule (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteningKind {
    /// `z = (Λ + εI)^{-1/2} U (x − m)`.
    Pca,
    /// `z = Uᵀ (Λ + εI)^{-1/2} U (x − m)`.
    Zca,
}

/// The mean of `n` rows of length `d`, in `f64`.
pub fn row_mean(x: &[f32], n: usize, d: usize) -> Vec<f64> {
    let mut m = vec![0.0f64; d];
    for row in x.chunks_exact(d.max(1)).take(n) {
        for (a, &v) in m.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    m.iter_mut().for_each(|v| *v /= n.max(1) as f64);
    m
}

/// `Covmat = (1/n) Σᵢ (xᵢ − m)(xᵢ − m)ᵀ` of `n` rows of length `d` (row-major
/// `d × d`, `f64`), by GEMMs over chunks of centred rows.
pub fn covariance(x: &[f32], n: usize, d: usize, mean: &[f64]) -> Vec<f64> {
    let mut acc = vec![0.0f64; d * d];
    let mut part = vec![0.0f32; d * d];
    let mut buf = Vec::with_capacity(CHUNK_ROWS.min(n) * d);
    for chunk in x[..n * d].chunks(CHUNK_ROWS * d.max(1)) {
        let r = chunk.len() / d.max(1);
        buf.clear();
        for row in chunk.chunks_exact(d) {
            buf.extend(row.iter().zip(mean).map(|(&v, &m)| (v as f64 - m) as f32));
        }
        // part = Xcᵀ · Xc (d × d, Xc is r × d row-major), block by block on and
        // above the diagonal only: the product is symmetric, so this saves
        // nearly half the flops.
        for i0 in (0..d).step_by(COV_BLOCK) {
            let bi = COV_BLOCK.min(d - i0);
            for j0 in (i0..d).step_by(COV_BLOCK) {
                let bj = COV_BLOCK.min(d - j0);
                gemm(
                    Trans::Yes,
                    Trans::No,
                    bi,
                    bj,
                    r,
                    1.0,
                    &buf[i0..],
                    d,
                    &buf[j0..],
                    d,
                    0.0,
                    &mut part[i0 * d + j0..],
                    d,
                );
                for i in i0..i0 + bi {
                    for j in j0..j0 + bj {
                        acc[i * d + j] += part[i * d + j] as f64;
                    }
                }
            }
        }
    }
    // Mirror the upper triangle and divide by n.
    let inv = 1.0 / n.max(1) as f64;
    for i in 0..d {
        for j in i..d {
            let v = acc[i * d + j] * inv;
            acc[i * d + j] = v;
            acc[j * d + i] = v;
        }
    }
    acc
}

/// Side of the blocks of the covariance GEMMs.
const COV_BLOCK: usize = 512;

/// The eigenvalues (decreasing, clamped at 0) and the matching unit eigenvectors
/// as the rows of a row-major `d × d` matrix (`U` of the module docs).
pub fn symmetric_eigen(cov: &[f64], d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let a = Mat::<f64>::from_fn(d, d, |i, j| cov[i * d + j]);
    let evd = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| DataError::Invalid(format!("eigendecomposition failed: {e:?}")))?;
    let (u, s) = (evd.U(), evd.S());
    // faer sorts increasing; we want the largest-variance direction first.
    let order: Vec<usize> = (0..d).rev().collect();
    let vals = order.iter().map(|&k| s[k].max(0.0)).collect();
    let mut rows = vec![0.0f64; d * d];
    for (r, &k) in order.iter().enumerate() {
        for i in 0..d {
            rows[r * d + i] = u[(i, k)];
        }
    }
    Ok((vals, rows))
}

/// The whitening matrix of the module docs from eigenvalues and eigenvector rows.
fn whitening_matrix(kind: WhiteningKind, vals: &[f64], u: &[f64], d: usize, eps: f64) -> Vec<f32> {
    let scale: Vec<f64> = vals.iter().map(|&l| 1.0 / (l + eps).sqrt()).collect();
    let mut su = u.to_vec(); // (Λ + εI)^{-1/2} U
    for (row, &s) in su.chunks_exact_mut(d).zip(&scale) {
        row.iter_mut().for_each(|v| *v *= s);
    }
    match kind {
        WhiteningKind::Pca => su.iter().map(|&v| v as f32).collect(),
        WhiteningKind::Zca => {
            let mut w = vec![0.0f64; d * d];
            gemm(
                Trans::Yes,
                Trans::No,
                d,
                d,
                d,
                1.0,
                u,
                d,
                &su,
                d,
                0.0,
                &mut w,
                d,
            );
            w.iter().map(|&v| v as f32).collect()
        }
    }
}

/// A fitted PCA or ZCA whitening of vectors of length `d`: `z = W (x − m)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Whitening {
    /// PCA or ZCA.
    pub kind: WhiteningKind,
    /// The `ε` added to every eigenvalue.
    pub eps: f32,
    /// The training mean `m`, length `d`.
    pub mean: Vec<f32>,
    /// The matrix `W`, row-major `d × d`.
    pub matrix: Vec<f32>,
    /// The eigenvalues `λₖ` of the training covariance, decreasing.
    pub eigenvalues: Vec<f32>,
}

pub(crate) fn check_eps(eps: f32, what: &str) -> Result<()> {
    if eps > 0.0 && eps.is_finite() {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "{what}: epsilon must be positive and finite, found {eps}"
        )))
    }
}

impl Whitening {
    /// Fits on `n` rows of length `d` (row-major `x`). Fails for `n = 0`, `d = 0`,
    /// a short buffer or `ε ≤ 0`.
    pub fn fit(kind: WhiteningKind, x: &[f32], n: usize, d: usize, eps: f32) -> Result<Self> {
        check_eps(eps, "whitening")?;
        if n == 0 || d == 0 || x.len() < n * d {
            return Err(DataError::Invalid(format!(
                "whitening: expected a non-empty set of {d}-vectors, found {n} rows in {} values",
                x.len()
            )));
        }
        let mean = row_mean(x, n, d);
        let cov = covariance(x, n, d, &mean);
        Self::from_moments(kind, &mean, &cov, d, eps)
    }

    /// Builds the whitening from a mean and covariance (`f64`, row-major `d × d`).
    pub fn from_moments(
        kind: WhiteningKind,
        mean: &[f64],
        cov: &[f64],
        d: usize,
        eps: f32,
    ) -> Result<Self> {
        check_eps(eps, "whitening")?;
        let (vals, u) = symmetric_eigen(cov, d)?;
        Ok(Whitening {
            kind,
            eps,
            mean: mean.iter().map(|&v| v as f32).collect(),
            matrix: whitening_matrix(kind, &vals, &u, d, eps as f64),
            eigenvalues: vals.iter().map(|&v| v as f32).collect(),
        })
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Whitens `n` rows of length `d` in place: `xᵢ ← W (xᵢ − m)`, i.e. for the
    /// centred rows `Xc`, `Z = Xc Wᵀ` by GEMMs over chunks of rows.
    pub fn apply(&self, x: &mut [f32]) -> Result<()> {
        let d = self.dim();
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(DataError::Invalid(format!(
                "whitening: {} values are not a whole number of {d}-vectors",
                x.len()
            )));
        }
        let mut out = vec![0.0f32; CHUNK_ROWS.min(x.len() / d) * d];
        for chunk in x.chunks_mut(CHUNK_ROWS * d) {
            let r = chunk.len() / d;
            for row in chunk.chunks_exact_mut(d) {
                row.iter_mut().zip(&self.mean).for_each(|(v, m)| *v -= m);
            }
            let o = &mut out[..r * d];
            gemm(
                Trans::No,
                Trans::Yes,
                r,
                d,
                d,
                1.0,
                chunk,
                d,
                &self.matrix,
                d,
                0.0,
                o,
                d,
            );
            chunk.copy_from_slice(o);
        }
        Ok(())
    }
}

/// Zero padding of a patch-ZCA convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: an `H × W` image gives `(H − k + 1) × (W − k + 1)`.
    #[default]
    Valid,
    /// `⌊(k−1)/2⌋` zeros above and left, the rest below and right: the output has
    /// the input's size (border patches then contain zeros the fit never saw).
    Same,
}

/// ZCA whitening of `k × k` patches, as a fixed convolution: each patch vector
/// `p` (length `C·k·k`, ordered channel, row, column) becomes `W (p − m)`, so
/// output slice `o` at a position is `Σ_{c,i,j} K[o,c,i,j]·I[c, u+i, v+j] + b[o]`
/// with `K` = `W` reshaped to `[C·k·k, C, k, k]` and `b = −W m`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchZca {
    /// Input channels `C`.
    pub channels: usize,
    /// Patch side `k`.
    pub kernel: usize,
    /// The ZCA of the patch vectors (`d = C·k·k`).
    pub whitening: Whitening,
}

impl PatchZca {
    /// Fits on every valid `k × k` patch of `n` images of shape `[C, H, W]`: the
    /// patch moments are summed image by image (one `im2col` and one GEMM each),
    /// so no patch matrix of the whole set is ever held.
    pub fn fit(x: &[f32], n: usize, shape: [usize; 3], kernel: usize, eps: f32) -> Result<Self> {
        Self::fit_kind(WhiteningKind::Zca, x, n, shape, kernel, eps)
    }

    /// As [`PatchZca::fit`] with the rule chosen: [`WhiteningKind::Pca`]
    /// gives filters that are the covariance's eigenvectors scaled by
    /// `1/√(λ + ε)` (the output slices are then decorrelated patch
    /// components, in decreasing order of variance).
    pub fn fit_kind(
        kind: WhiteningKind,
        x: &[f32],
        n: usize,
        shape: [usize; 3],
        kernel: usize,
        eps: f32,
    ) -> Result<Self> {
        check_eps(eps, "patch ZCA")?;
        if x.len() < n.saturating_mul(crate::geometry::numel3(shape)) {
            return Err(DataError::Invalid(format!(
                "patch whitening: {n} images of shape {shape:?} need {} values, found {}",
                n.saturating_mul(crate::geometry::numel3(shape)),
                x.len()
            )));
        }
        let [c, h, w] = shape;
        if kernel == 0 || kernel > h || kernel > w || c == 0 || n == 0 {
            return Err(DataError::Invalid(format!(
                "patch ZCA: expected a non-empty set of images at least {kernel}x{kernel} with a channel and k >= 1, found {n} images of shape {shape:?}"
            )));
        }
        let g = geometry(c, h, w, kernel, Padding::Valid, 1);
        let (d, ohw) = (g.patch(), g.out_h() * g.out_w());
        let img = c * h * w;
        let (sum, sq) = x[..n * img]
            .par_chunks(img * 64)
            .map(|imgs| {
                let mut col = vec![0.0f32; d * ohw];
                let mut part = vec![0.0f32; d * d];
                let (mut s, mut q) = (vec![0.0f64; d], vec![0.0f64; d * d]);
                for xi in imgs.chunks_exact(img) {
                    im2col(&g, xi, &mut col, ohw);
                    for (a, row) in s.iter_mut().zip(col.chunks_exact(ohw)) {
                        *a += row.iter().map(|&v| v as f64).sum::<f64>();
                    }
                    gemm(
                        Trans::No,
                        Trans::Yes,
                        d,
                        d,
                        ohw,
                        1.0,
                        &col,
                        ohw,
                        &col,
                        ohw,
                        0.0,
                        &mut part,
                        d,
                    );
                    q.iter_mut().zip(&part).for_each(|(a, &p)| *a += p as f64);
                }
                (s, q)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold(
                (vec![0.0f64; d], vec![0.0f64; d * d]),
                |(mut s, mut q), (a, b)| {
                    s.iter_mut().zip(&a).for_each(|(x, y)| *x += y);
                    q.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    (s, q)
                },
            );
        let count = (n * ohw) as f64;
        let mean: Vec<f64> = sum.iter().map(|v| v / count).collect();
        // Covmat = E[ppᵀ] − m mᵀ (in f64, the cancellation is harmless here).
        let cov: Vec<f64> = (0..d * d)
            .map(|ij| sq[ij] / count - mean[ij / d] * mean[ij % d])
            .collect();
        let whitening = Whitening::from_moments(kind, &mean, &cov, d, eps)?;
        Ok(PatchZca {
            channels: c,
            kernel,
            whitening,
        })
    }

    /// airbench's patch-whitening layer: the filters of [`PatchZca::weight`]
    /// and their negations, `[2·C·k·k, C, k, k]`, with biases `[2·C·k·k]`
    /// (`−W m` and `+W m`), so that a ReLU or GELU after it keeps both signs
    /// of every component.
    pub fn signed_filters(&self) -> Result<(Tensor<f32>, Tensor<f32>)> {
        let (c, k) = (self.channels, self.kernel);
        let d = self.whitening.dim();
        let w = &self.whitening.matrix;
        let b = self.bias_vec();
        let weight: Vec<f32> = w.iter().copied().chain(w.iter().map(|v| -v)).collect();
        let bias: Vec<f32> = b.iter().copied().chain(b.iter().map(|v| -v)).collect();
        Ok((
            Tensor::from_vec(weight, &[2 * d, c, k, k])?,
            Tensor::from_vec(bias, &[2 * d])?,
        ))
    }

    /// The convolution weight `[C·k·k, C, k, k]` (output slices = patch dimension).
    pub fn weight(&self) -> Result<Tensor<f32>> {
        let (c, k) = (self.channels, self.kernel);
        Ok(Tensor::from_vec(
            self.whitening.matrix.clone(),
            &[c * k * k, c, k, k],
        )?)
    }

    /// The convolution bias `b = −W m`, `[C·k·k]`.
    pub fn bias(&self) -> Result<Tensor<f32>> {
        Ok(Tensor::from_vec(self.bias_vec(), &[self.whitening.dim()])?)
    }

    fn bias_vec(&self) -> Vec<f32> {
        let (d, wz) = (self.whitening.dim(), &self.whitening);
        (0..d)
            .map(|o| {
                -wz.matrix[o * d..(o + 1) * d]
                    .iter()
                    .zip(&wz.mean)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// The output shape `[C·k·k, H', W']` for `[C, H, W]` images.
    pub fn output_shape(&self, shape: [usize; 3], padding: Padding) -> Result<[usize; 3]> {
        let [c, h, w] = shape;
        let k = self.kernel;
        if c != self.channels || (padding == Padding::Valid && (h < k || w < k)) || h * w == 0 {
            return Err(DataError::Invalid(format!(
                "patch ZCA: fitted on {} channels with {k}x{k} patches, cannot apply to images of shape {shape:?}",
                self.channels
            )));
        }
        let g = geometry(c, h, w, k, padding, 1);
        Ok([g.c_out, g.out_h(), g.out_w()])
    }

    /// Applies the fitted convolution to `n` images `[C, H, W]`, returning the
    /// outputs (`[n, C·k·k, H', W']`, row-major) and their image shape.
    pub fn apply(
        &self,
        x: &[f32],
        n: usize,
        shape: [usize; 3],
        padding: Padding,
    ) -> Result<(Vec<f32>, [usize; 3])> {
        let out_shape = self.output_shape(shape, padding)?;
        let [c, h, w] = shape;
        if x.len() != n * c * h * w {
            return Err(DataError::Invalid(format!(
                "patch ZCA: {} values for {n} images of shape {shape:?}",
                x.len()
            )));
        }
        let g = geometry(c, h, w, self.kernel, padding, n);
        let mut y = vec![0.0f32; n * g.out_image()];
        conv2d_forward(
            &g,
            x,
            &self.whitening.matrix,
            Some(&self.bias_vec()),
            &mut y,
        );
        Ok((y, out_shape))
    }

    /// [`PatchZca::apply`] on an `[N, C, H, W]` tensor.
    pub fn apply_tensor(&self, x: &Tensor<f32>, padding: Padding) -> Result<Tensor<f32>> {
        let s = x.shape();
        if s.len() != 4 {
            return Err(DataError::Invalid(format!(
                "patch ZCA: expected an [N, C, H, W] tensor, found shape {s:?}"
            )));
        }
        let (y, [o, oh, ow]) =
            self.apply(&x.to_contiguous_slice(), s[0], [s[1], s[2], s[3]], padding)?;
        Ok(Tensor::from_vec(y, &[s[0], o, oh, ow])?)
    }
}

fn geometry(
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    padding: Padding,
    batch: usize,
) -> ConvGeometry {
    let (lo, hi) = match padding {
        Padding::Valid => (0, 0),
        Padding::Same => ((k - 1) / 2, k - 1 - (k - 1) / 2),
    };
    ConvGeometry {
        batch,
        c_in: c,
        h,
        w,
        c_out: c * k * k,
        kh: k,
        kw: k,
        stride_h: 1,
        stride_w: 1,
        pad_top: lo,
        pad_bottom: hi,
        pad_left: lo,
        pad_right: hi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_covariance_matches_the_definition() {
        // d spans two GEMM blocks, with a ragged last one.
        let (n, d) = (37, COV_BLOCK + 21);
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 + (i % d) as f32 * 0.01)
            .collect();
        let m = row_mean(&x, n, d);
        let c = covariance(&x, n, d, &m);
        for &(i, j) in &[
            (0, 0),
            (3, 530),
            (530, 3),
            (520, 532),
            (d - 1, d - 1),
            (511, 512),
        ] {
            let want: f64 = x
                .chunks_exact(d)
                .map(|r| (r[i] as f64 - m[i]) * (r[j] as f64 - m[j]))
                .sum::<f64>()
                / n as f64;
            assert!(
                (c[i * d + j] - want).abs() < 1e-4,
                "({i},{j}) {} vs {want}",
                c[i * d + j]
            );
        }
    }
}

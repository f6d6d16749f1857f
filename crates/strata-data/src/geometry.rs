//! Geometric operations on one CHW image: resizing with a proper filter, crops
//! with zero padding, horizontal flips and rotations by bilinear sampling.
//!
//! Shared by the preprocessing steps (resize and centre crop) and the
//! augmentations (random crops, rescales, rotations, flips). All are per-pixel
//! loops over small images; they run on the prefetch thread during training.

use crate::error::{DataError, Result};
use image::imageops::FilterType;
use image::{ImageBuffer, Luma};

/// The resampling filter of a resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Linear interpolation (a tent filter, widened when shrinking so it averages
    /// rather than aliases); never overshoots.
    #[default]
    Triangle,
    /// Cubic Catmull–Rom spline: sharper, may overshoot slightly (clipped to the
    /// plane's range).
    CatmullRom,
    /// Lanczos windowed sinc with 3 lobes: sharpest, clipped like Catmull–Rom.
    Lanczos3,
}

impl Filter {
    fn to_image(self) -> FilterType {
        match self {
            Filter::Triangle => FilterType::Triangle,
            Filter::CatmullRom => FilterType::CatmullRom,
            Filter::Lanczos3 => FilterType::Lanczos3,
        }
    }
}

/// Number of values of a `[C, H, W]` image.
pub(crate) fn numel3(s: [usize; 3]) -> usize {
    s[0] * s[1] * s[2]
}

/// Resizes a `[C, H, W]` image to `[C, nh, nw]`, channel by channel, with `filter`.
///
/// The `image` crate clamps `f32` samples to `[0, 1]`, so each plane is mapped
/// affinely onto `[0, 1]` first and back afterwards: values of any range (whitened
/// pixels, say) survive, and overshooting filters are clipped to the plane's range.
pub fn resize_image(
    img: &[f32],
    shape: [usize; 3],
    nh: usize,
    nw: usize,
    filter: Filter,
) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    if img.len() != numel3(shape) {
        return Err(DataError::Invalid(format!(
            "resize: image holds {} values, expected {} for shape {shape:?}",
            img.len(),
            numel3(shape)
        )));
    }
    if h == 0 || w == 0 || nh == 0 || nw == 0 {
        return Err(DataError::Invalid(format!(
            "resize: sizes must be positive, found {h}x{w} -> {nh}x{nw}"
        )));
    }
    let too_big = |v: usize| u32::try_from(v).is_err();
    if too_big(h) || too_big(w) || too_big(nh) || too_big(nw) {
        return Err(DataError::Invalid(
            "resize: image side over u32::MAX".into(),
        ));
    }
    if (nh, nw) == (h, w) {
        return Ok(img.to_vec());
    }
    let mut out = Vec::with_capacity(c * nh * nw);
    for plane in img.chunks_exact(h * w) {
        let (lo, hi) = plane
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let span = hi - lo;
        if !(span > 0.0 && span.is_finite()) {
            // Constant (or non-finite) plane: any proper filter keeps a constant.
            out.extend(std::iter::repeat_n(
                if lo.is_finite() { lo } else { 0.0 },
                nh * nw,
            ));
            continue;
        }
        let unit: Vec<f32> = plane.iter().map(|&v| (v - lo) / span).collect();
        let buf = ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(w as u32, h as u32, unit)
            .ok_or_else(|| DataError::Invalid("resize: buffer size".into()))?;
        let r = image::imageops::resize(&buf, nw as u32, nh as u32, filter.to_image());
        out.extend(r.into_raw().into_iter().map(|v| v * span + lo));
    }
    Ok(out)
}

/// The `[C, ch, cw]` window of a `[C, H, W]` image whose top-left corner is at row
/// `top`, column `left` (either may be negative or reach past the image): pixels
/// outside the image read 0, as after zero padding.
pub fn crop_window(
    img: &[f32],
    shape: [usize; 3],
    top: isize,
    left: isize,
    ch: usize,
    cw: usize,
) -> Vec<f32> {
    let [c, h, w] = shape;
    let mut out = vec![0.0f32; c * ch * cw];
    for k in 0..c {
        let plane = &img[k * h * w..(k + 1) * h * w];
        for i in 0..ch {
            let y = top + i as isize;
            if y < 0 || y >= h as isize {
                continue;
            }
            let src = &plane[y as usize * w..(y as usize + 1) * w];
            let dst = &mut out[(k * ch + i) * cw..(k * ch + i + 1) * cw];
            // Columns j with 0 ≤ left + j < w.
            let j0 = (-left).max(0) as usize;
            let j1 = ((w as isize - left).max(0) as usize).min(cw);
            if j0 < j1 {
                let x0 = (left + j0 as isize) as usize;
                dst[j0..j1].copy_from_slice(&src[x0..x0 + (j1 - j0)]);
            }
        }
    }
    out
}

/// The centred `[C, ch, cw]` window of an image (zero-padded where it is larger).
pub fn center_crop(img: &[f32], shape: [usize; 3], ch: usize, cw: usize) -> Vec<f32> {
    let top = (shape[1] as isize - ch as isize).div_euclid(2);
    let left = (shape[2] as isize - cw as isize).div_euclid(2);
    crop_window(img, shape, top, left, ch, cw)
}

/// Mirrors a `[C, H, W]` image left to right, in place.
pub fn flip_horizontal(img: &mut [f32], shape: [usize; 3]) {
    let w = shape[2];
    if w == 0 {
        return;
    }
    for row in img.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Resizes an image so that it just covers `oh × ow` while keeping its aspect
/// ratio (scale `max(oh/H, ow/W)`), then takes the centred `oh × ow` window: the
/// "resize and crop" that makes images of any size the same size.
pub fn resize_center_crop(
    img: &[f32],
    shape: [usize; 3],
    oh: usize,
    ow: usize,
    filter: Filter,
) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return Err(DataError::Invalid(format!(
            "resize-crop: sizes must be positive, found {h}x{w} -> {oh}x{ow}"
        )));
    }
    let s = (oh as f64 / h as f64).max(ow as f64 / w as f64);
    let nh = ((h as f64 * s).round() as usize).max(oh);
    let nw = ((w as f64 * s).round() as usize).max(ow);
    let r = resize_image(img, shape, nh, nw, filter)?;
    Ok(center_crop(&r, [c, nh, nw], oh, ow))
}

/// The largest zoom `z ≤ 1` (input pixels per output pixel) such that an
/// `oh × ow` output rotated by `angle` radians about the centre samples only
/// inside an `h × w` input: the corner sample points, at
/// `±((ow−1)/2, (oh−1)/2)·z` rotated, must stay between the outer pixel centres,
/// `|x| ≤ (w−1)/2` and `|y| ≤ (h−1)/2`.
pub fn rotation_zoom(h: usize, w: usize, oh: usize, ow: usize, angle: f32) -> f32 {
    let (s, c) = (angle.abs().sin(), angle.abs().cos());
    let (hx, hy) = ((ow.max(1) - 1) as f32, (oh.max(1) - 1) as f32);
    let (wx, wy) = ((w.max(1) - 1) as f32, (h.max(1) - 1) as f32);
    let bx = hx * c + hy * s;
    let by = hx * s + hy * c;
    let mut z = 1.0f32;
    if bx > 0.0 {
        z = z.min(wx / bx);
    }
    if by > 0.0 {
        z = z.min(wy / by);
    }
    // A hair inside, so rounding never reaches a pixel beyond the border.
    z * (1.0 - 1e-5)
}

/// Rotates a `[C, H, W]` image by `angle` radians (counter-clockwise as seen on
/// the screen) about its centre and returns the centred `[C, oh, ow]` window,
/// zoomed in by [`rotation_zoom`] so that every output pixel is a bilinear blend
/// of input pixels only: no "unknown" pixel enters the crop.
///
/// The sampler itself reads 0 outside the image, so the test that an all-ones
/// image gives an all-ones output checks the geometry, not a clamp.
pub fn rotate_crop(img: &[f32], shape: [usize; 3], angle: f32, oh: usize, ow: usize) -> Vec<f32> {
    let [c, h, w] = shape;
    let z = rotation_zoom(h, w, oh, ow, angle);
    let (sin, cos) = angle.sin_cos();
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let (ocy, ocx) = ((oh as f32 - 1.0) / 2.0, (ow as f32 - 1.0) / 2.0);
    let mut out = vec![0.0f32; c * oh * ow];
    let at = |plane: &[f32], y: isize, x: isize| -> f32 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            0.0
        } else {
            plane[y as usize * w + x as usize]
        }
    };
    for i in 0..oh {
        for j in 0..ow {
            let (u, v) = ((j as f32 - ocx) * z, (i as f32 - ocy) * z);
            // Image rows grow downwards, so a counter-clockwise turn on screen
            // maps output offsets (u, v) back to input offsets as below.
            let x = cx + cos * u - sin * v;
            let y = cy + sin * u + cos * v;
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for k in 0..c {
                let plane = &img[k * h * w..(k + 1) * h * w];
                let top = at(plane, y0, x0) * (1.0 - fx) + at(plane, y0, x0 + 1) * fx;
                let bot = at(plane, y0 + 1, x0) * (1.0 - fx) + at(plane, y0 + 1, x0 + 1) * fx;
                out[(k * oh + i) * ow + j] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    out
}

/// The `ch × cw` window at (`top`, `left`) of the image reflected about its
/// edges (`… 2 1 | 0 1 2 … | …`, the edge pixel not repeated, as numpy's and
/// PyTorch's `reflect`); the window may reach at most `h − 1` rows and
/// `w − 1` columns past the image.
pub fn crop_window_reflect(
    img: &[f32],
    shape: [usize; 3],
    top: isize,
    left: isize,
    ch: usize,
    cw: usize,
) -> Vec<f32> {
    let [c, h, w] = shape;
    let reflect = |v: isize, n: usize| -> usize {
        let n = n as isize;
        let r = if v < 0 {
            -v
        } else if v >= n {
            2 * (n - 1) - v
        } else {
            v
        };
        r.clamp(0, n - 1) as usize
    };
    let cols: Vec<usize> = (0..cw).map(|j| reflect(left + j as isize, w)).collect();
    let mut out = vec![0.0f32; c * ch * cw];
    for k in 0..c {
        let plane = &img[k * h * w..(k + 1) * h * w];
        for i in 0..ch {
            let y = reflect(top + i as isize, h);
            let src = &plane[y * w..(y + 1) * w];
            let dst = &mut out[(k * ch + i) * cw..(k * ch + i + 1) * cw];
            for (d, &x) in dst.iter_mut().zip(&cols) {
                *d = src[x];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_window_reflect_mirrors_without_repeating_the_edge() {
        let img: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        // 1 2 3 / 4 5 6 / 7 8 9 reflected: row −1 is row 1, column −1 is column 1.
        let c = crop_window_reflect(&img, [1, 3, 3], -1, -1, 3, 3);
        assert_eq!(c, vec![5., 4., 5., 2., 1., 2., 5., 4., 5.]);
        let c = crop_window_reflect(&img, [1, 3, 3], 1, 1, 3, 3);
        assert_eq!(c, vec![5., 6., 5., 8., 9., 8., 5., 6., 5.]);
        assert_eq!(crop_window_reflect(&img, [1, 3, 3], 0, 0, 3, 3), img);
    }

    #[test]
    fn crop_window_pads_with_zeros() {
        let img: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let c = crop_window(&img, [1, 3, 3], -1, -1, 3, 3);
        assert_eq!(c, vec![0., 0., 0., 0., 1., 2., 0., 4., 5.]);
        let c = crop_window(&img, [1, 3, 3], 1, 2, 2, 2);
        assert_eq!(c, vec![6., 0., 9., 0.]);
        assert_eq!(center_crop(&img, [1, 3, 3], 1, 1), vec![5.]);
        let mut f = img.clone();
        flip_horizontal(&mut f, [1, 3, 3]);
        assert_eq!(&f[..3], &[3., 2., 1.]);
    }

    #[test]
    fn resize_keeps_range_and_constants() {
        let img: Vec<f32> = (0..16).map(|v| v as f32 - 8.0).collect();
        let r = resize_image(&img, [1, 4, 4], 8, 8, Filter::Lanczos3).unwrap();
        assert_eq!(r.len(), 64);
        assert!(r.iter().all(|&v| (-8.0..=7.0).contains(&v)));
        let k = resize_image(&[-3.0; 8], [2, 2, 2], 5, 3, Filter::Triangle).unwrap();
        assert!(k.iter().all(|&v| v == -3.0));
        let rc = resize_center_crop(&vec![0.5; 3 * 10 * 20], [3, 10, 20], 8, 8, Filter::Triangle)
            .unwrap();
        assert_eq!(rc.len(), 3 * 64);
        assert!(resize_image(&img, [1, 4, 4], 0, 3, Filter::Triangle).is_err());
        assert!(resize_image(&img, [1, 4, 3], 2, 3, Filter::Triangle).is_err());
    }

    #[test]
    fn rotation_by_zero_is_identity_and_quarter_turn_permutes() {
        let img: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let r = rotate_crop(&img, [1, 5, 5], 0.0, 5, 5);
        assert!(r.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-3));
        let q = rotate_crop(&img, [1, 5, 5], std::f32::consts::FRAC_PI_2, 5, 5);
        // A counter-clockwise quarter turn moves the top-right corner to the top-left.
        assert!((q[0] - img[4]).abs() < 1e-3, "{q:?}");
    }
}

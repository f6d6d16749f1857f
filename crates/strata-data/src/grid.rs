//! Writing a grid of images to a PNG file: the data, their augmentations,
//! whitened images, or the kernels of a first convolutional layer
//! (`[out, C, k, k]`, one tile per kernel).

use crate::error::{DataError, Result};
use image::{GrayImage, RgbImage};
use std::path::Path;
use strata_tensor::Tensor;

/// How values are mapped to grey levels `0..=255`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum GridScale {
    /// Each image's own minimum → 0 and maximum → 255 (kernels, whitened images).
    #[default]
    PerImage,
    /// The minimum and maximum over all images (compares brightness across tiles).
    Global,
    /// A fixed range, clipped (`[0, 1]` for raw pixels).
    Fixed {
        /// Value shown black.
        lo: f32,
        /// Value shown white.
        hi: f32,
    },
}

/// Layout and scaling of [`save_grid`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridOptions {
    /// Tiles per row; `None` for `⌈√N⌉`.
    pub columns: Option<usize>,
    /// Pixels of background between tiles and around the grid.
    pub padding: usize,
    /// Value scaling.
    pub scale: GridScale,
    /// Each image pixel becomes an `upscale × upscale` block (≥ 1; e.g. 8 for 8×8
    /// digits or 3×3 kernels).
    pub upscale: usize,
    /// Grey level of the padding, `0..=255`.
    pub background: u8,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            columns: None,
            padding: 1,
            scale: GridScale::PerImage,
            upscale: 1,
            background: 255,
        }
    }
}

fn range(v: &[f32]) -> (f32, f32) {
    v.iter()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// The grid of an `[N, C, H, W]` tensor (C = 1 grey, C = 3 RGB) as RGB pixels:
/// `(width, height, rgb bytes)`.
pub fn grid_pixels(images: &Tensor<f32>, opts: &GridOptions) -> Result<(usize, usize, Vec<u8>)> {
    let s = images.shape();
    if s.len() != 4 || !(s[1] == 1 || s[1] == 3) || s[0] == 0 || s[2] == 0 || s[3] == 0 {
        return Err(DataError::Invalid(format!(
            "image grid: expected a non-empty [N, C, H, W] tensor with C = 1 or 3, found shape {s:?}"
        )));
    }
    if opts.upscale == 0 || opts.columns == Some(0) {
        return Err(DataError::Invalid(
            "image grid: upscale and columns must be at least 1".into(),
        ));
    }
    if let GridScale::Fixed { lo, hi } = opts.scale {
        if !(lo < hi && lo.is_finite() && hi.is_finite()) {
            return Err(DataError::Invalid(format!(
                "image grid: fixed range must satisfy lo < hi, found [{lo}, {hi}]"
            )));
        }
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let cols = opts
        .columns
        .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
        .min(n);
    let rows = n.div_ceil(cols);
    let (th, tw, p, up) = (
        h * opts.upscale,
        w * opts.upscale,
        opts.padding,
        opts.upscale,
    );
    let width = cols * tw + (cols + 1) * p;
    let height = rows * th + (rows + 1) * p;
    if width > 1 << 15 || height > 1 << 15 {
        return Err(DataError::Invalid(format!(
            "image grid: {width}x{height} pixels is too large (at most 32768 a side)"
        )));
    }
    let x = images.to_contiguous_slice();
    let global = range(&x);
    let mut px = vec![opts.background; width * height * 3];
    for (k, img) in x.chunks_exact(c * h * w).enumerate() {
        let (lo, hi) = match opts.scale {
            GridScale::PerImage => range(img),
            GridScale::Global => global,
            GridScale::Fixed { lo, hi } => (lo, hi),
        };
        let span = if hi > lo { hi - lo } else { 1.0 };
        let level = |v: f32| -> u8 {
            let t = ((v - lo) / span).clamp(0.0, 1.0);
            if t.is_nan() {
                0
            } else {
                (t * 255.0).round() as u8
            }
        };
        let (y0, x0) = (p + (k / cols) * (th + p), p + (k % cols) * (tw + p));
        for i in 0..th {
            for j in 0..tw {
                let src = (i / up) * w + j / up;
                let o = ((y0 + i) * width + x0 + j) * 3;
                for ch in 0..3 {
                    px[o + ch] = level(img[(ch % c) * h * w + src]);
                }
            }
        }
    }
    Ok((width, height, px))
}

/// Writes the grid of an `[N, C, H, W]` tensor to a PNG file (grey for C = 1,
/// RGB for C = 3). Returns the image size `(width, height)`.
pub fn save_grid(
    path: impl AsRef<Path>,
    images: &Tensor<f32>,
    opts: &GridOptions,
) -> Result<(u32, u32)> {
    let path = path.as_ref();
    let (w, h, px) = grid_pixels(images, opts)?;
    let (w, h) = (w as u32, h as u32);
    let err = |e: image::ImageError| match e {
        image::ImageError::IoError(io) => DataError::io(path, io),
        e => DataError::format(path, format!("cannot write PNG: {e}")),
    };
    if images.shape()[1] == 1 {
        let grey: Vec<u8> = px.chunks_exact(3).map(|p| p[0]).collect();
        GrayImage::from_raw(w, h, grey)
            .ok_or_else(|| DataError::Invalid("image grid: buffer size".into()))?
            .save_with_format(path, image::ImageFormat::Png)
            .map_err(err)?;
    } else {
        RgbImage::from_raw(w, h, px)
            .ok_or_else(|| DataError::Invalid("image grid: buffer size".into()))?
            .save_with_format(path, image::ImageFormat::Png)
            .map_err(err)?;
    }
    Ok((w, h))
}

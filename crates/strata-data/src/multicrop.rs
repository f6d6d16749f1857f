//! Test-time multi-crop (section 12.4.2: "practical systems quite often apply the
//! same network to different croppings of the same image").
//!
//! [`multi_crop`] cuts fixed views of a minibatch; the caller runs the network on
//! each view and **averages the predicted class probabilities** (or logits) over
//! the views before taking the arg-max.

use crate::error::{DataError, Result};
use crate::geometry::{crop_window, crop_window_reflect, flip_horizontal};
use strata_tensor::Tensor;

/// The views of [`multi_crop`], in order (the mirrored views follow in the same
/// order when asked for).
pub const MULTI_CROP_VIEWS: [&str; 5] = [
    "center",
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
];

/// The top-left corners `(row, column)` of the five `h × w` views of an `H × W`
/// image, in the order of [`MULTI_CROP_VIEWS`]; the centre is at
/// `(⌊(H−h)/2⌋, ⌊(W−w)/2⌋)`.
pub fn multi_crop_offsets(big_h: usize, big_w: usize, h: usize, w: usize) -> [(usize, usize); 5] {
    let (dy, dx) = (big_h - h, big_w - w);
    [(dy / 2, dx / 2), (0, 0), (0, dx), (dy, 0), (dy, dx)]
}

/// The centre and four corner `h × w` crops of every image of a `[B, C, H, W]`
/// batch, each view a `[B, C, h, w]` tensor; with `mirrors`, also their left–right
/// mirror images (10 views). Windows that coincide are cut once (views as large
/// as the images give one window, and with `mirrors` two views: the image and
/// its mirror). Average the network's predictions over the views.
pub fn multi_crop(
    images: &Tensor<f32>,
    h: usize,
    w: usize,
    mirrors: bool,
) -> Result<Vec<Tensor<f32>>> {
    let s = images.shape();
    if s.len() != 4 {
        return Err(DataError::Invalid(format!(
            "multi-crop: expected a [B, C, H, W] tensor, found shape {s:?}"
        )));
    }
    let (b, shape) = (s[0], [s[1], s[2], s[3]]);
    if h == 0 || w == 0 || h > shape[1] || w > shape[2] {
        return Err(DataError::Invalid(format!(
            "multi-crop: views {h}x{w} must be positive and fit the {}x{} images",
            shape[1], shape[2]
        )));
    }
    let x = images.to_contiguous_slice();
    let n = shape.iter().product::<usize>().max(1);
    let view = |(top, left): (usize, usize), flip: bool| -> Result<Tensor<f32>> {
        let mut out = Vec::with_capacity(b * shape[0] * h * w);
        for img in x.chunks_exact(n).take(b) {
            let mut v = crop_window(img, shape, top as isize, left as isize, h, w);
            if flip {
                flip_horizontal(&mut v, [shape[0], h, w]);
            }
            out.extend(v);
        }
        Ok(Tensor::from_vec(out, &[b, shape[0], h, w])?)
    };
    // Distinct windows only: where the views are as tall or as wide as the
    // images, corners coincide (32×32 views of 32×32 images are one window),
    // and repeating a window would only weight it more, at the cost of a pass.
    let mut offsets = Vec::with_capacity(5);
    for o in multi_crop_offsets(shape[1], shape[2], h, w) {
        if !offsets.contains(&o) {
            offsets.push(o);
        }
    }
    let mut views = offsets
        .iter()
        .map(|&o| view(o, false))
        .collect::<Result<Vec<_>>>()?;
    if mirrors {
        for &o in &offsets {
            views.push(view(o, true)?);
        }
    }
    Ok(views)
}

/// airbench's test-time views of a `[B, C, H, W]` batch, each with the
/// weight its logits get: the image and its mirror (¼ each), and the image
/// shifted by `shift` pixels up-left and down-right, edges reflected, and
/// their mirrors (⅛ each); `shift = 0` gives the first two only (½ each).
/// The weights sum to 1.
pub fn translate_views(images: &Tensor<f32>, shift: usize) -> Result<Vec<(Tensor<f32>, f32)>> {
    let s = images.shape();
    if s.len() != 4 {
        return Err(DataError::Invalid(format!(
            "test-time views: expected a [B, C, H, W] tensor, found shape {s:?}"
        )));
    }
    let (b, shape) = (s[0], [s[1], s[2], s[3]]);
    if shift >= shape[1] || shift >= shape[2] {
        return Err(DataError::Invalid(format!(
            "test-time views: a shift of {shift} needs images larger than {shift}x{shift}, found {}x{}",
            shape[1], shape[2]
        )));
    }
    let x = images.to_contiguous_slice();
    let n = shape.iter().product::<usize>().max(1);
    let view = |d: isize, flip: bool| -> Result<Tensor<f32>> {
        let mut out = Vec::with_capacity(b * n);
        for img in x.chunks_exact(n).take(b) {
            let mut v = crop_window_reflect(img, shape, d, d, shape[1], shape[2]);
            if flip {
                flip_horizontal(&mut v, shape);
            }
            out.extend(v);
        }
        Ok(Tensor::from_vec(out, s)?)
    };
    if shift == 0 {
        return Ok(vec![(view(0, false)?, 0.5), (view(0, true)?, 0.5)]);
    }
    let d = shift as isize;
    Ok(vec![
        (view(0, false)?, 0.25),
        (view(0, true)?, 0.25),
        (view(-d, false)?, 0.125),
        (view(-d, true)?, 0.125),
        (view(d, false)?, 0.125),
        (view(d, true)?, 0.125),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn translate_views_are_weighted_shifts_and_mirrors() {
        let x = Tensor::from_vec((0..18).map(|v| v as f32).collect(), &[2, 1, 3, 3]).unwrap();
        let views = translate_views(&x, 1).unwrap();
        assert_eq!(views.len(), 6);
        assert!((views.iter().map(|v| v.1).sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(views[0].0.to_vec(), x.to_vec());
        // The first image mirrored: rows reversed left to right.
        assert_eq!(&views[1].0.to_vec()[..3], &[2.0, 1.0, 0.0]);
        // Up-left by one: the window starts at (−1, −1) of the reflected image.
        assert_eq!(&views[2].0.to_vec()[..3], &[4.0, 3.0, 4.0]);
        // Down-right by one: at (1, 1); its last row reflects back to row 1.
        assert_eq!(&views[4].0.to_vec()[6..9], &[4.0, 5.0, 4.0]);
        assert_eq!(translate_views(&x, 0).unwrap().len(), 2);
        assert!(translate_views(&x, 3).is_err());
    }

    proptest! {
        /// Each view is the window at one of the five offsets (mirrored in the
        /// second half), the windows are distinct, and every offset has one.
        #[test]
        fn views_are_the_distinct_windows(
            big_h in 1usize..7, big_w in 1usize..7, dh in 0usize..7, dw in 0usize..7,
            mirrors: bool,
        ) {
            let (h, w) = (big_h - dh % big_h, big_w - dw % big_w);
            let x = Tensor::from_vec(
                (0..2 * big_h * big_w).map(|v| v as f32).collect(),
                &[2, 1, big_h, big_w],
            )
            .unwrap();
            let views = multi_crop(&x, h, w, mirrors).unwrap();
            let offsets = multi_crop_offsets(big_h, big_w, h, w);
            let mut distinct: Vec<(usize, usize)> = Vec::new();
            for o in offsets {
                if !distinct.contains(&o) {
                    distinct.push(o);
                }
            }
            prop_assert_eq!(views.len(), distinct.len() * if mirrors { 2 } else { 1 });
            let xs = x.to_vec();
            for (i, v) in views.iter().enumerate() {
                let (top, left) = distinct[i % distinct.len()];
                let flip = i >= distinct.len();
                prop_assert_eq!(v.shape(), &[2, 1, h, w]);
                let got = v.to_vec();
                for b in 0..2 {
                    for r in 0..h {
                        for c in 0..w {
                            let sc = if flip { w - 1 - c } else { c };
                            let want = xs[b * big_h * big_w + (top + r) * big_w + left + sc];
                            prop_assert_eq!(got[b * h * w + r * w + c], want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn views_sit_at_the_centre_and_corners() {
        // One 1×4×5 image whose pixel value is its index.
        let x = Tensor::from_vec((0..20).map(|v| v as f32).collect(), &[1, 1, 4, 5]).unwrap();
        let v = multi_crop(&x, 2, 3, true).unwrap();
        assert_eq!(v.len(), 10);
        let firsts: Vec<f32> = v.iter().map(|t| t.to_vec()[0]).collect();
        // centre (1,1)=6, tl 0, tr (0,2)=2, bl (2,0)=10, br (2,2)=12; mirrors start at the right edge.
        assert_eq!(&firsts[..5], &[6., 0., 2., 10., 12.]);
        assert_eq!(&firsts[5..], &[8., 2., 4., 12., 14.]);
        assert_eq!(v[0].shape(), &[1, 1, 2, 3]);
        assert_eq!(v[0].to_vec(), vec![6., 7., 8., 11., 12., 13.]);
        assert!(multi_crop(&x, 5, 3, false).is_err());
        assert!(multi_crop(&x, 0, 3, false).is_err());
        // Full-size views are one window; with mirrors, the image and its mirror.
        let full = multi_crop(&x, 4, 5, true).unwrap();
        assert_eq!(full.len(), 2);
        assert_eq!(full[0].to_vec(), x.to_vec());
        assert_eq!(full[1].to_vec()[..5], [4., 3., 2., 1., 0.]);
        // Full-height views: centre, left and right (the bottom corners repeat the top).
        let rows = multi_crop(&x, 4, 3, false).unwrap();
        let firsts: Vec<f32> = rows.iter().map(|t| t.to_vec()[0]).collect();
        assert_eq!(firsts, [1., 0., 2.]);
    }
}

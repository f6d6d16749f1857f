//! Augmentation, the batcher hook, multi-crop views and image grids.

mod common;

use common::TempDir;
use proptest::prelude::*;
use std::sync::Arc;
use strata_data::*;
use strata_tensor::Tensor;

#[test]
fn output_shapes_and_eval_transform() {
    let a = Augmentation::new(1).crop(28, 28, 2).flip().rotate(10.0);
    assert_eq!(a.output_shape([1, 28, 28]).unwrap(), [1, 28, 28]);
    assert!(a.eval_transform([1, 28, 28]).unwrap().steps().is_empty());
    let b = Augmentation::new(1).rescale_crop(1.0, 1.3, 24, 24).flip();
    assert_eq!(b.output_shape([3, 32, 32]).unwrap(), [3, 24, 24]);
    let e = b.eval_transform([3, 32, 32]).unwrap();
    assert_eq!(
        e.steps(),
        &[AugmentStep::CenterCrop {
            height: 24,
            width: 24
        }]
    );
    let x = Tensor::from_vec(
        (0..3 * 32 * 32).map(|v| v as f32).collect(),
        &[1, 3, 32, 32],
    )
    .unwrap();
    let y = e.apply_batch(&x, 0, 0).unwrap();
    assert_eq!(y.shape(), &[1, 3, 24, 24]);
    assert_eq!(y.to_vec()[0], (4 * 32 + 4) as f32);
    assert_eq!(b.apply_batch(&x, 3, 1).unwrap().shape(), &[1, 3, 24, 24]);
    // A crop larger than the image (pad 4, crop 36): evaluation pads the centre.
    let c = Augmentation::new(1).crop(36, 36, 4);
    let e = c.eval_transform([3, 32, 32]).unwrap();
    let y = e.apply_batch(&x, 0, 0).unwrap();
    assert_eq!(y.shape(), &[1, 3, 36, 36]);
    // y[i][j] = x[i − 2][j − 2] inside, 0 in the 2-pixel border.
    let y = y.to_vec();
    assert_eq!((y[0], y[2 * 36 + 1], y[34 * 36 + 35]), (0.0, 0.0, 0.0));
    assert_eq!(
        (y[2 * 36 + 3], y[3 * 36 + 3], y[33 * 36 + 33]),
        (1.0, 33.0, 1023.0)
    );
}

#[test]
fn bad_augmentations_are_errors() {
    let s = [1, 8, 8];
    let err = |a: Augmentation| a.output_shape(s).unwrap_err().to_string();
    assert!(err(Augmentation::new(0).crop(11, 8, 1)).contains("crop 11x8"));
    assert!(Augmentation::new(0).crop(10, 10, 1).output_shape(s).is_ok());
    assert!(err(Augmentation::new(0).rescale_crop(0.5, 1.0, 8, 8)).contains("rescaled"));
    assert!(err(Augmentation::new(0).rescale_crop(1.2, 1.0, 8, 8)).contains("rescale range"));
    assert!(err(Augmentation::new(0).rotate(90.0)).contains("rotation"));
    assert!(err(Augmentation::new(0).rotate(f32::NAN)).contains("rotation"));
    assert!(err(Augmentation::new(0).erase(1.5)).contains("erasing probability"));
    assert!(err(Augmentation::new(0).erase(f32::NAN)).contains("erasing probability"));
    let erase = |min_area, max_area, min_aspect, value| {
        Augmentation::new(0).then(AugmentStep::Erase {
            probability: 0.5,
            min_area,
            max_area,
            min_aspect,
            value,
        })
    };
    assert!(err(erase(0.0, 0.4, 0.3, 0.0)).contains("erased area"));
    assert!(err(erase(0.5, 0.4, 0.3, 0.0)).contains("erased area"));
    assert!(err(erase(0.1, 1.5, 0.3, 0.0)).contains("erased area"));
    assert!(err(erase(0.1, 0.4, 0.0, 0.0)).contains("aspect"));
    assert!(err(erase(0.1, 0.4, 2.0, 0.0)).contains("aspect"));
    assert!(err(erase(0.1, 0.4, 0.3, f32::INFINITY)).contains("value"));
    assert!(Augmentation::new(0).flip().output_shape([0, 8, 8]).is_err());
    assert!(Augmentation::new(0)
        .flip()
        .apply_batch(&Tensor::zeros(&[4, 8]), 0, 0)
        .is_err());
    assert!(Augmentation::new(0)
        .apply_image(&[0.0; 3], [1, 2, 2], 0, 0, 0)
        .is_err());

    // The batcher refuses it up front and never panics.
    let data = digits().take(10);
    let b = Batcher::new(4)
        .unwrap()
        .augment(Augmentation::new(0).crop(12, 12, 1));
    assert!(b.check(&data).is_err());
    assert!(b.try_epoch(&data, 0).is_err());
    assert!(b.try_prefetch(Arc::new(data.clone()), 0, 2).is_err());
    assert_eq!(b.epoch(&data, 0).count(), 0);
    assert_eq!(b.prefetch(Arc::new(data), 0, 2).count(), 0);
}

#[test]
fn rotations_never_let_unknown_pixels_in() {
    // All-ones images; the sampler reads 0 outside the image.
    for &(h, w) in &[(32usize, 32usize), (28, 28), (8, 8), (20, 31)] {
        let ones = Tensor::from_vec(vec![1.0f32; 2 * 3 * h * w], &[2, 3, h, w]).unwrap();
        for max in [5.0f32, 15.0, 30.0, 45.0, 80.0] {
            let a = Augmentation::new(9).rotate(max);
            for batch in 0..20 {
                let y = a.apply_batch(&ones, 0, batch).unwrap().to_vec();
                let lo = y.iter().cloned().fold(f32::INFINITY, f32::min);
                assert!(lo > 1.0 - 1e-4, "{h}x{w} max {max}: min {lo}");
            }
        }
        // Rotation then crop: the crop of the rotated image is inside it too.
        let a = Augmentation::new(3).rotate(20.0).crop(h - 4, w - 4, 0);
        let y = a.apply_batch(&ones, 1, 1).unwrap().to_vec();
        assert!(y.iter().all(|&v| v > 1.0 - 1e-4));
    }
    // The exact worst case: a 45° turn of a square image.
    let z = rotation_zoom(32, 32, 32, 32, std::f32::consts::FRAC_PI_4);
    assert!((z - 1.0 / std::f32::consts::SQRT_2).abs() < 1e-4, "{z}");
    let r = rotate_crop(
        &[1.0; 32 * 32],
        [1, 32, 32],
        std::f32::consts::FRAC_PI_4,
        32,
        32,
    );
    assert!(r.iter().all(|&v| v > 1.0 - 1e-4));
}

#[test]
fn draws_depend_only_on_seed_epoch_and_batch() {
    let data = Arc::new(digits().take(300));
    let aug = Augmentation::new(5).crop(8, 8, 2).flip().rotate(10.0);
    let b = Batcher::new(32).unwrap().shuffle(2).augment(aug.clone());
    let direct: Vec<Batch> = b.epoch(&data, 3).collect();
    for depth in [1, 4] {
        let pre: Vec<Batch> = b.prefetch(Arc::clone(&data), 3, depth).collect();
        assert_eq!(pre.len(), direct.len());
        for (x, y) in direct.iter().zip(&pre) {
            assert_eq!(x.indices, y.indices);
            assert_eq!(x.images.to_vec(), y.images.to_vec());
        }
    }
    // Batch k is the plain batch augmented with the draws of (epoch, k).
    let plain: Vec<Batch> = Batcher::new(32)
        .unwrap()
        .shuffle(2)
        .epoch(&data, 3)
        .collect();
    let again = aug.apply_batch(&plain[4].images, 3, 4).unwrap();
    assert_eq!(again.to_vec(), direct[4].images.to_vec());
    assert_ne!(plain[4].images.to_vec(), direct[4].images.to_vec());
    // Another epoch draws differently; the same epoch again repeats exactly.
    let e4: Vec<Batch> = b.epoch(&data, 4).collect();
    let e3: Vec<Batch> = b.epoch(&data, 3).collect();
    assert_ne!(
        aug.apply_batch(&plain[0].images, 4, 0).unwrap().to_vec(),
        direct[0].images.to_vec()
    );
    assert_eq!(e3[0].images.to_vec(), direct[0].images.to_vec());
    assert_eq!(e4.len(), e3.len());
    assert_eq!(b.augmentation(), Some(&aug));
    assert_eq!(b.check(&data).unwrap(), [1, 8, 8]);
}

#[test]
fn pad_and_crop_places_the_image() {
    // With pad p the crop's top-left corner is in [-p, p]: every output row is a
    // shifted row of the input or zeros.
    let x = Tensor::from_vec((1..=16).map(|v| v as f32).collect(), &[1, 1, 4, 4]).unwrap();
    let a = Augmentation::new(0).crop(4, 4, 1);
    let mut seen = std::collections::HashSet::new();
    for b in 0..200 {
        let y = a.apply_batch(&x, 0, b).unwrap().to_vec();
        let first = y.iter().position(|&v| v != 0.0).unwrap();
        seen.insert((first, y[first] as i32));
    }
    assert_eq!(seen.len(), 9, "all 9 offsets occur: {seen:?}");
}

/// The rectangle where `y` differs from `x`, checked to be one rectangle
/// (the same in every slice) holding `value`: `(top, left, height, width)`.
fn erased_box(
    x: &[f32],
    y: &[f32],
    [c, h, w]: [usize; 3],
    value: f32,
) -> Option<(usize, usize, usize, usize)> {
    let changed: Vec<(usize, usize)> = (0..h * w)
        .filter(|&i| (0..c).any(|k| x[k * h * w + i] != y[k * h * w + i]))
        .map(|i| (i / w, i % w))
        .collect();
    let (&first, &last) = (changed.first()?, changed.last()?);
    let left = changed.iter().map(|p| p.1).min().unwrap();
    let right = changed.iter().map(|p| p.1).max().unwrap();
    let (top, bottom) = (first.0, last.0);
    for i in top..=bottom {
        for j in left..=right {
            for k in 0..c {
                assert_eq!(
                    y[k * h * w + i * w + j],
                    value,
                    "({k}, {i}, {j}) inside the box"
                );
            }
        }
    }
    assert_eq!(
        changed.len(),
        (bottom - top + 1) * (right - left + 1),
        "one rectangle"
    );
    Some((top, left, bottom - top + 1, right - left + 1))
}

#[test]
fn erasing_blanks_one_rectangle_of_the_drawn_size() {
    let shape = [3, 20, 30];
    let x: Vec<f32> = (0..3 * 20 * 30).map(|v| 1.0 + v as f32).collect();
    let always = Augmentation::new(5).then(AugmentStep::Erase {
        probability: 1.0,
        min_area: 0.1,
        max_area: 0.3,
        min_aspect: 0.5,
        value: -2.0,
    });
    let (mut tall, mut wide) = (0, 0);
    for j in 0..200 {
        let (y, s) = always.apply_image(&x, shape, 0, 0, j).unwrap();
        assert_eq!(s, shape);
        let (_, _, eh, ew) = erased_box(&x, &y, shape, -2.0).expect("probability 1 always erases");
        // Rounded sides: the area lies within the drawn range up to a pixel's rounding.
        let a = (eh * ew) as f32 / 600.0;
        assert!(a > 0.1 * 0.7 && a < 0.3 * 1.3, "area fraction {a}");
        let r = eh as f32 / ew as f32;
        assert!(r > 0.5 * 0.7 && r < 2.0 * 1.3, "aspect {r}");
        tall += usize::from(eh > ew);
        wide += usize::from(ew > eh);
    }
    assert!(
        tall > 40 && wide > 40,
        "tall {tall}, wide {wide}: aspect is log-symmetric"
    );

    // Probability 0 never erases; 0.5 erases about half the images.
    let never = Augmentation::new(5).erase(0.0);
    assert!((0..50).all(|j| never.apply_image(&x, shape, 1, 2, j).unwrap().0 == x));
    let half = Augmentation::new(5).erase(0.5);
    let erased = (0..400)
        .filter(|&j| half.apply_image(&x, shape, 1, 2, j).unwrap().0 != x)
        .count();
    assert!((140..=260).contains(&erased), "{erased} of 400 erased");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn flip_twice_is_identity(c in 1usize..4, h in 1usize..7, w in 1usize..7, seed: u64) {
        let n = c * h * w;
        let x: Vec<f32> = (0..n).map(|i| ((i as u64).wrapping_mul(seed | 1) % 97) as f32).collect();
        let mut y = x.clone();
        flip_horizontal(&mut y, [c, h, w]);
        flip_horizontal(&mut y, [c, h, w]);
        prop_assert_eq!(y, x);
    }

    #[test]
    fn erasing_keeps_the_shape_and_blanks_at_most_one_rectangle(
        c in 1usize..4, h in 1usize..12, w in 1usize..12, p in 0.0f32..=1.0,
        lo in 0.01f32..1.0, span in 0.0f32..1.0, aspect in 0.05f32..=1.0,
        seed: u64, e: u64,
    ) {
        let hi = lo + (1.0 - lo) * span;
        let shape = [c, h, w];
        let x: Vec<f32> = (0..c * h * w).map(|v| 1.0 + v as f32).collect();
        let a = Augmentation::new(seed).crop(h, w, 0).then(AugmentStep::Erase {
            probability: p, min_area: lo, max_area: hi, min_aspect: aspect, value: 0.0,
        });
        let (y, s) = a.apply_image(&x, shape, e, 0, 0).unwrap();
        prop_assert_eq!(s, shape);
        if let Some((top, left, eh, ew)) = erased_box(&x, &y, shape, 0.0) {
            prop_assert!(top + eh <= h && left + ew <= w);
        }
        // The same draws give the same image.
        prop_assert_eq!(a.apply_image(&x, shape, e, 0, 0).unwrap().0, y);
    }

    #[test]
    fn padded_crops_stay_in_range(h in 2usize..10, w in 2usize..10, pad in 0usize..4, seed: u64, e: u64) {
        let x: Vec<f32> = (0..h * w).map(|i| 1.0 + (i % 7) as f32).collect();
        let t = Tensor::from_vec(x.clone(), &[1, 1, h, w]).unwrap();
        let a = Augmentation::new(seed).crop(h, w, pad).flip();
        let y = a.apply_batch(&t, e, 0).unwrap().to_vec();
        prop_assert_eq!(y.len(), h * w);
        // Values are input values or padding zeros; at least (h−p)(w−p) pixels survive.
        prop_assert!(y.iter().all(|v| *v == 0.0 || x.contains(v)));
        let kept = y.iter().filter(|&&v| v != 0.0).count();
        prop_assert!(kept >= h.saturating_sub(pad) * w.saturating_sub(pad));
        if pad == 0 {
            let (mut a, mut b) = (y.clone(), x.clone());
            a.sort_by(f32::total_cmp);
            b.sort_by(f32::total_cmp);
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn pixel_whitening_invariants(n in 2usize..30, d in 1usize..10, seed: u64) {
        let x: Vec<f32> = (0..n * d)
            .map(|i| (mix_seed(seed, i as u64) % 1000) as f32 / 100.0)
            .collect();
        let mut ds = Dataset::from_f32(x, [n, 1, 1, d], vec![0; n], vec!["a".into()]).unwrap();
        FittedPipeline::fit_apply(&[Preprocess::PixelWhiten { eps: 1e-3 }], &mut ds).unwrap();
        let z = ds.to_tensor().unwrap().into_vec();
        for j in 0..d {
            let col: Vec<f64> = z.iter().skip(j).step_by(d).map(|&v| v as f64).collect();
            let m = col.iter().sum::<f64>() / n as f64;
            let s = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64).sqrt();
            prop_assert!(m.abs() < 1e-4);
            // Unit spread, or 0 for a column that never varies.
            prop_assert!((s - 1.0).abs() < 1e-3 || s < 1e-6, "std {}", s);
        }
    }
}

#[test]
fn grids_are_written_as_pngs() {
    let dir = TempDir::new("grid");
    let d = digits().take(10).to_tensor().unwrap();
    let opts = GridOptions {
        columns: Some(4),
        padding: 2,
        upscale: 3,
        ..Default::default()
    };
    let p = dir.join("digits.png");
    assert_eq!(
        save_grid(&p, &d, &opts).unwrap(),
        (4 * 24 + 5 * 2, 3 * 24 + 4 * 2)
    );
    assert_eq!(image::image_dimensions(&p).unwrap(), (106, 80));
    let rgb = Tensor::from_vec(
        (0..2 * 3 * 4 * 5).map(|v| v as f32).collect(),
        &[2, 3, 4, 5],
    )
    .unwrap();
    let opts = GridOptions {
        scale: GridScale::Global,
        padding: 0,
        ..Default::default()
    };
    let q = dir.join("rgb.png");
    assert_eq!(save_grid(&q, &rgb, &opts).unwrap(), (10, 4));
    let img = image::open(&q).unwrap().to_rgb8();
    assert_eq!(img.get_pixel(0, 0).0, [0, 43, 86]); // channels 0, 20, 40 of 0..=119
                                                    // Bad shapes and options are errors.
    assert!(save_grid(
        dir.join("x.png"),
        &Tensor::zeros(&[2, 2, 4, 4]),
        &GridOptions::default()
    )
    .is_err());
    assert!(save_grid(
        dir.join("x.png"),
        &Tensor::zeros(&[0, 1, 4, 4]),
        &GridOptions::default()
    )
    .is_err());
    let bad = GridOptions {
        upscale: 0,
        ..Default::default()
    };
    assert!(save_grid(dir.join("x.png"), &d, &bad).is_err());
    let e = save_grid(dir.join("no/such/dir/x.png"), &d, &GridOptions::default()).unwrap_err();
    assert!(e.to_string().contains("x.png"), "{e}");
}

/// A batch of `b` single-slice `h × w` images whose pixels are distinct.
fn ramp(b: usize, h: usize, w: usize) -> Tensor<f32> {
    Tensor::from_vec((0..b * h * w).map(|v| v as f32).collect(), &[b, 1, h, w]).unwrap()
}

#[test]
fn alternating_flips_mirror_each_image_in_every_other_epoch() {
    let a = Augmentation::new(9).then(AugmentStep::AlternateFlip);
    let (b, h, w) = (16, 2, 3);
    let x = ramp(b, h, w);
    let indices: Vec<usize> = (100..100 + b).collect();
    let flipped = |epoch: u64, batch: u64, idx: &[usize], x: &Tensor<f32>| -> Vec<bool> {
        let y = a
            .apply_batch_indexed(x, epoch, batch, idx)
            .unwrap()
            .to_vec();
        let x = x.to_vec();
        (0..idx.len())
            .map(|i| y[i * h * w] != x[i * h * w])
            .collect()
    };
    let e0 = flipped(0, 0, &indices, &x);
    let e1 = flipped(1, 5, &indices, &x);
    let e2 = flipped(2, 3, &indices, &x);
    // Every image one way in one epoch and the other way in the next...
    assert!(e0.iter().zip(&e1).all(|(a, b)| a != b));
    // ... and as in epoch 0 again two epochs later, whatever its minibatch.
    assert_eq!(e0, e2);
    // About half start mirrored (a draw per image, not per minibatch).
    let n = e0.iter().filter(|&&f| f).count();
    assert!((3..=13).contains(&n), "{n} of {b} mirrored");
    // The draw follows the image's index, not its place in the batch.
    let rev: Vec<usize> = indices.iter().rev().copied().collect();
    let xr = Tensor::from_vec(
        x.to_vec().chunks(h * w).rev().flatten().copied().collect(),
        &[b, 1, h, w],
    )
    .unwrap();
    let er = flipped(0, 7, &rev, &xr);
    assert_eq!(er, e0.iter().rev().copied().collect::<Vec<_>>());
    // A mirrored image is its rows reversed.
    let y = a.apply_batch_indexed(&x, 0, 0, &indices).unwrap().to_vec();
    let i = e0.iter().position(|&f| f).unwrap();
    assert_eq!(
        &y[i * 6..i * 6 + 3],
        &[(i * 6 + 2) as f32, (i * 6 + 1) as f32, (i * 6) as f32]
    );
    assert!(a.apply_batch_indexed(&x, 0, 0, &indices[1..]).is_err());
}

#[test]
fn reflected_crops_show_only_image_pixels_shifted_by_at_most_the_pad() {
    let step = AugmentStep::ReflectCrop {
        height: 6,
        width: 6,
        pad: 2,
    };
    let a = Augmentation::new(3).then(step);
    let x = ramp(8, 6, 6);
    let y = a.apply_batch(&x, 0, 0).unwrap();
    assert_eq!(y.shape(), &[8, 1, 6, 6]);
    let (xs, ys) = (x.to_vec(), y.to_vec());
    let mut shifts = std::collections::BTreeSet::new();
    for i in 0..8 {
        let img = &xs[i * 36..(i + 1) * 36];
        let out = &ys[i * 36..(i + 1) * 36];
        // No zeros from padding: every output pixel is one of the image's.
        assert!(out.iter().all(|v| img.contains(v)));
        // The centre pixel of the window comes from within 2 pixels of the centre.
        let c = out[3 * 6 + 3] as usize - i * 36;
        let (r, col) = (c / 6, c % 6);
        assert!(r.abs_diff(3) <= 2 && col.abs_diff(3) <= 2);
        shifts.insert((r, col));
    }
    assert!(shifts.len() > 1, "the windows should move");
    assert!(Augmentation::new(0)
        .then(AugmentStep::ReflectCrop {
            height: 4,
            width: 4,
            pad: 4
        })
        .output_shape([1, 4, 4])
        .is_err());
}

#[test]
fn shards_of_a_minibatch_see_what_one_process_sees() {
    // Concatenating the shares of every rank gives back each augmented
    // minibatch of one process, bit for bit, for several rank counts —
    // including a last minibatch (300 = 9·32 + 12) and shares that are empty.
    let data = Arc::new(digits().take(300));
    let aug = Augmentation::new(5).crop(8, 8, 2).flip().rotate(10.0);
    let one = Batcher::new(32).unwrap().shuffle(2).augment(aug.clone());
    let whole: Vec<Batch> = one.epoch(&data, 3).collect();
    for ranks in [2usize, 3, 5] {
        let shares: Vec<Vec<Batch>> = (0..ranks)
            .map(|r| {
                let b = one.clone().shard(r, ranks).unwrap();
                b.prefetch(Arc::clone(&data), 3, 2).collect()
            })
            .collect();
        for (k, w) in whole.iter().enumerate() {
            let mut idx: Vec<usize> = Vec::new();
            let mut px: Vec<f32> = Vec::new();
            for s in &shares {
                idx.extend(&s[k].indices);
                px.extend(s[k].images.to_vec());
            }
            assert_eq!(idx, w.indices, "{ranks} ranks, batch {k}");
            assert_eq!(px, w.images.to_vec(), "{ranks} ranks, batch {k}");
        }
    }
    // A minibatch of 3 over 5 ranks: two shares are empty.
    let tiny = Arc::new(digits().take(3));
    let empty = Batcher::new(3).unwrap().shard(0, 5).unwrap();
    assert_eq!(empty.epoch(&tiny, 0).next().unwrap().indices.len(), 0);
    assert!(Batcher::new(3).unwrap().shard(5, 5).is_err());
    assert!(Batcher::new(3).unwrap().shard(0, 0).is_err());
}

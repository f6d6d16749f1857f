//! Data augmentation (section 12.4.3): random crops (with zero padding),
//! rescale-then-crop, small rotations that never let an "unknown" pixel into the
//! crop, horizontal flips and random erasing, composed in order and drawn
//! afresh every epoch.
//!
//! **Determinism.** The draws for image `j` of minibatch `b` in epoch `e` come
//! from a generator seeded with `mix(seed, e, b, j)` alone, so they do not depend
//! on thread timing, on the prefetch depth or on earlier epochs: a run resumed at
//! epoch `e` sees the same augmented images as an uninterrupted one.
//!
//! **Evaluation** uses no augmentation: pass validation and test images through
//! [`Augmentation::eval_transform`] only (a centre crop to the training output
//! size, when the crops change the size), or average the predictions over
//! [`crate::multi_crop`] views.

use crate::error::{DataError, Result};
use crate::geometry::{
    center_crop, crop_window, crop_window_reflect, flip_horizontal, numel3, resize_image,
    rotate_crop, Filter,
};
use crate::shuffle::mix_seed;
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_tensor::Tensor;

/// One augmentation step.
#[derive(Debug, Clone, Copy)]
pub enum AugmentStep {
    /// Zero-pad by `pad` on every side, then take a `height × width` window at a
    /// uniformly random position (e.g. pad 4 then crop 32 on CIFAR-10).
    Crop {
        /// Output rows.
        height: usize,
        /// Output columns.
        width: usize,
        /// Zeros added on each side first.
        pad: usize,
    },
    /// Rescale by a factor drawn uniformly from `[min_scale, max_scale]` (with
    /// `filter`), then take a random `height × width` window of the rescaled image.
    RescaleCrop {
        /// Smallest scale factor; the rescaled image must still cover the window.
        min_scale: f32,
        /// Largest scale factor.
        max_scale: f32,
        /// Output rows.
        height: usize,
        /// Output columns.
        width: usize,
        /// Resampling filter.
        filter: Filter,
    },
    /// Rotate by an angle drawn uniformly from `[−max_degrees, max_degrees]` and
    /// zoom in just enough that the (same-size) output lies inside the rotated
    /// image ([`crate::rotation_zoom`]).
    Rotate {
        /// Largest rotation, in degrees (below 90).
        max_degrees: f32,
    },
    /// Mirror left to right with probability 1/2.
    Flip,
    /// As [`AugmentStep::Crop`], but the padding mirrors the image about its
    /// edges instead of adding zeros (airbench's translation), so no window
    /// shows an artificial border.
    ReflectCrop {
        /// Output rows.
        height: usize,
        /// Output columns.
        width: usize,
        /// Reflected rows/columns on each side (less than the image's side).
        pad: usize,
    },
    /// Alternating flips (Jordan, 2024): each training image is mirrored in
    /// every other epoch — a draw fixed per image decides whether in the even
    /// or the odd epochs — so over two epochs every image is seen both ways,
    /// where random flips show a quarter of them one way only. Needs the
    /// image's index in the data set ([`Augmentation::apply_batch_indexed`]);
    /// without it the image's place in its minibatch stands in.
    AlternateFlip,
    /// Random erasing (Zhong et al., 2017): with probability `probability`, a
    /// rectangle is set to `value` in every slice. Its area is a fraction of the
    /// image drawn uniformly from `[min_area, max_area]`, its aspect ratio
    /// (height / width) log-uniformly from `[min_aspect, 1 / min_aspect]`, and
    /// it is placed uniformly inside the image; a draw that does not fit is
    /// redrawn, up to 10 times, then the image is left as it is. The network
    /// must then recognise objects from their visible parts, which regularises
    /// like dropout on the input. `value` 0 is the training mean once the data
    /// are whitened.
    Erase {
        /// Chance that an image gets a rectangle at all.
        probability: f32,
        /// Smallest area, as a fraction of the image.
        min_area: f32,
        /// Largest area, as a fraction of the image.
        max_area: f32,
        /// Smallest height / width ratio (at most 1; the largest is its inverse).
        min_aspect: f32,
        /// What the erased pixels become.
        value: f32,
    },
    /// The centred `height × width` window (zero-padded if larger): deterministic,
    /// used by [`Augmentation::eval_transform`].
    CenterCrop {
        /// Output rows.
        height: usize,
        /// Output columns.
        width: usize,
    },
}

impl AugmentStep {
    /// Random erasing with probability `probability` and Zhong et al.'s other
    /// settings: 2–40 % of the image, aspect ratio in [0.3, 1/0.3], filled
    /// with 0 (the mean of whitened data).
    pub fn erasing(probability: f32) -> Self {
        AugmentStep::Erase {
            probability,
            min_area: 0.02,
            max_area: 0.4,
            min_aspect: 0.3,
            value: 0.0,
        }
    }

    /// A comparable image of the step (floats by their bits, so equality is lawful).
    fn key(&self) -> (u8, [u64; 5]) {
        let b = |v: f32| v.to_bits() as u64;
        match *self {
            AugmentStep::Crop { height, width, pad } => {
                (0, [height as u64, width as u64, pad as u64, 0, 0])
            }
            AugmentStep::RescaleCrop {
                min_scale,
                max_scale,
                height,
                width,
                filter,
            } => (
                1,
                [
                    b(min_scale),
                    b(max_scale),
                    height as u64,
                    width as u64,
                    filter as u64,
                ],
            ),
            AugmentStep::Rotate { max_degrees } => (2, [b(max_degrees), 0, 0, 0, 0]),
            AugmentStep::Flip => (3, [0; 5]),
            AugmentStep::ReflectCrop { height, width, pad } => {
                (6, [height as u64, width as u64, pad as u64, 0, 0])
            }
            AugmentStep::AlternateFlip => (7, [0; 5]),
            AugmentStep::CenterCrop { height, width } => {
                (4, [height as u64, width as u64, 0, 0, 0])
            }
            AugmentStep::Erase {
                probability,
                min_area,
                max_area,
                min_aspect,
                value,
            } => (
                5,
                [
                    b(probability),
                    b(min_area),
                    b(max_area),
                    b(min_aspect),
                    b(value),
                ],
            ),
        }
    }

    /// Checks the step against an input image shape and gives its output shape.
    pub fn output_shape(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        let [c, h, w] = input;
        let bad = |m: String| Err(DataError::Invalid(format!("augmentation: {m}")));
        if numel3(input) == 0 {
            return bad(format!("images must not be empty, found shape {input:?}"));
        }
        match *self {
            AugmentStep::Crop { height, width, pad } => {
                if height == 0 || width == 0 || height > h + 2 * pad || width > w + 2 * pad {
                    return bad(format!(
                        "crop {height}x{width} must be positive and fit the {}x{} image padded by {pad}",
                        h, w
                    ));
                }
                Ok([c, height, width])
            }
            AugmentStep::RescaleCrop {
                min_scale,
                max_scale,
                height,
                width,
                ..
            } => {
                if !(min_scale > 0.0 && min_scale <= max_scale && max_scale.is_finite()) {
                    return bad(format!(
                        "rescale range must satisfy 0 < min <= max < inf, found [{min_scale}, {max_scale}]"
                    ));
                }
                let (sh, sw) = scaled(h, w, min_scale);
                if height == 0 || width == 0 || height > sh || width > sw {
                    return bad(format!(
                        "crop {height}x{width} must be positive and fit the {h}x{w} image rescaled by {min_scale} ({sh}x{sw})"
                    ));
                }
                Ok([c, height, width])
            }
            AugmentStep::Rotate { max_degrees } => {
                if !((0.0..90.0).contains(&max_degrees)) {
                    return bad(format!(
                        "rotation must be in [0, 90) degrees, found {max_degrees}"
                    ));
                }
                Ok(input)
            }
            AugmentStep::Flip | AugmentStep::AlternateFlip => Ok(input),
            AugmentStep::ReflectCrop { height, width, pad } => {
                if pad >= h || pad >= w {
                    return bad(format!(
                        "a reflected pad of {pad} needs an image larger than {pad}x{pad}, found {h}x{w}"
                    ));
                }
                if height == 0 || width == 0 || height > h + 2 * pad || width > w + 2 * pad {
                    return bad(format!(
                        "crop {height}x{width} must be positive and fit the {h}x{w} image padded by {pad}"
                    ));
                }
                Ok([c, height, width])
            }
            AugmentStep::CenterCrop { height, width } => {
                if height == 0 || width == 0 {
                    return bad(format!("centre crop {height}x{width} must be positive"));
                }
                Ok([c, height, width])
            }
            AugmentStep::Erase {
                probability,
                min_area,
                max_area,
                min_aspect,
                value,
            } => {
                if !(0.0..=1.0).contains(&probability) {
                    return bad(format!(
                        "erasing probability must be in [0, 1], found {probability}"
                    ));
                }
                if !(min_area > 0.0 && min_area <= max_area && max_area <= 1.0) {
                    return bad(format!(
                        "erased area must satisfy 0 < min <= max <= 1, found [{min_area}, {max_area}]"
                    ));
                }
                if !(min_aspect > 0.0 && min_aspect <= 1.0) {
                    return bad(format!(
                        "erased aspect ratio must be in (0, 1], found {min_aspect}"
                    ));
                }
                if !value.is_finite() {
                    return bad(format!("erasing value must be finite, found {value}"));
                }
                Ok(input)
            }
        }
    }

    fn apply(
        &self,
        img: Vec<f32>,
        shape: [usize; 3],
        rng: &mut Xoshiro256PlusPlus,
        draw: Draw,
    ) -> Result<(Vec<f32>, [usize; 3])> {
        let out = self.output_shape(shape)?;
        let [c, h, w] = shape;
        let img = match *self {
            AugmentStep::Crop { height, width, pad } => {
                let top = uniform_int(rng, h + 2 * pad - height) as isize - pad as isize;
                let left = uniform_int(rng, w + 2 * pad - width) as isize - pad as isize;
                crop_window(&img, shape, top, left, height, width)
            }
            AugmentStep::RescaleCrop {
                min_scale,
                max_scale,
                height,
                width,
                filter,
            } => {
                let s = min_scale + (max_scale - min_scale) * uniform01(rng);
                let (sh, sw) = scaled(h, w, s);
                let r = resize_image(&img, shape, sh, sw, filter)?;
                let top = uniform_int(rng, sh - height) as isize;
                let left = uniform_int(rng, sw - width) as isize;
                crop_window(&r, [c, sh, sw], top, left, height, width)
            }
            AugmentStep::Rotate { max_degrees } => {
                let deg = max_degrees * (2.0 * uniform01(rng) - 1.0);
                rotate_crop(&img, shape, deg.to_radians(), h, w)
            }
            AugmentStep::Flip => {
                let mut img = img;
                if rng.next_u64() >> 63 == 1 {
                    flip_horizontal(&mut img, shape);
                }
                img
            }
            AugmentStep::ReflectCrop { height, width, pad } => {
                let top = uniform_int(rng, h + 2 * pad - height) as isize - pad as isize;
                let left = uniform_int(rng, w + 2 * pad - width) as isize - pad as isize;
                crop_window_reflect(&img, shape, top, left, height, width)
            }
            AugmentStep::AlternateFlip => {
                let mut img = img;
                // The image's own bit, then every other epoch the other way.
                let own = mix_seed(draw.seed ^ 0xf11b, draw.image) >> 63;
                if own ^ (draw.epoch & 1) == 1 {
                    flip_horizontal(&mut img, shape);
                }
                img
            }
            AugmentStep::CenterCrop { height, width } => center_crop(&img, shape, height, width),
            AugmentStep::Erase {
                probability,
                min_area,
                max_area,
                min_aspect,
                value,
            } => {
                let mut img = img;
                if uniform01(rng) < probability {
                    let area = (h * w) as f32;
                    let log_aspect = min_aspect.ln();
                    for _ in 0..10 {
                        let a = area * (min_area + (max_area - min_area) * uniform01(rng));
                        // ln r uniform in [ln r₁, −ln r₁]: tall and wide boxes equally likely.
                        let r = (log_aspect * (1.0 - 2.0 * uniform01(rng))).exp();
                        let eh = (a * r).sqrt().round() as usize;
                        let ew = (a / r).sqrt().round() as usize;
                        if eh == 0 || ew == 0 || eh > h || ew > w {
                            continue;
                        }
                        let top = uniform_int(rng, h - eh);
                        let left = uniform_int(rng, w - ew);
                        for plane in img.chunks_exact_mut(h * w) {
                            for row in plane[top * w..(top + eh) * w].chunks_exact_mut(w) {
                                row[left..left + ew].fill(value);
                            }
                        }
                        break;
                    }
                }
                img
            }
        };
        Ok((img, out))
    }
}

impl PartialEq for AugmentStep {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for AugmentStep {}

/// The size of an `h × w` image rescaled by `s` (rounded, at least 1).
fn scaled(h: usize, w: usize, s: f32) -> (usize, usize) {
    let f = |v: usize| ((v as f64 * s as f64).round() as usize).max(1);
    (f(h), f(w))
}

/// A uniform draw from `[0, 1)` with 24 random bits.
fn uniform01(rng: &mut Xoshiro256PlusPlus) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
}

/// A uniform draw from `0..=max` (by multiply-shift; the bias is below 2⁻³²).
fn uniform_int(rng: &mut Xoshiro256PlusPlus, max: usize) -> usize {
    (((rng.next_u64() >> 32) * (max as u64 + 1)) >> 32) as usize
}

/// What a step may draw on besides its random source: the epoch and the
/// image's identity (its index in the data set when known).
#[derive(Clone, Copy, Debug)]
struct Draw {
    seed: u64,
    epoch: u64,
    image: u64,
}

/// A list of augmentation steps applied in order, with the seed of their draws.
///
/// ```
/// use strata_data::Augmentation;
/// let aug = Augmentation::new(7).crop(32, 32, 4).flip();
/// assert_eq!(aug.output_shape([3, 32, 32])?, [3, 32, 32]);
/// # Ok::<(), strata_data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Augmentation {
    steps: Vec<AugmentStep>,
    seed: u64,
}

impl Augmentation {
    /// No step yet; draws seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Augmentation {
            steps: Vec::new(),
            seed,
        }
    }

    /// Appends a step.
    pub fn then(mut self, step: AugmentStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Appends a random `height × width` crop after zero padding by `pad`.
    pub fn crop(self, height: usize, width: usize, pad: usize) -> Self {
        self.then(AugmentStep::Crop { height, width, pad })
    }

    /// Appends a random rescale in `[min_scale, max_scale]` then a random crop.
    pub fn rescale_crop(self, min_scale: f32, max_scale: f32, height: usize, width: usize) -> Self {
        self.then(AugmentStep::RescaleCrop {
            min_scale,
            max_scale,
            height,
            width,
            filter: Filter::Triangle,
        })
    }

    /// Appends a random rotation of at most `max_degrees` (zoomed to stay inside).
    pub fn rotate(self, max_degrees: f32) -> Self {
        self.then(AugmentStep::Rotate { max_degrees })
    }

    /// Appends a random horizontal flip.
    pub fn flip(self) -> Self {
        self.then(AugmentStep::Flip)
    }

    /// Appends random erasing with Zhong et al.'s settings
    /// ([`AugmentStep::erasing`]).
    pub fn erase(self, probability: f32) -> Self {
        self.then(AugmentStep::erasing(probability))
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[AugmentStep] {
        &self.steps
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Checks every step against the input image shape `[C, H, W]` and gives the
    /// output shape `[C, H', W']` (to size the network).
    pub fn output_shape(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        self.steps
            .iter()
            .try_fold(input, |s, step| step.output_shape(s))
    }

    /// The deterministic transform for evaluation images of shape `input`: the
    /// centre crop (or centred zero padding) to [`Augmentation::output_shape`],
    /// or no step at all when the augmentation keeps the size.
    pub fn eval_transform(&self, input: [usize; 3]) -> Result<Augmentation> {
        let [_, h, w] = self.output_shape(input)?;
        let eval = Augmentation::new(self.seed);
        Ok(if [h, w] == [input[1], input[2]] {
            eval
        } else {
            eval.then(AugmentStep::CenterCrop {
                height: h,
                width: w,
            })
        })
    }

    /// The generator of image `image` of minibatch `batch` in epoch `epoch`.
    fn rng(&self, epoch: u64, batch: u64, image: u64) -> Xoshiro256PlusPlus {
        let s = mix_seed(mix_seed(mix_seed(self.seed, epoch), batch), image);
        Xoshiro256PlusPlus::seed_from_u64(s)
    }

    /// Augments one `[C, H, W]` image with the draws of (`epoch`, `batch`, `image`).
    pub fn apply_image(
        &self,
        img: &[f32],
        shape: [usize; 3],
        epoch: u64,
        batch: u64,
        image: u64,
    ) -> Result<(Vec<f32>, [usize; 3])> {
        // Without the data-set index, the place in the minibatch stands in.
        let id = mix_seed(batch, image);
        self.apply_draw(img, shape, epoch, batch, image, id)
    }

    fn apply_draw(
        &self,
        img: &[f32],
        shape: [usize; 3],
        epoch: u64,
        batch: u64,
        image: u64,
        id: u64,
    ) -> Result<(Vec<f32>, [usize; 3])> {
        if img.len() != numel3(shape) {
            return Err(DataError::Invalid(format!(
                "augmentation: image holds {} values, expected {} for shape {shape:?}",
                img.len(),
                numel3(shape)
            )));
        }
        let mut rng = self.rng(epoch, batch, image);
        let draw = Draw {
            seed: self.seed,
            epoch,
            image: id,
        };
        self.steps
            .iter()
            .try_fold((img.to_vec(), shape), |(x, s), step| {
                step.apply(x, s, &mut rng, draw)
            })
    }

    /// Augments minibatch `batch` of epoch `epoch` (`[B, C, H, W]` →
    /// `[B, C, H', W']`); image `j` gets the draws of (`epoch`, `batch`, `j`).
    pub fn apply_batch(&self, images: &Tensor<f32>, epoch: u64, batch: u64) -> Result<Tensor<f32>> {
        self.apply_batch_with(images, epoch, batch, 0, None)
    }

    /// As [`Augmentation::apply_batch`], for images that are items `indices`
    /// of their data set: steps that follow an image across epochs
    /// ([`AugmentStep::AlternateFlip`]) know it by that index.
    pub fn apply_batch_indexed(
        &self,
        images: &Tensor<f32>,
        epoch: u64,
        batch: u64,
        indices: &[usize],
    ) -> Result<Tensor<f32>> {
        self.apply_batch_at(images, epoch, batch, 0, indices)
    }

    /// As [`Augmentation::apply_batch_indexed`], for images that are positions
    /// `first..` of minibatch `batch` (one rank's share of it, in data-parallel
    /// training): image `j` gets the draws of position `first + j`.
    pub fn apply_batch_at(
        &self,
        images: &Tensor<f32>,
        epoch: u64,
        batch: u64,
        first: usize,
        indices: &[usize],
    ) -> Result<Tensor<f32>> {
        if indices.len() != images.shape().first().copied().unwrap_or(0) {
            return Err(DataError::Invalid(format!(
                "augmentation: {} indices for a batch of shape {:?}",
                indices.len(),
                images.shape()
            )));
        }
        self.apply_batch_with(images, epoch, batch, first, Some(indices))
    }

    fn apply_batch_with(
        &self,
        images: &Tensor<f32>,
        epoch: u64,
        batch: u64,
        first: usize,
        indices: Option<&[usize]>,
    ) -> Result<Tensor<f32>> {
        let s = images.shape();
        if s.len() != 4 {
            return Err(DataError::Invalid(format!(
                "augmentation: expected a [B, C, H, W] tensor, found shape {s:?}"
            )));
        }
        let shape = [s[1], s[2], s[3]];
        let out_shape = self.output_shape(shape)?;
        let x = images.to_contiguous_slice();
        let mut out = Vec::with_capacity(s[0] * numel3(out_shape));
        for (j, img) in x.chunks_exact(numel3(shape).max(1)).take(s[0]).enumerate() {
            let pos = (first + j) as u64;
            let id = match indices {
                Some(ix) => ix[j] as u64,
                None => mix_seed(batch, pos),
            };
            out.extend(self.apply_draw(img, shape, epoch, batch, pos, id)?.0);
        }
        let [c, h, w] = out_shape;
        Ok(Tensor::from_vec(out, &[s[0], c, h, w])?)
    }
}

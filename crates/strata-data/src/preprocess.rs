//! Preprocessing (section 12.4.2): transforms fitted on the training set, kept
//! (as named tensors, beside a checkpoint) and applied unchanged to test images.
//!
//! A pipeline is a list of [`Preprocess`] steps applied in order; each step is
//! fitted on the training images as transformed by the steps before it:
//!
//! | step | rule | fitted tensors |
//! | --- | --- | --- |
//! | [`Preprocess::ResizeCrop`] | resize so the image covers `h × w` (aspect kept, proper filter), centre crop | — |
//! | [`Preprocess::PixelWhiten`] | `z[c,y,x] = (x[c,y,x] − μ[c,y,x]) / max(σ[c,y,x], ε)` | mean image `μ`, scale image `max(σ, ε)` |
//! | [`Preprocess::ImageNormalize`] | `z = (x − mean(x)) / max(std(x), ε)` per image | — |
//! | [`Preprocess::LocalContrast`] | `v = x − G_σ * x`; optionally `z = v / max(√(G_σ * v²), floor)` per channel | — |
//! | [`Preprocess::Pca`], [`Preprocess::Zca`] | see [`crate::whiten`] | mean, matrix, eigenvalues |
//! | [`Preprocess::PatchZca`] | ZCA of `k × k` patches as a convolution | mean, weight, eigenvalues |
//!
//! Statistics use `1/N` (the chapter's `Covmat`, and a population standard
//! deviation). `G_σ *` is a Gaussian blur with renormalised borders
//! ([`strata_kernels::image::gaussian_blur`]).

use crate::dataset::{Dataset, Pixels};
use crate::error::{DataError, Result};
use crate::geometry::{numel3, resize_center_crop, Filter};
use crate::normalize::{local_contrast, normalize_image, pixel_moments};
use crate::whiten::{check_eps, Padding, PatchZca, Whitening, WhiteningKind};
use rayon::prelude::*;
use strata_tensor::Tensor;

/// One preprocessing step, as configured (before fitting).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Preprocess {
    /// Resize so the image just covers `height × width` (aspect ratio kept), then
    /// crop the centre: every image comes out the same size.
    ResizeCrop {
        /// Output rows.
        height: usize,
        /// Output columns.
        width: usize,
        /// Resampling filter.
        filter: Filter,
    },
    /// Per-pixel whitening with the training mean and standard-deviation images.
    PixelWhiten {
        /// Floor of the standard deviation (pixels that never vary become 0).
        eps: f32,
    },
    /// Per-image contrast normalisation: subtract the image's mean, divide by its
    /// standard deviation (floored at `eps`).
    ImageNormalize {
        /// Floor of the standard deviation (a constant image becomes 0).
        eps: f32,
    },
    /// Local contrast normalisation: subtract a Gaussian-smoothed copy.
    LocalContrast {
        /// Standard deviation of the Gaussian, in pixels.
        sigma: f32,
        /// Whether to also divide by the local (Gaussian-weighted) standard deviation.
        divide: bool,
        /// Floor of the local standard deviation.
        floor: f32,
    },
    /// PCA whitening of the flattened images.
    Pca {
        /// Added to every eigenvalue.
        eps: f32,
    },
    /// ZCA whitening of the flattened images.
    Zca {
        /// Added to every eigenvalue.
        eps: f32,
    },
    /// ZCA whitening of `kernel × kernel` patches, applied as a convolution with
    /// `C·k·k` output channels.
    PatchZca {
        /// Patch side `k`.
        kernel: usize,
        /// Added to every eigenvalue.
        eps: f32,
        /// Zero padding when applied.
        padding: Padding,
    },
}

impl std::str::FromStr for Preprocess {
    type Err = DataError;

    /// The spec-file names with default parameters: `pixel-whiten` (ε 0.01),
    /// `image-normalize` (ε 0.01), `lcn` (σ 2, divide, floor 0.01), `pca` and `zca`
    /// (ε 0.01), `patch-zca` (3×3, ε 0.01, same padding).
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "pixel-whiten" => Preprocess::PixelWhiten { eps: 1e-2 },
            "image-normalize" | "contrast-normalize" => Preprocess::ImageNormalize { eps: 1e-2 },
            "lcn" | "local-contrast" => Preprocess::LocalContrast {
                sigma: 2.0,
                divide: true,
                floor: 1e-2,
            },
            "pca" => Preprocess::Pca { eps: 1e-2 },
            "zca" => Preprocess::Zca { eps: 1e-2 },
            "patch-zca" => Preprocess::PatchZca {
                kernel: 3,
                eps: 1e-2,
                padding: Padding::Same,
            },
            _ => {
                return Err(DataError::Invalid(format!(
                    "unknown preprocessing step `{s}`: expected pixel-whiten, image-normalize, lcn, pca, zca or patch-zca"
                )))
            }
        })
    }
}

impl Preprocess {
    /// Short name, used in tensor names.
    pub fn name(&self) -> &'static str {
        match self {
            Preprocess::ResizeCrop { .. } => "resize_crop",
            Preprocess::PixelWhiten { .. } => "pixel_whiten",
            Preprocess::ImageNormalize { .. } => "image_normalize",
            Preprocess::LocalContrast { .. } => "local_contrast",
            Preprocess::Pca { .. } => "pca",
            Preprocess::Zca { .. } => "zca",
            Preprocess::PatchZca { .. } => "patch_zca",
        }
    }

    /// Checks the parameters and gives the image shape `[C, H, W]` this step
    /// turns `input` into.
    pub fn output_shape(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        let [c, h, w] = input;
        if numel3(input) == 0 {
            return Err(DataError::Invalid(format!(
                "{}: images must not be empty, found shape {input:?}",
                self.name()
            )));
        }
        match *self {
            Preprocess::ResizeCrop { height, width, .. } => {
                if height == 0 || width == 0 {
                    return Err(DataError::Invalid(format!(
                        "resize_crop: output size must be positive, found {height}x{width}"
                    )));
                }
                Ok([c, height, width])
            }
            Preprocess::PixelWhiten { eps }
            | Preprocess::ImageNormalize { eps }
            | Preprocess::Pca { eps }
            | Preprocess::Zca { eps } => check_eps(eps, self.name()).map(|_| input),
            Preprocess::LocalContrast { sigma, floor, .. } => {
                check_eps(sigma, "local_contrast sigma")?;
                check_eps(floor, "local_contrast floor")?;
                Ok(input)
            }
            Preprocess::PatchZca {
                kernel,
                eps,
                padding,
            } => {
                check_eps(eps, "patch_zca")?;
                if kernel == 0 || kernel > h || kernel > w {
                    return Err(DataError::Invalid(format!(
                        "patch_zca: kernel must be in 1..={}, found {kernel}",
                        h.min(w)
                    )));
                }
                Ok(match padding {
                    Padding::Valid => [c * kernel * kernel, h - kernel + 1, w - kernel + 1],
                    Padding::Same => [c * kernel * kernel, h, w],
                })
            }
        }
    }
}

/// A fitted step: the configuration with what was learnt from the training set.
#[derive(Debug, Clone, PartialEq)]
enum Fitted {
    Stateless,
    PixelWhiten { mean: Vec<f32>, scale: Vec<f32> },
    Whiten(Whitening),
    PatchZca(PatchZca),
}

/// Transformed images: their values and image shape.
type Transformed = (Vec<f32>, [usize; 3]);

/// A fitted preprocessing pipeline: apply it to training, validation and test
/// images alike, and store it with [`FittedPipeline::to_tensors`].
#[derive(Debug, Clone, PartialEq)]
pub struct FittedPipeline {
    config: Vec<Preprocess>,
    input_shape: [usize; 3],
    fitted: Vec<Fitted>,
}

/// The pixels of a data set scaled to `[0, 1]` (or as stored, for `f32`).
fn pixels_of(data: &Dataset) -> Vec<f32> {
    match data.pixels() {
        Pixels::F32(v) => v.clone(),
        Pixels::U8(v) => {
            let inv = 1.0 / data.pixel_max();
            v.par_iter().map(|&p| p as f32 * inv).collect()
        }
    }
}

impl FittedPipeline {
    /// Fits `config` on the training images (scaled to `[0, 1]`).
    pub fn fit(config: &[Preprocess], train: &Dataset) -> Result<Self> {
        Self::fit_inner(config, train, false).map(|(p, _)| p)
    }

    /// Fits `config` on `train` and replaces `train`'s images by their transform
    /// (saving the second pass [`FittedPipeline::fit`] + [`FittedPipeline::apply`]
    /// would make).
    pub fn fit_apply(config: &[Preprocess], train: &mut Dataset) -> Result<Self> {
        let (p, out) = Self::fit_inner(config, train, true)?;
        let (x, shape) = out.expect("fit_inner returns the data when asked");
        *train = rebuild(train, x, shape)?;
        Ok(p)
    }

    fn fit_inner(
        config: &[Preprocess],
        train: &Dataset,
        keep: bool,
    ) -> Result<(Self, Option<Transformed>)> {
        if train.is_empty() {
            return Err(DataError::Invalid(
                "preprocessing: cannot fit on an empty data set".into(),
            ));
        }
        let input_shape = train.image_shape();
        let n = train.len();
        let mut shape = input_shape;
        let mut x = pixels_of(train);
        let mut fitted = Vec::with_capacity(config.len());
        for (i, step) in config.iter().enumerate() {
            step.output_shape(shape)?;
            let f = match *step {
                Preprocess::PixelWhiten { eps } => {
                    let (mean, scale) = pixel_moments(&x, n, numel3(shape), eps);
                    Fitted::PixelWhiten { mean, scale }
                }
                Preprocess::Pca { eps } | Preprocess::Zca { eps } => {
                    let kind = if matches!(step, Preprocess::Pca { .. }) {
                        WhiteningKind::Pca
                    } else {
                        WhiteningKind::Zca
                    };
                    Fitted::Whiten(Whitening::fit(kind, &x, n, numel3(shape), eps)?)
                }
                Preprocess::PatchZca { kernel, eps, .. } => {
                    Fitted::PatchZca(PatchZca::fit(&x, n, shape, kernel, eps)?)
                }
                _ => Fitted::Stateless,
            };
            fitted.push(f);
            if keep || i + 1 < config.len() {
                (x, shape) = apply_step(step, &fitted[i], x, n, shape)?;
            }
        }
        let p = FittedPipeline {
            config: config.to_vec(),
            input_shape,
            fitted,
        };
        Ok((p, keep.then_some((x, shape))))
    }

    /// The configuration.
    pub fn config(&self) -> &[Preprocess] {
        &self.config
    }

    /// The image shape `[C, H, W]` the pipeline was fitted on (and accepts).
    pub fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }

    /// The image shape `[C, H, W]` the pipeline produces (to size a network).
    pub fn output_shape(&self) -> [usize; 3] {
        self.config
            .iter()
            .try_fold(self.input_shape, |s, step| step.output_shape(s))
            .expect("shapes were checked when fitting")
    }

    fn check_input(&self, shape: [usize; 3]) -> Result<()> {
        if shape != self.input_shape {
            return Err(DataError::Invalid(format!(
                "preprocessing was fitted on images of shape {:?}, found {shape:?}",
                self.input_shape
            )));
        }
        Ok(())
    }

    /// Transforms `n` images of the fitted input shape (row-major values),
    /// returning the new values and image shape.
    pub fn apply_values(
        &self,
        x: Vec<f32>,
        n: usize,
        shape: [usize; 3],
    ) -> Result<(Vec<f32>, [usize; 3])> {
        self.check_input(shape)?;
        if x.len() != n * numel3(shape) {
            return Err(DataError::Invalid(format!(
                "preprocessing: {} values for {n} images of shape {shape:?}",
                x.len()
            )));
        }
        let (mut x, mut shape) = (x, shape);
        for (step, f) in self.config.iter().zip(&self.fitted) {
            (x, shape) = apply_step(step, f, x, n, shape)?;
        }
        Ok((x, shape))
    }

    /// Replaces the images of `data` (scaled to `[0, 1]` first if stored as bytes)
    /// by their transform; the labels and class names stay.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        self.check_input(data.image_shape())?;
        let (x, shape) = self.apply_values(pixels_of(data), data.len(), data.image_shape())?;
        *data = rebuild(data, x, shape)?;
        Ok(())
    }

    /// Transforms an `[N, C, H, W]` batch tensor.
    pub fn apply_tensor(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        let s = x.shape();
        if s.len() != 4 {
            return Err(DataError::Invalid(format!(
                "preprocessing: expected an [N, C, H, W] tensor, found shape {s:?}"
            )));
        }
        let (v, [c, h, w]) = self.apply_values(
            x.to_contiguous_slice().into_owned(),
            s[0],
            [s[1], s[2], s[3]],
        )?;
        Ok(Tensor::from_vec(v, &[s[0], c, h, w])?)
    }

    /// The fitted patch ZCA of step `index`, if that step is one (its
    /// [`PatchZca::weight`] is a fixed first-layer kernel).
    pub fn patch_zca(&self, index: usize) -> Option<&PatchZca> {
        match self.fitted.get(index) {
            Some(Fitted::PatchZca(p)) => Some(p),
            _ => None,
        }
    }

    /// The fitted PCA/ZCA whitening of step `index`, if that step is one.
    pub fn whitening(&self, index: usize) -> Option<&Whitening> {
        match self.fitted.get(index) {
            Some(Fitted::Whiten(w)) => Some(w),
            _ => None,
        }
    }

    pub(crate) fn parts(&self) -> (&[Preprocess], [usize; 3], Vec<StepState<'_>>) {
        let st = self
            .fitted
            .iter()
            .map(|f| match f {
                Fitted::Stateless => StepState::None,
                Fitted::PixelWhiten { mean, scale } => StepState::Pixel(mean, scale),
                Fitted::Whiten(w) => StepState::Whiten(w),
                Fitted::PatchZca(p) => StepState::Patch(p),
            })
            .collect();
        (&self.config, self.input_shape, st)
    }

    pub(crate) fn from_parts(
        config: &[Preprocess],
        input_shape: [usize; 3],
        states: Vec<OwnedState>,
    ) -> Self {
        let fitted = states
            .into_iter()
            .map(|s| match s {
                OwnedState::None => Fitted::Stateless,
                OwnedState::Pixel(mean, scale) => Fitted::PixelWhiten { mean, scale },
                OwnedState::Whiten(w) => Fitted::Whiten(w),
                OwnedState::Patch(p) => Fitted::PatchZca(p),
            })
            .collect();
        FittedPipeline {
            config: config.to_vec(),
            input_shape,
            fitted,
        }
    }
}

/// A borrowed view of a fitted step (for serialisation).
pub(crate) enum StepState<'a> {
    None,
    Pixel(&'a [f32], &'a [f32]),
    Whiten(&'a Whitening),
    Patch(&'a PatchZca),
}

/// An owned fitted step (from deserialisation).
pub(crate) enum OwnedState {
    None,
    Pixel(Vec<f32>, Vec<f32>),
    Whiten(Whitening),
    Patch(PatchZca),
}

fn rebuild(data: &Dataset, x: Vec<f32>, [c, h, w]: [usize; 3]) -> Result<Dataset> {
    Dataset::from_f32(
        x,
        [data.len(), c, h, w],
        data.labels().to_vec(),
        data.class_names().to_vec(),
    )
}

fn apply_step(
    step: &Preprocess,
    fitted: &Fitted,
    mut x: Vec<f32>,
    n: usize,
    shape: [usize; 3],
) -> Result<(Vec<f32>, [usize; 3])> {
    let out_shape = step.output_shape(shape)?;
    let d = numel3(shape);
    match (*step, fitted) {
        (
            Preprocess::ResizeCrop {
                height,
                width,
                filter,
            },
            _,
        ) => {
            let out: Result<Vec<Vec<f32>>> = x
                .par_chunks(d)
                .map(|img| resize_center_crop(img, shape, height, width, filter))
                .collect();
            return Ok((out?.concat(), out_shape));
        }
        (Preprocess::PixelWhiten { .. }, Fitted::PixelWhiten { mean, scale }) => {
            x.par_chunks_mut(d).for_each(|img| {
                for ((v, m), s) in img.iter_mut().zip(mean).zip(scale) {
                    *v = (*v - m) / s;
                }
            });
        }
        (Preprocess::ImageNormalize { eps }, _) => {
            x.par_chunks_mut(d)
                .for_each(|img| normalize_image(img, eps));
        }
        (
            Preprocess::LocalContrast {
                sigma,
                divide,
                floor,
            },
            _,
        ) => {
            x.par_chunks_mut(d)
                .for_each(|img| local_contrast(img, shape, sigma, divide, floor));
        }
        (Preprocess::Pca { .. } | Preprocess::Zca { .. }, Fitted::Whiten(wz)) => {
            wz.apply(&mut x)?
        }
        (Preprocess::PatchZca { padding, .. }, Fitted::PatchZca(p)) => {
            return p.apply(&x, n, shape, padding);
        }
        _ => {
            return Err(DataError::Invalid(format!(
                "preprocessing step `{}` has no fitted state",
                step.name()
            )))
        }
    }
    Ok((x, out_shape))
}

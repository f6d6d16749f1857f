//! Object detection by windows (section 12.4): classify a collection of
//! windows with an image classifier, then resolve the disputes between
//! overlapping ones.
//!
//! A window of side `s` is read at the network's input size: the whole image
//! is rescaled by `h/s` once per window size, and the network looks at its
//! `h × w` windows. Two ways compute the same scores:
//!
//! - **window by window** ([`Detector::window_scores`]): each window is cut
//!   out, preprocessed as at evaluation, and classified in batches;
//! - **fully convolutionally** ([`Detector::fc_scores`]): a network of
//!   unpadded convolutions, pooling and linear layers is read as one
//!   convolution network — the first linear layer after the flatten is a
//!   convolution whose kernel is the whole feature map, the later ones 1 × 1
//!   convolutions — and run once over the rescaled image, so overlapping
//!   windows share their computation. Its windows lie on the network's own
//!   grid (the product of its strides); finer strides run it again on the
//!   image shifted by fractions of that grid.
//!
//! A window's score is the probability of its most probable object class
//! (any class but `"background"`, which a spec adds with
//! `data.background`). Windows above a threshold then go through
//! non-maximum suppression ([`nms`]) or merging by averaging ([`merge`]),
//! where two windows dispute one place when their IoU is high or one lies
//! mostly inside the other ([`Overlap`]).
//! [`evaluate_detections`] gives precision, recall and average precision
//! per class at IoU 0.5 and over 0.5:0.95.

use crate::onnx::{load_trained, pixel_affine};
use crate::run::RunError;
use std::path::Path;
use strata_autograd::kernels::softmax::softmax_rows;
use strata_data::canvas::BACKGROUND;
use strata_data::{crop_window, resize_image, BBox, Filter, FittedPipeline};
use strata_nn::{Module, Sequential};
use strata_tensor::Tensor;

/// One detected object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Where, in the image's pixels.
    pub bbox: BBox,
    /// The class index (in the model's classes).
    pub class: usize,
    /// The class's probability for the window.
    pub score: f32,
}

/// Highest score first; ties in a fixed order of the boxes and classes, so
/// the result does not depend on the input order.
fn ranked(dets: &[Detection]) -> Vec<Detection> {
    let mut d = dets.to_vec();
    d.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.bbox.y0.total_cmp(&b.bbox.y0))
            .then(a.bbox.x0.total_cmp(&b.bbox.x0))
            .then(a.bbox.y1.total_cmp(&b.bbox.y1))
            .then(a.bbox.x1.total_cmp(&b.bbox.x1))
            .then(a.class.cmp(&b.class))
    });
    d
}

/// When two windows dispute one place: they overlap by more than `iou`
/// (intersection over union), or the smaller lies more than `contain` inside
/// the other (intersection over the smaller area) — a window on part of an
/// object (the stem of a 9 reads as a 1) overlaps the whole little by IoU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overlap {
    /// IoU above which two windows dispute.
    pub iou: f32,
    /// Intersection over the smaller area above which they dispute (1: never).
    pub contain: f32,
}

impl Overlap {
    /// Windows that dispute only by IoU.
    pub fn iou(iou: f32) -> Self {
        Self { iou, contain: 1.0 }
    }

    /// Whether `a` and `b` dispute one place.
    pub fn disputes(&self, a: &BBox, b: &BBox) -> bool {
        let small = a.area().min(b.area());
        a.iou(b) > self.iou || (small > 0.0 && a.intersection(b) / small > self.contain)
    }
}

/// Non-maximum suppression: the best-scoring window wins, and every window
/// disputing a winner's place (`overlap`) is dropped, whatever its class.
pub fn nms(dets: &[Detection], overlap: Overlap) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for d in ranked(dets) {
        if kept.iter().all(|k| !overlap.disputes(&k.bbox, &d.bbox)) {
            kept.push(d);
        }
    }
    kept
}

/// Merging by averaging: the best-scoring window and every remaining window
/// disputing its place (`overlap`) become one detection whose box is their
/// score-weighted mean, with the best window's class and score.
pub fn merge(dets: &[Detection], overlap: Overlap) -> Vec<Detection> {
    let mut left = ranked(dets);
    let mut out = Vec::new();
    while !left.is_empty() {
        let top = left[0];
        let (group, rest): (Vec<Detection>, Vec<Detection>) = left
            .into_iter()
            .partition(|d| overlap.disputes(&d.bbox, &top.bbox) || *d == top);
        let w: f32 = group.iter().map(|d| d.score.max(1e-12)).sum();
        let avg = |f: fn(&BBox) -> f32| {
            group
                .iter()
                .map(|d| f(&d.bbox) * d.score.max(1e-12))
                .sum::<f32>()
                / w
        };
        out.push(Detection {
            bbox: BBox {
                x0: avg(|b| b.x0),
                y0: avg(|b| b.y0),
                x1: avg(|b| b.x1),
                y1: avg(|b| b.y1),
            },
            ..top
        });
        left = rest;
    }
    out
}

/// How overlapping windows are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Resolve {
    /// [`nms`].
    #[default]
    Suppress,
    /// [`merge`].
    Average,
}

/// Which computation scores the windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scoring {
    /// Fully convolutional when the network allows it, else window by window.
    #[default]
    Auto,
    /// Fully convolutional (an error when the network does not allow it).
    Convolutional,
    /// Window by window.
    Windows,
}

/// What [`Detector::detect`] does.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectOptions {
    /// Window sides in image pixels.
    pub windows: Vec<usize>,
    /// Distance between neighbouring windows in image pixels (rounded to
    /// whole pixels of the rescaled image).
    pub stride: usize,
    /// Windows scoring below this are not objects.
    pub threshold: f32,
    /// Windows overlapping more than this (IoU) dispute one object.
    pub overlap: f32,
    /// A window lying more than this inside another (intersection over its
    /// area) disputes its object too; 1 turns that off.
    pub contain: f32,
    /// How disputes are resolved.
    pub resolve: Resolve,
    /// How windows are scored.
    pub scoring: Scoring,
}

impl Default for DetectOptions {
    /// Tuned on the MNIST canvases (digits of 20–48 px): windows 20–48 px a
    /// factor ≈ 1.2 apart, stride 4, threshold 0.5, overlap 0.3, containment
    /// 0.6, suppression.
    fn default() -> Self {
        Self {
            windows: vec![20, 24, 28, 34, 40, 48],
            stride: 4,
            threshold: 0.5,
            overlap: 0.3,
            contain: 0.6,
            resolve: Resolve::Suppress,
            scoring: Scoring::Auto,
        }
    }
}

/// Class probabilities of a set of windows.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowScores {
    /// Each window's box in image pixels.
    pub boxes: Vec<BBox>,
    /// `boxes.len() × classes` probabilities, row by row.
    pub probs: Vec<f32>,
    /// Classes per row.
    pub classes: usize,
}

mod fc;
pub use fc::FcNet;

/// The per-channel affine map `x ↦ a·x + b` that `pipeline` is on images of
/// shape `raw`, or why it is not one.
fn channel_affine(
    pipeline: &FittedPipeline,
    raw: [usize; 3],
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let (a, b) = pixel_affine(pipeline, raw)?;
    let plane = raw[1] * raw[2];
    let mut out = (Vec::new(), Vec::new());
    for (k, (ak, bk)) in a.chunks(plane).zip(b.chunks(plane)).enumerate() {
        let same = |v: &[f32]| {
            v.iter()
                .all(|x| (x - v[0]).abs() <= 1e-5 * (1.0 + v[0].abs()))
        };
        if !same(ak) || !same(bk) {
            return Err(format!(
                "its preprocessing differs from pixel to pixel in channel {k} (whitening \
                 of whole images, say), so it cannot be applied to a whole image at once"
            ));
        }
        out.0.push(ak[0]);
        out.1.push(bk[0]);
    }
    Ok(out)
}

/// An image rescaled for one window size: pixels, shape, and the factors
/// `(sx, sy)` back to the image's pixels.
type Rescaled = (Vec<f32>, [usize; 3], f32, f32);

/// A trained classifier used as a detector.
pub struct Detector {
    model: Sequential<f32>,
    pipeline: Option<FittedPipeline>,
    /// The network's input `[C, h, w]` (the raw image shape).
    input: [usize; 3],
    class_names: Vec<String>,
    fc: Result<FcNet, String>,
}

impl Detector {
    /// A detector of `model` (weights loaded) for raw images of shape
    /// `input`, with its fitted preprocessing and its classes' names.
    pub fn new(
        model: Sequential<f32>,
        pipeline: Option<FittedPipeline>,
        input: [usize; 3],
        class_names: Vec<String>,
    ) -> Self {
        let fc = (|| {
            let lowered = model
                .lower(&input)
                .ok_or("one of its layers has no evaluation form to read")?;
            let affine = pipeline
                .as_ref()
                .map(|p| channel_affine(p, input))
                .transpose()?;
            FcNet::compile(&lowered, input, affine)
        })();
        Self {
            model,
            pipeline,
            input,
            class_names,
            fc,
        }
    }

    /// The trained model folder `model_dir` (`spec.toml` + `model.safetensors`);
    /// its data set is opened (from `data_dir` first) for the image shape and
    /// the classes' names.
    pub fn load(model_dir: &Path, data_dir: Option<&Path>) -> Result<Self, RunError> {
        let t = load_trained(model_dir, data_dir)?;
        Ok(Self::new(t.model, t.pipeline, t.raw, t.names))
    }

    /// The classes' names.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The index of the `"background"` class, if the model has one.
    pub fn background(&self) -> Option<usize> {
        self.class_names.iter().position(|n| n == BACKGROUND)
    }

    /// The network's input `[C, h, w]`.
    pub fn input(&self) -> [usize; 3] {
        self.input
    }

    /// The fully convolutional form, or why the network has none.
    pub fn fully_convolutional(&self) -> Result<&FcNet, &str> {
        self.fc.as_ref().map_err(|e| e.as_str())
    }

    /// `image` (`[C, H, W]`) rescaled so that a window of `side` pixels is
    /// the network's input: the pixels, the new shape, and the factors back
    /// to image pixels `(sx, sy)`. `None` when the image is smaller than a window.
    fn rescaled(
        &self,
        image: &[f32],
        shape: [usize; 3],
        side: usize,
    ) -> Result<Option<Rescaled>, RunError> {
        let [c, h, w] = self.input;
        if shape[0] != c {
            return Err(RunError::Usage(format!(
                "the image has {} channels but the network reads {c}",
                shape[0]
            )));
        }
        if side == 0 {
            return Err(RunError::Usage("a window side of 0 pixels".into()));
        }
        let nh = (shape[1] as f64 * h as f64 / side as f64).round() as usize;
        let nw = (shape[2] as f64 * w as f64 / side as f64).round() as usize;
        if nh < h || nw < w {
            return Ok(None);
        }
        let px = resize_image(image, shape, nh, nw, Filter::Triangle)?;
        let (sx, sy) = (shape[2] as f32 / nw as f32, shape[1] as f32 / nh as f32);
        Ok(Some((px, [c, nh, nw], sx, sy)))
    }

    /// The stride in rescaled pixels for `stride` image pixels at `side`.
    fn grid(&self, side: usize, stride: usize) -> usize {
        ((stride as f64 * self.input[1] as f64 / side as f64).round() as usize).max(1)
    }

    /// Where windows start along one axis of `len` rescaled pixels, for
    /// windows `h` long every `r` pixels at most. With a fully convolutional
    /// form of grid `s`, both scorings use its windows: the shifts
    /// `j·s/k` (`k = ⌈s/r⌉`) plus multiples of `s`; else multiples of `r`.
    /// Returns (shifts, positions).
    fn axis(&self, len: usize, h: usize, r: usize, s: Option<usize>) -> (Vec<usize>, Vec<usize>) {
        if len < h {
            return (Vec::new(), Vec::new());
        }
        match s {
            Some(s) => {
                let k = s.div_ceil(r).clamp(1, s);
                let mut shifts: Vec<usize> = (0..k).map(|j| j * s / k).collect();
                shifts.dedup();
                shifts.retain(|&o| o + h <= len);
                let mut at: Vec<usize> = shifts
                    .iter()
                    .flat_map(|&o| (o..=len - h).step_by(s))
                    .collect();
                at.sort_unstable();
                (shifts, at)
            }
            None => (vec![0], (0..=len - h).step_by(r).collect()),
        }
    }

    /// Scores of the windows of side `side` every `stride` image pixels,
    /// each cut out and classified (in batches of 256).
    pub fn window_scores(
        &mut self,
        image: &[f32],
        shape: [usize; 3],
        side: usize,
        stride: usize,
    ) -> Result<WindowScores, RunError> {
        let classes = self.class_names.len();
        let mut out = WindowScores {
            boxes: Vec::new(),
            probs: Vec::new(),
            classes,
        };
        let Some((px, rs, sx, sy)) = self.rescaled(image, shape, side)? else {
            return Ok(out);
        };
        let [c, h, w] = self.input;
        let r = self.grid(side, stride);
        let grid = self.fc.as_ref().ok().map(|f| f.stride);
        let (_, ys) = self.axis(rs[1], h, r, grid.map(|g| g[0]));
        let (_, xs) = self.axis(rs[2], w, r, grid.map(|g| g[1]));
        let mut at = Vec::new();
        for &y in &ys {
            for &x in &xs {
                at.push((y, x));
            }
        }
        for chunk in at.chunks(256) {
            let mut batch = Vec::with_capacity(chunk.len() * c * h * w);
            for &(y, x) in chunk {
                batch.extend(crop_window(&px, rs, y as isize, x as isize, h, w));
                out.boxes.push(BBox::new(
                    x as f32 * sx,
                    y as f32 * sy,
                    w as f32 * sx,
                    h as f32 * sy,
                ));
            }
            let mut t = Tensor::from_vec(batch, &[chunk.len(), c, h, w])
                .map_err(|e| RunError::Other(e.to_string()))?;
            if let Some(p) = &self.pipeline {
                t = p.apply_tensor(&t)?;
            }
            let logits = crate::logits(&mut self.model, t)?.to_vec();
            let mut p = vec![0.0; logits.len()];
            softmax_rows(&logits, classes, &mut p);
            out.probs.extend(p);
        }
        Ok(out)
    }

    /// Scores of the windows of side `side` on the network's grid (or finer,
    /// down to `stride` image pixels), by the fully convolutional network.
    pub fn fc_scores(
        &mut self,
        image: &[f32],
        shape: [usize; 3],
        side: usize,
        stride: usize,
    ) -> Result<WindowScores, RunError> {
        let fc = self.fc.as_ref().map_err(|why| {
            RunError::Usage(format!(
                "the network cannot run fully convolutionally: {why}"
            ))
        })?;
        let classes = self.class_names.len();
        let mut out = WindowScores {
            boxes: Vec::new(),
            probs: Vec::new(),
            classes,
        };
        let Some((px, rs, sx, sy)) = self.rescaled(image, shape, side)? else {
            return Ok(out);
        };
        let [_, h, w] = self.input;
        // The grid is S pixels; a finer stride r runs the network k times
        // per axis on the image shifted by S/k.
        let r = self.grid(side, stride);
        let (sy_shifts, _) = self.axis(rs[1], h, r, Some(fc.stride[0]));
        let (sx_shifts, _) = self.axis(rs[2], w, r, Some(fc.stride[1]));
        for &oy in &sy_shifts {
            for &ox in &sx_shifts {
                let sub = [rs[0], rs[1] - oy, rs[2] - ox];
                if sub[1] < h || sub[2] < w {
                    continue;
                }
                let img = if (oy, ox) == (0, 0) {
                    px.clone()
                } else {
                    crop_window(&px, rs, oy as isize, ox as isize, sub[1], sub[2])
                };
                let y = fc.run(&img, sub).map_err(RunError::Other)?;
                let (k, rows, cols) = (y.shape()[1], y.shape()[2], y.shape()[3]);
                if k != classes {
                    return Err(RunError::Other(format!(
                        "the network gives {k} scores per window for {classes} classes"
                    )));
                }
                // [classes, rows·cols] to one row of classes per window.
                let v = y.to_vec();
                let n = rows * cols;
                let mut t = vec![0.0; n * k];
                for (c, plane) in v.chunks_exact(n).enumerate() {
                    for (i, &s) in plane.iter().enumerate() {
                        t[i * k + c] = s;
                    }
                }
                let mut p = vec![0.0; t.len()];
                softmax_rows(&t, k, &mut p);
                out.probs.extend(p);
                for i in 0..rows {
                    for j in 0..cols {
                        let (y, x) = (oy + i * fc.stride[0], ox + j * fc.stride[1]);
                        out.boxes.push(BBox::new(
                            x as f32 * sx,
                            y as f32 * sy,
                            w as f32 * sx,
                            h as f32 * sy,
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether [`Detector::detect`] with `path` runs fully convolutionally.
    pub fn uses_fc(&self, scoring: Scoring) -> Result<bool, RunError> {
        match (scoring, &self.fc) {
            (Scoring::Windows, _) => Ok(false),
            (Scoring::Auto, fc) => Ok(fc.is_ok()),
            (Scoring::Convolutional, Ok(_)) => Ok(true),
            (Scoring::Convolutional, Err(why)) => Err(RunError::Usage(format!(
                "the network cannot run fully convolutionally: {why}"
            ))),
        }
    }

    /// The objects in `image` (`[C, H, W]`, pixels in `[0, 1]`).
    pub fn detect(
        &mut self,
        image: &[f32],
        shape: [usize; 3],
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>, RunError> {
        let unit = |v: f32| (0.0..=1.0).contains(&v);
        if !unit(opts.threshold) || !unit(opts.overlap) || !unit(opts.contain) {
            return Err(RunError::Usage(format!(
                "--threshold {}, --overlap {} and --contain {} must lie in [0, 1]",
                opts.threshold, opts.overlap, opts.contain
            )));
        }
        if opts.windows.is_empty() || opts.stride == 0 {
            return Err(RunError::Usage(
                "detection needs at least one window size and a stride of at least 1 pixel".into(),
            ));
        }
        let fc = self.uses_fc(opts.scoring)?;
        let overlap = Overlap {
            iou: opts.overlap,
            contain: opts.contain,
        };
        let bg = self.background();
        let mut dets = Vec::new();
        for &side in &opts.windows {
            let s = if fc {
                self.fc_scores(image, shape, side, opts.stride)?
            } else {
                self.window_scores(image, shape, side, opts.stride)?
            };
            for (b, p) in s.boxes.iter().zip(s.probs.chunks_exact(s.classes)) {
                let best = p
                    .iter()
                    .enumerate()
                    .filter(|(c, _)| Some(*c) != bg)
                    .max_by(|a, b| a.1.total_cmp(b.1));
                if let Some((class, &score)) = best {
                    if score >= opts.threshold {
                        dets.push(Detection {
                            bbox: *b,
                            class,
                            score,
                        });
                    }
                }
            }
        }
        Ok(match opts.resolve {
            Resolve::Suppress => nms(&dets, overlap),
            Resolve::Average => merge(&dets, overlap),
        })
    }
}

mod metrics;
pub use metrics::{evaluate_detections, ClassMetrics, DetectionMetrics};
mod job;
pub use job::{detect_images, read_truth, DetectJob, DetectReport, MNIST_CANVAS};

#[cfg(test)]
mod tests;

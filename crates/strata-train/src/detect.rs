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
//! non-maximum suppression ([`nms`]) or merging by averaging ([`merge`]).
//! [`evaluate_detections`] gives precision, recall and average precision
//! per class at IoU 0.5 and over 0.5:0.95.

use crate::onnx::{load_trained, pixel_affine};
use crate::run::RunError;
use std::path::Path;
use strata_autograd::kernels::pool::OddPolicy;
use strata_autograd::kernels::softmax::softmax_rows;
use strata_autograd::ops::conv2d::Conv2dOptions;
use strata_autograd::{Tape, Var};
use strata_data::canvas::BACKGROUND;
use strata_data::{crop_window, resize_image, BBox, Filter, FittedPipeline, Object};
use strata_nn::{Lowered, Module, Sequential};
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

/// Non-maximum suppression: the best-scoring window wins, and every window
/// overlapping a winner by more than `overlap` (IoU) is dropped, whatever
/// its class — overlapping windows dispute one place.
pub fn nms(dets: &[Detection], overlap: f32) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for d in ranked(dets) {
        if kept.iter().all(|k| k.bbox.iou(&d.bbox) <= overlap) {
            kept.push(d);
        }
    }
    kept
}

/// Merging by averaging: the best-scoring window and every remaining window
/// overlapping it by more than `overlap` become one detection whose box is
/// their score-weighted mean, with the best window's class and score.
pub fn merge(dets: &[Detection], overlap: f32) -> Vec<Detection> {
    let mut left = ranked(dets);
    let mut out = Vec::new();
    while !left.is_empty() {
        let top = left[0];
        let (group, rest): (Vec<Detection>, Vec<Detection>) = left
            .into_iter()
            .partition(|d| d.bbox.iou(&top.bbox) > overlap || *d == top);
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
    /// How disputes are resolved.
    pub resolve: Resolve,
    /// How windows are scored.
    pub scoring: Scoring,
}

impl Default for DetectOptions {
    /// Tuned on the MNIST canvases (digits of 20–48 px): windows 20–48 px a
    /// factor ≈ 1.2 apart, stride 4, threshold 0.5, overlap 0.3, suppression.
    fn default() -> Self {
        Self {
            windows: vec![20, 24, 28, 34, 40, 48],
            stride: 4,
            threshold: 0.5,
            overlap: 0.3,
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

/// One layer of the fully convolutional network.
#[derive(Clone, Debug)]
enum FcOp {
    Conv {
        weight: Tensor<f32>,
        bias: Option<Tensor<f32>>,
        stride: [usize; 2],
        relu: bool,
    },
    BatchNorm {
        gamma: Tensor<f32>,
        beta: Tensor<f32>,
        mean: Vec<f32>,
        var: Vec<f32>,
        eps: f64,
    },
    Relu,
    Gelu,
    Scale(f32),
    MaxPool {
        window: [usize; 2],
        stride: [usize; 2],
    },
    Residual {
        pre: Vec<FcOp>,
        body: Vec<FcOp>,
        shortcut: Option<Vec<FcOp>>,
        relu: bool,
    },
}

/// Per-window shape while compiling: `[C, H, W]`, and whether it has been
/// flattened (a linear layer then reads all of it).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Geometry {
    shape: [usize; 3],
    flat: bool,
    stride: [usize; 2],
}

/// The network read as convolutions over a whole image.
#[derive(Clone, Debug)]
pub struct FcNet {
    ops: Vec<FcOp>,
    /// The grid of its windows in input pixels, `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// The window it classifies, `[C, h, w]`.
    pub window: [usize; 3],
}

fn compile_one(l: &Lowered<f32>, g: &mut Geometry, out: &mut Vec<FcOp>) -> Result<(), String> {
    let [c, h, w] = g.shape;
    match l {
        Lowered::Sequence(ls) => {
            for l in ls {
                compile_one(l, g, out)?;
            }
        }
        Lowered::Identity => {}
        Lowered::Relu => out.push(FcOp::Relu),
        Lowered::Gelu => out.push(FcOp::Gelu),
        Lowered::Scale(f) => out.push(FcOp::Scale(*f as f32)),
        Lowered::Flatten => g.flat = true,
        Lowered::Conv {
            weight,
            bias,
            stride,
            pad,
            ..
        } => {
            if g.flat {
                return Err("a convolution after the flatten".into());
            }
            if pad.top + pad.bottom + pad.left + pad.right > 0 {
                return Err(format!(
                    "its convolution {:?} pads its input, and over a whole image a window \
                     would see its neighbours' pixels where it saw padding",
                    weight.shape()
                ));
            }
            let (kh, kw) = (weight.shape()[2], weight.shape()[3]);
            if h < kh || w < kw {
                return Err(format!("a {kh}×{kw} convolution of a {h}×{w} map"));
            }
            g.shape = [
                weight.shape()[0],
                (h - kh) / stride[0] + 1,
                (w - kw) / stride[1] + 1,
            ];
            g.stride = [g.stride[0] * stride[0], g.stride[1] * stride[1]];
            out.push(FcOp::Conv {
                weight: weight.clone(),
                bias: bias.clone(),
                stride: *stride,
                relu: false,
            });
        }
        Lowered::Linear { weight, bias, relu } => {
            // A linear layer of the whole per-window block is a convolution
            // with a kernel that size.
            let (o, i) = (weight.shape()[0], weight.shape()[1]);
            if !g.flat && (h, w) != (1, 1) {
                return Err("a linear layer before any flatten".into());
            }
            if i != c * h * w {
                return Err(format!(
                    "a linear layer of {i} inputs after a {c}×{h}×{w} block"
                ));
            }
            let weight = weight.reshape(&[o, c, h, w]).map_err(|e| e.to_string())?;
            g.shape = [o, 1, 1];
            g.flat = false;
            out.push(FcOp::Conv {
                weight,
                bias: Some(bias.clone()),
                stride: [1, 1],
                relu: *relu,
            });
        }
        Lowered::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            eps,
        } => {
            if g.flat && (h, w) != (1, 1) {
                return Err("batch norm of a flattened block".into());
            }
            out.push(FcOp::BatchNorm {
                gamma: gamma.clone(),
                beta: beta.clone(),
                mean: mean.to_vec(),
                var: var.to_vec(),
                eps: *eps,
            });
        }
        Lowered::MaxPool {
            window,
            stride,
            ceil,
        } => {
            if g.flat {
                return Err("pooling after the flatten".into());
            }
            let partial = |n: usize, k: usize, s: usize| n >= k && (n - k) % s != 0;
            if *ceil && (partial(h, window[0], stride[0]) || partial(w, window[1], stride[1])) {
                return Err(
                    "its pooling keeps partial windows at the block's edge, which a whole \
                     image does not have"
                        .into(),
                );
            }
            if h < window[0] || w < window[1] {
                return Err(format!("a {:?} pooling of a {h}×{w} map", window));
            }
            g.shape = [
                c,
                (h - window[0]) / stride[0] + 1,
                (w - window[1]) / stride[1] + 1,
            ];
            g.stride = [g.stride[0] * stride[0], g.stride[1] * stride[1]];
            out.push(FcOp::MaxPool {
                window: *window,
                stride: *stride,
            });
        }
        Lowered::GlobalAvgPool => {
            return Err(
                "it averages over the whole block (global average pooling); a network that \
                 ends in a flatten and linear layers runs fully convolutionally"
                    .into(),
            )
        }
        Lowered::Residual {
            pre,
            body,
            shortcut,
            relu,
        } => {
            let at_x = *g;
            let mut p = Vec::new();
            compile_one(pre, g, &mut p)?;
            let at_h = *g;
            let mut b = Vec::new();
            compile_one(body, g, &mut b)?;
            let (s, at_skip) = match shortcut {
                Some(sc) => {
                    let mut gs = at_h;
                    let mut s = Vec::new();
                    compile_one(sc, &mut gs, &mut s)?;
                    (Some(s), gs)
                }
                None => (None, at_x),
            };
            if at_skip != *g {
                return Err("a residual layer whose branches differ in size".into());
            }
            out.push(FcOp::Residual {
                pre: p,
                body: b,
                shortcut: s,
                relu: *relu,
            });
        }
    }
    Ok(())
}

impl FcNet {
    /// Reads `lowered` (the network for `[C, h, w]` windows) as convolutions,
    /// after the per-channel affine map `x ↦ a·x + b` of the preprocessing
    /// when given; an error says which layer prevents it.
    pub fn compile(
        lowered: &Lowered<f32>,
        window: [usize; 3],
        affine: Option<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Self, String> {
        let mut ops = Vec::new();
        if let Some((a, b)) = affine {
            // The preprocessing as a 1×1 convolution: weight diag(a), bias b.
            let c = window[0];
            let mut wv = vec![0.0; c * c];
            for k in 0..c {
                wv[k * c + k] = a[k];
            }
            ops.push(FcOp::Conv {
                weight: Tensor::from_vec(wv, &[c, c, 1, 1]).map_err(|e| e.to_string())?,
                bias: Some(Tensor::from_vec(b, &[c]).map_err(|e| e.to_string())?),
                stride: [1, 1],
                relu: false,
            });
        }
        let mut g = Geometry {
            shape: window,
            flat: false,
            stride: [1, 1],
        };
        compile_one(lowered, &mut g, &mut ops)?;
        if g.shape[1..] != [1, 1] {
            return Err(format!(
                "its output for one window is a {:?} block, not one score per class",
                g.shape
            ));
        }
        Ok(Self {
            ops,
            stride: g.stride,
            window,
        })
    }

    /// The `[1, classes, rows, cols]` output for a `[C, H, W]` image.
    pub fn run(&self, image: &[f32], shape: [usize; 3]) -> Result<Tensor<f32>, String> {
        let mut tape = Tape::<f32>::inference();
        let x = Tensor::from_vec(image.to_vec(), &[1, shape[0], shape[1], shape[2]])
            .map_err(|e| e.to_string())?;
        let x = tape.input(x);
        let y = run_ops(&mut tape, &self.ops, x).map_err(|e| e.to_string())?;
        Ok(tape.value(y).map_err(|e| e.to_string())?.clone())
    }
}

fn run_ops(
    tape: &mut Tape<f32>,
    ops: &[FcOp],
    mut x: Var,
) -> Result<Var, strata_autograd::AutogradError> {
    for op in ops {
        x = match op {
            FcOp::Conv {
                weight,
                bias,
                stride,
                relu,
            } => {
                let w = tape.input(weight.clone());
                let b = bias.as_ref().map(|b| tape.input(b.clone()));
                let opts = Conv2dOptions {
                    stride: *stride,
                    ..Conv2dOptions::default()
                };
                tape.conv2d_add_act(x, w, b, None, opts, *relu)?
            }
            FcOp::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                eps,
            } => {
                let (g, b) = (tape.input(gamma.clone()), tape.input(beta.clone()));
                tape.batch_norm_eval(x, g, b, mean, var, *eps)?
            }
            FcOp::Relu => tape.relu(x)?,
            FcOp::Gelu => tape.gelu(x)?,
            FcOp::Scale(f) => tape.scale(x, *f)?,
            FcOp::MaxPool { window, stride } => {
                tape.max_pool2d(x, *window, *stride, OddPolicy::Floor)?
            }
            FcOp::Residual {
                pre,
                body,
                shortcut,
                relu,
            } => {
                let h = run_ops(tape, pre, x)?;
                let skip = match shortcut {
                    Some(s) => run_ops(tape, s, h)?,
                    None => x,
                };
                let f = run_ops(tape, body, h)?;
                tape.add_act(f, skip, *relu)?
            }
        };
    }
    Ok(x)
}

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
    ) -> Result<Option<(Vec<f32>, [usize; 3], f32, f32)>, RunError> {
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
        if !(0.0..=1.0).contains(&opts.threshold) || !(0.0..=1.0).contains(&opts.overlap) {
            return Err(RunError::Usage(format!(
                "--threshold {} and --overlap {} must lie in [0, 1]",
                opts.threshold, opts.overlap
            )));
        }
        if opts.windows.is_empty() || opts.stride == 0 {
            return Err(RunError::Usage(
                "detection needs at least one window size and a stride of at least 1 pixel".into(),
            ));
        }
        let fc = self.uses_fc(opts.scoring)?;
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
            Resolve::Suppress => nms(&dets, opts.overlap),
            Resolve::Average => merge(&dets, opts.overlap),
        })
    }
}

/// Precision, recall and average precision of one class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassMetrics {
    /// The class's name.
    pub name: String,
    /// Objects of the class in the ground truth.
    pub objects: usize,
    /// Detections of the class.
    pub detections: usize,
    /// Detections matching an object at IoU ≥ 0.5, over all detections.
    pub precision: f64,
    /// Objects matched at IoU ≥ 0.5, over all objects.
    pub recall: f64,
    /// Average precision at IoU 0.5.
    pub ap50: f64,
    /// Average precision averaged over IoU 0.50, 0.55, …, 0.95.
    pub ap50_95: f64,
}

/// Detection quality over a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionMetrics {
    /// Per class that has objects or detections.
    pub classes: Vec<ClassMetrics>,
    /// Mean of `ap50` over classes with objects.
    pub map50: f64,
    /// Mean of `ap50_95` over classes with objects.
    pub map50_95: f64,
    /// Over all classes.
    pub precision: f64,
    /// Over all classes.
    pub recall: f64,
}

/// Detections of `class` matched greedily (highest score first) to the
/// unmatched objects of that class with the highest IoU ≥ `t`: for each
/// detection in score order, whether it is a true positive.
fn matches(
    dets: &[Vec<Detection>],
    truth: &[Vec<Object>],
    class: usize,
    t: f32,
) -> Vec<(f32, bool)> {
    let mut all: Vec<(usize, Detection)> = dets
        .iter()
        .enumerate()
        .flat_map(|(i, d)| d.iter().filter(|d| d.class == class).map(move |d| (i, *d)))
        .collect();
    all.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    let mut used: Vec<Vec<bool>> = truth.iter().map(|o| vec![false; o.len()]).collect();
    all.iter()
        .map(|(i, d)| {
            let best = truth[*i]
                .iter()
                .enumerate()
                .filter(|(j, o)| o.class == class && !used[*i][*j])
                .map(|(j, o)| (j, o.bbox.iou(&d.bbox)))
                .filter(|(_, iou)| *iou >= t)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((j, _)) = best {
                used[*i][j] = true;
            }
            (d.score, best.is_some())
        })
        .collect()
}

/// Average precision: the area under the precision–recall curve, with the
/// precision at each recall the best at that recall or beyond (all points).
fn average_precision(hits: &[(f32, bool)], objects: usize) -> f64 {
    if objects == 0 {
        return 0.0;
    }
    let mut tp = 0usize;
    let mut curve = Vec::with_capacity(hits.len());
    for (k, &(_, hit)) in hits.iter().enumerate() {
        tp += hit as usize;
        curve.push((tp as f64 / objects as f64, tp as f64 / (k + 1) as f64));
    }
    let (mut ap, mut best) = (0.0, 0.0f64);
    for k in (0..curve.len()).rev() {
        best = best.max(curve[k].1);
        let before = if k > 0 { curve[k - 1].0 } else { 0.0 };
        ap += (curve[k].0 - before) * best;
    }
    ap
}

/// Precision, recall and mean average precision of `dets` against `truth`
/// (one list per image each); `names` are the model's classes.
pub fn evaluate_detections(
    dets: &[Vec<Detection>],
    truth: &[Vec<Object>],
    names: &[String],
) -> DetectionMetrics {
    let mut classes = Vec::new();
    let (mut tp_all, mut det_all, mut obj_all) = (0usize, 0usize, 0usize);
    for (class, name) in names.iter().enumerate() {
        let objects = truth.iter().flatten().filter(|o| o.class == class).count();
        let hits = matches(dets, truth, class, 0.5);
        if objects == 0 && hits.is_empty() {
            continue;
        }
        let tp = hits.iter().filter(|h| h.1).count();
        let ap50 = average_precision(&hits, objects);
        let ap50_95 = (0..10)
            .map(|k| {
                average_precision(&matches(dets, truth, class, 0.5 + 0.05 * k as f32), objects)
            })
            .sum::<f64>()
            / 10.0;
        tp_all += tp;
        det_all += hits.len();
        obj_all += objects;
        classes.push(ClassMetrics {
            name: name.clone(),
            objects,
            detections: hits.len(),
            precision: if hits.is_empty() {
                0.0
            } else {
                tp as f64 / hits.len() as f64
            },
            recall: if objects == 0 {
                0.0
            } else {
                tp as f64 / objects as f64
            },
            ap50,
            ap50_95,
        });
    }
    let with: Vec<&ClassMetrics> = classes.iter().filter(|c| c.objects > 0).collect();
    let mean = |f: fn(&ClassMetrics) -> f64| {
        if with.is_empty() {
            0.0
        } else {
            with.iter().map(|c| f(c)).sum::<f64>() / with.len() as f64
        }
    };
    DetectionMetrics {
        map50: mean(|c| c.ap50),
        map50_95: mean(|c| c.ap50_95),
        precision: if det_all == 0 {
            0.0
        } else {
            tp_all as f64 / det_all as f64
        },
        recall: if obj_all == 0 {
            0.0
        } else {
            tp_all as f64 / obj_all as f64
        },
        classes,
    }
}

mod job;
pub use job::{detect_images, read_truth, DetectJob, DetectReport, MNIST_CANVAS};

#[cfg(test)]
mod tests;

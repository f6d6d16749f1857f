//! The chapter's pictures, drawn by the library that trains (`strata viz`).
//!
//! - [`valley_paths`] / [`valley_plot`]: the paths of SGD, momentum,
//!   Adagrad, RMSprop and Adam on the valley `f(x, y) = ½(εx² + y²)` and on
//!   its rotated and translated copy (Figures 12.8 and 12.9), over its level
//!   curves. Each step is strata-optim's own update, applied to a
//!   two-number parameter whose gradient is `∇f`.
//! - [`filters_plot`]: the first convolution's kernels as a grid of images
//!   (the patch-whitening filters when that layer comes first).
//! - [`dead_units_plot`]: the fraction of dead units per layer per epoch
//!   from a run's `metrics.jsonl` (12.1.3).
//! - [`learning_rates_plot`]: the loss against the step for several
//!   constant learning rates, from a short run each ("too small, too
//!   large, about right").
//! - [`augment_plot`]: training images as the network sees them, after
//!   preprocessing and augmentation, one row per epoch (crops, flips and
//!   whitening at a glance).
//! - [`regions_plot`]: for a model of points of the plane (`dataset =
//!   "moons"`, `"blobs"`, `"rings"`), the class it gives every point, the
//!   training points, and the lines `w·x + b = 0` of its first layer's
//!   units (Figure 12.1).

use std::path::Path;

use plotters::prelude::*;
use strata_autograd::Param;
use strata_data::{save_grid, GridOptions};
use strata_nn::Lowered;
use strata_optim::{Method, Optimizer, Schedule};
use strata_tensor::Tensor;

use crate::onnx::load_trained;
use crate::plot::{err, fonts, save_png};
use crate::run::RunError;

/// The valley and the run of each method on it.
#[derive(Clone, Debug)]
pub struct ValleyOptions {
    /// The learning rate `η` every method uses.
    pub lr: f64,
    /// The valley's flatness `ε` (curvature ε along x, 1 along y).
    pub eps: f64,
    /// Steps per method.
    pub steps: usize,
    /// The starting point.
    pub start: [f64; 2],
    /// The rotated copy's angle (degrees) and its minimum.
    pub angle: f64,
    /// Where the rotated copy's minimum lies.
    pub centre: [f64; 2],
}

impl Default for ValleyOptions {
    fn default() -> Self {
        Self {
            lr: 0.1,
            eps: 0.1,
            steps: 60,
            start: [-4.0, 3.0],
            angle: 30.0,
            centre: [1.0, 0.5],
        }
    }
}

/// One method's path: its name and the points it visited, start first.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimPath {
    /// "sgd", "momentum", "adagrad", "rmsprop" or "adam".
    pub method: &'static str,
    /// `steps + 1` points.
    pub points: Vec<[f64; 2]>,
}

/// The five methods, with the chapter's usual constants.
fn methods() -> [(&'static str, Method); 5] {
    [
        ("sgd", Method::Sgd),
        ("momentum", Method::Momentum { mu: 0.9 }),
        ("adagrad", Method::Adagrad { alpha: 1e-6 }),
        (
            "rmsprop",
            Method::RmsProp {
                decay: 0.9,
                alpha: 1e-6,
            },
        ),
        (
            "adam",
            Method::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        ),
    ]
}

/// `H` and the minimum `c` of the valley: `∇f(p) = H(p − c)`, with
/// `H = Rᵀ diag(ε, 1) R` rotated by `angle` and `c = centre` for the copy, or
/// `diag(ε, 1)` and `c = 0`.
fn hessian(o: &ValleyOptions, rotated: bool) -> ([[f64; 2]; 2], [f64; 2]) {
    if !rotated {
        return ([[o.eps, 0.0], [0.0, 1.0]], [0.0, 0.0]);
    }
    let (s, c) = o.angle.to_radians().sin_cos();
    // R = [[c, -s], [s, c]]; H = R diag(ε, 1) Rᵀ.
    let h00 = o.eps * c * c + s * s;
    let h01 = (o.eps - 1.0) * c * s;
    let h11 = o.eps * s * s + c * c;
    ([[h00, h01], [h01, h11]], o.centre)
}

/// Runs every method on the valley (`rotated`: on its rotated, translated
/// copy) and returns their paths.
pub fn valley_paths(o: &ValleyOptions, rotated: bool) -> Result<Vec<OptimPath>, String> {
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(format!("--lr must be a positive number, got {}", o.lr));
    }
    if !(o.eps.is_finite() && o.eps > 0.0) {
        return Err(format!("--eps must be a positive number, got {}", o.eps));
    }
    if o.steps == 0 || o.steps > 100_000 {
        return Err(format!("--steps must lie in 1..=100000, got {}", o.steps));
    }
    let (h, c) = hessian(o, rotated);
    let mut out = Vec::new();
    for (name, method) in methods() {
        let mut opt = Optimizer::<f64>::new(method, 0.0, Schedule::Constant { lr: o.lr })
            .map_err(|e| e.to_string())?;
        let start = Tensor::from_vec(o.start.to_vec(), &[2]).map_err(|e| e.to_string())?;
        let mut p = Param::new(start, false);
        let mut points = vec![o.start];
        for _ in 0..o.steps {
            let v = p.value.to_vec();
            let d = [v[0] - c[0], v[1] - c[1]];
            let g = vec![
                h[0][0] * d[0] + h[0][1] * d[1],
                h[1][0] * d[0] + h[1][1] * d[1],
            ];
            let g = Tensor::from_vec(g, &[2]).map_err(|e| e.to_string())?;
            opt.step(
                std::iter::once(("p".to_string(), &mut p)),
                |_| Some(g.clone()),
                0,
            )
            .map_err(|e| e.to_string())?;
            let v = p.value.to_vec();
            points.push([v[0], v[1]]);
        }
        out.push(OptimPath {
            method: name,
            points,
        });
    }
    Ok(out)
}

const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// `path`: two panels (the valley, its rotated and translated copy), each
/// with level curves of `f` and every method's path. Returns the paths
/// drawn (axis-aligned first).
pub fn valley_plot(
    path: &Path,
    o: &ValleyOptions,
) -> Result<(Vec<OptimPath>, Vec<OptimPath>), String> {
    fonts();
    let (w, hgt) = (1400u32, 650u32);
    let plain = valley_paths(o, false)?;
    let turned = valley_paths(o, true)?;
    let mut buf = vec![0u8; (w * hgt * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, hgt)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let panels = root.split_evenly((1, 2));
        for (panel, (paths, rotated)) in panels.iter().zip([(&plain, false), (&turned, true)]) {
            // The window: every point, and the start, with a margin; paths
            // that diverge are clipped, not allowed to zoom out.
            let r = o.start[0].abs().max(o.start[1].abs()) * 1.3 + 1.0;
            let (h, c) = hessian(o, rotated);
            let caption = if rotated {
                format!(
                    "rotated {}°, minimum at ({}, {})",
                    o.angle, o.centre[0], o.centre[1]
                )
            } else {
                format!("f = ½(εx² + y²), ε = {}", o.eps)
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(-r..r, -r..r)
                .map_err(|e| err(path, e))?;
            chart.configure_mesh().draw().map_err(|e| err(path, e))?;
            // Level curves f = ½ dᵀHd = L: d = L-scaled points on the ellipse.
            let f0 = {
                let d = [o.start[0] - c[0], o.start[1] - c[1]];
                0.5 * (d[0] * (h[0][0] * d[0] + h[0][1] * d[1])
                    + d[1] * (h[1][0] * d[0] + h[1][1] * d[1]))
            };
            for k in 1..=8 {
                let level = f0 * (k as f64 / 8.0).powi(2) * 1.5;
                let ring: Vec<(f64, f64)> = (0..=120)
                    .map(|i| {
                        let t = i as f64 / 120.0 * std::f64::consts::TAU;
                        let (u, v) = (t.cos(), t.sin());
                        // Along direction (u, v), f = ½ s² (uᵀHu): s for level.
                        let q = u * (h[0][0] * u + h[0][1] * v) + v * (h[1][0] * u + h[1][1] * v);
                        let s = (2.0 * level / q).sqrt();
                        (c[0] + s * u, c[1] + s * v)
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(ring, RGBColor(200, 200, 200)))
                    .map_err(|e| err(path, e))?;
            }
            for (p, colour) in paths.iter().zip(COLOURS) {
                let pts: Vec<(f64, f64)> = p
                    .points
                    .iter()
                    .filter(|q| q[0].abs() <= r && q[1].abs() <= r)
                    .map(|q| (q[0], q[1]))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                    .map_err(|e| err(path, e))?
                    .label(p.method)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|&q| Circle::new(q, 2, colour.filled())))
                    .map_err(|e| err(path, e))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .border_style(BLACK)
                .background_style(WHITE.mix(0.85))
                .draw()
                .map_err(|e| err(path, e))?;
        }
        root.present().map_err(|e| err(path, e))?;
    }
    save_png(path, &buf, (w, hgt))?;
    Ok((plain, turned))
}

/// The first convolution of a trained model folder, as `[out, C, k, k]`.
pub fn first_conv_kernels(
    model_dir: &Path,
    data_dir: Option<&Path>,
) -> Result<Tensor<f32>, RunError> {
    let t = load_trained(model_dir, data_dir)?;
    fn find(l: &Lowered<f32>) -> Option<Tensor<f32>> {
        match l {
            Lowered::Conv { weight, .. } => Some(weight.clone()),
            Lowered::Sequence(v) => v.iter().find_map(find),
            Lowered::Residual { pre, body, .. } => find(pre).or_else(|| find(body)),
            _ => None,
        }
    }
    let mut shape = t.raw.to_vec();
    for layer in t.model.layers() {
        if let Some(w) = layer.lower(&shape).as_ref().and_then(find) {
            return Ok(w);
        }
        shape = layer
            .output_shape(&shape)
            .map_err(|e| RunError::Other(e.to_string()))?;
    }
    Err(RunError::Usage(format!(
        "{}: the network has no convolution, so there are no filters to draw",
        model_dir.display()
    )))
}

/// `path`: the first convolution's kernels of `model_dir`, one tile per
/// output slice (a tile per input channel side by side when `C` is not 1 or
/// 3), each scaled to its own range. Returns the kernels' shape.
pub fn filters_plot(
    model_dir: &Path,
    data_dir: Option<&Path>,
    path: &Path,
) -> Result<Vec<usize>, RunError> {
    let w = first_conv_kernels(model_dir, data_dir)?;
    let s = w.shape().to_vec();
    let (o, c, kh, kw) = (s[0], s[1], s[2], s[3]);
    // RGB kernels stay colour triples in one tile; other channel counts are
    // shown channel by channel as grey tiles.
    let tiles = if c == 1 || c == 3 {
        w.clone()
    } else {
        Tensor::from_vec(w.to_vec(), &[o * c, 1, kh, kw])
            .map_err(|e| RunError::Other(e.to_string()))?
    };
    let opts = GridOptions {
        columns: Some(if c == 1 || c == 3 { o.min(16) } else { c }),
        padding: 2,
        upscale: (96 / kh.max(kw)).clamp(4, 32),
        ..GridOptions::default()
    };
    save_grid(path, &tiles, &opts)?;
    Ok(s)
}

/// One ReLU layer's dead-unit fraction per epoch: its name and `(epoch,
/// fraction)` points.
pub type DeadSeries = (String, Vec<(usize, f64)>);

/// The dead-unit fractions per layer and epoch in `run_dir/metrics.jsonl`.
pub fn dead_units(run_dir: &Path) -> Result<Vec<DeadSeries>, RunError> {
    let file = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        RunError::Usage(format!(
            "{}: {e} (a folder written by `strata train` holds metrics.jsonl)",
            file.display()
        ))
    })?;
    let mut layers: Vec<DeadSeries> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            RunError::Other(format!(
                "{}:{}: not a JSON line: {e}",
                file.display(),
                n + 1
            ))
        })?;
        if v["kind"] != "epoch" {
            continue;
        }
        let epoch = v["epoch"].as_u64().unwrap_or(0) as usize;
        if let Some(d) = v["dead_units"].as_object() {
            for (name, f) in d {
                let Some(f) = f.as_f64() else { continue };
                match layers.iter_mut().find(|(l, _)| l == name) {
                    Some((_, pts)) => pts.push((epoch, f)),
                    None => layers.push((name.clone(), vec![(epoch, f)])),
                }
            }
        }
    }
    if layers.is_empty() {
        return Err(RunError::Usage(format!(
            "{}: no epoch records dead units (the network has no ReLU layers, or no epoch finished)",
            file.display()
        )));
    }
    Ok(layers)
}

/// `path`: the fraction of dead units of each ReLU layer against the epoch.
/// Returns the series drawn.
pub fn dead_units_plot(run_dir: &Path, path: &Path) -> Result<Vec<DeadSeries>, RunError> {
    let layers = dead_units(run_dir)?;
    fonts();
    let (w, h) = (900u32, 500u32);
    let epochs = layers
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let draw = |buf: &mut [u8]| -> Result<(), String> {
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("dead units (never active in the epoch)", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..epochs + 0.5, 0f64..1.0)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("fraction dead")
            .draw()
            .map_err(|e| err(path, e))?;
        for (i, (name, pts)) in layers.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let pts: Vec<(f64, f64)> = pts.iter().map(|&(e, f)| (e as f64, f)).collect();
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                .map_err(|e| err(path, e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))
    };
    draw(&mut buf).map_err(RunError::Other)?;
    save_png(path, &buf, (w, h)).map_err(RunError::Other)?;
    Ok(layers)
}

/// What [`regions_plot`] drew.
#[derive(Clone, Debug)]
pub struct Regions {
    /// The window `[x_min, x_max, y_min, y_max]`.
    pub window: [f64; 4],
    /// Cells per side of the grid of classified points.
    pub cells: usize,
    /// The class of each cell's centre, row by row from the bottom
    /// (`y_min`), left to right.
    pub classes: Vec<usize>,
    /// `(w₁, w₂, b)` of each unit of the first linear layer (its lines
    /// `w₁x + w₂y + b = 0`), when the network starts with one.
    pub lines: Vec<[f64; 3]>,
}

/// `path`: the decision regions of the model in `model_dir`, which must take
/// points of the plane (`[2, 1, 1]` inputs), with its training points and its
/// first layer's lines.
pub fn regions_plot(
    model_dir: &Path,
    data_dir: Option<&Path>,
    path: &Path,
) -> Result<Regions, RunError> {
    let mut t = load_trained(model_dir, data_dir)?;
    if t.raw != [2, 1, 1] {
        return Err(RunError::Usage(format!(
            "{}: regions are drawn for models of points of the plane (dataset = \"moons\", \
             \"blobs\" or \"rings\"), but this one takes inputs of shape {:?}",
            model_dir.display(),
            t.raw
        )));
    }
    let train = crate::run::load_raw(&t.spec, data_dir)?.train;
    let (pts, labels) = train
        .batch(&(0..train.len()).collect::<Vec<_>>())
        .map_err(RunError::from)?;
    let pts = pts.to_vec();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in pts.chunks_exact(2) {
        let (x, y) = (f64::from(p[0]), f64::from(p[1]));
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let (x0, x1, y0, y1) = (x0 - 0.5, x1 + 0.5, y0 - 0.5, y1 + 0.5);
    // Every cell centre, classified in one batch.
    let cells = 150;
    let mut grid = Vec::with_capacity(2 * cells * cells);
    for j in 0..cells {
        for i in 0..cells {
            grid.push((x0 + (i as f64 + 0.5) / cells as f64 * (x1 - x0)) as f32);
            grid.push((y0 + (j as f64 + 0.5) / cells as f64 * (y1 - y0)) as f32);
        }
    }
    let x = Tensor::from_vec(grid, &[cells * cells, 2, 1, 1])
        .map_err(|e| RunError::Other(e.to_string()))?;
    let x = match &t.pipeline {
        Some(p) => p.apply_tensor(&x).map_err(RunError::from)?,
        None => x,
    };
    let logits = crate::logits(&mut t.model, x)
        .map_err(|e| RunError::Other(e.to_string()))?
        .to_vec();
    let classes: Vec<usize> = logits
        .chunks_exact(t.classes)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (k, &v)| if v > b.1 { (k, v) } else { b })
                .0
        })
        .collect();
    // The first linear layer's units, when the network starts with one
    // (after a flatten) and sees the plane directly.
    let mut lines = Vec::new();
    if t.pipeline.is_none() {
        let mut shape = t.raw.to_vec();
        for layer in t.model.layers() {
            match layer.lower(&shape) {
                Some(Lowered::Flatten) => {}
                Some(Lowered::Linear { weight, bias, .. }) if weight.shape()[1] == 2 => {
                    let (w, b) = (weight.to_vec(), bias.to_vec());
                    for u in 0..b.len() {
                        lines.push([
                            f64::from(w[2 * u]),
                            f64::from(w[2 * u + 1]),
                            f64::from(b[u]),
                        ]);
                    }
                    break;
                }
                _ => break,
            }
            shape = layer
                .output_shape(&shape)
                .map_err(|e| RunError::Other(e.to_string()))?;
        }
    }
    fonts();
    let (w, h) = (900u32, 900u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let draw = |buf: &mut [u8]| -> Result<(), String> {
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("decision regions ({} classes)", t.classes),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(path, e))?;
        chart.configure_mesh().draw().map_err(|e| err(path, e))?;
        let (dx, dy) = ((x1 - x0) / cells as f64, (y1 - y0) / cells as f64);
        chart
            .draw_series(classes.iter().enumerate().map(|(k, &c)| {
                let (i, j) = ((k % cells) as f64, (k / cells) as f64);
                let base = COLOURS[c % COLOURS.len()];
                Rectangle::new(
                    [
                        (x0 + i * dx, y0 + j * dy),
                        (x0 + (i + 1.0) * dx, y0 + (j + 1.0) * dy),
                    ],
                    base.mix(0.25).filled(),
                )
            }))
            .map_err(|e| err(path, e))?;
        chart
            .draw_series(labels.iter().enumerate().map(|(k, &c)| {
                let p = (f64::from(pts[2 * k]), f64::from(pts[2 * k + 1]));
                Circle::new(p, 3, COLOURS[c % COLOURS.len()].filled())
            }))
            .map_err(|e| err(path, e))?;
        for l in &lines {
            // w₁x + w₂y + b = 0 across the window.
            let [a, bb, c] = *l;
            let seg: Vec<(f64, f64)> = if bb.abs() > a.abs() {
                [x0, x1].iter().map(|&x| (x, -(a * x + c) / bb)).collect()
            } else {
                [y0, y1].iter().map(|&y| (-(bb * y + c) / a, y)).collect()
            };
            chart
                .draw_series(LineSeries::new(seg, RGBColor(60, 60, 60).stroke_width(1)))
                .map_err(|e| err(path, e))?;
        }
        root.present().map_err(|e| err(path, e))
    };
    draw(&mut buf).map_err(RunError::Other)?;
    save_png(path, &buf, (w, h)).map_err(RunError::Other)?;
    Ok(Regions {
        window: [x0, x1, y0, y1],
        cells,
        classes,
        lines,
    })
}

/// What [`augment_plot`] drew.
#[derive(Clone, Debug)]
pub struct AugmentGrid {
    /// The images as the network sees them: `[rows·columns, C, H, W]`, row
    /// `e` the same training images in epoch `e` (0-based).
    pub images: Tensor<f32>,
    /// Epochs shown (rows) and images per epoch (columns).
    pub epochs: usize,
    /// Images per row.
    pub columns: usize,
}

/// `path`: `columns` training images of `spec`, spread over the set, as the
/// network sees them (after the fitted preprocessing and the spec's augmentation),
/// one row per epoch for `epochs` epochs, each tile scaled to its own range.
pub fn augment_plot(
    spec: &crate::spec::Spec,
    data_dir: Option<&Path>,
    epochs: usize,
    columns: usize,
    path: &Path,
) -> Result<AugmentGrid, RunError> {
    if epochs == 0 || columns == 0 || epochs * columns > 4096 {
        return Err(RunError::Usage(format!(
            "--epochs × --images must lie in 1..=4096, got {epochs} × {columns}"
        )));
    }
    let data = crate::run::load_data(spec, data_dir)?;
    let n = columns.min(data.train.len());
    // Spread over the set: image folders are stored class by class.
    let idx: Vec<usize> = (0..n).map(|i| i * data.train.len() / n).collect();
    let (x, _) = data.train.batch(&idx)?;
    let aug = spec.augmentation();
    let mut rows = Vec::new();
    let mut shape = Vec::new();
    for e in 0..epochs {
        let y = match &aug {
            Some(a) => a.apply_batch_indexed(&x, e as u64, 0, &idx)?,
            None => x.clone(),
        };
        shape = y.shape().to_vec();
        rows.extend(y.to_vec());
    }
    shape[0] = n * epochs;
    let images = Tensor::from_vec(rows, &shape).map_err(|e| RunError::Other(e.to_string()))?;
    let side = shape[2].max(shape[3]);
    let opts = GridOptions {
        columns: Some(n),
        padding: 2,
        upscale: (96 / side.max(1)).clamp(1, 12),
        ..GridOptions::default()
    };
    save_grid(path, &images, &opts)?;
    Ok(AugmentGrid {
        images,
        epochs,
        columns: n,
    })
}

/// One learning rate's run in [`learning_rates_plot`].
#[derive(Clone, Debug)]
pub struct RateRun {
    /// The constant rate.
    pub lr: f64,
    /// The minibatch loss of every step, in order.
    pub losses: Vec<f64>,
    /// The step at which the loss stopped being finite, if it did.
    pub diverged_at: Option<u64>,
}

/// Collects each step's loss.
struct Losses(Vec<f64>);

impl crate::Observer for Losses {
    fn on_step(&mut self, info: &crate::StepInfo) {
        self.0.push(info.loss);
    }
}

/// `path`: the training loss against the step of `spec` trained `epochs`
/// epochs at each constant rate of `lrs` (the chapter's picture of rates
/// too small, too large and about right). A run that diverges is drawn up
/// to its last finite loss and marked.
pub fn learning_rates_plot(
    spec: &crate::spec::Spec,
    lrs: &[f64],
    epochs: usize,
    data_dir: Option<&Path>,
    path: &Path,
) -> Result<Vec<RateRun>, RunError> {
    if lrs.is_empty() || lrs.len() > 8 || lrs.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(RunError::Usage(format!(
            "--lr takes 1 to 8 positive rates, got {lrs:?}"
        )));
    }
    let scratch = std::env::temp_dir().join(format!("strata-viz-lr-{}", std::process::id()));
    let mut runs = Vec::new();
    for (i, &lr) in lrs.iter().enumerate() {
        let s = spec.with_overrides(&[
            format!("optimizer.schedule = {{ kind = \"constant\", lr = {lr:e} }}"),
            "optimizer.warmup_steps = 0".into(),
            format!("train.epochs = {epochs}"),
        ])?;
        let opts = crate::run::RunOptions {
            out: scratch.join(i.to_string()),
            data_dir: data_dir.map(Path::to_path_buf),
            skip_test: true,
            overwrite: true,
            ..crate::run::RunOptions::default()
        };
        let mut seen = Losses(Vec::new());
        let result = crate::run::train(&s, &opts, &mut seen);
        let diverged_at = match result {
            Ok(_) => None,
            Err(RunError::Train(crate::TrainError::Diverged { step, .. })) => Some(step),
            Err(RunError::Other(m)) if m.contains("diverged") => Some(seen.0.len() as u64),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        runs.push(RateRun {
            lr,
            losses: seen.0,
            diverged_at,
        });
    }
    let _ = std::fs::remove_dir_all(&scratch);
    fonts();
    let (w, h) = (900u32, 500u32);
    let steps = runs
        .iter()
        .map(|r| r.losses.len())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    // Clip the scale at 1.5 × the largest first loss: a diverging run would
    // flatten every other curve.
    let first = runs
        .iter()
        .filter_map(|r| r.losses.first().copied())
        .filter(|v| v.is_finite())
        .fold(0f64, f64::max);
    let top = if first > 0.0 { 1.5 * first } else { 1.0 };
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let draw = |buf: &mut [u8]| -> Result<(), String> {
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "training loss at constant learning rates",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..steps, 0f64..top)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| err(path, e))?;
        for (i, r) in runs.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let sm = crate::plot::smooth(&r.losses, 0.1);
            let pts: Vec<(f64, f64)> = sm
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, &v)| (k as f64, v.min(top)))
                .collect();
            let label = match r.diverged_at {
                Some(s) => format!("η = {} (diverged at step {s})", r.lr),
                None => format!("η = {}", r.lr),
            };
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                .map_err(|e| err(path, e))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))
    };
    draw(&mut buf).map_err(RunError::Other)?;
    save_png(path, &buf, (w, h)).map_err(RunError::Other)?;
    Ok(runs)
}

//! `strata detect`: a trained model folder run as a detector over image
//! files or the MNIST canvases, with the results written out and, against a
//! ground truth, measured.

use super::{evaluate_detections, DetectOptions, Detection, DetectionMetrics, Detector};
use crate::checkpoint::write_atomic;
use crate::plot::{err, fonts, save_png};
use crate::run::RunError;
use plotters::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use strata_data::{benchmark_canvases, read_image, BBox, Object};

/// The name that stands for the MNIST detection benchmark among the images
/// (`mnist-canvas` for its 1,000 canvases, `mnist-canvas:N` for the first N).
pub const MNIST_CANVAS: &str = "mnist-canvas";

/// What `strata detect` does.
#[derive(Clone, Debug, Default)]
pub struct DetectJob {
    /// The trained model folder.
    pub model_dir: PathBuf,
    /// Image files, or [`MNIST_CANVAS`]`[:N]`.
    pub images: Vec<String>,
    /// Look for data sets here first.
    pub data_dir: Option<PathBuf>,
    /// Windows, thresholds, how disputes are resolved, how windows are scored.
    pub options: DetectOptions,
    /// The ground truth of image files (see [`read_truth`]); the canvases
    /// bring their own.
    pub truth: Option<PathBuf>,
    /// Measure the detections against the ground truth.
    pub eval: bool,
    /// Where `detections.json`, `metrics.json` and the drawn images go.
    pub out: Option<PathBuf>,
    /// Draw at most this many images (all image files are drawn up to it).
    pub draw: usize,
}

/// What `strata detect` found and measured.
#[derive(Clone, Debug)]
pub struct DetectReport {
    /// Images looked at.
    pub images: usize,
    /// Detections over all images.
    pub detections: usize,
    /// Seconds spent detecting (reading and writing excluded).
    pub seconds: f64,
    /// Whether the windows were scored fully convolutionally.
    pub convolutional: bool,
    /// Against the ground truth, with `eval`.
    pub metrics: Option<DetectionMetrics>,
    /// The class names of the model.
    pub class_names: Vec<String>,
}

/// One image to look at.
struct Item {
    name: String,
    pixels: Vec<f32>,
    shape: [usize; 3],
    truth: Option<Vec<Object>>,
}

/// The canvases' count in `mnist-canvas[:N]`, if `arg` is one.
fn canvas_count(arg: &str) -> Option<Result<usize, RunError>> {
    let rest = arg.strip_prefix(MNIST_CANVAS)?;
    if rest.is_empty() {
        return Some(Ok(1000));
    }
    let n = rest.strip_prefix(':')?;
    Some(match n.parse::<usize>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err(RunError::Usage(format!(
            "{arg}: expected {MNIST_CANVAS}:N with N a count of canvases from 1 to 100000"
        ))),
    })
}

/// Reads a ground-truth file: `{"images": [{"file": "a.png", "objects":
/// [{"class": "7", "box": [x0, y0, x1, y1]}, …]}, …]}` (the `truth.json`
/// that `strata detect … mnist-canvas --out DIR` writes), with class names
/// mapped to `names`. Errors name the file and the field.
pub fn read_truth(path: &Path, names: &[String]) -> Result<Vec<(String, Vec<Object>)>, RunError> {
    let bad =
        |field: String, what: &str| RunError::Usage(format!("{}: {field}: {what}", path.display()));
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Usage(format!("{}: cannot read it: {e}", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| RunError::Usage(format!("{}: not JSON: {e}", path.display())))?;
    let images = v
        .get("images")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("images".into(), "expected a list of images"))?;
    let mut out = Vec::new();
    for (i, im) in images.iter().enumerate() {
        let file = im
            .get("file")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("images[{i}].file"), "expected a file name"))?;
        let objects = im
            .get("objects")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("images[{i}].objects"), "expected a list of objects"))?;
        let mut objs = Vec::new();
        for (j, o) in objects.iter().enumerate() {
            let at = format!("images[{i}].objects[{j}]");
            let class = o
                .get("class")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{at}.class"), "expected a class name"))?;
            let class = names.iter().position(|n| n == class).ok_or_else(|| {
                bad(
                    format!("{at}.class"),
                    &format!("{class:?} is not one of the model's classes {names:?}"),
                )
            })?;
            let b: Vec<f32> = o
                .get("box")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_f64)
                        .map(|x| x as f32)
                        .collect()
                })
                .unwrap_or_default();
            if b.len() != 4 || b.iter().any(|x| !x.is_finite()) || b[2] <= b[0] || b[3] <= b[1] {
                return Err(bad(
                    format!("{at}.box"),
                    "expected [x0, y0, x1, y1], finite, with x1 > x0 and y1 > y0",
                ));
            }
            objs.push(Object {
                class,
                bbox: BBox {
                    x0: b[0],
                    y0: b[1],
                    x1: b[2],
                    y1: b[3],
                },
            });
        }
        out.push((file.to_string(), objs));
    }
    Ok(out)
}

fn boxes_json(b: &BBox) -> Value {
    let r = |v: f32| (v as f64 * 100.0).round() / 100.0;
    json!([r(b.x0), r(b.y0), r(b.x1), r(b.y1)])
}

/// Draws `item` enlarged to about 448 px, its ground truth in green and the
/// detections in red with their class and score.
fn draw(path: &Path, item: &Item, dets: &[Detection], names: &[String]) -> Result<(), String> {
    fonts();
    let [c, h, w] = item.shape;
    let f = (448 / h.max(w)).max(1);
    let (ow, oh) = (w * f, h * f);
    let mut buf = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        for x in 0..ow {
            for k in 0..3 {
                let ch = if c == 1 { 0 } else { k };
                let v = item.pixels[(ch * h + y / f) * w + x / f];
                buf[(y * ow + x) * 3 + k] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (ow as u32, oh as u32)).into_drawing_area();
        let s = |v: f32| (v * f as f32).round() as i32;
        let rect = |b: &BBox| [(s(b.x0), s(b.y0)), (s(b.x1) - 1, s(b.y1) - 1)];
        for o in item.truth.iter().flatten() {
            root.draw(&Rectangle::new(rect(&o.bbox), GREEN.stroke_width(2)))
                .map_err(|e| err(path, e))?;
        }
        for d in dets {
            let red = RGBColor(255, 60, 40);
            root.draw(&Rectangle::new(rect(&d.bbox), red.stroke_width(2)))
                .map_err(|e| err(path, e))?;
            let label = format!("{} {:.2}", names[d.class], d.score);
            root.draw(&Text::new(
                label,
                (s(d.bbox.x0) + 2, (s(d.bbox.y0) - 16).max(0)),
                ("sans-serif", 15).into_font().color(&red),
            ))
            .map_err(|e| err(path, e))?;
        }
        root.present().map_err(|e| err(path, e))?;
    }
    save_png(path, &buf, (ow as u32, oh as u32))
}

fn metrics_json(m: &DetectionMetrics) -> Value {
    json!({
        "iou": 0.5,
        "map50": m.map50,
        "map50_95": m.map50_95,
        "precision": m.precision,
        "recall": m.recall,
        "classes": m.classes.iter().map(|c| json!({
            "class": c.name,
            "objects": c.objects,
            "detections": c.detections,
            "precision": c.precision,
            "recall": c.recall,
            "ap50": c.ap50,
            "ap50_95": c.ap50_95,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `job`; `progress(done, total)` is called as images are done.
pub fn detect_images(
    job: &DetectJob,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<DetectReport, RunError> {
    if job.images.is_empty() {
        return Err(RunError::Usage(format!(
            "no images: give image files (PNG or JPEG) or {MNIST_CANVAS}[:N]"
        )));
    }
    let mut det = Detector::load(&job.model_dir, job.data_dir.as_deref())?;
    let names = det.class_names().to_vec();
    let [c, ..] = det.input();
    let mut items = Vec::new();
    for arg in &job.images {
        if let Some(n) = canvas_count(arg) {
            let n = n?;
            let mnist = strata_data::load("mnist", job.data_dir.as_deref())?;
            // The canvases' classes are MNIST's; the model's are found by name.
            let map: Vec<usize> = mnist
                .test
                .class_names()
                .iter()
                .map(|m| names.iter().position(|x| x == m))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    RunError::Usage(format!(
                        "{}: the model's classes {names:?} are not MNIST's digits, so it \
                         cannot be measured on {MNIST_CANVAS}",
                        job.model_dir.display()
                    ))
                })?;
            if c != 1 {
                return Err(RunError::Usage(format!(
                    "{}: the model reads {c}-channel images; {MNIST_CANVAS} is grey",
                    job.model_dir.display()
                )));
            }
            for (i, cv) in benchmark_canvases(&mnist.test, n)?.into_iter().enumerate() {
                let truth = cv
                    .objects
                    .iter()
                    .map(|o| Object {
                        class: map[o.class],
                        ..*o
                    })
                    .collect();
                items.push(Item {
                    name: format!("{MNIST_CANVAS}-{i:04}"),
                    pixels: cv.pixels,
                    shape: cv.shape,
                    truth: Some(truth),
                });
            }
        } else {
            let (pixels, shape) = read_image(arg, c)?;
            items.push(Item {
                name: arg.clone(),
                pixels,
                shape,
                truth: None,
            });
        }
    }
    if let Some(t) = &job.truth {
        let truth = read_truth(t, &names)?;
        let file_name = |p: &str| {
            Path::new(p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        };
        for item in items.iter_mut().filter(|i| i.truth.is_none()) {
            let name = file_name(&item.name);
            item.truth = truth
                .iter()
                .find(|(f, _)| file_name(f) == name)
                .map(|(_, o)| o.clone());
        }
    }
    if job.eval {
        if let Some(missing) = items.iter().find(|i| i.truth.is_none()) {
            return Err(RunError::Usage(format!(
                "--eval: {} has no ground truth (give --truth FILE.json listing it, or use \
                 {MNIST_CANVAS})",
                missing.name
            )));
        }
    }
    let convolutional = det.uses_fc(job.options.scoring)?;
    let start = Instant::now();
    let mut found = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let d = det
            .detect(&item.pixels, item.shape, &job.options)
            .map_err(|e| RunError::Other(format!("{}: {e}", item.name)))?;
        found.push(d);
        progress(i + 1, items.len());
    }
    let seconds = start.elapsed().as_secs_f64();
    let metrics = job.eval.then(|| {
        let truth: Vec<Vec<Object>> = items
            .iter()
            .map(|i| i.truth.clone().unwrap_or_default())
            .collect();
        evaluate_detections(&found, &truth, &names)
    });
    if let Some(out) = &job.out {
        std::fs::create_dir_all(out).map_err(|e| {
            RunError::Usage(format!(
                "--out {}: cannot create the folder: {e}",
                out.display()
            ))
        })?;
        let dets: Vec<Value> = items
            .iter()
            .zip(&found)
            .map(|(item, d)| {
                json!({
                    "file": item.name,
                    "detections": d.iter().map(|d| json!({
                        "box": boxes_json(&d.bbox),
                        "class": names[d.class],
                        "score": d.score,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let write = |name: &str, v: &Value| -> Result<(), RunError> {
            let text =
                serde_json::to_string_pretty(v).map_err(|e| RunError::Other(e.to_string()))?;
            Ok(write_atomic(&out.join(name), text.as_bytes())?)
        };
        write("detections.json", &json!({ "images": dets }))?;
        let truth: Vec<Value> = items
            .iter()
            .filter(|i| i.name.starts_with(MNIST_CANVAS))
            .map(|item| {
                json!({
                    "file": format!("{}.png", item.name),
                    "objects": item.truth.iter().flatten().map(|o| json!({
                        "box": boxes_json(&o.bbox),
                        "class": names[o.class],
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        if !truth.is_empty() {
            write("truth.json", &json!({ "images": truth }))?;
        }
        if let Some(m) = &metrics {
            write("metrics.json", &metrics_json(m))?;
        }
        for (item, d) in items.iter().zip(&found).take(job.draw) {
            let stem = Path::new(&item.name)
                .file_stem()
                .map_or_else(|| item.name.clone(), |s| s.to_string_lossy().into_owned());
            // The canvas itself too, so `--truth truth.json` can be tried on files.
            if item.name.starts_with(MNIST_CANVAS) {
                let grey: Vec<u8> = item
                    .pixels
                    .iter()
                    .map(|v| (v * 255.0).round() as u8)
                    .collect();
                let [_, h, w] = item.shape;
                let rgb: Vec<u8> = grey.iter().flat_map(|&g| [g, g, g]).collect();
                save_png(&out.join(format!("{stem}.png")), &rgb, (w as u32, h as u32))
                    .map_err(RunError::Other)?;
            }
            draw(&out.join(format!("{stem}.boxes.png")), item, d, &names)
                .map_err(RunError::Other)?;
        }
    }
    Ok(DetectReport {
        images: items.len(),
        detections: found.iter().map(Vec::len).sum(),
        seconds,
        convolutional,
        metrics,
        class_names: names,
    })
}

//! `strata detect`: objects found by windows (section 12.4), with mAP.

use crate::failure::Failure;
use std::path::PathBuf;

/// The arguments of `strata detect` (its help is the doc comment of
/// `Command::Detect` in main.rs).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// A trained model folder (`strata train`'s --out).
    model_dir: PathBuf,
    /// PNG or JPEG files, or `mnist-canvas[:N]`: the first N (default
    /// 1,000) canvases of the MNIST benchmark (112×112, 1–5 digits of
    /// 20–48 px), with their ground truth.
    #[arg(required = true)]
    images: Vec<String>,
    /// Window sides in image pixels.
    #[arg(long, value_delimiter = ',', default_value = "20,24,28,34,40,48")]
    window: Vec<usize>,
    /// Distance between neighbouring windows in image pixels.
    #[arg(long, default_value_t = 4)]
    stride: usize,
    /// Windows whose best object class scores below this are dropped.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Windows overlapping more than this (IoU) dispute one object.
    #[arg(long, default_value_t = 0.3)]
    overlap: f32,
    /// A window lying more than this fraction inside another disputes
    /// its object too (a part of a digit read as another digit); 1 turns
    /// that off.
    #[arg(long, default_value_t = 0.6)]
    contain: f32,
    /// Resolve disputes by merging the windows into their score-weighted
    /// mean box instead of keeping the best one (non-maximum suppression).
    #[arg(long)]
    merge: bool,
    /// How windows are scored: `auto` (fully convolutional when the
    /// network allows it), `convolutional`, or `windows` (one by one).
    #[arg(long, default_value = "auto")]
    scoring: String,
    /// Measure precision, recall and mAP against the ground truth.
    #[arg(long)]
    eval: bool,
    /// Ground truth of image files (JSON, as the `truth.json` written
    /// for `mnist-canvas`).
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Write detections.json (and metrics.json, drawn images) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw at most this many images into --out.
    #[arg(long, default_value_t = 16)]
    draw: usize,
    /// Look for data sets in this folder first.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs `strata detect`.
pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Args {
        model_dir,
        images,
        window,
        stride,
        threshold,
        overlap,
        contain,
        merge,
        scoring,
        eval,
        truth,
        out,
        draw,
        data_dir,
    } = args;
    use strata_train::detect::{self, DetectJob, DetectOptions, Resolve, Scoring};
    let scoring = match scoring.as_str() {
        "auto" => Scoring::Auto,
        "convolutional" => Scoring::Convolutional,
        "windows" => Scoring::Windows,
        other => {
            return Err(Failure(
                format!("--scoring {other:?}: expected auto, convolutional or windows"),
                2,
            ))
        }
    };
    let job = DetectJob {
        model_dir,
        images,
        data_dir,
        options: DetectOptions {
            windows: window,
            stride,
            threshold,
            overlap,
            contain,
            resolve: if merge {
                Resolve::Average
            } else {
                Resolve::Suppress
            },
            scoring,
        },
        truth,
        eval,
        out: out.clone(),
        draw,
    };
    let mut last = std::time::Instant::now();
    let r = detect::detect_images(&job, &mut |done, total| {
        if last.elapsed().as_secs_f64() >= 2.0 || done == total {
            eprint!("\rdetect {done}/{total} images");
            last = std::time::Instant::now();
        }
    })?;
    eprintln!();
    println!(
        "{} images, {} detections in {:.2} s ({:.1} images/s, {})",
        r.images,
        r.detections,
        r.seconds,
        r.images as f64 / r.seconds.max(1e-9),
        if r.convolutional {
            "fully convolutional"
        } else {
            "window by window"
        }
    );
    if let Some(m) = &r.metrics {
        println!(
            "{:<12} {:>7} {:>7} {:>9} {:>7} {:>7} {:>9}",
            "class", "objects", "found", "precision", "recall", "AP@0.5", "AP@.5:.95"
        );
        for c in &m.classes {
            println!(
                "{:<12} {:>7} {:>7} {:>9.3} {:>7.3} {:>7.3} {:>9.3}",
                c.name, c.objects, c.detections, c.precision, c.recall, c.ap50, c.ap50_95
            );
        }
        println!(
            "mAP@0.5 {:.3}  mAP@0.5:0.95 {:.3}  precision {:.3}  recall {:.3}",
            m.map50, m.map50_95, m.precision, m.recall
        );
    }
    if let Some(out) = out {
        println!("wrote {}", out.join("detections.json").display());
    }
    Ok(())
}

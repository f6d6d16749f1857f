//! `strata`: train image classifiers described by a TOML spec, and look at them.
//!
//! ```text
//! strata train examples/digits-softmax.toml      # trains, logs, plots, evaluates
//! strata eval runs/digits-softmax                # held-out evaluation of a saved model
//! strata sweep SPEC --set optimizer.weight_decay=1e-5,1e-4,1e-3
//! strata gradcheck SPEC                          # backprop vs finite differences
//! strata inspect SPEC                            # layers, shapes, parameters, FLOPs
//! strata data list                               # which data sets are found where
//! strata detect runs/mnist-detect mnist-canvas --eval   # detection by windows, mAP
//! ```
//! Exit codes: 0 success, 1 failure while running, 2 a malformed spec or command line.

mod progress;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use strata_train::data::DataError;
use strata_train::run::{self, RunError, RunOptions};
use strata_train::spec::Spec;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Train image classifiers on the CPU from a TOML spec"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the network a spec describes; write logs, plots, checkpoints and a summary.
    Train {
        /// The spec file.
        spec: PathBuf,
        /// Output folder (default: runs/NAME, NAME the spec file's name without .toml).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Look for data sets in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Override train.epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Kernel threads (0: all cores; at most 1024).
        #[arg(long)]
        threads: Option<usize>,
        /// Continue from the output folder's last checkpoint.
        #[arg(long)]
        resume: bool,
        /// Replace another run in the output folder (its checkpoint and logs are removed first).
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Override a spec field, e.g. --set optimizer.weight_decay=1e-4 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Evaluate a trained model folder on held-out test data.
    Eval {
        /// A folder written by `strata train`.
        model_dir: PathBuf,
        /// Evaluate on this data set's test split instead of the spec's.
        #[arg(long)]
        data: Option<String>,
        /// Look for data sets in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Average predictions over the centre and corner crops (and mirrors,
        /// unless the spec says `eval.mirror = false`).
        #[arg(long)]
        multi_crop: bool,
        /// Evaluate each image once even if the spec asks for multi-crop.
        #[arg(long, conflicts_with = "multi_crop")]
        single_crop: bool,
    },
    /// Write a trained model as an ONNX file (onnxruntime, PyTorch, …): the
    /// network in evaluation form, with per-pixel preprocessing.
    Export {
        /// A folder written by `strata train`.
        model_dir: PathBuf,
        /// The ONNX file to write.
        #[arg(long, value_name = "FILE", required_unless_present = "torch")]
        onnx: Option<PathBuf>,
        /// A PyTorch module definition (model.py) to write, whose
        /// `load_state_dict` takes model.safetensors as it is.
        #[arg(long, value_name = "FILE")]
        torch: Option<PathBuf>,
        /// Look for the data set (its image shape and classes) here first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Train once per value, choose on validation, test only the best.
    Sweep {
        /// The spec file.
        spec: PathBuf,
        /// KEY=V1,V2,… values to try (repeat for a grid).
        #[arg(long = "set", value_name = "KEY=V1,V2", required = true)]
        sets: Vec<String>,
        /// Output folder (default: runs/NAME-sweep, NAME the spec file's name without .toml).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Look for data sets in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Override train.epochs for every run.
        #[arg(long)]
        epochs: Option<usize>,
        /// Kernel threads (0: all cores; at most 1024).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Check backprop against finite differences for every parameter (f64).
    Gradcheck {
        /// The spec file.
        spec: PathBuf,
        /// Items in the check's minibatch.
        #[arg(long, default_value_t = 4)]
        items: usize,
        /// Fail above this relative error.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        /// Look for data sets in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print the layer table: output shapes, parameters and FLOPs per sample.
    Inspect {
        /// The spec file.
        spec: PathBuf,
        /// Look for data sets in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Load a PyTorch state dict (safetensors) into the network a spec
    /// describes, as a model folder `strata eval` and `strata export` take.
    Import {
        /// The spec whose network matches the state dict's.
        spec: PathBuf,
        /// The state dict, saved with `safetensors.torch.save_file`.
        state: PathBuf,
        /// The model folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Look for data sets in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Find objects by windows (section 12.4): classify windows of several
    /// sizes with a trained model, then resolve overlapping ones.
    Detect {
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
    },
    /// The chapter's pictures, as PNG files.
    Viz {
        #[command(subcommand)]
        picture: Picture,
    },
    /// Data sets: where they are found, and fetching them into the cache.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
}

#[derive(Subcommand)]
enum Picture {
    /// Paths of SGD, momentum, Adagrad, RMSprop and Adam on the valley
    /// f = ½(εx² + y²) and on its rotated, translated copy (Figures 12.8, 12.9).
    Valley {
        /// Learning rate of every method.
        #[arg(long, default_value_t = 0.1)]
        lr: f64,
        /// The valley's flatness ε.
        #[arg(long, default_value_t = 0.1)]
        eps: f64,
        /// Steps per method.
        #[arg(long, default_value_t = 60)]
        steps: usize,
        /// The copy's rotation, in degrees.
        #[arg(long, default_value_t = 30.0)]
        angle: f64,
        /// The PNG to write.
        #[arg(long, default_value = "valley.png")]
        out: PathBuf,
    },
    /// Decision regions of a classifier of points of the plane, its training
    /// points and its first layer's lines (Figure 12.1).
    Regions {
        /// A spec (trained first, quietly) or a folder written by `strata train`.
        spec_or_model: PathBuf,
        /// The PNG to write.
        #[arg(long, default_value = "regions.png")]
        out: PathBuf,
    },
    /// Training loss against the step at several constant learning rates,
    /// a short run each.
    LearningRates {
        /// The spec file.
        spec: PathBuf,
        /// The rates, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.001,0.01,0.1,1")]
        lr: Vec<f64>,
        /// Epochs per run.
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        /// The PNG to write.
        #[arg(long, default_value = "learning-rates.png")]
        out: PathBuf,
        /// Look for data sets in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Training images as the network sees them (preprocessing and
    /// augmentation), one row per epoch.
    Augment {
        /// The spec file.
        spec: PathBuf,
        /// Rows: epochs of augmentation.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
        /// Images per row.
        #[arg(long, default_value_t = 8)]
        images: usize,
        /// The PNG to write.
        #[arg(long, default_value = "augment.png")]
        out: PathBuf,
        /// Look for data sets in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The first convolution's filters of a trained model as an image grid.
    Filters {
        /// A folder written by `strata train`.
        model_dir: PathBuf,
        /// The PNG to write.
        #[arg(long, default_value = "filters.png")]
        out: PathBuf,
        /// Look for the data set (its image shape) here first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The fraction of dead ReLU units per layer per epoch of a run.
    DeadUnits {
        /// A folder written by `strata train`.
        run_dir: PathBuf,
        /// The PNG to write.
        #[arg(long, default_value = "dead-units.png")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum DataAction {
    /// List the known data sets and where each is found.
    List {
        /// Look in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Download a data set into ~/.cache/strata (checksums verified).
    Fetch {
        /// Data set name (mnist, fashion-mnist, cifar10).
        name: String,
    },
}

/// An error and the exit code it maps to.
struct Failure(String, u8);

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        if let RunError::EveryRank(inner) = e {
            return Failure::from(*inner);
        }
        let code = match e {
            RunError::Spec(_) | RunError::Usage(_) => 2,
            // 128 + SIGINT, as a shell reports a process stopped by Ctrl-C.
            RunError::Interrupted(_) => 130,
            _ => 1,
        };
        let hint = match &e {
            RunError::Data(d) => data_hint(d),
            _ => String::new(),
        };
        Failure(format!("{e}{hint}"), code)
    }
}

impl From<DataError> for Failure {
    fn from(e: DataError) -> Self {
        let hint = data_hint(&e);
        Failure(format!("{e}{hint}"), 1)
    }
}

/// For a named data set that was not found, the two ways to point strata at
/// a folder that holds it (the library's message lists where it looked).
fn data_hint(e: &DataError) -> String {
    match e {
        DataError::NotFound { name, .. } if !name.contains(['/', '\\']) => format!(
            "\nhint: pass the folder that holds `{name}/` with --data-dir DIR, or set STRATA_DATA=DIR"
        ),
        _ => String::new(),
    }
}

fn default_out(spec: &Path, suffix: &str) -> PathBuf {
    let stem = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    PathBuf::from("runs").join(format!("{stem}{suffix}"))
}

fn load_spec(path: &Path, sets: &[String]) -> Result<Spec, Failure> {
    Spec::load_with(path, sets).map_err(|e| Failure(e.to_string(), 2))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_command(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// The MPI group when started by `mpirun` (a build with `--features mpi`).
#[cfg(feature = "mpi")]
fn mpi_group() -> Result<Option<strata_train::collective::Group>, Failure> {
    let secs = std::env::var("STRATA_MPI_TIMEOUT")
        .ok()
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    Failure(
                        format!("STRATA_MPI_TIMEOUT is {v:?}, expected seconds > 0"),
                        2,
                    )
                })
        })
        .transpose()?
        .unwrap_or(300.0);
    let group = strata_dist::MpiGroup::init(std::time::Duration::from_secs_f64(secs))
        .map_err(|e| Failure(format!("MPI: {e}"), 1))?;
    Ok(group.map(|g| std::sync::Arc::new(g) as strata_train::collective::Group))
}

/// Without MPI support a launch by `mpirun` would train N unrelated copies
/// into one folder: refuse instead.
#[cfg(not(feature = "mpi"))]
fn mpi_group() -> Result<Option<strata_train::collective::Group>, Failure> {
    let launched = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if launched {
        return Err(Failure(
            "this strata was built without MPI support, so `mpirun` would start unrelated \
             copies: rebuild with `cargo build --release -p strata-cli --features mpi`"
                .into(),
            2,
        ));
    }
    Ok(None)
}

fn run_command(command: Command) -> Result<(), Failure> {
    match command {
        Command::Train {
            spec,
            out,
            data_dir,
            epochs,
            threads,
            resume,
            overwrite,
            sets,
        } => {
            let s = load_spec(&spec, &sets)?;
            let out = out.unwrap_or_else(|| default_out(&spec, ""));
            let group = mpi_group()?;
            let opts = RunOptions {
                out: out.clone(),
                data_dir,
                epochs,
                threads,
                resume,
                skip_test: false,
                overwrite,
                group: group.clone(),
            };
            let mut bar = progress::Progress::new();
            progress::stop_on_ctrl_c();
            let summary = match run::train(&s, &opts, &mut bar) {
                Ok(summary) => summary,
                // A rank that fails alone must not finalise MPI while the
                // others wait in a sum: leave at once, so mpirun ends the job
                // (instead of the others' watchdog, minutes later).
                Err(e) if group.as_ref().is_some_and(|g| g.size() > 1) => {
                    let together = e.reached_by_every_rank();
                    let Failure(msg, code) = Failure::from(e);
                    let rank = group.as_ref().map_or(0, |g| g.rank());
                    // One write, so mpirun's forwarding cannot interleave
                    // two ranks' lines.
                    let line = format!("error: rank {rank}: {msg}\n");
                    let _ =
                        std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
                    if together {
                        // Every rank is here: wait until all have printed,
                        // or the first to exit could get the others killed
                        // before their reason is out.
                        if let Some(g) = &group {
                            let _ = g.all_reduce_f64(&mut [0.0]);
                        }
                    }
                    std::process::exit(i32::from(code));
                }
                Err(e) => return Err(e.into()),
            };
            bar.finish();
            if group.as_ref().is_some_and(|g| g.rank() != 0) {
                return Ok(());
            }
            if let Some(d) = &summary.data_parallel {
                println!(
                    "data-parallel over {} ranks: {:.1} s in collective calls ({:.1} % of the training's wall time)",
                    d.ranks,
                    d.collective_seconds,
                    100.0 * d.collective_share
                );
            }
            if let Some(v) = summary.validation_accuracy {
                println!("validation accuracy {:.2}%", 100.0 * v);
            }
            if let Some(t) = summary.test_accuracy {
                println!("test accuracy {:.2}%", 100.0 * t);
            }
            println!(
                "{} epochs in {:.1}s ({:.0} samples/s); results in {}",
                summary.epochs,
                summary.train_seconds,
                summary.samples_per_second,
                out.display()
            );
            Ok(())
        }
        Command::Eval {
            model_dir,
            data,
            data_dir,
            multi_crop,
            single_crop,
        } => {
            let views = match (multi_crop, single_crop) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let (eval, names) =
                run::eval_dir(&model_dir, data.as_deref(), data_dir.as_deref(), views)?;
            print!("{}", run::confusion_text(&eval, &names));
            println!("test accuracy {:.2}%", 100.0 * eval.accuracy);
            Ok(())
        }
        Command::Export {
            model_dir,
            onnx,
            torch,
            data_dir,
        } => {
            if let Some(onnx) = onnx {
                let e = strata_train::onnx::export_dir(&model_dir, data_dir.as_deref())?;
                strata_train::checkpoint::write_atomic(&onnx, &e.bytes)
                    .map_err(|err| Failure(err.to_string(), 1))?;
                let [c, h, w] = e.input;
                println!(
                    "wrote {} ({} bytes, {} nodes): input `image` [batch, {c}, {h}, {w}] \
                     (pixels scaled to [0, 1]), output `logits` [batch, {}]",
                    onnx.display(),
                    e.bytes.len(),
                    e.nodes,
                    e.classes
                );
            }
            if let Some(torch) = torch {
                let py = strata_train::torch::export_torch_dir(&model_dir, data_dir.as_deref())?;
                strata_train::checkpoint::write_atomic(&torch, py.as_bytes())
                    .map_err(|err| Failure(err.to_string(), 1))?;
                println!(
                    "wrote {}: `Net().load_state_dict(safetensors.torch.load_file(\"{}\"))` \
                     loads the weights",
                    torch.display(),
                    model_dir.join("model.safetensors").display()
                );
            }
            Ok(())
        }
        Command::Sweep {
            spec,
            sets,
            out,
            data_dir,
            epochs,
            threads,
        } => {
            let out = out.unwrap_or_else(|| default_out(&spec, "-sweep"));
            let opts = RunOptions {
                out: out.clone(),
                data_dir,
                epochs,
                threads,
                resume: false,
                skip_test: true,
                overwrite: false,
                group: None,
            };
            let mut bar = progress::Progress::new();
            progress::stop_on_ctrl_c();
            let r = strata_train::sweep::sweep(&spec, &sets, &opts, &mut bar)?;
            bar.finish();
            println!(
                "{:<5} {:<50} {:>12} {:>10}",
                "run", "settings", "validation", "seconds"
            );
            for (i, row) in r.rows.iter().enumerate() {
                let mark = if i == r.best { "*" } else { " " };
                println!(
                    "{i:<4}{mark} {:<50} {:>11.2}% {:>10.1}",
                    row.settings.join(" "),
                    100.0 * row.validation_accuracy,
                    row.train_seconds
                );
            }
            println!(
                "best: run {} — held-out test accuracy {:.2}%",
                r.best,
                100.0 * r.test_accuracy
            );
            println!("table written to {}", out.join("sweep.md").display());
            Ok(())
        }
        Command::Gradcheck {
            spec,
            items,
            tolerance,
            data_dir,
        } => {
            let s = load_spec(&spec, &[])?;
            let reports = run::gradcheck(&s, data_dir.as_deref(), items.max(1))?;
            let mut worst = 0.0f64;
            println!(
                "{:<28} {:>8} {:>14} {:>14}",
                "parameter", "checked", "max rel. error", "max abs. error"
            );
            for r in &reports {
                println!(
                    "{:<28} {:>8} {:>14.3e} {:>14.3e}",
                    r.name, r.checked, r.max_rel_error, r.max_abs_error
                );
                worst = worst.max(r.max_rel_error);
            }
            if worst > tolerance {
                return Err(Failure(
                    format!(
                        "worst relative error {worst:.3e} exceeds the tolerance {tolerance:.1e}"
                    ),
                    1,
                ));
            }
            println!("ok: worst relative error {worst:.3e} ≤ {tolerance:.1e}");
            Ok(())
        }
        Command::Inspect { spec, data_dir } => {
            let s = load_spec(&spec, &[])?;
            let resolved = strata_train::data::resolve(&s.data.dataset, data_dir.as_deref())?;
            let data = resolved.load()?;
            let input = run::input_shape_for(&s, data.train.image_shape())?.to_vec();
            let net: strata_train::nn::Sequential<f32> =
                strata_train::build_model(&s, &input, data.train.num_classes())
                    .map_err(|e| Failure(e.to_string(), 2))?;
            println!(
                "input {:?} per sample, {} classes",
                input,
                data.train.num_classes()
            );
            println!(
                "{:<10} {:<28} {:<16} {:>12} {:>14}",
                "layer", "kind", "output", "parameters", "FLOPs/sample"
            );
            let (mut params, mut flops) = (0, 0);
            for row in strata_train::layer_table(&net, &input) {
                println!(
                    "{:<10} {:<28} {:<16} {:>12} {:>14}",
                    row.path,
                    row.kind,
                    format!("{:?}", row.output),
                    row.parameters,
                    2 * row.flops
                );
                params += row.parameters;
                flops += 2 * row.flops;
            }
            println!("total: {params} parameters, {flops} FLOPs per sample (forward)");
            Ok(())
        }
        Command::Import {
            spec,
            state,
            out,
            data_dir,
        } => {
            let s = load_spec(&spec, &[])?;
            let r = strata_train::import::import(&s, &state, data_dir.as_deref(), &out)?;
            for (ours, theirs) in &r.mapped {
                if ours != theirs {
                    println!("{theirs:<32} -> {ours}");
                }
            }
            println!(
                "wrote {} ({} tensors{}); `strata eval {}` evaluates it",
                out.display(),
                r.mapped.len(),
                if r.ignored.is_empty() {
                    String::new()
                } else {
                    format!(", {} batch counters left out", r.ignored.len())
                },
                out.display()
            );
            Ok(())
        }
        Command::Detect {
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
        } => {
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
        Command::Viz { picture } => {
            use strata_train::viz;
            match picture {
                Picture::Valley {
                    lr,
                    eps,
                    steps,
                    angle,
                    out,
                } => {
                    let o = viz::ValleyOptions {
                        lr,
                        eps,
                        steps,
                        angle,
                        ..viz::ValleyOptions::default()
                    };
                    let (plain, _) = viz::valley_plot(&out, &o).map_err(|e| Failure(e, 2))?;
                    for p in &plain {
                        let [x, y] = p.points[p.points.len() - 1];
                        println!("{:<9} ends at ({x:.4}, {y:.4})", p.method);
                    }
                    println!("wrote {}", out.display());
                }
                Picture::Regions { spec_or_model, out } => {
                    let scratch;
                    let model_dir = if spec_or_model.is_file() {
                        let spec = load_spec(&spec_or_model, &[])?;
                        scratch = std::env::temp_dir()
                            .join(format!("strata-regions-{}", std::process::id()));
                        let opts = RunOptions {
                            out: scratch.clone(),
                            overwrite: true,
                            ..RunOptions::default()
                        };
                        let summary = run::train(&spec, &opts, &mut ())?;
                        if let Some(a) = summary.test_accuracy {
                            println!(
                                "trained {}: test accuracy {:.2}%",
                                spec_or_model.display(),
                                100.0 * a
                            );
                        }
                        scratch.clone()
                    } else {
                        spec_or_model.clone()
                    };
                    let drawn = viz::regions_plot(&model_dir, None, &out);
                    if spec_or_model.is_file() {
                        let _ = std::fs::remove_dir_all(&model_dir);
                    }
                    let r = drawn?;
                    println!(
                        "wrote {} ({} lines of first-layer units)",
                        out.display(),
                        r.lines.len()
                    );
                }
                Picture::LearningRates {
                    spec,
                    lr,
                    epochs,
                    out,
                    data_dir,
                } => {
                    let s = load_spec(&spec, &[])?;
                    let runs =
                        viz::learning_rates_plot(&s, &lr, epochs, data_dir.as_deref(), &out)?;
                    for r in &runs {
                        let last = r.losses.last().copied().unwrap_or(f64::NAN);
                        match r.diverged_at {
                            Some(step) => println!("η = {:<8} diverged at step {step}", r.lr),
                            None => println!("η = {:<8} last loss {last:.4}", r.lr),
                        }
                    }
                    println!("wrote {}", out.display());
                }
                Picture::Augment {
                    spec,
                    epochs,
                    images,
                    out,
                    data_dir,
                } => {
                    let s = load_spec(&spec, &[])?;
                    let g = viz::augment_plot(&s, data_dir.as_deref(), epochs, images, &out)?;
                    println!(
                        "wrote {} ({} epochs × {} images, {:?} each)",
                        out.display(),
                        g.epochs,
                        g.columns,
                        &g.images.shape()[1..]
                    );
                }
                Picture::Filters {
                    model_dir,
                    out,
                    data_dir,
                } => {
                    let shape = viz::filters_plot(&model_dir, data_dir.as_deref(), &out)?;
                    println!("wrote {} ({shape:?} kernels)", out.display());
                }
                Picture::DeadUnits { run_dir, out } => {
                    let layers = viz::dead_units_plot(&run_dir, &out)?;
                    println!("wrote {} ({} layers)", out.display(), layers.len());
                }
            }
            Ok(())
        }
        Command::Data {
            action: DataAction::List { data_dir },
        } => {
            for name in ["digits", "mnist", "fashion-mnist", "cifar10"] {
                match strata_train::data::resolve(name, data_dir.as_deref()) {
                    Ok(r) => {
                        let at = r.path.map_or("embedded in the library".into(), |p| {
                            p.display().to_string()
                        });
                        println!("{name:<14} {at} ({:?})", r.layout);
                    }
                    Err(e) => println!("{name:<14} not found: {e}"),
                }
            }
            Ok(())
        }
        Command::Data {
            action: DataAction::Fetch { name },
        } => {
            let remote = strata_train::data::official_remote(&name)
                .ok_or_else(|| Failure(format!("no download address is known for {name:?}"), 2))?;
            let cache = strata_train::data::Resolver::from_env(None)
                .cache_dir
                .ok_or_else(|| Failure("no cache folder: set HOME or STRATA_DATA".into(), 1))?;
            let path = strata_train::data::download(&remote, &cache)
                .map_err(|e| Failure(e.to_string(), 1))?;
            println!("{name} is in {}", path.display());
            Ok(())
        }
    }
}

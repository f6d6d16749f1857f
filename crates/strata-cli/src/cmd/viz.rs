//! `strata viz`: the chapter's pictures, as PNG files.

use super::load_spec;
use crate::failure::Failure;
use clap::Subcommand;
use std::path::PathBuf;
use strata_train::run::{self, RunOptions};

#[derive(Subcommand)]
pub(crate) enum Picture {
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

/// Draws `picture`.
pub(crate) fn run(picture: Picture) -> Result<(), Failure> {
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
                scratch =
                    std::env::temp_dir().join(format!("strata-regions-{}", std::process::id()));
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
            let runs = viz::learning_rates_plot(&s, &lr, epochs, data_dir.as_deref(), &out)?;
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

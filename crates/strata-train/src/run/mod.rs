//! `strata train`: assemble the spec's network, train it with logs, plots and
//! checkpoints, evaluate on held-out data; plus `eval`, `sweep` and `gradcheck`.
//!
//! The run folder's files are in `folder.rs` (claiming it, the model and the
//! checkpoint), the data and evaluation settings in `data.rs`, the logs and
//! metrics written as training goes in `report.rs`; `eval.rs` and
//! `gradcheck.rs` hold the other commands.

mod data;
mod eval;
mod folder;
mod gradcheck;
mod report;

pub use data::{eval_options, input_shape_for, load_data, network_input, Splits};
pub use eval::eval_dir;
pub use folder::load_model;
pub use gradcheck::gradcheck;
pub use report::confusion_text;

pub(crate) use data::load_raw;
pub(crate) use folder::save_model;

use crate::assemble::build_model_fitted;
use crate::checkpoint::CheckpointError;
use crate::collective::{rank_size, Group};
use crate::fit::{
    evaluate_with, fit_from, EpochReport, EvalOptions, FitOptions, Observer, StepInfo, TrainError,
};
use crate::plot;
use crate::spec::{Spec, SpecError};
use data::spec_error;
use folder::{claim_out_folder, io_err, remove_stray_temporaries, restore_checkpoint, write_text};
use report::{restore_metrics, Metrics, RunObserver};
use std::path::PathBuf;
use strata_data::DataError;
use strata_nn::{parameter_count, Module, Sequential};
use strata_optim::Optimizer;
use thiserror::Error;

/// Anything that can stop a run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The spec is malformed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Training failed (diverged, shape error, …).
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Training was interrupted (Ctrl-C); the message says what was kept.
    #[error("{0}")]
    Interrupted(String),
    /// A command-line option is out of range.
    #[error("{0}")]
    Usage(String),
    /// Something else, with context.
    #[error("{0}")]
    Other(String),
    /// A failure every rank of a group reached together (rank 0 could not
    /// write its folder or read its checkpoint), so all may leave together.
    #[error(transparent)]
    EveryRank(Box<RunError>),
}

impl RunError {
    /// Whether every rank of a data-parallel group met this error at the
    /// same point, so none is left waiting in a collective call: a failure
    /// shared through [`RunError::EveryRank`], an interruption or a
    /// divergence (both decided on sums every rank holds).
    pub fn reached_by_every_rank(&self) -> bool {
        matches!(
            self,
            RunError::EveryRank(_)
                | RunError::Interrupted(_)
                | RunError::Train(TrainError::Diverged { .. })
        )
    }
}

/// Options of [`train`] beyond the spec (the CLI flags).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Output folder.
    pub out: PathBuf,
    /// A folder to look for data sets in first.
    pub data_dir: Option<PathBuf>,
    /// Overrides `train.epochs`.
    pub epochs: Option<usize>,
    /// Overrides `train.threads`.
    pub threads: Option<usize>,
    /// Continue from `out/checkpoint/` instead of starting afresh.
    pub resume: bool,
    /// Skip the held-out test evaluation (sweeps evaluate only the winner).
    pub skip_test: bool,
    /// Replace another run found in `out` (without it, and without
    /// `resume`, such a folder is refused).
    pub overwrite: bool,
    /// The processes the run is split over (data-parallel, see
    /// [`crate::collective`]): only rank 0 writes files and reports
    /// progress; `None`: this process alone.
    pub group: Option<Group>,
}

/// `summary.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Held-out test accuracy (absent when skipped).
    pub test_accuracy: Option<f64>,
    /// Validation accuracy after the last epoch.
    pub validation_accuracy: Option<f64>,
    /// Seconds spent training (all epochs of this and earlier resumed runs).
    pub train_seconds: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Trainable scalars.
    pub parameters: usize,
    /// Mean training throughput.
    pub samples_per_second: f64,
    /// What a finished run should not have gone quietly past: a test
    /// accuracy at chance, layers whose units are nearly all dead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Present when the run was split over several processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_parallel: Option<DataParallel>,
}

/// How a data-parallel run spent its time (`summary.json`'s
/// `data_parallel`), as rank 0 saw it, over this invocation's training.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DataParallel {
    /// Processes the minibatches were split over.
    pub ranks: usize,
    /// Seconds rank 0 spent in collective calls (the all-reduce of each step,
    /// batch-norm sums, evaluation counts), waiting for the others included.
    pub collective_seconds: f64,
    /// Those seconds as a fraction of the training's wall time.
    pub collective_share: f64,
}

/// Trains the spec as the CLI's `strata train` does, writing into `opts.out`.
pub fn train(
    spec: &Spec,
    opts: &RunOptions,
    progress: &mut dyn Observer,
) -> Result<Summary, RunError> {
    let mut spec = spec.clone();
    if let Some(e) = opts.epochs {
        if e == 0 {
            return Err(RunError::Usage("--epochs must be at least 1".into()));
        }
        // In the source too, so that the run folder's spec.toml says how many
        // epochs the run had (the fields are set, not re-parsed, to keep any
        // a caller changed in memory).
        spec.source = spec
            .with_overrides(&[format!("train.epochs = {e}")])?
            .source;
        spec.train.epochs = e;
    }
    match opts.threads {
        Some(n) => strata_kernels::parallel::try_set_num_threads(n)
            .map_err(|e| RunError::Usage(format!("--threads: {e}")))?,
        None => strata_kernels::parallel::try_set_num_threads(spec.train.threads)
            .map_err(|e| spec_error(&spec, "train.threads", e.to_string()))?,
    }
    let data = load_data(&spec, opts.data_dir.as_deref())?;
    let image = data.train.image_shape();
    let input = network_input(&spec, image)?;
    let classes = data.train.num_classes();
    let mut model: Sequential<f32> = build_model_fitted(&spec, &input, classes, Some(&data.train))?;
    let steps_per_epoch = data.train.len().div_ceil(spec.train.batch) as u64;
    let mut opt = spec
        .optimizer_for(steps_per_epoch)
        .map_err(RunError::Other)?;
    // Under a group only rank 0 writes files and reports progress.
    let lead = rank_size(opts.group.as_ref()).0 == 0;
    let mut quiet;
    let progress: &mut dyn Observer = if lead {
        progress
    } else {
        quiet = Quiet(progress);
        &mut quiet
    };
    let claimed = if lead {
        std::fs::create_dir_all(&opts.out)
            .map_err(|e| io_err(&opts.out, e))
            .and_then(|()| {
                remove_stray_temporaries(&opts.out);
                if opts.resume {
                    Ok(())
                } else {
                    claim_out_folder(&opts.out, opts.overwrite)
                }
            })
    } else {
        Ok(())
    };
    agree(opts.group.as_ref(), claimed, "prepare the output folder")?;
    let first_epoch = if opts.resume {
        // Under a group every rank decodes the same bytes, so every rank
        // fails alike.
        let e = restore_checkpoint(&opts.out, &mut model, &mut opt, opts.group.as_ref()).map_err(
            |e| match opts.group {
                Some(_) => RunError::EveryRank(Box::new(e)),
                None => e,
            },
        )?;
        progress.on_message(&format!(
            "resuming after epoch {e} from {}",
            opts.out.join("checkpoint").display()
        ));
        e
    } else {
        0
    };
    if lead {
        write_text(&opts.out.join("spec.toml"), &spec.source)?;
    }
    let metrics = if opts.resume && lead {
        restore_metrics(&opts.out, first_epoch)
    } else {
        Metrics {
            jsonl: String::new(),
            step_losses: Vec::new(),
            epochs: Vec::new(),
            train_seconds: 0.0,
        }
    };
    let fit_opts = FitOptions {
        epochs: spec.train.epochs,
        batch: spec.train.batch,
        seed: spec.train.seed,
        augment: spec.augmentation(),
        eval: eval_options(&spec, image, false)?,
        label_smoothing: spec.train.label_smoothing,
        group: opts.group.clone(),
        sync_batchnorm: spec.train.sync_batchnorm,
    };
    let mut observer = RunObserver {
        out: opts.out.clone(),
        spec: &spec,
        pipeline: data.pipeline.as_ref(),
        metrics,
        pending_steps: Vec::new(),
        checkpointed: (first_epoch > 0).then_some(first_epoch),
        inner: progress,
        lead,
    };
    let (wall, busy) = (
        std::time::Instant::now(),
        opts.group.as_ref().map_or(0.0, |g| g.busy_seconds()),
    );
    let result = fit_from(
        &mut model,
        &mut opt,
        &data.train,
        data.validation.as_ref(),
        &fit_opts,
        first_epoch,
        &mut observer,
    );
    let data_parallel = opts.group.as_ref().filter(|g| g.size() > 1).map(|g| {
        let seconds = g.busy_seconds() - busy;
        DataParallel {
            ranks: g.size(),
            collective_seconds: seconds,
            collective_share: seconds / wall.elapsed().as_secs_f64().max(1e-9),
        }
    });
    if let Err(e @ TrainError::Interrupted { .. }) = result {
        let kept = match observer.checkpointed {
            _ if !observer.lead => "rank 0 writes the checkpoints: see its message".into(),
            Some(epoch) => format!(
                "the checkpoint after epoch {epoch} is in {}; `strata train {} --out {} --resume` continues from there",
                opts.out.join("checkpoint").display(),
                spec.file.display(),
                opts.out.display()
            ),
            None => "no checkpoint was written yet".into(),
        };
        return Err(RunError::Interrupted(format!("{e}; {kept}")));
    }
    if let Err(e) = result {
        let kept = opts.out.join("checkpoint");
        let note = if lead && kept.exists() {
            format!("; the last good checkpoint is kept in {}", kept.display())
        } else {
            String::new()
        };
        return Err(RunError::Other(format!("{e}{note}")));
    }
    let metrics = observer.metrics;
    let last = metrics.epochs.last();
    let trained_items: f64 = metrics.epochs.len() as f64 * data.train.len() as f64;
    let mut summary = Summary {
        test_accuracy: None,
        validation_accuracy: last.and_then(|r| r.validation_accuracy),
        train_seconds: metrics.train_seconds,
        epochs: spec.train.epochs,
        parameters: parameter_count(&model),
        samples_per_second: trained_items / metrics.train_seconds.max(1e-9),
        warnings: Vec::new(),
        data_parallel,
    };
    if let Some(r) = last {
        for (layer, f) in &r.dead_units {
            if *f >= 0.9 {
                summary.warnings.push(format!(
                    "{:.0} % of the units of {layer} were dead in the last epoch: try a smaller learning rate, a smaller init_epsilon or a warm-up",
                    f * 100.0
                ));
            }
        }
    }
    if !opts.skip_test {
        let test_opts = EvalOptions {
            group: opts.group.clone(),
            ..eval_options(&spec, image, true)?
        };
        let eval = evaluate_with(&mut model, &data.test, &test_opts)?;
        summary.test_accuracy = Some(eval.accuracy);
        let chance = 1.0 / classes.max(1) as f64;
        if eval.accuracy <= 1.5 * chance {
            summary.warnings.push(format!(
                "the test accuracy {:.2} % is at chance level ({:.2} % for {classes} classes): the network learned nothing usable",
                eval.accuracy * 100.0,
                chance * 100.0
            ));
        }
        let names = data.test.class_names().to_vec();
        if lead {
            write_text(
                &opts.out.join("confusion.txt"),
                &confusion_text(&eval, &names),
            )?;
            plot::confusion_plot(&opts.out.join("confusion.png"), &eval.confusion, &names)
                .map_err(RunError::Other)?;
        }
    }
    let json =
        serde_json::to_string_pretty(&summary).map_err(|e| RunError::Other(e.to_string()))?;
    for w in &summary.warnings {
        progress.on_message(&format!("warning: {w}"));
    }
    if lead {
        write_text(&opts.out.join("summary.json"), &json)?;
    }
    Ok(summary)
}

/// Passes on only [`Observer::stop_requested`]: the progress of a rank
/// other than 0, which stays silent.
struct Quiet<'a>(&'a mut dyn Observer);

impl Observer for Quiet<'_> {
    fn stop_requested(&self) -> bool {
        self.0.stop_requested()
    }
}

/// Whether every rank of `group` managed a step only rank 0 did (`done`,
/// `Ok` on the others): rank 0 returns its own error, the others say that
/// rank 0 could not `what`.
fn agree(group: Option<&Group>, done: Result<(), RunError>, what: &str) -> Result<(), RunError> {
    let Some(g) = group else {
        return done;
    };
    let mut failed = [f64::from(u8::from(done.is_err()))];
    g.all_reduce_f64(&mut failed)
        .map_err(|e| RunError::Other(format!("data-parallel training: {e}")))?;
    done.map_err(|e| RunError::EveryRank(Box::new(e)))?;
    if failed[0] > 0.0 {
        return Err(RunError::EveryRank(Box::new(RunError::Other(format!(
            "rank 0 could not {what}: see its message"
        )))));
    }
    Ok(())
}

impl<O: Observer + ?Sized> Observer for &mut O {
    fn on_step(&mut self, info: &StepInfo) {
        (**self).on_step(info)
    }
    fn on_message(&mut self, message: &str) {
        (**self).on_message(message)
    }
    fn stop_requested(&self) -> bool {
        (**self).stop_requested()
    }
    fn on_epoch(
        &mut self,
        r: &EpochReport,
        model: &dyn Module<f32>,
        opt: &Optimizer<f32>,
    ) -> Result<(), String> {
        (**self).on_epoch(r, model, opt)
    }
}

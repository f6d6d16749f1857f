//! `strata train`: assemble the spec's network, train it with logs, plots and
//! checkpoints, evaluate on held-out data; plus `eval`, `sweep` and `gradcheck`.
//!
//! [`train`] is four steps: `plan.rs` resolves the spec and the options once
//! into a plan (data and fitted preprocessing from `data.rs`, the network, the
//! optimiser, training and evaluation settings); `start.rs` claims or resumes
//! the run folder; `fit` trains, writing as it goes through `report.rs`'s
//! observer; `report.rs` evaluates on the test split and writes
//! `summary.json`. `folder.rs` holds the run folder's files (the model, the
//! checkpoint); `eval.rs` and `gradcheck.rs` the other commands.

mod data;
mod eval;
mod folder;
mod gradcheck;
mod plan;
mod report;
mod start;

pub use data::{eval_options, input_shape_for, load_data, network_input, Splits};
pub use eval::eval_dir;
pub use folder::load_model;
pub use gradcheck::gradcheck;
pub use report::confusion_text;

pub(crate) use data::load_raw;
pub(crate) use folder::save_model;

use crate::checkpoint::CheckpointError;
use crate::collective::{rank_size, Group};
use crate::fit::{fit_from, EpochReport, Observer, StepInfo, TrainError};
use crate::spec::{Spec, SpecError};
use plan::Plan;
use report::{Metrics, RunObserver};
use start::Start;
use std::path::PathBuf;
use strata_data::DataError;
use strata_nn::Module;
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
///
/// The spec and `opts` are first resolved into a plan: the data with its
/// fitted preprocessing, the network, the optimiser, the training and
/// evaluation settings, every field checked (errors name the spec's file and
/// field). Then the run folder is claimed, or its checkpoint restored with
/// `opts.resume`; the plan is fitted; the test evaluation and `summary.json`
/// report it.
pub fn train(
    spec: &Spec,
    opts: &RunOptions,
    progress: &mut dyn Observer,
) -> Result<Summary, RunError> {
    let mut plan = plan::resolve(spec, opts)?;
    // Under a group only rank 0 writes files and reports progress.
    let lead = rank_size(opts.group.as_ref()).0 == 0;
    let mut quiet;
    let progress: &mut dyn Observer = if lead {
        progress
    } else {
        quiet = Quiet(progress);
        &mut quiet
    };
    let start = start::prepare(&mut plan, opts, lead, progress)?;
    let (metrics, data_parallel) = fit(&mut plan, opts, start, lead, progress)?;
    report::summarise(&mut plan, opts, metrics, data_parallel, lead, progress)
}

/// Runs [`fit_from`] on the plan from where `start` says, writing logs,
/// plots, the model and checkpoints as it goes; returns the metrics of every
/// epoch (earlier runs' included) and, for a group, its time in collective calls.
fn fit(
    plan: &mut Plan,
    opts: &RunOptions,
    start: Start,
    lead: bool,
    progress: &mut dyn Observer,
) -> Result<(Metrics, Option<DataParallel>), RunError> {
    let mut observer = RunObserver {
        out: opts.out.clone(),
        spec: &plan.spec,
        pipeline: plan.data.pipeline.as_ref(),
        metrics: start.metrics,
        pending_steps: Vec::new(),
        checkpointed: (start.first_epoch > 0).then_some(start.first_epoch),
        inner: progress,
        lead,
    };
    let (wall, busy) = (
        std::time::Instant::now(),
        opts.group.as_ref().map_or(0.0, |g| g.busy_seconds()),
    );
    let result = fit_from(
        &mut plan.model,
        &mut plan.optimizer,
        &plan.data.train,
        plan.data.validation.as_ref(),
        &plan.fit,
        start.first_epoch,
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
                plan.spec.file.display(),
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
    Ok((observer.metrics, data_parallel))
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

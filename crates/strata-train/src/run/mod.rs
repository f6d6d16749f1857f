//! `strata train`: assemble the spec's network, train it with logs, plots and
//! checkpoints, evaluate on held-out data; plus `eval`, `sweep` and `gradcheck`.

use crate::assemble::{build_model, build_model_fitted};
use crate::checkpoint::{
    load_tensors, load_tensors_from, save_tensors, write_atomic, CheckpointError,
};
use crate::collective::{rank_size, Group};
use crate::fit::{
    evaluate_with, fit_from, EpochReport, EvalOptions, Evaluation, FitOptions, Observer, StepInfo,
    TrainError,
};
use crate::plot;
use crate::spec::{Spec, SpecError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use strata_autograd::gradcheck::{GradCheckOptions, GradCheckReport};
use strata_data::{AugmentStep, Augmentation, DataError, Dataset, FittedPipeline, TrainTest};
use strata_nn::{load_state_dict, parameter_count, state_dict, Mode, Module, Sequential};
use strata_optim::Optimizer;
use strata_tensor::Tensor;
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

/// The spec's data: train (minus validation), validation, test.
pub struct Splits {
    /// Training items.
    pub train: Dataset,
    /// Validation items (held out of training).
    pub validation: Option<Dataset>,
    /// Held-out test items.
    pub test: Dataset,
    /// The preprocessing fitted on `train` (already applied to all three).
    pub pipeline: Option<FittedPipeline>,
}

/// Loads and splits the spec's data set, then fits the spec's preprocessing on
/// the training split and applies it, unchanged, to validation and test.
pub fn load_data(spec: &Spec, data_dir: Option<&Path>) -> Result<Splits, RunError> {
    let mut s = load_raw(spec, data_dir)?;
    if !spec.preprocess.is_empty() {
        let pipeline = FittedPipeline::fit_apply(&spec.preprocess, &mut s.train)?;
        if let Some(v) = &mut s.validation {
            pipeline.apply(v)?;
        }
        pipeline.apply(&mut s.test)?;
        s.pipeline = Some(pipeline);
    }
    Ok(s)
}

/// The per-sample input shape of the network: the (preprocessed) image shape
/// after the training augmentation.
pub fn network_input(spec: &Spec, image: [usize; 3]) -> Result<[usize; 3], RunError> {
    match spec.augmentation() {
        // A crop that does not fit the data is the spec's fault: say where.
        Some(a) => a
            .output_shape(image)
            .map_err(|e| spec_error(spec, "data.augment", e.to_string())),
        None => Ok(image),
    }
}

/// A [`SpecError`] at `field` of `spec`'s file, found only once the data
/// was known (so without a line number).
fn spec_error(spec: &Spec, field: &str, message: String) -> RunError {
    SpecError {
        file: spec.file.clone(),
        line: None,
        field: field.into(),
        message,
    }
    .into()
}

/// The network's per-sample input shape for raw images of shape `raw`:
/// through every preprocessing step, then the augmentation (nothing is fitted).
pub fn input_shape_for(spec: &Spec, raw: [usize; 3]) -> Result<[usize; 3], RunError> {
    let image = spec
        .preprocess
        .iter()
        .try_fold(raw, |s, p| p.output_shape(s))
        .map_err(|e| spec_error(spec, "data.preprocess", e.to_string()))?;
    network_input(spec, image)
}

/// How validation and test images are evaluated for this spec.
pub fn eval_options(spec: &Spec, image: [usize; 3], test: bool) -> Result<EvalOptions, RunError> {
    let input = network_input(spec, image)?;
    let multi = test && spec.eval.multi_crop;
    let pad = if multi { spec.eval.pad } else { 0 };
    let transform = match spec.augmentation() {
        Some(a) if !multi => Some(
            a.eval_transform(image)
                .map_err(|e| spec_error(spec, "data.augment", e.to_string()))?,
        ),
        // Multi-crop views cut from the zero-padded image (a larger centred window).
        _ if pad > 0 => Some(Augmentation::new(0).then(AugmentStep::CenterCrop {
            height: image[1] + 2 * pad,
            width: image[2] + 2 * pad,
        })),
        _ => None,
    };
    let padded = [image[0], image[1] + 2 * pad, image[2] + 2 * pad];
    if multi && (input[1] > padded[1] || input[2] > padded[2]) {
        return Err(spec_error(
            spec,
            "eval.multi_crop",
            format!("the network input {input:?} is larger than the images {padded:?}"),
        ));
    }
    Ok(EvalOptions {
        batch: spec.eval.batch,
        transform,
        multi_crop: multi.then_some([input[1], input[2]]),
        mirror: spec.eval.mirror,
        tta: if test { spec.eval.tta } else { None },
        group: None,
    })
}

/// `n` items of `d` (all of them if it has fewer) chosen by `seed`, in their
/// stored order.
fn random_subset(d: &Dataset, n: usize, seed: u64) -> Result<Dataset, RunError> {
    if n >= d.len() {
        return Ok(d.clone());
    }
    let (_, keep) = strata_data::validation_indices(d.len(), n, seed ^ 0x5eed_5b5e7)?;
    Ok(d.select(&keep)?)
}

pub(crate) fn load_raw(spec: &Spec, data_dir: Option<&Path>) -> Result<Splits, RunError> {
    let TrainTest {
        mut train,
        mut test,
    } = strata_data::load(&spec.data.dataset, data_dir)?;
    // Seeded random subsets, not the first n items: image-folder data sets
    // (CIFAR-10's) are stored class by class, so a prefix would be one class.
    if let Some(n) = spec.data.subset {
        train = random_subset(&train, n, spec.train.seed)?;
    }
    if let Some(n) = spec.data.test_subset {
        test = random_subset(&test, n, spec.train.seed)?;
    }
    if let Some(f) = spec.data.background {
        let field = |e: strata_data::DataError| spec_error(spec, "data.background", e.to_string());
        train = strata_data::with_background(&train, f, spec.train.seed).map_err(field)?;
        test = strata_data::with_background(&test, f, spec.train.seed ^ 0x7e57).map_err(field)?;
    }
    if test.is_empty() {
        // A run is judged on held-out images: "0.00 %" of none would mislead.
        return Err(spec_error(
            spec,
            "data.dataset",
            format!("{:?} has no test images to evaluate on", spec.data.dataset),
        ));
    }
    let validation = if spec.data.validation > 0 {
        if spec.data.validation >= train.len() {
            return Err(SpecError {
                file: spec.file.clone(),
                line: None,
                field: "data.validation".into(),
                message: format!(
                    "{} validation items leave none of the {} training items",
                    spec.data.validation,
                    train.len()
                ),
            }
            .into());
        }
        let (t, v) = train.split_validation(spec.data.validation, spec.train.seed)?;
        train = t;
        Some(v)
    } else {
        None
    };
    Ok(Splits {
        train,
        validation,
        test,
        pipeline: None,
    })
}

/// The files that say a folder holds a run.
const RUN_FILES: [&str; 4] = [
    "summary.json",
    "metrics.jsonl",
    "model.safetensors",
    "checkpoint/state.safetensors",
];

/// A new run may write into `out` only if no other run is there, or, with
/// `overwrite`, after the other run's checkpoint and logs are removed (so
/// that nothing of it is ever named as this run's).
fn claim_out_folder(out: &Path, overwrite: bool) -> Result<(), RunError> {
    let Some(held) = RUN_FILES.iter().map(|f| out.join(f)).find(|p| p.exists()) else {
        return Ok(());
    };
    if !overwrite {
        return Err(RunError::Usage(format!(
            "{} holds another run ({} exists): pass --overwrite to replace it, --resume to continue it, or choose another --out",
            out.display(),
            held.display()
        )));
    }
    let _ = std::fs::remove_dir_all(out.join("checkpoint"));
    for f in RUN_FILES.iter().chain(&[
        "metrics.csv",
        "confusion.txt",
        "confusion.png",
        "loss.png",
        "accuracy.png",
    ]) {
        let _ = std::fs::remove_file(out.join(f));
    }
    Ok(())
}

/// Removes the temporary files ([`write_atomic`]'s `<name>.tmp<pid>`) that a
/// run killed while writing left in `out` or `out/checkpoint`.
fn remove_stray_temporaries(out: &Path) {
    for dir in [out.to_path_buf(), out.join("checkpoint")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let stray = p
                .extension()
                .and_then(|x| x.to_str())
                .and_then(|x| x.strip_prefix("tmp"))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            if stray && p.is_file() {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Other(format!("{}: {e}", path.display()))
}

fn write_text(path: &Path, text: &str) -> Result<(), RunError> {
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Model weights (and batch-norm statistics) under their names, the fitted
/// preprocessing (`preprocess.*`), plus the spec, in `model.safetensors`.
pub(crate) fn save_model(
    path: &Path,
    model: &dyn Module<f32>,
    pipeline: Option<&FittedPipeline>,
    spec: &Spec,
    epoch: usize,
) -> Result<(), RunError> {
    let meta = HashMap::from([
        ("format".to_string(), "strata-model-1".to_string()),
        ("spec".to_string(), spec.source.clone()),
        ("epoch".to_string(), epoch.to_string()),
    ]);
    let mut tensors = state_dict(model);
    if let Some(p) = pipeline {
        tensors.extend(p.to_tensors());
    }
    Ok(save_tensors(path, &tensors, meta)?)
}

/// Loads `model.safetensors` into a network built from the same spec, and
/// returns the fitted preprocessing stored with it (if the spec has any).
pub fn load_model(
    path: &Path,
    model: &mut dyn Module<f32>,
    spec: &Spec,
) -> Result<Option<FittedPipeline>, RunError> {
    let (tensors, _) = load_tensors(path)?;
    let fmt = |message: String| {
        RunError::Checkpoint(CheckpointError::Format {
            path: path.into(),
            message,
        })
    };
    let (pre, weights): (Vec<_>, Vec<_>) = tensors
        .into_iter()
        .partition(|(n, _)| n.starts_with("preprocess."));
    load_state_dict(model, &weights).map_err(|e| fmt(e.to_string()))?;
    if spec.preprocess.is_empty() {
        return Ok(None);
    }
    FittedPipeline::from_tensors(&pre, &spec.preprocess)
        .map(Some)
        .map_err(|e| fmt(e.to_string()))
}

struct Metrics {
    jsonl: String,
    step_losses: Vec<f64>,
    epochs: Vec<EpochReport>,
    train_seconds: f64,
}

/// Writes logs, plots and checkpoints as training goes.
struct RunObserver<'a> {
    out: PathBuf,
    spec: &'a Spec,
    pipeline: Option<&'a FittedPipeline>,
    metrics: Metrics,
    pending_steps: Vec<StepInfo>,
    /// The epoch whose checkpoint is in `out/checkpoint`, if any.
    checkpointed: Option<usize>,
    inner: &'a mut dyn Observer,
    /// Rank 0 of its group (or alone): the process that writes.
    lead: bool,
}

impl RunObserver<'_> {
    fn write_logs(&mut self) -> Result<(), String> {
        let m = &self.metrics;
        write_atomic(&self.out.join("metrics.jsonl"), m.jsonl.as_bytes())
            .map_err(|e| e.to_string())?;
        let layers: Vec<String> = m
            .epochs
            .last()
            .map(|r| r.dead_units.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let mut csv = String::from("step,epoch,loss,lr,train_accuracy,validation_accuracy,seconds");
        for l in &layers {
            csv.push_str(&format!(",dead.{l}"));
        }
        csv.push('\n');
        for r in &m.epochs {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{}",
                r.step,
                r.epoch,
                r.loss,
                r.lr,
                r.train_accuracy,
                r.validation_accuracy
                    .map_or(String::new(), |v| v.to_string()),
                r.seconds
            ));
            for l in &layers {
                let v = r
                    .dead_units
                    .iter()
                    .find(|(n, _)| n == l)
                    .map(|(_, f)| f.to_string());
                csv.push_str(&format!(",{}", v.unwrap_or_default()));
            }
            csv.push('\n');
        }
        write_atomic(&self.out.join("metrics.csv"), csv.as_bytes()).map_err(|e| e.to_string())?;
        plot::loss_plot(&self.out.join("loss.png"), &m.step_losses)?;
        let train: Vec<f64> = m.epochs.iter().map(|r| r.train_accuracy).collect();
        let val: Vec<Option<f64>> = m.epochs.iter().map(|r| r.validation_accuracy).collect();
        plot::accuracy_plot(&self.out.join("accuracy.png"), &train, &val)
    }
}

impl Observer for RunObserver<'_> {
    fn on_step(&mut self, info: &StepInfo) {
        self.pending_steps.push(*info);
        self.inner.on_step(info);
    }

    fn on_message(&mut self, message: &str) {
        self.inner.on_message(message);
    }

    fn stop_requested(&self) -> bool {
        self.inner.stop_requested()
    }

    fn on_epoch(
        &mut self,
        r: &EpochReport,
        model: &dyn Module<f32>,
        opt: &Optimizer<f32>,
    ) -> Result<(), String> {
        if !self.lead {
            self.pending_steps.clear();
            return self.inner.on_epoch(r, model, opt);
        }
        for s in self.pending_steps.drain(..) {
            self.metrics.jsonl.push_str(&format!(
                "{{\"kind\":\"step\",\"step\":{},\"epoch\":{},\"loss\":{},\"lr\":{}}}\n",
                s.step,
                s.epoch,
                json_num(s.loss),
                json_num(s.lr)
            ));
            self.metrics.step_losses.push(s.loss);
        }
        let dead: Vec<String> = r
            .dead_units
            .iter()
            .map(|(n, f)| format!("\"{n}\":{}", json_num(*f)))
            .collect();
        self.metrics.train_seconds += r.seconds;
        self.metrics.jsonl.push_str(&format!(
            "{{\"kind\":\"epoch\",\"step\":{},\"epoch\":{},\"loss\":{},\"lr\":{},\"train_accuracy\":{},\"validation_accuracy\":{},\"dead_units\":{{{}}},\"seconds\":{},\"total_seconds\":{}}}\n",
            r.step,
            r.epoch,
            json_num(r.loss),
            json_num(r.lr),
            json_num(r.train_accuracy),
            r.validation_accuracy.map_or("null".into(), json_num),
            dead.join(","),
            json_num(r.seconds),
            json_num(self.metrics.train_seconds),
        ));
        self.metrics.epochs.push(r.clone());
        for (layer, f) in &r.dead_units {
            if *f > self.spec.train.dead_unit_warning {
                self.inner.on_message(&format!(
                    "warning: {:.0}% of the units of {layer} were dead (zero for every item) in epoch {}; a smaller learning rate may help",
                    100.0 * f,
                    r.epoch
                ));
            }
        }
        self.write_logs()?;
        save_model(
            &self.out.join("model.safetensors"),
            model,
            self.pipeline,
            self.spec,
            r.epoch,
        )
        .map_err(|e| e.to_string())?;
        if r.epoch.is_multiple_of(self.spec.train.checkpoint_every)
            || r.epoch == self.spec.train.epochs
        {
            save_checkpoint(&self.out, model, opt, self.spec, r.epoch)
                .map_err(|e| e.to_string())?;
            self.checkpointed = Some(r.epoch);
        }
        self.inner.on_epoch(r, model, opt)
    }
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// `checkpoint/state.safetensors`: weights, optimiser state and the epoch.
fn save_checkpoint(
    out: &Path,
    model: &dyn Module<f32>,
    opt: &Optimizer<f32>,
    spec: &Spec,
    epoch: usize,
) -> Result<(), RunError> {
    let mut tensors: Vec<(String, Tensor<f32>)> = state_dict(model)
        .into_iter()
        .map(|(n, t)| (format!("model/{n}"), t))
        .collect();
    tensors.extend(
        opt.state_tensors()
            .into_iter()
            .map(|(n, t)| (format!("optim/{n}"), t)),
    );
    let meta = HashMap::from([
        ("format".to_string(), "strata-checkpoint-2".to_string()),
        ("epoch".to_string(), epoch.to_string()),
        // An integer, exactly: the schedule is a function of the step count.
        ("optimizer_steps".to_string(), opt.steps().to_string()),
        ("spec".to_string(), spec.source.clone()),
    ]);
    Ok(save_tensors(
        &out.join("checkpoint").join("state.safetensors"),
        &tensors,
        meta,
    )?)
}

/// Restores model and optimiser from `checkpoint/`; returns the epoch it was written after.
fn restore_checkpoint(
    out: &Path,
    model: &mut dyn Module<f32>,
    opt: &mut Optimizer<f32>,
    group: Option<&Group>,
) -> Result<usize, RunError> {
    let path = out.join("checkpoint").join("state.safetensors");
    let (tensors, meta) = match group {
        None => load_tensors(&path)?,
        Some(g) => {
            // Rank 0 reads the file and sends its bytes: every rank resumes
            // from the same checkpoint, whether or not it sees rank 0's disk.
            let (mut bytes, read) = if g.rank() == 0 {
                match std::fs::read(&path) {
                    Ok(b) => (b, Ok(())),
                    Err(e) => (Vec::new(), Err(io_err(&path, e))),
                }
            } else {
                (Vec::new(), Ok(()))
            };
            g.broadcast_bytes(&mut bytes)
                .map_err(|e| RunError::Other(format!("data-parallel training: {e}")))?;
            read?;
            if bytes.is_empty() {
                return Err(RunError::Other(format!(
                    "rank 0 could not read the checkpoint {}",
                    path.display()
                )));
            }
            load_tensors_from(&path, &bytes)?
        }
    };
    let fmt = |message: String| {
        RunError::Checkpoint(CheckpointError::Format {
            path: path.clone(),
            message,
        })
    };
    let epoch: usize = meta
        .get("epoch")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| fmt("no epoch in the checkpoint's metadata".into()))?;
    let mut weights = Vec::new();
    let mut optim = Vec::new();
    let mut legacy_steps = None;
    for (n, t) in tensors {
        if let Some(w) = n.strip_prefix("model/") {
            weights.push((w.to_string(), t));
        } else if n == "optim/__step" {
            legacy_steps = t.to_vec().first().copied();
        } else if let Some(o) = n.strip_prefix("optim/") {
            optim.push((o.to_string(), t));
        }
    }
    let steps = checkpoint_steps(&meta, legacy_steps).map_err(fmt)?;
    load_state_dict(model, &weights).map_err(|e| fmt(e.to_string()))?;
    opt.load_state_tensors(steps, &optim, model.params())
        .map_err(|e| fmt(e.to_string()))?;
    Ok(epoch)
}

/// The optimiser's step count: `optimizer_steps` in the metadata, a decimal
/// u64; checkpoints of format 1 stored it as the f32 tensor `optim/__step`,
/// read only when it is a whole number ≥ 0 that an f32 holds exactly.
fn checkpoint_steps(meta: &HashMap<String, String>, legacy: Option<f32>) -> Result<u64, String> {
    match (meta.get("optimizer_steps"), legacy) {
        (Some(s), _) => s
            .parse::<u64>()
            .map_err(|_| format!("metadata optimizer_steps is {s:?}, expected a whole number ≥ 0")),
        (None, Some(v)) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 16_777_216.0 => {
            Ok(v as u64)
        }
        (None, Some(v)) => Err(format!(
            "tensor optim/__step holds {v}, expected a whole number of steps below 2^24"
        )),
        (None, None) => Err("no optimizer_steps in the checkpoint's metadata".into()),
    }
}

/// Rebuilds metrics of epochs `1..=epoch` from an earlier `metrics.jsonl`.
fn restore_metrics(out: &Path, epoch: usize) -> Metrics {
    let mut m = Metrics {
        jsonl: String::new(),
        step_losses: Vec::new(),
        epochs: Vec::new(),
        train_seconds: 0.0,
    };
    let Ok(text) = std::fs::read_to_string(out.join("metrics.jsonl")) else {
        return m;
    };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let e = v["epoch"].as_u64().unwrap_or(u64::MAX) as usize;
        if e > epoch {
            continue;
        }
        m.jsonl.push_str(line);
        m.jsonl.push('\n');
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        match v["kind"].as_str() {
            Some("step") => m.step_losses.push(f("loss")),
            Some("epoch") => {
                m.train_seconds = f("total_seconds");
                let dead = v["dead_units"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, x)| (k.clone(), x.as_f64().unwrap_or(0.0)))
                            .collect()
                    })
                    .unwrap_or_default();
                m.epochs.push(EpochReport {
                    epoch: e,
                    step: v["step"].as_u64().unwrap_or(0),
                    loss: f("loss"),
                    step_losses: Vec::new(),
                    lr: f("lr"),
                    train_accuracy: f("train_accuracy"),
                    validation_accuracy: v["validation_accuracy"].as_f64(),
                    dead_units: dead,
                    seconds: f("seconds"),
                    samples_per_second: 0.0,
                });
            }
            _ => {}
        }
    }
    m
}

/// Confusion matrix as a text table.
pub fn confusion_text(e: &Evaluation, names: &[String]) -> String {
    let w = names.iter().map(|n| n.len()).max().unwrap_or(1).max(6);
    let mut s = format!("{:>w$} | predicted →\n", "true ↓");
    s.push_str(&format!("{:>w$} |", ""));
    for n in names {
        s.push_str(&format!(" {n:>w$}"));
    }
    s.push('\n');
    for (n, row) in names.iter().zip(&e.confusion) {
        s.push_str(&format!("{n:>w$} |"));
        for c in row {
            s.push_str(&format!(" {c:>w$}"));
        }
        s.push('\n');
    }
    s.push_str(&format!("accuracy {:.4}\n", e.accuracy));
    s
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

/// `strata eval`: evaluates a trained model folder (`spec.toml` +
/// `model.safetensors`) on the held-out test split of its data set, or of
/// `dataset` when given; `multi_crop` overrides the spec's `eval.multi_crop`.
pub fn eval_dir(
    model_dir: &Path,
    dataset: Option<&str>,
    data_dir: Option<&Path>,
    multi_crop: Option<bool>,
) -> Result<(Evaluation, Vec<String>), RunError> {
    for file in ["spec.toml", "model.safetensors"] {
        if !model_dir.join(file).is_file() {
            return Err(RunError::Usage(format!(
                "{} is not a trained model folder: it has no {file} (`strata train` writes \
                 spec.toml and model.safetensors into its --out folder after each epoch)",
                model_dir.display()
            )));
        }
    }
    let mut spec = Spec::load(model_dir.join("spec.toml"))?;
    let trained_on = spec.data.dataset.clone();
    if let Some(d) = dataset {
        spec.data.dataset = d.to_string();
    }
    let result = eval_spec(model_dir, spec, data_dir, multi_crop);
    match dataset {
        // Another data set's images or classes may not fit the network.
        Some(d) if d != trained_on => result.map_err(|e| match e {
            RunError::Data(_) => e,
            e => RunError::Other(format!(
                "the model in {} was trained on `{trained_on}`; `{d}` does not fit it: {e}",
                model_dir.display()
            )),
        }),
        _ => result,
    }
}

fn eval_spec(
    model_dir: &Path,
    mut spec: Spec,
    data_dir: Option<&Path>,
    multi_crop: Option<bool>,
) -> Result<(Evaluation, Vec<String>), RunError> {
    spec.data.validation = 0;
    spec.data.subset = None;
    match multi_crop {
        // One view: neither crops nor the test-time views of `eval.tta`.
        Some(false) => {
            spec.eval.multi_crop = false;
            spec.eval.pad = 0;
            spec.eval.tta = None;
        }
        // `--multi-crop` on a spec with `eval.tta` keeps its own views.
        Some(true) if spec.eval.tta.is_some() => {}
        Some(m) => spec.eval.multi_crop = m,
        None => {}
    }
    // The test data gets the preprocessing fitted at training time, not a refit.
    let mut test = load_raw(&spec, data_dir)?.test;
    let raw = test.image_shape();
    let image = spec
        .preprocess
        .iter()
        .try_fold(raw, |s, p| p.output_shape(s))
        .map_err(|e| spec_error(&spec, "data.preprocess", e.to_string()))?;
    let input = network_input(&spec, image)?;
    let mut model: Sequential<f32> = build_model(&spec, &input, test.num_classes())?;
    if let Some(p) = load_model(&model_dir.join("model.safetensors"), &mut model, &spec)? {
        p.apply(&mut test)?;
    }
    let eval = evaluate_with(&mut model, &test, &eval_options(&spec, image, true)?)?;
    Ok((eval, test.class_names().to_vec()))
}

/// `strata gradcheck`: builds the spec's network at f64 and checks backprop
/// against finite differences on a small batch of its training data.
pub fn gradcheck(
    spec: &Spec,
    data_dir: Option<&Path>,
    items: usize,
) -> Result<Vec<GradCheckReport>, RunError> {
    let data = load_data(spec, data_dir)?;
    let image = data.train.image_shape();
    let input = network_input(spec, image)?;
    let mut model: Sequential<f64> = build_model(spec, &input, data.train.num_classes())?;
    let idx: Vec<usize> = (0..items.min(data.train.len())).collect();
    let (mut x, labels) = data.train.batch(&idx)?;
    if let Some(t) = eval_options(spec, image, false)?.transform {
        x = t.apply_batch(&x, 0, 0)?;
    }
    let x64 = Tensor::from_vec(x.to_vec().into_iter().map(f64::from).collect(), x.shape())
        .map_err(|e| RunError::Other(e.to_string()))?;
    let opts = GradCheckOptions {
        max_entries: 20,
        ..GradCheckOptions::default()
    };
    strata_nn::gradcheck::check_module_gradients(
        &mut model,
        &x64,
        &labels,
        spec.optimizer.weight_decay,
        Mode::Train,
        &opts,
    )
    .map_err(|e| RunError::Other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_random_not_a_prefix() {
        // Stored class by class, as image folders are: 100 of each of 4 classes.
        let labels: Vec<usize> = (0..400).map(|i| i / 100).collect();
        let pixels: Vec<u8> = (0..400).map(|i| (i % 256) as u8).collect();
        let names = (0..4).map(|c| c.to_string()).collect();
        let d = Dataset::from_u8(pixels, [400, 1, 1, 1], labels, names, 255.0).unwrap();
        let s = random_subset(&d, 40, 1).unwrap();
        assert_eq!(s.len(), 40);
        assert!(
            s.class_counts().iter().all(|&c| c > 0),
            "{:?}",
            s.class_counts()
        );
        // Stored order kept, and the same seed picks the same items.
        assert!(s.labels().windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(random_subset(&d, 40, 1).unwrap(), s);
        assert_eq!(random_subset(&d, 1000, 1).unwrap().len(), 400);
    }
}

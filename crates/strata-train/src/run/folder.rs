//! The run folder: claiming it for a new run, `model.safetensors`, and the
//! checkpoint a run resumes from.

use super::RunError;
use crate::checkpoint::{
    load_tensors, load_tensors_from, save_tensors, write_atomic, CheckpointError,
};
use crate::collective::Group;
use crate::spec::Spec;
use std::collections::HashMap;
use std::path::Path;
use strata_data::FittedPipeline;
use strata_nn::{load_state_dict, state_dict, Module};
use strata_optim::Optimizer;
use strata_tensor::Tensor;

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
pub(super) fn claim_out_folder(out: &Path, overwrite: bool) -> Result<(), RunError> {
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
pub(super) fn remove_stray_temporaries(out: &Path) {
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

pub(super) fn io_err(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Other(format!("{}: {e}", path.display()))
}

pub(super) fn write_text(path: &Path, text: &str) -> Result<(), RunError> {
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

/// `checkpoint/state.safetensors`: weights, optimiser state and the epoch.
pub(super) fn save_checkpoint(
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
pub(super) fn restore_checkpoint(
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

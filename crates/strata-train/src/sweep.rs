//! The chapter's recipe for choosing the regularisation constant (12.1.3):
//! hold out a validation set, train for several values, keep the best on
//! validation, and evaluate only that one on the held-out test set.

use crate::assemble::build_model;
use crate::fit::{evaluate_with, Observer};
use crate::run::{
    eval_options, load_data, load_model, network_input, train, RunError, RunOptions, Summary,
};
use crate::spec::Spec;
use std::path::Path;
use strata_nn::Sequential;

/// One trained setting of a sweep.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SweepRow {
    /// The overrides of this run, e.g. `optimizer.weight_decay=1e-4`.
    pub settings: Vec<String>,
    /// Its output folder.
    pub dir: String,
    /// Validation accuracy after the last epoch.
    pub validation_accuracy: f64,
    /// Seconds of training.
    pub train_seconds: f64,
}

/// The outcome of a sweep.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SweepResult {
    /// Every run, in order.
    pub rows: Vec<SweepRow>,
    /// Index of the run with the best validation accuracy.
    pub best: usize,
    /// That run's held-out test accuracy (the only test evaluation).
    pub test_accuracy: f64,
}

/// Expands `key=v1,v2 …` arguments into the grid of override lists.
pub fn grid(sets: &[String]) -> Result<Vec<Vec<String>>, String> {
    let mut out: Vec<Vec<String>> = vec![vec![]];
    for s in sets {
        let (k, vs) = s
            .split_once('=')
            .ok_or_else(|| format!("--set expects KEY=V1,V2,…, got {s:?}"))?;
        let values: Vec<&str> = vs
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!("--set {k}: no values"));
        }
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push(format!("{}={v}", k.trim()));
                    p
                })
            })
            .collect();
    }
    Ok(out)
}

/// Runs the sweep: one training run per grid point into `opts.out/run-<i>`,
/// then the held-out test evaluation of the best one. Writes `sweep.md` and
/// `sweep.json` into `opts.out`.
pub fn sweep(
    spec_path: &Path,
    sets: &[String],
    opts: &RunOptions,
    progress: &mut dyn Observer,
) -> Result<SweepResult, RunError> {
    let points = grid(sets).map_err(RunError::Usage)?;
    let mut rows = Vec::new();
    for (i, overrides) in points.iter().enumerate() {
        let spec = Spec::load_with(spec_path, overrides)?;
        if spec.data.validation == 0 {
            return Err(RunError::Other(format!(
                "{}: data.validation must hold out items for a sweep to choose on",
                spec_path.display()
            )));
        }
        progress.on_message(&format!(
            "sweep run {}/{}: {}",
            i + 1,
            points.len(),
            overrides.join(" ")
        ));
        let dir = opts.out.join(format!("run-{i}"));
        let run = RunOptions {
            out: dir.clone(),
            skip_test: true,
            resume: false,
            // A sweep run again replaces its own runs.
            overwrite: true,
            ..opts.clone()
        };
        let s: Summary = train(&spec, &run, progress).map_err(|e| match e {
            RunError::Interrupted(m) => RunError::Interrupted(format!(
                "sweep run {}/{} ({}): {m} (with the same --set flags); the finished runs are in {}",
                i + 1,
                points.len(),
                overrides.join(" "),
                opts.out.display()
            )),
            e => e,
        })?;
        rows.push(SweepRow {
            settings: overrides.clone(),
            dir: dir.display().to_string(),
            validation_accuracy: s.validation_accuracy.unwrap_or(0.0),
            train_seconds: s.train_seconds,
        });
    }
    let best = rows
        .iter()
        .enumerate()
        .max_by(|a, b| {
            a.1.validation_accuracy
                .total_cmp(&b.1.validation_accuracy)
                .then(b.0.cmp(&a.0))
        })
        .map(|(i, _)| i)
        .ok_or_else(|| RunError::Other("the sweep has no runs".into()))?;
    // Only the chosen setting ever sees the test set.
    let spec = Spec::load_with(spec_path, &points[best])?;
    let data = load_data(&spec, opts.data_dir.as_deref())?;
    let image = data.train.image_shape();
    let input = network_input(&spec, image)?;
    let mut model: Sequential<f32> = build_model(&spec, &input, data.train.num_classes())?;
    load_model(
        &Path::new(&rows[best].dir).join("model.safetensors"),
        &mut model,
        &spec,
    )?;
    let test_accuracy =
        evaluate_with(&mut model, &data.test, &eval_options(&spec, image, true)?)?.accuracy;
    let result = SweepResult {
        rows,
        best,
        test_accuracy,
    };
    let mut md = String::from(
        "| run | settings | validation accuracy | train seconds |\n| --- | --- | --- | --- |\n",
    );
    for (i, r) in result.rows.iter().enumerate() {
        let mark = if i == best { " (best)" } else { "" };
        md.push_str(&format!(
            "| {i}{mark} | {} | {:.4} | {:.1} |\n",
            r.settings.join(" "),
            r.validation_accuracy,
            r.train_seconds
        ));
    }
    md.push_str(&format!(
        "\nHeld-out test accuracy of run {best}: {:.4}\n",
        result.test_accuracy
    ));
    crate::checkpoint::write_atomic(&opts.out.join("sweep.md"), md.as_bytes())?;
    let json = serde_json::to_string_pretty(&result).map_err(|e| RunError::Other(e.to_string()))?;
    crate::checkpoint::write_atomic(&opts.out.join("sweep.json"), json.as_bytes())?;
    Ok(result)
}

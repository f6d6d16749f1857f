//! `strata eval`: a trained model folder evaluated on held-out test data.

use super::data::{eval_options, load_raw, network_input, spec_error};
use super::folder::load_model;
use super::RunError;
use crate::assemble::build_model;
use crate::fit::{evaluate_with, Evaluation};
use crate::spec::Spec;
use std::path::Path;
use strata_nn::Sequential;

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

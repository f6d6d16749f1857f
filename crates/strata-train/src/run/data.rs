//! The spec's data: loading, subsets, the validation split and the fitted
//! preprocessing; the network's input shape and the evaluation settings.

use super::RunError;
use crate::fit::EvalOptions;
use crate::spec::{Spec, SpecError};
use std::path::Path;
use strata_data::{AugmentStep, Augmentation, Dataset, FittedPipeline, TrainTest};

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
pub(super) fn spec_error(spec: &Spec, field: &str, message: String) -> RunError {
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

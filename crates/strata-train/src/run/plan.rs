//! The spec resolved once, with the command line's overrides, into the values
//! a run needs: data, network, optimiser, training and evaluation settings.

use super::data::{eval_options, load_data, network_input, spec_error, Splits};
use super::{RunError, RunOptions};
use crate::assemble::build_model_fitted;
use crate::fit::{EvalOptions, FitOptions};
use crate::spec::Spec;
use strata_nn::Sequential;
use strata_optim::Optimizer;

/// What a run trains and how, every field checked before the run folder is
/// touched: errors name the spec's file and field as [`Spec::parse_with`]'s do.
pub(crate) struct Plan {
    /// The spec with the command line's overrides; its source is what the run
    /// folder's `spec.toml` and the checkpoints record.
    pub(crate) spec: Spec,
    /// Training, validation and test data, with the preprocessing fitted on
    /// the training split (already applied to all three).
    pub(crate) data: Splits,
    /// Classes of the training data.
    pub(crate) classes: usize,
    /// The network, initialised from `train.seed` (a whitening layer fitted).
    pub(crate) model: Sequential<f32>,
    /// The update rule with its schedule, parameter groups and look-ahead.
    pub(crate) optimizer: Optimizer<f32>,
    /// Epochs, minibatches, augmentation, and how validation is evaluated.
    pub(crate) fit: FitOptions,
    /// How the test split is evaluated after training (`None`: skipped).
    pub(crate) test: Option<EvalOptions>,
}

/// Resolves `spec` and the options of `opts` into a [`Plan`]. The kernel
/// thread count is set first, as [`train`](super::train) always did: fitting
/// the preprocessing and a whitening layer runs on those threads.
pub(crate) fn resolve(spec: &Spec, opts: &RunOptions) -> Result<Plan, RunError> {
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
    let precision = spec
        .train
        .precision()
        .map_err(|e| spec_error(&spec, "train.matmul_precision", e))?;
    strata_kernels::gemm::set_matmul_precision(precision);
    let data = load_data(&spec, opts.data_dir.as_deref())?;
    let image = data.train.image_shape();
    let input = network_input(&spec, image)?;
    let classes = data.train.num_classes();
    let model: Sequential<f32> = build_model_fitted(&spec, &input, classes, Some(&data.train))?;
    let steps_per_epoch = data.train.len().div_ceil(spec.train.batch) as u64;
    let optimizer = spec
        .optimizer_for(steps_per_epoch)
        .map_err(RunError::Other)?;
    let fit = FitOptions {
        epochs: spec.train.epochs,
        batch: spec.train.batch,
        seed: spec.train.seed,
        augment: spec.augmentation(),
        eval: eval_options(&spec, image, false)?,
        label_smoothing: spec.train.label_smoothing,
        group: opts.group.clone(),
        sync_batchnorm: spec.train.sync_batchnorm,
    };
    let test = if opts.skip_test {
        None
    } else {
        Some(EvalOptions {
            group: opts.group.clone(),
            ..eval_options(&spec, image, true)?
        })
    };
    Ok(Plan {
        spec,
        data,
        classes,
        model,
        optimizer,
        fit,
        test,
    })
}
